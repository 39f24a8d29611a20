//! Hand-driven MQTT over a plain socket, with packets encoded by rumqttc: for what a full
//! client hides (the clean-session flag, wills, QoS 1 queues, MQTT 5 properties, going
//! away without a DISCONNECT), and for connect loops where a full client per cycle would
//! cost more than the broker.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use rumqttc::{QoS, SubscribeReasonCode};

use crate::fixture_tokens::SigningKey;

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
    let mut stream = send_connect(port, &packet);
    let mut connack = [0u8; 4];
    stream.read_exact(&mut connack).expect("CONNACK received");
    assert_eq!(connack[0], 0x20, "CONNACK packet type");
    match connack[3] {
        0 => Ok(stream),
        refused => Err(refused),
    }
}

/// Opens a connection to the broker on `port` (no Nagle delay, 10 s read timeout) and
/// sends the encoded CONNECT `packet`.
fn send_connect(port: u16, packet: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("broker reachable");
    stream.set_nodelay(true).expect("nodelay");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    stream.write_all(packet).expect("CONNECT sent");
    stream
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
        let mut stream = send_connect(port, &packet);
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

    /// The next message within `timeout` (acknowledged when QoS 1), the session's presence
    /// (`/S/$presence/...`, which the broker writes itself) skipped; `None` on timeout or
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
                        // A broker that closed the connection right after sending gets
                        // no PUBACK; what arrived still counts, and the next read sees
                        // the close.
                        let _ = self.stream.write_all(&ack);
                    }
                    if crate::mqtt_device::is_session_presence(&publish.topic) {
                        continue;
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

/// A device named `observer` in `session`, with a token of `key`, subscribed at QoS 1 to
/// everything of that session (wills included).
pub fn session_observer(port: u16, key: &SigningKey, session: &str) -> RawClient {
    let token = key.device_token(session, "observer", 600);
    let mut observer = RawClient::connect(
        port,
        &ConnectOptions::device("observer", "observer", &token),
    )
    .expect("observer admitted");
    assert!(observer.subscribe(&format!("/{session}/#")));
    observer
}
