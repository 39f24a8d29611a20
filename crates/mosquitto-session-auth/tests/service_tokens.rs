//! End to end with every real part: the `session-manager` binary creates sessions and
//! issues tokens, its published JWKS is the plugin's key file, and devices holding those
//! tokens talk inside their session only.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Broker, Device};

/// The service binary: the release build `scripts/test` makes, else this profile's build.
fn service_binary() -> PathBuf {
    let from_release_dir = std::env::var_os("ISM_TEST_RELEASE_DIR")
        .map(|dir| PathBuf::from(dir).join("session-manager"));
    let exe = std::env::current_exe().expect("test binary path");
    let from_profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("session-manager"));
    [from_release_dir, from_profile_dir]
        .into_iter()
        .flatten()
        .find(|path| path.exists())
        .unwrap_or_else(|| {
            panic!("session-manager binary not found; build it: cargo build -p session-manager")
        })
}

struct Service {
    child: Child,
    admin: String,
    public: String,
    _data: tempfile::TempDir,
}

impl Service {
    fn start() -> Service {
        let data = tempfile::tempdir().expect("temp dir");
        let key = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../session-token/tests/fixtures/rsa_private.pem");
        let mut child = Command::new(service_binary())
            .env("MQTT_AUTH_MODE", "dev_jwt_auth")
            .env("ISM_ADMIN_ADDR", "127.0.0.1:0")
            .env("ISM_PUBLIC_ADDR", "127.0.0.1:0")
            .env("ISM_DATA_DIR", data.path())
            .env("ISM_SIGNING_KEY_FILE", key)
            .env("ISM_ISSUER", common::ISSUER)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("session-manager starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout piped"))
            .read_line(&mut line)
            .expect("start-up line");
        let announced: serde_json::Value = serde_json::from_str(&line).expect("start-up JSON");
        Service {
            admin: announced["admin_addr"]
                .as_str()
                .expect("admin_addr")
                .to_owned(),
            public: announced["public_addr"]
                .as_str()
                .expect("public_addr")
                .to_owned(),
            child,
            _data: data,
        }
    }

    fn create_session(&self) -> (String, String) {
        let created = http(&self.admin, "POST", "/api/v1/sessions", "{}");
        let id = created["id"].as_str().expect("session id").to_owned();
        let pin = created["pin"].as_str().expect("pin").to_owned();
        (id, pin)
    }

    fn join(&self, session: &str, pin: &str, client: &str) -> String {
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

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request with `Connection: close`; the JSON body of the answer.
fn http(addr: &str, method: &str, path: &str, body: &str) -> serde_json::Value {
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
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{method} {path}: {e}: {body}"))
}

#[test]
fn tokens_from_the_service_admit_devices_to_their_session_only() {
    let service = Service::start();
    let jwks = http(&service.public, "GET", "/.well-known/jwks.json", "");
    let broker = Broker::with_plugin(&jwks.to_string(), &[]);
    let port = broker.port();

    let (session, pin) = service.create_session();
    let (other_session, other_pin) = service.create_session();
    let mut lamp = Device::connect(port, "lamp", "lamp", &service.join(&session, &pin, "lamp"))
        .expect("lamp admitted");
    let switch = Device::connect(
        port,
        "switch",
        "switch",
        &service.join(&session, &pin, "switch"),
    )
    .expect("switch admitted");
    let mut stranger = Device::connect(
        port,
        "stranger",
        "stranger",
        &service.join(&other_session, &other_pin, "stranger"),
    )
    .expect("stranger admitted");

    assert!(lamp.subscribe(&format!("/{session}/#")));
    assert!(
        !stranger.subscribe(&format!("/{session}/#")),
        "no subscribing across sessions"
    );
    assert!(stranger.subscribe(&format!("/{other_session}/#")));
    switch.publish(&format!("/{session}/lamp/on"), b"1");
    assert!(lamp
        .wait_for_message(&format!("/{session}/lamp/on"), Duration::from_secs(5))
        .is_some());
    assert!(stranger
        .messages_within(Duration::from_millis(500))
        .is_empty());

    // A token of one client is no use to another.
    let lamp_token = service.join(&session, &pin, "lamp");
    assert!(Device::connect(port, "thief", "thief", &lamp_token).is_err());
}
