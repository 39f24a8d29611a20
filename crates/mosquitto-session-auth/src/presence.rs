//! Presence reports: which admitted device connections are live, and the messages that say
//! so (see `session_token::presence` for the contract).
//!
//! - To the service, on [`PRESENCE_TOPIC`]: a [`PresenceMessage::Connected`] when a device
//!   is admitted, a [`PresenceMessage::Disconnected`] with its [`DisconnectReason`] when
//!   that connection ends, and the list of live connections in parts when it asks (sync).
//! - To the session's devices, retained on `presence_topic(sid, client)`: a
//!   [`DevicePresence`] online on connect, offline (with the reason) when its last live
//!   connection ends, and an empty retained message (which deletes it) once the session is
//!   closed or its last token has expired, so the broker does not keep them forever.
//!
//! Only devices are reported: principals without a session (the service's control link,
//! `$`-ids) are not, and neither are connections the plugin never admitted. Memory holds
//! one record per live connection and, per session with a live token, the names whose
//! presence the broker retains.
//!
//! Both kinds are gathered and published together, at most every [`FLUSH_INTERVAL_MS`]
//! (on TICK): reports to the service in batches ([`PresenceBatch`], at most
//! [`MAX_REPORTS_PER_BATCH`] reports and about [`MAX_BATCH_BYTES`] each, a full batch going
//! out at once), and one retained message per device whose presence changed, its latest
//! state. A device that connects and disconnects within one interval is reported twice to
//! the service but retained once, offline. A broker busy with connects and disconnects so
//! publishes a few messages per interval instead of four per device cycle.
//!
//! This module only builds the messages; the FFI shell publishes them, after the plugin
//! lock is released. Nothing here runs on the message path.

use std::collections::{HashMap, HashSet};

use session_token::presence::presence_topic;
use session_token::{
    scoped_client_id, ConnectedDevice, DevicePresence, DisconnectReason, DisconnectedDevice,
    OnlineDevices, PresenceBatch, PresenceMessage, PRESENCE_TOPIC,
};

use crate::clients::{ClientHandle, ConnectedClient};
use crate::expiring::ExpiringSet;

/// At most this many devices in one part of a sync answer.
pub const MAX_DEVICES_PER_PART: usize = 200;

/// At most about this many bytes of device entries in one part of a sync answer (a part
/// stays well under 64 KiB; a single entry larger than this goes alone in its part).
pub const MAX_PART_BYTES: usize = 32 * 1024;

/// Gathered presence is published at most this often (milliseconds), on the first TICK
/// after the interval (Mosquitto 2.0 raises TICK at least every 100 ms).
pub const FLUSH_INTERVAL_MS: u64 = 50;

/// At most this many reports in one batch to the service; a full batch goes out at once.
pub const MAX_REPORTS_PER_BATCH: usize = 200;

/// At most about this many bytes in one batch to the service; a full batch goes out at
/// once.
pub const MAX_BATCH_BYTES: usize = 32 * 1024;

/// When a session's last token has expired but a connection of it is still live (the
/// broker was told not to disconnect expired clients), its retained presence is looked
/// at again this much later.
pub const SESSION_RECHECK_SECS: u64 = 60;

/// A message for the broker to publish (QoS 1, from the broker itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

impl Outgoing {
    fn reports(batch: PresenceBatch) -> Self {
        Outgoing {
            topic: PRESENCE_TOPIC.to_owned(),
            payload: batch.into_payload(),
            retain: false,
        }
    }

    fn retained(topic: String, payload: Vec<u8>) -> Self {
        Outgoing {
            topic,
            payload,
            retain: true,
        }
    }
}

/// One live connection the plugin admitted.
#[derive(Debug)]
struct LiveConnection {
    device: ConnectedDevice,
    /// Why the plugin is about to end it (set just before the broker is asked to).
    ending: Option<DisconnectReason>,
}

/// What is known of one session's devices.
#[derive(Debug, Default)]
struct SessionDevices {
    /// Names whose presence the broker retains.
    names: HashSet<String>,
    /// Live connections of the session.
    live: usize,
}

#[derive(Debug, Default)]
pub(crate) struct PresenceTracker {
    live: HashMap<ClientHandle, LiveConnection, foldhash::fast::RandomState>,
    /// Live connections per device, keyed by `"{sid}/{client}"`.
    per_device: HashMap<String, usize, foldhash::fast::RandomState>,
    sessions: HashMap<String, SessionDevices, foldhash::fast::RandomState>,
    /// Each known session's latest token expiry: after it, with nothing live, its retained
    /// presence is cleared and the session forgotten.
    session_ends: ExpiringSet,
    /// Reports not yet published, oldest first.
    reports: PresenceBatch,
    /// The retained messages not yet published: each changed device's latest, by topic.
    retained: HashMap<String, Vec<u8>, foldhash::fast::RandomState>,
}

impl PresenceTracker {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Remembers that `client` of session `sid` may have a retained presence (read back
    /// from the state file), so it is cleared with its session.
    pub(crate) fn remember(&mut self, sid: &str, client: &str, expires_at: u64) {
        self.extend_session(sid, expires_at);
        if let Some(session) = self.sessions.get_mut(sid) {
            session.names.insert(client.to_owned());
        }
    }

    fn extend_session(&mut self, sid: &str, expires_at: u64) {
        if self
            .session_ends
            .get(sid)
            .is_none_or(|end| end < expires_at)
        {
            self.session_ends.set(sid, expires_at);
        }
        if !self.sessions.contains_key(sid) {
            self.sessions
                .insert(sid.to_owned(), SessionDevices::default());
        }
    }

    /// A device was admitted on `connection`: its report and retained online presence are
    /// gathered (and returned when that filled a batch). Nothing for a principal without a
    /// session.
    pub(crate) fn connected(
        &mut self,
        connection: ClientHandle,
        client: &ConnectedClient,
        now: u64,
    ) -> Vec<Outgoing> {
        if client.session_id.is_empty() {
            return Vec::new();
        }
        // A context address reused without its disconnect seen: the old record goes.
        self.forget(connection);
        let device = ConnectedDevice {
            sid: client.session_id.clone(),
            client: client.name.clone(),
            client_id: client.client_id.clone(),
            jti: client.token_id.clone(),
            at: now,
        };
        self.extend_session(&device.sid, client.expires_at);
        if let Some(session) = self.sessions.get_mut(&device.sid) {
            session.live += 1;
            if !session.names.contains(&device.client) {
                session.names.insert(device.client.clone());
            }
        }
        *self
            .per_device
            .entry(scoped_client_id(&device.sid, &device.client))
            .or_insert(0) += 1;
        let online = DevicePresence {
            online: true,
            at: now,
            reason: None,
        };
        self.retained.insert(
            presence_topic(&device.sid, &device.client),
            online.to_payload(),
        );
        let full = self.gather(&PresenceMessage::Connected(device.clone()));
        self.live.insert(
            connection,
            LiveConnection {
                device,
                ending: None,
            },
        );
        full
    }

    /// Adds `report` to the gathered ones; when that fills the batch, everything gathered.
    fn gather(&mut self, report: &PresenceMessage) -> Vec<Outgoing> {
        self.reports.push(report);
        if self.reports.len() >= MAX_REPORTS_PER_BATCH || self.reports.byte_len() >= MAX_BATCH_BYTES
        {
            self.flush()
        } else {
            Vec::new()
        }
    }

    /// Everything gathered, to publish now: the batch of reports, then each changed
    /// device's retained presence.
    pub(crate) fn flush(&mut self) -> Vec<Outgoing> {
        let mut messages = Vec::with_capacity(1 + self.retained.len());
        if !self.reports.is_empty() {
            messages.push(Outgoing::reports(std::mem::take(&mut self.reports)));
        }
        messages.extend(
            self.retained
                .drain()
                .map(|(topic, payload)| Outgoing::retained(topic, payload)),
        );
        messages
    }

    /// The plugin is about to disconnect `connection` for `reason`.
    pub(crate) fn ending(&mut self, connection: ClientHandle, reason: DisconnectReason) {
        if let Some(live) = self.live.get_mut(&connection) {
            live.ending = Some(reason);
        }
    }

    /// Drops the record of `connection`; returns it and whether another connection of the
    /// same device is still live.
    fn forget(&mut self, connection: ClientHandle) -> Option<(LiveConnection, bool)> {
        let live = self.live.remove(&connection)?;
        let key = scoped_client_id(&live.device.sid, &live.device.client);
        let others = match self.per_device.get_mut(&key) {
            Some(count) if *count > 1 => {
                *count -= 1;
                true
            }
            _ => {
                self.per_device.remove(&key);
                false
            }
        };
        if let Some(session) = self.sessions.get_mut(&live.device.sid) {
            session.live = session.live.saturating_sub(1);
        }
        Some((live, others))
    }

    /// The connection `connection` ended: its report and (when it was the device's last
    /// live connection) retained offline presence are gathered, and returned when that
    /// filled a batch. `taken_over`: its client id is now held by a newer connection.
    /// `is_closed`: is this session closed (then no retained presence is written for it
    /// again)? Nothing for a connection the plugin never admitted.
    pub(crate) fn disconnected(
        &mut self,
        connection: ClientHandle,
        taken_over: bool,
        is_closed: impl FnOnce(&str) -> bool,
        now: u64,
    ) -> Vec<Outgoing> {
        let Some((live, others_live)) = self.forget(connection) else {
            return Vec::new();
        };
        let reason = live.ending.unwrap_or(if taken_over {
            DisconnectReason::TakenOver
        } else {
            DisconnectReason::Disconnected
        });
        let device = live.device;
        if !others_live && !is_closed(&device.sid) {
            let offline = DevicePresence {
                online: false,
                at: now,
                reason: Some(reason),
            };
            self.retained.insert(
                presence_topic(&device.sid, &device.client),
                offline.to_payload(),
            );
        }
        self.gather(&PresenceMessage::Disconnected(DisconnectedDevice {
            sid: device.sid,
            client: device.client,
            client_id: device.client_id,
            at: now,
            reason,
        }))
    }

    /// The retained presence of every known device of `sessions` is deleted and the
    /// sessions forgotten; returns everything gathered, to publish now.
    pub(crate) fn clear_sessions<'a>(
        &mut self,
        sessions: impl IntoIterator<Item = &'a str>,
    ) -> Vec<Outgoing> {
        for sid in sessions {
            let Some(session) = self.sessions.remove(sid) else {
                continue;
            };
            self.session_ends.remove(sid);
            for name in &session.names {
                self.retained.insert(presence_topic(sid, name), Vec::new());
            }
        }
        self.flush()
    }

    /// The sweep: sessions whose last token has expired by `now` and with nothing live
    /// have their retained presence deleted and are forgotten; returns everything
    /// gathered, to publish now.
    pub(crate) fn sweep(&mut self, now: u64) -> Vec<Outgoing> {
        let mut over = Vec::new();
        while let Some((sid, _)) = self.session_ends.pop_due(now) {
            match self.sessions.get(&sid) {
                Some(session) if session.live > 0 => {
                    self.session_ends
                        .set(&sid, now.saturating_add(SESSION_RECHECK_SECS));
                }
                Some(_) => over.push(sid),
                None => {}
            }
        }
        self.clear_sessions(over.iter().map(String::as_str))
    }

    /// Everything gathered so far, then the answer to sync request `request`: every live
    /// device connection, in parts of at most [`MAX_DEVICES_PER_PART`] devices and about
    /// [`MAX_PART_BYTES`], each part a batch of its own; `done` on the last, and always at
    /// least one part.
    pub(crate) fn online(&mut self, request: &str) -> Vec<Outgoing> {
        let mut messages = self.flush();
        let mut parts = Vec::new();
        let mut clients = Vec::new();
        let mut bytes = 0;
        for live in self.live.values() {
            let size = entry_size(&live.device);
            if !clients.is_empty()
                && (clients.len() >= MAX_DEVICES_PER_PART || bytes + size > MAX_PART_BYTES)
            {
                parts.push(std::mem::take(&mut clients));
                bytes = 0;
            }
            clients.push(live.device.clone());
            bytes += size;
        }
        parts.push(clients);
        let last = parts.len() - 1;
        messages.extend(parts.into_iter().enumerate().map(|(index, clients)| {
            Outgoing::reports(PresenceBatch::of([&PresenceMessage::Online(
                OnlineDevices {
                    sync: request.to_owned(),
                    clients,
                    done: index == last,
                },
            )]))
        }));
        messages
    }

    /// How many device connections are live.
    #[cfg(test)]
    pub(crate) fn live_connections(&self) -> usize {
        self.live.len()
    }

    /// How many sessions' retained presence is remembered.
    #[cfg(test)]
    pub(crate) fn known_sessions(&self) -> usize {
        self.sessions.len()
    }
}

/// The bytes one device takes in a sync answer's JSON.
fn entry_size(device: &ConnectedDevice) -> usize {
    serde_json::to_vec(device).map_or(MAX_PART_BYTES, |json| json.len() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use session_token::Acl;

    fn device(client_id: &str, sid: &str, name: &str, expires_at: u64) -> ConnectedClient {
        ConnectedClient {
            client_id: client_id.to_owned(),
            session_id: sid.to_owned(),
            name: name.to_owned(),
            kid: "k".to_owned(),
            expires_at,
            grants_end: expires_at,
            acl: Acl::from_grants(&[], &[]).expect("valid grants"),
            persistent: false,
            token_id: format!("jti-{name}"),
            generation: 0,
        }
    }

    fn parsed(message: &Outgoing) -> Vec<PresenceMessage> {
        assert_eq!(message.topic, PRESENCE_TOPIC);
        assert!(!message.retain);
        PresenceMessage::batch_from_payload(&message.payload).expect("a batch of reports")
    }

    fn retained_json(message: &Outgoing) -> (String, serde_json::Value) {
        assert!(message.retain);
        let value = serde_json::from_slice(&message.payload).unwrap_or(serde_json::Value::Null);
        (message.topic.clone(), value)
    }

    /// What a flush publishes: the reports (in order) and the retained messages (by topic).
    fn flushed(
        tracker: &mut PresenceTracker,
    ) -> (Vec<PresenceMessage>, Vec<(String, serde_json::Value)>) {
        let mut reports = Vec::new();
        let mut retained = Vec::new();
        for message in tracker.flush() {
            if message.retain {
                retained.push(retained_json(&message));
            } else {
                reports.extend(parsed(&message));
            }
        }
        retained.sort_by(|a, b| a.0.cmp(&b.0));
        (reports, retained)
    }

    #[test]
    fn a_device_is_reported_and_retained_online_then_offline() {
        let mut tracker = PresenceTracker::new();
        let sent = tracker.connected(ClientHandle(1), &device("lamp", "111", "lamp", 100), 10);
        assert!(sent.is_empty(), "gathered until the flush");
        let (reports, retained) = flushed(&mut tracker);
        assert_eq!(
            retained,
            vec![(
                "/111/$presence/lamp".to_owned(),
                serde_json::json!({"online": true, "at": 10})
            )]
        );
        assert_eq!(
            reports,
            vec![PresenceMessage::Connected(ConnectedDevice {
                sid: "111".into(),
                client: "lamp".into(),
                client_id: "lamp".into(),
                jti: "jti-lamp".into(),
                at: 10,
            })]
        );
        assert!(tracker.flush().is_empty(), "nothing twice");
        tracker.disconnected(ClientHandle(1), false, |_| false, 20);
        let (reports, retained) = flushed(&mut tracker);
        assert_eq!(
            retained[0].1,
            serde_json::json!({"online": false, "at": 20, "reason": "disconnected"})
        );
        assert!(matches!(
            reports.as_slice(),
            [PresenceMessage::Disconnected(DisconnectedDevice {
                reason: DisconnectReason::Disconnected,
                at: 20,
                ..
            })]
        ));
        assert_eq!(tracker.live_connections(), 0);
    }

    #[test]
    fn reports_are_kept_in_order_and_only_the_latest_state_is_retained() {
        let mut tracker = PresenceTracker::new();
        for round in 0..3 {
            tracker.connected(
                ClientHandle(1),
                &device("lamp", "111", "lamp", 100),
                10 + round,
            );
            tracker.disconnected(ClientHandle(1), false, |_| false, 11 + round);
        }
        tracker.connected(ClientHandle(2), &device("fan", "111", "fan", 100), 20);
        let messages = tracker.flush();
        assert_eq!(
            messages.len(),
            3,
            "one batch and one retained message per device"
        );
        let reports = parsed(&messages[0]);
        let mut retained: Vec<_> = messages[1..].iter().map(retained_json).collect();
        retained.sort_by(|a, b| a.0.cmp(&b.0));
        let kinds: Vec<(&str, u64)> = reports
            .iter()
            .map(|report| match report {
                PresenceMessage::Connected(d) => ("connected", d.at),
                PresenceMessage::Disconnected(d) => ("disconnected", d.at),
                PresenceMessage::Online(_) => ("online", 0),
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("connected", 10),
                ("disconnected", 11),
                ("connected", 11),
                ("disconnected", 12),
                ("connected", 12),
                ("disconnected", 13),
                ("connected", 20),
            ]
        );
        assert_eq!(
            retained,
            vec![
                (
                    "/111/$presence/fan".to_owned(),
                    serde_json::json!({"online": true, "at": 20})
                ),
                (
                    "/111/$presence/lamp".to_owned(),
                    serde_json::json!({"online": false, "at": 13, "reason": "disconnected"})
                ),
            ]
        );
    }

    #[test]
    fn a_full_batch_goes_out_at_once() {
        let mut tracker = PresenceTracker::new();
        let mut published = Vec::new();
        for handle in 0..MAX_REPORTS_PER_BATCH {
            let name = format!("d{handle}");
            published.extend(tracker.connected(
                ClientHandle(handle),
                &device(&name, "111", &name, 100),
                10,
            ));
        }
        let batches: Vec<_> = published.iter().filter(|m| !m.retain).collect();
        assert_eq!(
            batches.len(),
            1,
            "the batch filled up with the last connect"
        );
        assert_eq!(parsed(batches[0]).len(), MAX_REPORTS_PER_BATCH);
        assert!(tracker.flush().is_empty(), "everything went out with it");

        let long = "x".repeat(MAX_BATCH_BYTES / 16);
        let mut published = Vec::new();
        for handle in 0..16 {
            let name = format!("{handle}-{long}");
            published.extend(tracker.connected(
                ClientHandle(1_000 + handle),
                &device(&name, "111", &name, 100),
                10,
            ));
        }
        let batches: Vec<_> = published.iter().filter(|m| !m.retain).collect();
        assert!(!batches.is_empty(), "long names fill a batch by size");
        assert!(batches
            .iter()
            .all(|batch| batch.payload.len() < MAX_BATCH_BYTES + 8 * 1024));
    }

    #[test]
    fn principals_without_a_session_and_unknown_connections_are_not_reported() {
        let mut tracker = PresenceTracker::new();
        tracker.connected(ClientHandle(1), &device("$link", "", "$link", 100), 10);
        tracker.disconnected(ClientHandle(1), false, |_| false, 20);
        tracker.disconnected(ClientHandle(2), true, |_| false, 20);
        assert!(tracker.flush().is_empty());
    }

    #[test]
    fn the_reason_is_the_one_noted_else_taken_over_else_disconnected() {
        let mut tracker = PresenceTracker::new();
        for handle in 1..=3 {
            tracker.connected(
                ClientHandle(handle),
                &device(&format!("d{handle}"), "111", &format!("d{handle}"), 100),
                10,
            );
        }
        tracker.ending(ClientHandle(1), DisconnectReason::Kicked);
        tracker.flush();
        tracker.disconnected(ClientHandle(1), true, |_| false, 20);
        tracker.disconnected(ClientHandle(2), true, |_| false, 20);
        tracker.disconnected(ClientHandle(3), false, |_| false, 20);
        let reasons: Vec<DisconnectReason> = flushed(&mut tracker)
            .0
            .into_iter()
            .map(|report| match report {
                PresenceMessage::Disconnected(device) => device.reason,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            reasons,
            vec![
                DisconnectReason::Kicked,
                DisconnectReason::TakenOver,
                DisconnectReason::Disconnected
            ]
        );
    }

    #[test]
    fn a_device_stays_online_while_another_of_its_connections_lives() {
        let mut tracker = PresenceTracker::new();
        tracker.connected(ClientHandle(1), &device("lamp", "111", "lamp", 100), 10);
        tracker.connected(ClientHandle(2), &device("111/lamp", "111", "lamp", 100), 11);
        tracker.flush();
        tracker.disconnected(ClientHandle(1), false, |_| false, 20);
        let (reports, retained) = flushed(&mut tracker);
        assert_eq!((reports.len(), retained.len()), (1, 0), "the report only");
        tracker.disconnected(ClientHandle(2), false, |_| false, 21);
        let (reports, retained) = flushed(&mut tracker);
        assert_eq!(reports.len(), 1);
        assert_eq!(retained[0].1["online"], false);
    }

    #[test]
    fn a_closed_session_gets_no_retained_presence_and_its_known_devices_are_cleared() {
        let mut tracker = PresenceTracker::new();
        tracker.connected(ClientHandle(1), &device("a", "111", "a", 100), 10);
        tracker.connected(ClientHandle(2), &device("b", "111", "b", 100), 10);
        tracker.connected(ClientHandle(3), &device("c", "222", "c", 100), 10);
        tracker.disconnected(ClientHandle(2), false, |_| false, 15);
        tracker.flush();
        tracker.disconnected(ClientHandle(1), false, |sid| sid == "111", 20);
        let (reports, retained) = flushed(&mut tracker);
        assert_eq!(reports.len(), 1);
        assert!(
            retained.is_empty(),
            "no retained presence for a closed session"
        );
        tracker.connected(ClientHandle(4), &device("d", "111", "d", 100), 21);
        let mut cleared: Vec<(String, serde_json::Value)> = tracker
            .clear_sessions(["111"])
            .iter()
            .filter(|message| message.retain)
            .map(retained_json)
            .collect();
        cleared.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            cleared,
            vec![
                ("/111/$presence/a".to_owned(), serde_json::Value::Null),
                ("/111/$presence/b".to_owned(), serde_json::Value::Null),
                ("/111/$presence/d".to_owned(), serde_json::Value::Null),
            ],
            "a gathered online presence is replaced by the deletion"
        );
        assert!(tracker.clear_sessions(["111"]).is_empty(), "forgotten");
        assert_eq!(tracker.known_sessions(), 1);
    }

    #[test]
    fn the_sweep_clears_a_session_once_its_last_token_expired_and_nothing_lives() {
        let mut tracker = PresenceTracker::new();
        tracker.connected(ClientHandle(1), &device("a", "111", "a", 100), 10);
        tracker.connected(ClientHandle(2), &device("b", "111", "b", 200), 10);
        tracker.remember("333", "old", 50);
        tracker.flush();
        assert_eq!(tracker.sweep(50).len(), 1, "the restored session's device");
        assert!(tracker.sweep(199).is_empty());
        assert!(tracker.sweep(200).is_empty(), "still live: looked at later");
        tracker.disconnected(ClientHandle(1), false, |_| false, 201);
        tracker.disconnected(ClientHandle(2), false, |_| false, 201);
        tracker.flush();
        assert!(tracker.sweep(200 + SESSION_RECHECK_SECS - 1).is_empty());
        assert_eq!(tracker.sweep(200 + SESSION_RECHECK_SECS).len(), 2);
        assert_eq!(tracker.known_sessions(), 0);
    }

    fn parts(tracker: &mut PresenceTracker) -> Vec<OnlineDevices> {
        tracker
            .online("r")
            .iter()
            .filter(|message| !message.retain)
            .flat_map(parsed)
            .filter_map(|report| match report {
                PresenceMessage::Online(part) => Some(part),
                PresenceMessage::Connected(_) | PresenceMessage::Disconnected(_) => None,
            })
            .collect()
    }

    #[test]
    fn a_sync_answer_comes_after_the_reports_gathered_before_it() {
        let mut tracker = PresenceTracker::new();
        tracker.connected(ClientHandle(1), &device("a", "111", "a", 100), 10);
        let messages = tracker.online("r");
        let reports: Vec<PresenceMessage> = messages
            .iter()
            .filter(|message| !message.retain)
            .flat_map(parsed)
            .collect();
        assert!(matches!(
            reports.as_slice(),
            [
                PresenceMessage::Connected(_),
                PresenceMessage::Online(OnlineDevices { done: true, .. })
            ]
        ));
        assert!(tracker.flush().is_empty());
    }

    #[test]
    fn a_sync_answer_is_split_in_bounded_parts_and_always_has_one() {
        let mut tracker = PresenceTracker::new();
        let empty = parts(&mut tracker);
        assert_eq!(empty.len(), 1);
        assert!(empty[0].done && empty[0].clients.is_empty());

        for handle in 0..450 {
            let name = format!("d{handle}");
            tracker.connected(ClientHandle(handle), &device(&name, "111", &name, 100), 10);
        }
        let answer = parts(&mut tracker);
        let sizes: Vec<usize> = answer.iter().map(|part| part.clients.len()).collect();
        assert_eq!(sizes, vec![200, 200, 50]);
        let done: Vec<bool> = answer.iter().map(|part| part.done).collect();
        assert_eq!(done, vec![false, false, true]);
        assert!(answer.iter().all(|part| part.sync == "r"));
    }

    #[test]
    fn long_names_split_a_sync_answer_by_size() {
        let mut tracker = PresenceTracker::new();
        for handle in 0..40 {
            let name = format!("{handle}-{}", "x".repeat(2_000));
            tracker.connected(ClientHandle(handle), &device(&name, "111", &name, 100), 10);
        }
        tracker.flush();
        let messages = tracker.online("r");
        assert!(messages.len() >= 3, "{} parts", messages.len());
        assert!(messages
            .iter()
            .all(|message| message.payload.len() < MAX_PART_BYTES + 8 * 1024));
        let listed: usize = parts(&mut tracker)
            .iter()
            .map(|part| part.clients.len())
            .sum();
        assert_eq!(listed, 40);
    }
}
