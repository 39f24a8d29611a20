//! The monitor's per-session message and byte counters, and how `/metrics` shows them.
//!
//! Sessions come and go, so their counters are not metrics of the recorder (which keeps
//! every label set it ever saw for the life of the process): they live in a table of at
//! most [`SessionCounters::capacity`] sessions that forgets a session when it is closed
//! or expires, and that, when full, makes room for a new session by dropping the one
//! that has been quiet the longest. `/metrics` renders the table as it is at the scrape
//! as two counter families labelled by session id:
//!
//! ```text
//! ism_monitor_session_messages_total{session="123456789"} 42
//! ism_monitor_session_bytes_total{session="123456789"} 1337
//! ```
//!
//! A session dropped and seen again starts from zero, which Prometheus reads as a counter
//! reset. Session ids are digits only ([`crate::domain::SessionId`]), so a label value
//! never needs escaping.

use std::collections::HashMap;
use std::fmt::Write as _;

/// Messages and bytes of one session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub messages: u64,
    pub bytes: u64,
    /// When it last counted something, in the table's own ticks (for eviction).
    last_active: u64,
}

/// One rendered family: its name, what it counts, and how to read it from a tally.
type CounterFamily = (&'static str, &'static str, fn(&Tally) -> u64);

/// At most `capacity` sessions' tallies.
#[derive(Debug)]
pub struct SessionCounters {
    capacity: usize,
    sessions: HashMap<String, Tally>,
    /// Ticks once per recorded message: the order in which sessions were last active.
    ticks: u64,
}

/// Metric name of the per-session message counters.
pub const SESSION_MESSAGES_TOTAL: &str = "ism_monitor_session_messages_total";
/// Metric name of the per-session byte counters.
pub const SESSION_BYTES_TOTAL: &str = "ism_monitor_session_bytes_total";

impl SessionCounters {
    pub fn new(capacity: usize) -> Self {
        SessionCounters {
            capacity: capacity.max(1),
            sessions: HashMap::new(),
            ticks: 0,
        }
    }

    /// Counts one message of `bytes` payload bytes in `session`.
    pub fn record(&mut self, session: &str, bytes: usize) {
        self.ticks += 1;
        let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
        if let Some(tally) = self.sessions.get_mut(session) {
            tally.messages += 1;
            tally.bytes = tally.bytes.saturating_add(bytes);
            tally.last_active = self.ticks;
            return;
        }
        if self.sessions.len() >= self.capacity {
            self.evict_quietest();
        }
        self.sessions.insert(
            session.to_owned(),
            Tally {
                messages: 1,
                bytes,
                last_active: self.ticks,
            },
        );
    }

    /// Drops the session that has been quiet the longest. A scan of the table, done only
    /// when a new session arrives at a full table.
    fn evict_quietest(&mut self) {
        let quietest = self
            .sessions
            .iter()
            .min_by_key(|(_, tally)| tally.last_active)
            .map(|(session, _)| session.clone());
        if let Some(session) = quietest {
            self.sessions.remove(&session);
        }
    }

    /// Forgets a session that ended.
    pub fn forget(&mut self, session: &str) {
        self.sessions.remove(session);
    }

    /// Keeps only the sessions `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.sessions.retain(|session, _| keep(session));
    }

    #[cfg(test)]
    pub fn get(&self, session: &str) -> Option<Tally> {
        self.sessions.get(session).copied()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Appends both counter families, in the Prometheus text format, sessions in id
    /// order.
    pub fn render(&self, out: &mut String) {
        let mut sessions: Vec<(&String, &Tally)> = self.sessions.iter().collect();
        sessions.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let families: [CounterFamily; 2] = [
            (SESSION_MESSAGES_TOTAL, "Messages", |tally| tally.messages),
            (SESSION_BYTES_TOTAL, "Payload bytes", |tally| tally.bytes),
        ];
        for (name, what, value) in families {
            let _ = writeln!(
                out,
                "# HELP {name} {what} the monitor saw in one session (ISM_MONITOR=log; live sessions only, the {} most recently active)",
                self.capacity
            );
            let _ = writeln!(out, "# TYPE {name} counter");
            for (session, tally) in &sessions {
                let _ = writeln!(out, "{name}{{session=\"{session}\"}} {}", value(tally));
            }
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_bytes_add_up_per_session() {
        let mut counters = SessionCounters::new(10);
        counters.record("1", 5);
        counters.record("1", 7);
        counters.record("2", 0);
        let one = counters.get("1").expect("session 1");
        assert_eq!((one.messages, one.bytes), (2, 12));
        let two = counters.get("2").expect("session 2");
        assert_eq!((two.messages, two.bytes), (1, 0));
        counters.forget("1");
        assert_eq!(counters.get("1"), None);
        assert_eq!(counters.len(), 1);
    }

    #[test]
    fn a_full_table_drops_the_quietest_session() {
        let mut counters = SessionCounters::new(3);
        for session in ["1", "2", "3"] {
            counters.record(session, 1);
        }
        // 1 speaks again: 2 is now the quietest.
        counters.record("1", 1);
        counters.record("4", 1);
        assert_eq!(counters.len(), 3);
        assert!(counters.get("2").is_none());
        for kept in ["1", "3", "4"] {
            assert!(counters.get(kept).is_some(), "{kept}");
        }
        counters.retain(|session| session != "3");
        assert_eq!(counters.len(), 2);
    }

    #[test]
    fn the_table_renders_as_two_labelled_counter_families() {
        let mut counters = SessionCounters::new(10);
        counters.record("22", 3);
        counters.record("11", 4);
        counters.record("11", 1);
        let mut text = String::new();
        counters.render(&mut text);
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            samples,
            [
                "ism_monitor_session_messages_total{session=\"11\"} 2",
                "ism_monitor_session_messages_total{session=\"22\"} 1",
                "",
                "ism_monitor_session_bytes_total{session=\"11\"} 5",
                "ism_monitor_session_bytes_total{session=\"22\"} 3",
                "",
            ]
        );
        assert!(text.contains("# TYPE ism_monitor_session_bytes_total counter"));
    }
}
