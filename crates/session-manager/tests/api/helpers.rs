//! The one harness every API test uses: `spawn_app()` builds the real `Application` on
//! port 0 with a fresh temporary data directory, serves it in the background, and hands
//! back URLs and a client. `spawn_app_with` changes the configuration first; the app's
//! clock is a [`ManualClock`] that moves only when a test calls [`TestApp::advance_clock`]
//! (wall time never passes by itself, so expiry and lockouts need no sleeping). Tests that
//! need the real binary use `start_service`, a [`ServiceProcess`] on top of the shared
//! launcher (`test_support::service`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use session_manager::clock::ManualClock;
use session_manager::config::Config;
use session_manager::shutdown::Shutdown;
use session_manager::startup::Application;
use tempfile::TempDir;
use test_support::service::Launch;
use test_support::session_api;
pub use test_support::session_api::CreatedSession;

pub struct TestApp {
    pub admin_url: String,
    pub public_url: String,
    pub client: reqwest::Client,
    pub shutdown: Shutdown,
    pub server: tokio::task::JoinHandle<Result<(), session_manager::error::Error>>,
    /// Kept so the directory lives as long as the app.
    pub data_dir: TempDir,
    /// The app's clock.
    pub clock: Arc<ManualClock>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    let data_dir = tempfile::tempdir().expect("temp dir");
    spawn_app_in(data_dir, configure).await
}

/// Starts an app on an existing data directory (restarts).
pub async fn spawn_app_in(data_dir: TempDir, configure: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = Config::for_tests(PathBuf::from(data_dir.path()));
    configure(&mut config);
    let clock = Arc::new(ManualClock::new());
    let app = Application::build_with_clock(config, clock.clone())
        .await
        .expect("application builds");
    let admin_url = format!("http://{}", app.admin_addr());
    let public_url = format!("http://{}", app.public_addr());
    let shutdown = app.shutdown_handle();
    let server = tokio::spawn(app.run_until_stopped());
    TestApp {
        admin_url,
        public_url,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("http client"),
        shutdown,
        server,
        data_dir,
        clock,
    }
}

impl TestApp {
    /// Lets `by` pass on the app's clock (wall and monotonic time).
    pub fn advance_clock(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// Stops the app gracefully and returns its data directory.
    pub async fn stop(self) -> TempDir {
        self.shutdown.trigger();
        self.server
            .await
            .expect("server task")
            .expect("server stops cleanly");
        self.data_dir
    }

    pub async fn create_session(&self, body: Value) -> CreatedSession {
        session_api::create_session(&self.client, &self.admin_url, &body).await
    }

    pub async fn join(&self, session_id: &str, pin: &str, client: &str) -> Response {
        self.join_from(session_id, pin, client, None).await
    }

    /// Joins with an `X-Forwarded-For` header.
    pub async fn join_from(
        &self,
        session_id: &str,
        pin: &str,
        client: &str,
        forwarded_for: Option<&str>,
    ) -> Response {
        let mut request = self
            .client
            .post(format!(
                "{}/api/v1/sessions/{session_id}/join",
                self.public_url
            ))
            .json(&json!({ "pin": pin, "client": client }));
        if let Some(forwarded_for) = forwarded_for {
            request = request.header("x-forwarded-for", forwarded_for);
        }
        request.send().await.expect("request")
    }

    pub async fn admin_get(&self, path: &str) -> Response {
        self.client
            .get(format!("{}{path}", self.admin_url))
            .send()
            .await
            .expect("request")
    }

    pub async fn public_get(&self, path: &str) -> Response {
        self.client
            .get(format!("{}{path}", self.public_url))
            .send()
            .await
            .expect("request")
    }
}

/// A PIN of the right shape that is not `pin`.
pub fn wrong_pin(pin: &str) -> String {
    pin.chars()
        .map(|c| if c == '0' { '1' } else { '0' })
        .collect()
}

/// Asserts the JSON error shape and returns the code.
pub async fn error_code(response: Response, status: StatusCode) -> String {
    assert_eq!(response.status(), status);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "content type {content_type}"
    );
    let body: Value = response.json().await.expect("json error body");
    let message = body["error"]["message"].as_str().expect("error.message");
    assert!(!message.is_empty());
    body["error"]["code"]
        .as_str()
        .expect("error.code")
        .to_owned()
}

/// The real `session-manager` binary (the shared launcher, `test_support::service`),
/// serving on ports the kernel chose, with a client for it; killed when dropped.
pub struct ServiceProcess {
    pub process: test_support::service::Service,
    pub admin_url: String,
    pub public_url: String,
    pub admin_addr: std::net::SocketAddr,
    pub public_addr: std::net::SocketAddr,
    pub client: reqwest::Client,
}

/// Starts the binary with its data in `data_dir` and the given extra environment.
pub fn start_service(data_dir: &std::path::Path, env: &[(&str, &str)]) -> ServiceProcess {
    start_service_with(Launch::new(), data_dir, env)
}

/// As [`start_service`], from a prepared launch (e.g. [`Launch::wrapped`] in `prlimit`).
pub fn start_service_with(
    launch: Launch,
    data_dir: &std::path::Path,
    env: &[(&str, &str)],
) -> ServiceProcess {
    let process = launch
        .data_dir(&data_dir.join("data"))
        .log_file(data_dir.join(format!("service-{}.log", rand_suffix())))
        .env("RUST_LOG", "info")
        .envs(env)
        .start();
    ServiceProcess {
        admin_url: process.admin.clone(),
        public_url: process.public.clone(),
        admin_addr: process.admin_addr,
        public_addr: process.public_addr,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("http client"),
        process,
    }
}

fn rand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl ServiceProcess {
    /// SIGTERM, then waits (up to 15 s) for a clean exit.
    pub fn stop(mut self) {
        let status = self.process.signal_and_wait("-TERM");
        assert!(status.success(), "exit status {status}");
    }

    pub async fn create_session(&self, body: Value) -> CreatedSession {
        session_api::create_session(&self.client, &self.admin_url, &body).await
    }

    pub async fn join(&self, session_id: &str, pin: &str, client: &str) -> Response {
        session_api::join(&self.client, &self.public_url, session_id, pin, client).await
    }

    pub fn log(&self) -> String {
        self.process.log()
    }
}
