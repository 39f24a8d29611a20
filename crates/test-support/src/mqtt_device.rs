//! A device as the product sees one: a full MQTT 3.1.1 client (rumqttc) whose connection
//! runs on its own thread and reports what happens (SUBACKs, messages, the close) as
//! events a test can await with a timeout.
//!
//! A device subscribed to its whole session tree also receives the retained presence the
//! broker keeps under `/S/$presence/...`; the message helpers leave those out (a test of
//! the data path counts data), except [`Device::all_messages_within`].

use std::sync::mpsc::{self, Receiver};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rumqttc::{Client, Connection, Event, Incoming, MqttOptions, QoS, SubscribeReasonCode};

use crate::fixture_tokens::SigningKey;

/// Is `topic` in a session's presence sub-tree (`/S/$presence/...`), which the broker
/// writes itself?
pub fn is_session_presence(topic: &str) -> bool {
    let mut levels = topic.split('/');
    levels.next() == Some("")
        && levels.next().is_some()
        && levels.next() == Some(session_token::presence::PRESENCE_LEVEL)
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

    /// Connects device `name` of `session` under its bare name, with a 10-minute device
    /// token signed by `key`; `Err` carries the broker's refusal.
    pub fn of_session(
        port: u16,
        key: &SigningKey,
        session: &str,
        name: &str,
    ) -> Result<Device, String> {
        Device::connect(port, name, name, &key.device_token(session, name, 600))
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

    /// Every message that arrives within `window`, the session's presence left out.
    pub fn messages_within(&mut self, window: Duration) -> Vec<(String, Vec<u8>)> {
        let mut messages = self.all_messages_within(window);
        messages.retain(|(topic, _)| !is_session_presence(topic));
        messages
    }

    /// Every message that arrives within `window`, the session's presence included.
    pub fn all_messages_within(&mut self, window: Duration) -> Vec<(String, Vec<u8>)> {
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

    /// Waits for a message on `topic`; returns the topics of the other messages seen before
    /// it (the session's presence left out).
    pub fn wait_for_message(&mut self, topic: &str, timeout: Duration) -> Option<Vec<String>> {
        let deadline = Instant::now() + timeout;
        let mut others = Vec::new();
        loop {
            match self.next_event(deadline.saturating_duration_since(Instant::now()))? {
                DeviceEvent::Message { topic: t, .. } if t == topic => return Some(others),
                DeviceEvent::Message { topic: t, .. } if is_session_presence(&t) => {}
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
