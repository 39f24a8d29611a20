//! The `active` conductor (session type `active`): on `start` it runs its own loop until
//! `stop` or `pause`, publishing a retained heartbeat with its state to
//! `/{sid}/$conductor/state` every tick (`ISM_CONDUCTOR_TICK_SECS`), the first at once;
//! while started it counts the messages devices send to `/{sid}/$conductor/in/...`.
//!
//! Answers: `start` → `"Started"`, `stop` → `"Stopped"` (as the original's active
//! conductor), `pause` → `"Paused"` (the loop stops, the counts stay, `start` goes on),
//! `state` → the status word, `"Started"`, `"Paused"` or `"Stopped"`. Stopping or pausing
//! publishes that state once more (retained), so a device that subscribes later learns
//! it; when the session ends the retained state is cleared. Only `start` is remembered
//! across a restart of the service: a started conductor is started again.
//!
//! The heartbeat, and the state the v1 API shows:
//! `{"conductor":"active","status":"started","beats":3,"received":1,"last_topic":"x","at":1700000000}`.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use serde::Serialize;
use serde_json::Value;
use tokio::task::JoinHandle;

use super::{ApiMethod, Conductor, ConductorContext};

const API: &[ApiMethod] = &[
    ApiMethod::without_params("state"),
    ApiMethod::without_params("start"),
    ApiMethod::without_params("stop"),
    ApiMethod::without_params("pause"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Stopped,
    Started,
    Paused,
}

impl Status {
    fn answer(self) -> &'static str {
        match self {
            Status::Stopped => "Stopped",
            Status::Started => "Started",
            Status::Paused => "Paused",
        }
    }
}

/// What the heartbeat carries.
#[derive(Debug, Clone, Serialize)]
struct Heartbeat<'a> {
    conductor: &'static str,
    status: Status,
    /// Heartbeats since the conductor was created.
    beats: u64,
    /// Messages received from devices while started.
    received: u64,
    /// The topic below `in/` of the last of them.
    last_topic: Option<&'a str>,
    at: u64,
}

#[derive(Debug)]
struct Running {
    status: Status,
    beats: u64,
    received: u64,
    last_topic: Option<String>,
    /// The loop, while started.
    beating: Option<JoinHandle<()>>,
}

struct Shared {
    context: ConductorContext,
    running: Mutex<Running>,
}

/// The conductor with a loop of its own.
pub struct ActiveConductor {
    shared: Arc<Shared>,
}

impl ActiveConductor {
    pub fn create(context: ConductorContext) -> Box<dyn Conductor> {
        Box::new(ActiveConductor {
            shared: Arc::new(Shared {
                context,
                running: Mutex::new(Running {
                    status: Status::Stopped,
                    beats: 0,
                    received: 0,
                    last_topic: None,
                    beating: None,
                }),
            }),
        })
    }

    fn start(&self) -> Status {
        let mut running = self.shared.lock();
        if running.status != Status::Started {
            running.status = Status::Started;
            let shared = Arc::downgrade(&self.shared);
            running.beating = Some(tokio::spawn(beat(shared, self.shared.context.tick)));
        }
        running.status
    }

    /// Stops the loop; `status` is the state from now on, published retained.
    fn halt(&self, status: Status) -> Status {
        let mut running = self.shared.lock();
        if let Some(beating) = running.beating.take() {
            beating.abort();
        }
        running.status = status;
        self.shared.publish(&running);
        status
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Running> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn heartbeat<'a>(&self, running: &'a Running) -> Heartbeat<'a> {
        Heartbeat {
            conductor: "active",
            status: running.status,
            beats: running.beats,
            received: running.received,
            last_topic: running.last_topic.as_deref(),
            at: self.context.now(),
        }
    }

    fn publish(&self, running: &Running) {
        match serde_json::to_vec(&self.heartbeat(running)) {
            Ok(payload) => self.context.scope.publish_state(payload),
            Err(error) => tracing::warn!(%error, "cannot encode a conductor's state"),
        }
    }

    /// One beat; false when the session is over (the conductor has then ended).
    fn beat(&self) -> bool {
        if !self.context.session_is_live() {
            self.end();
            return false;
        }
        let mut running = self.lock();
        running.beats += 1;
        self.publish(&running);
        true
    }

    fn end(&self) {
        let mut running = self.lock();
        if let Some(beating) = running.beating.take() {
            beating.abort();
        }
        running.status = Status::Stopped;
        self.context.scope.clear_state();
        tracing::debug!(session_id = %self.context.session_id, "conductor ended with its session");
    }
}

/// The loop of a started conductor: a beat at once, then every `tick`, until it is
/// stopped (its task aborted), dropped or its session is over.
async fn beat(shared: Weak<Shared>, tick: std::time::Duration) {
    let mut ticks = tokio::time::interval(tick);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(shared) = shared.upgrade() else {
            break;
        };
        if !shared.beat() {
            break;
        }
    }
}

impl Conductor for ActiveConductor {
    fn name(&self) -> &'static str {
        "active"
    }

    fn api(&self) -> &'static [ApiMethod] {
        API
    }

    fn call(&self, method: &str, _params: &Value) -> Option<String> {
        let status = match method {
            "state" => self.shared.lock().status,
            "start" => self.start(),
            "stop" => self.halt(Status::Stopped),
            "pause" => self.halt(Status::Paused),
            _ => return None,
        };
        Some(status.answer().to_owned())
    }

    fn state(&self) -> Value {
        let running = self.shared.lock();
        serde_json::to_value(self.shared.heartbeat(&running)).unwrap_or(Value::Null)
    }

    fn is_started(&self) -> bool {
        self.shared.lock().status == Status::Started
    }

    fn resume(&self) {
        self.start();
    }

    fn received(&self, subtopic: &str, _payload: &[u8]) {
        let mut running = self.shared.lock();
        if running.status == Status::Started {
            running.received += 1;
            running.last_topic = Some(subtopic.to_owned());
        }
    }

    fn end(&self) {
        self.shared.end();
    }
}

impl Drop for ActiveConductor {
    fn drop(&mut self) {
        if let Some(beating) = self.shared.lock().beating.take() {
            beating.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::conductor::{outbox, ConductorScope, OutboxReceiver};
    use crate::domain::SessionId;

    /// Long enough that only the beat at start happens during a test.
    const SLOW: Duration = Duration::from_secs(3600);
    const FAST: Duration = Duration::from_millis(20);
    /// Time for a spawned loop to run its first beat.
    const SETTLE: Duration = Duration::from_millis(100);

    fn conductor(tick: Duration, live: &Arc<AtomicBool>) -> (Box<dyn Conductor>, OutboxReceiver) {
        let (outbox, sent) = outbox();
        let id = SessionId::parse("111111").expect("an id");
        let live = Arc::clone(live);
        let context = ConductorContext::new(
            id.clone(),
            ConductorScope::new(&id, Some(outbox)),
            tick,
            Arc::new(crate::clock::SystemClock),
            Arc::new(move || live.load(Ordering::Relaxed)),
        );
        (ActiveConductor::create(context), sent)
    }

    fn next_state(sent: &mut OutboxReceiver) -> Value {
        let message = sent.try_recv().expect("a state was published");
        assert_eq!(message.topic, "/111111/$conductor/state");
        assert!(message.retain, "the state is retained");
        serde_json::from_slice(&message.payload).expect("JSON state")
    }

    fn call(conductor: &dyn Conductor, method: &str) -> Option<String> {
        conductor.call(method, &Value::Null)
    }

    #[tokio::test]
    async fn answers_as_the_original_and_counts_messages_while_started() {
        let live = Arc::new(AtomicBool::new(true));
        let (conductor, mut sent) = conductor(SLOW, &live);
        let conductor = conductor.as_ref();
        assert_eq!(call(conductor, "state").as_deref(), Some("Stopped"));
        conductor.received("before", b"not counted");
        assert_eq!(call(conductor, "start").as_deref(), Some("Started"));
        assert!(conductor.is_started());
        tokio::time::sleep(SETTLE).await;
        let first = next_state(&mut sent);
        assert_eq!(first["status"], "started");
        assert_eq!(first["beats"], 1, "the first beat comes at once");
        // Starting again starts no second loop.
        assert_eq!(call(conductor, "start").as_deref(), Some("Started"));
        conductor.received("hello", b"hi");
        let state = conductor.state();
        assert_eq!(state["received"], 1);
        assert_eq!(state["last_topic"], "hello");
        assert_eq!(call(conductor, "state").as_deref(), Some("Started"));

        assert_eq!(call(conductor, "pause").as_deref(), Some("Paused"));
        assert_eq!(next_state(&mut sent)["status"], "paused");
        conductor.received("ignored", b"");
        assert!(!conductor.is_started());
        assert_eq!(call(conductor, "state").as_deref(), Some("Paused"));

        assert_eq!(call(conductor, "start").as_deref(), Some("Started"));
        tokio::time::sleep(SETTLE).await;
        let resumed = next_state(&mut sent);
        assert_eq!(
            resumed["received"], 1,
            "counts kept, messages while paused not counted"
        );
        assert_eq!(call(conductor, "stop").as_deref(), Some("Stopped"));
        assert_eq!(next_state(&mut sent)["status"], "stopped");
        assert!(sent.try_recv().is_err(), "one beat per start");
        assert_eq!(call(conductor, "resume"), None);
        let api = serde_json::to_value(conductor.api()).expect("serializes");
        assert_eq!(api[3], serde_json::json!({"method": "pause", "params": []}));
    }

    #[tokio::test]
    async fn beats_every_tick_until_stopped() {
        let live = Arc::new(AtomicBool::new(true));
        let (conductor, mut sent) = conductor(FAST, &live);
        call(conductor.as_ref(), "start");
        tokio::time::sleep(FAST * 10).await;
        let mut beats = 0;
        while let Ok(message) = sent.try_recv() {
            let state: Value = serde_json::from_slice(&message.payload).expect("JSON");
            beats += 1;
            assert_eq!(state["beats"], beats);
        }
        assert!(beats >= 3, "{beats} beats in ten ticks");
        call(conductor.as_ref(), "stop");
        assert_eq!(next_state(&mut sent)["status"], "stopped");
        tokio::time::sleep(FAST * 5).await;
        assert!(sent.try_recv().is_err(), "no beat once stopped");
    }

    #[tokio::test]
    async fn ends_and_clears_its_state_when_the_session_is_over() {
        let live = Arc::new(AtomicBool::new(true));
        let (conductor, mut sent) = conductor(FAST, &live);
        call(conductor.as_ref(), "start");
        tokio::time::sleep(SETTLE).await;
        while sent.try_recv().is_ok() {}
        live.store(false, Ordering::Relaxed);
        tokio::time::sleep(SETTLE).await;
        let cleared = sent.try_recv().expect("the state is cleared");
        assert_eq!(cleared.topic, "/111111/$conductor/state");
        assert!(cleared.payload.is_empty() && cleared.retain);
        assert!(!conductor.is_started());
        tokio::time::sleep(FAST * 5).await;
        assert!(sent.try_recv().is_err(), "no beat after the end");
    }
}
