//! The harness shared by the tests and benches of every crate in the workspace, used only
//! as a `[dev-dependencies]` entry:
//!
//! - [`service`]: the real `session-manager` binary on ports chosen by the kernel;
//! - [`mosquitto`]: a real Mosquitto loading the plugin, started race-free;
//! - [`mqtt_device`]: a full MQTT client (rumqttc) whose events a test can await;
//! - [`raw_mqtt`]: hand-driven MQTT over a plain socket, for what a full client hides;
//! - [`session_api`]: creating and joining sessions over the service's HTTP API;
//! - [`journal_file`]: session journals written straight in the on-disk format;
//! - [`fixture_tokens`]: tokens signed with the fixture keys of `session-token`;
//! - [`control_message`]: the messages that close sessions on the plugin's control topic;
//! - [`service_link`]: the service's side of the broker link (control out, presence in).

// A harness exists to stop a test at the first broken assumption, with a message saying
// which: `expect` is how it does that, so the workspace's `expect_used` does not apply here.
#![allow(clippy::expect_used)]

pub mod control_message;
pub mod fixture_tokens;
pub mod journal_file;
pub mod mosquitto;
pub mod mqtt_device;
pub mod raw_mqtt;
pub mod service;
pub mod service_link;
pub mod session_api;

/// Seconds since the Unix epoch, as token claims count time.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Where the current test or bench binary's build profile keeps its outputs:
/// `target/<profile>/deps` (the binary's own directory) and `target/<profile>`.
fn profile_dirs() -> Vec<std::path::PathBuf> {
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe
        .parent()
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf();
    let profile = deps.parent().map(std::path::Path::to_path_buf);
    std::iter::once(deps).chain(profile).collect()
}

/// The first of `ISM_TEST_RELEASE_DIR` (the release build `scripts/test` makes) and this
/// profile's output directories that holds `file`.
fn find_build_output(file: &str) -> Option<std::path::PathBuf> {
    let release = std::env::var_os("ISM_TEST_RELEASE_DIR").map(std::path::PathBuf::from);
    release
        .into_iter()
        .chain(profile_dirs())
        .map(|dir| dir.join(file))
        .find(|path| path.exists())
}
