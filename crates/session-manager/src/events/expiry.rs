//! `session_expired`: emitted once for each session when its end passes, within about a
//! second, by a task that wakes a few times a second and takes only the sessions that are
//! due from an index ordered by end time ([`ExpiryIndex`]); it never walks all sessions.
//!
//! The index is filled by the bus itself (every `session_created` with an end adds one,
//! every `session_closed` removes it) and, once at start-up, with the live sessions the
//! store recovered. A session that expired while the service was down gets no event: it
//! ended before this process knew about it.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::clock::Clock;
use crate::domain::SessionId;
use crate::events::{EventBus, EventKind};
use crate::shutdown::Shutdown;
use crate::store::SessionStore;

/// How often the task looks for sessions whose end has passed.
const TICK: Duration = Duration::from_millis(250);
/// The most sessions one tick emits for; the rest wait for the next tick.
const MAX_PER_TICK: usize = 1000;
/// Sessions read per page while filling the index at start-up.
const STARTUP_PAGE: usize = 500;

/// Sessions' ends, ordered by time, and by id for removal.
#[derive(Debug, Default)]
pub struct ExpiryIndex {
    inner: Mutex<Deadlines>,
}

#[derive(Debug, Default)]
struct Deadlines {
    by_time: BTreeSet<(u64, String)>,
    by_id: HashMap<String, u64>,
}

impl ExpiryIndex {
    /// The session `id` ends at `expires_at` (seconds since the epoch).
    pub fn insert(&self, id: &str, expires_at: u64) {
        let mut deadlines = self.lock();
        if let Some(previous) = deadlines.by_id.insert(id.to_owned(), expires_at) {
            deadlines.by_time.remove(&(previous, id.to_owned()));
        }
        deadlines.by_time.insert((expires_at, id.to_owned()));
    }

    /// The session `id` ended otherwise (closed): no expiry event for it.
    pub fn remove(&self, id: &str) {
        let mut deadlines = self.lock();
        if let Some(expires_at) = deadlines.by_id.remove(id) {
            deadlines.by_time.remove(&(expires_at, id.to_owned()));
        }
    }

    /// Takes out at most `limit` sessions whose end is at or before `now`, earliest first.
    pub fn take_due(&self, now: u64, limit: usize) -> Vec<(String, u64)> {
        let mut deadlines = self.lock();
        let mut due = Vec::new();
        while due.len() < limit {
            let Some((expires_at, _)) = deadlines.by_time.first() else {
                break;
            };
            if *expires_at > now {
                break;
            }
            if let Some((expires_at, id)) = deadlines.by_time.pop_first() {
                deadlines.by_id.remove(&id);
                due.push((id, expires_at));
            }
        }
        due
    }

    /// Sessions waiting for their end.
    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    /// Whether no session is waiting for its end.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Deadlines> {
        // Every update leaves both maps consistent, so a panic elsewhere cannot tear them.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What the expiry task reads: the sessions, the time, and the bus it announces on.
pub struct ExpiryWatch {
    pub store: Arc<dyn SessionStore>,
    pub clock: Arc<dyn Clock>,
    pub events: EventBus,
}

/// Fills the index with the live sessions the store knows, then emits `session_expired`
/// as their ends pass, until the shutdown.
pub async fn run(watch: ExpiryWatch, shutdown: Shutdown) {
    tokio::select! {
        () = load_live_sessions(&watch) => {}
        () = shutdown.wait() => return,
    }
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => emit_due(&watch),
            () = shutdown.wait() => return,
        }
    }
}

/// Adds every live session with an end to the index, a page at a time.
async fn load_live_sessions(state: &ExpiryWatch) {
    let now = state.clock.unix_now();
    let mut after: Option<SessionId> = None;
    loop {
        let page = match state
            .store
            .live_ends(now, after.as_ref(), STARTUP_PAGE)
            .await
        {
            Ok(page) => page,
            Err(error) => {
                tracing::warn!(%error, "cannot read the sessions whose expiry to announce");
                return;
            }
        };
        for end in &page {
            state
                .events
                .expiries()
                .insert(end.id.as_str(), end.expires_at);
        }
        if page.len() < STARTUP_PAGE {
            return;
        }
        after = page.last().map(|end| end.id.clone());
    }
}

/// Emits `session_expired` for the sessions whose end has passed (at most
/// [`MAX_PER_TICK`]), skipping any that was closed before its end.
fn emit_due(state: &ExpiryWatch) {
    let now = state.clock.unix_now();
    for (id, expires_at) in state.events.expiries().take_due(now, MAX_PER_TICK) {
        // Live just before its end means it was not closed: it expired.
        let was_open = SessionId::parse(&id)
            .is_ok_and(|sid| state.store.is_live(&sid, expires_at.saturating_sub(1)));
        if was_open {
            state.events.publish(
                EventKind::SessionExpired { session_id: id },
                state.clock.unix_now_ms(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_sessions_come_out_in_end_order_and_at_most_the_limit() {
        let index = ExpiryIndex::default();
        index.insert("30", 300);
        index.insert("10", 100);
        index.insert("20", 200);
        index.insert("11", 100);
        index.remove("11");
        index.insert("40", 400);
        index.insert("40", 150);
        assert_eq!(index.take_due(99, 10), vec![]);
        assert_eq!(
            index.take_due(200, 2),
            vec![("10".to_owned(), 100), ("40".to_owned(), 150)]
        );
        assert_eq!(index.take_due(200, 2), vec![("20".to_owned(), 200)]);
        assert_eq!(index.len(), 1);
        index.remove("30");
        assert!(index.is_empty());
    }
}
