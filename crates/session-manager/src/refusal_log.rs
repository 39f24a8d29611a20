//! Logging refused joins without letting an attacker write the log: repeated refusals are
//! counted, not each written.
//!
//! A refused join used to write two lines (the refusal and the access-log line, ~276 B):
//! 22 000 wrong PINs a second made 6 MB/s of log. Now:
//!
//! - the first refusal of a *subject* (a client network, a live session) within an
//!   interval is logged at once, with its session id, client address and reason, so the
//!   security signal arrives as soon as it did before;
//! - further refusals of that subject in the interval are only counted, and at the end of
//!   the interval ([`RefusalLog::flush`]) each subject that had some gets one line with the
//!   count ("join refusals repeated");
//! - a subject quiet for a whole interval is forgotten, so its next refusal is logged at
//!   once again;
//! - at most [`TRACKED_SUBJECTS`] subjects are tracked; refusals of further subjects (a
//!   spray over many addresses) are counted together and reported in one line.
//!
//! Lockouts are logged by the throttle ([`crate::rate_limit`]) every time, never counted
//! here. Unknown session ids are not subjects of their own (they would let a spray of ids
//! write a line each): their refusals count under the client network.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use crate::domain::SessionId;

/// Most subjects tracked per interval; refusals of others are counted together.
pub const TRACKED_SUBJECTS: usize = 1000;

/// Why a join was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalReason {
    /// Unknown session or wrong PIN (they look the same from outside).
    InvalidCredentials,
    /// The session or the client network is locked after too many failures.
    Locked,
    /// The session's join quota is used up.
    QuotaUsedUp,
}

impl RefusalReason {
    /// The line logged for the first refusal of a subject.
    fn message(self) -> &'static str {
        match self {
            RefusalReason::InvalidCredentials => "join refused: unknown session or wrong PIN",
            RefusalReason::Locked => "join refused: locked after too many failures",
            RefusalReason::QuotaUsedUp => "join refused: the session's join quota is used up",
        }
    }

    fn name(self) -> &'static str {
        match self {
            RefusalReason::InvalidCredentials => "invalid_credentials",
            RefusalReason::Locked => "locked",
            RefusalReason::QuotaUsedUp => "join_quota",
        }
    }
}

/// Whose refusals are counted together.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Subject {
    ClientNetwork(IpAddr),
    Session(SessionId),
}

/// One refused join, as the join path saw it.
pub struct Refusal<'a> {
    pub reason: RefusalReason,
    pub session_id: &'a SessionId,
    /// Whether the session exists (only live sessions are subjects of their own).
    pub session_is_live: bool,
    pub client_ip: IpAddr,
    /// The client network the throttle counts the address under.
    pub client_network: IpAddr,
}

#[derive(Debug, Default)]
struct Tally {
    /// Refusals since the last line about this subject.
    unlogged: u64,
    /// The session of the latest unlogged refusal.
    last_session: Option<SessionId>,
    /// Whether the subject was refused at all in the current interval.
    active: bool,
}

#[derive(Default)]
struct Tallies {
    subjects: HashMap<(RefusalReason, Subject), Tally>,
    /// Refusals of subjects beyond [`TRACKED_SUBJECTS`], by reason.
    untracked: HashMap<RefusalReason, u64>,
}

/// Counts refused joins and decides which are logged (see the module doc).
#[derive(Default)]
pub struct RefusalLog {
    tallies: Mutex<Tallies>,
}

impl RefusalLog {
    pub fn new() -> Self {
        Self::default()
    }

    /// Notes a refused join: logs it at once if one of its subjects is new in this
    /// interval, else counts it.
    pub fn record(&self, refusal: &Refusal<'_>) {
        let mut subjects = vec![Subject::ClientNetwork(refusal.client_network)];
        if refusal.session_is_live {
            subjects.push(Subject::Session(refusal.session_id.clone()));
        }
        if refusal.reason == RefusalReason::QuotaUsedUp {
            // The quota is the session's: other sessions' devices on the same network
            // are not the same event.
            subjects.remove(0);
        }
        {
            let Ok(mut tallies) = self.tallies.lock() else {
                // A poisoned lock only means a panic elsewhere; log rather than lose it.
                log_first(refusal);
                return;
            };
            let tallies = &mut *tallies;
            let keys: Vec<_> = subjects.into_iter().map(|s| (refusal.reason, s)).collect();
            // New to this interval: tracked (room permitting) but not active yet.
            let is_new = |tallies: &Tallies, key| {
                tallies
                    .subjects
                    .get(key)
                    .is_none_or(|tally: &Tally| !tally.active)
            };
            let log_now = keys.iter().any(|key| {
                is_new(tallies, key)
                    && (tallies.subjects.contains_key(key)
                        || tallies.subjects.len() < TRACKED_SUBJECTS)
            });
            for key in keys {
                let room = tallies.subjects.len() < TRACKED_SUBJECTS;
                match tallies.subjects.get_mut(&key) {
                    Some(tally) => {
                        if !log_now {
                            tally.unlogged += 1;
                            tally.last_session = Some(refusal.session_id.clone());
                        }
                        tally.active = true;
                    }
                    None if room => {
                        tallies.subjects.insert(
                            key,
                            Tally {
                                active: true,
                                ..Tally::default()
                            },
                        );
                    }
                    None if log_now => {}
                    None => *tallies.untracked.entry(refusal.reason).or_default() += 1,
                }
            }
            if !log_now {
                return;
            }
        }
        log_first(refusal);
    }

    /// Ends an interval: one line per subject with unlogged refusals (and one per reason
    /// for the untracked), and forgets the subjects that were quiet throughout.
    pub fn flush(&self) {
        let (repeated, untracked) = {
            let Ok(mut tallies) = self.tallies.lock() else {
                return;
            };
            let mut repeated = Vec::new();
            tallies.subjects.retain(|(reason, subject), tally| {
                if tally.unlogged > 0 {
                    repeated.push((
                        *reason,
                        subject.clone(),
                        tally.unlogged,
                        tally.last_session.take(),
                    ));
                    tally.unlogged = 0;
                }
                let keep = tally.active;
                tally.active = false;
                keep
            });
            (repeated, std::mem::take(&mut tallies.untracked))
        };
        for (reason, subject, count, last_session) in repeated {
            let last_session = last_session.as_ref().map(SessionId::as_str);
            match subject {
                Subject::ClientNetwork(network) => tracing::warn!(
                    reason = reason.name(),
                    client_network = %network,
                    count,
                    last_session_id = last_session,
                    "join refusals repeated"
                ),
                Subject::Session(session) => tracing::warn!(
                    reason = reason.name(),
                    session_id = %session,
                    count,
                    "join refusals repeated"
                ),
            }
        }
        for (reason, count) in untracked {
            tracing::warn!(
                reason = reason.name(),
                count,
                tracked_limit = TRACKED_SUBJECTS,
                "join refusals repeated from more sources than are tracked one by one"
            );
        }
    }
}

fn log_first(refusal: &Refusal<'_>) {
    tracing::warn!(
        session_id = %refusal.session_id,
        client_ip = %refusal.client_ip,
        reason = refusal.reason.name(),
        "{}",
        refusal.reason.message()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal<'a>(session: &'a SessionId, live: bool, ip: [u8; 4]) -> Refusal<'a> {
        Refusal {
            reason: RefusalReason::InvalidCredentials,
            session_id: session,
            session_is_live: live,
            client_ip: IpAddr::from(ip),
            client_network: IpAddr::from(ip),
        }
    }

    fn unlogged(log: &RefusalLog) -> u64 {
        let tallies = log.tallies.lock().unwrap();
        tallies
            .subjects
            .values()
            .map(|tally| tally.unlogged)
            .sum::<u64>()
            + tallies.untracked.values().sum::<u64>()
    }

    #[test]
    fn repeats_are_counted_and_quiet_subjects_forgotten() {
        let log = RefusalLog::new();
        let session = SessionId::parse("123456").unwrap();
        log.record(&refusal(&session, true, [10, 0, 0, 1]));
        assert_eq!(unlogged(&log), 0);
        for _ in 0..9 {
            log.record(&refusal(&session, true, [10, 0, 0, 1]));
        }
        // Counted under the network and under the session.
        assert_eq!(unlogged(&log), 18);
        // A new live session from the same network is logged at once, not counted.
        let other = SessionId::parse("654321").unwrap();
        log.record(&refusal(&other, true, [10, 0, 0, 1]));
        assert_eq!(unlogged(&log), 18);
        assert_eq!(log.tallies.lock().unwrap().subjects.len(), 3);
        log.flush();
        log.flush();
        log.record(&refusal(&session, true, [10, 0, 0, 1]));
        for _ in 0..9 {
            log.record(&refusal(&session, true, [10, 0, 0, 1]));
        }
        log.flush();
        assert_eq!(unlogged(&log), 0);
        assert_eq!(log.tallies.lock().unwrap().subjects.len(), 2);
        // Quiet for a whole interval: forgotten.
        log.flush();
        assert!(log.tallies.lock().unwrap().subjects.is_empty());
    }

    #[test]
    fn unknown_sessions_are_no_subjects_and_the_table_is_bounded() {
        let log = RefusalLog::new();
        let session = SessionId::parse("999999").unwrap();
        for i in 0..(TRACKED_SUBJECTS as u32 + 500) {
            let [_, b, c, d] = i.to_be_bytes();
            log.record(&refusal(&session, false, [10, b, c, d]));
        }
        let tallies = log.tallies.lock().unwrap();
        assert_eq!(tallies.subjects.len(), TRACKED_SUBJECTS);
        assert_eq!(
            tallies.untracked.get(&RefusalReason::InvalidCredentials),
            Some(&500)
        );
    }
}
