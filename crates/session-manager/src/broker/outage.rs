//! How loudly the broker link reports failed connection attempts.
//!
//! The broker usually comes up after the service, so failed attempts are normal at first:
//! during the first [`QUIET_START`] of an outage (from the start, or from losing an
//! established link, which is one WARN) they are logged at INFO (the first) and DEBUG;
//! after that a WARN every [`WARNING_INTERVAL`] while it lasts. These lines keep calling
//! it the revocation link, the name log filters already know.

use std::time::Duration;

use crate::config::BrokerUrl;

/// How long connection failures stay below WARN after the start or a loss of the link.
const QUIET_START: Duration = Duration::from_secs(30);
/// While the link stays down after [`QUIET_START`], one WARN this often.
const WARNING_INTERVAL: Duration = Duration::from_secs(30);

/// A time without a connection to the broker (from the start, or from a loss), and how
/// its failures are logged.
#[derive(Debug)]
pub(super) struct Outage {
    since: tokio::time::Instant,
    failures: u64,
    last_warning: Option<tokio::time::Instant>,
}

impl Outage {
    pub(super) fn begin() -> Self {
        Outage {
            since: tokio::time::Instant::now(),
            failures: 0,
            last_warning: None,
        }
    }

    /// Logs one failed attempt to connect, as loud as the outage's age calls for.
    pub(super) fn failed(&mut self, broker: &BrokerUrl, error: &dyn std::fmt::Display) {
        self.failures += 1;
        let now = tokio::time::Instant::now();
        let down_secs = now.duration_since(self.since).as_secs();
        if now.duration_since(self.since) < QUIET_START {
            if self.failures == 1 {
                tracing::info!(%error, %broker, "the broker is not reachable yet; the revocation link keeps retrying");
            } else {
                tracing::debug!(%error, %broker, "cannot connect the revocation link yet; retrying");
            }
        } else if self
            .last_warning
            .is_none_or(|last| now.duration_since(last) >= WARNING_INTERVAL)
        {
            self.last_warning = Some(now);
            tracing::warn!(%error, %broker, down_secs, "cannot connect the revocation link; closes and kicks wait in the store until it is up");
        } else {
            tracing::debug!(%error, %broker, "cannot connect the revocation link; retrying");
        }
    }
}
