//! Push revocation: when a session is closed, its devices are disconnected at once instead
//! of keeping their connection (and their token) until the token's `exp`.
//!
//! With `ISM_BROKER_CONTROL_URL` set, a task keeps one MQTT connection to the broker. It
//! logs in with a short-lived token the service signs for itself (publishing to
//! [`REVOCATION_TOPIC`] only, re-minted for every connection) and publishes
//! `{"closed": [ids]}` at QoS 1 for every session closed through the admin API; the broker
//! plugin disconnects those sessions' devices and refuses their tokens from then on.
//!
//! Ids closed while the broker is unreachable wait (bounded). On every (re)connect the task
//! republishes every id this process closed within the token lifetime, so a broker that
//! restarted, and so forgot its revocations, learns them again.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, ConnectReturnCode, Event, EventLoop, Incoming, MqttOptions, QoS};
use session_token::claims::REVOCATION_TOPIC;
use session_token::Claims;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::shutdown::Shutdown;
use crate::signer::TokenSigner;
use crate::state::unix_now;

/// Lifetime of the service's own broker token.
const SERVICE_TOKEN_LIFETIME_SECS: u64 = 3600;
/// The connection is rebuilt with a fresh token this long before the old one expires.
const TOKEN_RENEW_MARGIN_SECS: u64 = 300;
/// Pause before a new connection attempt after a failure.
const RETRY_DELAY: Duration = Duration::from_secs(1);
/// Closed ids queued between the handlers and the task.
const QUEUE_CAPACITY: usize = 4096;
/// Closed ids remembered for republishing; the oldest are dropped (and logged) beyond.
const MAX_REMEMBERED: usize = 100_000;
/// Ids per control message (ids have at most 32 digits, so a message stays under 8 KiB).
const BATCH: usize = 200;
/// Largest MQTT packet the link sends or accepts.
const MAX_PACKET_BYTES: usize = 64 * 1024;

/// `mqtt://host[:port]` (or `tcp://`): the broker listener the service connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub host: String,
    pub port: u16,
}

impl FromStr for BrokerUrl {
    type Err = String;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let rest = input
            .trim()
            .strip_prefix("mqtt://")
            .or_else(|| input.trim().strip_prefix("tcp://"))
            .ok_or_else(|| format!("{input:?} is not an mqtt://host:port URL"))?;
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => {
                let port = port
                    .parse::<u16>()
                    .ok()
                    .filter(|&p| p > 0)
                    .ok_or_else(|| format!("{input:?} has an invalid port"))?;
                (host, port)
            }
            _ => (rest, 1883),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains('/') || host.contains('@') {
            return Err(format!("{input:?} is not an mqtt://host:port URL"));
        }
        Ok(BrokerUrl {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mqtt://{}:{}", self.host, self.port)
    }
}

/// The handlers' side: announce a closed session, ask whether the link is up.
#[derive(Debug, Clone)]
pub struct RevocationLink {
    queue: mpsc::Sender<String>,
    connected: Arc<AtomicBool>,
}

impl RevocationLink {
    /// Queues a closed session for the broker; never waits.
    pub fn session_closed(&self, session_id: &str) {
        if let Err(error) = self.queue.try_send(session_id.to_owned()) {
            tracing::warn!(session_id, %error, "revocation queue full; the broker is not told about this close");
        }
    }

    /// Is the connection to the broker up?
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
}

/// The task's side, started by [`RevocationTask::spawn`].
pub struct RevocationTask {
    url: BrokerUrl,
    signer: Arc<dyn TokenSigner>,
    issuer: String,
    retention_secs: u64,
    queue: mpsc::Receiver<String>,
    connected: Arc<AtomicBool>,
    client_name: String,
    /// (closed at, session id), oldest first.
    closed: VecDeque<(u64, String)>,
}

/// Creates the link for the handlers and the task that serves it.
pub fn link(
    url: BrokerUrl,
    signer: Arc<dyn TokenSigner>,
    issuer: String,
    retention_secs: u64,
) -> (RevocationLink, RevocationTask) {
    let (sender, queue) = mpsc::channel(QUEUE_CAPACITY);
    let connected = Arc::new(AtomicBool::new(false));
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let task = RevocationTask {
        url,
        signer,
        issuer,
        retention_secs,
        queue,
        connected: Arc::clone(&connected),
        client_name: format!("session-manager-{}", &suffix[..8]),
        closed: VecDeque::new(),
    };
    (
        RevocationLink {
            queue: sender,
            connected,
        },
        task,
    )
}

/// The control message for `ids`.
pub fn control_payload<'a>(ids: impl IntoIterator<Item = &'a str>) -> Vec<u8> {
    serde_json::json!({ "closed": ids.into_iter().collect::<Vec<_>>() })
        .to_string()
        .into_bytes()
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
        tracing::info!(broker = %self.url, client = %self.client_name, "revocation link starting");
        loop {
            let ended = tokio::select! {
                ended = self.connection() => ended,
                () = shutdown.wait() => Ended::Shutdown,
            };
            self.connected.store(false, Ordering::Relaxed);
            match ended {
                Ended::Shutdown => break,
                Ended::Renew => continue,
                Ended::Failed => {
                    tokio::select! {
                        () = self.wait_queueing(RETRY_DELAY) => {}
                        () = shutdown.wait() => break,
                    }
                }
            }
        }
        tracing::info!("revocation link stopped");
    }

    /// Keeps taking closed ids while not connected, for `delay`.
    async fn wait_queueing(&mut self, delay: Duration) {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => return,
                id = self.queue.recv() => match id {
                    Some(id) => self.remember(id),
                    None => { sleep.as_mut().await; return; }
                },
            }
        }
    }

    fn remember(&mut self, id: String) {
        self.closed.push_back((unix_now(), id));
        while self.closed.len() > MAX_REMEMBERED {
            if let Some((_, dropped)) = self.closed.pop_front() {
                tracing::warn!(session_id = %dropped, "too many closed sessions remembered; no longer republishing this one");
            }
        }
    }

    fn forget_old(&mut self) {
        let horizon = unix_now().saturating_sub(self.retention_secs);
        while self.closed.front().is_some_and(|(at, _)| *at < horizon) {
            self.closed.pop_front();
        }
    }

    /// One connection, from minting its token to its end.
    async fn connection(&mut self) -> Ended {
        let issued_at = unix_now();
        let claims = Claims::for_revocation_service(
            &self.issuer,
            &self.client_name,
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
        let mut options = MqttOptions::new(&self.client_name, &self.url.host, self.url.port);
        options.set_credentials(&self.client_name, token);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_clean_session(true);
        options.set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
        let (client, mut events) = AsyncClient::new(options, 1024);
        let renew_at = tokio::time::sleep(Duration::from_secs(
            SERVICE_TOKEN_LIFETIME_SECS - TOKEN_RENEW_MARGIN_SECS,
        ));
        tokio::pin!(renew_at);
        let ended = loop {
            tokio::select! {
                event = events.poll() => match event {
                    Ok(Event::Incoming(Incoming::ConnAck(ack))) => {
                        if ack.code != ConnectReturnCode::Success {
                            tracing::warn!(code = ?ack.code, "broker refused the revocation link");
                            break Ended::Failed;
                        }
                        self.connected.store(true, Ordering::Relaxed);
                        // Everything closed within the token lifetime, queued ones included:
                        // a restarted broker has forgotten them.
                        self.forget_old();
                        let all: Vec<String> = self.closed.iter().map(|(_, id)| id.clone()).collect();
                        tracing::info!(broker = %self.url, republished = all.len(), "revocation link connected");
                        if !publish(&client, &all) {
                            break Ended::Failed;
                        }
                    }
                    Ok(_) => {}
                    Err(error) => {
                        if self.connected.load(Ordering::Relaxed) {
                            tracing::warn!(%error, "revocation link lost; reconnecting");
                        } else {
                            tracing::warn!(%error, broker = %self.url, "cannot connect the revocation link; retrying");
                        }
                        break Ended::Failed;
                    }
                },
                id = self.queue.recv(), if self.connected.load(Ordering::Relaxed) => {
                    let Some(id) = id else { break Ended::Shutdown };
                    let mut batch = vec![id];
                    while let Ok(more) = self.queue.try_recv() {
                        batch.push(more);
                    }
                    for id in &batch {
                        self.remember(id.clone());
                    }
                    if !publish(&client, &batch) {
                        break Ended::Failed;
                    }
                }
                () = &mut renew_at => break Ended::Renew,
            }
        };
        if matches!(ended, Ended::Renew | Ended::Shutdown) {
            let _ = client.try_disconnect();
            drain(&mut events).await;
        }
        ended
    }
}

/// Queues control messages for `ids` (QoS 1); false when the client cannot take them.
fn publish(client: &AsyncClient, ids: &[String]) -> bool {
    for chunk in ids.chunks(BATCH) {
        let payload = control_payload(chunk.iter().map(String::as_str));
        if let Err(error) = client.try_publish(REVOCATION_TOPIC, QoS::AtLeastOnce, false, payload) {
            tracing::warn!(%error, "cannot queue a revocation message");
            return false;
        }
    }
    if !ids.is_empty() {
        tracing::info!(sessions = ?ids, "revocations published");
    }
    true
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
    fn broker_urls_parse() {
        let url = |s: &str| s.parse::<BrokerUrl>();
        assert_eq!(
            url("mqtt://127.0.0.1:1883"),
            Ok(BrokerUrl {
                host: "127.0.0.1".into(),
                port: 1883
            })
        );
        assert_eq!(url("mqtt://mosquitto").map(|u| u.port), Ok(1883));
        assert_eq!(url("tcp://broker:1884/").map(|u| u.port), Ok(1884));
        assert_eq!(url("mqtt://[::1]:1883").map(|u| u.host), Ok("::1".into()));
        for bad in [
            "",
            "http://x:1",
            "mqtt://",
            "mqtt://x:0",
            "mqtt://x:port",
            "mqtt://u@x:1",
        ] {
            assert!(url(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_full_batch_of_the_longest_ids_fits_a_packet() {
        let id = "9".repeat(32);
        let batch = vec![id.as_str(); BATCH];
        assert!(control_payload(batch).len() < 8 * 1024);
    }

    #[test]
    fn the_payload_is_what_the_plugin_reads() {
        assert_eq!(
            control_payload(["1", "22"]),
            br#"{"closed":["1","22"]}"#.to_vec()
        );
    }
}
