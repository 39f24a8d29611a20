//! The topics of a session's conductor (the server-side logic the service runs per
//! session), and the one principal allowed to write them.
//!
//! Inside a session's tree `/{sid}/#`, the sub-tree `/{sid}/$conductor/...` belongs to the
//! session's conductor:
//!
//! - `/{sid}/$conductor/state` (retained): the conductor's state, which devices may read;
//! - `/{sid}/$conductor/in/...`: devices address the conductor here (the only part of the
//!   sub-tree they may publish to, see [`crate::presence::is_reserved_for_system`]).
//!
//! Conductors run inside the service and speak MQTT through the service's broker link, so
//! the link's principal ([`LINK_PRINCIPAL_PREFIX`], no session) is the only one whose
//! grants can reach the reserved part of the sub-tree ([`may_write_conductor_topics`]).
//! The service itself keeps each conductor inside its own session.

/// The level right below a session's root that holds its conductor's topics.
pub const CONDUCTOR_LEVEL: &str = "$conductor";

/// Prefix of the service's broker link principal (MQTT client id and token `sub` alike):
/// a reserved (`$`) identity no device can hold. Other principals without a session
/// (service tokens) must never be given a name with this prefix.
pub const LINK_PRINCIPAL_PREFIX: &str = "$ism-link-";

/// What the link subscribes to: every session's conductor inbox.
pub const CONDUCTOR_INBOX_FILTER: &str = "/+/$conductor/in/#";

/// What the link may publish to: every session's conductor sub-tree.
pub const CONDUCTOR_PUBLISH_FILTER: &str = "/+/$conductor/#";

/// The root of a session's conductor sub-tree: `/{sid}/$conductor/`.
pub fn conductor_topic_root(session_id: &str) -> String {
    format!("/{session_id}/{CONDUCTOR_LEVEL}/")
}

/// The retained state topic of a session's conductor: `/{sid}/$conductor/state`.
pub fn conductor_state_topic(session_id: &str) -> String {
    format!("/{session_id}/{CONDUCTOR_LEVEL}/state")
}

/// A message a device sent to its session's conductor: the session id and the topic's
/// rest below `in/` (empty for `/{sid}/$conductor/in` itself). `None` for any other topic.
pub fn conductor_inbox(topic: &str) -> Option<(&str, &str)> {
    let (session_id, rest) = topic.strip_prefix('/')?.split_once('/')?;
    let inbox = rest.strip_prefix(CONDUCTOR_LEVEL)?.strip_prefix("/in")?;
    if session_id.is_empty() || session_id.contains(['+', '#']) {
        return None;
    }
    match inbox.strip_prefix('/') {
        Some(below) => Some((session_id, below)),
        None if inbox.is_empty() => Some((session_id, "")),
        None => None,
    }
}

/// Is `topic` in some session's conductor sub-tree (`/{sid}/$conductor` or below)?
pub fn is_conductor_topic(topic: &str) -> bool {
    topic
        .strip_prefix('/')
        .and_then(|in_session| in_session.split_once('/'))
        .is_some_and(|(session_id, rest)| {
            !session_id.is_empty()
                && (rest == CONDUCTOR_LEVEL
                    || rest
                        .strip_prefix(CONDUCTOR_LEVEL)
                        .is_some_and(|below| below.starts_with('/')))
        })
}

/// May the holder of a token with session `sid` and subject `sub` write the reserved
/// conductor topics (its grants permitting)? Only the service's broker link: no session,
/// and its reserved identity. Decided once when a token's grants are parsed
/// ([`crate::Acl::from_claims`]), never per message.
pub fn may_write_conductor_topics(sid: &str, sub: &str) -> bool {
    sid.is_empty() && sub.starts_with(LINK_PRINCIPAL_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_of_a_session_conductor() {
        assert_eq!(conductor_topic_root("42"), "/42/$conductor/");
        assert_eq!(conductor_state_topic("42"), "/42/$conductor/state");
        assert!(is_conductor_topic("/42/$conductor/state"));
        assert!(is_conductor_topic("/42/$conductor"));
        assert!(is_conductor_topic("/42/$conductor/in/x"));
        for other in [
            "/42/$conductorx",
            "/42/x/$conductor/state",
            "42/$conductor/state",
            "//$conductor/state",
            "/42/$presence/a",
            "$CONTROL/session-auth/v1",
        ] {
            assert!(!is_conductor_topic(other), "{other}");
        }
    }

    #[test]
    fn only_the_link_principal_writes_conductor_topics() {
        assert!(may_write_conductor_topics("", "$ism-link-0123456789abcdef"));
        assert!(!may_write_conductor_topics(
            "42",
            "$ism-link-0123456789abcdef"
        ));
        assert!(!may_write_conductor_topics("", "$ism-service-x"));
        assert!(!may_write_conductor_topics("", "ism-link-x"));
    }

    #[test]
    fn the_inbox_names_its_session_and_the_rest() {
        assert_eq!(conductor_inbox("/42/$conductor/in/x"), Some(("42", "x")));
        assert_eq!(
            conductor_inbox("/42/$conductor/in/a/b"),
            Some(("42", "a/b"))
        );
        assert_eq!(conductor_inbox("/42/$conductor/in"), Some(("42", "")));
        for other in [
            "/42/$conductor/state",
            "/42/$conductor/inbox",
            "/42/x/$conductor/in/x",
            "//$conductor/in/x",
            "/42/$presence/in/x",
        ] {
            assert_eq!(conductor_inbox(other), None, "{other}");
        }
    }
}
