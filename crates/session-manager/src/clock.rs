//! The service's one clock: wall time (seconds since the epoch: session expiry, token
//! times, close times) and monotonic time (lockouts, join quotas) from the same source.
//!
//! Logic never reads the system clock itself: it asks the [`Clock`] in `AppState` (or the
//! one given to the store), so tests drive time with a [`ManualClock`] instead of sleeping.
//! The refusal floor is the exception on purpose: it shapes how long a real response takes,
//! which only the real clock can measure.

use std::fmt::Debug;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub trait Clock: Debug + Send + Sync {
    /// Seconds since the Unix epoch (0 if the clock is before it).
    fn unix_now(&self) -> u64;
    /// Milliseconds since the Unix epoch (0 if the clock is before it): event times.
    fn unix_now_ms(&self) -> u64;
    /// A monotonic instant, for intervals that must not jump with the wall clock.
    fn instant_now(&self) -> Instant;
}

/// The operating system's clocks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn unix_now(&self) -> u64 {
        unix_now()
    }

    fn unix_now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| {
                u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
            })
    }

    fn instant_now(&self) -> Instant {
        Instant::now()
    }
}

/// Seconds since the Unix epoch by the system clock, for code that has no [`Clock`] at
/// hand (command-line tools, the broker link's own token).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// A clock that stands still until told to move: it starts at the system's time and
/// advances only by [`ManualClock::advance`].
#[derive(Debug)]
pub struct ManualClock {
    start_unix: u64,
    start_instant: Instant,
    elapsed: Mutex<Duration>,
}

impl ManualClock {
    pub fn new() -> Self {
        Self {
            start_unix: unix_now(),
            start_instant: Instant::now(),
            elapsed: Mutex::new(Duration::ZERO),
        }
    }

    /// Moves both the wall and the monotonic time forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut elapsed = self.elapsed.lock().unwrap_or_else(PoisonError::into_inner);
        *elapsed = elapsed.saturating_add(by);
    }

    fn elapsed(&self) -> Duration {
        *self.elapsed.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn unix_now(&self) -> u64 {
        self.start_unix.saturating_add(self.elapsed().as_secs())
    }

    fn unix_now_ms(&self) -> u64 {
        let elapsed = u64::try_from(self.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.start_unix.saturating_mul(1000).saturating_add(elapsed)
    }

    fn instant_now(&self) -> Instant {
        self.start_instant + self.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_advanced() {
        let clock = ManualClock::new();
        let (unix, instant) = (clock.unix_now(), clock.instant_now());
        assert_eq!(clock.unix_now(), unix);
        assert_eq!(clock.instant_now(), instant);
        clock.advance(Duration::from_millis(2500));
        assert_eq!(clock.unix_now(), unix + 2);
        assert_eq!(clock.instant_now(), instant + Duration::from_millis(2500));
    }

    #[test]
    fn the_system_clock_is_after_2020() {
        assert!(SystemClock.unix_now() > 1_577_836_800);
    }
}
