//! The service as the store tests run it, through the shared launcher
//! (`test_support::service`): on a given data directory, in `dev_no_auth` mode, with JSON
//! logs and failure limits high enough that no test is locked out, its log in a file next
//! to the data directory.
//!
//! Test files include it with `#[path = "support/service.rs"] mod service;`.

#![allow(dead_code)]

use std::path::Path;
use std::process::ExitStatus;

use test_support::service::Launch;
pub use test_support::service::Service;

fn launch(data_dir: &Path, env: &[(&str, &str)]) -> Launch {
    Launch::new()
        .data_dir(data_dir)
        .log_file(data_dir.with_extension("log"))
        .env("MQTT_AUTH_MODE", "dev_no_auth")
        .env("ISM_IP_MAX_FAILURES", "100000")
        .env("ISM_SESSION_MAX_FAILURES", "100000")
        .envs(env)
}

/// Starts the service on `data_dir` with `env` on top of the defaults above and waits
/// until both ports answer `/healthz`.
pub async fn start(data_dir: &Path, env: &[(&str, &str)]) -> Service {
    let service = launch(data_dir, env).start();
    service.wait_until_answering().await;
    service
}

/// Runs the service on `data_dir` until it exits by itself (it must refuse to start);
/// its exit status and log.
pub fn run_to_exit(data_dir: &Path, env: &[(&str, &str)]) -> (ExitStatus, String) {
    launch(data_dir, env).run_to_exit()
}
