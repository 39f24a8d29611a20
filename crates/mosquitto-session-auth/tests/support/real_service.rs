//! The real `session-manager` binary as the plugin's end-to-end tests drive it: signing
//! with the fixture RSA key (so a broker can trust it from the start), and plain HTTP/1.1
//! calls to its two APIs.

#![allow(dead_code)]
// Test code: a failed expectation is a failed test, so helpers may `expect` too.
#![allow(clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use test_support::fixture_tokens::{fixture_path, jwks, SigningKey, ISSUER};
use test_support::mosquitto::Broker;
use test_support::service;

/// A broker loading the plugin with the fixture key, and the service signing with that key
/// and linked to the broker (`ISM_BROKER_CONTROL_URL`), its link connected.
pub fn linked_to_a_broker() -> (Broker, Service) {
    let broker = Broker::with_plugin(&jwks(&[&SigningKey::rsa()]), &[]);
    let service = Service::start_with(&[("ISM_BROKER_CONTROL_URL", &control_url(&broker))]);
    service.wait_for_broker_link();
    (broker, service)
}

/// The `ISM_BROKER_CONTROL_URL` of `broker`.
pub fn control_url(broker: &Broker) -> String {
    format!("mqtt://127.0.0.1:{}", broker.port())
}

/// The service signing with the fixture RSA key, and the `host:port` of its two APIs.
pub struct Service {
    pub admin: String,
    pub public: String,
    _process: service::Service,
    _data: tempfile::TempDir,
}

impl Service {
    pub fn start() -> Service {
        Self::start_with(&[])
    }

    /// The service with extra environment variables.
    pub fn start_with(env: &[(&str, &str)]) -> Service {
        Self::start_in(tempfile::tempdir().expect("temp dir"), env)
    }

    /// The service on an existing data directory (a restart), with extra environment
    /// variables.
    pub fn start_in(data: tempfile::TempDir, env: &[(&str, &str)]) -> Service {
        let process = service::Launch::new()
            .data_dir(data.path())
            .env("MQTT_AUTH_MODE", "dev_jwt_auth")
            .env("ISM_SIGNING_KEY_FILE", fixture_path("rsa_private.pem"))
            .env("ISM_ISSUER", ISSUER)
            .envs(env)
            .start();
        Service {
            admin: process.admin_addr.to_string(),
            public: process.public_addr.to_string(),
            _process: process,
            _data: data,
        }
    }

    pub fn create_session(&self) -> (String, String) {
        let created = http(&self.admin, "POST", "/api/v1/sessions", "{}");
        let id = created["id"].as_str().expect("session id").to_owned();
        let pin = created["pin"].as_str().expect("pin").to_owned();
        (id, pin)
    }

    pub fn join(&self, session: &str, pin: &str, client: &str) -> String {
        let body = serde_json::json!({ "pin": pin, "client": client }).to_string();
        let joined = http(
            &self.public,
            "POST",
            &format!("/api/v1/sessions/{session}/join"),
            &body,
        );
        joined["token"].as_str().expect("token").to_owned()
    }
}

/// One HTTP/1.1 request with `Connection: close`; the JSON body of the answer.
pub fn http(addr: &str, method: &str, path: &str, body: &str) -> serde_json::Value {
    let mut stream = TcpStream::connect(addr).expect("service reachable");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("request sent");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response read");
    let (head, body) = response.split_once("\r\n\r\n").expect("HTTP response");
    assert!(
        head.starts_with("HTTP/1.1 2"),
        "{method} {path}: {head}\n{body}"
    );
    if body.is_empty() {
        return serde_json::Value::Null;
    }
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{method} {path}: {e}: {body}"))
}

impl Service {
    /// Kills the service (SIGKILL); its data directory, for a restart.
    pub fn kill(self) -> tempfile::TempDir {
        self._process.kill();
        self._data
    }

    /// Waits (up to 10 s) until the service's broker link is connected.
    pub fn wait_for_broker_link(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while http(&self.admin, "GET", "/healthz", "")["revocation"]["connected"] != true {
            assert!(
                Instant::now() < deadline,
                "the revocation link never connected"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
