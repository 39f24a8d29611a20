//! Presence: which devices are connected, as the broker sees it.
//!
//! The plugin is the only one that knows when a device's connection begins and ends, so
//! it reports both:
//!
//! - to the service, as a [`PresenceMessage`] on [`crate::control::PRESENCE_TOPIC`] (a
//!   `$CONTROL` topic only the service's control link is granted to read): every connect,
//!   every disconnect with its [`DisconnectReason`], and the full list of connected devices
//!   when the service asks for it (`sync` in a [`crate::ControlMessage`]);
//! - to the session's own devices, as a retained [`DevicePresence`] on
//!   [`presence_topic`] `/{sid}/$presence/{client}`: devices may subscribe to their
//!   session's presence sub-tree and never publish there (see [`is_reserved_for_system`]).
//!
//! Times are seconds since the epoch, as everywhere in the token contract.

use serde::{Deserialize, Serialize};

/// The level inside a session's tree under which the broker keeps each device's presence.
pub const PRESENCE_LEVEL: &str = "$presence";

/// The retained presence topic of one device: `/{sid}/$presence/{client}`.
pub fn presence_topic(session_id: &str, client: &str) -> String {
    format!("/{session_id}/{PRESENCE_LEVEL}/{client}")
}

/// Is `topic` inside a sub-tree of a session that only the system writes? Those are the
/// levels right below the session root that start with `$` (`/S/$presence/...`,
/// `/S/$conductor/...`), except `/S/$conductor/in/...`, where devices address the
/// session's conductor. No token may publish there, whatever its grants say.
pub fn is_reserved_for_system(topic: &str) -> bool {
    let Some(in_session) = topic.strip_prefix('/') else {
        return false;
    };
    let Some((_session, rest)) = in_session.split_once('/') else {
        return false;
    };
    if !rest.starts_with('$') {
        return false;
    }
    !(rest.starts_with("$conductor/in/") || rest == "$conductor/in")
}

/// Why a device's connection ended, as far as the system knows.
///
/// Mosquitto 2.0 tells plugins nothing about why a connection ended, so a clean MQTT
/// DISCONNECT and a lost connection are both [`DisconnectReason::Disconnected`]; every other
/// reason is one the plugin caused or observed itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DisconnectReason {
    /// The device's token expired; the broker disconnected it.
    Expired,
    /// The device's session was closed.
    SessionClosed,
    /// An operator kicked the device.
    Kicked,
    /// The same device connected again with the same client id; the old connection was
    /// closed by the broker.
    TakenOver,
    /// The device disconnected or its connection was lost.
    Disconnected,
}

impl DisconnectReason {
    /// The reason as spelled on the wire and in the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::Expired => "expired",
            DisconnectReason::SessionClosed => "session_closed",
            DisconnectReason::Kicked => "kicked",
            DisconnectReason::TakenOver => "taken_over",
            DisconnectReason::Disconnected => "disconnected",
        }
    }
}

/// One connected device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectedDevice {
    /// The session id (the token's `sid`).
    pub sid: String,
    /// The client name (the token's `sub`).
    pub client: String,
    /// The MQTT client id the device connected with.
    pub client_id: String,
    /// The token's `jti`.
    pub jti: String,
    /// When the connection was admitted.
    pub at: u64,
}

/// One ended connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisconnectedDevice {
    /// The session id (the token's `sid`).
    pub sid: String,
    /// The client name (the token's `sub`).
    pub client: String,
    /// The MQTT client id of the ended connection.
    pub client_id: String,
    /// When the connection ended.
    pub at: u64,
    /// Why, as far as the broker knows.
    pub reason: DisconnectReason,
}

/// One part of the answer to a sync request: devices connected when the plugin answered.
/// A long list is split into parts; `done` marks the last. Parts of one answer are
/// published back to back, with no other presence message between them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnlineDevices {
    /// The request id of the `sync` this answers.
    pub sync: String,
    /// Devices connected (their `at` is when each connected).
    pub clients: Vec<ConnectedDevice>,
    /// Is this the answer's last part?
    pub done: bool,
}

/// One report from the plugin to the service: `{"connected": {...}}`,
/// `{"disconnected": {...}}` or `{"online": {...}}`. Reports travel on
/// [`crate::control::PRESENCE_TOPIC`] in batches (a JSON array, oldest first; see
/// [`PresenceMessage::batch_to_payload`]), so that a broker with many connects and
/// disconnects publishes a few messages rather than one per event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PresenceMessage {
    /// A device was admitted and is connected.
    Connected(ConnectedDevice),
    /// A device's connection ended.
    Disconnected(DisconnectedDevice),
    /// (Part of) the list of connected devices, answering a sync request.
    Online(OnlineDevices),
}

impl PresenceMessage {
    /// Reads a batch of reports sent by the plugin (see [`PresenceBatch`]).
    pub fn batch_from_payload(payload: &[u8]) -> Result<Vec<Self>, serde_json::Error> {
        serde_json::from_slice(payload)
    }
}

/// Reports gathered into one payload for [`crate::control::PRESENCE_TOPIC`]: a compact JSON
/// array, oldest report first. Each report is encoded once, as it is added.
#[derive(Debug, Clone, Default)]
pub struct PresenceBatch {
    /// `[` and the reports so far, comma-separated; empty while no report was added.
    json: Vec<u8>,
    reports: usize,
}

impl PresenceBatch {
    /// A batch of `reports`, in order.
    pub fn of<'a>(reports: impl IntoIterator<Item = &'a PresenceMessage>) -> Self {
        let mut batch = Self::default();
        for report in reports {
            batch.push(report);
        }
        batch
    }

    /// Adds `report` after the others.
    pub fn push(&mut self, report: &PresenceMessage) {
        self.json.push(if self.reports == 0 { b'[' } else { b',' });
        // Serialising plain strings and integers into memory cannot fail.
        let _ = serde_json::to_writer(&mut self.json, report);
        self.reports += 1;
    }

    /// How many reports it holds.
    pub fn len(&self) -> usize {
        self.reports
    }

    /// Does it hold no report?
    pub fn is_empty(&self) -> bool {
        self.reports == 0
    }

    /// The bytes of its payload so far.
    pub fn byte_len(&self) -> usize {
        self.json.len() + 1
    }

    /// The payload: the JSON array (`[]` when empty).
    pub fn into_payload(mut self) -> Vec<u8> {
        if self.reports == 0 {
            return b"[]".to_vec();
        }
        self.json.push(b']');
        self.json
    }
}

/// The retained message on a device's [`presence_topic`], for the session's devices:
/// `{"online": true, "at": 1700000000}` or
/// `{"online": false, "at": 1700000100, "reason": "kicked"}`. An empty retained message
/// (which deletes it) once the device's session is over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevicePresence {
    /// Is the device connected?
    pub online: bool,
    /// When it connected (online) or disconnected (offline).
    pub at: u64,
    /// Why it disconnected; absent while online.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<DisconnectReason>,
}

impl DevicePresence {
    /// The retained payload (compact JSON).
    pub fn to_payload(&self) -> Vec<u8> {
        // Serialising a bool, an integer and a unit enum cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_reports_travel_as_json_arrays() {
        let connected = PresenceMessage::Connected(ConnectedDevice {
            sid: "123".into(),
            client: "lamp".into(),
            client_id: "lamp".into(),
            jti: "j1".into(),
            at: 10,
        });
        let gone = PresenceMessage::Disconnected(DisconnectedDevice {
            sid: "123".into(),
            client: "lamp".into(),
            client_id: "lamp".into(),
            at: 11,
            reason: DisconnectReason::TakenOver,
        });
        let batch = vec![connected, gone];
        let written = PresenceBatch::of(&batch);
        assert_eq!((written.len(), written.is_empty()), (2, false));
        let expected_len = written.byte_len();
        let payload = written.into_payload();
        assert_eq!(
            payload,
            br#"[{"connected":{"sid":"123","client":"lamp","client_id":"lamp","jti":"j1","at":10}},{"disconnected":{"sid":"123","client":"lamp","client_id":"lamp","at":11,"reason":"taken_over"}}]"#
                .to_vec()
        );
        assert_eq!(payload.len(), expected_len);
        assert_eq!(PresenceBatch::default().into_payload(), b"[]".to_vec());
        assert_eq!(
            PresenceMessage::batch_from_payload(&payload).ok(),
            Some(batch)
        );
        let online = br#"[{"online":{"sync":"r1","clients":[],"done":true}}]"#;
        assert!(matches!(
            PresenceMessage::batch_from_payload(online).as_deref(),
            Ok([PresenceMessage::Online(OnlineDevices { done: true, .. })])
        ));
        assert!(PresenceMessage::batch_from_payload(br#"[{"left":{}}]"#).is_err());
        assert!(
            PresenceMessage::batch_from_payload(br#"{"connected":{}}"#).is_err(),
            "a report outside a batch"
        );
    }

    #[test]
    fn reasons_are_spelled_as_on_the_wire() {
        for reason in [
            DisconnectReason::Expired,
            DisconnectReason::SessionClosed,
            DisconnectReason::Kicked,
            DisconnectReason::TakenOver,
            DisconnectReason::Disconnected,
        ] {
            assert_eq!(
                serde_json::to_string(&reason).ok(),
                Some(format!("\"{}\"", reason.as_str()))
            );
        }
    }

    #[test]
    fn device_presence_leaves_out_the_reason_while_online() {
        let online = DevicePresence {
            online: true,
            at: 5,
            reason: None,
        };
        assert_eq!(online.to_payload(), br#"{"online":true,"at":5}"#.to_vec());
        let offline = DevicePresence {
            online: false,
            at: 6,
            reason: Some(DisconnectReason::Kicked),
        };
        assert_eq!(
            offline.to_payload(),
            br#"{"online":false,"at":6,"reason":"kicked"}"#.to_vec()
        );
    }

    #[test]
    fn system_sub_trees_are_reserved_except_the_conductor_inbox() {
        assert_eq!(presence_topic("123", "lamp"), "/123/$presence/lamp");
        for topic in [
            "/123/$presence/lamp",
            "/123/$presence",
            "/123/$conductor/state",
            "/123/$anything",
        ] {
            assert!(is_reserved_for_system(topic), "{topic}");
        }
        for topic in [
            "/123/lamp",
            "/123/lamp/$presence",
            "/123/$conductor/in/x",
            "/123/$conductor/in",
            "123/$presence/x",
            "$SYS/x",
            "/123",
        ] {
            assert!(!is_reserved_for_system(topic), "{topic}");
        }
    }
}
