//! Service tokens: the principal of a trusted backend (one that, say, publishes to every
//! device topic), minted by the admin API only, with grants the operator writes out.
//!
//! A service token has no session (`sid` is empty), so the client-id rule
//! ([`crate::client_id`]) makes it connect with exactly its `sub` as client id, and that
//! `sub` must start with `$`. Its `sub` is `$svc-<name>` ([`service_subject`]): reserved,
//! so no device can hold it first, and never of the shape of the service's own control
//! link (`$ism-link-...`), which some broker-side rules single out.
//!
//! The grants are explicit filters, checked here once when the token is minted
//! ([`check_service_grant`]); the broker still applies every per-message rule of
//! [`crate::acl`] to them. A grant is refused when:
//! - it is not a valid MQTT topic filter;
//! - its first level starts with `$` (`$CONTROL/...`, the service ↔ plugin channel, or
//!   `$SYS/...`, or a `$share/...` spelling: a grant is a plain filter, and a token granted
//!   a filter may subscribe to `$share/<group>/<filter>` of it anyway);
//! - its first level is a wildcard (`#`, `+/...`): every session's topics lie below `/`,
//!   so `/+/#` is what a backend reaching every device asks for, and a first-level
//!   wildcard would reach beyond the session trees, towards the reserved `$` trees that
//!   only the wildcard rule keeps out;
//! - (publish grants) it names a sub-tree of a session only the system writes
//!   (`/S/$presence/...`, `/S/$conductor/...` except `/S/$conductor/in/...`): no token may
//!   publish there ([`crate::presence::is_reserved_for_system`]), so granting it is a
//!   mistake the operator hears about. Reading them (subscribe grants) is allowed.

use std::fmt;

use crate::claims::{AclAction, AclPermission, AclRule, Claims};
use crate::topic::{TopicError, TopicFilter};

/// Prefix of a service token's `sub` and MQTT client id.
pub const SERVICE_SUBJECT_PREFIX: &str = "$svc-";

/// The `sub` (and MQTT username and client id) of the service token named `name`.
pub fn service_subject(name: &str) -> String {
    format!("{SERVICE_SUBJECT_PREFIX}{name}")
}

/// Which list a grant is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantKind {
    Subscribe,
    Publish,
}

impl fmt::Display for GrantKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GrantKind::Subscribe => "subscribe",
            GrantKind::Publish => "publish",
        })
    }
}

/// Why a filter cannot be granted to a service token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceGrantRefusal {
    /// Not a valid MQTT topic filter.
    Malformed(TopicError),
    /// Its first level starts with `$`: a reserved tree (`$CONTROL`, `$SYS`) or `$share`.
    ReservedTree,
    /// Its first level is a wildcard.
    WildcardFirstLevel,
    /// A publish grant naming a sub-tree only the system writes.
    SystemSubTree,
}

impl fmt::Display for ServiceGrantRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceGrantRefusal::Malformed(error) => write!(f, "not a topic filter: {error}"),
            ServiceGrantRefusal::ReservedTree => f.write_str(
                "topics starting with '$' ($CONTROL, $SYS, $share) can never be granted",
            ),
            ServiceGrantRefusal::WildcardFirstLevel => f.write_str(
                "a wildcard in the first level would reach beyond the session trees (towards the reserved $CONTROL tree); grant '/+/#' for every session's topics",
            ),
            ServiceGrantRefusal::SystemSubTree => f.write_str(
                "only the system publishes to a session's $presence and $conductor sub-trees (devices and backends may publish to $conductor/in/...)",
            ),
        }
    }
}

/// Checks one filter the operator wants to grant a service token, as a `kind` grant.
pub fn check_service_grant(filter: &str, kind: GrantKind) -> Result<(), ServiceGrantRefusal> {
    TopicFilter::parse(filter).map_err(ServiceGrantRefusal::Malformed)?;
    let mut levels = filter.split('/');
    let first = levels.next().unwrap_or_default();
    if first.starts_with('$') {
        return Err(ServiceGrantRefusal::ReservedTree);
    }
    if first == "#" || first == "+" {
        return Err(ServiceGrantRefusal::WildcardFirstLevel);
    }
    // `/S/<level>/...`: the level right below a session's root.
    let below_session = if first.is_empty() {
        levels.nth(1)
    } else {
        None
    };
    let system_written = below_session.is_some_and(|level| {
        level.starts_with('$') && !(level == "$conductor" && levels.next() == Some("in"))
    });
    if kind == GrantKind::Publish && system_written {
        return Err(ServiceGrantRefusal::SystemSubTree);
    }
    Ok(())
}

/// What the service knows when it mints a service token.
#[derive(Debug, Clone)]
pub struct ServiceGrant<'a> {
    pub issuer: &'a str,
    /// The token's name; its `sub` is [`service_subject`] of it.
    pub name: &'a str,
    pub issued_at: u64,
    pub lifetime_secs: u64,
    pub token_id: &'a str,
    /// Checked with [`check_service_grant`].
    pub subscribe: &'a [String],
    /// Checked with [`check_service_grant`].
    pub publish: &'a [String],
}

impl Claims {
    /// Claims of a service token: no session, its own reserved `sub`, exactly the grants
    /// given (in both formats).
    pub fn for_service(grant: &ServiceGrant<'_>) -> Self {
        let rule = |action, topic: &String| AclRule {
            permission: AclPermission::Allow,
            action,
            topic: topic.clone(),
        };
        let acl = grant
            .subscribe
            .iter()
            .map(|topic| rule(AclAction::Subscribe, topic))
            .chain(
                grant
                    .publish
                    .iter()
                    .map(|topic| rule(AclAction::Publish, topic)),
            )
            .collect();
        Claims {
            iss: grant.issuer.to_owned(),
            sub: service_subject(grant.name),
            sid: String::new(),
            iat: grant.issued_at,
            nbf: grant.issued_at,
            exp: grant.issued_at.saturating_add(grant.lifetime_secs),
            jti: grant.token_id.to_owned(),
            subs: grant.subscribe.to_vec(),
            publ: grant.publish.to_vec(),
            acl,
            generation: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client_id::{classify_client_id, ClientIdKind};
    use crate::control::{CONTROL_TOPIC, PRESENCE_TOPIC};
    use crate::Acl;

    fn backend(subscribe: &[&str], publish: &[&str]) -> Claims {
        let owned = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        Claims::for_service(&ServiceGrant {
            issuer: "ism",
            name: "backend-1",
            issued_at: 1_000,
            lifetime_secs: 3_600,
            token_id: "svc-jti",
            subscribe: &owned(subscribe),
            publish: &owned(publish),
        })
    }

    #[test]
    fn the_control_tree_can_never_be_granted_not_even_through_a_wildcard() {
        for filter in [
            "#",
            "+/#",
            "+",
            "+/session-auth/v1",
            "$CONTROL/#",
            "$CONTROL/session-auth/v1",
            CONTROL_TOPIC,
            PRESENCE_TOPIC,
            "$share/g/$CONTROL/#",
            "$share/g/#",
            "$SYS/#",
            "$CONTROL/+/v1",
        ] {
            for kind in [GrantKind::Subscribe, GrantKind::Publish] {
                let refusal = check_service_grant(filter, kind).expect_err(filter);
                assert!(
                    matches!(
                        refusal,
                        ServiceGrantRefusal::ReservedTree | ServiceGrantRefusal::WildcardFirstLevel
                    ),
                    "{filter}: {refusal}"
                );
            }
        }
    }

    #[test]
    fn malformed_filters_are_refused_with_the_rule_they_break() {
        for filter in ["", "/a/#/b", "/a+", "/x\0"] {
            let refusal = check_service_grant(filter, GrantKind::Subscribe).expect_err("malformed");
            assert!(
                matches!(refusal, ServiceGrantRefusal::Malformed(_)),
                "{filter}"
            );
        }
    }

    #[test]
    fn system_sub_trees_may_be_read_but_never_granted_for_publishing() {
        for filter in [
            "/+/$presence/#",
            "/123/$presence/lamp",
            "/+/$conductor/state",
            "/+/$conductor/#",
            "/+/$conductor/+/x",
            "/+/$other",
        ] {
            assert_eq!(
                check_service_grant(filter, GrantKind::Publish),
                Err(ServiceGrantRefusal::SystemSubTree),
                "{filter}"
            );
            assert_eq!(check_service_grant(filter, GrantKind::Subscribe), Ok(()));
        }
        for filter in [
            "/+/$conductor/in/#",
            "/+/$conductor/in",
            "/+/#",
            "/123/lamp/+",
        ] {
            assert_eq!(
                check_service_grant(filter, GrantKind::Publish),
                Ok(()),
                "{filter}"
            );
        }
    }

    #[test]
    fn a_backend_reaches_every_session_but_never_the_control_channel() {
        let claims = backend(&["/+/#"], &["/+/#"]);
        for (subscribe, publish) in [
            (&claims.subs, GrantKind::Subscribe),
            (&claims.publ, GrantKind::Publish),
        ] {
            for filter in subscribe {
                assert_eq!(check_service_grant(filter, publish), Ok(()));
            }
        }
        let acl = Acl::from_claims(&claims).expect("grants parse");
        assert!(acl.may_publish("/111/lamp/cmd"));
        assert!(acl.may_publish("/222/x"));
        assert!(acl.may_subscribe("/+/#"));
        assert!(acl.may_subscribe("$share/workers//+/lamp/#"));
        assert!(acl.may_receive("/111/$presence/lamp"));
        for topic in [CONTROL_TOPIC, PRESENCE_TOPIC, "$SYS/x"] {
            assert!(!acl.may_publish(topic), "{topic}");
            assert!(!acl.may_receive(topic), "{topic}");
        }
        for filter in ["$CONTROL/#", "#", "$share/g/$CONTROL/#", CONTROL_TOPIC] {
            assert!(!acl.may_subscribe(filter), "{filter}");
        }
        assert!(!acl.may_publish("/111/$presence/lamp"), "the broker's");
        assert!(!acl.may_publish("/111/$conductor/state"), "the conductor's");
        assert!(acl.may_publish("/111/$conductor/in/go"));
    }

    #[test]
    fn the_identity_is_reserved_and_never_the_links() {
        let claims = backend(&["/+/#"], &[]);
        assert_eq!(claims.sub, "$svc-backend-1");
        assert_eq!(claims.sid, "");
        assert_eq!((claims.iat, claims.exp), (1_000, 4_600));
        assert!(!claims.sub.starts_with("$ism-link-"));
        assert_eq!(
            classify_client_id(&claims.sub, &claims.sid, &claims.sub, false),
            Ok(ClientIdKind::System)
        );
        assert!(classify_client_id("backend-1", &claims.sid, &claims.sub, true).is_err());
        let json = serde_json::to_value(&claims).expect("serialize");
        assert_eq!(
            json["acl"],
            serde_json::json!([{"permission": "allow", "action": "subscribe", "topic": "/+/#"}])
        );
    }
}
