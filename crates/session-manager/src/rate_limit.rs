//! Brute-force and abuse protection for joins: failed attempts are counted per session id
//! and per client network, a key that fails too often within the window is locked out,
//! and successful joins of one session are held to a quota ([`join_quota`]).
//!
//! While a key is locked every attempt on it gets 429 with `Retry-After`, whether its PIN
//! would be right or not, so guessing cannot go on in the background. Successes do not
//! clear the count: a device that joins legitimately must not open a fresh window of
//! guesses for someone else.
//!
//! Failures are counted for every syntactically valid session id, live or not: counting
//! only live ids would tell an attacker which ids are live. The lock never fails open:
//! when a table reaches its capacity, room is made by forgetting entries whose window and
//! lockout are over, then the entries that failed longest ago, but never the counter of a
//! live session (those are bounded by the store itself). A new failure is always counted.
//!
//! Client addresses are counted per network: IPv4 per address, IPv6 per prefix
//! (`ISM_IPV6_PREFIX_LEN`, /64 by default), since one subscriber commonly holds a whole /64.

pub mod join_quota;

use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use ipnet::Ipv6Net;

use crate::domain::SessionId;
use join_quota::JoinQuota;

/// Most keys one counter tracks at once, unless configured otherwise.
pub const DEFAULT_CAPACITY: usize = 100_000;

/// When a table is full, at least this share of its capacity is freed at once, so the
/// cost of finding the oldest entries is spread over many insertions.
const EVICTION_BATCH_DIVISOR: usize = 16;

/// The limits of one counter.
#[derive(Debug, Clone, Copy)]
pub struct FailurePolicy {
    pub max_failures: u32,
    pub window: Duration,
    pub lockout: Duration,
}

/// Failures per key within a fixed window, with a lockout once the limit is reached.
pub struct FailureCounter<K: Eq + Hash> {
    policy: FailurePolicy,
    capacity: usize,
    entries: DashMap<K, FailureEntry>,
}

#[derive(Debug, Clone, Copy)]
struct FailureEntry {
    window_start: Instant,
    failures: u32,
    locked_until: Option<Instant>,
    last_failure: Instant,
}

impl FailureEntry {
    fn is_stale(&self, policy: &FailurePolicy, now: Instant) -> bool {
        let window_over = now.saturating_duration_since(self.window_start) >= policy.window;
        let lock_over = self.locked_until.is_none_or(|until| now >= until);
        window_over && lock_over
    }
}

impl<K: Eq + Hash + Clone> FailureCounter<K> {
    pub fn new(policy: FailurePolicy) -> Self {
        Self::with_capacity(policy, DEFAULT_CAPACITY)
    }

    pub fn with_capacity(policy: FailurePolicy, capacity: usize) -> Self {
        FailureCounter {
            policy,
            capacity: capacity.max(1),
            entries: DashMap::new(),
        }
    }

    /// Err(time left) while `key` is locked out.
    pub fn check(&self, key: &K, now: Instant) -> Result<(), Duration> {
        match self.entries.get(key).and_then(|entry| entry.locked_until) {
            Some(until) if now < until => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Counts a failure; returns the lockout if this failure started one. The failure is
    /// always counted; when the table is full, old entries make room, except those for
    /// which `is_protected` says yes (live sessions).
    pub fn record_failure(
        &self,
        key: &K,
        now: Instant,
        is_protected: impl Fn(&K) -> bool,
    ) -> Option<Duration> {
        if !self.entries.contains_key(key) && self.entries.len() >= self.capacity {
            self.make_room(now, is_protected);
        }
        let policy = self.policy;
        let mut entry = self.entries.entry(key.clone()).or_insert(FailureEntry {
            window_start: now,
            failures: 0,
            locked_until: None,
            last_failure: now,
        });
        entry.last_failure = now;
        if now.saturating_duration_since(entry.window_start) >= policy.window {
            entry.window_start = now;
            entry.failures = 0;
        }
        entry.failures = entry.failures.saturating_add(1);
        let already_locked = entry.locked_until.is_some_and(|until| now < until);
        if entry.failures >= policy.max_failures && !already_locked {
            entry.locked_until = Some(now + policy.lockout);
            // The lockout is the penalty; afterwards counting starts over.
            entry.window_start = now + policy.lockout;
            entry.failures = 0;
            return Some(policy.lockout);
        }
        None
    }

    /// Frees a batch of entries: stale ones first, then those that failed longest ago,
    /// never a protected one. Frees nothing if every entry is protected.
    fn make_room(&self, now: Instant, is_protected: impl Fn(&K) -> bool) {
        self.sweep(now);
        let len = self.entries.len();
        if len < self.capacity {
            return;
        }
        let wanted = (len + 1 - self.capacity).max(self.capacity / EVICTION_BATCH_DIVISOR);
        let mut by_age: Vec<(Instant, K)> = self
            .entries
            .iter()
            .map(|entry| (entry.last_failure, entry.key().clone()))
            .collect();
        by_age.sort_unstable_by_key(|(last_failure, _)| *last_failure);
        let mut evicted = 0;
        for (_, key) in by_age {
            if evicted >= wanted {
                break;
            }
            if !is_protected(&key) && self.entries.remove(&key).is_some() {
                evicted += 1;
            }
        }
        if evicted < wanted {
            tracing::debug!(
                tracked = self.entries.len(),
                capacity = self.capacity,
                "failure table over capacity with protected entries only"
            );
        }
    }

    /// Forgets keys whose window and lockout are over.
    pub fn sweep(&self, now: Instant) {
        let policy = self.policy;
        self.entries
            .retain(|_, entry| !entry.is_stale(&policy, now));
    }

    pub fn tracked(&self) -> usize {
        self.entries.len()
    }
}

/// The key a client address is counted under: the IPv4 address itself (IPv4-mapped IPv6
/// included), or the IPv6 network of `ipv6_prefix_len` bits it belongs to.
pub fn client_network(ip: IpAddr, ipv6_prefix_len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(ipv6_network(v6, ipv6_prefix_len)),
        },
    }
}

fn ipv6_network(address: Ipv6Addr, prefix_len: u8) -> Ipv6Addr {
    Ipv6Net::new(address, prefix_len.min(128)).map_or(address, |net| net.network())
}

/// Sizes and limits of a [`JoinThrottle`].
#[derive(Debug, Clone, Copy)]
pub struct ThrottleSettings {
    pub session_policy: FailurePolicy,
    pub client_policy: FailurePolicy,
    /// Most entries per failure table (live sessions' counters may exceed it).
    pub capacity: usize,
    /// Bits of an IPv6 address that identify one client network.
    pub ipv6_prefix_len: u8,
    /// Successful joins allowed per session per minute (0: no limit).
    pub joins_per_session_per_minute: u32,
    /// The earliest a refused join is answered, counted from its arrival.
    pub refusal_floor: Duration,
}

/// The guards a join goes through.
pub struct JoinThrottle {
    pub sessions: FailureCounter<SessionId>,
    pub clients: FailureCounter<IpAddr>,
    pub joins: JoinQuota,
    /// Every refused join is answered no earlier than this after it arrived, so that
    /// the answer's timing does not depend on whether the session exists.
    pub refusal_floor: Duration,
    ipv6_prefix_len: u8,
}

impl JoinThrottle {
    pub fn new(settings: ThrottleSettings) -> Self {
        JoinThrottle {
            sessions: FailureCounter::with_capacity(settings.session_policy, settings.capacity),
            clients: FailureCounter::with_capacity(settings.client_policy, settings.capacity),
            joins: JoinQuota::new(settings.joins_per_session_per_minute),
            refusal_floor: settings.refusal_floor,
            ipv6_prefix_len: settings.ipv6_prefix_len,
        }
    }

    /// The network `client` is counted under (its IPv6 prefix, or the IPv4 address).
    pub fn client_network(&self, client: IpAddr) -> IpAddr {
        client_network(client, self.ipv6_prefix_len)
    }

    /// Err(time left) while the session or the client network is locked out.
    pub fn check(&self, session: &SessionId, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let network = client_network(client, self.ipv6_prefix_len);
        let session_wait = self.sessions.check(session, now).err();
        let client_wait = self.clients.check(&network, now).err();
        match session_wait.max(client_wait) {
            Some(wait) => Err(wait),
            None => Ok(()),
        }
    }

    /// Counts a failed join against both; logs any lockout it starts. `is_live` tells
    /// which session counters must never be evicted to make room.
    pub fn record_failure(
        &self,
        session: &SessionId,
        client: IpAddr,
        now: Instant,
        is_live: impl Fn(&SessionId) -> bool,
    ) {
        if let Some(lockout) = self.sessions.record_failure(session, now, is_live) {
            tracing::warn!(session_id = %session, client_ip = %client, lockout_secs = lockout.as_secs(),
                "too many wrong PINs for this session; locking it");
        }
        let network = client_network(client, self.ipv6_prefix_len);
        if let Some(lockout) = self.clients.record_failure(&network, now, |_| false) {
            tracing::warn!(client_ip = %client, client_network = %network, lockout_secs = lockout.as_secs(),
                "too many failed joins from this network; locking it");
        }
    }

    pub fn sweep(&self, now: Instant) {
        self.sessions.sweep(now);
        self.clients.sweep(now);
        self.joins.sweep(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: FailurePolicy = FailurePolicy {
        max_failures: 5,
        window: Duration::from_secs(60),
        lockout: Duration::from_secs(300),
    };

    fn unprotected<K>(_: &K) -> bool {
        false
    }

    #[test]
    fn the_fifth_failure_within_the_window_locks_the_key() {
        let counter = FailureCounter::new(POLICY);
        let start = Instant::now();
        for i in 0..4 {
            assert_eq!(
                counter.record_failure(&"s", start + Duration::from_secs(i), unprotected),
                None
            );
            assert!(counter.check(&"s", start + Duration::from_secs(i)).is_ok());
        }
        let locked_at = start + Duration::from_secs(10);
        assert_eq!(
            counter.record_failure(&"s", locked_at, unprotected),
            Some(POLICY.lockout)
        );
        assert_eq!(
            counter.check(&"s", locked_at + Duration::from_secs(100)),
            Err(Duration::from_secs(200))
        );
        assert!(counter.check(&"other", locked_at).is_ok());
        assert!(counter.check(&"s", locked_at + POLICY.lockout).is_ok());
    }

    #[test]
    fn failures_spread_over_more_than_the_window_do_not_lock() {
        let counter = FailureCounter::new(POLICY);
        let start = Instant::now();
        for i in 0..20 {
            assert_eq!(
                counter.record_failure(&"s", start + Duration::from_secs(i * 20), unprotected),
                None
            );
        }
    }

    #[test]
    fn a_full_table_evicts_the_oldest_and_still_counts_every_new_key() {
        let counter = FailureCounter::with_capacity(POLICY, 10);
        let start = Instant::now();
        for key in 0..50u32 {
            counter.record_failure(
                &key,
                start + Duration::from_millis(u64::from(key)),
                unprotected,
            );
        }
        assert!(counter.tracked() <= 10, "{}", counter.tracked());
        // The newest key was counted; five failures on a fresh key lock it although the
        // table is full of younger entries.
        let now = start + Duration::from_secs(1);
        for fresh in 2000..2004u32 {
            assert_eq!(counter.record_failure(&1000, now, unprotected), None);
            counter.record_failure(&fresh, now, unprotected);
        }
        assert_eq!(
            counter.record_failure(&1000, now, unprotected),
            Some(POLICY.lockout)
        );
        assert!(counter.check(&1000, now).is_err());
    }

    #[test]
    fn protected_keys_are_never_evicted() {
        let counter = FailureCounter::with_capacity(POLICY, 10);
        let start = Instant::now();
        let protected = |key: &u32| *key < 3;
        for key in 0..3u32 {
            counter.record_failure(&key, start, protected);
        }
        for key in 3..10_000u32 {
            counter.record_failure(
                &key,
                start + Duration::from_millis(u64::from(key)),
                protected,
            );
        }
        for key in 0..3u32 {
            assert!(counter.entries.contains_key(&key), "{key} was evicted");
        }
        assert!(counter.tracked() <= 11, "{}", counter.tracked());
    }

    #[test]
    fn stale_entries_are_swept() {
        let counter = FailureCounter::with_capacity(POLICY, 10);
        let start = Instant::now();
        for key in 0..5u32 {
            counter.record_failure(&key, start, unprotected);
        }
        counter.sweep(start + POLICY.window);
        assert_eq!(counter.tracked(), 0);
    }

    #[test]
    fn locked_keys_survive_sweeps_until_the_lockout_ends() {
        let counter = FailureCounter::new(POLICY);
        let start = Instant::now();
        for _ in 0..5 {
            counter.record_failure(&"s", start, unprotected);
        }
        counter.sweep(start + POLICY.window);
        assert!(counter.check(&"s", start + POLICY.window).is_err());
        counter.sweep(start + POLICY.lockout + POLICY.window);
        assert_eq!(counter.tracked(), 0);
    }

    #[test]
    fn ipv6_addresses_count_per_prefix_and_ipv4_per_address() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            client_network(ip("2001:db8:1:2:aaaa::1"), 64),
            ip("2001:db8:1:2::")
        );
        assert_eq!(
            client_network(ip("2001:db8:1:2:aaaa::1"), 48),
            ip("2001:db8:1::")
        );
        assert_eq!(client_network(ip("2001:db8::1"), 128), ip("2001:db8::1"));
        assert_eq!(client_network(ip("192.0.2.7"), 64), ip("192.0.2.7"));
        assert_eq!(client_network(ip("::ffff:192.0.2.7"), 64), ip("192.0.2.7"));
    }
}
