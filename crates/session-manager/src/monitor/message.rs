//! One message the broker link received from a session's topic tree: what the monitor
//! logs and counts, and what a live message stream sends.
//!
//! A payload is shown as text when it is valid UTF-8 (`"encoding": "utf8"`), otherwise
//! as standard base64 (`"encoding": "base64"`), so that the common case (JSON or plain
//! text) stays readable and any payload survives the trip through JSON.

use base64::Engine as _;
use bytes::Bytes;
use serde::Serialize;

/// A message seen in the session `session_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitoredMessage {
    pub session_id: String,
    pub topic: String,
    pub payload: Bytes,
    /// The QoS it was delivered with: the publisher's, since the link subscribes with 2.
    pub qos: u8,
    /// The retain flag as delivered. The link speaks MQTT 3.1.1, where the broker sets it
    /// only on a retained message it replays because a subscription starts, and clears it
    /// on every live message.
    pub retain: bool,
    /// When the service received it, milliseconds since the epoch.
    pub time_ms: u64,
}

/// How a payload is written out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    Utf8,
    Base64,
}

impl Encoding {
    /// Its name in JSON and in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Utf8 => "utf8",
            Encoding::Base64 => "base64",
        }
    }
}

impl MonitoredMessage {
    /// The session a topic belongs to: its first level after the leading slash
    /// (`/S/...`), or `None` for a topic outside every session tree.
    pub fn session_of(topic: &str) -> Option<&str> {
        let rest = topic.strip_prefix('/')?;
        let session = rest.split('/').next()?;
        (!session.is_empty()).then_some(session)
    }

    /// The payload as text, or base64 when it is not UTF-8.
    pub fn payload_text(&self) -> (String, Encoding) {
        match std::str::from_utf8(&self.payload) {
            Ok(text) => (text.to_owned(), Encoding::Utf8),
            Err(_) => (
                base64::engine::general_purpose::STANDARD.encode(&self.payload),
                Encoding::Base64,
            ),
        }
    }

    /// The JSON of a live message stream's `message` event.
    pub fn to_json(&self) -> String {
        let (payload, encoding) = self.payload_text();
        let view = MessageView {
            session_id: &self.session_id,
            topic: &self.topic,
            payload,
            encoding,
            size: self.payload.len(),
            qos: self.qos,
            retain: self.retain,
            time: self.time_ms,
        };
        serde_json::to_string(&view).unwrap_or_else(|_| "{}".to_owned())
    }
}

/// The JSON shape of one message.
#[derive(Serialize)]
struct MessageView<'a> {
    session_id: &'a str,
    topic: &'a str,
    payload: String,
    encoding: Encoding,
    size: usize,
    qos: u8,
    retain: bool,
    time: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(payload: &'static [u8]) -> MonitoredMessage {
        MonitoredMessage {
            session_id: "123".into(),
            topic: "/123/lamp".into(),
            payload: Bytes::from_static(payload),
            qos: 1,
            retain: false,
            time_ms: 1_700_000_000_123,
        }
    }

    #[test]
    fn topics_name_their_session() {
        assert_eq!(MonitoredMessage::session_of("/123/lamp/x"), Some("123"));
        assert_eq!(MonitoredMessage::session_of("/123"), Some("123"));
        assert_eq!(MonitoredMessage::session_of("//x"), None);
        assert_eq!(MonitoredMessage::session_of("123/x"), None);
        assert_eq!(MonitoredMessage::session_of(""), None);
    }

    #[test]
    fn text_stays_text_and_bytes_become_base64() {
        let json: serde_json::Value =
            serde_json::from_str(&message(b"{\"on\":true}").to_json()).expect("JSON");
        assert_eq!(
            json,
            serde_json::json!({
                "session_id": "123", "topic": "/123/lamp", "payload": "{\"on\":true}",
                "encoding": "utf8", "size": 11, "qos": 1, "retain": false,
                "time": 1_700_000_000_123_u64
            })
        );
        let json: serde_json::Value =
            serde_json::from_str(&message(&[0xff, 0x00, 0x01]).to_json()).expect("JSON");
        assert_eq!(json["payload"], "/wAB");
        assert_eq!(json["encoding"], "base64");
        assert_eq!(json["size"], 3);
    }
}
