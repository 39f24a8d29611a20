//! The conductors of live sessions, for the routes and the broker link.
//!
//! A session's conductor is created on first use (a call, a look at it, or at start-up
//! for one that was started before the restart) from the session's type
//! ([`super::registry`]); messages devices send to a session whose conductor was never
//! used go nowhere. Calls to one session's conductor come one at a time, and a change of
//! its started state is durable in the store before the call answers, so after a
//! restart exactly the conductors that were started run again
//! ([`Conductors::run_upkeep`]). When a session is closed its conductor ends and its
//! retained state is cleared; one whose session expired ends by itself at its next beat,
//! or at the next upkeep round.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use serde::Serialize;
use serde_json::Value;

use super::registry::conductor_for;
use super::{no_handler_answer, ApiMethod, Conductor, ConductorContext, ConductorScope, Outbox};
use crate::clock::Clock;
use crate::domain::SessionId;
use crate::events::{EventBus, EventKind};
use crate::shutdown::Shutdown;
use crate::store::{SessionStore, StoreError};

/// How often conductors of sessions that are over are let go.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(30);

/// Why a call found no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("no live session {0}")]
    UnknownSession(SessionId),
    #[error("{}", no_handler_answer(.0))]
    UnknownMethod(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A conductor as the v1 API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ConductorView {
    /// The conductor's name.
    #[serde(rename = "type")]
    pub conductor: &'static str,
    pub api: &'static [ApiMethod],
    pub state: Value,
}

struct SessionConductor {
    conductor: Box<dyn Conductor>,
    /// One call at a time, so the started state in the store follows the calls' order.
    calls: tokio::sync::Mutex<()>,
}

/// Every session's conductor that is in use.
pub struct Conductors {
    by_session: DashMap<String, Arc<SessionConductor>>,
    store: Arc<dyn SessionStore>,
    clock: Arc<dyn Clock>,
    /// The broker link's outbox; `None` without a link.
    outbox: Option<Outbox>,
    tick: Duration,
    /// Where `conductor_called` goes.
    events: EventBus,
}

impl Conductors {
    pub fn new(
        store: Arc<dyn SessionStore>,
        clock: Arc<dyn Clock>,
        outbox: Option<Outbox>,
        tick: Duration,
        events: EventBus,
    ) -> Self {
        Self {
            by_session: DashMap::new(),
            store,
            clock,
            outbox,
            tick,
            events,
        }
    }

    /// Calls `method` of the conductor of session `id`.
    pub async fn call(
        &self,
        id: &SessionId,
        method: &str,
        params: &Value,
    ) -> Result<String, CallError> {
        let session = self
            .of_session(id)
            .await?
            .ok_or_else(|| CallError::UnknownSession(id.clone()))?;
        let _one_at_a_time = session.calls.lock().await;
        let was_started = session.conductor.is_started();
        let answer = session
            .conductor
            .call(method, params)
            .ok_or_else(|| CallError::UnknownMethod(method.to_owned()))?;
        let started = session.conductor.is_started();
        if started != was_started {
            self.store
                .set_conductor_started(id, started, self.clock.unix_now())
                .await?;
        }
        tracing::info!(session_id = %id, conductor = session.conductor.name(), method, %answer, "conductor called");
        self.events.publish(
            EventKind::ConductorCalled {
                session_id: id.as_str().to_owned(),
                conductor: session.conductor.name().to_owned(),
                method: method.to_owned(),
                answer: answer.clone(),
            },
            self.clock.unix_now_ms(),
        );
        Ok(answer)
    }

    /// The conductor of session `id`: its name, API and state.
    pub async fn view(&self, id: &SessionId) -> Result<ConductorView, CallError> {
        let session = self
            .of_session(id)
            .await?
            .ok_or_else(|| CallError::UnknownSession(id.clone()))?;
        let conductor = &session.conductor;
        Ok(ConductorView {
            conductor: conductor.name(),
            api: conductor.api(),
            state: conductor.state(),
        })
    }

    /// A device of session `session_id` published `payload` to
    /// `/{session_id}/$conductor/in/{subtopic}` (the broker link's dispatch, by topic).
    pub fn deliver(&self, session_id: &str, subtopic: &str, payload: &[u8]) {
        let found = self
            .by_session
            .get(session_id)
            .map(|entry| Arc::clone(&entry));
        match found {
            Some(session) => session.conductor.received(subtopic, payload),
            None => tracing::debug!(session_id, subtopic, "message for a conductor not in use"),
        }
    }

    /// The session is closed: its conductor ends and its retained state is cleared (also
    /// when this process never used it: it may have run before a restart).
    pub fn session_closed(&self, session_id: &str) {
        match self.by_session.remove(session_id) {
            Some((_, session)) => session.conductor.end(),
            None => {
                if let Ok(id) = SessionId::parse(session_id) {
                    ConductorScope::new(&id, self.outbox.clone()).clear_state();
                }
            }
        }
    }

    /// Starts the conductors that were started before the restart, then lets go of the
    /// conductors of sessions that are over, every [`UPKEEP_INTERVAL`], until shutdown.
    pub async fn run_upkeep(self: Arc<Self>, shutdown: Shutdown) {
        self.resume_started().await;
        let mut rounds = tokio::time::interval(UPKEEP_INTERVAL);
        rounds.tick().await;
        loop {
            tokio::select! {
                _ = rounds.tick() => self.let_go_of_ended(),
                () = shutdown.wait() => break,
            }
        }
    }

    /// Starts again every conductor recorded as started.
    pub async fn resume_started(&self) {
        let now = self.clock.unix_now();
        let started = match self.store.started_conductors(now).await {
            Ok(started) => started,
            Err(error) => {
                tracing::warn!(%error, "cannot read which conductors were started");
                return;
            }
        };
        for id in started {
            match self.of_session(&id).await {
                Ok(Some(session)) => {
                    let _one_at_a_time = session.calls.lock().await;
                    session.conductor.resume();
                    tracing::info!(session_id = %id, conductor = session.conductor.name(), "conductor started again");
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(session_id = %id, %error, "cannot start a conductor again")
                }
            }
        }
    }

    fn let_go_of_ended(&self) {
        let now = self.clock.unix_now();
        self.by_session.retain(|session_id, session| {
            let live = SessionId::parse(session_id).is_ok_and(|id| self.store.is_live(&id, now));
            if !live {
                session.conductor.end();
            }
            live
        });
    }

    /// The conductor of live session `id`, created on first use; `None` when the session
    /// is unknown, closed or expired.
    async fn of_session(
        &self,
        id: &SessionId,
    ) -> Result<Option<Arc<SessionConductor>>, StoreError> {
        let now = self.clock.unix_now();
        let known = self
            .by_session
            .get(id.as_str())
            .map(|entry| Arc::clone(&entry));
        if let Some(session) = known {
            if self.store.is_live(id, now) {
                return Ok(Some(session));
            }
        }
        let Some(info) = self.store.get(id, now).await? else {
            if let Some((_, session)) = self.by_session.remove(id.as_str()) {
                session.conductor.end();
            }
            return Ok(None);
        };
        let session = self
            .by_session
            .entry(id.as_str().to_owned())
            .or_insert_with(|| {
                Arc::new(SessionConductor {
                    conductor: conductor_for(info.session_type.as_str(), self.context(id)),
                    calls: tokio::sync::Mutex::new(()),
                })
            })
            .clone();
        Ok(Some(session))
    }

    fn context(&self, id: &SessionId) -> ConductorContext {
        let store = Arc::clone(&self.store);
        let clock = Arc::clone(&self.clock);
        let session_id = id.clone();
        ConductorContext::new(
            id.clone(),
            ConductorScope::new(id, self.outbox.clone()),
            self.tick,
            Arc::clone(&self.clock),
            Arc::new(move || store.is_live(&session_id, clock.unix_now())),
        )
    }
}
