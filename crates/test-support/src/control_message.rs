//! Control messages as the service publishes them on the plugin's control topic, built
//! from `(session id, refused until)` pairs.

use session_token::{ClosedSession, ControlMessage};

/// The control message that closes each `(session id, until)` of `sessions`.
pub fn closing(sessions: &[(&str, u64)]) -> ControlMessage {
    ControlMessage {
        closed: sessions
            .iter()
            .map(|&(sid, until)| ClosedSession {
                sid: sid.to_owned(),
                until,
            })
            .collect(),
        ..ControlMessage::default()
    }
}
