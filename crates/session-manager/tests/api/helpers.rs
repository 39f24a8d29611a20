//! The one harness every API test uses: `spawn_app()` builds the real `Application` on
//! port 0 with a fresh temporary data directory, serves it in the background, and hands
//! back URLs and a client. `spawn_app_with` changes the configuration first; the app's
//! clock is a [`ManualClock`] that moves only when a test calls [`TestApp::advance_clock`]
//! (wall time never passes by itself, so expiry and lockouts need no sleeping). Tests that
//! need the real binary use `start_service`, a [`ServiceProcess`] on top of the shared
//! launcher (`test_support::service`). Both give access to [`Api`], one method per
//! endpoint, so a test says which endpoint it calls rather than how to build the request.

use std::ops::Deref;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};
use session_manager::clock::ManualClock;
use session_manager::config::Config;
use session_manager::shutdown::Shutdown;
use session_manager::startup::Application;
use tempfile::TempDir;
use test_support::service::Launch;
use test_support::session_api;
pub use test_support::session_api::CreatedSession;

/// The service's HTTP API as tests call it: one method per endpoint, and [`Api::admin`] /
/// [`Api::public`] for requests a test shapes itself (odd headers, bodies, methods).
pub struct Api {
    pub admin_url: String,
    pub public_url: String,
    pub client: reqwest::Client,
}

impl Api {
    pub fn new(admin_url: String, public_url: String) -> Self {
        Api {
            admin_url,
            public_url,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("http client"),
        }
    }

    /// A request to `path` on the admin port.
    pub fn admin(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.admin_url))
    }

    /// A request to `path` on the public port.
    pub fn public(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.public_url))
    }

    /// Creates a session and checks the answer's shape.
    pub async fn create_session(&self, body: Value) -> CreatedSession {
        session_api::create_session(&self.client, &self.admin_url, &body).await
    }

    /// `POST /api/v1/sessions` with `body`, whatever the answer.
    pub async fn create(&self, body: Value) -> Response {
        send(self.admin(Method::POST, "/api/v1/sessions").json(&body)).await
    }

    /// `GET /api/v1/sessions/{id}`.
    pub async fn get_session(&self, session_id: &str) -> Response {
        self.admin_get(&format!("/api/v1/sessions/{session_id}"))
            .await
    }

    /// `GET /api/v1/sessions{query}` (`query` empty or starting with `?`).
    pub async fn list(&self, query: &str) -> Response {
        self.admin_get(&format!("/api/v1/sessions{query}")).await
    }

    /// The sessions the first page lists (a JSON array).
    pub async fn listed_sessions(&self) -> Value {
        session_api::list_sessions(&self.client, &self.admin_url).await["sessions"].take()
    }

    /// The number of live sessions the first page lists.
    pub async fn live_sessions(&self) -> usize {
        self.listed_sessions()
            .await
            .as_array()
            .expect("sessions")
            .len()
    }

    /// `DELETE /api/v1/sessions/{id}`.
    pub async fn close(&self, session_id: &str) -> Response {
        session_api::close_session(&self.client, &self.admin_url, session_id).await
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
        let mut request = self.join_request(session_id, &json!({ "pin": pin, "client": client }));
        if let Some(forwarded_for) = forwarded_for {
            request = request.header("x-forwarded-for", forwarded_for);
        }
        send(request).await
    }

    /// `POST /api/v1/sessions/{id}/join` with `body`, to be sent by the caller.
    pub fn join_request(&self, session_id: &str, body: &Value) -> RequestBuilder {
        self.public(Method::POST, &format!("/api/v1/sessions/{session_id}/join"))
            .json(body)
    }

    /// The compat `GET /api/createSession{query}`.
    pub async fn compat_create(&self, query: &str) -> Response {
        self.admin_get(&format!("/api/createSession{query}")).await
    }

    /// The compat `GET /api/closeSession?id={id}`.
    pub async fn compat_close(&self, session_id: &str) -> Response {
        self.admin_get(&format!("/api/closeSession?id={session_id}"))
            .await
    }

    /// The compat `POST /api/joinSession` with `body`.
    pub async fn compat_join(&self, body: Value) -> Response {
        send(self.public(Method::POST, "/api/joinSession").json(&body)).await
    }

    /// The compat `GET /api/conductorRequest{query}`.
    pub async fn compat_conductor(&self, query: &str) -> Response {
        self.admin_get(&format!("/api/conductorRequest{query}"))
            .await
    }

    /// `GET /api/v1/sessions/{id}/conductor`.
    pub async fn conductor(&self, session_id: &str) -> Response {
        self.admin_get(&format!("/api/v1/sessions/{session_id}/conductor"))
            .await
    }

    /// `POST /api/v1/sessions/{id}/conductor/{method}` with `body`.
    pub async fn conductor_call(&self, session_id: &str, method: &str, body: Value) -> Response {
        send(
            self.admin(
                Method::POST,
                &format!("/api/v1/sessions/{session_id}/conductor/{method}"),
            )
            .json(&body),
        )
        .await
    }

    /// `GET /healthz` on the admin port.
    pub async fn admin_healthz(&self) -> Response {
        self.admin_get("/healthz").await
    }

    /// `GET /healthz` on the public port.
    pub async fn public_healthz(&self) -> Response {
        self.public_get("/healthz").await
    }

    /// `GET /.well-known/jwks.json`.
    pub async fn jwks(&self) -> Response {
        self.public_get("/.well-known/jwks.json").await
    }

    /// The key set the JWKS endpoint serves, parsed.
    pub async fn served_keys(&self) -> session_token::KeySet {
        let jwks = self.jwks().await.text().await.expect("jwks body");
        session_token::KeySet::from_jwks_json(&jwks).expect("a valid JWKS")
    }

    /// Joins and returns the answer's JSON body, whatever the status.
    pub async fn join_body(&self, session_id: &str, pin: &str, client: &str) -> Value {
        self.join(session_id, pin, client)
            .await
            .json()
            .await
            .expect("json body")
    }

    /// `POST /api/v1/service-tokens`.
    pub async fn create_service_token(&self, body: Value) -> Response {
        send(
            self.admin(Method::POST, "/api/v1/service-tokens")
                .json(&body),
        )
        .await
    }

    /// Issues a service token that must be issued; the answer's JSON.
    pub async fn issue_service_token(&self, body: Value) -> Value {
        let response = self.create_service_token(body).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.expect("json body")
    }

    /// `GET /api/v1/service-tokens`: the listed tokens.
    pub async fn service_tokens(&self) -> Vec<Value> {
        let response = self.admin_get("/api/v1/service-tokens").await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.expect("json body");
        body["service_tokens"]
            .as_array()
            .expect("service_tokens")
            .clone()
    }

    /// `DELETE /api/v1/service-tokens/{jti}`.
    pub async fn revoke_service_token(&self, jti: &str) -> Response {
        send(self.admin(Method::DELETE, &format!("/api/v1/service-tokens/{jti}"))).await
    }

    pub async fn admin_get(&self, path: &str) -> Response {
        send(self.admin(Method::GET, path)).await
    }

    pub async fn public_get(&self, path: &str) -> Response {
        send(self.public(Method::GET, path)).await
    }
}

/// `request` with `body` as is, labelled `content_type` (or not labelled at all).
pub fn with_raw_body(
    request: RequestBuilder,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> RequestBuilder {
    let request = request.body(body);
    match content_type {
        Some(content_type) => request.header("content-type", content_type),
        None => request,
    }
}

/// Sends a request that must reach the service (any status is fine).
pub async fn send(request: RequestBuilder) -> Response {
    request.send().await.expect("request")
}

/// Asserts a refusal as `403 forbidden` with the JSON error shape.
pub async fn assert_forbidden(response: Response) {
    assert_eq!(
        error_code(response, StatusCode::FORBIDDEN).await,
        "forbidden"
    );
}

pub struct TestApp {
    pub api: Api,
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
        api: Api::new(admin_url, public_url),
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
}

impl Deref for TestApp {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

/// The field names of a JSON object, sorted.
pub fn sorted_keys(body: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = body
        .as_object()
        .expect("a JSON object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
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
    pub api: Api,
    pub admin_addr: std::net::SocketAddr,
    pub public_addr: std::net::SocketAddr,
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
        api: Api::new(process.admin.clone(), process.public.clone()),
        admin_addr: process.admin_addr,
        public_addr: process.public_addr,
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

    pub fn log(&self) -> String {
        self.process.log()
    }
}

impl Deref for ServiceProcess {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}
