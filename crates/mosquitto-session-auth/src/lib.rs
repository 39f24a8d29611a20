//! `mosquitto-session-auth`: a Mosquitto 2.x plugin (v5 plugin interface) that admits
//! devices holding IoT Session Manager tokens and confines them to their session.
//!
//! The broker loads the `cdylib` built from this crate. Its C ABI shell, [`ffi`], is the
//! only `unsafe` code (the crate denies `unsafe_code` everywhere else); it turns broker
//! events into calls on [`plugin::Plugin`], which is plain, unit-tested Rust:
//!
//! - [`certificate`]: a client certificate taken apart (the token inside it, its identity,
//!   its end), for clients of the broker's certificate listener.
//! - [`config`]: the `plugin_opt_*` settings and loading the verification keys.
//! - [`decisions`]: may a CONNECT in (token valid, username is its `sub`, the client id is
//!   one the token may use), may a client subscribe / publish / receive on a topic.
//! - [`clients`]: per-client-id state (session, expiry, key id, parsed grants, which
//!   connection holds the id), kept past the disconnect for wills and offline queues, so
//!   the message path does no token work.
//! - [`expiring`]: keys with a deadline, swept in deadline order (client entries, closed
//!   sessions).
//! - [`kicks`]: kicked devices; their tokens of an older generation are refused until
//!   the end the service sends.
//! - [`plugin`]: the state and one method per broker event; the other modules hold the
//!   data those methods work on.
//! - [`presence`]: live device connections, and the presence reports and retained
//!   presence messages the broker publishes for them.
//! - [`reload`]: re-reading the keys on SIGHUP and revoking clients of withdrawn keys.
//! - [`revocation`]: the control messages pushed on `$CONTROL/session-auth/v1` (closed
//!   sessions, kicks, sync requests) and who may send them.
//! - [`revoked_tokens`]: revoked tokens by `jti` (service tokens), refused until their
//!   `exp`.
//! - [`state_file`]: closed sessions and persistent client sessions, kept on disk across
//!   broker restarts.
//! - [`token_cache`]: tokens already verified, so a reconnect with the same token skips
//!   the signature check; emptied on key reload, a closed session's entries dropped.
//!
//! Every token rule (signature, algorithm pinning, time claims, topic filter coverage)
//! lives in the `session-token` crate, shared with the service that mints the tokens.

#![deny(unsafe_code)]

pub(crate) mod certificate;
pub(crate) mod clients;
pub(crate) mod config;
pub(crate) mod decisions;
pub(crate) mod error;
pub(crate) mod expiring;
#[allow(unsafe_code)]
pub mod ffi;
pub(crate) mod kicks;
pub(crate) mod plugin;
pub(crate) mod presence;
pub(crate) mod reload;
pub(crate) mod revocation;
pub(crate) mod revoked_tokens;
pub(crate) mod state_file;
#[cfg(test)]
pub(crate) mod test_fixtures;
pub(crate) mod token_cache;

pub use revocation::CONTROL_TOPIC;
