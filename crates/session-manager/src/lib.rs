//! IoT Session Manager service.
//!
//! An operator creates a *session* on the admin port and gets its id and PIN; a device
//! that knows both joins it on the public port and receives a short-lived JWT, which the
//! MQTT broker (with our plugin) checks to confine the device to the session's topics.
//!
//! How a request flows:
//!
//! - [`startup`] builds the [`startup::Application`]: two axum routers on two listeners
//!   (admin and public), sharing one [`state::AppState`].
//! - [`routes`] holds thin handlers. Extractors from [`extract`] parse input straight into
//!   the [`domain`] newtypes (`SessionId`, `Pin`, `ClientName`, `SessionType`), so a
//!   handler only ever sees valid values; every failure becomes an [`error::ApiError`],
//!   the one place that decides status codes and the JSON error body.
//! - [`join`] is the device's path: [`rate_limit`] (brute-force lockout per session and
//!   per [`client_ip`]), then the [`store`] (PIN check, expiry, `max_clients`, durable
//!   join record), then a [`signer`] mints the token from `session_token::Claims`.
//! - [`store`] keeps sessions in memory and in an append-only journal under the data
//!   directory; every acknowledged change is fsynced first.
//! - [`signer`] is a trait with one implementation per `MQTT_AUTH_MODE`; [`jwks`] serves
//!   its public keys. [`signing_key`] and [`keygen`] deal with local key material;
//!   [`export_key`] writes the public key of either signing mode for brokers.
//! - [`clock`] is the one source of time, held by the state (a manual clock in tests);
//!   [`secrets`] checks hashed secrets (PINs, the admin key): argon2 once, then a keyed
//!   per-process fast check.
//! - [`admin_auth`] guards the admin port; [`telemetry`] sets up logging and request
//!   spans; [`shutdown`] turns SIGTERM/SIGINT into a graceful stop.
//! - [`revocation`] tells the broker about closed sessions so it disconnects their
//!   devices at once (`ISM_BROKER_CONTROL_URL`).
//! - [`data_dir_lock`] keeps a second process off the same data directory.
//! - [`config`] is the command line; every option is also an environment variable.

pub mod admin_auth;
pub mod certs;
pub mod client_ip;
pub mod clock;
pub mod config;
pub mod data_dir_lock;
pub mod domain;
pub mod error;
pub mod export_key;
pub mod extract;
pub mod join;
pub mod jwks;
pub mod keygen;
pub mod rate_limit;
pub mod revocation;
pub mod routes;
pub mod secrets;
pub mod shutdown;
pub mod signer;
pub mod signing_key;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
