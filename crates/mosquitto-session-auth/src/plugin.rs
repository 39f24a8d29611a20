//! The plugin's state and its answer to each broker event, in safe Rust. The FFI shell
//! ([`crate::ffi`]) only converts the broker's C data into these calls and carries out
//! what they return (log lines, client ids to disconnect).

use session_token::TokenVerifier;

use crate::clients::{ClientHandle, ClientRegistry};
use crate::config::PluginConfig;
use crate::decisions::{self, Access, ConnectAttempt, Refusal};
use crate::error::PluginError;
use crate::revocation::RevokedSessions;
use crate::state_file::{self, SavedClient, SavedState, STATE_FILE_VERSION};

/// How often, at most, a change of persistent client sessions alone is written to the state
/// file. Closed sessions are written at once.
pub const CLIENT_STATE_SAVE_INTERVAL_SECS: u64 = 1;

#[derive(Debug)]
pub struct Plugin {
    pub(crate) config: PluginConfig,
    pub(crate) verifier: TokenVerifier,
    pub(crate) clients: ClientRegistry,
    pub(crate) revoked: RevokedSessions,
    /// Closed sessions changed since the state file was last written.
    pub(crate) state_changed: bool,
    /// When the state file was last written (seconds since the epoch).
    state_saved_at: u64,
}

/// What a TICK produced.
#[derive(Debug)]
pub struct Tick {
    /// Client ids to disconnect: their token has expired.
    pub expired: Vec<String>,
    /// Writing the state file failed (it is retried on the next TICK).
    pub save_error: Option<PluginError>,
}

impl Plugin {
    /// Loads the configured keys and the state file, and writes the state file back (so an
    /// unwritable place stops the broker now rather than losing a revocation later). Fails,
    /// and so stops the broker, when either cannot be read or written.
    pub fn start(config: PluginConfig, now: u64) -> Result<Self, PluginError> {
        let verifier = config.load_verifier()?;
        let mut plugin = Plugin {
            config,
            verifier,
            clients: ClientRegistry::new(),
            revoked: RevokedSessions::new(),
            state_changed: false,
            state_saved_at: 0,
        };
        if let Some(saved) = state_file::load(&plugin.config.state_file)? {
            for closed in saved.closed.into_iter().filter(|c| c.until > now) {
                plugin.revoked.insert(&closed.sid, closed.until);
            }
            for client in saved.clients.into_iter().filter(|c| c.exp > now) {
                if let Some(client) = client.into_client() {
                    plugin.clients.restore(client);
                }
            }
        }
        plugin.save_state(now)?;
        Ok(plugin)
    }

    pub fn config(&self) -> &PluginConfig {
        &self.config
    }

    /// The ids of the keys currently accepted.
    pub fn key_ids(&self) -> Vec<String> {
        self.verifier.keys().kids().map(str::to_owned).collect()
    }

    /// BASIC_AUTH: admits the client and remembers its grants under its client id, or says
    /// why not. Tokens of a closed session are refused, and so is a first-come client id
    /// (bare name or free id) that a device of another session holds: refused here, before
    /// Mosquitto would take the id over, the holder is never disconnected and its persisted
    /// session never handed over or wiped.
    pub fn authenticate(
        &mut self,
        handle: ClientHandle,
        attempt: ConnectAttempt<'_>,
        now: u64,
    ) -> Result<(), Refusal> {
        let (client, kind) = decisions::admit(
            &self.verifier,
            self.config.allow_any_client_id,
            attempt,
            now,
        )?;
        if self.revoked.is_revoked(&client.session_id, now) {
            return Err(Refusal::SessionClosed);
        }
        if kind.is_shared_namespace() {
            let held_elsewhere = self
                .clients
                .holder_of(&client.client_id, now)
                .is_some_and(|holder| holder != client.session_id);
            if held_elsewhere {
                return Err(Refusal::ClientIdHeldByAnotherSession);
            }
        }
        self.clients.admit(handle, client);
        Ok(())
    }

    /// ACL_CHECK for the client with id `client_id`: one hash lookup and a topic match, no
    /// token work.
    pub fn may_access(&self, client_id: &str, access: Access, topic: &str, now: u64) -> bool {
        decisions::may_access(self.clients.get(client_id), access, topic, now)
    }

    /// TICK: forgets what can no longer matter, saves the state file when due, and returns
    /// the client ids to disconnect because their token has expired.
    pub fn tick(&mut self, now: u64) -> Tick {
        self.state_changed |= self.revoked.forget_expired(now);
        let expired = self.clients.sweep(now);
        let expired = if self.config.disconnect_after_expire {
            expired
        } else {
            Vec::new()
        };
        let save_error = self.save_state_if_due(now).err();
        Tick {
            expired,
            save_error,
        }
    }

    /// DISCONNECT of the connection `handle` with client id `client_id`.
    pub fn client_disconnected(&mut self, handle: ClientHandle, client_id: &str, now: u64) {
        self.clients.disconnected(handle, client_id, now);
    }

    /// Writes the state file when closed sessions changed, or persistent client sessions
    /// changed and the last write is [`CLIENT_STATE_SAVE_INTERVAL_SECS`] old.
    fn save_state_if_due(&mut self, now: u64) -> Result<(), PluginError> {
        let clients_due = now >= self.state_saved_at + CLIENT_STATE_SAVE_INTERVAL_SECS;
        if self.state_changed || (clients_due && self.clients.take_changed()) {
            self.save_state(now)?;
        }
        Ok(())
    }

    /// The broker is stopping: writes whatever is still pending.
    pub fn flush_state(&mut self, now: u64) -> Result<(), PluginError> {
        if self.state_changed || self.clients.take_changed() {
            self.save_state(now)?;
        }
        Ok(())
    }

    /// Writes the state file now. On failure the change stays pending for the next TICK.
    pub fn save_state(&mut self, now: u64) -> Result<(), PluginError> {
        self.clients.take_changed();
        let state = SavedState {
            version: STATE_FILE_VERSION,
            closed: self.revoked.closed_sessions().collect(),
            clients: self
                .clients
                .persistent_clients()
                .map(SavedClient::from_client)
                .collect(),
        };
        match state_file::save(&self.config.state_file, &state) {
            Ok(()) => {
                self.state_changed = false;
                self.state_saved_at = now;
                Ok(())
            }
            Err(error) => {
                self.state_changed = true;
                Err(error)
            }
        }
    }

    /// How many closed sessions are currently refused.
    pub fn revoked_sessions(&self) -> usize {
        self.revoked.len()
    }

    /// How many client ids the plugin currently remembers (connected or not).
    pub fn known_clients(&self) -> usize {
        self.clients.len()
    }

    /// How many clients are connected.
    pub fn connected_clients(&self) -> usize {
        self.clients.connected()
    }
}
