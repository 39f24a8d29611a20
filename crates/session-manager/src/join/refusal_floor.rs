//! The refusal floor: how long a refused join waits before it is answered.
//!
//! A wrong PIN for a live session whose PIN has not been checked since the service
//! started costs one argon2 verification (tens of milliseconds); an unknown id costs a
//! map lookup. Answered as soon as they are decided, the two are told apart by one timing
//! threshold, which enumerates live session ids. Every refused join is therefore answered
//! no earlier than a fixed floor after it arrived, the floor being above the argon2 time.
//! The wait is a timer, not work: a refused join costs the server no more CPU than before,
//! and argon2 itself stays bounded by the store's per-core semaphore (unknown ids never
//! reach it).
//!
//! Unless configured, the floor is calibrated at start-up: a few argon2 verifications
//! with the store's parameters, times [`CALIBRATION_FACTOR`], and never below
//! [`MIN_CALIBRATED_FLOOR`].
//!
//! A fixed deadline alone still leaves a small systematic gap: a core that just ran
//! argon2 wakes from the timer faster than one that sat idle, which shifted the median
//! answer by about 0.3 ms in our measurements, enough for a statistical test over a few
//! hundred samples. Each refusal therefore waits a further random share of the floor
//! (up to [`JITTER_DIVISOR`]⁻¹ of it), so such gaps drown in noise many times their size.

use std::time::{Duration, Instant};

use crate::error::Error;
use crate::secrets::{self, SecretError};

/// The calibrated floor is this many times the slowest measured verification, leaving
/// room for a loaded machine.
pub const CALIBRATION_FACTOR: u32 = 4;
/// The calibrated floor is never shorter than this.
pub const MIN_CALIBRATED_FLOOR: Duration = Duration::from_millis(100);
const CALIBRATION_RUNS: usize = 3;
/// A refusal waits up to `floor / JITTER_DIVISOR` beyond the floor, chosen at random.
pub const JITTER_DIVISOR: u32 = 5;

/// Measures argon2 verification (the store's parameters) and returns the floor.
pub async fn calibrate() -> Result<Duration, Error> {
    // On the argon2 threads, like every argon2 run of the service.
    let slowest = secrets::on_argon2_thread(|| -> Result<Duration, SecretError> {
        let hash = secrets::hash_secret_blocking(b"000000")?;
        let mut slowest = Duration::ZERO;
        for _ in 0..CALIBRATION_RUNS {
            let started = Instant::now();
            // A wrong PIN: the case the floor hides.
            let _ = secrets::verify_secret_blocking(&hash, b"111111")?;
            slowest = slowest.max(started.elapsed());
        }
        Ok(slowest)
    })
    .await
    .and_then(|result| result)
    .map_err(|error| Error::Config(format!("cannot calibrate the refusal floor: {error}")))?;
    Ok(floor_for(slowest))
}

/// The floor for a measured argon2 verification time.
pub fn floor_for(argon2_time: Duration) -> Duration {
    let scaled = argon2_time.saturating_mul(CALIBRATION_FACTOR);
    // Whole milliseconds, rounded up, keep the logged value readable.
    let millis = scaled.as_micros().div_ceil(1000);
    Duration::from_millis(u64::try_from(millis).unwrap_or(u64::MAX)).max(MIN_CALIBRATED_FLOOR)
}

/// Waits until `floor`, plus a random share of it, has passed since `arrived`.
pub async fn hold(arrived: Instant, floor: Duration) {
    tokio::time::sleep_until((arrived + floor + jitter(floor)).into()).await;
}

/// A random extra wait between zero and `floor / JITTER_DIVISOR`.
fn jitter(floor: Duration) -> Duration {
    let span = floor / JITTER_DIVISOR;
    span.mul_f64(rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_jitter_stays_within_its_share_of_the_floor_and_varies() {
        let floor = Duration::from_millis(100);
        let draws: Vec<Duration> = (0..200).map(|_| jitter(floor)).collect();
        assert!(draws.iter().all(|d| *d <= floor / JITTER_DIVISOR));
        let distinct: std::collections::HashSet<_> = draws.iter().collect();
        assert!(distinct.len() > 100, "the extra wait must be random");
    }

    #[test]
    fn the_floor_is_a_multiple_of_argon2_and_never_below_the_minimum() {
        assert_eq!(floor_for(Duration::from_millis(1)), MIN_CALIBRATED_FLOOR);
        assert_eq!(
            floor_for(Duration::from_micros(40_100)),
            Duration::from_millis(161)
        );
    }

    #[tokio::test]
    async fn calibration_lands_above_one_verification() {
        let floor = calibrate().await.unwrap();
        assert!(floor >= MIN_CALIBRATED_FLOOR, "{floor:?}");
    }
}
