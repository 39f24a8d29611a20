//! Push revocation: when a session is closed, its devices are disconnected at once instead
//! of keeping their connection (and their token) until the token's `exp`.
//!
//! With `ISM_BROKER_CONTROL_URL` set, a task keeps one MQTT connection to the broker. It
//! logs in as a reserved `$`-prefixed principal (`$ism-link-<hex>`, client id and token
//! `sub` alike, so no device can take that identity), with a short-lived token the service
//! signs for itself (publishing to [`CONTROL_TOPIC`] only, re-minted for every
//! connection), and publishes [`ControlMessage`]s at QoS 1: every closed session with the
//! time until which its tokens must be refused (close time + token lifetime, capped by the
//! session's own end). The broker plugin disconnects those sessions' devices and refuses
//! their tokens until then.
//!
//! Nothing here remembers closes: the store does, durably, with their close times. On
//! every (re)connect the task republishes every close whose tokens can still be alive,
//! straight from the store, so neither a restart of the service (even `kill -9`) nor one of
//! the broker lets a revoked token back in. Closes while the link is down or slow are
//! never dropped: the handlers only add the id to a set of pending ids (coalesced, so
//! memory is bounded by the number of sessions), and the task publishes them when it can.
//! Sessions that merely expire need no message: no token outlives its session.
//!
//! The broker usually comes up after the service, so failed connection attempts are
//! normal at first: during the first [`QUIET_START`] of an outage (from the start, or
//! from losing an established link, which is one WARN) they are logged at INFO (the
//! first) and DEBUG; after that a WARN every [`WARNING_INTERVAL`] while it lasts.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rumqttc::{
    AsyncClient, ClientError, ConnectReturnCode, Event, EventLoop, Incoming, MqttOptions, QoS,
};
use session_token::{Claims, ClosedSession, ControlMessage, CONTROL_TOPIC};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::clock::unix_now;
use crate::config::BrokerUrl;
use crate::domain::SessionId;
use crate::shutdown::Shutdown;
use crate::signer::TokenSigner;
use crate::store::{Revocation, SessionStore};

/// Lifetime of the service's own broker token.
const SERVICE_TOKEN_LIFETIME_SECS: u64 = 3600;
/// The connection is rebuilt with a fresh token this long before the old one expires.
const TOKEN_RENEW_MARGIN_SECS: u64 = 300;
/// Pause before a new connection attempt after a failure.
const RETRY_DELAY: Duration = Duration::from_secs(1);
/// Closed sessions per control message (ids have at most 32 digits, so a message stays
/// under 8 KiB).
const BATCH: usize = 100;
/// Largest MQTT packet the link sends or accepts.
const MAX_PACKET_BYTES: usize = 64 * 1024;
/// Requests the MQTT client queues before `try_publish` reports it full.
const CLIENT_QUEUE: usize = 256;
/// While the link is down, a warning every this many pending closes.
const BEHIND_WARNING_EVERY: usize = 1000;
/// How long connection failures stay below WARN after the start or a loss of the link.
const QUIET_START: Duration = Duration::from_secs(30);
/// While the link stays down after [`QUIET_START`], one WARN this often.
const WARNING_INTERVAL: Duration = Duration::from_secs(30);
/// Prefix of the link's MQTT client id and token `sub`: a reserved (`$`) identity.
pub const LINK_CLIENT_ID_PREFIX: &str = "$ism-link-";

/// Closed sessions not yet handed to the MQTT client.
#[derive(Debug, Default)]
struct Pending {
    ids: Mutex<BTreeSet<String>>,
    wake: Notify,
}

impl Pending {
    fn take(&self) -> BTreeSet<String> {
        std::mem::take(&mut *self.ids.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The handlers' side: announce a closed session, ask whether the link is up.
#[derive(Debug, Clone)]
pub struct RevocationLink {
    pending: Arc<Pending>,
    connected: Arc<AtomicBool>,
}

impl RevocationLink {
    /// Notes a closed session (already durable in the store) for the broker; never waits
    /// and never drops it.
    pub fn session_closed(&self, session_id: &str) {
        let waiting = {
            let mut ids = self
                .pending
                .ids
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            ids.insert(session_id.to_owned());
            ids.len()
        };
        self.pending.wake.notify_one();
        if !self.is_connected() && waiting % BEHIND_WARNING_EVERY == 0 {
            tracing::warn!(
                pending = waiting,
                "the broker link is down; closes wait in the store and are published when it is back"
            );
        }
    }

    /// Is the connection to the broker up?
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Closed sessions noted but not yet handed to the broker connection.
    pub fn pending(&self) -> usize {
        self.pending
            .ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// The task's side, started by [`RevocationTask::spawn`].
pub struct RevocationTask {
    url: BrokerUrl,
    signer: Arc<dyn TokenSigner>,
    issuer: String,
    token_ttl_secs: u64,
    store: Arc<dyn SessionStore>,
    pending: Arc<Pending>,
    connected: Arc<AtomicBool>,
    client_id: String,
    /// Revocations taken from the store, waiting for room in the MQTT client's queue.
    outbox: VecDeque<ClosedSession>,
    /// The current outage: since when, and how loudly it has been reported.
    outage: Outage,
}

/// A time without a connection to the broker (from the start, or from a loss), and how
/// its failures are logged.
#[derive(Debug)]
struct Outage {
    since: tokio::time::Instant,
    failures: u64,
    last_warning: Option<tokio::time::Instant>,
}

impl Outage {
    fn begin() -> Self {
        Outage {
            since: tokio::time::Instant::now(),
            failures: 0,
            last_warning: None,
        }
    }

    /// Logs one failed attempt to connect, as loud as the outage's age calls for.
    fn failed(&mut self, broker: &BrokerUrl, error: &dyn std::fmt::Display) {
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
            tracing::warn!(%error, %broker, down_secs, "cannot connect the revocation link; closes wait in the store until it is up");
        } else {
            tracing::debug!(%error, %broker, "cannot connect the revocation link; retrying");
        }
    }
}

/// Creates the link for the handlers and the task that serves it; `token_ttl_secs` is the
/// lifetime of the device tokens the service issues.
pub fn link(
    url: BrokerUrl,
    signer: Arc<dyn TokenSigner>,
    issuer: String,
    token_ttl_secs: u64,
    store: Arc<dyn SessionStore>,
) -> (RevocationLink, RevocationTask) {
    let pending = Arc::new(Pending::default());
    let connected = Arc::new(AtomicBool::new(false));
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let task = RevocationTask {
        url,
        signer,
        issuer,
        token_ttl_secs,
        store,
        pending: Arc::clone(&pending),
        connected: Arc::clone(&connected),
        client_id: format!("{LINK_CLIENT_ID_PREFIX}{}", &suffix[..16]),
        outbox: VecDeque::new(),
        outage: Outage::begin(),
    };
    (RevocationLink { pending, connected }, task)
}

/// Why a connection ended.
enum Ended {
    Shutdown,
    Renew,
    Failed,
}

impl RevocationTask {
    pub fn spawn(self, shutdown: Shutdown) -> JoinHandle<()> {
        tokio::spawn(self.run(shutdown))
    }

    async fn run(mut self, shutdown: Shutdown) {
        tracing::info!(broker = %self.url, client = %self.client_id, "revocation link starting");
        loop {
            let ended = tokio::select! {
                ended = self.connection() => ended,
                () = shutdown.wait() => Ended::Shutdown,
            };
            self.connected.store(false, Ordering::Relaxed);
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
        tracing::info!("revocation link stopped");
    }

    /// Queues the revocation of every close whose tokens can still be alive.
    async fn queue_everything(&mut self) {
        // Taken before reading the store: a close noted from now on is published again
        // on its own, one noted before is in the store already.
        self.pending.take();
        let now = unix_now();
        match self.store.revocations(self.token_ttl_secs, now).await {
            Ok(all) => self.outbox.extend(all.into_iter().map(closed_session)),
            Err(error) => tracing::warn!(%error, "cannot read the closed sessions to republish"),
        }
    }

    /// Queues the revocations of the closes noted since the last look.
    async fn queue_pending(&mut self) {
        let now = unix_now();
        for id in self.pending.take() {
            let Ok(session_id) = SessionId::parse(&id) else {
                continue;
            };
            match self
                .store
                .revocation(&session_id, self.token_ttl_secs, now)
                .await
            {
                Ok(Some(revocation)) => self.outbox.push_back(closed_session(revocation)),
                Ok(None) => tracing::debug!(session_id = %id, "closed session needs no revocation"),
                Err(error) => {
                    tracing::warn!(session_id = %id, %error, "cannot read a closed session to revoke")
                }
            }
        }
    }

    /// Hands queued revocations to the MQTT client while it has room; false when the
    /// client is gone.
    fn flush(&mut self, client: &AsyncClient) -> bool {
        while !self.outbox.is_empty() {
            let take = self.outbox.len().min(BATCH);
            let message = ControlMessage {
                closed: self.outbox.iter().take(take).cloned().collect(),
                ..ControlMessage::default()
            };
            match client.try_publish(CONTROL_TOPIC, QoS::AtLeastOnce, false, message.to_payload()) {
                Ok(()) => {
                    self.outbox.drain(..take);
                    tracing::info!(
                        sessions = ?message.closed.iter().map(|c| c.sid.as_str()).collect::<Vec<_>>(),
                        "revocations published"
                    );
                }
                Err(ClientError::TryRequest(_)) => {
                    // The client's queue is full; more room after the next event.
                    tracing::debug!(waiting = self.outbox.len(), "revocation link is behind");
                    return true;
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot queue a revocation message");
                    return false;
                }
            }
        }
        true
    }

    /// One connection, from minting its token to its end.
    async fn connection(&mut self) -> Ended {
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
                tracing::warn!(%error, "cannot sign the broker token of the revocation link");
                return Ended::Failed;
            }
        };
        let mut options = MqttOptions::new(&self.client_id, &self.url.host, self.url.port);
        options.set_credentials(&self.client_id, token);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_clean_session(true);
        options.set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
        let (client, mut events) = AsyncClient::new(options, CLIENT_QUEUE);
        let renew_at = tokio::time::sleep(Duration::from_secs(
            SERVICE_TOKEN_LIFETIME_SECS - TOKEN_RENEW_MARGIN_SECS,
        ));
        tokio::pin!(renew_at);
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
                        self.connected.store(true, Ordering::Relaxed);
                        // The next outage starts quiet again (a renewal that fails, say).
                        self.outage = Outage::begin();
                        // A restarted broker (or plugin) has forgotten what it was told.
                        self.queue_everything().await;
                        tracing::info!(broker = %self.url, republished = self.outbox.len(), "revocation link connected");
                    }
                    Ok(_) => {}
                    Err(error) => {
                        if connected {
                            tracing::warn!(%error, "revocation link lost; reconnecting");
                            self.outage = Outage::begin();
                        } else {
                            self.outage.failed(&self.url, &error);
                        }
                        break Ended::Failed;
                    }
                },
                () = pending.wake.notified(), if connected => self.queue_pending().await,
                () = &mut renew_at => break Ended::Renew,
            }
            if self.connected.load(Ordering::Relaxed) && !self.flush(&client) {
                break Ended::Failed;
            }
        };
        if matches!(ended, Ended::Renew | Ended::Shutdown) {
            let _ = client.try_disconnect();
            drain(&mut events).await;
        }
        ended
    }
}

fn closed_session(revocation: Revocation) -> ClosedSession {
    ClosedSession {
        sid: revocation.id.as_str().to_owned(),
        until: revocation.until,
    }
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
    fn a_full_batch_of_the_longest_ids_fits_a_packet() {
        let message = ControlMessage {
            closed: vec![
                ClosedSession {
                    sid: "9".repeat(32),
                    until: u64::MAX,
                };
                BATCH
            ],
            ..ControlMessage::default()
        };
        assert!(message.to_payload().len() < 8 * 1024);
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
