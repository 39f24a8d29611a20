//! What the plugin remembers about each MQTT client id it admitted: the verified token's
//! session, name, expiry and key id, its parsed grants, and whether a connection holds the
//! id right now.
//!
//! The registry is keyed by **client id**, the identity Mosquitto itself keys sessions by,
//! not by the connection's context pointer, because the broker still acts for a client after
//! its connection is gone: it publishes the client's Last Will (right after the disconnect
//! event, or later with an MQTT 5 will delay) and queues messages for a persistent session
//! while it is offline, and each of those is an ACL check the client's grants must answer.
//! Every CONNECT re-authenticates and replaces the entry of its client id; the disconnect of
//! an older connection (a takeover) leaves its successor's entry alone, because the entry
//! remembers which connection ([`ClientHandle`]) holds it. A context address the broker
//! frees and reuses therefore never inherits anything: grants are found by client id, and
//! an id's entry is only ever written by a successful CONNECT with that id.
//!
//! Entries outlive their connection only as long as they can matter: a clean-session
//! client's for [`CLEAN_SESSION_GRACE_SECS`] (its will is sent right after the disconnect),
//! a persistent session's until its token expires (after that nothing may be delivered to
//! it or published for it anyway).
//!
//! The token is verified once, at CONNECT; every later PUBLISH, SUBSCRIBE and delivery
//! check is a hash lookup plus a topic match against the already parsed [`Acl`]. Deadlines
//! (token expiry of connected clients, forgetting of offline ones) sit in an ordered index,
//! so the periodic sweep looks only at entries that are due.

use std::collections::HashMap;

use session_token::Acl;

use crate::expiring::ExpiringSet;

/// The broker's identity for one connection (the address of its client context). Used only
/// to tell whether a disconnect is that of the connection currently holding a client id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientHandle(pub usize);

/// How long a clean-session client's entry stays after its disconnect. Mosquitto publishes
/// such a client's will synchronously right after raising the disconnect event, so any
/// value above zero is enough; a little more absorbs clock steps.
pub const CLEAN_SESSION_GRACE_SECS: u64 = 2;

/// A client admitted with a valid token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectedClient {
    /// The MQTT client id, by which the broker disconnects it.
    pub client_id: String,
    /// The token's `sid`: the session whose closing disconnects the client.
    pub session_id: String,
    /// The token's `sub`: the client name.
    pub name: String,
    /// The key that verified the token; the client is dropped when that key is withdrawn.
    pub kid: String,
    /// The token's `exp`, seconds since the epoch.
    pub expires_at: u64,
    /// Until when the grants hold: `exp`, or earlier once the session was closed or the
    /// key withdrawn.
    pub grants_end: u64,
    /// The token's grants.
    pub acl: Acl,
    /// The broker keeps the client's session after it disconnects (MQTT 3.1.1 clean
    /// session false; every MQTT 5 client, whose session expiry the plugin cannot see).
    pub persistent: bool,
    /// The token's `jti`.
    pub token_id: String,
    /// The token's `gen` (see [`crate::kicks`]).
    pub generation: u32,
}

impl ConnectedClient {
    /// Do the grants hold at `now`? They are dead from `exp` on, or from a revocation.
    pub fn grants_valid_at(&self, now: u64) -> bool {
        now < self.grants_end
    }
}

#[derive(Debug)]
struct Entry {
    client: ConnectedClient,
    /// The connection holding the id, `None` once it disconnected.
    connection: Option<ClientHandle>,
}

/// The map behind every ACL check: foldhash is several times faster than the standard
/// SipHash on short keys and is seeded per process, so client ids chosen to collide cannot
/// be precomputed.
type ClientMap = HashMap<String, Entry, foldhash::fast::RandomState>;

#[derive(Debug, Default)]
pub struct ClientRegistry {
    clients: ClientMap,
    /// A connected client is reported as expired at its `exp`; an offline one is forgotten
    /// at its deadline. An entry leaves this set when its deadline is swept.
    deadlines: ExpiringSet,
    /// A persistent client was added, changed or dropped since the last `take_changed`.
    changed: bool,
}

impl ClientRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// The session holding `client_id` at `now`, if any: a connected client, or a
    /// persistent session whose token has not expired (Mosquitto would hand that session
    /// to whoever connects with its id).
    pub fn holder_of(&self, client_id: &str, now: u64) -> Option<&str> {
        let entry = self.clients.get(client_id)?;
        let holds = entry.connection.is_some()
            || (entry.client.persistent && now < entry.client.expires_at);
        holds.then_some(entry.client.session_id.as_str())
    }

    /// Records a client admitted on `connection`, replacing whatever its client id held.
    pub fn admit(&mut self, connection: ClientHandle, client: ConnectedClient) {
        let deadline = client.expires_at;
        self.insert(client, Some(connection), deadline);
    }

    /// Records a persistent client read back from the state file: offline, kept until its
    /// token expires.
    pub fn restore(&mut self, client: ConnectedClient) {
        let deadline = client.expires_at;
        self.insert(client, None, deadline);
    }

    fn insert(&mut self, client: ConnectedClient, connection: Option<ClientHandle>, deadline: u64) {
        self.changed |= client.persistent;
        self.deadlines.set(&client.client_id, deadline);
        let key = client.client_id.clone();
        let entry = Entry { client, connection };
        if let Some(previous) = self.clients.insert(key, entry) {
            self.changed |= previous.client.persistent;
        }
    }

    /// The connection holding `client_id` right now, if one does.
    pub fn connection_of(&self, client_id: &str) -> Option<ClientHandle> {
        self.clients.get(client_id)?.connection
    }

    /// The client admitted under `client_id`, connected or not.
    pub fn get(&self, client_id: &str) -> Option<&ConnectedClient> {
        self.clients.get(client_id).map(|entry| &entry.client)
    }

    /// The connection `connection` with `client_id` is gone. Ignored unless it is the
    /// connection holding the id (an older connection taken over leaves its successor
    /// alone). The entry stays for the will and the offline queue, see the module docs.
    pub fn disconnected(&mut self, connection: ClientHandle, client_id: &str, now: u64) {
        let Some(entry) = self.clients.get_mut(client_id) else {
            return;
        };
        if entry.connection != Some(connection) {
            return;
        }
        entry.connection = None;
        let deadline = if entry.client.persistent {
            entry.client.expires_at
        } else {
            now.saturating_add(CLEAN_SESSION_GRACE_SECS)
        };
        self.deadlines.set(client_id, deadline);
    }

    /// The deadline sweep: forgets offline entries that can no longer matter, and returns
    /// the client ids of connected clients whose token has expired by `now` (each reported
    /// once; they stay registered, and are refused every access, until they are gone).
    pub fn sweep(&mut self, now: u64) -> Vec<String> {
        let mut expired = Vec::new();
        while let Some((client_id, _)) = self.deadlines.pop_due(now) {
            let Some(entry) = self.clients.get(&client_id) else {
                continue;
            };
            if entry.connection.is_some() {
                expired.push(client_id);
            } else if let Some(gone) = self.clients.remove(&client_id) {
                self.changed |= gone.client.persistent;
            }
        }
        expired
    }

    /// Ends the grants at `now` of every client `is_revoked` selects (connected or not:
    /// an offline client's will and queue must not outlive its rights either). Returns the
    /// client ids of those connected, to disconnect.
    pub fn revoke(
        &mut self,
        now: u64,
        is_revoked: impl Fn(&ConnectedClient) -> bool,
    ) -> Vec<String> {
        let mut connected = Vec::new();
        for entry in self.clients.values_mut() {
            if !is_revoked(&entry.client) {
                continue;
            }
            if entry.client.grants_end > now {
                entry.client.grants_end = now;
                self.changed |= entry.client.persistent;
            }
            if entry.connection.is_some() {
                connected.push(entry.client.client_id.clone());
            }
        }
        connected
    }

    /// The persistent clients, for the state file.
    pub fn persistent_clients(&self) -> impl Iterator<Item = &ConnectedClient> {
        self.clients
            .values()
            .map(|entry| &entry.client)
            .filter(|client| client.persistent)
    }

    /// Has a persistent client changed since the last call?
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// How many client ids are remembered (connected or not).
    pub fn len(&self) -> usize {
        self.clients.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(id: &str, session: &str, expires_at: u64, persistent: bool) -> ConnectedClient {
        ConnectedClient {
            client_id: id.to_owned(),
            session_id: session.to_owned(),
            name: id.to_owned(),
            kid: "k".to_owned(),
            expires_at,
            grants_end: expires_at,
            acl: Acl::from_grants(&["/1/#".into()], &["/1/#".into()]).expect("valid grants"),
            persistent,
            token_id: "t".to_owned(),
            generation: 0,
        }
    }

    #[test]
    fn expired_clients_are_reported_once_and_in_order_of_expiry() {
        let mut registry = ClientRegistry::new();
        registry.admit(ClientHandle(1), client("a", "1", 100, false));
        registry.admit(ClientHandle(2), client("b", "1", 50, false));
        registry.admit(ClientHandle(3), client("c", "1", 200, false));
        assert!(registry.sweep(49).is_empty());
        assert_eq!(registry.sweep(100), vec!["b", "a"]);
        assert!(registry.sweep(150).is_empty());
        assert_eq!(
            registry.len(),
            3,
            "reported clients stay until they disconnect"
        );
        assert_eq!(registry.sweep(u64::MAX), vec!["c"]);
    }

    #[test]
    fn a_clean_session_is_forgotten_soon_after_its_disconnect() {
        let mut registry = ClientRegistry::new();
        registry.admit(ClientHandle(1), client("a", "1", 1_000, false));
        registry.disconnected(ClientHandle(1), "a", 10);
        assert!(registry.get("a").is_some(), "kept for the will");
        assert_eq!(
            registry.holder_of("a", 10),
            None,
            "but it holds the id no more"
        );
        registry.sweep(10 + CLEAN_SESSION_GRACE_SECS);
        assert_eq!(registry.len(), 0);
        assert!(
            !registry.take_changed(),
            "clean sessions never touch the state file"
        );
    }

    #[test]
    fn a_persistent_session_holds_its_id_until_its_token_expires() {
        let mut registry = ClientRegistry::new();
        registry.admit(ClientHandle(1), client("a", "1", 100, true));
        assert!(registry.take_changed());
        registry.disconnected(ClientHandle(1), "a", 10);
        assert_eq!(registry.holder_of("a", 99), Some("1"));
        assert!(registry.sweep(99).is_empty());
        assert!(registry.get("a").is_some());
        assert_eq!(registry.holder_of("a", 100), None);
        registry.sweep(100);
        assert_eq!(registry.len(), 0);
        assert!(registry.take_changed());
    }

    #[test]
    fn the_disconnect_of_a_taken_over_connection_leaves_its_successor_alone() {
        let mut registry = ClientRegistry::new();
        registry.admit(ClientHandle(1), client("a", "1", 100, false));
        registry.admit(ClientHandle(2), client("a", "1", 300, false));
        registry.disconnected(ClientHandle(1), "a", 10);
        assert_eq!(registry.holder_of("a", 20), Some("1"));
        assert!(
            registry.sweep(200).is_empty(),
            "the old expiry was replaced"
        );
        assert_eq!(registry.sweep(300), vec!["a"]);
        // A reused context address with another id finds nothing to take.
        registry.disconnected(ClientHandle(2), "b", 10);
        assert_eq!(registry.holder_of("a", 20), Some("1"));
    }

    #[test]
    fn revoking_ends_the_grants_of_connected_and_offline_clients() {
        let mut registry = ClientRegistry::new();
        registry.admit(ClientHandle(1), client("a", "1", 100, true));
        registry.admit(ClientHandle(2), client("b", "1", 100, true));
        registry.admit(ClientHandle(3), client("c", "2", 100, true));
        registry.disconnected(ClientHandle(2), "b", 10);
        let mut connected = registry.revoke(20, |c| c.session_id == "1");
        connected.sort();
        assert_eq!(connected, vec!["a"]);
        for id in ["a", "b"] {
            assert!(!registry.get(id).expect("kept").grants_valid_at(20));
        }
        assert!(registry.get("c").expect("kept").grants_valid_at(20));
        assert_eq!(registry.holder_of("b", 20), Some("1"), "the id stays held");
    }

    #[test]
    fn validity_ends_at_exp() {
        let c = client("a", "1", 100, false);
        assert!(c.grants_valid_at(99));
        assert!(!c.grants_valid_at(100));
    }
}
