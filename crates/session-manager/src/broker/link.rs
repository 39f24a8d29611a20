//! The connection task of the broker link: one MQTT connection to the broker, closes and
//! kicks out on [`CONTROL_TOPIC`], presence in on [`PRESENCE_TOPIC`].
//!
//! It logs in as a reserved `$`-prefixed principal (`$ism-link-<hex>`, client id and
//! token `sub` alike, so no device can take that identity), with a short-lived token the
//! service signs for itself (publishing to the control topic, reading presence and the
//! session trees only, re-minted for every connection).
//!
//! On every (re)connect it subscribes to the presence topic (QoS 1), asks the plugin for
//! the list of connected devices (`sync` with a fresh request id, whose answer replaces
//! the presence table's view of who is online), and republishes, straight from the store,
//! every close, every kick and every revoked service token whose tokens can still be
//! alive: neither a restart of the service (even `kill -9`) nor one of the broker lets a
//! revoked token back in. New closes, kicks and revocations are noted by the handlers
//! ([`super::BrokerLink`]) and published as they come; while the link is down they wait,
//! coalesced, and are never dropped.
//!
//! Sessions that merely expire need no message: no token outlives its session.
//!
//! The sessions' conductors speak through the same connection: what they publish comes
//! from their outbox (bounded; never waited for) and is handed to the MQTT client while
//! the link is up, and what devices send them on `/{sid}/$conductor/in/...` (subscribed on
//! every connect) goes to them. Incoming messages are routed by topic alone
//! ([`LinkTask::dispatch`]), never by the subscription they came through.
//!
//! Every message of a session's tree it receives (the conductor inboxes included) is also
//! the monitor's
//! ([`crate::monitor`]): handed over without waiting, with the monitor's subscriptions
//! kept in step after every event (and made again on every connection).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    AsyncClient, ClientError, ConnectReturnCode, Event, EventLoop, Incoming, MqttOptions, Publish,
    QoS,
};
use session_token::{
    conductor_inbox, Claims, ClosedSession, ControlMessage, KickedDevice, RevokedToken,
    CONDUCTOR_INBOX_FILTER, CONTROL_TOPIC, PRESENCE_TOPIC,
};
use tokio::task::JoinHandle;

use super::outage::Outage;
use super::pending::{BrokerLink, Pending};
use super::presence::PresenceTable;
use crate::clock::unix_now;
use crate::conductor::{ConductorMessage, Conductors, OutboxReceiver};
use crate::config::BrokerUrl;
use crate::domain::SessionId;
use crate::monitor::subscriptions::LinkSubscriptions;
use crate::monitor::Monitor;
use crate::shutdown::Shutdown;
use crate::signer::TokenSigner;
use crate::store::{Kick, Revocation, ServiceTokenInfo, SessionStore};

/// Lifetime of the service's own broker token.
const SERVICE_TOKEN_LIFETIME_SECS: u64 = 3600;
/// The connection is rebuilt with a fresh token this long before the old one expires.
const TOKEN_RENEW_MARGIN_SECS: u64 = 300;
/// Pause before a new connection attempt after a failure.
const RETRY_DELAY: Duration = Duration::from_secs(1);
/// Closes and kicks per control message (ids have at most 32 digits and client names are
/// short, so a message stays well under [`MAX_OUTGOING_PACKET_BYTES`]).
pub(super) const BATCH: usize = 100;
/// Largest MQTT packet the link sends.
const MAX_OUTGOING_PACKET_BYTES: usize = 64 * 1024;
/// Largest MQTT packet the link accepts (a part of a sync answer may list many devices).
const MAX_INCOMING_PACKET_BYTES: usize = 1024 * 1024;
/// Requests the MQTT client queues before `try_publish` reports it full.
const CLIENT_QUEUE: usize = 256;
/// How often the presence table forgets the devices of sessions that are over.
const PRESENCE_PRUNE_INTERVAL: Duration = Duration::from_secs(60);
/// Prefix of the link's MQTT client id and token `sub`: a reserved (`$`) identity, the
/// only one whose grants may write the sessions' conductor topics.
pub const LINK_CLIENT_ID_PREFIX: &str = session_token::LINK_PRINCIPAL_PREFIX;

/// One thing to tell the broker.
#[derive(Debug, Clone)]
enum Outgoing {
    Closed(ClosedSession),
    Kicked(KickedDevice),
    Revoked(RevokedToken),
}

/// The task's side, started by [`LinkTask::spawn`].
pub struct LinkTask {
    pub(super) url: BrokerUrl,
    pub(super) signer: Arc<dyn TokenSigner>,
    pub(super) issuer: String,
    pub(super) token_ttl_secs: u64,
    pub(super) store: Arc<dyn SessionStore>,
    pub(super) presence: Arc<PresenceTable>,
    pub(super) pending: Arc<Pending>,
    pub(super) connected: Arc<AtomicBool>,
    pub(super) client_id: String,
    /// The monitor's subscriptions on this connection; session messages go to it.
    monitor: LinkSubscriptions,
    /// Closes and kicks taken from the store, waiting for room in the MQTT client's queue.
    outbox: VecDeque<Outgoing>,
    /// The current outage: since when, and how loudly it has been reported.
    outage: Outage,
    /// The sessions' conductors: where their inbox messages go.
    conductors: Arc<Conductors>,
    /// What the conductors publish; taken by each connection while it runs.
    conductor_outbox: Option<OutboxReceiver>,
}

/// Why a connection ended.
enum Ended {
    Shutdown,
    Renew,
    Failed,
}

/// Creates the link for the handlers and the task that serves it; `token_ttl_secs` is the
/// lifetime of the device tokens the service issues; `conductors` publish through
/// `conductor_outbox`.
#[allow(clippy::too_many_arguments)]
pub fn link(
    url: BrokerUrl,
    signer: Arc<dyn TokenSigner>,
    issuer: String,
    token_ttl_secs: u64,
    store: Arc<dyn SessionStore>,
    presence: Arc<PresenceTable>,
    conductors: Arc<Conductors>,
    conductor_outbox: OutboxReceiver,
    monitor: Monitor,
) -> (BrokerLink, LinkTask) {
    let pending = Arc::new(Pending::default());
    let connected = Arc::new(AtomicBool::new(false));
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let task = LinkTask {
        url,
        signer,
        issuer,
        token_ttl_secs,
        store,
        presence,
        pending: Arc::clone(&pending),
        connected: Arc::clone(&connected),
        client_id: format!("{LINK_CLIENT_ID_PREFIX}{}", &suffix[..16]),
        monitor: monitor.link_subscriptions(),
        outbox: VecDeque::new(),
        outage: Outage::begin(),
        conductors,
        conductor_outbox: Some(conductor_outbox),
    };
    (BrokerLink { pending, connected }, task)
}

impl LinkTask {
    pub fn spawn(self, shutdown: Shutdown) -> JoinHandle<()> {
        tokio::spawn(self.run(shutdown))
    }

    async fn run(mut self, shutdown: Shutdown) {
        tracing::info!(broker = %self.url, client = %self.client_id, "broker link starting");
        metrics::gauge!("ism_broker_link_up").set(0.0);
        loop {
            let ended = tokio::select! {
                ended = self.connection() => ended,
                () = shutdown.wait() => Ended::Shutdown,
            };
            self.set_connected(false);
            // Whatever was not handed over is republished from the store on reconnect.
            self.outbox.clear();
            match ended {
                Ended::Shutdown => break,
                Ended::Renew => continue,
                Ended::Failed => {
                    tokio::select! {
                        () = tokio::time::sleep(RETRY_DELAY) => {}
                        () = shutdown.wait() => break,
                    }
                }
            }
        }
        tracing::info!("broker link stopped");
    }

    fn set_connected(&self, up: bool) {
        self.connected.store(up, Ordering::Relaxed);
        metrics::gauge!("ism_broker_link_up").set(if up { 1.0 } else { 0.0 });
    }

    /// Queues every close and kick whose tokens can still be alive.
    async fn queue_everything(&mut self) {
        // Taken before reading the store: a change noted from now on is published again
        // on its own, one noted before is in the store already.
        self.pending.take();
        let now = unix_now();
        match self.store.revocations(self.token_ttl_secs, now).await {
            Ok(all) => self
                .outbox
                .extend(all.into_iter().map(|r| Outgoing::Closed(closed_session(r)))),
            Err(error) => tracing::warn!(%error, "cannot read the closed sessions to republish"),
        }
        match self.store.kicks(self.token_ttl_secs, now).await {
            Ok(all) => self.outbox.extend(
                all.into_iter()
                    .map(|kick| Outgoing::Kicked(kicked_device(&kick, self.token_ttl_secs))),
            ),
            Err(error) => tracing::warn!(%error, "cannot read the kicks to republish"),
        }
        match self.store.service_tokens(now).await {
            Ok(all) => self
                .outbox
                .extend(all.iter().filter_map(revoked_token).map(Outgoing::Revoked)),
            Err(error) => tracing::warn!(%error, "cannot read the revoked tokens to republish"),
        }
    }

    /// Queues the closes, kicks and revocations noted since the last look.
    async fn queue_pending(&mut self) {
        let now = unix_now();
        let noted = self.pending.take();
        for id in noted.closed {
            let Ok(session_id) = SessionId::parse(&id) else {
                continue;
            };
            match self
                .store
                .revocation(&session_id, self.token_ttl_secs, now)
                .await
            {
                Ok(Some(revocation)) => self
                    .outbox
                    .push_back(Outgoing::Closed(closed_session(revocation))),
                Ok(None) => tracing::debug!(session_id = %id, "closed session needs no revocation"),
                Err(error) => {
                    tracing::warn!(session_id = %id, %error, "cannot read a closed session to revoke")
                }
            }
        }
        self.outbox
            .extend(noted.kicked.into_values().map(Outgoing::Kicked));
        self.outbox
            .extend(noted.revoked.into_values().map(Outgoing::Revoked));
    }

    /// Hands queued closes and kicks to the MQTT client while it has room; false when the
    /// client is gone.
    fn flush(&mut self, client: &AsyncClient) -> bool {
        while !self.outbox.is_empty() {
            let take = self.outbox.len().min(BATCH);
            let mut message = ControlMessage::default();
            for outgoing in self.outbox.iter().take(take) {
                match outgoing {
                    Outgoing::Closed(closed) => message.closed.push(closed.clone()),
                    Outgoing::Kicked(kicked) => message.kicked.push(kicked.clone()),
                    Outgoing::Revoked(revoked) => message.revoked.push(revoked.clone()),
                }
            }
            match client.try_publish(CONTROL_TOPIC, QoS::AtLeastOnce, false, message.to_payload()) {
                Ok(()) => {
                    self.outbox.drain(..take);
                    tracing::info!(
                        sessions = ?message.closed.iter().map(|c| c.sid.as_str()).collect::<Vec<_>>(),
                        kicked = ?message.kicked.iter().map(|k| format!("{}/{}", k.sid, k.client)).collect::<Vec<_>>(),
                        revoked_tokens = ?message.revoked.iter().map(|r| r.jti.as_str()).collect::<Vec<_>>(),
                        "revocations published"
                    );
                }
                Err(ClientError::TryRequest(_)) => {
                    // The client's queue is full; more room after the next event.
                    tracing::debug!(waiting = self.outbox.len(), "broker link is behind");
                    return true;
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot queue a control message");
                    return false;
                }
            }
        }
        true
    }

    /// Subscribes to presence and asks the plugin who is connected; false when the client
    /// is gone.
    fn start_presence(&self, client: &AsyncClient) -> bool {
        if let Err(error) = client.try_subscribe(PRESENCE_TOPIC, QoS::AtLeastOnce) {
            tracing::warn!(%error, "cannot subscribe to presence reports");
            return false;
        }
        let request = uuid::Uuid::new_v4().simple().to_string();
        self.presence.sync_requested(request.clone());
        let message = ControlMessage {
            sync: Some(request),
            ..ControlMessage::default()
        };
        if let Err(error) =
            client.try_publish(CONTROL_TOPIC, QoS::AtLeastOnce, false, message.to_payload())
        {
            tracing::warn!(%error, "cannot ask the broker who is connected");
            return false;
        }
        true
    }

    /// Routes one incoming message by its topic alone: presence reports to the presence
    /// table; a conductor inbox message to its conductor and, like every message of a
    /// session's tree, to the monitor. (Mosquitto delivers a message that matches several of
    /// the link's subscriptions once to an MQTT 3.1.1 client such as the link.)
    fn dispatch(&self, publish: &Publish) {
        if publish.topic == PRESENCE_TOPIC {
            self.presence.apply_payload(&publish.payload);
            return;
        }
        if let Some((session_id, subtopic)) = conductor_inbox(&publish.topic) {
            self.conductors
                .deliver(session_id, subtopic, &publish.payload);
        }
        self.monitor.observe(publish);
    }

    /// Subscribes to the sessions' conductor inboxes; false when the client is gone.
    fn start_conductors(&self, client: &AsyncClient) -> bool {
        if let Err(error) = client.try_subscribe(CONDUCTOR_INBOX_FILTER, QoS::AtLeastOnce) {
            tracing::warn!(%error, "cannot subscribe to the conductors' inboxes");
            return false;
        }
        true
    }

    /// One connection, from minting its token to its end.
    async fn connection(&mut self) -> Ended {
        let mut conductor_outbox = self.conductor_outbox.take();
        let ended = self.connected_until_end(&mut conductor_outbox).await;
        self.conductor_outbox = conductor_outbox;
        ended
    }

    async fn connected_until_end(
        &mut self,
        conductor_outbox: &mut Option<OutboxReceiver>,
    ) -> Ended {
        let issued_at = unix_now();
        let claims = Claims::for_revocation_service(
            &self.issuer,
            &self.client_id,
            issued_at,
            SERVICE_TOKEN_LIFETIME_SECS,
            &uuid::Uuid::new_v4().to_string(),
        );
        let token = match self.signer.sign(&claims).await {
            Ok(token) => token,
            Err(error) => {
                tracing::warn!(%error, "cannot sign the broker token of the broker link");
                return Ended::Failed;
            }
        };
        let mut options = MqttOptions::new(&self.client_id, &self.url.host, self.url.port);
        options.set_credentials(&self.client_id, token);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_clean_session(true);
        options.set_max_packet_size(MAX_INCOMING_PACKET_BYTES, MAX_OUTGOING_PACKET_BYTES);
        let (client, mut events) = AsyncClient::new(options, CLIENT_QUEUE);
        let renew_at = tokio::time::sleep(Duration::from_secs(
            SERVICE_TOKEN_LIFETIME_SECS - TOKEN_RENEW_MARGIN_SECS,
        ));
        tokio::pin!(renew_at);
        let mut prune = tokio::time::interval(PRESENCE_PRUNE_INTERVAL);
        let pending = Arc::clone(&self.pending);
        let ended = loop {
            let connected = self.connected.load(Ordering::Relaxed);
            tokio::select! {
                event = events.poll() => match event {
                    Ok(Event::Incoming(Incoming::ConnAck(ack))) => {
                        if ack.code != ConnectReturnCode::Success {
                            let refusal = format!("the broker refused the connection ({:?})", ack.code);
                            self.outage.failed(&self.url, &refusal);
                            break Ended::Failed;
                        }
                        self.set_connected(true);
                        // The next outage starts quiet again (a renewal that fails, say).
                        self.outage = Outage::begin();
                        if !self.start_presence(&client)
                            || !self.start_conductors(&client)
                            || !self.monitor.connected(&client)
                        {
                            break Ended::Failed;
                        }
                        // A restarted broker (or plugin) has forgotten what it was told.
                        self.queue_everything().await;
                        tracing::info!(broker = %self.url, republished = self.outbox.len(), "broker link connected");
                    }
                    Ok(Event::Incoming(Incoming::Publish(publish))) => {
                        self.dispatch(&publish);
                    }
                    Ok(_) => {}
                    Err(error) => {
                        if connected {
                            tracing::warn!(%error, "broker link lost; reconnecting");
                            self.outage = Outage::begin();
                        } else {
                            self.outage.failed(&self.url, &error);
                        }
                        break Ended::Failed;
                    }
                },
                () = pending.wake.notified(), if connected => self.queue_pending().await,
                Some(message) = next_conductor_message(conductor_outbox), if connected => {
                    publish_for_conductor(&client, message);
                }
                () = self.monitor.changed(), if connected => {}
                _ = prune.tick() => self.presence.prune(),
                () = &mut renew_at => break Ended::Renew,
            }
            if self.connected.load(Ordering::Relaxed)
                && !(self.flush(&client) && self.monitor.sync(&client))
            {
                break Ended::Failed;
            }
        };
        self.monitor.disconnected();
        if matches!(ended, Ended::Renew | Ended::Shutdown) {
            let _ = client.try_disconnect();
            drain(&mut events).await;
        }
        ended
    }
}

/// The next message a conductor published; never ready without an outbox.
async fn next_conductor_message(outbox: &mut Option<OutboxReceiver>) -> Option<ConductorMessage> {
    match outbox {
        Some(outbox) => outbox.recv().await,
        None => std::future::pending().await,
    }
}

/// Hands a conductor's message to the MQTT client; dropped when its queue is full (a
/// conductor's state is repeated by its next beat).
fn publish_for_conductor(client: &AsyncClient, message: ConductorMessage) {
    if let Err(error) = client.try_publish(
        message.topic,
        QoS::AtLeastOnce,
        message.retain,
        message.payload,
    ) {
        metrics::counter!(crate::metrics::CONDUCTOR_MESSAGES_DROPPED_TOTAL).increment(1);
        tracing::debug!(%error, "a conductor's message was dropped");
    }
}

fn closed_session(revocation: Revocation) -> ClosedSession {
    ClosedSession {
        sid: revocation.id.as_str().to_owned(),
        until: revocation.until,
    }
}

/// The control message entry of a kick: refuse the device's tokens below its new
/// generation for as long as an older token can live.
pub fn kicked_device(kick: &Kick, token_ttl_secs: u64) -> KickedDevice {
    KickedDevice {
        sid: kick.id.as_str().to_owned(),
        client: kick.client.as_str().to_owned(),
        below_gen: kick.generation,
        until: kick.refuse_until(token_ttl_secs),
    }
}

/// The control message entry of a revoked service token: refused until its own end.
/// `None` for a token that is not revoked.
pub fn revoked_token(token: &ServiceTokenInfo) -> Option<RevokedToken> {
    token.revoked_at.map(|_| RevokedToken {
        jti: token.jti.clone(),
        until: token.expires_at,
    })
}

/// Lets the event loop send what is queued (the DISCONNECT last), briefly.
async fn drain(events: &mut EventLoop) {
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while events.poll().await.is_ok() {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_batch_of_the_longest_ids_and_names_fits_a_packet() {
        let message = ControlMessage {
            closed: vec![
                ClosedSession {
                    sid: "9".repeat(32),
                    until: u64::MAX,
                };
                BATCH
            ],
            kicked: vec![
                KickedDevice {
                    sid: "9".repeat(32),
                    client: "c".repeat(128),
                    below_gen: u32::MAX,
                    until: u64::MAX,
                };
                BATCH
            ],
            revoked: vec![
                RevokedToken {
                    jti: uuid::Uuid::new_v4().to_string(),
                    until: u64::MAX,
                };
                BATCH
            ],
            ..ControlMessage::default()
        };
        assert!(message.to_payload().len() < MAX_OUTGOING_PACKET_BYTES);
    }

    #[test]
    fn the_link_is_a_reserved_principal() {
        let client = format!("{LINK_CLIENT_ID_PREFIX}0123456789abcdef");
        assert_eq!(
            session_token::classify_client_id(&client, "", &client, false),
            Ok(session_token::ClientIdKind::System)
        );
    }
}
