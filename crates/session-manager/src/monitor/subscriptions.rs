//! The broker link's side of the monitor: which subscriptions the one connection holds
//! for it, kept in step with [`super::Monitor`]'s mode and readers.
//!
//! With `ISM_MONITOR=log` the link subscribes to [`ALL_SESSIONS_FILTER`] (`/+/#`, every
//! session tree and nothing else: the wildcard never reaches a `$` tree) on every
//! connection, and live message streams read from that same subscription. With
//! `ISM_MONITOR=off` it holds `/{id}/#` for exactly the sessions someone reads: subscribed
//! when the first reader of a session arrives, unsubscribed when the last one leaves, all
//! of them again after a reconnect (the link's connections start clean). Never both for
//! one session, so the broker delivers each message once. Subscriptions are QoS 2, so a
//! message arrives with the QoS its publisher chose.
//!
//! Everything here is `try_` on the MQTT client: the link's event loop never waits for
//! the monitor. A request the client has no room for is retried after the next event.

use std::collections::HashSet;

use rumqttc::{AsyncClient, ClientError, Publish, QoS};
use session_token::claims::{session_topic_filter, ALL_SESSIONS_FILTER};

use super::Monitor;
use crate::config::MonitorMode;
use crate::metrics::MONITOR_SUBSCRIPTIONS;

/// What the link's current connection is subscribed to for the monitor.
pub struct LinkSubscriptions {
    monitor: Monitor,
    /// Sessions subscribed one by one (`ISM_MONITOR=off`).
    sessions: HashSet<String>,
    /// The readers' generation the subscriptions match; `None` before the first sync.
    synced: Option<u64>,
}

impl LinkSubscriptions {
    pub(super) fn new(monitor: Monitor) -> Self {
        LinkSubscriptions {
            monitor,
            sessions: HashSet::new(),
            synced: None,
        }
    }

    /// The link's new connection holds nothing yet: subscribes to what the monitor needs.
    /// False when the client is gone.
    pub fn connected(&mut self, client: &AsyncClient) -> bool {
        self.disconnected();
        if self.monitor.mode() == MonitorMode::Log {
            if let Err(error) = client.try_subscribe(ALL_SESSIONS_FILTER, QoS::ExactlyOnce) {
                tracing::warn!(%error, "cannot subscribe the monitor to the sessions' traffic");
                return false;
            }
            tracing::info!(
                filter = ALL_SESSIONS_FILTER,
                "monitor subscribed to every session"
            );
        }
        self.sync(client)
    }

    /// The connection ended, and its subscriptions with it.
    pub fn disconnected(&mut self) {
        self.sessions.clear();
        self.synced = None;
        metrics::gauge!(MONITOR_SUBSCRIPTIONS).set(0.0);
    }

    /// A message the link received that is not for the link itself; never waits.
    pub fn observe(&self, publish: &Publish) {
        self.monitor.observe(publish);
    }

    /// Resolves when the set of read sessions may have changed.
    pub async fn changed(&self) {
        self.monitor.readers().changed().await;
    }

    /// Brings the per-session subscriptions in line with the readers; false when the
    /// client is gone.
    pub fn sync(&mut self, client: &AsyncClient) -> bool {
        if self.monitor.mode() == MonitorMode::Log {
            // The whole tree is subscribed already.
            return true;
        }
        let readers = self.monitor.readers();
        let generation = readers.generation();
        if self.synced == Some(generation) {
            return true;
        }
        let wanted: HashSet<String> = readers.sessions().into_iter().collect();
        let gone: Vec<String> = self.sessions.difference(&wanted).cloned().collect();
        let new: Vec<String> = wanted.difference(&self.sessions).cloned().collect();
        let mut complete = true;
        for session in gone {
            match client.try_unsubscribe(session_topic_filter(&session)) {
                Ok(()) => {
                    tracing::debug!(session_id = %session, "no reader left: unsubscribed");
                    self.sessions.remove(&session);
                }
                Err(ClientError::TryRequest(_)) => complete = false,
                Err(error) => return gone_client(&error),
            }
        }
        for session in new {
            match client.try_subscribe(session_topic_filter(&session), QoS::ExactlyOnce) {
                Ok(()) => {
                    tracing::debug!(session_id = %session, "first reader: subscribed");
                    self.sessions.insert(session);
                }
                Err(ClientError::TryRequest(_)) => complete = false,
                Err(error) => return gone_client(&error),
            }
        }
        if complete {
            self.synced = Some(generation);
        }
        // Far below 2^52: exact.
        #[allow(clippy::cast_precision_loss)]
        metrics::gauge!(MONITOR_SUBSCRIPTIONS).set(self.sessions.len() as f64);
        true
    }
}

fn gone_client(error: &ClientError) -> bool {
    tracing::warn!(%error, "cannot change the monitor's subscriptions");
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::config::MonitorConfig;
    use crate::events::sse::StreamSettings;
    use rumqttc::Request;
    use std::sync::Arc;

    fn monitor(mode: MonitorMode) -> Monitor {
        let config = MonitorConfig {
            monitor: mode,
            monitor_payloads: false,
        };
        Monitor::new(
            &config,
            true,
            Arc::new(SystemClock),
            StreamSettings::default(),
        )
        .0
    }

    /// A client whose requests a test reads instead of a broker.
    fn client() -> (AsyncClient, flume::Receiver<Request>) {
        let (requests, received) = flume::bounded(16);
        (AsyncClient::from_senders(requests), received)
    }

    /// `+filter` for a subscription, `-filter` for an unsubscription.
    fn sent(requests: &flume::Receiver<Request>) -> Vec<String> {
        requests
            .try_iter()
            .flat_map(|request| match request {
                Request::Subscribe(subscribe) => subscribe
                    .filters
                    .iter()
                    .map(|f| format!("+{} qos{}", f.path, f.qos as u8))
                    .collect(),
                Request::Unsubscribe(unsubscribe) => {
                    unsubscribe.topics.iter().map(|t| format!("-{t}")).collect()
                }
                other => vec![format!("{other:?}")],
            })
            .collect::<Vec<_>>()
    }

    #[test]
    fn without_the_monitor_a_session_is_subscribed_while_someone_reads_it() {
        let monitor = monitor(MonitorMode::Off);
        let (client, requests) = client();
        let mut link = monitor.link_subscriptions();
        assert!(link.connected(&client));
        assert!(sent(&requests).is_empty(), "nothing to read yet");

        let (_rx1, first) = monitor.readers().join("123");
        assert!(link.sync(&client));
        assert_eq!(sent(&requests), ["+/123/# qos2"]);
        let (_rx2, second) = monitor.readers().join("123");
        assert!(link.sync(&client));
        drop(first);
        assert!(link.sync(&client));
        assert!(
            sent(&requests).is_empty(),
            "one subscription for all readers"
        );
        drop(second);
        assert!(link.sync(&client));
        assert_eq!(sent(&requests), ["-/123/#"]);

        // A new connection starts clean: what is read is subscribed again.
        let (_rx3, _third) = monitor.readers().join("456");
        assert!(link.sync(&client));
        assert_eq!(sent(&requests), ["+/456/# qos2"]);
        link.disconnected();
        let (client, requests) = self::client();
        assert!(link.connected(&client));
        assert_eq!(sent(&requests), ["+/456/# qos2"]);
    }

    #[test]
    fn with_the_monitor_every_session_is_one_subscription() {
        let monitor = monitor(MonitorMode::Log);
        let (client, requests) = client();
        let mut link = monitor.link_subscriptions();
        assert!(link.connected(&client));
        assert_eq!(sent(&requests), ["+/+/# qos2"]);
        let (_rx, _reader) = monitor.readers().join("123");
        assert!(link.sync(&client));
        assert!(
            sent(&requests).is_empty(),
            "a reader needs no subscription of its own: no message arrives twice"
        );
    }

    #[test]
    fn a_full_client_queue_is_retried_later() {
        let monitor = monitor(MonitorMode::Off);
        let (requests, received) = flume::bounded(1);
        let client = AsyncClient::from_senders(requests);
        let mut link = monitor.link_subscriptions();
        assert!(link.connected(&client));
        let (_rx1, _a) = monitor.readers().join("1");
        let (_rx2, _b) = monitor.readers().join("2");
        assert!(link.sync(&client));
        assert_eq!(sent(&received).len(), 1, "room for one");
        assert!(link.sync(&client));
        assert_eq!(sent(&received).len(), 1, "the other one, on the next try");
        assert!(link.sync(&client));
        assert!(sent(&received).is_empty());
    }
}
