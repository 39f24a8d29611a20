//! The join quota: how many successful joins one session may take per minute.
//!
//! A PIN holder could otherwise join under new names without end, each join costing a
//! signature and (for a new name) a journal record. Each session has a token bucket that
//! holds up to a minute's quota and refills evenly over the minute, so a fleet that starts
//! at once is let in while a loop is slowed to the quota. Only successful joins are
//! counted: wrong PINs must not be able to use up a session's quota (and answering them
//! differently would tell which ids are live).

use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::domain::SessionId;

/// Per-session token buckets of successful joins.
pub struct JoinQuota {
    per_minute: u32,
    buckets: DashMap<SessionId, Bucket>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

const MINUTE: Duration = Duration::from_secs(60);

impl JoinQuota {
    /// `per_minute` joins per session per minute; 0 means no limit.
    pub fn new(per_minute: u32) -> Self {
        JoinQuota {
            per_minute,
            buckets: DashMap::new(),
        }
    }

    /// Takes one join from the session's quota; Err(time until one is available).
    pub fn try_take(&self, session: &SessionId, now: Instant) -> Result<(), Duration> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let capacity = f64::from(self.per_minute);
        let refill_per_sec = capacity / MINUTE.as_secs_f64();
        let mut bucket = self.buckets.entry(session.clone()).or_insert(Bucket {
            tokens: capacity,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * refill_per_sec).min(capacity);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / refill_per_sec,
            ))
        }
    }

    /// Forgets buckets that have been full again for a while (nothing to remember).
    pub fn sweep(&self, now: Instant) {
        self.buckets
            .retain(|_, bucket| now.saturating_duration_since(bucket.updated) < MINUTE);
    }

    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SessionId {
        SessionId::parse(s).unwrap()
    }

    #[test]
    fn a_burst_up_to_the_quota_passes_then_it_refills_evenly() {
        let quota = JoinQuota::new(60);
        let start = Instant::now();
        for _ in 0..60 {
            assert!(quota.try_take(&id("1"), start).is_ok());
        }
        let wait = quota.try_take(&id("1"), start).unwrap_err();
        assert!(
            wait <= Duration::from_secs(1) && wait > Duration::ZERO,
            "{wait:?}"
        );
        assert!(quota.try_take(&id("2"), start).is_ok());
        assert!(quota
            .try_take(&id("1"), start + Duration::from_secs(1))
            .is_ok());
        assert!(quota
            .try_take(&id("1"), start + Duration::from_secs(1))
            .is_err());
    }

    #[test]
    fn zero_means_unlimited_and_idle_buckets_are_swept() {
        let unlimited = JoinQuota::new(0);
        let start = Instant::now();
        for _ in 0..10_000 {
            assert!(unlimited.try_take(&id("1"), start).is_ok());
        }
        let quota = JoinQuota::new(5);
        quota.try_take(&id("1"), start).unwrap();
        quota.sweep(start + Duration::from_secs(59));
        assert_eq!(quota.tracked(), 1);
        quota.sweep(start + MINUTE);
        assert_eq!(quota.tracked(), 0);
    }
}
