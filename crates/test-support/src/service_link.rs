//! The service's side of the broker link, as a test plays it: an MQTT client logged in
//! with the service's own token (`Claims::for_revocation_service`, client id and `sub`
//! [`LINK`]) that sends [`ControlMessage`]s to the plugin and reads the
//! [`PresenceMessage`]s the plugin reports on [`PRESENCE_TOPIC`] (in batches, handed out
//! here one report at a time).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rumqttc::QoS;
use session_token::{
    Claims, ControlMessage, KickedDevice, PresenceMessage, CONTROL_TOPIC, PRESENCE_TOPIC,
};

use crate::fixture_tokens::{SigningKey, ISSUER};
use crate::mqtt_device::{Device, DeviceEvent};
use crate::now;

/// The link's client id and `sub` (principals without a session use `$`-ids).
pub const LINK: &str = "$session-manager";

/// The link's token: publish on the control topic, subscribe to presence and to every
/// session's tree (the monitor), nothing else.
pub fn link_token(key: &SigningKey) -> String {
    key.sign(&Claims::for_revocation_service(
        ISSUER,
        LINK,
        now(),
        600,
        "link",
    ))
}

/// The control message that kicks `client` of `sid`: tokens below `below_gen` refused for
/// the next 10 minutes.
pub fn kicking(sid: &str, client: &str, below_gen: u32) -> ControlMessage {
    ControlMessage {
        kicked: vec![KickedDevice {
            sid: sid.to_owned(),
            client: client.to_owned(),
            below_gen,
            until: now() + 600,
        }],
        ..ControlMessage::default()
    }
}

/// A connected service link, subscribed to [`PRESENCE_TOPIC`].
pub struct ServiceLink {
    device: Device,
    /// Reports of batches already received, not yet handed out, each with its batch's
    /// payload.
    received: VecDeque<(PresenceMessage, Vec<u8>)>,
}

impl ServiceLink {
    /// Connects to the broker on `port` with a link token of `key` and subscribes to the
    /// presence reports.
    pub fn connect(port: u16, key: &SigningKey) -> ServiceLink {
        let mut device =
            Device::connect(port, LINK, LINK, &link_token(key)).expect("the link is admitted");
        assert!(
            device.subscribe(PRESENCE_TOPIC),
            "the link may subscribe to {PRESENCE_TOPIC}"
        );
        ServiceLink {
            device,
            received: VecDeque::new(),
        }
    }

    /// Publishes `message` on the control topic (QoS 1).
    pub fn send(&self, message: &ControlMessage) {
        self.device
            .client
            .publish(CONTROL_TOPIC, QoS::AtLeastOnce, false, message.to_payload())
            .expect("publish queued");
    }

    /// The next presence report with the raw payload of the batch it came in, within
    /// `timeout`.
    pub fn next_report(&mut self, timeout: Duration) -> Option<(PresenceMessage, Vec<u8>)> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(report) = self.received.pop_front() {
                return Some(report);
            }
            match self
                .device
                .next_event(deadline.saturating_duration_since(Instant::now()))?
            {
                DeviceEvent::Message { topic, payload, .. } => {
                    assert_eq!(
                        topic, PRESENCE_TOPIC,
                        "the link subscribed to presence only"
                    );
                    let batch = PresenceMessage::batch_from_payload(&payload)
                        .unwrap_or_else(|error| panic!("a malformed presence batch: {error}"));
                    assert!(!batch.is_empty(), "the plugin publishes no empty batch");
                    self.received
                        .extend(batch.into_iter().map(|report| (report, payload.clone())));
                }
                DeviceEvent::Closed { reason, .. } => panic!("the link was closed: {reason}"),
                DeviceEvent::SubAck(_) => {}
            }
        }
    }

    /// Waits for the first report `wanted` picks, within `timeout`; returns it and the
    /// reports seen before it.
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        wanted: impl Fn(&PresenceMessage) -> bool,
    ) -> Option<(PresenceMessage, Vec<PresenceMessage>)> {
        let deadline = Instant::now() + timeout;
        let mut before = Vec::new();
        loop {
            let (message, _) =
                self.next_report(deadline.saturating_duration_since(Instant::now()))?;
            if wanted(&message) {
                return Some((message, before));
            }
            before.push(message);
        }
    }

    /// Every report that arrives within `window`.
    pub fn reports_within(&mut self, window: Duration) -> Vec<PresenceMessage> {
        let deadline = Instant::now() + window;
        let mut reports = Vec::new();
        while let Some((message, _)) =
            self.next_report(deadline.saturating_duration_since(Instant::now()))
        {
            reports.push(message);
        }
        reports
    }
}
