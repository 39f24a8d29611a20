//! The service ↔ plugin channel on [`CONTROL_TOPIC`]: the messages both sides exchange,
//! defined once so the service (which writes them) and the plugin (which reads them)
//! cannot drift apart.
//!
//! Service → plugin: sessions that were closed, each with the time until which tokens of
//! that session must be refused. The service knows that time exactly (the close time plus
//! the longest token lifetime it hands out, capped by the session's own end), so the
//! plugin keeps each revocation exactly as long as a token of that session can live and
//! needs no retention setting of its own that must be kept in step with the service.

use serde::{Deserialize, Serialize};

/// The topic of the control channel. No device or service token can be granted it; only
/// the service's own control link may publish to it.
pub const CONTROL_TOPIC: &str = crate::claims::REVOCATION_TOPIC;

/// One closed session: refuse every token with `sid == session_id` while `now < until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClosedSession {
    /// The session id (the tokens' `sid`).
    pub sid: String,
    /// Seconds since the epoch until which the session's tokens must be refused: no token
    /// of the session can be valid at or after this time.
    pub until: u64,
}

/// A message from the service to the plugin.
///
/// `{"closed": [{"sid": "123456789", "until": 1700086400}, ...]}`. Fields that a later
/// version adds are optional, so an older message still reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlMessage {
    /// Sessions closed (or still to be treated as closed) and their refusal ends.
    #[serde(default)]
    pub closed: Vec<ClosedSession>,
}

impl ControlMessage {
    /// The message as sent on the wire (compact JSON).
    pub fn to_payload(&self) -> Vec<u8> {
        // Serialising plain strings and integers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a message sent by the service.
    pub fn from_payload(payload: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_its_wire_form() {
        let message = ControlMessage {
            closed: vec![ClosedSession {
                sid: "123456789".into(),
                until: 1_700_086_400,
            }],
        };
        let payload = message.to_payload();
        assert_eq!(
            payload,
            br#"{"closed":[{"sid":"123456789","until":1700086400}]}"#.to_vec()
        );
        assert_eq!(ControlMessage::from_payload(&payload).ok(), Some(message));
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        assert!(ControlMessage::from_payload(br#"{"closed":["1"]}"#).is_err());
        assert!(ControlMessage::from_payload(br#"{"kill":[]}"#).is_err());
        assert!(ControlMessage::from_payload(b"not json").is_err());
        assert_eq!(
            ControlMessage::from_payload(b"{}").ok(),
            Some(ControlMessage::default())
        );
    }
}
