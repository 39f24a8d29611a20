//! The claims of a device token, and how they are derived from a session.
//!
//! `subs` / `publ` are the grant lists the widely used `mosquitto-jwt-auth` plugin reads;
//! `acl` carries the same rights in EMQX's rule-list format so an EMQX JWT authenticator can
//! take the same tokens. Our own plugin decides from `subs` / `publ` only.

use serde::{Deserialize, Serialize};

use crate::conductor::{CONDUCTOR_INBOX_FILTER, CONDUCTOR_PUBLISH_FILTER};
use crate::control::PRESENCE_TOPIC;

/// Claims of a token the session manager issues. `exp` is mandatory: a token without it
/// does not deserialize and is therefore refused everywhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The issuer configured for the deployment.
    pub iss: String,
    /// The client name; equals the MQTT username (and client id, by default).
    pub sub: String,
    /// The session id.
    pub sid: String,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// Not before, seconds since the epoch.
    pub nbf: u64,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Unique token id.
    pub jti: String,
    /// Filters the holder may subscribe to.
    pub subs: Vec<String>,
    /// Filters the holder may publish to.
    pub publ: Vec<String>,
    /// The same rights in EMQX's rule-list format.
    #[serde(default)]
    pub acl: Vec<AclRule>,
    /// The device's generation when the token was issued (`gen`; absent means 0). Kicking
    /// a device raises its generation, and the broker refuses the device's tokens of an
    /// older one ([`crate::KickedDevice`]) for as long as they could live.
    #[serde(rename = "gen", default, skip_serializing_if = "is_zero")]
    pub generation: u32,
}

fn is_zero(generation: &u32) -> bool {
    *generation == 0
}

/// One EMQX ACL rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclRule {
    pub permission: AclPermission,
    pub action: AclAction,
    pub topic: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AclPermission {
    Allow,
    Deny,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AclAction {
    Publish,
    Subscribe,
    All,
}

/// The broker control topic on which the service announces closed sessions; the plugin
/// disconnects their devices. Only the service's own token grants publishing to it.
pub const REVOCATION_TOPIC: &str = crate::control::CONTROL_TOPIC;

/// Every session's tree, `/+/#`: what the service's own link may read for the monitor
/// (the wildcard level after the leading slash is a session id; no `$` tree at the top
/// level, such as `$CONTROL` or `$SYS`, is reachable through it).
pub const ALL_SESSIONS_FILTER: &str = "/+/#";

/// What the service knows when it grants a device access to one session.
#[derive(Debug, Clone)]
pub struct DeviceGrant<'a> {
    pub issuer: &'a str,
    pub client: &'a str,
    pub session_id: &'a str,
    pub issued_at: u64,
    pub lifetime_secs: u64,
    pub token_id: &'a str,
    /// The device's generation (raised by each kick).
    pub generation: u32,
}

/// The topic prefix a session owns: `/{session_id}/`.
pub fn session_topic_root(session_id: &str) -> String {
    format!("/{session_id}/")
}

/// The filter granting a session's whole tree: `/{session_id}/#`.
pub fn session_topic_filter(session_id: &str) -> String {
    format!("/{session_id}/#")
}

impl Claims {
    /// Claims for a device in one session: publish and subscribe inside `/{sid}/#` only.
    pub fn for_device(grant: &DeviceGrant<'_>) -> Self {
        let tree = session_topic_filter(grant.session_id);
        Claims {
            iss: grant.issuer.to_owned(),
            sub: grant.client.to_owned(),
            sid: grant.session_id.to_owned(),
            iat: grant.issued_at,
            nbf: grant.issued_at,
            exp: grant.issued_at.saturating_add(grant.lifetime_secs),
            jti: grant.token_id.to_owned(),
            subs: vec![tree.clone()],
            publ: vec![tree.clone()],
            acl: vec![AclRule {
                permission: AclPermission::Allow,
                action: AclAction::All,
                topic: tree,
            }],
            generation: grant.generation,
        }
    }
}

impl Claims {
    /// Claims of the service's own broker login: no session (`sid` empty), publishing to
    /// [`REVOCATION_TOPIC`] and subscribing to [`crate::control::PRESENCE_TOPIC`]; for the
    /// sessions' conductors publishing to [`CONDUCTOR_PUBLISH_FILTER`] and subscribing to
    /// [`CONDUCTOR_INBOX_FILTER`] (`client` must start with [`crate::LINK_PRINCIPAL_PREFIX`]
    /// for the conductor topics to be writable); and, for the monitor, subscribing to
    /// [`ALL_SESSIONS_FILTER`] (which covers the conductor inboxes too).
    pub fn for_revocation_service(
        issuer: &str,
        client: &str,
        issued_at: u64,
        lifetime_secs: u64,
        token_id: &str,
    ) -> Self {
        Claims {
            iss: issuer.to_owned(),
            sub: client.to_owned(),
            sid: String::new(),
            iat: issued_at,
            nbf: issued_at,
            exp: issued_at.saturating_add(lifetime_secs),
            jti: token_id.to_owned(),
            subs: vec![
                PRESENCE_TOPIC.to_owned(),
                CONDUCTOR_INBOX_FILTER.to_owned(),
                ALL_SESSIONS_FILTER.to_owned(),
            ],
            publ: vec![
                REVOCATION_TOPIC.to_owned(),
                CONDUCTOR_PUBLISH_FILTER.to_owned(),
            ],
            acl: vec![
                AclRule {
                    permission: AclPermission::Allow,
                    action: AclAction::Publish,
                    topic: REVOCATION_TOPIC.to_owned(),
                },
                AclRule {
                    permission: AclPermission::Allow,
                    action: AclAction::Subscribe,
                    topic: PRESENCE_TOPIC.to_owned(),
                },
                AclRule {
                    permission: AclPermission::Allow,
                    action: AclAction::Publish,
                    topic: CONDUCTOR_PUBLISH_FILTER.to_owned(),
                },
                AclRule {
                    permission: AclPermission::Allow,
                    action: AclAction::Subscribe,
                    topic: CONDUCTOR_INBOX_FILTER.to_owned(),
                },
                AclRule {
                    permission: AclPermission::Allow,
                    action: AclAction::Subscribe,
                    topic: ALL_SESSIONS_FILTER.to_owned(),
                },
            ],
            generation: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_claims_grant_the_session_tree_in_both_formats() {
        let claims = Claims::for_device(&DeviceGrant {
            issuer: "ism",
            client: "lamp-1",
            session_id: "123456",
            issued_at: 1_000,
            lifetime_secs: 86_400,
            token_id: "t1",
            generation: 0,
        });
        assert_eq!(claims.exp, 87_400);
        assert_eq!(claims.subs, vec!["/123456/#"]);
        assert_eq!(claims.publ, vec!["/123456/#"]);
        let json = serde_json::to_value(&claims).expect("claims serialize");
        assert_eq!(
            json["acl"],
            serde_json::json!([{"permission": "allow", "action": "all", "topic": "/123456/#"}])
        );
    }

    #[test]
    fn the_revocation_service_may_publish_revocations_only() {
        let claims = Claims::for_revocation_service("ism", "session-manager-1", 10, 3600, "j");
        let acl = crate::Acl::from_claims(&claims).expect("valid grants");
        assert!(acl.may_publish(REVOCATION_TOPIC));
        assert!(!acl.may_publish("/1/x"));
        assert!(!acl.may_subscribe(REVOCATION_TOPIC));
        // Its conductor grants reach conductor topics only, and with a name that is not
        // the link's, not even those reserved for the system.
        assert!(!acl.may_publish("/1/$conductor/state"));
        assert!(acl.may_publish("/1/$conductor/in/x"));
        assert!(!acl.may_publish("/1/$presence/dev"));
        assert!(acl.may_subscribe("/+/$conductor/in/#"));
        let link = Claims::for_revocation_service("ism", "$ism-link-1", 10, 3600, "j");
        let link = crate::Acl::from_claims(&link).expect("valid grants");
        assert!(link.may_publish("/1/$conductor/state"));
        assert!(!link.may_publish("/1/$presence/dev"));
        assert!(!link.may_publish("/1/x"));
        assert!(acl.may_subscribe(PRESENCE_TOPIC));
        assert!(acl.may_receive(PRESENCE_TOPIC));
        assert!(!acl.may_publish(PRESENCE_TOPIC));
        // The monitor reads every session tree, and no other tree.
        for inside in [ALL_SESSIONS_FILTER, "/123/#", "/123/$presence/#", "/+/x"] {
            assert!(acl.may_subscribe(inside), "{inside}");
        }
        for outside in ["#", "+/#", "$SYS/#", "$CONTROL/#", "+/+/#", "$share/g/#"] {
            assert!(!acl.may_subscribe(outside), "{outside}");
        }
        assert!(acl.may_receive("/123/lamp"));
        assert!(!acl.may_receive("$SYS/broker/uptime"));
        assert!(!acl.may_receive("lamp"));
        assert!(!acl.may_publish("/123/lamp"));
        assert_eq!(claims.exp, 3610);
        assert_eq!(claims.sid, "");
    }

    #[test]
    fn the_generation_is_gen_and_left_out_while_zero() {
        let mut grant = DeviceGrant {
            issuer: "ism",
            client: "lamp-1",
            session_id: "123456",
            issued_at: 1_000,
            lifetime_secs: 60,
            token_id: "t1",
            generation: 0,
        };
        let first = serde_json::to_value(Claims::for_device(&grant)).expect("serialize");
        assert!(first.get("gen").is_none(), "{first}");
        grant.generation = 2;
        let kicked = serde_json::to_value(Claims::for_device(&grant)).expect("serialize");
        assert_eq!(kicked["gen"], 2);
        let read: Claims = serde_json::from_value(first).expect("gen is optional");
        assert_eq!(read.generation, 0);
    }

    #[test]
    fn claims_without_exp_do_not_deserialize() {
        let json =
            r#"{"iss":"i","sub":"c","sid":"1","iat":1,"nbf":1,"jti":"j","subs":[],"publ":[]}"#;
        let err = serde_json::from_str::<Claims>(json).expect_err("exp is required");
        assert!(err.to_string().contains("exp"));
    }
}
