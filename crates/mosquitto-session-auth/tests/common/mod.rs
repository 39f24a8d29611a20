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
    /// What `start` was given, so `restart` can run the same configuration again.
    settings: String,
    persistence: bool,
}

impl Broker {
    /// A broker loading the plugin with `jwks` as its key file, issuer `ism`, and `options`
    /// (`plugin_opt_` prefix added) on top.
    pub fn with_plugin(jwks: &str, options: &[(&str, &str)]) -> Broker {
        let dir = tempfile::tempdir().expect("temp dir");
        let conf = plugin_settings(&dir, jwks, options);
        Self::start(dir, &conf)
    }

    /// Like [`with_plugin`](Self::with_plugin), with Mosquitto's own persistence on (in the
    /// broker's directory), so persistent sessions and their queues survive a `restart`.
    pub fn with_plugin_persistent(jwks: &str, options: &[(&str, &str)]) -> Broker {
        let dir = tempfile::tempdir().expect("temp dir");
        let conf = plugin_settings(&dir, jwks, options);
        Self::launch(dir, &conf, true)
    }

    /// Stops the broker the way an operator does (SIGTERM: Mosquitto saves its persistence
    /// database and unloads the plugin), then starts it again with the same configuration
    /// and directory, on a fresh port.
    pub fn restart(self) -> Broker {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "SIGTERM delivered");
        let mut this = self;
        let deadline = Instant::now() + Duration::from_secs(10);
        while this.child.try_wait().expect("wait").is_none() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not stop on SIGTERM"
            );
            thread::sleep(Duration::from_millis(20));
        }
        let settings = std::mem::take(&mut this.settings);
        let persistence = this.persistence;
        let dir = std::mem::replace(&mut this.dir, tempfile::tempdir().expect("temp dir"));
        drop(this);
        Self::launch(dir, &settings, persistence)
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
        Self::launch(dir, settings, false)
    }

    fn launch(dir: tempfile::TempDir, settings: &str, persistent: bool) -> Broker {
        require_mosquitto();
        // Started as root, Mosquitto drops to its own user before loading the plugin; the
        // plugin's state file and the persistence database are written as that user.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .expect("broker directory writable by the broker's user");
        let settings_given = settings;
        let persistence = if persistent {
            format!(
                "persistence true\npersistence_location {}/\nautosave_interval 1\n",
                dir.path().display()
            )
        } else {
            "persistence false\n".to_owned()
        };
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = free_port();
            let conf = format!(
                "listener {port} 127.0.0.1\n{settings}log_dest stderr\nlog_type all\nmax_keepalive 300\n{persistence}"
            );
            let conf_path = dir.path().join("mosquitto.conf");
            std::fs::write(&conf_path, conf).expect("write mosquitto.conf");
            // stderr is unbuffered, unlike mosquitto's log file, so the log is current.
            // Each start appends, so a restarted broker's log keeps what came before.
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.path().join("mosquitto.log"))
                .expect("log file");
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
                    return Broker {
                        child,
                        port,
                        dir,
                        settings: settings_given.to_owned(),
                        persistence: persistent,
                    };
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

/// The `plugin ...` lines for a broker in `dir` with `jwks` as its key file, issuer `ism`,
/// the plugin's state file in `dir`, and `options` (`plugin_opt_` prefix added) on top.
pub fn plugin_settings(dir: &tempfile::TempDir, jwks: &str, options: &[(&str, &str)]) -> String {
    let jwks_path = dir.path().join("jwks.json");
    std::fs::write(&jwks_path, jwks).expect("write jwks");
    let mut conf = format!(
        "allow_anonymous false\nplugin {}\nplugin_opt_jwks_file {}\nplugin_opt_issuer {ISSUER}\n",
        plugin_path().display(),
        jwks_path.display()
    );
    if !options.iter().any(|(key, _)| *key == "state_file") {
        conf.push_str(&format!(
            "plugin_opt_state_file {}\n",
            dir.path().join("session-auth.state").display()
        ));
    }
    for (key, value) in options {
        conf.push_str(&format!("plugin_opt_{key} {value}\n"));
    }
    conf
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

/// How a [`RawClient`] connects.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    pub client_id: String,
    pub username: String,
    pub password: String,
    /// MQTT 3.1.1 clean session / MQTT 5 clean start.
    pub persistent: bool,
    /// A Last Will: (topic, payload), QoS 1, not retained.
    pub will: Option<(String, Vec<u8>)>,
    /// Speak MQTT 5 with this will delay and session expiry (seconds), instead of 3.1.1.
    pub mqtt5: Option<Mqtt5Options>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Mqtt5Options {
    pub will_delay_secs: u32,
    pub session_expiry_secs: u32,
}

impl ConnectOptions {
    /// A device connecting with `client_id`, username `name` and `token`.
    pub fn device(client_id: &str, name: &str, token: &str) -> Self {
        ConnectOptions {
            client_id: client_id.to_owned(),
            username: name.to_owned(),
            password: token.to_owned(),
            ..Self::default()
        }
    }

    pub fn persistent(mut self) -> Self {
        self.persistent = true;
        self
    }

    pub fn will(mut self, topic: &str, payload: &[u8]) -> Self {
        self.will = Some((topic.to_owned(), payload.to_vec()));
        self
    }

    pub fn mqtt5(mut self, options: Mqtt5Options) -> Self {
        self.mqtt5 = Some(options);
        self
    }
}

/// A hand-driven MQTT connection over a plain socket, for what a full client hides: the
/// clean-session flag, wills, QoS 1 queues, and going away without a DISCONNECT.
pub struct RawClient {
    stream: TcpStream,
    buffer: bytes::BytesMut,
    next_pkid: u16,
}

impl RawClient {
    /// Connects; `Err` carries the refusing CONNACK's return (reason) code, or 0xFF when
    /// the broker closed the socket without a CONNACK.
    pub fn connect(port: u16, options: &ConnectOptions) -> Result<RawClient, u8> {
        let mut packet = bytes::BytesMut::new();
        match options.mqtt5 {
            None => {
                let mut connect = rumqttc::Connect::new(options.client_id.as_str());
                connect.keep_alive = 300;
                connect.clean_session = !options.persistent;
                connect.set_login(options.username.as_str(), options.password.as_str());
                connect.last_will = options.will.as_ref().map(|(topic, payload)| {
                    rumqttc::LastWill::new(topic.as_str(), payload.clone(), QoS::AtLeastOnce, false)
                });
                connect.write(&mut packet).expect("CONNECT encodes");
            }
            Some(v5) => {
                use rumqttc::v5::mqttbytes::v5 as mqtt5;
                let mut properties = mqtt5::ConnectProperties::new();
                properties.session_expiry_interval = Some(v5.session_expiry_secs);
                let connect = mqtt5::Connect {
                    keep_alive: 300,
                    client_id: options.client_id.clone(),
                    clean_start: !options.persistent,
                    properties: Some(properties),
                };
                let will = options.will.as_ref().map(|(topic, payload)| {
                    mqtt5::LastWill::new(
                        topic.as_str(),
                        payload.clone(),
                        rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                        false,
                        Some(mqtt5::LastWillProperties {
                            delay_interval: Some(v5.will_delay_secs),
                            payload_format_indicator: None,
                            message_expiry_interval: None,
                            content_type: None,
                            response_topic: None,
                            correlation_data: None,
                            user_properties: Vec::new(),
                        }),
                    )
                });
                let login = Some(mqtt5::Login::new(
                    options.username.as_str(),
                    options.password.as_str(),
                ));
                connect
                    .write(&will, &login, &mut packet)
                    .expect("CONNECT encodes");
            }
        }
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("broker reachable");
        stream.set_nodelay(true).expect("nodelay");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        stream.write_all(&packet).expect("CONNECT sent");
        // CONNACK: type, remaining length (< 128 here), flags, return / reason code, then
        // (MQTT 5) properties.
        let mut head = [0u8; 2];
        if stream.read_exact(&mut head).is_err() {
            return Err(0xFF);
        }
        assert_eq!(head[0], 0x20, "CONNACK packet type");
        let mut rest = vec![0u8; usize::from(head[1])];
        stream.read_exact(&mut rest).expect("CONNACK body");
        match rest[1] {
            0 => Ok(RawClient {
                stream,
                buffer: bytes::BytesMut::new(),
                next_pkid: 1,
            }),
            refused => Err(refused),
        }
    }

    fn pkid(&mut self) -> u16 {
        let pkid = self.next_pkid;
        self.next_pkid = self.next_pkid.wrapping_add(1).max(1);
        pkid
    }

    /// Subscribes at QoS 1 and waits for the SUBACK (MQTT 3.1.1 only): true when granted.
    pub fn subscribe(&mut self, filter: &str) -> bool {
        let mut request = rumqttc::Subscribe::new(filter, QoS::AtLeastOnce);
        request.pkid = self.pkid();
        let mut packet = bytes::BytesMut::new();
        request.write(&mut packet).expect("SUBSCRIBE encodes");
        self.stream.write_all(&packet).expect("SUBSCRIBE sent");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self.next_packet(deadline) {
                Some(rumqttc::Packet::SubAck(ack)) => {
                    return ack
                        .return_codes
                        .iter()
                        .all(|c| matches!(c, SubscribeReasonCode::Success(_)))
                }
                Some(_) => continue,
                None => panic!("no SUBACK for {filter}"),
            }
        }
    }

    /// Publishes at QoS 1 (MQTT 3.1.1 only) and waits for the PUBACK.
    pub fn publish(&mut self, topic: &str, payload: &[u8]) {
        let mut publish = rumqttc::Publish::new(topic, QoS::AtLeastOnce, payload.to_vec());
        publish.pkid = self.pkid();
        let mut packet = bytes::BytesMut::new();
        publish.write(&mut packet).expect("PUBLISH encodes");
        self.stream.write_all(&packet).expect("PUBLISH sent");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self.next_packet(deadline) {
                Some(rumqttc::Packet::PubAck(_)) => return,
                Some(_) => continue,
                None => panic!("no PUBACK for {topic}"),
            }
        }
    }

    /// The next message within `timeout` (acknowledged when QoS 1); `None` on timeout or
    /// when the broker closed the connection.
    pub fn next_message(&mut self, timeout: Duration) -> Option<(String, Vec<u8>)> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.next_packet(deadline)? {
                rumqttc::Packet::Publish(publish) => {
                    if publish.qos != QoS::AtMostOnce {
                        let mut ack = bytes::BytesMut::new();
                        rumqttc::PubAck::new(publish.pkid)
                            .write(&mut ack)
                            .expect("PUBACK encodes");
                        self.stream.write_all(&ack).expect("PUBACK sent");
                    }
                    return Some((publish.topic, publish.payload.to_vec()));
                }
                _ => continue,
            }
        }
    }

    /// Every message arriving within `window`.
    pub fn messages_within(&mut self, window: Duration) -> Vec<(String, Vec<u8>)> {
        let deadline = Instant::now() + window;
        let mut messages = Vec::new();
        while let Some(message) =
            self.next_message(deadline.saturating_duration_since(Instant::now()))
        {
            messages.push(message);
        }
        messages
    }

    /// Is the connection still open after `window` (no close from the broker meanwhile)?
    /// Messages arriving in the window are discarded.
    pub fn stays_open_for(&mut self, window: Duration) -> bool {
        let deadline = Instant::now() + window;
        loop {
            match self.read_some(deadline) {
                ReadOutcome::Data => continue,
                ReadOutcome::TimedOut => return true,
                ReadOutcome::Closed => return false,
            }
        }
    }

    /// A clean end: DISCONNECT, so the broker discards the will.
    pub fn disconnect(mut self) {
        let _ = self.stream.write_all(&[0xE0, 0x00]);
        let _ = self.stream.read(&mut [0u8; 1]);
    }

    /// Goes away without a DISCONNECT (as a device losing power or network does), so the
    /// broker treats the end as unexpected and publishes the will.
    pub fn drop_abruptly(self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }

    fn next_packet(&mut self, deadline: Instant) -> Option<rumqttc::Packet> {
        loop {
            match rumqttc::Packet::read(&mut self.buffer, 1 << 20) {
                Ok(packet) => return Some(packet),
                Err(rumqttc::Error::InsufficientBytes(_)) => {}
                Err(error) => panic!("malformed packet from the broker: {error:?}"),
            }
            match self.read_some(deadline) {
                ReadOutcome::Data => continue,
                ReadOutcome::TimedOut | ReadOutcome::Closed => return None,
            }
        }
    }

    fn read_some(&mut self, deadline: Instant) -> ReadOutcome {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return ReadOutcome::TimedOut;
        }
        self.stream
            .set_read_timeout(Some(left))
            .expect("read timeout");
        let mut chunk = [0u8; 4096];
        match self.stream.read(&mut chunk) {
            Ok(0) => ReadOutcome::Closed,
            Ok(n) => {
                self.buffer.extend_from_slice(&chunk[..n]);
                ReadOutcome::Data
            }
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                ReadOutcome::TimedOut
            }
            Err(_) => ReadOutcome::Closed,
        }
    }
}

enum ReadOutcome {
    Data,
    TimedOut,
    Closed,
}
