//! What the plugin remembers about each connected client between its CONNECT and its
//! disconnect: the verified token's expiry and key id, and its parsed grants.
//!
//! The token is verified once, at CONNECT; every later PUBLISH, SUBSCRIBE and delivery
//! check is a hash lookup plus a topic match against the already parsed [`Acl`]. Expiry is
//! kept in an ordered index as well, so the periodic sweep looks only at clients that are
//! actually due instead of walking every connection.

use std::collections::{BTreeSet, HashMap};

use session_token::Acl;

/// The broker's identity for one connection (the address of its client context). Unique
/// while the connection lives; the entry is removed when the broker reports the disconnect,
/// before the address can be reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientHandle(pub usize);

/// A client admitted with a valid token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectedClient {
    /// The MQTT client id, by which the broker disconnects it.
    pub client_id: String,
    /// The token's `sid`: the session whose closing disconnects the client.
    pub session_id: String,
    /// The key that verified the token; the client is dropped when that key is withdrawn.
    pub kid: String,
    /// The token's `exp`, seconds since the epoch.
    pub expires_at: u64,
    /// The token's grants.
    pub acl: Acl,
}

impl ConnectedClient {
    /// Is the token still valid at `now`? A token is dead from its `exp` second on.
    pub fn token_valid_at(&self, now: u64) -> bool {
        now < self.expires_at
    }
}

#[derive(Debug, Default)]
pub struct ClientRegistry {
    clients: HashMap<ClientHandle, ConnectedClient>,
    /// (expiry, handle) of clients not yet reported as expired.
    pending_expiry: BTreeSet<(u64, ClientHandle)>,
}

impl ClientRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records an admitted client, replacing whatever this handle held before.
    pub fn insert(&mut self, handle: ClientHandle, client: ConnectedClient) {
        self.pending_expiry.insert((client.expires_at, handle));
        if let Some(previous) = self.clients.insert(handle, client) {
            self.pending_expiry.remove(&(previous.expires_at, handle));
        }
    }

    pub fn get(&self, handle: ClientHandle) -> Option<&ConnectedClient> {
        self.clients.get(&handle)
    }

    /// Forgets a client; called when the broker reports its disconnect.
    pub fn remove(&mut self, handle: ClientHandle) -> Option<ConnectedClient> {
        let client = self.clients.remove(&handle)?;
        self.pending_expiry.remove(&(client.expires_at, handle));
        Some(client)
    }

    /// Client ids of clients whose token has expired by `now`, each reported once. The
    /// clients stay registered (and are refused every access) until they are gone.
    pub fn take_expired(&mut self, now: u64) -> Vec<String> {
        let mut expired = Vec::new();
        while let Some(&(expires_at, handle)) = self.pending_expiry.first() {
            if expires_at > now {
                break;
            }
            self.pending_expiry.pop_first();
            if let Some(client) = self.clients.get(&handle) {
                expired.push(client.client_id.clone());
            }
        }
        expired
    }

    /// Client ids of clients whose token was verified by a key `is_listed` rejects.
    pub fn verified_by_unlisted_keys(&self, is_listed: impl Fn(&str) -> bool) -> Vec<String> {
        self.clients
            .values()
            .filter(|client| !is_listed(&client.kid))
            .map(|client| client.client_id.clone())
            .collect()
    }

    /// Client ids of clients whose token's session `is_closed` accepts.
    pub fn in_sessions(&self, is_closed: impl Fn(&str) -> bool) -> Vec<String> {
        self.clients
            .values()
            .filter(|client| is_closed(&client.session_id))
            .map(|client| client.client_id.clone())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.clients.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(id: &str, kid: &str, expires_at: u64) -> ConnectedClient {
        ConnectedClient {
            client_id: id.to_owned(),
            session_id: "1".to_owned(),
            kid: kid.to_owned(),
            expires_at,
            acl: Acl::from_grants(&["/1/#".into()], &["/1/#".into()]).expect("valid grants"),
        }
    }

    #[test]
    fn expired_clients_are_reported_once_and_in_order_of_expiry() {
        let mut registry = ClientRegistry::new();
        registry.insert(ClientHandle(1), client("a", "k", 100));
        registry.insert(ClientHandle(2), client("b", "k", 50));
        registry.insert(ClientHandle(3), client("c", "k", 200));
        assert!(registry.take_expired(49).is_empty());
        assert_eq!(registry.take_expired(100), vec!["b", "a"]);
        assert!(registry.take_expired(150).is_empty());
        assert_eq!(
            registry.len(),
            3,
            "reported clients stay until they disconnect"
        );
        assert_eq!(registry.take_expired(u64::MAX), vec!["c"]);
    }

    #[test]
    fn removed_clients_are_forgotten_entirely() {
        let mut registry = ClientRegistry::new();
        registry.insert(ClientHandle(1), client("a", "k", 100));
        assert_eq!(
            registry.remove(ClientHandle(1)).map(|c| c.client_id),
            Some("a".into())
        );
        assert!(registry.get(ClientHandle(1)).is_none());
        assert!(registry.take_expired(u64::MAX).is_empty());
        assert!(registry.is_empty());
        assert!(registry.remove(ClientHandle(1)).is_none());
    }

    #[test]
    fn re_admitting_a_handle_replaces_its_expiry() {
        let mut registry = ClientRegistry::new();
        registry.insert(ClientHandle(1), client("a", "k", 100));
        registry.insert(ClientHandle(1), client("a", "k", 300));
        assert!(registry.take_expired(200).is_empty());
        assert_eq!(registry.take_expired(300), vec!["a"]);
    }

    #[test]
    fn clients_of_withdrawn_keys_are_found() {
        let mut registry = ClientRegistry::new();
        registry.insert(ClientHandle(1), client("old", "k1", 100));
        registry.insert(ClientHandle(2), client("new", "k2", 100));
        assert_eq!(
            registry.verified_by_unlisted_keys(|kid| kid == "k2"),
            vec!["old"]
        );
    }

    #[test]
    fn validity_ends_at_exp() {
        let c = client("a", "k", 100);
        assert!(c.token_valid_at(99));
        assert!(!c.token_valid_at(100));
    }
}
