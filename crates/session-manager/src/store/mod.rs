//! The session store seam: what the service needs from wherever sessions are kept, as
//! the [`SessionStore`] trait, and the values that cross it.
//!
//! The embedded default backend is [`journal::JournalStore`]: memory for reads and an
//! fsynced append-only journal on disk. Another backend (a PostgreSQL one, say) implements
//! the same trait; nothing above this module knows which one runs.
//!
//! A store keeps sessions and their clients and decides what only it can decide
//! atomically: whether a session is live, whether it has room for one more client, and
//! that a change is durable before the call returns. It never sees a PIN: it stores the
//! argon2id hash it is given and hands it back ([`SessionStore::pin_hash`]); checking a
//! PIN is the join's business (`crate::join::pin_check`).
//!
//! Time is passed in (`now`, seconds since the epoch) where a caller decides it, so
//! expiry is testable.

pub mod journal;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use crate::domain::{ClientName, DomainError, ServiceTokenName, SessionId, SessionType};

pub use journal::{JournalStore, StoreConfig, JOURNAL_FILE_NAME};

/// Where sessions live. Every change is durable before its call returns; reads see every
/// change that returned.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Stores a new session under a fresh, never used id, with `pin_hash` (an argon2id
    /// PHC string) as its PIN.
    async fn create(
        &self,
        new: NewSession,
        pin_hash: Arc<str>,
        now: u64,
    ) -> Result<SessionInfo, StoreError>;

    /// The session, or `None` when it is unknown, closed or expired.
    async fn get(&self, id: &SessionId, now: u64) -> Result<Option<SessionInfo>, StoreError>;

    /// Whether the session is neither closed nor expired. Cheap and synchronous, since
    /// the join throttle asks it while it evicts; a backend may answer from a cache and
    /// err on the side of "live".
    fn is_live(&self, id: &SessionId, now: u64) -> bool;

    /// Up to `limit` live sessions in id order, starting after the cursor `after`.
    async fn list(
        &self,
        now: u64,
        after: Option<&SessionId>,
        limit: usize,
    ) -> Result<Vec<SessionInfo>, StoreError>;

    /// Up to `limit` live sessions that have an end, in id order, starting after the cursor
    /// `after`: only their ids and ends, what the expiry index is filled with at start-up,
    /// without copying their clients as [`SessionStore::list`] does. Fewer than `limit`
    /// means there are no more.
    async fn live_ends(
        &self,
        now: u64,
        after: Option<&SessionId>,
        limit: usize,
    ) -> Result<Vec<SessionEnd>, StoreError>;

    /// Number of sessions that are neither closed nor expired.
    async fn live_count(&self, now: u64) -> Result<usize, StoreError>;

    /// The stored PIN hash of a live session; `None` when it is unknown, closed or
    /// expired.
    async fn pin_hash(&self, id: &SessionId, now: u64) -> Result<Option<Arc<str>>, StoreError>;

    /// Records `client` as joined, once the caller has checked the PIN: checks expiry and
    /// `max_clients` (a name that joined before may join again without counting twice and
    /// keeps its first join time). Durable before it returns.
    async fn join_record(
        &self,
        id: &SessionId,
        client: &ClientName,
        now: u64,
    ) -> Result<JoinedSession, JoinError>;

    /// Closes a session for good; `false` when it is unknown, already closed or expired.
    /// Durable before it returns.
    async fn close(&self, id: &SessionId) -> Result<bool, StoreError>;

    /// Every closed session whose tokens may still be alive at `now`, with the time until
    /// which they must be refused. Expired sessions need none: no token outlives them.
    async fn revocations(
        &self,
        token_ttl_secs: u64,
        now: u64,
    ) -> Result<Vec<Revocation>, StoreError>;

    /// The revocation of one closed session, if its tokens may still be alive at `now`.
    async fn revocation(
        &self,
        id: &SessionId,
        token_ttl_secs: u64,
        now: u64,
    ) -> Result<Option<Revocation>, StoreError>;

    /// Kicks `client` out of live session `id`, raising its generation by one: `None`
    /// when the session is unknown, closed or expired or the client never joined it.
    /// Durable before it returns.
    async fn kick(
        &self,
        id: &SessionId,
        client: &ClientName,
        now: u64,
    ) -> Result<Option<Kick>, StoreError>;

    /// The last kick of every kicked client of a live session whose kicked tokens may
    /// still be alive at `now` (see [`Kick::refuse_until`]).
    async fn kicks(&self, token_ttl_secs: u64, now: u64) -> Result<Vec<Kick>, StoreError>;

    /// Records whether the conductor of live session `id` is started (a started one is
    /// started again after a restart); `false` when the session is unknown, closed or
    /// expired. Durable before it returns.
    async fn set_conductor_started(
        &self,
        id: &SessionId,
        started: bool,
        now: u64,
    ) -> Result<bool, StoreError>;
    /// The live sessions whose conductor is started, as last recorded.
    async fn started_conductors(&self, now: u64) -> Result<Vec<SessionId>, StoreError>;

    /// Records an issued service token. Durable before it returns: the token is handed
    /// out only then, so every token in use can be listed and revoked.
    async fn service_token_issued(&self, token: ServiceTokenInfo) -> Result<(), StoreError>;

    /// The service tokens not yet expired at `now`, revoked ones included, in issue order.
    async fn service_tokens(&self, now: u64) -> Result<Vec<ServiceTokenInfo>, StoreError>;

    /// Revokes service token `jti` at `now`: `None` when it is unknown or expired; a token
    /// revoked before keeps its first revocation. Durable before it returns.
    async fn revoke_service_token(
        &self,
        jti: &str,
        now: u64,
    ) -> Result<Option<RevokedServiceToken>, StoreError>;

    /// What `/healthz` reports about the store.
    fn health(&self) -> StoreHealth;

    /// Finishes every acknowledged change and stops; later changes fail with
    /// [`StoreError::JournalClosed`].
    async fn shutdown(&self);
}

/// The store's state for `/healthz`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreHealth {
    /// Why changes are refused right now, if they are.
    pub write_fault: Option<String>,
    /// Damaged journal ranges this process's start-up skipped (embedded backend only).
    pub skipped: Vec<SkippedRange>,
    /// Bytes of torn tail this process's start-up cut off (embedded backend only).
    pub torn_tail_bytes: u64,
    /// Journal compactions finished since start (embedded backend only).
    pub compactions: u64,
    /// Whether a journal compaction is under way (embedded backend only).
    pub compacting: bool,
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

/// When a live session ends ([`SessionStore::live_ends`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEnd {
    pub id: SessionId,
    /// Seconds since the epoch.
    pub expires_at: u64,
}

/// What a successful join tells the caller: just enough to size the token's lifetime and
/// stamp its generation.
/// (Not the whole `SessionInfo`: copying every client on every join is what made joins
/// slow down as a session grew.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinedSession {
    pub expires_at: Option<u64>,
    /// The client's generation: how many times it was kicked (its tokens carry it).
    pub generation: u32,
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

/// A closed session whose tokens may still be alive, and until when they must be refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub id: SessionId,
    pub until: u64,
}

/// The longest lifetime of a service token (366 days): the use-case refuses longer ones,
/// and a service token whose journal record was lost is refused this long.
pub const MAX_SERVICE_TOKEN_TTL_SECS: u64 = 366 * 24 * 3600;

/// A service token as the store keeps it: what it grants and until when, never the
/// token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceTokenInfo {
    /// The token's `jti` (a UUID).
    pub jti: String,
    pub name: ServiceTokenName,
    pub subscribe: Vec<String>,
    pub publish: Vec<String>,
    pub issued_at: u64,
    /// The token's `exp`.
    pub expires_at: u64,
    /// When it was revoked; the broker refuses it from then until `expires_at`.
    pub revoked_at: Option<u64>,
}

/// A revoked service token, and whether this call revoked it (false: it was before).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedServiceToken {
    pub token: ServiceTokenInfo,
    pub newly: bool,
}

/// A kicked client: tokens of `client` in session `id` with a generation below
/// `generation` must be refused for as long as they can live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kick {
    pub id: SessionId,
    pub client: ClientName,
    /// The client's generation after the kick.
    pub generation: u32,
    pub kicked_at: u64,
    /// The session's own end, if it has one: no token lives beyond.
    pub session_end: Option<u64>,
}

impl Kick {
    /// Until when the kicked tokens must be refused: a token minted just before the kick
    /// lives `token_ttl_secs`, never past the session's end.
    pub fn refuse_until(&self, token_ttl_secs: u64) -> u64 {
        let until = self.kicked_at.saturating_add(token_ttl_secs);
        self.session_end.map_or(until, |end| until.min(end))
    }
}
