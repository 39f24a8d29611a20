//! The plugin's state and its answer to each broker event, in safe Rust: every broker
//! event has exactly one method here (BASIC_AUTH, ACL_CHECK, CONTROL, RELOAD, TICK,
//! DISCONNECT, and the start and stop of the plugin). The FFI shell ([`crate::ffi`]) only
//! converts the broker's C data into these calls and carries out what they return (log
//! lines, client ids to disconnect, presence messages to publish). The data each event
//! works on lives in its own module ([`crate::clients`], [`crate::revocation`],
//! [`crate::kicks`], [`crate::revoked_tokens`], [`crate::presence`], [`crate::reload`], [`crate::state_file`]); a new
//! event is a new method here and a new callback in the shell.

use std::collections::HashSet;

use session_token::{
    scoped_client_id, ClosedSession, ControlMessage, DisconnectReason, KickedDevice, RevokedToken,
    TokenVerifier,
};

use crate::clients::{ClientHandle, ClientRegistry};
use crate::config::PluginConfig;
use crate::decisions::{self, Access, ConnectAttempt, Refusal};
use crate::error::PluginError;
use crate::kicks::KickedDevices;
use crate::presence::{Outgoing, PresenceTracker};
use crate::reload::Reloaded;
use crate::revocation::{ControlOutcome, ControlRefusal, RevokedSessions, CONTROL_TOPIC};
use crate::revoked_tokens::RevokedTokens;
use crate::state_file::{self, SavedClient, SavedState, STATE_FILE_VERSION};
use crate::token_cache::TokenCache;

/// How often, at most, a change of persistent client sessions alone is written to the state
/// file. Closed sessions are written at once.
pub const CLIENT_STATE_SAVE_INTERVAL_SECS: u64 = 1;

#[derive(Debug)]
pub struct Plugin {
    pub(crate) config: PluginConfig,
    pub(crate) verifier: TokenVerifier,
    pub(crate) clients: ClientRegistry,
    pub(crate) revoked: RevokedSessions,
    pub(crate) kicked: KickedDevices,
    pub(crate) revoked_tokens: RevokedTokens,
    pub(crate) presence: PresenceTracker,
    /// Tokens verified before, for reconnects.
    pub(crate) token_cache: TokenCache,
    /// Closed sessions or kicks changed since the state file was last written.
    pub(crate) state_changed: bool,
    /// When the state file was last written (seconds since the epoch).
    state_saved_at: u64,
}

/// What a TICK produced.
#[derive(Debug)]
pub struct Tick {
    /// Client ids to disconnect: their token has expired. Once they are, the caller
    /// publishes [`Plugin::sweep_presence`].
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
        let token_cache = TokenCache::new(config.token_cache_size);
        let mut plugin = Plugin {
            config,
            verifier,
            clients: ClientRegistry::new(),
            revoked: RevokedSessions::new(),
            kicked: KickedDevices::new(),
            revoked_tokens: RevokedTokens::new(),
            presence: PresenceTracker::new(),
            token_cache,
            state_changed: false,
            state_saved_at: 0,
        };
        if let Some(saved) = state_file::load(&plugin.config.state_file)? {
            for closed in saved.closed.into_iter().filter(|c| c.until > now) {
                plugin.revoked.insert(&closed.sid, closed.until);
            }
            for kick in saved.kicked.iter().filter(|k| k.until > now) {
                plugin.kicked.insert(kick);
            }
            for revoked in saved.revoked.iter().filter(|r| r.until > now) {
                plugin.revoked_tokens.insert(revoked);
            }
            for client in saved.clients.into_iter().filter(|c| c.exp > now) {
                if let Some(client) = client.into_client() {
                    plugin
                        .presence
                        .remember(&client.session_id, &client.name, client.expires_at);
                    plugin.clients.restore(client);
                }
            }
            let (kicked, revoked_tokens) = (&plugin.kicked, &plugin.revoked_tokens);
            plugin.clients.revoke(now, |client| {
                kicked.refuses(&client.session_id, &client.name, client.generation, now)
                    || revoked_tokens.refuses(&client.token_id, now)
            });
        }
        plugin.save_state(now)?;
        Ok(plugin)
    }

    /// Where the state file is kept, for the start-up log line.
    pub fn state_file(&self) -> &std::path::Path {
        &self.config.state_file
    }

    /// The ids of the keys currently accepted.
    pub fn key_ids(&self) -> Vec<String> {
        self.verifier.keys().kids().map(str::to_owned).collect()
    }

    /// BASIC_AUTH: admits the client and remembers its grants under its client id, or says
    /// why not; an admitted device's presence messages are returned for the broker to
    /// publish. Tokens of a closed session are refused, a kicked device's tokens from
    /// before the kick too, and so is a first-come client id
    /// (bare name or free id) that a device of another session holds: refused here, before
    /// Mosquitto would take the id over, the holder is never disconnected and its persisted
    /// session never handed over or wiped.
    pub fn authenticate(
        &mut self,
        handle: ClientHandle,
        attempt: ConnectAttempt<'_>,
        now: u64,
    ) -> Result<Vec<Outgoing>, Refusal> {
        let (client, kind) = decisions::admit(
            &self.verifier,
            &mut self.token_cache,
            self.config.allow_any_client_id,
            attempt,
            now,
        )?;
        if self.revoked.is_revoked(&client.session_id, now) {
            return Err(Refusal::SessionClosed);
        }
        if self
            .kicked
            .refuses(&client.session_id, &client.name, client.generation, now)
        {
            return Err(Refusal::Kicked);
        }
        if self.revoked_tokens.refuses(&client.token_id, now) {
            return Err(Refusal::TokenRevoked);
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
        let presence = self.presence.connected(handle, &client, now);
        self.clients.admit(handle, client);
        Ok(presence)
    }

    /// ACL_CHECK for the client with id `client_id`: one hash lookup and a topic match, no
    /// token work.
    pub fn may_access(&self, client_id: &str, access: Access, topic: &str, now: u64) -> bool {
        decisions::may_access(self.clients.get(client_id), access, topic, now)
    }

    /// A message on [`CONTROL_TOPIC`] from the client with id `sender`. The refusals are
    /// in force when this returns; the caller saves them ([`Plugin::save_state`]), then
    /// disconnects the returned clients (their reasons are already noted), then publishes
    /// [`Plugin::clear_presence`] and [`Plugin::answer_sync`].
    pub fn control(
        &mut self,
        sender: Option<&str>,
        payload: &[u8],
        now: u64,
    ) -> Result<ControlOutcome, ControlRefusal> {
        let granted = sender
            .and_then(|id| self.clients.get(id))
            .is_some_and(|client| {
                client.grants_valid_at(now) && client.acl.may_publish(CONTROL_TOPIC)
            });
        if !granted {
            return Err(ControlRefusal::NotGranted);
        }
        let message = ControlMessage::from_payload(payload)
            .map_err(|error| ControlRefusal::Malformed(error.to_string()))?;
        let closed: Vec<ClosedSession> = message
            .closed
            .into_iter()
            .filter(|closed| !closed.sid.is_empty())
            .collect();
        for session in &closed {
            self.revoked.insert(&session.sid, session.until);
        }
        self.state_changed |= !closed.is_empty();
        let ids: HashSet<&str> = closed.iter().map(|closed| closed.sid.as_str()).collect();
        self.token_cache.forget_sessions(|sid| ids.contains(sid));
        let closed_clients = self
            .clients
            .revoke(now, |client| ids.contains(client.session_id.as_str()));
        self.note_ending(&closed_clients, DisconnectReason::SessionClosed);

        let kicked: Vec<KickedDevice> = message
            .kicked
            .into_iter()
            .filter(|kick| !kick.sid.is_empty() && kick.until > now)
            .collect();
        for kick in &kicked {
            self.state_changed |= self.kicked.insert(kick);
        }
        let kicked_clients = if kicked.is_empty() {
            Vec::new()
        } else {
            let kicks = &self.kicked;
            self.clients.revoke(now, |client| {
                kicks.refuses(&client.session_id, &client.name, client.generation, now)
            })
        };
        self.note_ending(&kicked_clients, DisconnectReason::Kicked);

        let (revoked, revoked_clients) = self.revoke_tokens(message.revoked, now);
        Ok(ControlOutcome {
            sessions: closed.into_iter().map(|closed| closed.sid).collect(),
            closed_clients,
            kicked_devices: kicked
                .iter()
                .map(|kick| scoped_client_id(&kick.sid, &kick.client))
                .collect(),
            kicked_clients,
            revoked_tokens: revoked,
            revoked_clients,
            sync: message.sync,
        })
    }

    /// Records the revocations of `revoked` still running at `now` and ends the grants of
    /// every client holding one of those tokens: the revoked ids, and the client ids to
    /// disconnect (their reasons noted).
    fn revoke_tokens(
        &mut self,
        revoked: Vec<RevokedToken>,
        now: u64,
    ) -> (Vec<String>, Vec<String>) {
        let revoked: Vec<RevokedToken> = revoked
            .into_iter()
            .filter(|token| !token.jti.is_empty() && token.until > now)
            .collect();
        if revoked.is_empty() {
            return (Vec::new(), Vec::new());
        }
        for token in &revoked {
            self.state_changed |= self.revoked_tokens.insert(token);
        }
        let ids: HashSet<&str> = revoked.iter().map(|token| token.jti.as_str()).collect();
        let clients = self
            .clients
            .revoke(now, |client| ids.contains(client.token_id.as_str()));
        self.note_ending(&clients, DisconnectReason::Kicked);
        (
            revoked.into_iter().map(|token| token.jti).collect(),
            clients,
        )
    }

    /// Notes why the connections holding `client_ids` are about to be disconnected.
    fn note_ending(&mut self, client_ids: &[String], reason: DisconnectReason) {
        for client_id in client_ids {
            if let Some(connection) = self.clients.connection_of(client_id) {
                self.presence.ending(connection, reason);
            }
        }
    }

    /// Once the devices of closed `sessions` are disconnected: their retained presence, to
    /// delete, with everything else gathered.
    pub fn clear_presence(&mut self, sessions: &[String]) -> Vec<Outgoing> {
        self.presence
            .clear_sessions(sessions.iter().map(String::as_str))
    }

    /// The presence gathered so far, then the answer to sync request `request`: the live
    /// device connections, in parts.
    pub fn answer_sync(&mut self, request: &str) -> Vec<Outgoing> {
        self.presence.online(request)
    }

    /// The presence gathered since the last flush, to publish now.
    pub fn flush_presence(&mut self) -> Vec<Outgoing> {
        self.presence.flush()
    }

    /// Re-reads the configured keys and swaps them in.
    /// Clients of a withdrawn key lose their grants (connected or offline) at `now`.
    pub fn reload_keys(&mut self, now: u64) -> Result<Reloaded, PluginError> {
        let verifier = self.config.load_verifier()?;
        let revoked_clients = self
            .clients
            .revoke(now, |client| verifier.keys().find(&client.kid).is_none());
        let key_count = verifier.keys().len();
        self.verifier = verifier;
        // Every cached token must verify again against the new keys.
        self.token_cache.clear();
        Ok(Reloaded {
            key_count,
            revoked_clients,
        })
    }

    /// TICK: forgets what can no longer matter, saves the state file when due, and returns
    /// the client ids to disconnect because their token has expired.
    pub fn tick(&mut self, now: u64) -> Tick {
        self.state_changed |= self.revoked.forget_expired(now);
        self.state_changed |= self.kicked.forget_expired(now);
        self.state_changed |= self.revoked_tokens.forget_expired(now);
        self.token_cache.sweep(now);
        let expired = self.clients.sweep(now);
        let expired = if self.config.disconnect_after_expire {
            self.note_ending(&expired, DisconnectReason::Expired);
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

    /// The second half of a TICK, once the expired clients are disconnected: the retained
    /// presence of sessions whose last token has expired and of which nothing is
    /// connected, to delete, with everything else gathered.
    pub fn sweep_presence(&mut self, now: u64) -> Vec<Outgoing> {
        self.presence.sweep(now)
    }

    /// DISCONNECT of the connection `handle` with client id `client_id`: gathers its
    /// presence when it was an admitted device (returned when that filled a batch). A connection whose id
    /// a newer connection holds was taken over (Mosquitto 2.0 runs the newcomer's
    /// BASIC_AUTH before it disconnects the old connection).
    pub fn client_disconnected(
        &mut self,
        handle: ClientHandle,
        client_id: &str,
        now: u64,
    ) -> Vec<Outgoing> {
        let taken_over = self.clients.connection_of(client_id) != Some(handle);
        self.clients.disconnected(handle, client_id, now);
        let revoked = &self.revoked;
        self.presence
            .disconnected(handle, taken_over, |sid| revoked.is_revoked(sid, now), now)
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
            kicked: self.kicked.kicked_devices().collect(),
            clients: self
                .clients
                .persistent_clients()
                .map(SavedClient::from_client)
                .collect(),
            revoked: self.revoked_tokens.revoked_tokens().collect(),
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

    /// How many kicked devices are currently refused.
    pub fn kicked_devices(&self) -> usize {
        self.kicked.len()
    }

    /// How many revoked tokens are currently refused.
    pub fn revoked_tokens(&self) -> usize {
        self.revoked_tokens.len()
    }

    /// How many device connections are live.
    #[cfg(test)]
    pub fn live_connections(&self) -> usize {
        self.presence.live_connections()
    }

    /// How many closed sessions are currently refused.
    pub fn revoked_sessions(&self) -> usize {
        self.revoked.len()
    }

    /// How many verified tokens are cached.
    #[cfg(test)]
    pub fn cached_tokens(&self) -> usize {
        self.token_cache.len()
    }

    /// How many client ids the plugin currently remembers (connected or not).
    pub fn known_clients(&self) -> usize {
        self.clients.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_fixtures::{sign, start_plugin, NOW, RSA_PUBLIC};
    use session_token::{Claims, DeviceGrant, PresenceMessage};

    fn plugin(dir: &tempfile::TempDir, allow_any: &str) -> Plugin {
        start_plugin(
            dir,
            &[
                ("public_key_file", RSA_PUBLIC),
                ("allow_any_client_id", allow_any),
            ],
        )
    }

    fn token(session: &str, name: &str, issued_at: u64) -> String {
        let claims = Claims::for_device(&DeviceGrant {
            issuer: "ism",
            client: name,
            session_id: session,
            issued_at,
            lifetime_secs: 600,
            token_id: name,
            generation: 0,
        });
        sign(&claims)
    }

    fn connect(
        plugin: &mut Plugin,
        handle: usize,
        (session, name, client_id): (&str, &str, &str),
        persistent: bool,
        now: u64,
    ) -> Result<(), Refusal> {
        let token = token(session, name, now);
        let attempt = ConnectAttempt {
            username: Some(name),
            password: Some(&token),
            client_id: Some(client_id),
            persistent,
            certificate: None,
        };
        plugin
            .authenticate(ClientHandle(handle), attempt, now)
            .map(drop)
    }

    #[test]
    fn a_first_come_id_is_refused_to_other_sessions_while_held() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut plugin = plugin(&dir, "true");
        connect(&mut plugin, 1, ("111", "lamp", "lamp"), false, NOW).expect("A");
        assert_eq!(
            connect(&mut plugin, 2, ("222", "lamp", "lamp"), false, NOW),
            Err(Refusal::ClientIdHeldByAnotherSession)
        );
        // The same session may take it over (the device itself, or with a free id).
        connect(&mut plugin, 3, ("111", "lamp", "lamp"), false, NOW).expect("own takeover");
        connect(&mut plugin, 4, ("111", "other", "lamp"), false, NOW).expect("same session");
        // Once the clean session is gone the id is free again.
        plugin.client_disconnected(ClientHandle(4), "lamp", NOW);
        connect(&mut plugin, 5, ("222", "lamp", "lamp"), false, NOW + 1).expect("now B");
    }

    #[test]
    fn a_persisted_session_holds_its_id_until_its_token_expires_and_across_restarts() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut plugin = plugin(&dir, "false");
        connect(&mut plugin, 1, ("111", "lamp", "lamp"), true, NOW).expect("A");
        plugin.client_disconnected(ClientHandle(1), "lamp", NOW);
        plugin.flush_state(NOW).expect("saved");

        let mut restarted = self::plugin(&dir, "false");
        assert_eq!(
            connect(&mut restarted, 2, ("222", "lamp", "lamp"), false, NOW + 10),
            Err(Refusal::ClientIdHeldByAnotherSession)
        );
        assert!(
            restarted.may_access("lamp", Access::Receive, "/111/lamp/cmd", NOW + 10),
            "queued messages are checked against the holder's own grants"
        );
        assert!(!restarted.may_access("lamp", Access::Receive, "/222/x", NOW + 10));
        connect(&mut restarted, 3, ("222", "lamp", "lamp"), false, NOW + 600)
            .expect("free once the holder's token has expired");
    }

    #[test]
    fn a_known_token_is_cached_until_the_keys_are_reloaded() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut plugin = plugin(&dir, "false");
        connect(&mut plugin, 1, ("111", "lamp", "lamp"), false, NOW).expect("verified");
        connect(&mut plugin, 2, ("111", "lamp", "lamp"), false, NOW).expect("from the cache");
        assert_eq!(plugin.cached_tokens(), 1);
        plugin.reload_keys(NOW).expect("reloads");
        assert_eq!(plugin.cached_tokens(), 0);
    }

    fn control_link(plugin: &mut Plugin) {
        let claims = Claims::for_revocation_service("ism", "$link", NOW, 600, "link");
        let token = sign(&claims);
        let attempt = ConnectAttempt {
            username: Some("$link"),
            password: Some(&token),
            client_id: Some("$link"),
            persistent: false,
            certificate: None,
        };
        let presence = plugin
            .authenticate(ClientHandle(99), attempt, NOW)
            .expect("the link is admitted");
        assert!(presence.is_empty(), "the link is not a device");
    }

    fn kick(plugin: &mut Plugin, client: &str, below_gen: u32, until: u64) -> ControlOutcome {
        let message = ControlMessage {
            kicked: vec![KickedDevice {
                sid: "111".into(),
                client: client.into(),
                below_gen,
                until,
            }],
            ..ControlMessage::default()
        };
        plugin
            .control(Some("$link"), &message.to_payload(), NOW)
            .expect("accepted")
    }

    /// The last report of what the plugin has gathered (which is flushed).
    fn last_report(plugin: &mut Plugin) -> Option<PresenceMessage> {
        plugin
            .flush_presence()
            .iter()
            .filter(|message| !message.retain)
            .flat_map(|message| {
                PresenceMessage::batch_from_payload(&message.payload).expect("a batch")
            })
            .last()
    }

    #[test]
    fn a_kick_refuses_old_generations_from_the_cache_and_across_restarts() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut plugin = plugin(&dir, "false");
        control_link(&mut plugin);
        connect(&mut plugin, 1, ("111", "lamp", "lamp"), true, NOW).expect("admitted");
        connect(&mut plugin, 2, ("111", "lamp", "111/lamp"), false, NOW).expect("admitted");
        connect(&mut plugin, 3, ("111", "switch", "switch"), false, NOW).expect("admitted");
        let outcome = kick(&mut plugin, "lamp", 1, NOW + 600);
        let mut kicked = outcome.kicked_clients.clone();
        kicked.sort();
        assert_eq!(kicked, vec!["111/lamp", "lamp"]);
        assert_eq!(outcome.kicked_devices, vec!["111/lamp"]);
        assert!(!plugin.may_access("lamp", Access::Publish, "/111/x", NOW));
        assert!(plugin.may_access("switch", Access::Publish, "/111/x", NOW));
        plugin.client_disconnected(ClientHandle(1), "lamp", NOW);
        let gone = last_report(&mut plugin);
        assert!(
            matches!(
                &gone,
                Some(PresenceMessage::Disconnected(d)) if d.reason == DisconnectReason::Kicked
            ),
            "{gone:?}"
        );
        assert_eq!(
            connect(&mut plugin, 4, ("111", "lamp", "lamp"), false, NOW + 1),
            Err(Refusal::Kicked),
            "the same token, from the cache"
        );
        plugin.flush_state(NOW).expect("saved");

        let mut restarted = self::plugin(&dir, "false");
        assert_eq!(restarted.kicked_devices(), 1);
        assert!(
            !restarted.may_access("lamp", Access::Receive, "/111/x", NOW + 1),
            "the restored persistent session of the old generation has no grants"
        );
        assert_eq!(
            connect(&mut restarted, 5, ("111", "lamp", "lamp"), false, NOW + 1),
            Err(Refusal::Kicked)
        );
        restarted.tick(NOW + 600);
        assert_eq!(restarted.kicked_devices(), 0, "forgotten at its end");
    }

    #[test]
    fn the_plugin_notes_why_it_disconnects() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut plugin = plugin(&dir, "false");
        control_link(&mut plugin);
        connect(&mut plugin, 1, ("111", "a", "a"), false, NOW).expect("admitted");
        connect(&mut plugin, 2, ("222", "b", "b"), false, NOW).expect("admitted");
        let reason = |plugin: &mut Plugin| match last_report(plugin) {
            Some(PresenceMessage::Disconnected(device)) => device.reason,
            other => panic!("{other:?}"),
        };
        let closing = test_support::control_message::closing(&[("111", NOW + 600)]);
        let outcome = plugin
            .control(Some("$link"), &closing.to_payload(), NOW)
            .expect("accepted");
        assert_eq!(outcome.closed_clients, vec!["a"]);
        plugin.client_disconnected(ClientHandle(1), "a", NOW);
        assert_eq!(reason(&mut plugin), DisconnectReason::SessionClosed);
        let expired = plugin.tick(NOW + 600).expired;
        assert!(expired.contains(&"b".to_owned()), "{expired:?}");
        plugin.client_disconnected(ClientHandle(2), "b", NOW + 600);
        assert_eq!(reason(&mut plugin), DisconnectReason::Expired);
        assert_eq!(plugin.live_connections(), 0);
    }

    /// A service token `$svc-backend` (jti `svc-1`) granted `/+/#` both ways.
    fn backend_token() -> String {
        let grants = vec!["/+/#".to_owned()];
        sign(&Claims::for_service(&session_token::ServiceGrant {
            issuer: "ism",
            name: "backend",
            issued_at: NOW,
            lifetime_secs: 600,
            token_id: "svc-1",
            subscribe: &grants,
            publish: &grants,
        }))
    }

    fn connect_backend(
        plugin: &mut Plugin,
        handle: usize,
        token: &str,
        now: u64,
    ) -> Result<(), Refusal> {
        let attempt = ConnectAttempt {
            username: Some("$svc-backend"),
            password: Some(token),
            client_id: Some("$svc-backend"),
            persistent: false,
            certificate: None,
        };
        plugin
            .authenticate(ClientHandle(handle), attempt, now)
            .map(drop)
    }

    #[test]
    fn a_revoked_token_is_cut_off_and_refused_from_the_cache_and_across_restarts() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut plugin = plugin(&dir, "false");
        control_link(&mut plugin);
        let backend = backend_token();
        connect_backend(&mut plugin, 1, &backend, NOW).expect("a service token is admitted");
        connect(&mut plugin, 2, ("111", "lamp", "lamp"), false, NOW).expect("a device");
        assert!(plugin.may_access("$svc-backend", Access::Publish, "/111/lamp/cmd", NOW));
        assert!(!plugin.may_access("$svc-backend", Access::Publish, CONTROL_TOPIC, NOW));
        assert!(!plugin.may_access("$svc-backend", Access::Subscribe, "$CONTROL/#", NOW));

        let message = ControlMessage {
            revoked: vec![RevokedToken {
                jti: "svc-1".into(),
                until: NOW + 600,
            }],
            ..ControlMessage::default()
        };
        let outcome = plugin
            .control(Some("$link"), &message.to_payload(), NOW)
            .expect("accepted");
        assert_eq!(outcome.revoked_clients, vec!["$svc-backend"]);
        assert_eq!(outcome.revoked_tokens, vec!["svc-1"]);
        assert!(!plugin.may_access("$svc-backend", Access::Publish, "/111/lamp/cmd", NOW));
        assert!(
            plugin.may_access("lamp", Access::Publish, "/111/x", NOW),
            "others keep theirs"
        );
        assert_eq!(
            connect_backend(&mut plugin, 3, &backend, NOW + 1),
            Err(Refusal::TokenRevoked),
            "the same token, from the cache"
        );
        assert!(plugin.state_changed, "to be saved before the disconnects");
        plugin.flush_state(NOW).expect("saved");

        let mut restarted = self::plugin(&dir, "false");
        assert_eq!(restarted.revoked_tokens(), 1);
        assert_eq!(
            connect_backend(&mut restarted, 4, &backend, NOW + 1),
            Err(Refusal::TokenRevoked)
        );
        restarted.tick(NOW + 600);
        assert_eq!(
            restarted.revoked_tokens(),
            0,
            "forgotten at the token's end"
        );
    }

    #[test]
    fn no_token_may_send_control_messages_but_the_links() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut plugin = plugin(&dir, "false");
        let backend = backend_token();
        connect_backend(&mut plugin, 1, &backend, NOW).expect("admitted");
        let closing = test_support::control_message::closing(&[("111", NOW + 600)]);
        assert_eq!(
            plugin
                .control(Some("$svc-backend"), &closing.to_payload(), NOW)
                .err(),
            Some(ControlRefusal::NotGranted)
        );
    }

    #[test]
    fn scoped_and_reserved_ids_follow_the_shared_rule() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut plugin = plugin(&dir, "true");
        connect(&mut plugin, 1, ("111", "lamp", "111/lamp"), false, NOW).expect("scoped");
        assert!(matches!(
            connect(&mut plugin, 2, ("222", "lamp", "111/lamp"), false, NOW),
            Err(Refusal::ClientId(_))
        ));
        assert!(matches!(
            connect(&mut plugin, 3, ("111", "lamp", "$link"), false, NOW),
            Err(Refusal::ClientId(_))
        ));
    }

    #[test]
    fn a_certificate_client_is_disconnected_at_its_certificates_end_and_by_a_close() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut plugin = plugin(&dir, "false");
        control_link(&mut plugin);
        let by_certificate = |plugin: &mut Plugin, handle, session: &str, not_after| {
            let token = token(session, "lamp", NOW);
            let identity = format!("{session}/lamp");
            let der =
                crate::test_fixtures::client_certificate(&[&identity], Some(&token), not_after);
            let attempt = ConnectAttempt {
                username: None,
                password: None,
                client_id: Some(&identity),
                persistent: false,
                certificate: Some(&der),
            };
            plugin
                .authenticate(ClientHandle(handle), attempt, NOW)
                .map(drop)
        };
        by_certificate(&mut plugin, 1, "111", NOW + 300).expect("admitted");
        by_certificate(&mut plugin, 2, "222", NOW + 9_000).expect("admitted");
        assert!(plugin.may_access("111/lamp", Access::Publish, "/111/x", NOW));
        assert!(plugin.tick(NOW + 299).expired.is_empty());
        assert_eq!(plugin.tick(NOW + 300).expired, vec!["111/lamp"]);

        let closing = test_support::control_message::closing(&[("222", NOW + 600)]);
        let outcome = plugin
            .control(Some("$link"), &closing.to_payload(), NOW + 300)
            .expect("accepted");
        assert_eq!(outcome.closed_clients, vec!["222/lamp"]);
        assert_eq!(
            by_certificate(&mut plugin, 3, "222", NOW + 9_000),
            Err(Refusal::SessionClosed)
        );
    }
}
