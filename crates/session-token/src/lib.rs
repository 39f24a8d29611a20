//! The token contract of IoT Session Manager.
//!
//! Both the session manager (which mints tokens) and the Mosquitto plugin (which checks
//! them) depend on this crate, so the token format and the access rules exist exactly once.
//!
//! - [`claims`]: the JWT claims a device token carries, and how they are built for a session.
//! - [`conductor`]: the topics of a session's conductor and who may write them.
//! - [`topic`]: MQTT topic names and topic filters, parsed by the MQTT 5 rules, and the
//!   coverage relation the access rules are made of.
//! - [`acl`]: publish / subscribe / read decisions for one token's grants.
//! - [`keys`]: public keys as JWKs with RFC 7638 thumbprints as key ids.
//! - [`verify`]: checking a token against a key set, with the algorithm pinned by the key.
//! - [`client_id`]: which MQTT client ids a token may connect with.
//! - [`control`]: the messages of the service ↔ plugin control channel.
//! - [`presence`]: who is connected, as the plugin reports it to the service and to devices.
//! - [`service`]: service tokens for trusted backends: their identity and which grants they may hold.
//! - [`certificate`]: what a client certificate carries (the token and the identity).
//!
//! The crate is pure: no I/O, no clocks (callers pass `now`), no async.

pub mod acl;
pub mod certificate;
pub mod claims;
pub mod client_id;
pub mod conductor;
pub mod control;
pub mod keys;
pub mod presence;
pub mod service;
pub mod topic;
pub mod verify;

pub use acl::Acl;
pub use certificate::{
    certificate_identity, token_extension_value, TOKEN_EXTENSION_OID, TOKEN_EXTENSION_OID_TEXT,
};
pub use claims::{AclAction, AclPermission, AclRule, Claims, DeviceGrant};
pub use client_id::{classify_client_id, scoped_client_id, ClientIdKind, ClientIdRefusal};
pub use conductor::{
    conductor_inbox, conductor_state_topic, conductor_topic_root, is_conductor_topic,
    CONDUCTOR_INBOX_FILTER, CONDUCTOR_PUBLISH_FILTER, LINK_PRINCIPAL_PREFIX,
};
pub use control::{
    ClosedSession, ControlMessage, KickedDevice, RevokedToken, CONTROL_TOPIC, PRESENCE_TOPIC,
};
pub use keys::{KeyError, KeySet, VerificationKey};
pub use presence::{
    presence_topic, ConnectedDevice, DevicePresence, DisconnectReason, DisconnectedDevice,
    OnlineDevices, PresenceBatch, PresenceMessage,
};
pub use service::{
    check_service_grant, service_subject, GrantKind, ServiceGrant, ServiceGrantRefusal,
    SERVICE_SUBJECT_PREFIX,
};
pub use topic::{TopicError, TopicFilter, TopicName};
pub use verify::{TokenVerifier, VerifiedToken, VerifyError};

/// Re-exported so callers name the same algorithm and JWK types this crate uses.
pub use jsonwebtoken::{jwk, Algorithm};
