//! `SessionStore`: every session the service knows, in memory for speed and in a journal
//! on disk so that nothing acknowledged is lost to a crash.
//!
//! Reads (`get`, `list`, `live_count`) are served from a `DashMap` and never touch the
//! disk. Every change (create, join, close) is applied in memory under that session's map
//! lock, submitted to the [`journal`] while the lock is still held (so the file records
//! changes in the order memory saw them), and only then awaited: a call returns once its
//! record is fsynced. Concurrent changes share fsyncs through the journal's group commit.
//!
//! PINs are kept as argon2id hashes plus a per-process keyed fast check; see [`pin_check`]
//! for why. Start-up replays the journal ([`recovery`]): a torn tail is cut off, a damaged
//! frame is skipped on the safe side (a lost close still closes, every id stays reserved)
//! and reported, and history much larger than the live state is compacted away.
//!
//! Closed sessions keep their close time, so the broker link can republish every close
//! whose tokens may still be alive ([`SessionStore::revocations`]) after any restart.
//!
//! Time is passed in (`now`, seconds since the epoch) rather than read here, so expiry is
//! testable; what the store decides on its own (dropping sessions that expired while down,
//! a close's time, what a compaction keeps) asks the [`Clock`] it was opened with.

mod compaction;
pub mod journal;
pub mod pin_check;
pub mod record;
mod recovery;

use std::collections::BTreeSet;
use std::ops::Bound;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use indexmap::IndexMap;
use serde::Serialize;

use crate::clock::{Clock, SystemClock};
use crate::domain::{ClientName, DomainError, Pin, SessionId, SessionType};
use journal::{Journal, JournalStats};
use pin_check::{PinChecker, PinTag};
use record::{ClosedRecord, CreatedRecord, JoinedRecord, Record};

pub use journal::JOURNAL_FILE_NAME;

/// Share of the id space that may be in use before `create` refuses: beyond it random ids
/// collide so often that creation would slow down and eventually fail at random.
const ID_SPACE_FILL_LIMIT_PERCENT: u128 = 90;
/// Random draws per `create` before giving up on finding a free id.
const ID_ATTEMPTS: usize = 64;

#[derive(Debug, Clone, Default)]
pub struct StoreConfig {
    pub data_dir: PathBuf,
    /// Digits of a generated session id (1–32).
    pub id_length: usize,
    /// Digits of a generated PIN (3–32).
    pub pin_length: usize,
    /// The operator accepts the loss of the undecidable damaged journal range starting at
    /// this byte offset (see `recovery`): every session live there is closed to be safe.
    pub repair_journal_at: Option<u64>,
}

#[derive(Debug, Clone, Default)]
pub struct NewSession {
    pub session_type: SessionType,
    /// The session expires this many seconds after creation; `None` means never.
    pub ttl_secs: Option<u64>,
    /// At most this many distinct clients may join; `None` means no limit.
    pub max_clients: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientInfo {
    pub name: ClientName,
    pub joined_at: u64,
}

/// What anyone may see of a session: no PIN, no hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionInfo {
    pub id: SessionId,
    pub session_type: SessionType,
    pub created_at: u64,
    pub expires_at: Option<u64>,
    pub max_clients: Option<u32>,
    pub clients: Vec<ClientInfo>,
}

/// What a successful join tells the caller: just enough to size the token's lifetime.
/// (Not the whole `SessionInfo`: copying every client on every join is what made joins
/// slow down as a session grew.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinedSession {
    pub expires_at: Option<u64>,
}

/// A new session and its PIN, which exists in the clear only in this value.
#[derive(Debug, Clone)]
pub struct CreatedSession {
    pub session: SessionInfo,
    pub pin: Pin,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Live sessions after replay.
    pub sessions: usize,
    /// Intact records replayed.
    pub records: usize,
    /// Bytes of torn tail (an append cut short by a crash) cut off the journal.
    pub discarded_tail_bytes: u64,
    /// Damaged byte ranges that recovery skipped, in file order.
    pub skipped: Vec<SkippedRange>,
    pub elapsed: Duration,
}

/// A damaged part of the journal that recovery skipped, and what it did about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedRange {
    /// Byte offset of the first damaged byte in the journal file.
    pub offset: u64,
    /// Number of bytes skipped.
    pub len: u64,
    /// What was wrong and what recovery concluded.
    pub detail: String,
}

/// Counters for tests, metrics and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub journal: JournalStats,
    /// argon2 PIN verifications run by this process (the fast path runs none).
    pub argon2_verifications: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid store configuration: {0}")]
    Config(#[from] DomainError),
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the session journal cannot be written right now, so changes are refused: {0}")]
    JournalFailed(String),
    #[error(
        "the session journal {} holds a record at byte {offset} whose checksums match but whose content this version does not understand ({detail}); refusing to start rather than lose it. Run a session-manager version that wrote it, or restore the data directory from a backup",
        path.display()
    )]
    UndecodableRecord {
        path: PathBuf,
        offset: u64,
        detail: String,
    },
    #[error(
        "the session journal {} is damaged at bytes {offset}..{end} and the damaged part may have held a close, so starting could revive a closed session; after checking the disk, start once with `--repair-journal-at {offset}` (ISM_REPAIR_JOURNAL_AT={offset}) to close every session that was open at that point and go on",
        path.display()
    )]
    UndecidableDamage {
        path: PathBuf,
        offset: u64,
        end: u64,
    },
    #[error(
        "the session journal {} is in an unknown format (first line {first_line:?})",
        path.display()
    )]
    UnknownFormat { path: PathBuf, first_line: String },
    #[error("the session store is shut down")]
    JournalClosed,
    #[error("cannot encode a journal record: {0}")]
    Encode(String),
    #[error(
        "no free session id: {used} of the {capacity} ids with {length} digits are in use or retired; raise the id length (ISM_ID_LENGTH)"
    )]
    IdSpaceExhausted {
        used: u128,
        capacity: u128,
        length: usize,
    },
    #[error("PIN hashing failed: {0}")]
    PinHash(String),
    #[error("a background task failed: {0}")]
    Task(String),
}

/// Why a join was refused. Unknown, closed and expired sessions and a wrong PIN are all
/// `InvalidCredentials`, so a caller cannot tell whether a session id exists.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("unknown session or wrong PIN")]
    InvalidCredentials,
    #[error("the session has reached its maximum number of clients")]
    SessionFull,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A session id's place in the map: live (possibly expired, which readers filter by
/// `now`) or retired, an id that was used once and is never handed out again.
pub(crate) enum Slot {
    Live(Box<LiveSession>),
    Retired(Retired),
}

/// A closed or expired session: what the broker must know to refuse its tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Retired {
    /// When it was closed (for an expired session: its end).
    pub(crate) closed_at: u64,
    /// Its own end, if it had one.
    pub(crate) session_end: Option<u64>,
}

impl Retired {
    /// Until when tokens of this session must be refused, given the token lifetime: a
    /// token minted just before the close lives `token_ttl_secs`, never past the session's
    /// end.
    pub(crate) fn refuse_until(&self, token_ttl_secs: u64) -> u64 {
        let until = self.closed_at.saturating_add(token_ttl_secs);
        self.session_end.map_or(until, |end| until.min(end))
    }

    pub(crate) fn record(&self, id: &SessionId) -> ClosedRecord {
        ClosedRecord {
            id: id.clone(),
            closed_at: Some(self.closed_at),
            session_end: self.session_end,
        }
    }
}

/// A closed session whose tokens may still be alive, and until when they must be refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub id: SessionId,
    pub until: u64,
}

pub(crate) struct LiveSession {
    session_type: SessionType,
    created_at: u64,
    expires_at: Option<u64>,
    max_clients: Option<u32>,
    pin_hash: Arc<str>,
    /// Fast PIN check, once this process knows the PIN is right (see `pin_check`).
    pin_tag: Option<PinTag>,
    /// Client name → first join time, in join order. A map, not a list: joins look names
    /// up, and a session may hold many thousands of them.
    clients: IndexMap<ClientName, u64>,
}

impl LiveSession {
    fn from_record(record: CreatedRecord) -> Self {
        Self {
            session_type: record.session_type,
            created_at: record.created_at,
            expires_at: record.expires_at,
            max_clients: record.max_clients,
            pin_hash: record.pin_hash.into(),
            pin_tag: None,
            clients: IndexMap::new(),
        }
    }

    /// The journal record that re-creates this session (without its joins).
    fn created_record(&self, id: &SessionId) -> CreatedRecord {
        CreatedRecord {
            id: id.clone(),
            session_type: self.session_type.clone(),
            created_at: self.created_at,
            expires_at: self.expires_at,
            max_clients: self.max_clients,
            pin_hash: self.pin_hash.to_string(),
        }
    }

    fn is_live(&self, now: u64) -> bool {
        self.expires_at.is_none_or(|expires_at| now < expires_at)
    }

    /// This session as retired: closed at `closed_at`, or at its end if that came first.
    fn retire(&self, closed_at: u64) -> Retired {
        Retired {
            closed_at: self.expires_at.map_or(closed_at, |end| closed_at.min(end)),
            session_end: self.expires_at,
        }
    }

    fn info(&self, id: &SessionId) -> SessionInfo {
        SessionInfo {
            id: id.clone(),
            session_type: self.session_type.clone(),
            created_at: self.created_at,
            expires_at: self.expires_at,
            max_clients: self.max_clients,
            clients: self
                .clients
                .iter()
                .map(|(name, &joined_at)| ClientInfo {
                    name: name.clone(),
                    joined_at,
                })
                .collect(),
        }
    }
}

#[derive(Clone)]
pub struct SessionStore {
    inner: Arc<Inner>,
}

struct Inner {
    config: StoreConfig,
    /// Shared with the journal writer, which snapshots it to compact the journal.
    sessions: Arc<DashMap<SessionId, Slot>>,
    /// Ids of live sessions in order, for listings. Never locked while a `sessions` guard
    /// is held (and vice versa), so the two locks cannot deadlock.
    ordered: RwLock<BTreeSet<SessionId>>,
    journal: Journal,
    pins: PinChecker,
    /// Damage the start-up recovery skipped, for `/healthz`.
    skipped: Vec<SkippedRange>,
    /// Bytes of torn tail the start-up recovery cut off, for `/healthz`.
    torn_tail_bytes: u64,
    clock: Arc<dyn Clock>,
}

impl SessionStore {
    /// Opens (or creates) the store in `config.data_dir`, replaying its journal, on the
    /// system clock.
    pub async fn open(config: StoreConfig) -> Result<(SessionStore, RecoveryReport), StoreError> {
        Self::open_with_clock(config, Arc::new(SystemClock)).await
    }

    /// [`SessionStore::open`] with the clock that decides expiry and close times.
    pub async fn open_with_clock(
        config: StoreConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<(SessionStore, RecoveryReport), StoreError> {
        // Refuse impossible lengths now rather than at the first `create`.
        SessionId::generate(config.id_length)?;
        Pin::generate(config.pin_length)?;
        let data_dir = config.data_dir.clone();
        let repair_at = config.repair_journal_at;
        let now = clock.unix_now();
        let recovered =
            tokio::task::spawn_blocking(move || recovery::recover(&data_dir, now, repair_at))
                .await
                .map_err(|error| StoreError::Task(error.to_string()))??;
        let sessions = Arc::new(recovered.sessions);
        let journal = Journal::start(
            recovered.journal_file,
            recovered.journal_len,
            config.data_dir.clone(),
            Arc::clone(&sessions),
            recovered.journal_records,
            Arc::clone(&clock),
        )?;
        let report = recovered.report;
        tracing::info!(
            sessions = report.sessions,
            records = report.records,
            discarded_tail_bytes = report.discarded_tail_bytes,
            skipped_ranges = report.skipped.len(),
            elapsed_ms = report.elapsed.as_millis() as u64,
            data_dir = %config.data_dir.display(),
            "session store recovered"
        );
        let store = SessionStore {
            inner: Arc::new(Inner {
                config,
                sessions,
                ordered: RwLock::new(recovered.ordered),
                journal,
                pins: PinChecker::new(),
                skipped: report.skipped.clone(),
                torn_tail_bytes: report.discarded_tail_bytes,
                clock,
            }),
        };
        Ok((store, report))
    }

    /// Creates a session with a fresh id and PIN; durable before it returns.
    pub async fn create(&self, new: NewSession, now: u64) -> Result<CreatedSession, StoreError> {
        let inner = &*self.inner;
        let pin = Pin::generate(inner.config.pin_length)?;
        let pin_hash: Arc<str> = {
            let _slot = inner.pins.argon2_slot().await?;
            pin_check::hash_pin(pin.clone()).await?.into()
        };
        let session = LiveSession {
            session_type: new.session_type,
            created_at: now,
            expires_at: new.ttl_secs.map(|ttl| now.saturating_add(ttl)),
            max_clients: new.max_clients,
            pin_hash,
            pin_tag: None,
            clients: IndexMap::new(),
        };
        let (info, pending) = self.insert_with_fresh_id(session, &pin)?;
        inner.ordered_write().insert(info.id.clone());
        if let Err(error) = pending.durable().await {
            inner.sessions.remove(&info.id);
            inner.ordered_write().remove(&info.id);
            return Err(error);
        }
        Ok(CreatedSession { session: info, pin })
    }

    fn insert_with_fresh_id(
        &self,
        mut session: LiveSession,
        pin: &Pin,
    ) -> Result<(SessionInfo, journal::PendingWrite), StoreError> {
        let inner = &*self.inner;
        let length = inner.config.id_length;
        let capacity = id_space_capacity(length);
        let used = inner.sessions.len() as u128;
        let exhausted = StoreError::IdSpaceExhausted {
            used,
            capacity,
            length,
        };
        if used * 100 >= capacity * ID_SPACE_FILL_LIMIT_PERCENT {
            return Err(exhausted);
        }
        for _ in 0..ID_ATTEMPTS {
            let id = SessionId::generate(length)?;
            // A vacant entry means the id was never used: retired ids stay in the map.
            let Entry::Vacant(vacant) = inner.sessions.entry(id.clone()) else {
                continue;
            };
            session.pin_tag = Some(inner.pins.tag(&id, pin));
            let frame = Record::Created(session.created_record(&id))
                .encode()
                .map_err(|error| StoreError::Encode(error.to_string()))?;
            let info = session.info(&id);
            vacant.insert(Slot::Live(Box::new(session)));
            let pending = inner.journal.submit(frame);
            return Ok((info, pending));
        }
        Err(exhausted)
    }

    /// The session, or `None` when it is unknown, closed or expired.
    pub fn get(&self, id: &SessionId, now: u64) -> Option<SessionInfo> {
        match self.inner.sessions.get(id)?.value() {
            Slot::Live(session) if session.is_live(now) => Some(session.info(id)),
            _ => None,
        }
    }

    /// Up to `limit` live sessions in id order, starting after the cursor `after`.
    pub fn list(&self, now: u64, after: Option<&SessionId>, limit: usize) -> Vec<SessionInfo> {
        let inner = &*self.inner;
        let mut page = Vec::with_capacity(limit.min(1024));
        let mut cursor = after.cloned();
        while page.len() < limit {
            // Copy a chunk of ids, release the lock, then look them up (lock order rule).
            let chunk: Vec<SessionId> = {
                let ordered = inner.ordered_read();
                let start = match &cursor {
                    Some(id) => Bound::Excluded(id),
                    None => Bound::Unbounded,
                };
                ordered
                    .range((start, Bound::Unbounded))
                    .take(limit - page.len())
                    .cloned()
                    .collect()
            };
            let Some(last) = chunk.last().cloned() else {
                break;
            };
            page.extend(chunk.iter().filter_map(|id| self.get(id, now)));
            cursor = Some(last);
        }
        page
    }

    /// Number of sessions that are neither closed nor expired.
    pub fn live_count(&self, now: u64) -> usize {
        self.inner
            .sessions
            .iter()
            .filter(|entry| matches!(entry.value(), Slot::Live(session) if session.is_live(now)))
            .count()
    }

    /// Closes a session for good; `false` when it is unknown, already closed or expired.
    /// Durable before it returns.
    pub async fn close(&self, id: &SessionId) -> Result<bool, StoreError> {
        let inner = &*self.inner;
        let now = inner.clock.unix_now();
        let (previous, pending) = {
            let Some(mut slot) = inner.sessions.get_mut(id) else {
                return Ok(false);
            };
            match slot.value() {
                Slot::Live(session) if session.is_live(now) => {}
                _ => return Ok(false),
            }
            let retired = match slot.value() {
                Slot::Live(session) => session.retire(now),
                Slot::Retired(retired) => *retired,
            };
            let frame = Record::Closed(retired.record(id))
                .encode()
                .map_err(|error| StoreError::Encode(error.to_string()))?;
            let session = std::mem::replace(slot.value_mut(), Slot::Retired(retired));
            (session, inner.journal.submit(frame))
        };
        inner.ordered_write().remove(id);
        if let Err(error) = pending.durable().await {
            // Memory must not claim what the disk does not hold: put the session back.
            if let Some(mut slot) = inner.sessions.get_mut(id) {
                *slot.value_mut() = previous;
            }
            inner.ordered_write().insert(id.clone());
            return Err(error);
        }
        Ok(true)
    }

    /// Checks the PIN, expiry and `max_clients`, then records `client` as joined (a name
    /// that joined before may join again without counting twice and keeps its first join
    /// time). Durable before it returns.
    pub async fn join(
        &self,
        id: &SessionId,
        pin: &Pin,
        client: &ClientName,
        now: u64,
    ) -> Result<JoinedSession, JoinError> {
        let inner = &*self.inner;
        if let Some(pin_hash) = self.check_pin_fast(id, pin, now)? {
            // Few argon2 runs at a time: each takes tens of MiB and a core for a while.
            let _slot = inner.pins.argon2_slot().await?;
            // Another join of this session may have verified the PIN while this one waited;
            // then its cached check answers and argon2 runs once, not once per join.
            if self.check_pin_fast(id, pin, now)?.is_some() {
                if !inner.pins.verify_hash(pin_hash, pin.clone()).await? {
                    return Err(JoinError::InvalidCredentials);
                }
                if let Some(mut slot) = inner.sessions.get_mut(id) {
                    if let Slot::Live(session) = slot.value_mut() {
                        session.pin_tag = Some(inner.pins.tag(id, pin));
                    }
                }
            }
        }

        let (info, pending) = {
            let Some(mut slot) = inner.sessions.get_mut(id) else {
                return Err(JoinError::InvalidCredentials);
            };
            // Closed or expired while the PIN was being verified.
            let Slot::Live(session) = slot.value_mut() else {
                return Err(JoinError::InvalidCredentials);
            };
            if !session.is_live(now) {
                return Err(JoinError::InvalidCredentials);
            }
            let joined = JoinedSession {
                expires_at: session.expires_at,
            };
            if session.clients.contains_key(client) {
                // Its first join may still be on its way to disk: wait for it.
                (joined, inner.journal.barrier())
            } else {
                let full = session
                    .max_clients
                    .is_some_and(|max| session.clients.len() >= max as usize);
                if full {
                    return Err(JoinError::SessionFull);
                }
                let frame = Record::Joined(JoinedRecord {
                    id: id.clone(),
                    client: client.clone(),
                    joined_at: now,
                })
                .encode()
                .map_err(|error| StoreError::Encode(error.to_string()))?;
                session.clients.insert(client.clone(), now);
                (joined, inner.journal.submit(frame))
            }
        };
        if let Err(error) = pending.durable().await {
            // Memory must not claim what the disk does not hold: forget this join again.
            if let Some(mut slot) = inner.sessions.get_mut(id) {
                if let Slot::Live(session) = slot.value_mut() {
                    if session.clients.get(client) == Some(&now) {
                        session.clients.shift_remove(client);
                    }
                }
            }
            return Err(error.into());
        }
        Ok(info)
    }

    /// Checks `pin` against the session's cached fast check. `Ok(None)`: it matched;
    /// `Ok(Some(hash))`: nothing cached yet, verify against this argon2 hash; an error for
    /// an unknown, closed or expired session or a wrong PIN.
    fn check_pin_fast(
        &self,
        id: &SessionId,
        pin: &Pin,
        now: u64,
    ) -> Result<Option<Arc<str>>, JoinError> {
        let inner = &*self.inner;
        let Some(slot) = inner.sessions.get(id) else {
            return Err(JoinError::InvalidCredentials);
        };
        match slot.value() {
            Slot::Live(session) if session.is_live(now) => match &session.pin_tag {
                Some(tag) if inner.pins.matches_tag(id, pin, tag) => Ok(None),
                Some(_) => Err(JoinError::InvalidCredentials),
                None => Ok(Some(Arc::clone(&session.pin_hash))),
            },
            _ => Err(JoinError::InvalidCredentials),
        }
    }

    /// Every closed session whose tokens may still be alive at `now`, with the time until
    /// which they must be refused. Expired sessions need none: no token outlives them.
    pub fn revocations(&self, token_ttl_secs: u64, now: u64) -> Vec<Revocation> {
        self.inner
            .sessions
            .iter()
            .filter_map(|entry| match entry.value() {
                Slot::Retired(retired) => {
                    let until = retired.refuse_until(token_ttl_secs);
                    (until > now).then(|| Revocation {
                        id: entry.key().clone(),
                        until,
                    })
                }
                Slot::Live(_) => None,
            })
            .collect()
    }

    /// The revocation of one closed session, if its tokens may still be alive at `now`.
    pub fn revocation(&self, id: &SessionId, token_ttl_secs: u64, now: u64) -> Option<Revocation> {
        match self.inner.sessions.get(id)?.value() {
            Slot::Retired(retired) => {
                let until = retired.refuse_until(token_ttl_secs);
                (until > now).then(|| Revocation {
                    id: id.clone(),
                    until,
                })
            }
            Slot::Live(_) => None,
        }
    }

    /// The damaged journal ranges this process's start-up skipped.
    pub fn skipped_ranges(&self) -> &[SkippedRange] {
        &self.inner.skipped
    }

    /// Bytes of torn tail (an append cut short by a crash) this process's start-up cut off.
    pub fn torn_tail_bytes(&self) -> u64 {
        self.inner.torn_tail_bytes
    }

    /// Why changes are refused right now (the journal cannot be written), if they are.
    pub fn write_fault(&self) -> Option<String> {
        self.inner.journal.fault()
    }

    /// Flushes everything queued and stops the journal writer; later changes fail with
    /// [`StoreError::JournalClosed`].
    pub async fn shutdown(&self) {
        self.inner.journal.shutdown().await;
    }

    pub fn stats(&self) -> StoreStats {
        StoreStats {
            journal: self.inner.journal.stats(),
            argon2_verifications: self.inner.pins.argon2_verifications(),
        }
    }
}

impl Inner {
    fn ordered_read(&self) -> std::sync::RwLockReadGuard<'_, BTreeSet<SessionId>> {
        // The set is consistent after every single insert/remove, so a panic elsewhere
        // while holding the lock cannot leave it half-updated.
        self.ordered.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn ordered_write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeSet<SessionId>> {
        self.ordered.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// How many ids of `length` digits exist (first digit non-zero).
fn id_space_capacity(length: usize) -> u128 {
    let exponent = u32::try_from(length.saturating_sub(1)).unwrap_or(u32::MAX);
    10u128
        .checked_pow(exponent)
        .map_or(u128::MAX, |power| 9 * power)
}

pub(crate) fn io_error<'a>(
    action: &'static str,
    path: &'a std::path::Path,
) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests;
