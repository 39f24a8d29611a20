//! What a conductor may send: messages for the broker link's outbox, through a
//! [`ConductorScope`] that keeps each conductor inside its own session.
//!
//! The broker lets the service's link write every session's `/{sid}/$conductor/...`, so
//! the line between sessions is drawn here, in the service: a conductor only ever holds
//! the scope of its own session, and the scope refuses any topic outside
//! `/{sid}/$conductor/` (and any that is not a valid topic name) before it reaches the
//! link. The outbox is bounded and never waits: when it is full (the broker is away for
//! long), a message is dropped and counted; conductors publish state that the next beat
//! repeats.

use session_token::{conductor_state_topic, conductor_topic_root, TopicName};
use tokio::sync::mpsc;

use crate::domain::SessionId;

/// Messages waiting for the broker link.
const OUTBOX_CAPACITY: usize = 1024;

/// One message a conductor publishes (QoS 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConductorMessage {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

/// The conductors' side of the outbox.
#[derive(Debug, Clone)]
pub struct Outbox(mpsc::Sender<ConductorMessage>);

/// The broker link's side of the outbox.
pub type OutboxReceiver = mpsc::Receiver<ConductorMessage>;

/// A new outbox: the conductors' side and the link's.
pub fn outbox() -> (Outbox, OutboxReceiver) {
    let (sender, receiver) = mpsc::channel(OUTBOX_CAPACITY);
    (Outbox(sender), receiver)
}

/// Why a conductor's message was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("{0:?} is outside the conductor's own topics")]
    OutsideScope(String),
    #[error("the service has no broker link")]
    NoLink,
    #[error("the broker link's outbox is full")]
    Full,
}

/// Publishing for the conductor of one session, inside `/{sid}/$conductor/` only.
#[derive(Debug, Clone)]
pub struct ConductorScope {
    root: String,
    state_topic: String,
    outbox: Option<Outbox>,
}

impl ConductorScope {
    /// The scope of session `id`'s conductor; without an outbox (no broker link) nothing
    /// is sent.
    pub fn new(id: &SessionId, outbox: Option<Outbox>) -> Self {
        Self {
            root: conductor_topic_root(id.as_str()),
            state_topic: conductor_state_topic(id.as_str()),
            outbox,
        }
    }

    /// `/{sid}/$conductor/state`.
    pub fn state_topic(&self) -> &str {
        &self.state_topic
    }

    /// Queues `payload` for `topic`, which must lie inside `/{sid}/$conductor/`; never
    /// waits.
    pub fn publish(&self, topic: &str, payload: Vec<u8>, retain: bool) -> Result<(), ScopeError> {
        let inside = topic.len() > self.root.len() && topic.starts_with(&self.root);
        if !inside || TopicName::validate(topic).is_err() {
            return Err(ScopeError::OutsideScope(topic.to_owned()));
        }
        let outbox = self.outbox.as_ref().ok_or(ScopeError::NoLink)?;
        let message = ConductorMessage {
            topic: topic.to_owned(),
            payload,
            retain,
        };
        outbox.0.try_send(message).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => {
                metrics::counter!(crate::metrics::CONDUCTOR_MESSAGES_DROPPED_TOTAL).increment(1);
                ScopeError::Full
            }
            mpsc::error::TrySendError::Closed(_) => ScopeError::NoLink,
        })
    }

    /// Publishes the conductor's state, retained.
    pub fn publish_state(&self, payload: Vec<u8>) {
        if let Err(error) = self.publish(self.state_topic(), payload, true) {
            tracing::debug!(topic = %self.state_topic, %error, "conductor state not sent");
        }
    }

    /// Clears the retained state (an empty retained message removes it at the broker).
    pub fn clear_state(&self) {
        self.publish_state(Vec::new());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(id: &str) -> (ConductorScope, OutboxReceiver) {
        let (outbox, receiver) = outbox();
        let id = SessionId::parse(id).expect("a session id");
        (ConductorScope::new(&id, Some(outbox)), receiver)
    }

    #[test]
    fn a_conductor_publishes_inside_its_own_conductor_topics() {
        let (scope, mut sent) = scope("111111");
        assert_eq!(scope.state_topic(), "/111111/$conductor/state");
        scope
            .publish("/111111/$conductor/state", b"x".to_vec(), true)
            .expect("its own state topic");
        scope
            .publish("/111111/$conductor/out/a", b"y".to_vec(), false)
            .expect("below its own root");
        assert_eq!(
            sent.try_recv().expect("queued"),
            ConductorMessage {
                topic: "/111111/$conductor/state".into(),
                payload: b"x".to_vec(),
                retain: true
            }
        );
        assert_eq!(
            sent.try_recv().expect("queued").topic,
            "/111111/$conductor/out/a"
        );
    }

    #[test]
    fn a_conductor_cannot_publish_outside_its_session() {
        let (scope, mut sent) = scope("111111");
        for outside in [
            "/222222/$conductor/state",
            "/1111112/$conductor/state",
            "/11111/$conductor/state",
            "/111111/lamp/state",
            "/111111/$presence/lamp",
            "/111111/$conductor",
            "/111111/$conductor/",
            "/111111/$conductorx/state",
            "/111111/$conductor/+",
            "/111111/$conductor/#",
            "/111111/$conductor/a\0b",
            "$CONTROL/session-auth/v1",
            "/+/$conductor/state",
            "111111/$conductor/state",
            "",
        ] {
            assert_eq!(
                scope.publish(outside, b"x".to_vec(), true),
                Err(ScopeError::OutsideScope(outside.to_owned())),
                "{outside:?}"
            );
        }
        assert!(sent.try_recv().is_err(), "nothing reached the link");
    }

    #[test]
    fn without_a_link_nothing_is_sent_and_a_full_outbox_never_waits() {
        let id = SessionId::parse("111111").expect("a session id");
        let unlinked = ConductorScope::new(&id, None);
        assert_eq!(
            unlinked.publish("/111111/$conductor/state", vec![], true),
            Err(ScopeError::NoLink)
        );
        let (scope, _sent) = scope("111111");
        for _ in 0..OUTBOX_CAPACITY {
            scope
                .publish("/111111/$conductor/state", vec![], true)
                .expect("room");
        }
        assert_eq!(
            scope.publish("/111111/$conductor/state", vec![], true),
            Err(ScopeError::Full)
        );
    }
}
