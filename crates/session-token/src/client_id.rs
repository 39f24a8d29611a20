//! The client-id rule: which MQTT client ids a token may connect with.
//!
//! The broker's client-id namespace is shared by every session, and a client id is how
//! MQTT decides that a new connection takes over an old one (and its persisted session).
//! Device names are unique only inside a session, so a bare name cannot be the identity
//! the join hands out. The rule:
//!
//! - **Scoped** `"{sid}/{name}"`: what the join response hands out. Only a token of session
//!   `sid` for client `name` may use it, so no holder of another session's token can ever
//!   connect under it. Names never contain `/`, so the form is unambiguous.
//! - Any other id containing `/` is reserved for scoped ids and refused.
//! - Ids starting with `$` are reserved for the system's own principals (tokens without a
//!   session, such as the service's control link), which must use exactly their `sub`,
//!   and that `sub` must itself start with `$`.
//! - **Bare** `name` (what the original clients send) and, where the broker allows it,
//!   **free** ids (any other id, e.g. a random one a client library generates) are
//!   accepted for devices too, but are first-come: the broker must refuse such an id while
//!   another session holds it (live or persisted), never hand it over.

use std::fmt;

/// The character separating session id and client name in a scoped client id.
pub const SCOPED_CLIENT_ID_SEPARATOR: char = '/';

/// Client ids starting with this are reserved for principals without a session.
pub const RESERVED_CLIENT_ID_PREFIX: char = '$';

/// The session-scoped client id a device of `session_id` named `client_name` connects with.
pub fn scoped_client_id(session_id: &str, client_name: &str) -> String {
    format!("{session_id}{SCOPED_CLIENT_ID_SEPARATOR}{client_name}")
}

/// How a permitted client id relates to its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientIdKind {
    /// `"{sid}/{sub}"`: unforgeable, nobody else's token can use it.
    Scoped,
    /// The token's `sub` itself: first-come among sessions.
    Bare,
    /// Any other id (only where free ids are allowed): first-come among sessions.
    Free,
    /// A principal without a session using its own `sub`.
    System,
}

impl ClientIdKind {
    /// Can a token of another session present this same id? If so the broker must check
    /// who holds it before admitting the connection.
    pub fn is_shared_namespace(self) -> bool {
        matches!(self, ClientIdKind::Bare | ClientIdKind::Free)
    }
}

/// Why a client id is refused for a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientIdRefusal {
    /// A scoped id of another session or client.
    ScopedToSomeoneElse,
    /// A `$` id used by a device token, or a system token using another id than its `sub`.
    Reserved,
    /// Neither the scoped id nor the bare name, and free ids are not allowed.
    NotTheClientName,
}

impl fmt::Display for ClientIdRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClientIdRefusal::ScopedToSomeoneElse => {
                "client id has the scoped form '{session}/{name}' but not the token's"
            }
            ClientIdRefusal::Reserved => "client id is reserved for the system",
            ClientIdRefusal::NotTheClientName => {
                "client id is neither '{session}/{name}' nor the token's sub"
            }
        })
    }
}

/// Decides whether a token with session `sid` and subject `sub` may connect with
/// `client_id`. `allow_free_ids` admits ids other than the scoped id and the bare name for
/// device tokens (still subject to the broker's first-come check).
pub fn classify_client_id(
    client_id: &str,
    sid: &str,
    sub: &str,
    allow_free_ids: bool,
) -> Result<ClientIdKind, ClientIdRefusal> {
    if sid.is_empty() {
        // A principal without a session: exactly its own `sub`, which must be a reserved id
        // so that no device can ever hold it first.
        return if client_id == sub && client_id.starts_with(RESERVED_CLIENT_ID_PREFIX) {
            Ok(ClientIdKind::System)
        } else {
            Err(ClientIdRefusal::Reserved)
        };
    }
    if client_id.starts_with(RESERVED_CLIENT_ID_PREFIX) {
        return Err(ClientIdRefusal::Reserved);
    }
    if let Some((id_session, id_name)) = client_id.split_once(SCOPED_CLIENT_ID_SEPARATOR) {
        return if id_session == sid && id_name == sub {
            Ok(ClientIdKind::Scoped)
        } else {
            Err(ClientIdRefusal::ScopedToSomeoneElse)
        };
    }
    if client_id == sub {
        Ok(ClientIdKind::Bare)
    } else if allow_free_ids {
        Ok(ClientIdKind::Free)
    } else {
        Err(ClientIdRefusal::NotTheClientName)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scoped_id_belongs_to_its_session_and_name_only() {
        assert_eq!(scoped_client_id("42", "lamp"), "42/lamp");
        assert_eq!(
            classify_client_id("42/lamp", "42", "lamp", false),
            Ok(ClientIdKind::Scoped)
        );
        for (sid, sub) in [("43", "lamp"), ("42", "other"), ("4", "2/lamp")] {
            assert_eq!(
                classify_client_id("42/lamp", sid, sub, true),
                Err(ClientIdRefusal::ScopedToSomeoneElse),
                "{sid} {sub}"
            );
        }
        assert!(!ClientIdKind::Scoped.is_shared_namespace());
    }

    #[test]
    fn bare_and_free_ids_are_shared_namespace() {
        assert_eq!(
            classify_client_id("lamp", "42", "lamp", false),
            Ok(ClientIdKind::Bare)
        );
        assert_eq!(
            classify_client_id("x", "42", "lamp", false),
            Err(ClientIdRefusal::NotTheClientName)
        );
        assert_eq!(
            classify_client_id("unity-8f3a", "42", "lamp", true),
            Ok(ClientIdKind::Free)
        );
        assert!(ClientIdKind::Bare.is_shared_namespace());
        assert!(ClientIdKind::Free.is_shared_namespace());
    }

    #[test]
    fn reserved_ids_are_for_system_principals_only() {
        for allow in [false, true] {
            assert_eq!(
                classify_client_id("$ism/link", "42", "$ism/link", allow),
                Err(ClientIdRefusal::Reserved)
            );
            assert_eq!(
                classify_client_id("anything/else", "42", "lamp", allow),
                Err(ClientIdRefusal::ScopedToSomeoneElse)
            );
        }
        assert_eq!(
            classify_client_id("$ism/link", "", "$ism/link", false),
            Ok(ClientIdKind::System)
        );
        assert_eq!(
            classify_client_id("other", "", "$ism/link", true),
            Err(ClientIdRefusal::Reserved)
        );
        assert_eq!(
            classify_client_id("session-manager", "", "session-manager", true),
            Err(ClientIdRefusal::Reserved),
            "a system principal's id must be one no device can hold"
        );
    }
}
