//! `mosquitto-session-auth`: a Mosquitto 2.x plugin (v5 plugin interface) that admits
//! devices holding IoT Session Manager tokens and confines them to their session.
//!
//! The broker loads the `cdylib` built from this crate. Its C ABI shell, [`ffi`], is the
//! only `unsafe` code; it turns broker events into calls on [`Plugin`], which is plain,
//! unit-tested Rust:
//!
//! - [`config`]: the `plugin_opt_*` settings and loading the verification keys.
//! - [`decisions`]: may a CONNECT in (token valid, username is its `sub`, the client id is
//!   one the token may use), may a client subscribe / publish / receive on a topic.
//! - [`clients`]: per-client-id state (session, expiry, key id, parsed grants, which
//!   connection holds the id), kept past the disconnect for wills and offline queues, so
//!   the message path does no token work; a deadline index for the periodic sweep.
//! - [`plugin`]: the state and one method per broker event.
//! - [`reload`]: re-reading the keys on SIGHUP and revoking clients of withdrawn keys.
//! - [`revocation`]: closed sessions pushed on `$CONTROL/session-auth/v1`; their devices
//!   are disconnected and their tokens refused until the end the service sends.
//! - [`state_file`]: closed sessions and persistent client sessions, kept on disk across
//!   broker restarts.
//!
//! Every token rule (signature, algorithm pinning, time claims, topic filter coverage)
//! lives in the `session-token` crate, shared with the service that mints the tokens.

pub mod clients;
pub mod config;
pub mod decisions;
pub mod error;
pub mod ffi;
pub mod plugin;
pub mod reload;
pub mod revocation;
pub mod state_file;

pub use config::PluginConfig;
pub use error::PluginError;
pub use plugin::Plugin;
