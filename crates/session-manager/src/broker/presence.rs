//! The presence table: which devices are connected to the broker right now, as the
//! plugin reports it on the control link ([`PresenceMessage`]), for the admin API.
//!
//! Per device (session id, client name): how many connections it has (a device may hold
//! more than one, and a takeover reports the new connection before the old one's
//! `taken_over` disconnect), so it is online while that count is above zero; when its
//! current connection began; when it was last seen (now while online, else when it last
//! disconnected); and why it last disconnected.
//!
//! The table lives in memory only: it holds the devices seen connecting or disconnecting
//! since the service started, and forgets a session's devices when the session is closed
//! or found expired ([`PresenceTable::prune`]). It is not journaled: after a restart of
//! the service a device that is offline shows `last_seen: null` until it connects again,
//! and the sync the link sends on every (re)connect tells it who is online.
//!
//! Every change is also an event on the bus (`device_connected`, `device_disconnected`
//! with its reason) and moves the `ism_devices_online` gauge.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use dashmap::DashMap;
use serde::Serialize;
use session_token::{
    ConnectedDevice, DisconnectReason, DisconnectedDevice, OnlineDevices, PresenceMessage,
};

use crate::clock::Clock;
use crate::domain::SessionId;
use crate::events::{EventBus, EventKind};
use crate::store::SessionStore;

/// One device's presence as the table keeps it.
#[derive(Debug, Clone, Default)]
struct DeviceState {
    connections: u32,
    /// MQTT client id of its latest connection.
    client_id: String,
    connected_at: Option<u64>,
    /// When it last disconnected.
    disconnected_at: Option<u64>,
    disconnect_reason: Option<DisconnectReason>,
}

/// One device's presence as the admin API shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DevicePresenceView {
    pub online: bool,
    /// Start of its current connection (seconds since the epoch); null while offline.
    pub connected_at: Option<u64>,
    /// Now while online, else when it last disconnected; null when not seen since the
    /// service started.
    pub last_seen: Option<u64>,
    /// Why it last disconnected; null while online or never seen.
    pub disconnect_reason: Option<DisconnectReason>,
}

/// A sync answer being collected: (session, client) → (connections, client id, since).
#[derive(Debug, Default)]
struct SyncInProgress {
    request: Option<String>,
    online: HashMap<(String, String), (u32, String, u64)>,
}

/// Why a presence message was ignored; each is logged once, then only counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Fault {
    Unreadable,
    UnknownSync,
}

impl Fault {
    fn as_str(self) -> &'static str {
        match self {
            Fault::Unreadable => "unreadable",
            Fault::UnknownSync => "unknown_sync",
        }
    }
}

pub struct PresenceTable {
    /// Session id → client name → state.
    sessions: DashMap<String, HashMap<String, DeviceState>>,
    online: AtomicI64,
    sync: Mutex<SyncInProgress>,
    faults_logged: Mutex<HashSet<Fault>>,
    store: Arc<dyn SessionStore>,
    events: EventBus,
    clock: Arc<dyn Clock>,
}

impl PresenceTable {
    pub fn new(store: Arc<dyn SessionStore>, events: EventBus, clock: Arc<dyn Clock>) -> Self {
        PresenceTable {
            sessions: DashMap::new(),
            online: AtomicI64::new(0),
            sync: Mutex::new(SyncInProgress::default()),
            faults_logged: Mutex::new(HashSet::new()),
            store,
            events,
            clock,
        }
    }

    /// The presence of `client` in session `session_id` at `now`.
    pub fn device(&self, session_id: &str, client: &str, now: u64) -> DevicePresenceView {
        let Some(devices) = self.sessions.get(session_id) else {
            return DevicePresenceView::default();
        };
        let Some(device) = devices.get(client) else {
            return DevicePresenceView::default();
        };
        let online = device.connections > 0;
        DevicePresenceView {
            online,
            connected_at: device.connected_at.filter(|_| online),
            last_seen: if online {
                Some(now)
            } else {
                device.disconnected_at
            },
            disconnect_reason: device.disconnect_reason.filter(|_| !online),
        }
    }

    /// How many devices of the session are online.
    pub fn online_count(&self, session_id: &str) -> usize {
        self.sessions.get(session_id).map_or(0, |devices| {
            devices.values().filter(|d| d.connections > 0).count()
        })
    }

    /// Devices online in all sessions.
    pub fn online_total(&self) -> i64 {
        self.online.load(Ordering::Relaxed)
    }

    /// Forgets the devices of a session that is over.
    pub fn forget_session(&self, session_id: &str) {
        if let Some((_, devices)) = self.sessions.remove(session_id) {
            let online = devices.values().filter(|d| d.connections > 0).count();
            self.add_online(-(online as i64));
        }
    }

    /// Forgets the devices of every session that is no longer live.
    pub fn prune(&self) {
        let now = self.clock.unix_now();
        let over: Vec<String> = self
            .sessions
            .iter()
            .filter(|entry| !self.is_live(entry.key(), now))
            .map(|entry| entry.key().clone())
            .collect();
        for session_id in over {
            self.forget_session(&session_id);
        }
    }

    /// A sync request `request` was sent: its answer will replace who is online.
    pub fn sync_requested(&self, request: String) {
        let mut sync = self.sync.lock().unwrap_or_else(PoisonError::into_inner);
        sync.request = Some(request);
        sync.online.clear();
    }

    /// Applies one message from the presence topic, a batch of reports, in order;
    /// malformed ones are logged (once per kind of fault), counted and ignored whole.
    pub fn apply_payload(&self, payload: &[u8]) {
        match PresenceMessage::batch_from_payload(payload) {
            Ok(reports) => reports.into_iter().for_each(|report| self.apply(report)),
            Err(error) => self.fault(Fault::Unreadable, &error),
        }
    }

    /// Applies one report.
    pub fn apply(&self, message: PresenceMessage) {
        match message {
            PresenceMessage::Connected(device) => {
                metrics::counter!("ism_presence_messages_total", "kind" => "connected")
                    .increment(1);
                self.connected(device);
            }
            PresenceMessage::Disconnected(device) => {
                metrics::counter!("ism_presence_messages_total", "kind" => "disconnected")
                    .increment(1);
                self.disconnected(device);
            }
            PresenceMessage::Online(part) => {
                metrics::counter!("ism_presence_messages_total", "kind" => "online").increment(1);
                self.online_part(part);
            }
        }
    }

    fn connected(&self, device: ConnectedDevice) {
        let now = self.clock.unix_now();
        if !self.is_live(&device.sid, now) {
            tracing::debug!(session_id = %device.sid, client = %device.client, "presence of a session that is over; ignored");
            return;
        }
        let mut devices = self.sessions.entry(device.sid.clone()).or_default();
        let state = devices.entry(device.client.clone()).or_default();
        if state.connections == 0 {
            self.add_online(1);
        }
        state.connections = state.connections.saturating_add(1);
        state.connected_at = Some(device.at);
        state.client_id.clone_from(&device.client_id);
        drop(devices);
        self.emit(EventKind::DeviceConnected {
            session_id: device.sid,
            client: device.client,
            client_id: device.client_id,
        });
    }

    /// A connection ended. The event goes out even when the session is over: closing or
    /// expiring a session is what ends its devices' connections (`session_closed`,
    /// `expired`), and listeners want to hear it; the table keeps no new entry for it.
    fn disconnected(&self, device: DisconnectedDevice) {
        let now = self.clock.unix_now();
        let mut devices = if self.is_live(&device.sid, now) {
            Some(self.sessions.entry(device.sid.clone()).or_default())
        } else {
            self.sessions.get_mut(&device.sid)
        };
        if let Some(devices) = devices.as_deref_mut() {
            let state = devices.entry(device.client.clone()).or_default();
            if state.connections == 1 {
                self.add_online(-1);
            }
            state.connections = state.connections.saturating_sub(1);
            state.disconnected_at = Some(device.at);
            state.disconnect_reason = Some(device.reason);
        }
        drop(devices);
        self.emit(EventKind::DeviceDisconnected {
            session_id: device.sid,
            client: device.client,
            client_id: device.client_id,
            reason: device.reason,
        });
    }

    fn online_part(&self, part: OnlineDevices) {
        let finished = {
            let mut sync = self.sync.lock().unwrap_or_else(PoisonError::into_inner);
            if sync.request.as_deref() != Some(part.sync.as_str()) {
                drop(sync);
                self.fault(
                    Fault::UnknownSync,
                    &format!(
                        "an answer to sync {:?}, which is not the latest request",
                        part.sync
                    ),
                );
                return;
            }
            for device in part.clients {
                let entry = sync.online.entry((device.sid, device.client)).or_insert((
                    0,
                    device.client_id.clone(),
                    device.at,
                ));
                entry.0 = entry.0.saturating_add(1);
                if device.at >= entry.2 {
                    entry.1 = device.client_id;
                    entry.2 = device.at;
                }
            }
            if !part.done {
                return;
            }
            sync.request = None;
            std::mem::take(&mut sync.online)
        };
        self.replace_online(finished);
    }

    /// Makes exactly the devices of a finished sync answer online.
    fn replace_online(&self, mut listed: HashMap<(String, String), (u32, String, u64)>) {
        let now = self.clock.unix_now();
        let mut events = Vec::new();
        for mut entry in self.sessions.iter_mut() {
            let session_id = entry.key().clone();
            for (client, state) in entry.value_mut().iter_mut() {
                match listed.remove(&(session_id.clone(), client.clone())) {
                    Some((connections, client_id, since)) => {
                        if state.connections == 0 {
                            state.connected_at = Some(since);
                            state.client_id.clone_from(&client_id);
                            events.push(EventKind::DeviceConnected {
                                session_id: session_id.clone(),
                                client: client.clone(),
                                client_id,
                            });
                        }
                        state.connections = connections;
                    }
                    None if state.connections > 0 => {
                        state.connections = 0;
                        state.disconnected_at = Some(now);
                        state.disconnect_reason = Some(DisconnectReason::Disconnected);
                        events.push(EventKind::DeviceDisconnected {
                            session_id: session_id.clone(),
                            client: client.clone(),
                            client_id: state.client_id.clone(),
                            reason: DisconnectReason::Disconnected,
                        });
                    }
                    None => {}
                }
            }
        }
        for ((session_id, client), (connections, client_id, since)) in listed {
            if !self.is_live(&session_id, now) {
                continue;
            }
            self.sessions.entry(session_id.clone()).or_default().insert(
                client.clone(),
                DeviceState {
                    connections,
                    client_id: client_id.clone(),
                    connected_at: Some(since),
                    disconnected_at: None,
                    disconnect_reason: None,
                },
            );
            events.push(EventKind::DeviceConnected {
                session_id,
                client,
                client_id,
            });
        }
        let online: usize = self
            .sessions
            .iter()
            .map(|entry| entry.values().filter(|d| d.connections > 0).count())
            .sum();
        self.online.store(online as i64, Ordering::Relaxed);
        metrics::gauge!("ism_devices_online").set(online as f64);
        for event in events {
            self.emit(event);
        }
    }

    fn is_live(&self, session_id: &str, now: u64) -> bool {
        SessionId::parse(session_id).is_ok_and(|id| self.store.is_live(&id, now))
    }

    fn add_online(&self, change: i64) {
        let online = self.online.fetch_add(change, Ordering::Relaxed) + change;
        metrics::gauge!("ism_devices_online").set(online as f64);
    }

    fn emit(&self, event: EventKind) {
        self.events.publish(event, self.clock.unix_now_ms());
    }

    fn fault(&self, fault: Fault, detail: &dyn std::fmt::Display) {
        metrics::counter!("ism_presence_messages_total", "kind" => "malformed").increment(1);
        let first = self
            .faults_logged
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(fault);
        if first {
            tracing::warn!(fault = fault.as_str(), %detail, "ignoring a presence message from the broker (logged once per kind; all are counted in ism_presence_messages_total{{kind=\"malformed\"}})");
        } else {
            tracing::debug!(fault = fault.as_str(), %detail, "ignoring a presence message from the broker");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::store::{JournalStore, NewSession, StoreConfig};

    struct Fixture {
        table: PresenceTable,
        events: tokio::sync::broadcast::Receiver<Arc<crate::events::Event>>,
        store: Arc<dyn SessionStore>,
        sid: String,
        _dir: tempfile::TempDir,
    }

    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, _) = JournalStore::open(StoreConfig {
            data_dir: dir.path().to_owned(),
            id_length: 9,
            repair_journal_at: None,
        })
        .await
        .expect("a store");
        let store: Arc<dyn SessionStore> = Arc::new(store);
        let now = crate::clock::unix_now();
        let session = store
            .create(NewSession::default(), Arc::from("not a real hash"), now)
            .await
            .expect("a session");
        let bus = EventBus::new(64);
        let events = bus.subscribe();
        let table = PresenceTable::new(Arc::clone(&store), bus, Arc::new(SystemClock));
        Fixture {
            table,
            events,
            store,
            sid: session.id.as_str().to_owned(),
            _dir: dir,
        }
    }

    fn connected(sid: &str, client: &str, at: u64) -> PresenceMessage {
        PresenceMessage::Connected(ConnectedDevice {
            sid: sid.to_owned(),
            client: client.to_owned(),
            client_id: client.to_owned(),
            jti: "j".to_owned(),
            at,
        })
    }

    fn disconnected(sid: &str, client: &str, at: u64, reason: DisconnectReason) -> PresenceMessage {
        PresenceMessage::Disconnected(DisconnectedDevice {
            sid: sid.to_owned(),
            client: client.to_owned(),
            client_id: client.to_owned(),
            at,
            reason,
        })
    }

    fn next_event(fixture: &mut Fixture) -> EventKind {
        fixture.events.try_recv().expect("an event").kind.clone()
    }

    #[tokio::test]
    async fn a_takeover_keeps_the_device_online_and_still_reports_the_old_connection_ending() {
        let mut f = fixture().await;
        let sid = f.sid.clone();
        f.table.apply(connected(&sid, "lamp", 10));
        f.table.apply(connected(&sid, "lamp", 20));
        f.table
            .apply(disconnected(&sid, "lamp", 20, DisconnectReason::TakenOver));
        let view = f.table.device(&sid, "lamp", 30);
        assert_eq!(
            view,
            DevicePresenceView {
                online: true,
                connected_at: Some(20),
                last_seen: Some(30),
                disconnect_reason: None,
            }
        );
        assert_eq!(f.table.online_count(&sid), 1);
        assert_eq!(f.table.online_total(), 1);
        assert!(matches!(
            next_event(&mut f),
            EventKind::DeviceConnected { .. }
        ));
        assert!(matches!(
            next_event(&mut f),
            EventKind::DeviceConnected { .. }
        ));
        assert!(matches!(
            next_event(&mut f),
            EventKind::DeviceDisconnected {
                reason: DisconnectReason::TakenOver,
                ..
            }
        ));
        f.table
            .apply(disconnected(&sid, "lamp", 40, DisconnectReason::Kicked));
        let view = f.table.device(&sid, "lamp", 50);
        assert!(!view.online);
        assert_eq!(view.last_seen, Some(40));
        assert_eq!(view.disconnect_reason, Some(DisconnectReason::Kicked));
        assert_eq!(f.table.online_total(), 0);
    }

    #[tokio::test]
    async fn a_sync_answer_replaces_who_is_online_with_events_for_each_change() {
        let mut f = fixture().await;
        let sid = f.sid.clone();
        f.table.apply(connected(&sid, "lamp", 10));
        f.table
            .apply(disconnected(&sid, "door", 11, DisconnectReason::Expired));
        while f.events.try_recv().is_ok() {}
        f.table.sync_requested("r2".to_owned());
        let door = ConnectedDevice {
            sid: sid.clone(),
            client: "door".to_owned(),
            client_id: "door".to_owned(),
            jti: "j".to_owned(),
            at: 15,
        };
        f.table.apply(PresenceMessage::Online(OnlineDevices {
            sync: "r2".to_owned(),
            clients: vec![door],
            done: false,
        }));
        // Nothing changes before the last part.
        assert!(f.table.device(&sid, "lamp", 20).online);
        f.table.apply(PresenceMessage::Online(OnlineDevices {
            sync: "r2".to_owned(),
            clients: vec![],
            done: true,
        }));
        let lamp = f.table.device(&sid, "lamp", 20);
        assert!(!lamp.online);
        assert_eq!(lamp.disconnect_reason, Some(DisconnectReason::Disconnected));
        let door = f.table.device(&sid, "door", 20);
        assert_eq!((door.online, door.connected_at), (true, Some(15)));
        let mut kinds = [next_event(&mut f), next_event(&mut f)];
        kinds.sort_by_key(|kind| matches!(kind, EventKind::DeviceConnected { .. }));
        assert!(matches!(
            kinds[0],
            EventKind::DeviceDisconnected {
                reason: DisconnectReason::Disconnected,
                ..
            }
        ));
        assert!(matches!(kinds[1], EventKind::DeviceConnected { .. }));
        // A stale or repeated answer is ignored.
        f.table.apply(PresenceMessage::Online(OnlineDevices {
            sync: "r2".to_owned(),
            clients: vec![],
            done: true,
        }));
        assert!(f.table.device(&sid, "door", 20).online);
        f.table.apply_payload(b"not json");
        assert!(f.table.device(&sid, "door", 20).online);
    }

    #[tokio::test]
    async fn devices_of_sessions_that_are_over_are_forgotten_and_not_taken_back() {
        let f = fixture().await;
        let sid = f.sid.clone();
        f.table.apply(connected(&sid, "lamp", 10));
        assert_eq!(f.table.online_total(), 1);
        let id = SessionId::parse(&sid).expect("an id");
        assert!(f.store.close(&id).await.expect("closed"));
        f.table.prune();
        assert_eq!(f.table.online_total(), 0);
        assert_eq!(
            f.table.device(&sid, "lamp", 20),
            DevicePresenceView::default()
        );
        f.table.apply(connected(&sid, "lamp", 30));
        assert_eq!(f.table.online_count(&sid), 0);
        assert_eq!(f.table.online_total(), 0);
    }
}
