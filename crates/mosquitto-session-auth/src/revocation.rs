//! Push revocation: the session manager publishes closed sessions to the control topic
//! [`CONTROL_TOPIC`] as a [`ControlMessage`], each with the time until which its tokens must
//! be refused; the plugin disconnects every connected device of those sessions (without
//! their wills), ends the grants of their offline sessions, and refuses their tokens until
//! that time, exactly: no retention setting of its own to keep in step with the service.
//! The same message may carry kicked devices ([`crate::kicks`]) and a sync request
//! ([`crate::presence`]); [`ControlOutcome`] is what the broker must then do.
//!
//! The refusals (closes and kicks) are kept in the plugin's state file too ([`crate::state_file`]), written
//! before the devices are disconnected (and before Mosquitto acknowledges the control
//! message), so a broker restarted while the service is down still refuses them.
//!
//! Only a client the plugin admitted, whose token's `publ` grants cover the control topic,
//! may send such a message. Device tokens grant their session tree only, so no device can.
//! (Mosquitto 2.0 also runs the ACL WRITE check, which asks the plugin the same question,
//! before it hands a `$CONTROL/...` message to the plugin; the check here does not rely
//! on that.)

use std::fmt;

use session_token::ClosedSession;

use crate::expiring::ExpiringSet;

/// The topic the plugin listens on for revocations.
pub const CONTROL_TOPIC: &str = session_token::CONTROL_TOPIC;

/// Why a control message was ignored. Printed in the broker log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlRefusal {
    /// The sender's token does not grant publishing to the control topic (or it has no
    /// valid token at all).
    NotGranted,
    /// The payload is not a control message.
    Malformed(String),
}

impl fmt::Display for ControlRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlRefusal::NotGranted => {
                write!(f, "its token does not grant publishing to {CONTROL_TOPIC}")
            }
            ControlRefusal::Malformed(error) => write!(f, "malformed payload: {error}"),
        }
    }
}

/// What a control message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlOutcome {
    /// The session ids now refused.
    pub sessions: Vec<String>,
    /// Client ids to disconnect: the connected devices of the closed sessions.
    pub closed_clients: Vec<String>,
    /// The devices kicked, as `"{sid}/{client}"`.
    pub kicked_devices: Vec<String>,
    /// Client ids to disconnect: the kicked devices' connections of an older generation.
    pub kicked_clients: Vec<String>,
    /// The ids (`jti`) of the tokens revoked.
    pub revoked_tokens: Vec<String>,
    /// Client ids to disconnect: the connections holding a revoked token.
    pub revoked_clients: Vec<String>,
    /// A sync request id, answered once the disconnects are done.
    pub sync: Option<String>,
}

/// Closed session ids and until when they are refused.
#[derive(Debug, Default)]
pub(crate) struct RevokedSessions {
    until: ExpiringSet,
}

impl RevokedSessions {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Refuses `session_id` until `until` (a later close extends, never shortens it).
    pub(crate) fn insert(&mut self, session_id: &str, until: u64) {
        if self
            .until
            .get(session_id)
            .is_some_and(|previous| previous >= until)
        {
            return;
        }
        self.until.set(session_id, until);
    }

    /// Is `session_id` refused at `now`?
    pub(crate) fn is_revoked(&self, session_id: &str, now: u64) -> bool {
        self.until.get(session_id).is_some_and(|until| now < until)
    }

    /// Forgets the entries whose end has passed; true when any was forgotten.
    pub(crate) fn forget_expired(&mut self, now: u64) -> bool {
        let mut forgot = false;
        while self.until.pop_due(now).is_some() {
            forgot = true;
        }
        forgot
    }

    /// Every refused session and its end, for the state file.
    pub(crate) fn closed_sessions(&self) -> impl Iterator<Item = ClosedSession> + '_ {
        self.until.iter().map(|(sid, until)| ClosedSession {
            sid: sid.to_owned(),
            until,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.until.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::ClientHandle;
    use crate::decisions::{ConnectAttempt, Refusal};
    use crate::plugin::Plugin;
    use crate::test_fixtures::{sign, start_plugin, NOW, RSA_PUBLIC};
    use session_token::{Claims, DeviceGrant};

    fn device_claims(session: &str, client: &str) -> Claims {
        Claims::for_device(&DeviceGrant {
            issuer: "ism",
            client,
            session_id: session,
            issued_at: NOW,
            lifetime_secs: 600,
            token_id: client,
            generation: 0,
        })
    }

    const LINK: &str = "$session-manager";

    fn control_claims() -> Claims {
        Claims {
            sid: String::new(),
            subs: Vec::new(),
            publ: vec![CONTROL_TOPIC.to_owned()],
            acl: Vec::new(),
            ..device_claims("0", LINK)
        }
    }

    fn plugin(dir: &tempfile::TempDir) -> Plugin {
        start_plugin(dir, &[("public_key_file", RSA_PUBLIC), ("issuer", "ism")])
    }

    fn connect(
        plugin: &mut Plugin,
        handle: usize,
        claims: &Claims,
        now: u64,
    ) -> Result<(), Refusal> {
        let token = sign(claims);
        let attempt = ConnectAttempt {
            username: Some(&claims.sub),
            password: Some(&token),
            client_id: Some(&claims.sub),
            persistent: false,
            certificate: None,
        };
        plugin
            .authenticate(ClientHandle(handle), attempt, now)
            .map(drop)
    }

    fn closing(sessions: &[(&str, u64)]) -> Vec<u8> {
        test_support::control_message::closing(sessions).to_payload()
    }

    #[test]
    fn closing_a_session_disconnects_its_clients_and_refuses_its_tokens() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut plugin = plugin(&dir);
        connect(&mut plugin, 1, &device_claims("111", "a1"), NOW).expect("a1");
        connect(&mut plugin, 2, &device_claims("111", "a2"), NOW).expect("a2");
        connect(&mut plugin, 3, &device_claims("222", "b"), NOW).expect("b");
        connect(&mut plugin, 9, &control_claims(), NOW).expect("control");

        let revoked = plugin
            .control(
                Some(LINK),
                &closing(&[("111", NOW + 600), ("", NOW + 600)]),
                NOW,
            )
            .expect("accepted");
        assert_eq!(revoked.sessions, vec!["111"]);
        let mut clients = revoked.closed_clients;
        clients.sort();
        assert_eq!(clients, vec!["a1", "a2"]);

        assert_eq!(
            connect(&mut plugin, 4, &device_claims("111", "a3"), NOW + 1),
            Err(Refusal::SessionClosed)
        );
        assert!(connect(&mut plugin, 5, &device_claims("222", "b2"), NOW + 1).is_ok());
    }

    #[test]
    fn a_revocation_lasts_exactly_until_its_end() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut plugin = plugin(&dir);
        connect(&mut plugin, 9, &control_claims(), NOW).expect("control");
        plugin
            .control(Some(LINK), &closing(&[("111", NOW + 60)]), NOW)
            .expect("accepted");
        assert_eq!(
            connect(&mut plugin, 1, &device_claims("111", "a"), NOW + 59),
            Err(Refusal::SessionClosed)
        );
        plugin.tick(NOW + 59);
        assert_eq!(plugin.revoked_sessions(), 1);
        plugin.tick(NOW + 60);
        assert_eq!(plugin.revoked_sessions(), 0);
        assert!(connect(&mut plugin, 1, &device_claims("111", "a"), NOW + 60).is_ok());
    }

    #[test]
    fn devices_and_strangers_cannot_revoke() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut plugin = plugin(&dir);
        connect(&mut plugin, 1, &device_claims("111", "a"), NOW).expect("a");
        let payload = closing(&[("111", NOW + 600)]);
        for sender in [Some("a"), Some("stranger"), None] {
            assert_eq!(
                plugin.control(sender, &payload, NOW),
                Err(ControlRefusal::NotGranted)
            );
        }
        assert_eq!(plugin.revoked_sessions(), 0);
        assert!(connect(&mut plugin, 2, &device_claims("111", "a2"), NOW).is_ok());
    }

    #[test]
    fn an_expired_control_token_cannot_revoke() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut plugin = plugin(&dir);
        connect(&mut plugin, 9, &control_claims(), NOW).expect("control");
        assert_eq!(
            plugin.control(Some(LINK), &closing(&[("1", NOW + 900)]), NOW + 600),
            Err(ControlRefusal::NotGranted)
        );
    }

    #[test]
    fn malformed_payloads_change_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut plugin = plugin(&dir);
        connect(&mut plugin, 9, &control_claims(), NOW).expect("control");
        for payload in [
            &b""[..],
            b"not json",
            br#"{"closed":"111"}"#,
            br#"{"closed":["111"]}"#,
            br#"{"closed":[{"sid":"111"}]}"#,
            br#"{"closed":[{"sid":"111","until":-1}]}"#,
            br#"{"closed":[],"more":1}"#,
            b"\xff\xfe",
        ] {
            assert!(
                matches!(
                    plugin.control(Some(LINK), payload, NOW),
                    Err(ControlRefusal::Malformed(_))
                ),
                "{payload:?}"
            );
        }
        assert_eq!(plugin.revoked_sessions(), 0);
    }

    #[test]
    fn a_later_close_extends_the_retention() {
        let mut revoked = RevokedSessions::new();
        revoked.insert("1", 100);
        revoked.insert("1", 50);
        assert!(revoked.is_revoked("1", 99));
        revoked.insert("1", 200);
        revoked.forget_expired(150);
        assert!(revoked.is_revoked("1", 150));
        assert!(!revoked.is_revoked("1", 200));
        revoked.forget_expired(200);
        assert_eq!(revoked.len(), 0);
    }
}
