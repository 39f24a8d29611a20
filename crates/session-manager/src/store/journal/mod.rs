//! `JournalStore`: the embedded session store backend, every session in memory for speed
//! and in a journal on disk so that nothing acknowledged is lost to a crash.
//!
//! Reads (`get`, `list`, `live_count`) are served from a `DashMap` and never touch the
//! disk. Every change (create, join, close) is applied in memory under that session's map
//! lock, submitted to the journal [`writer`] while the lock is still held (so the file
//! records changes in the order memory saw them), and only then awaited: a call returns
//! once its record is fsynced. Concurrent changes share fsyncs through the writer's group
//! commit.
//!
//! Start-up replays the journal ([`recovery`]): a torn tail is cut off, a damaged frame is
//! skipped on the safe side (a lost close still closes, every id stays reserved) and
//! reported, and history much larger than the live state is compacted away; while running,
//! the writer compacts from a snapshot it asks this backend for ([`compaction`]).
//!
//! Kicks raise a client's generation (a `kicked` record) and are kept with their time
//! while the session lives, so the link can republish them too ([`SessionStore::kicks`]).
//!
//! Service tokens (what each grants, until when, whether revoked) are kept beside the
//! sessions, in the same journal (`s` and `v` records, [`service_tokens`]), so the link
//! republishes every revocation whose token could still be used.
//!
//! Closed sessions keep their close time, so the broker link can republish every close
//! whose tokens may still be alive ([`SessionStore::revocations`]) after any restart.
//!
//! What the store decides on its own (dropping sessions that expired while down, a close's
//! time, what a compaction keeps) asks the [`Clock`] it was opened with.

mod canonical_body;
mod clients;
mod compaction;
mod kicks;
pub mod record;
mod recovery;
mod service_tokens;
mod session_key;
mod stored_pin_hash;
mod tally;
pub mod writer;

use std::collections::BTreeSet;
use std::ops::Bound;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;

use async_trait::async_trait;

use super::{
    ClientInfo, JoinError, JoinedSession, Kick, NewSession, RecoveryReport, Revocation,
    RevokedServiceToken, ServiceTokenInfo, SessionEnd, SessionInfo, SessionStore, SkippedRange,
    StoreError, StoreHealth,
};
use crate::clock::{Clock, SystemClock};
use crate::domain::{ClientName, SessionId, SessionType};
use clients::Clients;
use compaction::SnapshotSource;
use kicks::Kicks;
use record::{ClosedRecord, ConductorRecord, CreatedRecord, JoinedRecord, KickedRecord, Record};
use service_tokens::ServiceTokens;
use session_key::SessionKey;
use stored_pin_hash::StoredPinHash;
use tally::{Counted, Tally};
use writer::{Journal, JournalStats};

pub use writer::JOURNAL_FILE_NAME;

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
    /// The operator accepts the loss of the undecidable damaged journal range starting at
    /// this byte offset (see `recovery`): every session live there is closed to be safe.
    pub repair_journal_at: Option<u64>,
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

/// A live session as memory keeps it: dense, since there may be a million of them (a
/// default type takes no allocation, the PIN hash is bytes, a few clients are a list).
pub(crate) struct LiveSession {
    /// `None` for the default type.
    session_type: Option<SessionType>,
    created_at: u64,
    expires_at: Option<u64>,
    /// `max_clients`, when `limited`; kept as two fields (not an `Option<u32>`) so that
    /// they and `conductor_started` share eight bytes.
    max_clients: u32,
    limited: bool,
    /// The argon2id hash of its PIN, as the sessions use-case made it.
    pin_hash: StoredPinHash,
    /// Client name → first join time, in join order; a map once there are more than a
    /// few, since a session may hold many thousands of them.
    clients: Clients,
    /// Kicked clients and their generations; empty for almost every session.
    kicks: Kicks,
    /// Whether its conductor was started (and not stopped since): started again after a
    /// restart.
    conductor_started: bool,
}

impl LiveSession {
    fn new(
        session_type: SessionType,
        created_at: u64,
        expires_at: Option<u64>,
        max_clients: Option<u32>,
        pin_hash: &str,
    ) -> Self {
        Self {
            session_type: (session_type != SessionType::default()).then_some(session_type),
            created_at,
            expires_at,
            max_clients: max_clients.unwrap_or(0),
            limited: max_clients.is_some(),
            pin_hash: StoredPinHash::new(pin_hash),
            clients: Clients::default(),
            kicks: Kicks::default(),
            conductor_started: false,
        }
    }

    fn from_record(record: CreatedRecord) -> Self {
        Self::new(
            record.session_type,
            record.created_at,
            record.expires_at,
            record.max_clients,
            &record.pin_hash,
        )
    }

    fn session_type(&self) -> SessionType {
        self.session_type.clone().unwrap_or_default()
    }

    fn max_clients(&self) -> Option<u32> {
        self.limited.then_some(self.max_clients)
    }

    /// The journal record that re-creates this session (without its joins).
    fn created_record(&self, id: &SessionId) -> CreatedRecord {
        CreatedRecord {
            id: id.clone(),
            session_type: self.session_type(),
            created_at: self.created_at,
            expires_at: self.expires_at,
            max_clients: self.max_clients(),
            pin_hash: self.pin_hash.phc(),
        }
    }

    fn is_live(&self, now: u64) -> bool {
        self.expires_at.is_none_or(|expires_at| now < expires_at)
    }

    /// The kick of `client` as the broker must hear it.
    fn kick_of(&self, id: &SessionId, client: &kicks::ClientKick) -> Kick {
        Kick {
            id: id.clone(),
            client: client.client.clone(),
            generation: client.generation,
            kicked_at: client.kicked_at,
            session_end: self.expires_at,
        }
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
            session_type: self.session_type(),
            created_at: self.created_at,
            expires_at: self.expires_at,
            max_clients: self.max_clients(),
            clients: self
                .clients
                .iter()
                .map(|(name, joined_at)| ClientInfo {
                    name: name.clone(),
                    joined_at,
                })
                .collect(),
        }
    }
}

/// The embedded backend: sessions in memory, changes in an fsynced journal.
#[derive(Clone)]
pub struct JournalStore {
    inner: Arc<Inner>,
}

struct Inner {
    config: StoreConfig,
    /// Shared with the journal writer, which asks it for a snapshot to compact the journal.
    sessions: Arc<SessionTable>,
    /// Ids of live sessions in order, for listings. Never locked while a `sessions` guard
    /// is held (and vice versa), so the two locks cannot deadlock.
    ordered: RwLock<BTreeSet<SessionKey>>,
    journal: Journal,
    /// Damage the start-up recovery skipped, for `/healthz`.
    skipped: Vec<SkippedRange>,
    /// Bytes of torn tail the start-up recovery cut off, for `/healthz`.
    torn_tail_bytes: u64,
    clock: Arc<dyn Clock>,
}

/// How the session table hashes its keys: foldhash's folded multiply, seeded per process.
/// SipHash cost as much per key as the rest of a lookup, and replay does two lookups per
/// journal record plus a rehash at each growth. Flooding is not a concern: only ids the
/// service drew from a CSPRNG (or read from its own journal) are ever inserted, and the
/// seed keeps the layout unpredictable from outside.
pub(crate) type TableHasher = foldhash::fast::RandomState;

/// Every session id this store ever handed out, live or retired, with the running tallies
/// that spare readers a pass over all of them.
#[derive(Default)]
pub(crate) struct SessionTable {
    pub(crate) map: DashMap<SessionKey, Slot, TableHasher>,
    pub(crate) tally: Tally,
    /// The service tokens, which the journal keeps beside the sessions.
    pub(crate) service_tokens: ServiceTokens,
}

impl SessionTable {
    #[cfg(test)]
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// An empty table with room for `ids` ids before it first grows.
    pub(crate) fn with_capacity(ids: usize) -> Self {
        Self {
            map: DashMap::with_capacity_and_hasher(ids, TableHasher::default()),
            tally: Tally::default(),
            service_tokens: ServiceTokens::default(),
        }
    }

    /// After replay filled the table without its tallies: retires every live slot whose
    /// end has come by `now` (expired while the service was down), counts the tallies, and
    /// returns the ids of the live sessions in order; one pass over the table.
    pub(crate) fn settle_after_replay(&self, now: u64) -> BTreeSet<SessionKey> {
        let mut counted = Counted::default();
        let mut live = Vec::with_capacity(self.map.len());
        for mut entry in self.map.iter_mut() {
            let key = *entry.key();
            let slot = entry.value_mut();
            match slot {
                Slot::Live(session) if session.is_live(now) => {
                    counted.live(session.expires_at, session.clients.len());
                    live.push(key);
                }
                Slot::Live(session) => {
                    // Expired sessions are over for good; keep only their ids (never to
                    // be reused).
                    *slot = Slot::Retired(session.retire(now));
                    counted.retired();
                }
                Slot::Retired(_) => counted.retired(),
            }
        }
        self.tally.add_counted(counted);
        // Collecting sorts once and builds the set in bulk.
        live.into_iter().collect()
    }
}

impl JournalStore {
    /// Opens (or creates) the store in `config.data_dir`, replaying its journal, on the
    /// system clock.
    pub async fn open(config: StoreConfig) -> Result<(JournalStore, RecoveryReport), StoreError> {
        Self::open_with_clock(config, Arc::new(SystemClock)).await
    }

    /// [`JournalStore::open`] with the clock that decides expiry and close times.
    pub async fn open_with_clock(
        config: StoreConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<(JournalStore, RecoveryReport), StoreError> {
        // Refuse an impossible length now rather than at the first `create`.
        SessionId::generate(config.id_length)?;
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
            Arc::clone(&sessions) as Arc<dyn SnapshotSource>,
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
        let store = JournalStore {
            inner: Arc::new(Inner {
                config,
                sessions,
                ordered: RwLock::new(recovered.ordered),
                journal,
                skipped: report.skipped.clone(),
                torn_tail_bytes: report.discarded_tail_bytes,
                clock,
            }),
        };
        Ok((store, report))
    }

    fn insert_with_fresh_id(
        &self,
        session: LiveSession,
    ) -> Result<(SessionInfo, writer::PendingWrite), StoreError> {
        let inner = &*self.inner;
        let length = inner.config.id_length;
        let capacity = id_space_capacity(length);
        let used = inner.sessions.map.len() as u128;
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
            let Entry::Vacant(vacant) = inner.sessions.map.entry(SessionKey::of(&id)) else {
                continue;
            };
            let frame = Record::Created(session.created_record(&id))
                .encode()
                .map_err(|error| StoreError::Encode(error.to_string()))?;
            let info = session.info(&id);
            inner.sessions.tally.add_live(session.expires_at, 0);
            vacant.insert(Slot::Live(Box::new(session)));
            let pending = inner.journal.submit(frame);
            return Ok((info, pending));
        }
        Err(exhausted)
    }

    fn live_info(&self, id: &SessionId, now: u64) -> Option<SessionInfo> {
        match self.inner.sessions.map.get(&SessionKey::of(id))?.value() {
            Slot::Live(session) if session.is_live(now) => Some(session.info(id)),
            _ => None,
        }
    }

    /// Up to `limit` live sessions in id order, starting after the cursor `after`.
    fn list_page(&self, now: u64, after: Option<&SessionId>, limit: usize) -> Vec<SessionInfo> {
        self.scan_live(now, after, limit, |key, session| {
            Some(session.info(&key.id()))
        })
    }

    /// Up to `limit` live sessions with an end, in id order, after the cursor `after`.
    fn ends_page(&self, now: u64, after: Option<&SessionId>, limit: usize) -> Vec<SessionEnd> {
        self.scan_live(now, after, limit, |key, session| {
            session.expires_at.map(|expires_at| SessionEnd {
                id: key.id(),
                expires_at,
            })
        })
    }

    /// Up to `limit` of what `pick` takes from the live sessions in id order, starting
    /// after the cursor `after`; `pick` may pass a session over.
    fn scan_live<T>(
        &self,
        now: u64,
        after: Option<&SessionId>,
        limit: usize,
        pick: impl Fn(SessionKey, &LiveSession) -> Option<T>,
    ) -> Vec<T> {
        let inner = &*self.inner;
        let mut page = Vec::with_capacity(limit.min(1024));
        let mut cursor = after.map(SessionKey::of);
        while page.len() < limit {
            // Copy a chunk of ids, release the lock, then look them up (lock order rule).
            let chunk: Vec<SessionKey> = {
                let ordered = inner.ordered_read();
                let start = match &cursor {
                    Some(id) => Bound::Excluded(id),
                    None => Bound::Unbounded,
                };
                ordered
                    .range((start, Bound::Unbounded))
                    .take(limit - page.len())
                    .copied()
                    .collect()
            };
            let Some(last) = chunk.last().copied() else {
                break;
            };
            page.extend(chunk.iter().filter_map(
                |key| match inner.sessions.map.get(key)?.value() {
                    Slot::Live(session) if session.is_live(now) => pick(*key, session),
                    _ => None,
                },
            ));
            cursor = Some(last);
        }
        page
    }

    /// Number of sessions that are neither closed nor expired.
    fn count_live(&self, now: u64) -> usize {
        self.inner.sessions.tally.live_at(now)
    }

    /// Every closed session whose tokens may still be alive at `now`.
    fn closed_sessions(&self, token_ttl_secs: u64, now: u64) -> Vec<Revocation> {
        self.inner
            .sessions
            .map
            .iter()
            .filter_map(|entry| match entry.value() {
                Slot::Retired(retired) => {
                    let until = retired.refuse_until(token_ttl_secs);
                    (until > now).then(|| Revocation {
                        id: entry.key().id(),
                        until,
                    })
                }
                Slot::Live(_) => None,
            })
            .collect()
    }

    /// The revocation of one closed session, if its tokens may still be alive at `now`.
    fn closed_session(&self, id: &SessionId, token_ttl_secs: u64, now: u64) -> Option<Revocation> {
        match self.inner.sessions.map.get(&SessionKey::of(id)).as_deref() {
            Some(Slot::Retired(retired)) => {
                let until = retired.refuse_until(token_ttl_secs);
                (until > now).then(|| Revocation {
                    id: id.clone(),
                    until,
                })
            }
            _ => None,
        }
    }

    /// Every kick in a live session whose kicked tokens may still be alive at `now`.
    fn live_kicks(&self, token_ttl_secs: u64, now: u64) -> Vec<Kick> {
        let mut found = Vec::new();
        for entry in self.inner.sessions.map.iter() {
            let Slot::Live(session) = entry.value() else {
                continue;
            };
            if !session.is_live(now) {
                continue;
            }
            let id = entry.key().id();
            found.extend(
                session
                    .kicks
                    .iter()
                    .map(|client| session.kick_of(&id, client))
                    .filter(|kick| kick.refuse_until(token_ttl_secs) > now),
            );
        }
        found
    }

    /// Kicks `client` out of live session `id`: `None` when the session is not live or
    /// the client never joined it. Durable before it returns.
    async fn kick_client(
        &self,
        id: &SessionId,
        client: &ClientName,
        now: u64,
    ) -> Result<Option<Kick>, StoreError> {
        let inner = &*self.inner;
        let key = SessionKey::of(id);
        let (kick, previous, pending) = {
            let Some(mut slot) = inner.sessions.map.get_mut(&key) else {
                return Ok(None);
            };
            let Slot::Live(session) = slot.value_mut() else {
                return Ok(None);
            };
            if !session.is_live(now) || !session.clients.contains(client) {
                return Ok(None);
            }
            let previous = session.kicks.get(client).cloned();
            let generation = session.kicks.generation(client).saturating_add(1);
            let frame = Record::Kicked(KickedRecord {
                id: id.clone(),
                client: client.clone(),
                generation,
                kicked_at: now,
            })
            .encode()
            .map_err(|error| StoreError::Encode(error.to_string()))?;
            session.kicks.record(client.clone(), generation, now);
            let kick = Kick {
                id: id.clone(),
                client: client.clone(),
                generation,
                kicked_at: now,
                session_end: session.expires_at,
            };
            (kick, previous, inner.journal.submit(frame))
        };
        if let Err(error) = pending.durable().await {
            // Memory must not claim what the disk does not hold: take the kick back.
            if let Some(mut slot) = inner.sessions.map.get_mut(&key) {
                if let Slot::Live(session) = slot.value_mut() {
                    if session.kicks.generation(client) == kick.generation {
                        session.kicks.restore(client, previous);
                    }
                }
            }
            return Err(error);
        }
        Ok(Some(kick))
    }

    /// Records an issued service token, durably.
    async fn record_service_token(&self, token: ServiceTokenInfo) -> Result<(), StoreError> {
        let inner = &*self.inner;
        let jti = token.jti.clone();
        let frame = Record::ServiceTokenIssued(service_tokens::issued_record(&token))
            .encode()
            .map_err(|error| StoreError::Encode(error.to_string()))?;
        if !inner.sessions.service_tokens.insert(token) {
            return Err(StoreError::Encode(format!(
                "service token id {jti} is taken"
            )));
        }
        if let Err(error) = inner.journal.submit(frame).durable().await {
            // Memory must not claim what the disk does not hold.
            inner.sessions.service_tokens.remove(&jti);
            return Err(error);
        }
        Ok(())
    }

    /// Revokes service token `jti`, durably; `None` when unknown or expired.
    async fn revoke_token(
        &self,
        jti: &str,
        now: u64,
    ) -> Result<Option<RevokedServiceToken>, StoreError> {
        let inner = &*self.inner;
        let Some((token, newly)) = inner.sessions.service_tokens.revoke(jti, now) else {
            return Ok(None);
        };
        if token.expires_at <= now {
            if newly {
                inner.sessions.service_tokens.unrevoke(jti);
            }
            return Ok(None);
        }
        if !newly {
            // Revoked before; its record may still be on its way to disk.
            inner.journal.barrier().durable().await?;
            return Ok(Some(RevokedServiceToken { token, newly }));
        }
        let frame = Record::ServiceTokenRevoked(record::ServiceTokenRevokedRecord {
            jti: jti.to_owned(),
            revoked_at: now,
        })
        .encode()
        .map_err(|error| StoreError::Encode(error.to_string()));
        let written = match frame {
            Ok(frame) => inner.journal.submit(frame).durable().await,
            Err(error) => Err(error),
        };
        if let Err(error) = written {
            inner.sessions.service_tokens.unrevoke(jti);
            return Err(error);
        }
        Ok(Some(RevokedServiceToken { token, newly }))
    }

    /// Journal counters, for tests and benchmarks.
    pub fn journal_stats(&self) -> JournalStats {
        self.inner.journal.stats()
    }
}

#[async_trait]
impl SessionStore for JournalStore {
    async fn create(
        &self,
        new: NewSession,
        pin_hash: Arc<str>,
        now: u64,
    ) -> Result<SessionInfo, StoreError> {
        let inner = &*self.inner;
        let session = LiveSession::new(
            new.session_type,
            now,
            new.ttl_secs.map(|ttl| now.saturating_add(ttl)),
            new.max_clients,
            &pin_hash,
        );
        let (info, pending) = self.insert_with_fresh_id(session)?;
        let key = SessionKey::of(&info.id);
        inner.ordered_write().insert(key);
        if let Err(error) = pending.durable().await {
            if let Some((_, Slot::Live(session))) = inner.sessions.map.remove(&key) {
                inner
                    .sessions
                    .tally
                    .remove_live(session.expires_at, session.clients.len());
            }
            inner.ordered_write().remove(&key);
            return Err(error);
        }
        Ok(info)
    }

    async fn get(&self, id: &SessionId, now: u64) -> Result<Option<SessionInfo>, StoreError> {
        Ok(self.live_info(id, now))
    }

    fn is_live(&self, id: &SessionId, now: u64) -> bool {
        matches!(
            self.inner.sessions.map.get(&SessionKey::of(id)).as_deref(),
            Some(Slot::Live(session)) if session.is_live(now)
        )
    }

    async fn list(
        &self,
        now: u64,
        after: Option<&SessionId>,
        limit: usize,
    ) -> Result<Vec<SessionInfo>, StoreError> {
        Ok(self.list_page(now, after, limit))
    }

    async fn live_ends(
        &self,
        now: u64,
        after: Option<&SessionId>,
        limit: usize,
    ) -> Result<Vec<SessionEnd>, StoreError> {
        Ok(self.ends_page(now, after, limit))
    }

    async fn live_count(&self, now: u64) -> Result<usize, StoreError> {
        Ok(self.count_live(now))
    }

    async fn pin_hash(&self, id: &SessionId, now: u64) -> Result<Option<Arc<str>>, StoreError> {
        Ok(
            match self.inner.sessions.map.get(&SessionKey::of(id)).as_deref() {
                Some(Slot::Live(session)) if session.is_live(now) => {
                    Some(session.pin_hash.shared())
                }
                _ => None,
            },
        )
    }

    async fn join_record(
        &self,
        id: &SessionId,
        client: &ClientName,
        now: u64,
    ) -> Result<JoinedSession, JoinError> {
        let inner = &*self.inner;
        let key = SessionKey::of(id);
        let (info, pending) = {
            let Some(mut slot) = inner.sessions.map.get_mut(&key) else {
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
                generation: session.kicks.generation(client),
            };
            if session.clients.contains(client) {
                // Its first join may still be on its way to disk: wait for it.
                (joined, inner.journal.barrier())
            } else {
                let full = session
                    .max_clients()
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
                inner.sessions.tally.client_added();
                (joined, inner.journal.submit(frame))
            }
        };
        if let Err(error) = pending.durable().await {
            // Memory must not claim what the disk does not hold: forget this join again.
            if let Some(mut slot) = inner.sessions.map.get_mut(&key) {
                if let Slot::Live(session) = slot.value_mut() {
                    if session.clients.get(client) == Some(now) {
                        session.clients.remove(client);
                        inner.sessions.tally.client_removed();
                    }
                }
            }
            return Err(error.into());
        }
        Ok(info)
    }

    /// Closes a session for good; `false` when it is unknown, already closed or expired.
    /// Durable before it returns.
    async fn close(&self, id: &SessionId) -> Result<bool, StoreError> {
        let inner = &*self.inner;
        let now = inner.clock.unix_now();
        let key = SessionKey::of(id);
        let (previous, pending) = {
            let Some(mut slot) = inner.sessions.map.get_mut(&key) else {
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
            if let Slot::Live(closed) = &session {
                inner
                    .sessions
                    .tally
                    .retire_live(closed.expires_at, closed.clients.len());
            }
            (session, inner.journal.submit(frame))
        };
        inner.ordered_write().remove(&key);
        if let Err(error) = pending.durable().await {
            // Memory must not claim what the disk does not hold: put the session back.
            if let Some(mut slot) = inner.sessions.map.get_mut(&key) {
                if let Slot::Live(session) = &previous {
                    inner
                        .sessions
                        .tally
                        .unretire_live(session.expires_at, session.clients.len());
                }
                *slot.value_mut() = previous;
            }
            inner.ordered_write().insert(key);
            return Err(error);
        }
        Ok(true)
    }

    async fn revocations(
        &self,
        token_ttl_secs: u64,
        now: u64,
    ) -> Result<Vec<Revocation>, StoreError> {
        Ok(self.closed_sessions(token_ttl_secs, now))
    }

    async fn revocation(
        &self,
        id: &SessionId,
        token_ttl_secs: u64,
        now: u64,
    ) -> Result<Option<Revocation>, StoreError> {
        Ok(self.closed_session(id, token_ttl_secs, now))
    }

    async fn kick(
        &self,
        id: &SessionId,
        client: &ClientName,
        now: u64,
    ) -> Result<Option<Kick>, StoreError> {
        self.kick_client(id, client, now).await
    }

    async fn kicks(&self, token_ttl_secs: u64, now: u64) -> Result<Vec<Kick>, StoreError> {
        Ok(self.live_kicks(token_ttl_secs, now))
    }

    async fn set_conductor_started(
        &self,
        id: &SessionId,
        started: bool,
        now: u64,
    ) -> Result<bool, StoreError> {
        let inner = &*self.inner;
        let key = SessionKey::of(id);
        let (previous, pending) = {
            let Some(mut slot) = inner.sessions.map.get_mut(&key) else {
                return Ok(false);
            };
            let Slot::Live(session) = slot.value_mut() else {
                return Ok(false);
            };
            if !session.is_live(now) {
                return Ok(false);
            }
            let frame = Record::Conductor(ConductorRecord {
                id: id.clone(),
                started,
                at: now,
            })
            .encode()
            .map_err(|error| StoreError::Encode(error.to_string()))?;
            let previous = std::mem::replace(&mut session.conductor_started, started);
            (previous, inner.journal.submit(frame))
        };
        if let Err(error) = pending.durable().await {
            // Memory must not claim what the disk does not hold.
            if let Some(mut slot) = inner.sessions.map.get_mut(&key) {
                if let Slot::Live(session) = slot.value_mut() {
                    session.conductor_started = previous;
                }
            }
            return Err(error);
        }
        Ok(true)
    }

    async fn started_conductors(&self, now: u64) -> Result<Vec<SessionId>, StoreError> {
        Ok(self
            .inner
            .sessions
            .map
            .iter()
            .filter(|entry| {
                matches!(entry.value(), Slot::Live(session) if session.conductor_started && session.is_live(now))
            })
            .map(|entry| entry.key().id())
            .collect())
    }

    async fn service_token_issued(&self, token: ServiceTokenInfo) -> Result<(), StoreError> {
        self.record_service_token(token).await
    }

    async fn service_tokens(&self, now: u64) -> Result<Vec<ServiceTokenInfo>, StoreError> {
        Ok(self.inner.sessions.service_tokens.live(now))
    }

    async fn revoke_service_token(
        &self,
        jti: &str,
        now: u64,
    ) -> Result<Option<RevokedServiceToken>, StoreError> {
        self.revoke_token(jti, now).await
    }

    fn health(&self) -> StoreHealth {
        let stats = self.inner.journal.stats();
        StoreHealth {
            write_fault: self.inner.journal.fault(),
            skipped: self.inner.skipped.clone(),
            torn_tail_bytes: self.inner.torn_tail_bytes,
            compactions: stats.compactions,
            compacting: stats.compacting,
        }
    }

    async fn shutdown(&self) {
        self.inner.journal.shutdown().await;
    }
}

impl Inner {
    fn ordered_read(&self) -> std::sync::RwLockReadGuard<'_, BTreeSet<SessionKey>> {
        // The set is consistent after every single insert/remove, so a panic elsewhere
        // while holding the lock cannot leave it half-updated.
        self.ordered.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn ordered_write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeSet<SessionKey>> {
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
