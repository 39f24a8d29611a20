//! Kicked devices: the service kicks a device (session id + client name) by raising its
//! generation and sending a [`KickedDevice`] on the control topic. The plugin disconnects
//! the device's connections whose token is of an older generation (without their wills),
//! ends those connections' grants, and refuses the device's tokens below `below_gen` at
//! every CONNECT (a token in the token cache included) until `until`, after which no such
//! token can still be valid. A token of the new generation is admitted.
//!
//! Kicks are kept in the state file like closed sessions, so a broker restart keeps
//! refusing them; memory holds one entry per device kicked whose refusal is still running,
//! and the TICK sweep drops each at its `until`.

use std::collections::HashMap;

use session_token::{scoped_client_id, KickedDevice};

use crate::expiring::ExpiringSet;

/// The refusals of kicked devices, keyed by `"{sid}/{client}"` (a session id never holds
/// a `/`, so the key is unambiguous).
#[derive(Debug, Default)]
pub(crate) struct KickedDevices {
    /// Until when each kick's refusal runs, swept in that order.
    until: ExpiringSet,
    /// The generation below which each kicked device's tokens are refused.
    below_gen: HashMap<String, u32, foldhash::fast::RandomState>,
}

impl KickedDevices {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Records a kick. A later kick of the same device extends the refusal: the higher
    /// generation and the later end are kept. True when anything changed.
    pub(crate) fn insert(&mut self, kick: &KickedDevice) -> bool {
        let key = scoped_client_id(&kick.sid, &kick.client);
        let previous_gen = self.below_gen.get(&key).copied().unwrap_or(0);
        let previous_until = self.until.get(&key).unwrap_or(0);
        let below_gen = previous_gen.max(kick.below_gen);
        let until = previous_until.max(kick.until);
        if below_gen == previous_gen && until == previous_until {
            return false;
        }
        self.until.set(&key, until);
        self.below_gen.insert(key, below_gen);
        true
    }

    /// Is a token of generation `generation` for device `client` of session `sid` refused
    /// at `now`?
    pub(crate) fn refuses(&self, sid: &str, client: &str, generation: u32, now: u64) -> bool {
        if self.below_gen.is_empty() {
            return false;
        }
        let key = scoped_client_id(sid, client);
        let running = self.until.get(&key).is_some_and(|until| now < until);
        running
            && self
                .below_gen
                .get(&key)
                .is_some_and(|&below_gen| generation < below_gen)
    }

    /// Forgets the kicks whose end has passed; true when any was forgotten.
    pub(crate) fn forget_expired(&mut self, now: u64) -> bool {
        let mut forgot = false;
        while let Some((key, _)) = self.until.pop_due(now) {
            self.below_gen.remove(&key);
            forgot = true;
        }
        forgot
    }

    /// Every running kick, for the state file.
    pub(crate) fn kicked_devices(&self) -> impl Iterator<Item = KickedDevice> + '_ {
        self.until.iter().filter_map(|(key, until)| {
            let (sid, client) = key.split_once('/')?;
            Some(KickedDevice {
                sid: sid.to_owned(),
                client: client.to_owned(),
                below_gen: self.below_gen.get(key).copied().unwrap_or(0),
                until,
            })
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.below_gen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kick(client: &str, below_gen: u32, until: u64) -> KickedDevice {
        KickedDevice {
            sid: "111".into(),
            client: client.into(),
            below_gen,
            until,
        }
    }

    #[test]
    fn older_generations_are_refused_until_the_end_and_newer_ones_admitted() {
        let mut kicks = KickedDevices::new();
        assert!(kicks.insert(&kick("lamp", 2, 100)));
        assert!(kicks.refuses("111", "lamp", 0, 50));
        assert!(kicks.refuses("111", "lamp", 1, 99));
        assert!(!kicks.refuses("111", "lamp", 2, 50), "the new generation");
        assert!(!kicks.refuses("111", "lamp", 1, 100), "the end has passed");
        assert!(!kicks.refuses("111", "other", 0, 50));
        assert!(!kicks.refuses("222", "lamp", 0, 50));
        assert!(!kicks.forget_expired(99));
        assert!(kicks.forget_expired(100));
        assert_eq!(kicks.len(), 0);
    }

    #[test]
    fn a_later_kick_extends_and_an_older_one_never_shortens() {
        let mut kicks = KickedDevices::new();
        kicks.insert(&kick("lamp", 2, 100));
        assert!(kicks.insert(&kick("lamp", 3, 200)));
        assert!(!kicks.insert(&kick("lamp", 1, 50)), "nothing changes");
        assert!(kicks.refuses("111", "lamp", 2, 150));
        assert!(!kicks.refuses("111", "lamp", 3, 150));
        assert!(!kicks.forget_expired(150));
        assert_eq!(
            kicks.kicked_devices().collect::<Vec<_>>(),
            vec![kick("lamp", 3, 200)]
        );
    }

    #[test]
    fn names_with_slashes_round_trip_through_the_saved_form() {
        let mut kicks = KickedDevices::new();
        kicks.insert(&kick("a/b", 1, 100));
        assert!(kicks.refuses("111", "a/b", 0, 10));
        assert_eq!(
            kicks.kicked_devices().collect::<Vec<_>>(),
            vec![kick("a/b", 1, 100)]
        );
    }
}
