//! The plugin's state and its answer to each broker event, in safe Rust. The FFI shell
//! ([`crate::ffi`]) only converts the broker's C data into these calls and carries out
//! what they return (log lines, client ids to disconnect).

use session_token::TokenVerifier;

use crate::clients::{ClientHandle, ClientRegistry};
use crate::config::PluginConfig;
use crate::decisions::{self, Access, ConnectAttempt, Refusal};
use crate::error::PluginError;
use crate::revocation::RevokedSessions;

#[derive(Debug)]
pub struct Plugin {
    pub(crate) config: PluginConfig,
    pub(crate) verifier: TokenVerifier,
    pub(crate) clients: ClientRegistry,
    pub(crate) revoked: RevokedSessions,
}

impl Plugin {
    /// Loads the configured keys; fails (and so stops the broker) when they cannot be read.
    pub fn start(config: PluginConfig) -> Result<Self, PluginError> {
        let verifier = config.load_verifier()?;
        Ok(Plugin {
            config,
            verifier,
            clients: ClientRegistry::new(),
            revoked: RevokedSessions::new(),
        })
    }

    pub fn config(&self) -> &PluginConfig {
        &self.config
    }

    /// The ids of the keys currently accepted.
    pub fn key_ids(&self) -> Vec<String> {
        self.verifier.keys().kids().map(str::to_owned).collect()
    }

    /// BASIC_AUTH: admits the client and remembers its grants, or says why not. Tokens of
    /// a session closed through the control topic are refused.
    pub fn authenticate(
        &mut self,
        handle: ClientHandle,
        attempt: ConnectAttempt<'_>,
        now: u64,
    ) -> Result<(), Refusal> {
        let client = decisions::admit(
            &self.verifier,
            self.config.require_client_id_match,
            attempt,
            now,
        )?;
        if self.revoked.is_revoked(&client.session_id, now) {
            return Err(Refusal::SessionClosed);
        }
        self.clients.insert(handle, client);
        Ok(())
    }

    /// ACL_CHECK: one hash lookup and a topic match, no token work.
    pub fn may_access(&self, handle: ClientHandle, access: Access, topic: &str, now: u64) -> bool {
        decisions::may_access(self.clients.get(handle), access, topic, now)
    }

    /// TICK: the client ids to disconnect because their token has expired. Also forgets
    /// closed sessions whose retention has passed.
    pub fn expired_clients(&mut self, now: u64) -> Vec<String> {
        self.revoked.forget_expired(now);
        if !self.config.disconnect_after_expire {
            return Vec::new();
        }
        self.clients.take_expired(now)
    }

    /// DISCONNECT: forgets the client.
    pub fn client_disconnected(&mut self, handle: ClientHandle) {
        self.clients.remove(handle);
    }

    /// How many closed sessions are currently refused.
    pub fn revoked_sessions(&self) -> usize {
        self.revoked.len()
    }

    /// How many clients the plugin currently tracks.
    pub fn connected_clients(&self) -> usize {
        self.clients.len()
    }
}
