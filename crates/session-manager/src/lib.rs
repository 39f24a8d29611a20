//! IoT Session Manager service.
//!
//! An operator creates a *session* on the admin port and gets its id and PIN; a device
//! that knows both joins it on the public port and receives a short-lived JWT, which the
//! MQTT broker (with our plugin) checks to confine the device to the session's topics.
//!
//! The map of the crate, by the kind of change each room takes:
//!
//! - Starting: `main.rs` drops empty settings from the environment ([`empty_settings`]),
//!   then hands the command line to [`cli`] (one file per subcommand:
//!   keygen, certs, export-public-key); `serve` reads its settings from [`config`], one
//!   group per part of the service (listen, signing, KMS, limits, broker link, store,
//!   admin, logging), secrets wrapped so they never print. A new setting goes into the
//!   group of the part it tunes.
//! - [`startup`] builds the [`Application`]: the store, the signer, the broker link and
//!   two listeners (admin and public, port 0 in tests) sharing one [`state::AppState`];
//!   [`shutdown`] turns SIGTERM/SIGINT into a graceful stop; [`telemetry`] sets up
//!   logging and request spans with request ids; [`metrics`] holds the metric names and
//!   the Prometheus recorder `/metrics` renders.
//! - [`routes`]: one module per resource (admin, compat, public, jwks, health), each with
//!   its handlers and its own `router()`, composed there into the two ports' routers. A
//!   new endpoint goes into its resource's module. Handlers are thin: extractors from
//!   [`extract`] parse input into the [`domain`] newtypes (`SessionId`, `Pin`,
//!   `ClientName`, `SessionType`), and every failure becomes an [`error::ApiError`], the
//!   one place that decides status codes and the JSON error body.
//! - [`join`] is the device's path: [`rate_limit`] (brute-force lockout per session and
//!   per [`client_ip`]), then the PIN check against the hash the store hands back
//!   (`join::pin_check`), then the [`store`] (expiry, `max_clients`, durable join record),
//!   then a [`signer`] mints the token from `session_token::Claims`. [`sessions`] creates
//!   sessions (a fresh PIN, hashed before the store sees it) and closes them.
//! - [`service_tokens`] issues and revokes tokens for trusted backends (no session,
//!   explicit grants checked by `session_token::check_service_grant`), recorded in the
//!   store; revocations reach the broker through [`broker`].
//! - [`store`] is the seam between the service and where sessions live: the
//!   `SessionStore` trait, which a database backend would implement, and its embedded
//!   default `store::journal::JournalStore`, memory plus an append-only journal under the
//!   data directory; every acknowledged change is fsynced first. [`data_dir_lock`] keeps
//!   a second process off the same directory.
//! - [`signer`]: the `TokenSigner` trait with one implementation per `MQTT_AUTH_MODE`,
//!   all assembling tokens with `signer::jws`; CPU-heavy work (RSA signatures, argon2)
//!   runs on fixed per-core threads ([`cpu_pool`]), never on a growing thread pool; [`signing_key`] holds local key material
//!   and [`new_file`] writes key and certificate files that must not exist yet.
//! - [`client_ca`] signs short-lived client certificates around tokens, for joins that
//!   send a CSR (the broker's certificate listener).
//! - [`admin_auth`] guards the admin port.
//! - [`clock`] is the one source of time, held by the state (a manual clock in tests);
//!   [`secrets`] checks hashed secrets (PINs, the admin key): argon2 once, then a keyed
//!   per-process fast check.
//! - [`events`]: the event bus (sessions created, closed, expired; devices joined,
//!   connected, disconnected, kicked) that the admin SSE stream and webhooks listen to.
//! - [`conductor`]: per-session server logic chosen by the session's type (the `Conductor`
//!   trait, one file per conductor, a registry), driven through the admin API and
//!   speaking MQTT through the broker link inside its own session's `$conductor` topics.
//! - [`broker`] is the link to the broker (`ISM_BROKER_CONTROL_URL`): it tells it about
//!   closed sessions and kicked devices so it disconnects them at once, and keeps the
//!   presence table of connected devices from the broker's reports.
//! - [`monitor`] watches the sessions' traffic through that link: logged and counted
//!   with `ISM_MONITOR=log`, streamed live to readers of one session either way.
//!
//! The public surface is what the binary, the integration tests and the benches use;
//! everything else is `pub(crate)`, so unused code shows up as a warning.

// Public because the integration tests and benches name items by these paths.
pub mod admin_auth;
pub mod clock;
pub mod config;
pub mod domain;
pub mod error;
pub mod join;
pub mod metrics;
pub mod shutdown;
pub mod startup;
pub mod state;
pub mod store;

pub(crate) mod broker;
pub(crate) mod cli;
pub mod client_ca;
pub(crate) mod client_ip;
pub(crate) mod conductor;
pub(crate) mod cpu_pool;
pub(crate) mod data_dir_lock;
pub(crate) mod empty_settings;
pub mod events;
pub(crate) mod extract;
pub(crate) mod monitor;
pub(crate) mod new_file;
pub(crate) mod rate_limit;
pub(crate) mod refusal_log;
pub(crate) mod routes;
pub(crate) mod secrets;
pub(crate) mod service_tokens;
pub(crate) mod sessions;
pub(crate) mod signer;
pub(crate) mod signing_key;
pub(crate) mod telemetry;

pub use cli::{run, Cli};
pub use config::Config;
pub use empty_settings::unset_empty_settings;
pub use signer::jws::{JwsHeader, SigningInput};
pub use signer::local::LocalSigner;
pub use signer::TokenSigner;
pub use signing_key::SigningKey;
pub use startup::Application;
