//! Conductors: server-side logic per session, chosen by the session's type and driven by
//! the operator (`GET /api/conductorRequest`, `/api/v1/sessions/{id}/conductor`).
//!
//! - [`Conductor`] (here): what every conductor answers: its name, the description of its
//!   API (`[{"method","params"}]`), method calls (an unknown method has no answer), its
//!   state, and optionally messages devices send it on `/{sid}/$conductor/in/...`;
//! - one file per conductor: [`default`] (answers `state`/`start`/`stop` and does
//!   nothing else) and [`active`] (runs its own loop while started, with a retained
//!   heartbeat on `/{sid}/$conductor/state`);
//! - [`registry`]: session type → conductor; adding a conductor is one file and one line
//!   there;
//! - [`scope`]: what a conductor may send over the broker link, kept inside its own
//!   session's `/{sid}/$conductor/` sub-tree;
//! - [`runtime`]: the conductors of live sessions: created on first use, called one call
//!   at a time per session, their started state made durable in the store (a started one
//!   is started again after a restart), ended when their session ends.

mod active;
mod default;
mod registry;
mod runtime;
mod scope;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::clock::Clock;
use crate::domain::SessionId;

pub use runtime::{CallError, ConductorView, Conductors};
pub use scope::{outbox, ConductorMessage, ConductorScope, Outbox, OutboxReceiver};

/// The answer to a method no conductor handles, as the original service spelled it.
pub fn no_handler_answer(method: &str) -> String {
    format!("Error: No handler function registered for method: {method}")
}

/// The answer of the compat route for a session that is unknown, closed or expired.
pub const UNKNOWN_SESSION_ANSWER: &str = "Could not locate session";

/// One method in a conductor's API description.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ApiMethod {
    pub method: &'static str,
    /// The names of its parameters (none for the built-in conductors).
    pub params: &'static [&'static str],
}

impl ApiMethod {
    /// A method that takes no parameters.
    pub const fn without_params(method: &'static str) -> Self {
        ApiMethod {
            method,
            params: &[],
        }
    }
}

/// Server-side logic of one session. Calls come one at a time per session (the runtime
/// serialises them); messages from devices may come at any time.
pub trait Conductor: Send + Sync + 'static {
    /// The conductor's name (`type` in the v1 API), e.g. `default`.
    fn name(&self) -> &'static str;
    /// The methods it answers.
    fn api(&self) -> &'static [ApiMethod];
    /// Calls `method` with `params` (a string from the compat route, any JSON from v1,
    /// `null` when none were given); `None` when it has no such method.
    fn call(&self, method: &str, params: &Value) -> Option<String>;
    /// Its current state, as the v1 API shows it.
    fn state(&self) -> Value;
    /// Whether it is started (recorded in the store: a started conductor is started again
    /// after a restart).
    fn is_started(&self) -> bool {
        false
    }
    /// Starts it again after a restart of the service (it was started before).
    fn resume(&self) {}
    /// A device of its session published `payload` to `/{sid}/$conductor/in/{subtopic}`.
    fn received(&self, _subtopic: &str, _payload: &[u8]) {}
    /// Its session is over (closed or expired): stop everything and clear what it left
    /// at the broker.
    fn end(&self) {}
}

/// What a conductor is given when it is created for a session.
#[derive(Clone)]
pub struct ConductorContext {
    pub session_id: SessionId,
    /// Publishing inside `/{sid}/$conductor/` only.
    pub scope: ConductorScope,
    /// How often a running conductor beats (`ISM_CONDUCTOR_TICK_SECS`).
    pub tick: Duration,
    clock: Arc<dyn Clock>,
    /// Whether the session is still neither closed nor expired (at the clock's now).
    live: Arc<dyn Fn() -> bool + Send + Sync>,
}

impl ConductorContext {
    pub fn new(
        session_id: SessionId,
        scope: ConductorScope,
        tick: Duration,
        clock: Arc<dyn Clock>,
        live: Arc<dyn Fn() -> bool + Send + Sync>,
    ) -> Self {
        Self {
            session_id,
            scope,
            tick,
            clock,
            live,
        }
    }

    /// Seconds since the epoch, from the service's clock.
    pub fn now(&self) -> u64 {
        self.clock.unix_now()
    }

    /// Is the session still neither closed nor expired? Cheap (no I/O).
    pub fn session_is_live(&self) -> bool {
        (self.live)()
    }
}
