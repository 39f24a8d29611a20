//! `mosquitto-session-auth`: a Mosquitto 2.x plugin (v5 plugin interface) that admits
//! devices holding IoT Session Manager tokens and confines them to their session.
//!
//! The broker loads the `cdylib` built from this crate. Its C ABI shell, [`ffi`], is the
//! only `unsafe` code; it turns broker events into calls on [`Plugin`], which is plain,
//! unit-tested Rust:
//!
//! - [`config`]: the `plugin_opt_*` settings and loading the verification keys.
//! - [`decisions`]: may a CONNECT in (token valid, username and client id are its `sub`),
//!   may a client subscribe / publish / receive on a topic.
//! - [`clients`]: per-connection state (expiry, key id, parsed grants), so the message path
//!   does no token work, and an expiry index for the periodic sweep.
//! - [`plugin`]: the state and one method per broker event.
//! - [`reload`]: re-reading the keys on SIGHUP and revoking clients of withdrawn keys.
//! - [`revocation`]: closed sessions pushed on `$CONTROL/session-auth/v1`; their devices
//!   are disconnected and their tokens refused.
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

pub use config::PluginConfig;
pub use error::PluginError;
pub use plugin::Plugin;
