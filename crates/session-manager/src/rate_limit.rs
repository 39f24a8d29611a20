//! Brute-force protection for joins: failed attempts are counted per session and per
//! client address, and a key that fails too often within the window is locked out.
//!
//! While a key is locked every attempt on it gets 429 with `Retry-After`, whether its PIN
//! would be right or not, so guessing cannot go on in the background. Successes do not
//! clear the count: a device that joins legitimately must not open a fresh window of
//! guesses for someone else.
//!
//! State is bounded: entries whose window and lockout are over are swept periodically,
//! and when the table is full a new key is not tracked until a sweep makes room (the
//! per-address limit still applies to it).

use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::domain::SessionId;

/// Most keys one counter tracks at once.
const DEFAULT_CAPACITY: usize = 100_000;

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
            capacity,
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

    /// Counts a failure; returns the lockout if this failure started one.
    pub fn record_failure(&self, key: &K, now: Instant) -> Option<Duration> {
        if !self.entries.contains_key(key) && self.entries.len() >= self.capacity {
            self.sweep(now);
            if self.entries.len() >= self.capacity {
                return None;
            }
        }
        let policy = self.policy;
        let mut entry = self.entries.entry(key.clone()).or_insert(FailureEntry {
            window_start: now,
            failures: 0,
            locked_until: None,
        });
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

/// The two counters a join goes through.
pub struct JoinThrottle {
    pub sessions: FailureCounter<SessionId>,
    pub clients: FailureCounter<IpAddr>,
}

impl JoinThrottle {
    pub fn new(session_policy: FailurePolicy, client_policy: FailurePolicy) -> Self {
        JoinThrottle {
            sessions: FailureCounter::new(session_policy),
            clients: FailureCounter::new(client_policy),
        }
    }

    /// Err(time left) while the session or the client address is locked out.
    pub fn check(&self, session: &SessionId, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let session_wait = self.sessions.check(session, now).err();
        let client_wait = self.clients.check(&client, now).err();
        match session_wait.max(client_wait) {
            Some(wait) => Err(wait),
            None => Ok(()),
        }
    }

    /// Counts a failed join against both; logs any lockout it starts.
    pub fn record_failure(&self, session: &SessionId, client: IpAddr, now: Instant) {
        if let Some(lockout) = self.sessions.record_failure(session, now) {
            tracing::warn!(session_id = %session, client_ip = %client, lockout_secs = lockout.as_secs(),
                "too many wrong PINs for this session; locking it");
        }
        if let Some(lockout) = self.clients.record_failure(&client, now) {
            tracing::warn!(client_ip = %client, lockout_secs = lockout.as_secs(),
                "too many failed joins from this address; locking it");
        }
    }

    pub fn sweep(&self, now: Instant) {
        self.sessions.sweep(now);
        self.clients.sweep(now);
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

    #[test]
    fn the_fifth_failure_within_the_window_locks_the_key() {
        let counter = FailureCounter::new(POLICY);
        let start = Instant::now();
        for i in 0..4 {
            assert_eq!(
                counter.record_failure(&"s", start + Duration::from_secs(i)),
                None
            );
            assert!(counter.check(&"s", start + Duration::from_secs(i)).is_ok());
        }
        let locked_at = start + Duration::from_secs(10);
        assert_eq!(
            counter.record_failure(&"s", locked_at),
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
                counter.record_failure(&"s", start + Duration::from_secs(i * 20)),
                None
            );
        }
    }

    #[test]
    fn stale_entries_are_swept_and_the_table_stays_bounded() {
        let counter = FailureCounter::with_capacity(POLICY, 10);
        let start = Instant::now();
        for key in 0..50u32 {
            counter.record_failure(&key, start);
        }
        assert_eq!(counter.tracked(), 10);
        let later = start + POLICY.window;
        counter.record_failure(&99, later);
        assert_eq!(counter.tracked(), 1);
        counter.sweep(later + POLICY.window);
        assert_eq!(counter.tracked(), 0);
    }

    #[test]
    fn locked_keys_survive_sweeps_until_the_lockout_ends() {
        let counter = FailureCounter::new(POLICY);
        let start = Instant::now();
        for _ in 0..5 {
            counter.record_failure(&"s", start);
        }
        counter.sweep(start + POLICY.window);
        assert!(counter.check(&"s", start + POLICY.window).is_err());
        counter.sweep(start + POLICY.lockout + POLICY.window);
        assert_eq!(counter.tracked(), 0);
    }
}
