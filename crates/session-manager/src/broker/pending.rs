//! What the handlers noted for the broker and the link has not taken yet: closed
//! sessions, kicked devices and revoked service tokens, each already durable in the store.
//!
//! Coalesced (a session id once, a device's latest kick once), so memory is bounded by
//! the number of sessions and devices however long the broker is away; never dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use session_token::{KickedDevice, RevokedToken};
use tokio::sync::Notify;

/// While the link is down, a warning every this many pending closes and kicks.
const BEHIND_WARNING_EVERY: usize = 1000;

#[derive(Debug, Default)]
pub(super) struct Noted {
    pub(super) closed: BTreeSet<String>,
    /// (session id, client) → its latest kick.
    pub(super) kicked: BTreeMap<(String, String), KickedDevice>,
    /// jti → its revocation.
    pub(super) revoked: BTreeMap<String, RevokedToken>,
}

impl Noted {
    fn len(&self) -> usize {
        self.closed.len() + self.kicked.len() + self.revoked.len()
    }
}

#[derive(Debug, Default)]
pub(super) struct Pending {
    noted: Mutex<Noted>,
    pub(super) wake: Notify,
}

impl Pending {
    pub(super) fn take(&self) -> Noted {
        let taken = std::mem::take(&mut *self.lock());
        metrics::gauge!("ism_broker_link_pending").set(0.0);
        taken
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Noted> {
        self.noted.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The handlers' side of the broker link: announce closes and kicks, ask whether the
/// link is up.
#[derive(Debug, Clone)]
pub struct BrokerLink {
    pub(super) pending: Arc<Pending>,
    pub(super) connected: Arc<AtomicBool>,
}

impl BrokerLink {
    /// Notes a closed session (already durable in the store) for the broker; never waits
    /// and never drops it.
    pub fn session_closed(&self, session_id: &str) {
        self.note(|noted| {
            noted.closed.insert(session_id.to_owned());
        });
    }

    /// Notes a kicked device (already durable in the store) for the broker; never waits
    /// and never drops it.
    pub fn device_kicked(&self, kick: KickedDevice) {
        self.note(|noted| {
            noted
                .kicked
                .insert((kick.sid.clone(), kick.client.clone()), kick);
        });
    }

    /// Notes a revoked token (already durable in the store) for the broker; never waits
    /// and never drops it.
    pub fn token_revoked(&self, revoked: RevokedToken) {
        self.note(|noted| {
            noted.revoked.insert(revoked.jti.clone(), revoked);
        });
    }

    fn note(&self, change: impl FnOnce(&mut Noted)) {
        let waiting = {
            let mut noted = self.pending.lock();
            change(&mut noted);
            noted.len()
        };
        metrics::gauge!("ism_broker_link_pending").set(waiting as f64);
        self.pending.wake.notify_one();
        if !self.is_connected() && waiting % BEHIND_WARNING_EVERY == 0 {
            tracing::warn!(
                pending = waiting,
                "the broker link is down; closes and kicks wait in the store and are published when it is back"
            );
        }
    }

    /// Is the connection to the broker up?
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Closes and kicks noted but not yet handed to the broker connection.
    pub fn pending(&self) -> usize {
        self.pending.lock().len()
    }
}
