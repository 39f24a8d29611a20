//! Start-up of the store: replay the journal into memory, cut off a damaged tail, and
//! compact the file when it holds much more history than live state.
//!
//! Replay is deliberately cheap, because it stands between a restart and a working
//! service: the file is read in one piece, each frame is checked and decoded straight from
//! that buffer, and nothing expensive (argon2 above all) runs per record. PIN hashes are
//! only carried over; the first join of each session verifies against them later.
//!
//! A damaged tail — a torn last append after a crash, a flipped bit, garbage — is never a
//! reason to refuse to start: everything before the first bad frame is kept, the rest is
//! reported (log line with the byte offset, [`RecoveryReport::discarded_tail_bytes`]) and
//! truncated away so new records do not land behind it.
//!
//! After replay, a journal holding much more history than live state is compacted (see
//! `compaction`).

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::path::Path;
use std::time::Instant;

use dashmap::DashMap;

use super::compaction::{self, COMPACTION_FILE_NAME};
use super::journal::JOURNAL_FILE_NAME;
use super::record::{decode_frame, ClosedRecord, JoinedRecord, Record};
use super::{io_error, LiveSession, RecoveryReport, Slot, StoreError};
use crate::domain::SessionId;

pub(crate) struct Recovered {
    pub(crate) sessions: DashMap<SessionId, Slot>,
    pub(crate) ordered: BTreeSet<SessionId>,
    pub(crate) journal_file: File,
    /// Records in the journal file as it is now (after any compaction).
    pub(crate) journal_records: usize,
    pub(crate) report: RecoveryReport,
}

pub(crate) fn recover(data_dir: &Path, now: u64) -> Result<Recovered, StoreError> {
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

    let (bytes, journal_existed) = match fs::read(&journal_path) {
        Ok(bytes) => (bytes, true),
        Err(error) if error.kind() == ErrorKind::NotFound => (Vec::new(), false),
        Err(error) => return Err(io_error("read", &journal_path)(error)),
    };

    let mut sessions = HashMap::new();
    let mut records = 0;
    let mut intact_len = 0;
    while intact_len < bytes.len() {
        match decode_frame(&bytes[intact_len..]) {
            Ok((record, frame_len)) => {
                apply(&mut sessions, record);
                records += 1;
                intact_len += frame_len;
            }
            Err(defect) => {
                tracing::warn!(
                    path = %journal_path.display(),
                    offset = intact_len,
                    discarded_bytes = bytes.len() - intact_len,
                    defect = defect.describe(),
                    "session journal has a damaged tail; keeping the intact part before the offset and discarding the rest"
                );
                break;
            }
        }
    }
    let discarded_tail_bytes = (bytes.len() - intact_len) as u64;
    drop(bytes);
    if discarded_tail_bytes > 0 {
        truncate(&journal_path, intact_len as u64)?;
    }

    // Expired sessions are over for good; keep only their ids (never to be reused).
    for slot in sessions.values_mut() {
        if matches!(slot, Slot::Live(session) if !session.is_live(now)) {
            *slot = Slot::Retired;
        }
    }

    let sessions: DashMap<SessionId, Slot> = sessions.into_iter().collect();
    let snapshot_records = compaction::snapshot_len(&sessions, now);
    let (journal_file, journal_records) = if compaction::worth_compacting(records, snapshot_records)
    {
        let (snapshot, snapshot_records) = compaction::encode_snapshot(&sessions, now)?;
        let file = compaction::write_snapshot(data_dir, &snapshot)?;
        compaction::install_snapshot(data_dir)?;
        compaction::sync_dir(data_dir)?;
        tracing::info!(
            records_before = records,
            records_after = snapshot_records,
            "compacted the session journal"
        );
        (file, snapshot_records)
    } else {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&journal_path)
            .map_err(io_error("open", &journal_path))?;
        if !journal_existed {
            compaction::sync_dir(data_dir)?;
        }
        (file, records)
    };

    let ordered: BTreeSet<SessionId> = sessions
        .iter()
        .filter(|entry| matches!(entry.value(), Slot::Live(_)))
        .map(|entry| entry.key().clone())
        .collect();
    let report = RecoveryReport {
        sessions: ordered.len(),
        records,
        discarded_tail_bytes,
        elapsed: started.elapsed(),
    };
    Ok(Recovered {
        sessions,
        ordered,
        journal_file,
        journal_records,
        report,
    })
}

fn apply(sessions: &mut HashMap<SessionId, Slot>, record: Record) {
    match record {
        Record::Created(created) => {
            let id = created.id.clone();
            if sessions.contains_key(&id) {
                // Legitimate after a compaction while running (see `compaction`).
                tracing::debug!(session_id = %id, "journal creates a session id again; the later one wins");
            }
            sessions.insert(id, Slot::Live(Box::new(LiveSession::from_record(created))));
        }
        Record::Joined(JoinedRecord {
            id,
            client,
            joined_at,
        }) => {
            if let Some(Slot::Live(session)) = sessions.get_mut(&id) {
                session.clients.entry(client).or_insert(joined_at);
            }
        }
        Record::Closed(ClosedRecord { id }) => {
            sessions.insert(id, Slot::Retired);
        }
    }
}

fn truncate(path: &Path, len: u64) -> Result<(), StoreError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_error("open", path))?;
    file.set_len(len).map_err(io_error("truncate", path))?;
    file.sync_all().map_err(io_error("sync", path))
}
