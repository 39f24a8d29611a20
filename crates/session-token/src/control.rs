//! The service ↔ plugin channel: the messages both sides exchange, defined once so the
//! service and the plugin cannot drift apart.
//!
//! **Service → plugin** on [`CONTROL_TOPIC`], a [`ControlMessage`]:
//! - `closed`: sessions that were closed, each with the time until which tokens of that
//!   session must be refused. The service knows that time exactly (the close time plus the
//!   longest token lifetime it hands out, capped by the session's own end), so the plugin
//!   keeps each revocation exactly as long as a token of that session can live and needs no
//!   retention setting of its own that must be kept in step with the service.
//! - `kicked`: devices kicked out of their session: disconnect them now and refuse their
//!   tokens of an older generation ([`crate::Claims::generation`]) until `until`.
//! - `revoked`: revoked tokens (by `jti`; service tokens are revoked this way): disconnect
//!   every client holding one now and refuse it until `until`, its `exp`.
//! - `sync`: a request for the list of connected devices, answered on [`PRESENCE_TOPIC`]
//!   (see [`crate::presence`]). The service sends it whenever its link (re)connects, so a
//!   restart of either side ends with both agreeing on who is online.
//!
//! Empty fields are left out of the wire form, so a message that only closes sessions is
//! spelled exactly as before kicks existed: a plugin that predates kicks still takes
//! closes, and refuses (and logs) only the messages carrying what it does not know.

use serde::{Deserialize, Serialize};

/// The topic of the control channel (service → plugin). No device or service token can be
/// granted it; only the service's own control link may publish to it.
pub const CONTROL_TOPIC: &str = "$CONTROL/session-auth/v1";

/// The topic of presence reports (plugin → service): only the service's control link is
/// granted to subscribe to it, and only the plugin (inside the broker) publishes there.
pub const PRESENCE_TOPIC: &str = "$CONTROL/session-auth/v1/presence";

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

/// One kicked device: disconnect every connection of client `client` in session `sid`,
/// and refuse its tokens whose generation is below `below_gen` while `now < until`. Tokens
/// issued after the kick carry `below_gen` (or more) and are admitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KickedDevice {
    /// The session id (the tokens' `sid`).
    pub sid: String,
    /// The client name (the tokens' `sub`).
    pub client: String,
    /// Tokens of this device with a generation below this one are refused.
    pub below_gen: u32,
    /// Seconds since the epoch until which they are refused: no token issued before the
    /// kick can be valid at or after this time.
    pub until: u64,
}

/// One revoked token: disconnect every client that connected with the token whose `jti`
/// is `jti`, and refuse that token while `now < until` (its `exp`: it cannot be valid
/// after).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokedToken {
    /// The token's `jti`.
    pub jti: String,
    /// Seconds since the epoch until which the token must be refused.
    pub until: u64,
}

/// A message from the service to the plugin.
///
/// `{"closed": [{"sid": "123456789", "until": 1700086400}], "kicked": [...], "sync": "r1"}`;
/// every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlMessage {
    /// Sessions closed (or still to be treated as closed) and their refusal ends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub closed: Vec<ClosedSession>,
    /// Devices kicked (or still to be treated as kicked) and their refusal ends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kicked: Vec<KickedDevice>,
    /// Asks for the list of connected devices; the answer
    /// ([`crate::presence::PresenceMessage::Online`]) carries the same request id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<String>,
    /// Tokens revoked (or still to be treated as revoked) and their refusal ends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revoked: Vec<RevokedToken>,
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
            ..ControlMessage::default()
        };
        let payload = message.to_payload();
        assert_eq!(
            payload,
            br#"{"closed":[{"sid":"123456789","until":1700086400}]}"#.to_vec(),
            "a close-only message is spelled as before kicks existed"
        );
        assert_eq!(ControlMessage::from_payload(&payload).ok(), Some(message));
    }

    #[test]
    fn kicks_and_sync_requests_round_trip() {
        let message = ControlMessage {
            kicked: vec![KickedDevice {
                sid: "123456789".into(),
                client: "lamp-1".into(),
                below_gen: 3,
                until: 1_700_086_400,
            }],
            sync: Some("r1".into()),
            ..ControlMessage::default()
        };
        let payload = message.to_payload();
        assert_eq!(
            payload,
            br#"{"kicked":[{"sid":"123456789","client":"lamp-1","below_gen":3,"until":1700086400}],"sync":"r1"}"#
                .to_vec()
        );
        assert_eq!(ControlMessage::from_payload(&payload).ok(), Some(message));
    }

    #[test]
    fn revoked_tokens_round_trip() {
        let message = ControlMessage {
            revoked: vec![RevokedToken {
                jti: "5b0c".into(),
                until: 1_700_086_400,
            }],
            ..ControlMessage::default()
        };
        let payload = message.to_payload();
        assert_eq!(
            payload,
            br#"{"revoked":[{"jti":"5b0c","until":1700086400}]}"#.to_vec()
        );
        assert_eq!(ControlMessage::from_payload(&payload).ok(), Some(message));
        assert!(ControlMessage::from_payload(br#"{"revoked":[{"jti":"x"}]}"#).is_err());
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        assert!(ControlMessage::from_payload(br#"{"closed":["1"]}"#).is_err());
        assert!(ControlMessage::from_payload(br#"{"kill":[]}"#).is_err());
        assert!(ControlMessage::from_payload(br#"{"kicked":[{"sid":"1"}]}"#).is_err());
        assert!(ControlMessage::from_payload(b"not json").is_err());
        assert_eq!(
            ControlMessage::from_payload(b"{}").ok(),
            Some(ControlMessage::default())
        );
    }
}
