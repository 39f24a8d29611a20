//! Waiting for the broker to close a test device's connection (a kick, a session close,
//! a takeover, an expired token).

#![allow(dead_code)]

use std::time::{Duration, Instant};

use test_support::mqtt_device::{Device, DeviceEvent};

/// Waits for `device`'s connection to close; when it did, if within `timeout`. Messages
/// seen on the way are dropped.
pub fn closed_at(device: &mut Device, timeout: Duration) -> Option<Instant> {
    let deadline = Instant::now() + timeout;
    loop {
        if let DeviceEvent::Closed { at, .. } =
            device.next_event(deadline.saturating_duration_since(Instant::now()))?
        {
            return Some(at);
        }
    }
}
