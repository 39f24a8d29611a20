//! The server-side monitor: every message of the sessions' topic trees that the broker
//! link receives, logged and counted (`ISM_MONITOR=log`) and streamed live to the admin
//! API's readers of one session (`GET /api/v1/sessions/{id}/messages`, whatever
//! `ISM_MONITOR` says).
//!
//! - [`subscriptions`]: what the link subscribes to for the monitor, and when;
//! - [`message`]: one received message and its JSON;
//! - [`counters`]: the bounded per-session message and byte counters `/metrics` shows;
//! - [`readers`]: the live readers of each session, with a bounded buffer each;
//! - [`stream`]: a reader's Server-Sent Events.
//!
//! The link's event loop must never wait for the monitor (it carries closes, kicks and
//! presence): [`Monitor::observe`] only puts the message in a bounded queue with
//! `try_send`, and a full queue drops it (counted in `ism_monitor_dropped_total`). The
//! [`MonitorWorker`] task empties the queue: it logs, counts and hands each message to
//! the session's readers, again without waiting for any of them.
//!
//! With `ISM_MONITOR=log`, retained messages the broker replays when the link subscribes
//! (on every reconnect of the link) are not logged or counted again: the log and the
//! counters show live traffic. Readers get them, marked `"retain": true`.

pub mod counters;
pub mod message;
pub mod readers;
pub mod stream;
pub mod subscriptions;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::response::Response;
use rumqttc::{Publish, QoS};
use tokio::sync::mpsc;

use crate::clock::Clock;
use crate::config::{MonitorConfig, MonitorMode};
use crate::domain::SessionId;
use crate::events::sse::StreamSettings;
use crate::metrics::handle::LazyCounter;
use crate::metrics::{MONITOR_BYTES_TOTAL, MONITOR_DROPPED_TOTAL, MONITOR_MESSAGES_TOTAL};
use crate::shutdown::Shutdown;
use crate::store::SessionStore;
use counters::SessionCounters;
use message::MonitoredMessage;
use readers::Readers;
use subscriptions::LinkSubscriptions;

/// Messages waiting between the link and the worker; beyond it they are dropped.
const QUEUE: usize = 4096;
/// Messages a live reader may fall behind before it loses the oldest.
const READER_BUFFER: usize = 1024;
/// Sessions whose counters are kept (the most recently active).
const COUNTED_SESSIONS: usize = 1000;
/// How often counters and readers of sessions that expired are dropped.
const PRUNE_INTERVAL: Duration = Duration::from_secs(60);
/// At most one warning about dropped messages per this many seconds.
const DROP_WARNING_INTERVAL_SECS: u64 = 10;

static MESSAGES: LazyCounter = LazyCounter::new(MONITOR_MESSAGES_TOTAL);
static BYTES: LazyCounter = LazyCounter::new(MONITOR_BYTES_TOTAL);
static DROPPED: LazyCounter = LazyCounter::new(MONITOR_DROPPED_TOTAL);

/// The monitor, shared by the link, the worker, the routes and the state.
#[derive(Clone)]
pub struct Monitor {
    shared: Arc<Shared>,
}

struct Shared {
    mode: MonitorMode,
    log_payloads: bool,
    /// Whether a broker link feeds the monitor at all.
    linked: bool,
    queue: mpsc::Sender<MonitoredMessage>,
    readers: Arc<Readers>,
    counters: Mutex<SessionCounters>,
    clock: Arc<dyn Clock>,
    streams: StreamSettings,
    last_drop_warning: AtomicU64,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("mode", &self.shared.mode)
            .field("log_payloads", &self.shared.log_payloads)
            .field("linked", &self.shared.linked)
            .finish_non_exhaustive()
    }
}

/// The task that logs, counts and fans out what the link observed.
pub struct MonitorWorker {
    queue: mpsc::Receiver<MonitoredMessage>,
    monitor: Monitor,
}

impl Monitor {
    /// The monitor as `config` asks for it; `linked` tells whether a broker link will feed
    /// it (without one, `ISM_MONITOR=log` is ignored with a warning).
    pub fn new(
        config: &MonitorConfig,
        linked: bool,
        clock: Arc<dyn Clock>,
        streams: StreamSettings,
    ) -> (Monitor, MonitorWorker) {
        let mode = if linked {
            config.monitor
        } else {
            if config.monitor == MonitorMode::Log {
                tracing::warn!(
                    "ISM_MONITOR=log is ignored: the monitor reads through the broker link (ISM_BROKER_CONTROL_URL, in a mode that signs tokens)"
                );
            }
            MonitorMode::Off
        };
        if mode == MonitorMode::Log {
            tracing::info!(
                payloads = config.monitor_payloads,
                "monitor on: every message of every session is logged"
            );
        }
        let (sender, receiver) = mpsc::channel(QUEUE);
        let monitor = Monitor {
            shared: Arc::new(Shared {
                mode,
                log_payloads: config.monitor_payloads,
                linked,
                queue: sender,
                readers: Readers::new(READER_BUFFER),
                counters: Mutex::new(SessionCounters::new(COUNTED_SESSIONS)),
                clock,
                streams,
                last_drop_warning: AtomicU64::new(0),
            }),
        };
        let worker = MonitorWorker {
            queue: receiver,
            monitor: monitor.clone(),
        };
        (monitor, worker)
    }

    pub fn mode(&self) -> MonitorMode {
        self.shared.mode
    }

    /// Whether live message streams can carry anything (a broker link feeds the monitor).
    pub fn is_linked(&self) -> bool {
        self.shared.linked
    }

    pub(crate) fn readers(&self) -> &Arc<Readers> {
        &self.shared.readers
    }

    /// The link's bookkeeping of its subscriptions for the monitor.
    pub fn link_subscriptions(&self) -> LinkSubscriptions {
        LinkSubscriptions::new(self.clone())
    }

    /// A message the link received (not on its control topics): queued for the worker,
    /// or dropped when the queue is full. Never waits.
    pub fn observe(&self, publish: &Publish) {
        let Some(session) = MonitoredMessage::session_of(&publish.topic) else {
            return;
        };
        let logged = self.shared.mode == MonitorMode::Log && !publish.retain;
        if !logged && !self.shared.readers.any() {
            // Nothing to log (a replay of a retained message because the link just
            // subscribed, or a message another part of the link subscribed to with the
            // monitor off) and nobody reads. After a reconnect with the monitor on, the
            // replays are every session's retained messages at once: they must not crowd
            // the queue.
            return;
        }
        let message = MonitoredMessage {
            session_id: session.to_owned(),
            topic: publish.topic.clone(),
            payload: publish.payload.clone(),
            qos: match publish.qos {
                QoS::AtMostOnce => 0,
                QoS::AtLeastOnce => 1,
                QoS::ExactlyOnce => 2,
            },
            retain: publish.retain,
            time_ms: self.shared.clock.unix_now_ms(),
        };
        if self.shared.queue.try_send(message).is_err() {
            DROPPED.increment(1);
            self.warn_about_drops();
        }
    }

    fn warn_about_drops(&self) {
        let now = self.shared.clock.unix_now();
        let last = self.shared.last_drop_warning.load(Ordering::Relaxed);
        if now >= last + DROP_WARNING_INTERVAL_SECS
            && self
                .shared
                .last_drop_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                queue = QUEUE,
                "the monitor cannot keep up: messages are dropped (ism_monitor_dropped_total)"
            );
        }
    }

    /// A new live message stream of `session` (which the caller found live).
    pub fn open_stream(&self, session: &SessionId) -> Response {
        let (receiver, guard) = self.shared.readers.join(session.as_str());
        stream::open(receiver, guard, &self.shared.streams)
    }

    /// The session was closed: its counters are forgotten and its streams end.
    pub fn session_ended(&self, session: &str) {
        self.counters().forget(session);
        self.shared.readers.end_session(session);
    }

    /// Appends the per-session counters to a `/metrics` page (with `ISM_MONITOR=log`).
    pub fn render_counters(&self, out: &mut String) {
        if self.shared.mode == MonitorMode::Log {
            self.counters().render(out);
        }
    }

    fn counters(&self) -> std::sync::MutexGuard<'_, SessionCounters> {
        self.shared
            .counters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Logs and counts one message (live traffic only), then hands it to its readers.
    fn handle(&self, message: MonitoredMessage) {
        if SessionId::parse(&message.session_id).is_err() {
            // Not a session's tree: nobody can read it here, and it is nobody's traffic.
            return;
        }
        if self.shared.mode == MonitorMode::Log && !message.retain {
            self.log(&message);
            let size = message.payload.len();
            MESSAGES.increment(1);
            BYTES.increment(u64::try_from(size).unwrap_or(u64::MAX));
            self.counters().record(&message.session_id, size);
        }
        self.shared.readers.deliver(&Arc::new(message));
    }

    fn log(&self, message: &MonitoredMessage) {
        if self.shared.log_payloads {
            let (payload, encoding) = message.payload_text();
            tracing::info!(
                session_id = %message.session_id,
                topic = %message.topic,
                size = message.payload.len(),
                qos = message.qos,
                retain = message.retain,
                payload = %payload,
                encoding = encoding.as_str(),
                "mqtt message"
            );
        } else {
            tracing::info!(
                session_id = %message.session_id,
                topic = %message.topic,
                size = message.payload.len(),
                qos = message.qos,
                retain = message.retain,
                "mqtt message"
            );
        }
    }

    /// Forgets counters and ends streams of sessions that are no longer live (expired).
    fn prune(&self, store: &dyn SessionStore) {
        let now = self.shared.clock.unix_now();
        let live =
            |session: &str| SessionId::parse(session).is_ok_and(|id| store.is_live(&id, now));
        self.counters().retain(live);
        self.shared.readers.retain(live);
    }
}

impl MonitorWorker {
    /// Runs until `shutdown`; `store` tells which sessions are still live.
    pub fn spawn(
        self,
        store: Arc<dyn SessionStore>,
        shutdown: Shutdown,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.run(store, shutdown))
    }

    async fn run(mut self, store: Arc<dyn SessionStore>, shutdown: Shutdown) {
        let mut prune = tokio::time::interval(PRUNE_INTERVAL);
        prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                received = self.queue.recv() => match received {
                    Some(message) => self.monitor.handle(message),
                    None => break,
                },
                _ = prune.tick() => self.monitor.prune(&*store),
                () = shutdown.wait() => break,
            }
        }
    }
}
