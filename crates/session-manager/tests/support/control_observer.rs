//! A minimal MQTT 3.1.1 server that records what the service's control link sends: who
//! connected (client id, username) and every message on the control topic.
//!
//! Why not a subscriber on Mosquitto: Mosquitto hands a PUBLISH to a `$CONTROL/...` topic
//! to the plugin registered for it and never delivers it to subscribers, so no MQTT client
//! can watch that topic there. This server speaks just enough MQTT (CONNECT/CONNACK,
//! PUBLISH/PUBACK, PINGREQ/PINGRESP, DISCONNECT) for the service's real MQTT client.
//!
//! It binds at once but accepts only after [`Observer::start_accepting`]: until then the
//! service's connection attempts sit in the listen backlog without an answer, which is
//! what a stuck broker looks like.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use session_token::{ControlMessage, CONTROL_TOPIC};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};

/// What the observer saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    Connected { client_id: String, username: String },
    Control(ControlMessage),
}

pub struct Observer {
    pub port: u16,
    events: mpsc::UnboundedReceiver<Observed>,
    accept: Arc<Notify>,
}

impl Observer {
    /// Binds a port on loopback; accepts nothing yet.
    pub async fn bind() -> Observer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("cannot bind the observer");
        let port = listener.local_addr().expect("bound address").port();
        let (sender, events) = mpsc::unbounded_channel();
        let accept = Arc::new(Notify::new());
        let start = Arc::clone(&accept);
        tokio::spawn(async move {
            start.notified().await;
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, sender.clone()));
            }
        });
        Observer {
            port,
            events,
            accept,
        }
    }

    /// Binds and accepts at once.
    pub async fn start() -> Observer {
        let observer = Observer::bind().await;
        observer.start_accepting();
        observer
    }

    pub fn start_accepting(&self) {
        self.accept.notify_one();
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// The next thing seen, within `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Observed {
        tokio::time::timeout(timeout, self.events.recv())
            .await
            .expect("the observer saw nothing in time")
            .expect("the observer stopped")
    }
}

async fn serve(mut stream: TcpStream, events: mpsc::UnboundedSender<Observed>) {
    while let Some((kind, flags, body)) = read_packet(&mut stream).await {
        let reply: Option<Vec<u8>> = match kind {
            1 => {
                let (client_id, username) = parse_connect(&body).expect("a well-formed CONNECT");
                let _ = events.send(Observed::Connected {
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
                    let _ = events.send(Observed::Control(message));
                }
                packet_id.map(|id| vec![0x40, 2, id[0], id[1]])
            }
            12 => Some(vec![0xD0, 0]),
            14 => return,
            _ => None,
        };
        if let Some(reply) = reply {
            if stream.write_all(&reply).await.is_err() {
                return;
            }
        }
    }
}

/// One packet: type, flags, body; `None` at the end of the stream.
async fn read_packet(stream: &mut TcpStream) -> Option<(u8, u8, Vec<u8>)> {
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
