//! Start-up of the store: replay the journal into memory, skip damage on the safe side,
//! and compact the file when it holds much more history than live state (or damage, or
//! an older format).
//!
//! Replay is deliberately cheap, because it stands between a restart and a working
//! service: the file is read in chunks of [`CHUNK`] bytes (never whole: at a million
//! sessions it is hundreds of megabytes), each frame is checked and decoded straight from
//! the chunk into the store's own table, and nothing expensive (argon2 above all) runs per
//! record. PIN hashes are only carried over; the first join of each session verifies
//! against them later. Bodies in the writer's own spelling are read without the general
//! JSON parser ([`super::canonical_body`]), the table is sized from the file's length
//! before the first record and hashed cheaply ([`super::TableHasher`]), and one pass at the
//! end retires what expired while the service was down, counts the tallies and collects
//! the live ids. Damage is judged with the rest of the file at hand: from the first
//! frame that is not intact, the remainder of the file is read in one piece.
//!
//! What damage means, and what recovery does about it:
//!
//! - a **torn tail** (the file ends inside a frame, or damage with no intact frame after
//!   it): what a crash in the middle of an append leaves, never acknowledged. Cut off and
//!   reported. (Bit rot in the very last frame's key looks the same and is treated alike:
//!   the one case where a damaged close can go unnoticed.)
//! - a frame whose **body** is damaged but whose key is intact: recovery knows what was
//!   lost and stays on the safe side: a lost close still closes the session (at recovery
//!   time, so its tokens stay refused longest), a lost create still reserves its id and
//!   counts as closed, a lost join just loses that client's entry, a lost service-token
//!   record (issue or revocation) leaves that token revoked. Skipped and reported.
//! - a frame whose **key** is damaged: what it was is unknown. Recovery resynchronises at
//!   the next intact frame but refuses to start ([`StoreError::UndecidableDamage`]), since
//!   the lost frame may have been a close; the operator restarts with
//!   `--repair-journal-at <offset>`, which closes every session open at that point,
//!   revokes every service token known there and reserves every session id still readable
//!   in the damaged bytes.
//! - a frame whose checksums match but whose content does not decode: written by another
//!   version, or a bug; refusing to start ([`StoreError::UndecodableRecord`]) loses nothing.
//!
//! Every skipped range is logged and listed in [`RecoveryReport::skipped`] (the admin
//! `/healthz` shows them). After damage, the file is rewritten as a snapshot so the next
//! start reads clean; when that cannot be written (full disk), the service still starts
//! on the old file, and the next start decides the same again.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use super::compaction::{self, SnapshotSource, COMPACTION_FILE_NAME};
use super::record::{
    decode_frame, decode_v1_frame, ClosedRecord, ConductorRecord, FrameDefect, JoinedRecord,
    KickedRecord, Record, RecordKind, RecordSubject, ServiceTokenRevokedRecord, JOURNAL_HEADER,
};
use super::service_tokens::ServiceTokens;
use super::writer::JOURNAL_FILE_NAME;
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;

use super::session_key::SessionKey;
use super::TableHasher;
use super::{io_error, LiveSession, Retired, SessionTable, Slot};
use crate::domain::SessionId;
use crate::store::{RecoveryReport, SkippedRange, StoreError};

/// What every journal format's first line starts with.
const HEADER_PREFIX: &[u8] = b"ism-session-journal ";
/// Bytes read at a time while replaying.
const CHUNK: usize = 4 << 20;
/// Journal bytes per session id, roughly, in a journal as the service writes it: a create
/// (about 300 bytes with its PIN hash) and a join or two. The table is sized from the
/// file's length by it, so that replay does not grow and rehash it again and again; a
/// wrong guess costs at most one more growth or a few unused (and never touched) buckets.
const JOURNAL_BYTES_PER_ID: u64 = 384;
#[cfg(test)]
pub(crate) const CHUNK_FOR_TESTS: usize = CHUNK;

type Table = DashMap<SessionKey, Slot, TableHasher>;

pub(crate) struct Recovered {
    pub(crate) sessions: SessionTable,
    pub(crate) ordered: BTreeSet<SessionKey>,
    pub(crate) journal_file: File,
    /// Records in the journal file as it is now (after any compaction).
    pub(crate) journal_records: usize,
    /// Length of the journal file as it is now.
    pub(crate) journal_len: u64,
    pub(crate) report: RecoveryReport,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// `<crc32> <JSON>` lines, no header.
    V1,
    /// The current format, after [`JOURNAL_HEADER`].
    V2,
}

/// What replay has counted so far.
#[derive(Default)]
struct Replay {
    records: usize,
    skipped: Vec<SkippedRange>,
}

/// How far replay got in the bytes it was given.
enum Step {
    /// The intact part ends here (relative to the bytes given); anything after is a torn
    /// tail.
    Done(usize),
    /// Needs the bytes from here on with more of the file after them.
    NeedMore(usize),
}

/// Appends up to [`CHUNK`] more bytes of `file` to `buf`; `true` once the file is read to
/// its end.
fn read_chunk(file: &mut Option<File>, buf: &mut Vec<u8>, path: &Path) -> Result<bool, StoreError> {
    let Some(file) = file else {
        return Ok(true);
    };
    buf.reserve_exact(CHUNK);
    let read = Read::by_ref(file)
        .take(CHUNK as u64)
        .read_to_end(buf)
        .map_err(io_error("read", path))?;
    Ok(read < CHUNK)
}

pub(crate) fn recover(
    data_dir: &Path,
    now: u64,
    repair_at: Option<u64>,
) -> Result<Recovered, StoreError> {
    let started = Instant::now();
    fs::create_dir_all(data_dir).map_err(io_error("create the data directory", data_dir))?;
    let journal_path = data_dir.join(JOURNAL_FILE_NAME);
    let compaction_path = data_dir.join(COMPACTION_FILE_NAME);
    match fs::remove_file(&compaction_path) {
        Ok(()) => tracing::warn!(
            path = %compaction_path.display(),
            "removed an unfinished compaction file left by an earlier crash"
        ),
        Err(error) if error.kind() == ErrorKind::NotFound => {}
        Err(error) => return Err(io_error("remove", &compaction_path)(error)),
    }

    let mut file = match File::open(&journal_path) {
        Ok(file) => Some(file),
        Err(error) if error.kind() == ErrorKind::NotFound => None,
        Err(error) => return Err(io_error("open", &journal_path)(error)),
    };
    let mut bytes = Vec::new();
    let mut at_end = read_chunk(&mut file, &mut bytes, &journal_path)?;
    let (format, start) = if bytes.starts_with(JOURNAL_HEADER) {
        (Format::V2, JOURNAL_HEADER.len())
    } else if bytes.starts_with(HEADER_PREFIX) {
        let first_line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
        return Err(StoreError::UnknownFormat {
            path: journal_path,
            first_line: String::from_utf8_lossy(first_line).into_owned(),
        });
    } else if bytes.is_empty() || JOURNAL_HEADER.starts_with(&bytes) {
        // New, or a header cut short by a crash at the very first start.
        (Format::V2, bytes.len())
    } else {
        (Format::V1, 0)
    };

    let expected_ids = match &file {
        Some(file) => file
            .metadata()
            .map_or(0, |meta| meta.len() / JOURNAL_BYTES_PER_ID),
        None => 0,
    };
    let sessions = SessionTable::with_capacity(usize::try_from(expected_ids).unwrap_or(0));
    let mut replayed = Replay::default();
    let (mut base, mut pos) = (0, start);
    let intact_len = loop {
        let step = replay(
            &sessions,
            &mut replayed,
            &bytes,
            (pos, base),
            at_end,
            (format, now, repair_at),
            &journal_path,
        )?;
        match step {
            Step::Done(end) => break base + end,
            Step::NeedMore(from) => {
                bytes.drain(..from);
                base += from;
                pos = 0;
                at_end = read_chunk(&mut file, &mut bytes, &journal_path)?;
            }
        }
    };
    let Replay { records, skipped } = replayed;
    let discarded_tail_bytes = (base + bytes.len() - intact_len) as u64;
    drop(bytes);
    drop(file);
    if discarded_tail_bytes > 0 {
        tracing::warn!(
            path = %journal_path.display(),
            offset = intact_len,
            discarded_bytes = discarded_tail_bytes,
            "session journal ends in a torn append (cut short by a crash, never acknowledged); cutting it off"
        );
        truncate(&journal_path, intact_len as u64)?;
    }
    for range in &skipped {
        tracing::error!(
            path = %journal_path.display(),
            offset = range.offset,
            len = range.len,
            detail = %range.detail,
            "session journal damage skipped"
        );
    }

    let ordered = sessions.settle_after_replay(now);
    let snapshot_records = sessions.snapshot_records_estimate();
    let must_rewrite = format == Format::V1 || !skipped.is_empty();
    let mut journal = None;
    if must_rewrite || compaction::worth_compacting(records, snapshot_records) {
        match compact(data_dir, &sessions, now) {
            Ok((file, records_after, len)) => {
                tracing::info!(
                    records_before = records,
                    records_after,
                    "rewrote the session journal as a snapshot"
                );
                journal = Some((file, records_after, len));
            }
            Err(error) if format == Format::V1 => {
                return Err(StoreError::JournalFailed(format!(
                    "cannot rewrite the journal in the current format: {error}"
                )))
            }
            Err(error) => tracing::warn!(
                %error,
                "cannot compact the session journal at start-up; going on with the existing file"
            ),
        }
    }
    let (journal_file, journal_records, journal_len) = match journal {
        Some(journal) => journal,
        None => open_for_append(data_dir, &journal_path, intact_len, records)?,
    };

    let report = RecoveryReport {
        sessions: ordered.len(),
        records,
        discarded_tail_bytes,
        skipped,
        elapsed: started.elapsed(),
    };
    Ok(Recovered {
        sessions,
        ordered,
        journal_file,
        journal_records,
        journal_len,
        report,
    })
}

/// Replays the frames in `bytes` from `pos` into `sessions`; `base` is the file offset of
/// `bytes[0]`. Unless `at_end` (the bytes run to the end of the file), it stops at the
/// first frame that is not intact and asks for more.
fn replay(
    table: &SessionTable,
    replayed: &mut Replay,
    bytes: &[u8],
    (mut pos, base): (usize, usize),
    at_end: bool,
    (format, now, repair_at): (Format, u64, Option<u64>),
    path: &Path,
) -> Result<Step, StoreError> {
    let decode = |at: usize| match format {
        Format::V1 => decode_v1_frame(&bytes[at..]),
        Format::V2 => decode_frame(&bytes[at..]),
    };
    let Replay { records, skipped } = replayed;
    let sessions = &table.map;
    let tokens = &table.service_tokens;
    while pos < bytes.len() {
        let defect = match decode(pos) {
            Ok((record, frame_len)) => {
                apply(sessions, tokens, record, now);
                *records += 1;
                pos += frame_len;
                continue;
            }
            Err(_) if !at_end => return Ok(Step::NeedMore(pos)),
            Err(defect) => defect,
        };
        let end = match &defect {
            FrameDefect::Torn => return Ok(Step::Done(pos)),
            FrameDefect::Undecodable => {
                return Err(StoreError::UndecodableRecord {
                    path: path.to_owned(),
                    offset: pos as u64,
                    detail: defect.describe().to_owned(),
                })
            }
            // The key says where the frame ends: if a frame starts right there (or the
            // file ends), exactly this frame was damaged.
            FrameDefect::DamagedBody { len, .. }
                if pos + len >= bytes.len()
                    || !matches!(decode(pos + len), Err(FrameDefect::DamagedKey)) =>
            {
                (pos + len).min(bytes.len())
            }
            FrameDefect::DamagedBody { .. } | FrameDefect::DamagedKey => {
                match resync(bytes, pos, &decode) {
                    Some(next) => next,
                    // No intact frame up to the end of the file: what a crash in the
                    // middle of an append (never acknowledged) leaves.
                    None => return Ok(Step::Done(pos)),
                }
            }
        };
        let offset = base + pos;
        let range = |detail: String| SkippedRange {
            offset: offset as u64,
            len: (end - pos) as u64,
            detail,
        };
        let description = defect.describe();
        match defect {
            FrameDefect::DamagedBody { kind, subject, len }
                if (pos + len).min(bytes.len()) == end =>
            {
                let detail = match subject {
                    RecordSubject::Session(id) => lose(sessions, kind, id, now),
                    RecordSubject::ServiceToken(jti) => {
                        tokens.lost(&jti, now);
                        format!("a record of service token {jti}: the token stays revoked")
                    }
                };
                skipped.push(range(format!("{description}; {detail}")));
            }
            _ if repair_at == Some(offset as u64) => {
                let detail = repair(sessions, tokens, &bytes[pos..end], now);
                skipped.push(range(format!(
                    "unreadable records (repaired with --repair-journal-at {offset}); {detail}"
                )));
            }
            _ => {
                return Err(StoreError::UndecidableDamage {
                    path: path.to_owned(),
                    offset: offset as u64,
                    end: (base + end) as u64,
                })
            }
        }
        pos = end;
    }
    if at_end {
        Ok(Step::Done(bytes.len()))
    } else {
        Ok(Step::NeedMore(pos))
    }
}

/// The start of the next line after `damaged` that holds a frame with an intact key.
fn resync(
    bytes: &[u8],
    damaged: usize,
    decode: &dyn Fn(usize) -> Result<(Record, usize), FrameDefect>,
) -> Option<usize> {
    let mut at = damaged;
    loop {
        at += 1 + bytes[at..].iter().position(|&b| b == b'\n')?;
        if at >= bytes.len() {
            return None;
        }
        match decode(at) {
            Ok(_) | Err(FrameDefect::Undecodable | FrameDefect::DamagedBody { .. }) => {
                return Some(at)
            }
            Err(FrameDefect::Torn | FrameDefect::DamagedKey) => {}
        }
    }
}

fn apply(sessions: &Table, tokens: &ServiceTokens, record: Record, now: u64) {
    match record {
        Record::ServiceTokenIssued(issued) => tokens.issued(issued),
        Record::ServiceTokenRevoked(ServiceTokenRevokedRecord { jti, revoked_at }) => {
            if tokens.revoke(&jti, revoked_at).is_none() {
                // Revoked but never issued in this file: refuse it to be safe.
                tokens.lost(&jti, now);
            }
        }
        Record::Created(created) => match sessions.entry(SessionKey::of(&created.id)) {
            // A create never revives a closed id (it can only be a replay of a record
            // already in a snapshot).
            Entry::Occupied(entry) if matches!(entry.get(), Slot::Retired(_)) => {
                tracing::debug!(session_id = %created.id, "journal creates a closed session id again; it stays closed");
            }
            Entry::Occupied(mut entry) => {
                entry.insert(Slot::Live(Box::new(LiveSession::from_record(created))));
            }
            Entry::Vacant(entry) => {
                entry.insert(Slot::Live(Box::new(LiveSession::from_record(created))));
            }
        },
        Record::Joined(JoinedRecord {
            id,
            client,
            joined_at,
        }) => {
            if let Some(mut slot) = sessions.get_mut(&SessionKey::of(&id)) {
                if let Slot::Live(session) = slot.value_mut() {
                    session.clients.insert(client, joined_at);
                }
            }
        }
        Record::Kicked(KickedRecord {
            id,
            client,
            generation,
            kicked_at,
        }) => {
            if let Some(mut slot) = sessions.get_mut(&SessionKey::of(&id)) {
                if let Slot::Live(session) = slot.value_mut() {
                    session.kicks.record(client, generation, kicked_at);
                }
            }
        }
        Record::Closed(ClosedRecord {
            id,
            closed_at,
            session_end,
        }) => close(sessions, id, closed_at.unwrap_or(now), session_end),
        Record::Conductor(ConductorRecord { id, started, .. }) => {
            if let Some(mut slot) = sessions.get_mut(&SessionKey::of(&id)) {
                if let Slot::Live(session) = slot.value_mut() {
                    session.conductor_started = started;
                }
            }
        }
    }
}

/// Marks `id` closed at `closed_at`; an earlier close stands.
fn close(sessions: &Table, id: SessionId, closed_at: u64, session_end: Option<u64>) {
    match sessions.entry(SessionKey::of(&id)) {
        Entry::Occupied(mut entry) => {
            if let Slot::Live(session) = entry.get() {
                let retired = session.retire(closed_at);
                entry.insert(Slot::Retired(retired));
            }
        }
        Entry::Vacant(entry) => {
            entry.insert(Slot::Retired(Retired {
                closed_at,
                session_end,
            }));
        }
    }
}

/// Stays on the safe side for a lost record whose kind and id are known.
fn lose(sessions: &Table, kind: RecordKind, id: SessionId, now: u64) -> String {
    match kind {
        RecordKind::Closed => {
            let detail = format!("a close of session {id}: the session stays closed");
            close(sessions, id, now, None);
            detail
        }
        RecordKind::Created => {
            if sessions.contains_key(&SessionKey::of(&id)) {
                return format!("a repeated create of session {id}: nothing lost");
            }
            let detail = format!(
                "the create of session {id}: its id stays reserved and it counts as closed"
            );
            close(sessions, id, now, None);
            detail
        }
        RecordKind::Joined => {
            format!("a join to session {id}: that client is missing from its list")
        }
        RecordKind::Kicked => format!(
            "a kick in session {id}: that client's generation may be lower, so its new tokens may be refused until the kick runs out"
        ),
        RecordKind::Conductor => format!(
            "a start or stop of the conductor of session {id}: its conductor runs after this start-up as the records before it said"
        ),
        // Their keys name a service token, never a session (see `decode_frame`).
        RecordKind::ServiceTokenIssued | RecordKind::ServiceTokenRevoked => {
            format!("a service-token record keyed by session {id}: ignored")
        }
    }
}

/// The operator's repair of an undecidable range: close everything open at this point and
/// reserve every session id still readable in the damaged bytes.
fn repair(sessions: &Table, tokens: &ServiceTokens, damaged: &[u8], now: u64) -> String {
    let revoked = tokens.revoke_all(now);
    let open: Vec<SessionId> = sessions
        .iter()
        .filter(|entry| matches!(entry.value(), Slot::Live(_)))
        .map(|entry| entry.key().id())
        .collect();
    let closed = open.len();
    for id in open {
        close(sessions, id, now, None);
    }
    let mut reserved = 0;
    for id in readable_ids(damaged) {
        if !sessions.contains_key(&SessionKey::of(&id)) {
            close(sessions, id, now, None);
            reserved += 1;
        }
    }
    format!("closed the {closed} sessions open at this point, revoked the {revoked} service tokens known there and reserved {reserved} more ids found in the damaged bytes")
}

/// Session ids that can still be read in damaged bytes: after `"id":"` and in frame keys.
fn readable_ids(damaged: &[u8]) -> Vec<SessionId> {
    let mut ids = Vec::new();
    let text = String::from_utf8_lossy(damaged);
    for piece in text.split("\"id\":\"").skip(1) {
        if let Some(id) = piece
            .split('"')
            .next()
            .and_then(|id| SessionId::parse(id).ok())
        {
            ids.push(id);
        }
    }
    for line in text.split('\n') {
        let mut fields = line.split(' ');
        if let (Some("c" | "j" | "x"), Some(id)) = (fields.next(), fields.next()) {
            if let Ok(id) = SessionId::parse(id) {
                ids.push(id);
            }
        }
    }
    ids
}

/// Rewrites the journal as a snapshot of `sessions`; the new file, its records and length.
fn compact(
    data_dir: &Path,
    sessions: &SessionTable,
    now: u64,
) -> Result<(File, usize, u64), StoreError> {
    let never = AtomicBool::new(false);
    let written = compaction::write_snapshot(data_dir, sessions, now, &never)?;
    compaction::install_snapshot(data_dir)?;
    compaction::sync_dir(data_dir)?;
    Ok((written.file, written.records, written.len))
}

/// Opens the existing journal for appending (writing the header into a new one).
fn open_for_append(
    data_dir: &Path,
    path: &Path,
    intact_len: usize,
    records: usize,
) -> Result<(File, usize, u64), StoreError> {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_error("open", path))?;
    let mut len = intact_len as u64;
    if intact_len < JOURNAL_HEADER.len() {
        // New (or its header was cut short): start it with the header.
        file.set_len(0)
            .and_then(|()| file.write_all(JOURNAL_HEADER))
            .and_then(|()| file.sync_all())
            .map_err(io_error("write the header of", path))?;
        compaction::sync_dir(data_dir)?;
        len = JOURNAL_HEADER.len() as u64;
    }
    Ok((file, records, len))
}

fn truncate(path: &Path, len: u64) -> Result<(), StoreError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_error("open", path))?;
    file.set_len(len).map_err(io_error("truncate", path))?;
    file.sync_all().map_err(io_error("sync", path))
}
