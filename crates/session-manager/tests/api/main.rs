//! HTTP tests of the session manager: the real application on 127.0.0.1, free ports.

mod admin;
mod admin_auth;
mod admin_origin;
mod answers;
mod bad_input;
mod binary;
mod client_certificates;
mod compat;
mod compat_drop_in;
mod conductors;
mod connections;
#[path = "../support/event_stream.rs"]
mod event_stream;
mod health;
mod helpers;
mod limits;
mod logs;
mod public;
mod refusal_logs;
mod service_tokens;
mod session_clients;
mod settings;
mod signing_keys;
mod timing;
mod tokens;
