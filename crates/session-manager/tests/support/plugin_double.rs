//! A stand-in for the broker plugin's side of the control channel: a minimal MQTT 3.1.1
//! server the service's real control link connects to. It records what the link does
//! (connect, subscribe, every control message) and publishes presence reports to it, as
//! the plugin does from inside the broker.
//!
//! Why not Mosquitto with an MQTT client playing the plugin: Mosquitto hands a PUBLISH to
//! a `$CONTROL/...` topic to the plugin registered for it and never delivers it to
//! subscribers, in either direction, so no MQTT client can take the plugin's place there.
//! This server speaks just enough MQTT (CONNECT/CONNACK, SUBSCRIBE/SUBACK, PUBLISH/PUBACK,
//! PINGREQ/PINGRESP, DISCONNECT) for the service's real MQTT client.
//!
//! [`PluginDouble::bind`] binds at once but accepts only after
//! [`PluginDouble::start_accepting`]: until then the service's connection attempts sit in
//! the listen backlog without an answer, which is what a stuck broker looks like.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use session_token::{
    ControlMessage, PresenceBatch, PresenceMessage, CONTROL_TOPIC, PRESENCE_TOPIC,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Mutex, Notify};

/// What the double saw the link do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    Connected { client_id: String, username: String },
    Subscribed(Vec<String>),
    Control(ControlMessage),
}

pub struct PluginDouble {
    pub port: u16,
    seen: mpsc::UnboundedReceiver<Seen>,
    /// The write side of the current connection, if any.
    current: Arc<Mutex<Option<OwnedWriteHalf>>>,
    /// Ends the current connection (as a broker restart would).
    cut: Arc<Notify>,
    /// Lets the server start accepting connections.
    accept: Arc<Notify>,
}

impl PluginDouble {
    /// Listens on a kernel-chosen loopback port and accepts at once.
    pub async fn start() -> PluginDouble {
        let double = PluginDouble::bind().await;
        double.start_accepting();
        double
    }

    /// Binds a kernel-chosen loopback port; accepts nothing until [`Self::start_accepting`].
    pub async fn bind() -> PluginDouble {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("cannot bind the plugin double");
        let port = listener.local_addr().expect("bound address").port();
        let (sender, seen) = mpsc::unbounded_channel();
        let current = Arc::new(Mutex::new(None));
        let cut = Arc::new(Notify::new());
        let accept = Arc::new(Notify::new());
        let (slot, cut_signal, start) =
            (Arc::clone(&current), Arc::clone(&cut), Arc::clone(&accept));
        tokio::spawn(async move {
            start.notified().await;
            while let Ok((stream, _)) = listener.accept().await {
                let (reader, writer) = stream.into_split();
                *slot.lock().await = Some(writer);
                let (slot, sender, cut) =
                    (Arc::clone(&slot), sender.clone(), Arc::clone(&cut_signal));
                tokio::spawn(async move {
                    tokio::select! {
                        () = serve(reader, Arc::clone(&slot), sender) => {}
                        () = cut.notified() => {}
                    }
                    *slot.lock().await = None;
                });
            }
        });
        PluginDouble {
            port,
            seen,
            current,
            cut,
            accept,
        }
    }

    /// Starts answering connections (those waiting in the backlog first).
    pub fn start_accepting(&self) {
        self.accept.notify_one();
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// The next thing seen, within `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Seen {
        tokio::time::timeout(timeout, self.seen.recv())
            .await
            .expect("the plugin double saw nothing in time")
            .expect("the plugin double stopped")
    }

    /// Waits for a connection of the link that subscribes to presence and asks for a sync;
    /// returns the sync request id. Control messages seen on the way are returned too.
    pub async fn link_ready(&mut self, timeout: Duration) -> (String, Vec<ControlMessage>) {
        let mut subscribed = false;
        let mut before = Vec::new();
        loop {
            match self.next(timeout).await {
                Seen::Connected {
                    client_id,
                    username,
                } => {
                    assert!(client_id.starts_with("$ism-link-"), "{client_id}");
                    assert_eq!(username, client_id);
                    subscribed = false;
                }
                Seen::Subscribed(filters) => {
                    subscribed = filters.iter().any(|f| f == PRESENCE_TOPIC);
                }
                Seen::Control(message) => {
                    if let Some(request) = message.sync.clone() {
                        assert!(subscribed, "sync requested before subscribing to presence");
                        return (request, before);
                    }
                    before.push(message);
                }
            }
        }
    }

    /// Waits for a control message that `wanted` accepts; returns it.
    pub async fn control_where(
        &mut self,
        timeout: Duration,
        wanted: impl Fn(&ControlMessage) -> bool,
    ) -> ControlMessage {
        loop {
            if let Seen::Control(message) = self.next(timeout).await {
                if wanted(&message) {
                    return message;
                }
            }
        }
    }

    /// Publishes `payload` on the presence topic to the connected link, as the plugin does.
    pub async fn publish_raw(&self, payload: &[u8]) {
        let mut packet = Vec::new();
        let topic = PRESENCE_TOPIC.as_bytes();
        let length = 2 + topic.len() + payload.len();
        packet.push(0x30);
        push_length(&mut packet, length);
        packet.extend_from_slice(
            &u16::try_from(topic.len())
                .expect("short topic")
                .to_be_bytes(),
        );
        packet.extend_from_slice(topic);
        packet.extend_from_slice(payload);
        let mut current = self.current.lock().await;
        let writer = current.as_mut().expect("the link is not connected");
        writer
            .write_all(&packet)
            .await
            .expect("publish to the link");
    }

    /// Publishes `message` alone in a batch, as the plugin does when nothing else was
    /// gathered with it.
    pub async fn publish(&self, message: &PresenceMessage) {
        self.publish_raw(&PresenceBatch::of([message]).into_payload())
            .await;
    }

    /// Publishes `messages` as one batch.
    pub async fn publish_batch(&self, messages: &[PresenceMessage]) {
        self.publish_raw(&PresenceBatch::of(messages).into_payload())
            .await;
    }

    /// Ends the link's connection, as a broker restart would.
    pub fn cut_connection(&self) {
        self.cut.notify_waiters();
    }
}

fn push_length(out: &mut Vec<u8>, mut length: usize) {
    loop {
        let mut byte = (length % 128) as u8;
        length /= 128;
        if length > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if length == 0 {
            break;
        }
    }
}

async fn serve(
    mut reader: OwnedReadHalf,
    writer: Arc<Mutex<Option<OwnedWriteHalf>>>,
    seen: mpsc::UnboundedSender<Seen>,
) {
    while let Some((kind, flags, body)) = read_packet(&mut reader).await {
        let reply: Option<Vec<u8>> = match kind {
            1 => {
                let (client_id, username) = parse_connect(&body).expect("a well-formed CONNECT");
                let _ = seen.send(Seen::Connected {
                    client_id,
                    username,
                });
                Some(vec![0x20, 2, 0, 0])
            }
            3 => {
                let qos = (flags >> 1) & 3;
                let (topic, rest) = string(&body).expect("a PUBLISH topic");
                let (packet_id, payload) = if qos > 0 {
                    (Some([rest[0], rest[1]]), &rest[2..])
                } else {
                    (None, rest)
                };
                if topic == CONTROL_TOPIC {
                    let message = ControlMessage::from_payload(payload)
                        .expect("a well-formed control message");
                    let _ = seen.send(Seen::Control(message));
                }
                packet_id.map(|id| vec![0x40, 2, id[0], id[1]])
            }
            8 => {
                let id = [body[0], body[1]];
                let mut rest = &body[2..];
                let mut filters = Vec::new();
                let mut granted = Vec::new();
                while let Some((filter, after)) = string(rest) {
                    filters.push(filter);
                    granted.push(after[0].min(1));
                    rest = &after[1..];
                }
                let _ = seen.send(Seen::Subscribed(filters));
                let mut reply = vec![0x90, 2 + granted.len() as u8, id[0], id[1]];
                reply.extend(granted);
                Some(reply)
            }
            12 => Some(vec![0xD0, 0]),
            14 => return,
            _ => None,
        };
        if let Some(reply) = reply {
            let mut current = writer.lock().await;
            let Some(out) = current.as_mut() else { return };
            if out.write_all(&reply).await.is_err() {
                return;
            }
        }
    }
}

/// One packet: type, flags, body; `None` at the end of the stream.
async fn read_packet(stream: &mut OwnedReadHalf) -> Option<(u8, u8, Vec<u8>)> {
    let first = stream.read_u8().await.ok()?;
    let mut length = 0usize;
    for shift in (0..28).step_by(7) {
        let byte = stream.read_u8().await.ok()?;
        length |= usize::from(byte & 0x7F) << shift;
        if byte & 0x80 == 0 {
            break;
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await.ok()?;
    Some((first >> 4, first & 0x0F, body))
}

fn string(bytes: &[u8]) -> Option<(String, &[u8])> {
    let len = usize::from(u16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]));
    let text = bytes.get(2..2 + len)?;
    Some((String::from_utf8(text.to_vec()).ok()?, &bytes[2 + len..]))
}

fn parse_connect(body: &[u8]) -> Option<(String, String)> {
    let (_protocol, rest) = string(body)?;
    let flags = *rest.get(1)?;
    let rest = rest.get(4..)?; // level, flags, keep-alive
    let (client_id, mut rest) = string(rest)?;
    if flags & 0x04 != 0 {
        let (_topic, after) = string(rest)?;
        let (_message, after) = string(after)?;
        rest = after;
    }
    let username = if flags & 0x80 != 0 {
        string(rest)?.0
    } else {
        String::new()
    };
    Some((client_id, username))
}
