//! The end-to-end harness: a real Mosquitto on a free loopback port loading the plugin
//! built from this crate, tokens signed with real keys, and real MQTT clients.
#![allow(dead_code)] // each test file uses a different part of the harness

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{encode, EncodingKey, Header};
use rumqttc::{Client, Connection, Event, Incoming, MqttOptions, QoS, SubscribeReasonCode};
use session_token::keys::public_jwk_of_signing_key;
use session_token::{Algorithm, Claims, DeviceGrant};

pub const MOSQUITTO: &str = "/usr/sbin/mosquitto";
pub const ISSUER: &str = "ism";

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../session-token/tests/fixtures"
);

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(FIXTURES).join(name)).expect("fixture readable")
}

/// A private key with its public JWK (thumbprint `kid`).
pub struct SigningKey {
    pub encoding: EncodingKey,
    pub algorithm: Algorithm,
    pub jwk: Jwk,
    pub kid: String,
}

impl SigningKey {
    pub fn rsa() -> Self {
        Self::from_pem("rsa_private.pem", Algorithm::RS256)
    }
    pub fn other_rsa() -> Self {
        Self::from_pem("other_rsa_private.pem", Algorithm::RS256)
    }
    pub fn ec() -> Self {
        Self::from_pem("ec_private.pem", Algorithm::ES256)
    }

    fn from_pem(file: &str, algorithm: Algorithm) -> Self {
        let pem = fixture(file);
        let encoding = match algorithm {
            Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
            _ => EncodingKey::from_rsa_pem(&pem),
        }
        .expect("fixture key parses");
        let jwk = public_jwk_of_signing_key(&encoding, algorithm).expect("public jwk");
        let kid = jwk.common.key_id.clone().expect("kid");
        SigningKey {
            encoding,
            algorithm,
            jwk,
            kid,
        }
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.clone());
        encode(&header, claims, &self.encoding).expect("signs")
    }

    /// A device token for `client` in `session`, valid from now for `lifetime_secs`.
    pub fn device_token(&self, session: &str, client: &str, lifetime_secs: u64) -> String {
        self.sign(&device_claims(session, client, lifetime_secs))
    }
}

pub fn device_claims(session: &str, client: &str, lifetime_secs: u64) -> Claims {
    Claims::for_device(&DeviceGrant {
        issuer: ISSUER,
        client,
        session_id: session,
        issued_at: now(),
        lifetime_secs,
        token_id: client,
    })
}

pub fn jwks(keys: &[&SigningKey]) -> String {
    serde_json::json!({ "keys": keys.iter().map(|k| &k.jwk).collect::<Vec<_>>() }).to_string()
}

/// The plugin built by the same cargo invocation as this binary. The library unit is
/// compiled once with both its crate types, so building the `rlib` that tests and benches
/// link also writes the `cdylib` next to them in `target/<profile>/deps`.
pub fn plugin_path() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe
        .parent()
        .expect("test binary lives in target/<profile>/deps");
    let candidates = [
        deps.join("libmosquitto_session_auth.so"),
        deps.join("../libmosquitto_session_auth.so"),
    ];
    candidates
        .iter()
        .find(|path| path.exists())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "libmosquitto_session_auth.so not found in {}; build it: cargo build -p mosquitto-session-auth",
                deps.display()
            )
        })
}

pub fn require_mosquitto() {
    assert!(
        Path::new(MOSQUITTO).exists(),
        "{MOSQUITTO} not found; install it: apt-get install mosquitto mosquitto-dev"
    );
}

/// A running Mosquitto, killed on drop.
pub struct Broker {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Broker {
    /// A broker loading the plugin with `jwks` as its key file, issuer `ism`, and `options`
    /// (`plugin_opt_` prefix added) on top.
    pub fn with_plugin(jwks: &str, options: &[(&str, &str)]) -> Broker {
        let dir = tempfile::tempdir().expect("temp dir");
        let jwks_path = dir.path().join("jwks.json");
        std::fs::write(&jwks_path, jwks).expect("write jwks");
        let mut conf = format!(
            "allow_anonymous false\nplugin {}\nplugin_opt_jwks_file {}\nplugin_opt_issuer {ISSUER}\n",
            plugin_path().display(),
            jwks_path.display()
        );
        for (key, value) in options {
            conf.push_str(&format!("plugin_opt_{key} {value}\n"));
        }
        Self::start(dir, &conf)
    }

    /// The same broker without any authentication.
    pub fn anonymous() -> Broker {
        Self::start(
            tempfile::tempdir().expect("temp dir"),
            "allow_anonymous true\n",
        )
    }

    /// Starts mosquitto with `settings` plus a listener and a log file; the port is found
    /// by binding port 0, so a rare race with another process is retried.
    pub fn start(dir: tempfile::TempDir, settings: &str) -> Broker {
        require_mosquitto();
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = free_port();
            let conf = format!(
                "listener {port} 127.0.0.1\n{settings}log_dest stderr\nlog_type all\nmax_keepalive 300\npersistence false\n"
            );
            let conf_path = dir.path().join("mosquitto.conf");
            std::fs::write(&conf_path, conf).expect("write mosquitto.conf");
            // stderr is unbuffered, unlike mosquitto's log file, so the log is current.
            let log = std::fs::File::create(dir.path().join("mosquitto.log")).expect("log file");
            let mut child = Command::new(MOSQUITTO)
                .arg("-c")
                .arg(&conf_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("mosquitto starts");
            let deadline = Instant::now() + Duration::from_secs(10);
            let opened = format!("listen socket on port {port}.");
            while Instant::now() < deadline {
                // Another test's broker may have taken the same free port first, so a
                // successful connect alone could reach the wrong broker: our own broker
                // must have logged opening the port, and still be running.
                let log =
                    std::fs::read_to_string(dir.path().join("mosquitto.log")).unwrap_or_default();
                if log.contains(&opened)
                    && child.try_wait().ok().flatten().is_none()
                    && TcpStream::connect(("127.0.0.1", port)).is_ok()
                {
                    return Broker { child, port, dir };
                }
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
            last_log =
                std::fs::read_to_string(dir.path().join("mosquitto.log")).unwrap_or_default();
        }
        panic!("mosquitto did not start; its log:\n{last_log}");
    }

    /// Starts mosquitto with a config and returns its exit status and log, for start-up
    /// failures.
    pub fn run_until_exit(settings: &str) -> (std::process::ExitStatus, String) {
        require_mosquitto();
        let dir = tempfile::tempdir().expect("temp dir");
        let conf = format!(
            "listener {} 127.0.0.1\n{settings}log_dest stderr\n",
            free_port()
        );
        let conf_path = dir.path().join("mosquitto.conf");
        std::fs::write(&conf_path, conf).expect("write mosquitto.conf");
        let mut child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("mosquitto starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                let mut log = String::new();
                child
                    .stderr
                    .take()
                    .expect("stderr piped")
                    .read_to_string(&mut log)
                    .expect("read stderr");
                return (status, log);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("mosquitto kept running although its configuration is invalid");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn jwks_path(&self) -> PathBuf {
        self.dir.path().join("jwks.json")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    /// Waits until the broker log contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn sighup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "SIGHUP delivered");
    }

    /// Resident memory of the broker process, from /proc/<pid>/status.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS present")
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind port 0")
        .port()
}

/// What a device's connection reports.
#[derive(Debug, Clone)]
pub enum DeviceEvent {
    SubAck(Vec<SubscribeReasonCode>),
    Message {
        topic: String,
        payload: Vec<u8>,
        at: Instant,
    },
    Closed {
        reason: String,
        at: Instant,
    },
}

/// An MQTT 3.1.1 client connected through the plugin.
pub struct Device {
    pub client: Client,
    events: Receiver<DeviceEvent>,
    pump: Option<JoinHandle<()>>,
}

impl Device {
    /// Connects; `Err` carries the broker's refusal.
    pub fn connect(
        port: u16,
        client_id: &str,
        username: &str,
        password: &str,
    ) -> Result<Device, String> {
        let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
        options.set_credentials(username, password);
        options.set_keep_alive(Duration::from_secs(60));
        options.set_max_packet_size(1 << 20, 1 << 20);
        let (client, connection) = Client::new(options, 64);
        let (sender, events) = mpsc::channel();
        let (connack_sender, connack) = mpsc::channel();
        let pump = thread::spawn(move || pump_events(connection, sender, connack_sender));
        match connack.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => Ok(Device {
                client,
                events,
                pump: Some(pump),
            }),
            Ok(Err(refusal)) => Err(refusal),
            Err(_) => Err("no CONNACK within 10 s".into()),
        }
    }

    /// Subscribes and waits for the SUBACK: true when granted.
    pub fn subscribe(&mut self, filter: &str) -> bool {
        self.client
            .subscribe(filter, QoS::AtMostOnce)
            .expect("subscribe queued");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self.next_event(deadline.saturating_duration_since(Instant::now())) {
                Some(DeviceEvent::SubAck(codes)) => {
                    return codes
                        .iter()
                        .all(|c| matches!(c, SubscribeReasonCode::Success(_)))
                }
                Some(DeviceEvent::Message { .. }) => continue,
                other => panic!("no SUBACK for {filter}: {other:?}"),
            }
        }
    }

    pub fn publish(&self, topic: &str, payload: &[u8]) {
        self.client
            .publish(topic, QoS::AtMostOnce, false, payload.to_vec())
            .expect("publish queued");
    }

    pub fn next_event(&mut self, timeout: Duration) -> Option<DeviceEvent> {
        self.events.recv_timeout(timeout).ok()
    }

    /// Every message that arrives within `window`.
    pub fn messages_within(&mut self, window: Duration) -> Vec<(String, Vec<u8>)> {
        let deadline = Instant::now() + window;
        let mut messages = Vec::new();
        while let Some(event) = self.next_event(deadline.saturating_duration_since(Instant::now()))
        {
            if let DeviceEvent::Message { topic, payload, .. } = event {
                messages.push((topic, payload));
            }
        }
        messages
    }

    /// Waits for a message on `topic`; returns the other messages seen before it.
    pub fn wait_for_message(&mut self, topic: &str, timeout: Duration) -> Option<Vec<String>> {
        let deadline = Instant::now() + timeout;
        let mut others = Vec::new();
        loop {
            match self.next_event(deadline.saturating_duration_since(Instant::now()))? {
                DeviceEvent::Message { topic: t, .. } if t == topic => return Some(others),
                DeviceEvent::Message { topic: t, .. } => others.push(t),
                DeviceEvent::Closed { .. } => return None,
                DeviceEvent::SubAck(_) => {}
            }
        }
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        let _ = self.client.disconnect();
        if let Some(pump) = self.pump.take() {
            let _ = pump.join();
        }
    }
}

fn pump_events(
    mut connection: Connection,
    events: mpsc::Sender<DeviceEvent>,
    connack: mpsc::Sender<Result<(), String>>,
) {
    let mut connack = Some(connack);
    for notification in connection.iter() {
        let event = match notification {
            Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                if let Some(connack) = connack.take() {
                    let _ = connack.send(Ok(()));
                }
                continue;
            }
            Ok(Event::Incoming(Incoming::SubAck(ack))) => DeviceEvent::SubAck(ack.return_codes),
            Ok(Event::Incoming(Incoming::Publish(publish))) => DeviceEvent::Message {
                topic: publish.topic,
                payload: publish.payload.to_vec(),
                at: Instant::now(),
            },
            Ok(_) => continue,
            Err(error) => {
                let reason = error.to_string();
                if let Some(connack) = connack.take() {
                    let _ = connack.send(Err(reason.clone()));
                }
                let _ = events.send(DeviceEvent::Closed {
                    reason,
                    at: Instant::now(),
                });
                // rumqttc would reconnect on the next poll; a test wants the first outcome.
                return;
            }
        };
        if events.send(event).is_err() {
            return;
        }
    }
}

/// A bare MQTT 3.1.1 connection: CONNECT sent, CONNACK read. `Err` carries a refusing
/// CONNACK's return code. Credentials are left out when `username` is empty.
pub fn raw_connect(
    port: u16,
    client_id: &str,
    username: &str,
    password: &str,
) -> Result<TcpStream, u8> {
    let mut connect = rumqttc::Connect::new(client_id);
    connect.keep_alive = 300;
    if !username.is_empty() {
        connect.set_login(username, password);
    }
    let mut packet = bytes::BytesMut::new();
    connect.write(&mut packet).expect("CONNECT encodes");
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("broker reachable");
    stream.set_nodelay(true).expect("nodelay");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    stream.write_all(&packet).expect("CONNECT sent");
    let mut connack = [0u8; 4];
    stream.read_exact(&mut connack).expect("CONNACK received");
    assert_eq!(connack[0], 0x20, "CONNACK packet type");
    match connack[3] {
        0 => Ok(stream),
        refused => Err(refused),
    }
}

/// One connect / CONNACK / disconnect over a fresh TCP connection, for loops of thousands
/// of cycles where a full client per cycle would dominate the cost. Returns the CONNACK
/// return code.
pub fn connect_cycle(port: u16, client_id: &str, username: &str, password: &str) -> u8 {
    match raw_connect(port, client_id, username, password) {
        Ok(mut stream) => {
            stream.write_all(&[0xE0, 0x00]).expect("DISCONNECT sent");
            // Wait for the broker to close its side, so the cycle is complete on return.
            let _ = stream.read(&mut [0u8; 1]);
            0
        }
        Err(code) => code,
    }
}
