//! The event bus: what happened to sessions and devices, for whoever listens (the admin
//! SSE stream, webhooks, metrics).
//!
//! Producers call [`EventBus::publish`]; it never waits and never fails: the bus hands the
//! event to a bounded broadcast buffer, and a listener that falls behind loses the oldest
//! events and is told how many (see [`EventBus::subscribe`]). Nothing a listener does can
//! slow a join, a close or the broker link.
//!
//! Besides the broadcast, the bus hands each event to the webhook receivers' queues
//! ([`webhooks`], a full queue drops the event for that receiver only) and keeps the
//! deadlines of the sessions it saw created ([`expiry`]), so that the expiry task can emit
//! `session_expired` without scanning the store.
//!
//! - [`sse`]: the admin event stream's body (`GET /api/v1/events`);
//! - [`webhooks`]: one delivery worker per receiver, signed ([`webhook_signature`]);
//! - [`expiry`]: `session_expired` when a session's end passes.

pub mod expiry;
pub mod sse;
pub mod webhook_signature;
pub mod webhooks;

use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use session_token::DisconnectReason;
use tokio::sync::broadcast;

use crate::metrics::handle::LazyCounter;
use crate::metrics::EVENTS_TOTAL;

/// Events kept for listeners that fall behind, by default.
pub const DEFAULT_BUFFER: usize = 1024;

/// What happened. Serialises as `{"type": "device_connected", "data": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum EventKind {
    SessionCreated {
        session_id: String,
        session_type: String,
        /// When the session expires (seconds since the epoch); absent when it never does.
        #[serde(skip_serializing_if = "Option::is_none")]
        expires_at: Option<u64>,
    },
    SessionClosed {
        session_id: String,
    },
    SessionExpired {
        session_id: String,
    },
    DeviceJoined {
        session_id: String,
        client: String,
    },
    DeviceConnected {
        session_id: String,
        client: String,
        client_id: String,
    },
    DeviceDisconnected {
        session_id: String,
        client: String,
        client_id: String,
        reason: DisconnectReason,
    },
    DeviceKicked {
        session_id: String,
        client: String,
    },
    /// An operator called a method of the session's conductor, which answered.
    ConductorCalled {
        session_id: String,
        conductor: String,
        method: String,
        answer: String,
    },
    /// A service token (a trusted backend's, no session) was issued.
    ServiceTokenIssued {
        jti: String,
        name: String,
        expires_at: u64,
    },
    /// A service token was revoked.
    ServiceTokenRevoked {
        jti: String,
        name: String,
    },
}

impl EventKind {
    /// Every event `type` on the wire, in the order of [`EventKind::type_index`].
    pub const TYPES: [&'static str; 10] = [
        "session_created",
        "session_closed",
        "session_expired",
        "device_joined",
        "device_connected",
        "device_disconnected",
        "device_kicked",
        "conductor_called",
        "service_token_issued",
        "service_token_revoked",
    ];

    /// The event's `type` on the wire (`session_created`, ...).
    pub fn type_name(&self) -> &'static str {
        Self::TYPES[self.type_index()]
    }

    /// The position of the event's type in [`EventKind::TYPES`].
    pub fn type_index(&self) -> usize {
        match self {
            EventKind::SessionCreated { .. } => 0,
            EventKind::SessionClosed { .. } => 1,
            EventKind::SessionExpired { .. } => 2,
            EventKind::DeviceJoined { .. } => 3,
            EventKind::DeviceConnected { .. } => 4,
            EventKind::DeviceDisconnected { .. } => 5,
            EventKind::DeviceKicked { .. } => 6,
            EventKind::ConductorCalled { .. } => 7,
            EventKind::ServiceTokenIssued { .. } => 8,
            EventKind::ServiceTokenRevoked { .. } => 9,
        }
    }

    /// The session the event belongs to; empty for the events of service tokens, which
    /// belong to none (a stream filtered by session never carries them).
    pub fn session_id(&self) -> &str {
        match self {
            EventKind::SessionCreated { session_id, .. }
            | EventKind::SessionClosed { session_id }
            | EventKind::SessionExpired { session_id }
            | EventKind::DeviceJoined { session_id, .. }
            | EventKind::DeviceConnected { session_id, .. }
            | EventKind::DeviceDisconnected { session_id, .. }
            | EventKind::DeviceKicked { session_id, .. }
            | EventKind::ConductorCalled { session_id, .. } => session_id,
            EventKind::ServiceTokenIssued { .. } | EventKind::ServiceTokenRevoked { .. } => "",
        }
    }
}

/// One event as listeners receive it:
/// `{"id": "evt_...", "seq": 7, "timestamp": 1700000000123, "type": "...", "data": {...}}`.
/// `id` is unique and stable (webhook deliveries of the event reuse it); `seq` counts the
/// events of this process from 1; `timestamp` is milliseconds since the epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    pub id: String,
    pub seq: u64,
    pub timestamp: u64,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// The producers' handle; cheap to clone.
#[derive(Debug, Clone)]
pub struct EventBus {
    sender: broadcast::Sender<Arc<Event>>,
    /// The last `seq` handed out; held while an event is numbered and handed on, so that
    /// every listener and every webhook queue gets the events in `seq` order.
    sequence: Arc<Mutex<u64>>,
    /// Deadlines of the sessions created through the bus, for the expiry task.
    expiries: Arc<expiry::ExpiryIndex>,
    /// One queue per webhook receiver.
    webhooks: Arc<[webhooks::WebhookQueue]>,
    /// How the admin event streams are kept alive and ended.
    stream: sse::StreamSettings,
}

impl EventBus {
    /// A bus whose listeners may fall `buffer` events behind before they lose some.
    pub fn new(buffer: usize) -> Self {
        let (sender, _) = broadcast::channel(buffer.max(1));
        EventBus {
            sender,
            sequence: Arc::new(Mutex::new(0)),
            expiries: Arc::new(expiry::ExpiryIndex::default()),
            webhooks: Arc::new([]),
            stream: sse::StreamSettings::default(),
        }
    }

    /// This bus, with its event streams kept alive and ended as `settings` say.
    pub fn with_stream_settings(mut self, settings: sse::StreamSettings) -> Self {
        self.stream = settings;
        self
    }

    /// A new admin event stream (SSE response) of this bus's events from now on, only
    /// those of `session` when given.
    pub fn stream(&self, session: Option<String>) -> axum::response::Response {
        sse::open(self, session, &self.stream)
    }

    /// This bus, also handing every event to these webhook queues.
    pub fn with_webhooks(mut self, queues: Vec<webhooks::WebhookQueue>) -> Self {
        self.webhooks = queues.into();
        self
    }

    /// The deadlines of the sessions seen created and not closed.
    pub fn expiries(&self) -> &expiry::ExpiryIndex {
        &self.expiries
    }

    /// Hands an event to every listener; never waits. `now_ms`: milliseconds since the
    /// epoch (from the state's clock).
    ///
    /// Every event is counted, numbered and noted in the expiry index; one that nobody can
    /// receive (no admin stream open, no webhook receiver) is not stamped with an id or
    /// handed on, since nobody would see it. It still takes its `seq`: `seq` counts every
    /// event of the process (docs/API.md), so a listener that subscribes later sees the
    /// numbers the events had anyway.
    pub fn publish(&self, kind: EventKind, now_ms: u64) {
        events_total(&kind).increment(1);
        // Made before the lock when someone listens, so the lock stays brief.
        let id = self.is_heard().then(new_event_id);
        // Numbering and handing on never wait for a listener, so the lock is brief; a
        // panic cannot happen while it is held with the counter half-updated.
        let mut sequence = self.sequence.lock().unwrap_or_else(PoisonError::into_inner);
        *sequence += 1;
        match &kind {
            EventKind::SessionCreated {
                session_id,
                expires_at: Some(expires_at),
                ..
            } => self.expiries.insert(session_id, *expires_at),
            EventKind::SessionClosed { session_id } => self.expiries.remove(session_id),
            _ => {}
        }
        // Asked again under the lock: a listener that subscribed since must get it.
        if !self.is_heard() {
            return;
        }
        let event = Arc::new(Event {
            id: id.unwrap_or_else(new_event_id),
            seq: *sequence,
            timestamp: now_ms,
            kind,
        });
        for queue in self.webhooks.iter() {
            queue.offer(&event);
        }
        // A listener may have gone since: not an error, the event is simply not wanted.
        let _ = self.sender.send(event);
        drop(sequence);
    }

    /// Whether an event published now would reach anyone: an admin stream is open or a
    /// webhook receiver is configured.
    fn is_heard(&self) -> bool {
        !self.webhooks.is_empty() || self.sender.receiver_count() > 0
    }

    /// A new listener, receiving every event published from now on. A listener more than
    /// the buffer behind gets `Err(RecvError::Lagged(n))`: `n` events were dropped for it.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.sender.subscribe()
    }
}

/// A fresh event id: a random (v4) UUID from the thread's generator (no system call per
/// event).
fn new_event_id() -> String {
    format!(
        "evt_{}",
        uuid::Builder::from_random_bytes(rand::random())
            .into_uuid()
            .simple()
    )
}

/// `ism_events_total{type}` of the event's type.
fn events_total(kind: &EventKind) -> &'static LazyCounter {
    const fn of_type(index: usize) -> LazyCounter {
        LazyCounter::labelled(EVENTS_TOTAL, "type", EventKind::TYPES[index])
    }
    static BY_TYPE: [LazyCounter; EventKind::TYPES.len()] = [
        of_type(0),
        of_type(1),
        of_type(2),
        of_type(3),
        of_type(4),
        of_type(5),
        of_type(6),
        of_type(7),
        of_type(8),
        of_type(9),
    ];
    &BY_TYPE[kind.type_index()]
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus::new(DEFAULT_BUFFER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn listeners_get_events_in_order_with_a_stable_shape() {
        let bus = EventBus::new(8);
        let mut listener = bus.subscribe();
        bus.publish(
            EventKind::DeviceDisconnected {
                session_id: "123".into(),
                client: "lamp".into(),
                client_id: "lamp".into(),
                reason: DisconnectReason::Kicked,
            },
            1_700_000_000_123,
        );
        bus.publish(
            EventKind::SessionClosed {
                session_id: "123".into(),
            },
            1_700_000_000_124,
        );
        let first = listener.recv().await.expect("first event");
        let json = serde_json::to_value(first.as_ref()).expect("serialises");
        assert_eq!(json["type"], "device_disconnected");
        assert_eq!(json["seq"], 1);
        assert_eq!(json["timestamp"], 1_700_000_000_123_u64);
        assert_eq!(
            json["data"],
            serde_json::json!({"session_id": "123", "client": "lamp", "client_id": "lamp", "reason": "kicked"})
        );
        assert!(json["id"].as_str().is_some_and(|id| id.starts_with("evt_")));
        let second = listener.recv().await.expect("second event");
        assert_eq!(second.seq, 2);
        assert_eq!(second.kind.session_id(), "123");
    }

    #[tokio::test]
    async fn a_listener_that_falls_behind_is_told_how_many_it_lost() {
        let bus = EventBus::new(2);
        let mut listener = bus.subscribe();
        for n in 0..5 {
            bus.publish(
                EventKind::SessionExpired {
                    session_id: n.to_string(),
                },
                0,
            );
        }
        assert!(matches!(
            listener.recv().await,
            Err(broadcast::error::RecvError::Lagged(3))
        ));
        assert_eq!(listener.recv().await.map(|e| e.seq).ok(), Some(4));
    }

    #[tokio::test]
    async fn an_event_nobody_hears_still_takes_its_seq_and_keeps_the_expiry_index() {
        let bus = EventBus::new(8);
        bus.publish(
            EventKind::SessionCreated {
                session_id: "123".into(),
                session_type: "default".into(),
                expires_at: Some(100),
            },
            0,
        );
        bus.publish(
            EventKind::SessionCreated {
                session_id: "456".into(),
                session_type: "default".into(),
                expires_at: Some(200),
            },
            0,
        );
        bus.publish(
            EventKind::DeviceJoined {
                session_id: "123".into(),
                client: "lamp".into(),
            },
            0,
        );
        assert_eq!(bus.expiries().len(), 2);
        let mut listener = bus.subscribe();
        bus.publish(
            EventKind::SessionClosed {
                session_id: "123".into(),
            },
            0,
        );
        let heard = listener.recv().await.expect("the event after subscribing");
        assert_eq!(heard.seq, 4, "the unheard events were numbered too");
        assert!(heard.id.starts_with("evt_"));
        assert_eq!(
            bus.expiries().take_due(1000, 10),
            vec![("456".to_owned(), 200)]
        );
        drop(listener);
        bus.publish(
            EventKind::SessionExpired {
                session_id: "456".into(),
            },
            0,
        );
        let mut late = bus.subscribe();
        bus.publish(
            EventKind::SessionExpired {
                session_id: "789".into(),
            },
            0,
        );
        assert_eq!(late.recv().await.map(|event| event.seq).ok(), Some(6));
    }

    #[test]
    fn every_type_is_counted_under_its_own_name() {
        let kinds = [
            EventKind::SessionCreated {
                session_id: "1".into(),
                session_type: "default".into(),
                expires_at: None,
            },
            EventKind::SessionClosed {
                session_id: "1".into(),
            },
            EventKind::SessionExpired {
                session_id: "1".into(),
            },
            EventKind::DeviceJoined {
                session_id: "1".into(),
                client: "c".into(),
            },
            EventKind::DeviceConnected {
                session_id: "1".into(),
                client: "c".into(),
                client_id: "c".into(),
            },
            EventKind::DeviceDisconnected {
                session_id: "1".into(),
                client: "c".into(),
                client_id: "c".into(),
                reason: DisconnectReason::Kicked,
            },
            EventKind::DeviceKicked {
                session_id: "1".into(),
                client: "c".into(),
            },
        ];
        for kind in &kinds {
            assert_eq!(
                events_total(kind).label(),
                Some(("type", kind.type_name())),
                "{kind:?}"
            );
        }
    }
}
