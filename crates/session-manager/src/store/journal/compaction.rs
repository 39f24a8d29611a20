//! Compaction: replacing the journal's history with a snapshot of the live state, so the
//! file does not grow forever.
//!
//! A snapshot holds, per live session, its `created` record and one `joined` record per
//! client, and per closed or expired session a single `closed` record with its close time:
//! the session is gone, but its id stays retired so it is never handed out again, and its
//! close is republished to the broker for as long as its tokens can live.
//!
//! The snapshot is written to a temporary file, fsynced, renamed over the journal and the
//! directory fsynced, so a crash at any point leaves either the old journal or the new one,
//! never a mix. Start-up compacts after replay; while running, the journal writer compacts
//! between two batches (see `writer`), where the snapshot may already contain changes
//! whose records are still queued. Replaying such a record again after the snapshot is
//! harmless: `created` starts a live session over (and never revives a closed one) and
//! every later record of that session follows it in the queue, `joined` of a known client
//! and `closed` change nothing.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use super::record::{JoinedRecord, Record, JOURNAL_HEADER};
use super::writer::JOURNAL_FILE_NAME;
use super::{io_error, SessionTable, Slot, StoreError};
use crate::domain::SessionId;

/// Compaction writes here first and renames over the journal once the copy is durable.
pub(crate) const COMPACTION_FILE_NAME: &str = "sessions.journal.compact";

/// History may be this many times the live state before it is compacted...
const COMPACTION_RATIO: usize = 2;
/// ...and must exceed it by this many records, so small journals are left alone.
const COMPACTION_MIN_SURPLUS: usize = 1024;

/// Is a journal of `records` records with `snapshot_records` worth of live state worth
/// rewriting?
pub(crate) fn worth_compacting(records: usize, snapshot_records: usize) -> bool {
    records > snapshot_records * COMPACTION_RATIO + COMPACTION_MIN_SURPLUS
}

/// When the file holding `records_in_file` records should next be looked at: counting
/// the live state is a pass over all sessions, cheap when done once per this many appends.
pub(crate) fn next_check_after(records_in_file: usize) -> usize {
    records_in_file + COMPACTION_MIN_SURPLUS
}

/// What a compaction copies: the backend's state, asked for by the writer when it compacts
/// (the writer knows frames and files, not sessions).
pub(crate) trait SnapshotSource: Send + Sync {
    /// Records a snapshot at `now` would hold.
    fn snapshot_len(&self, now: u64) -> usize;

    /// The snapshot at `now`, framed after the journal header, and its number of records.
    fn encode_snapshot(&self, now: u64) -> Result<(Vec<u8>, usize), StoreError>;
}

impl SnapshotSource for SessionTable {
    fn snapshot_len(&self, now: u64) -> usize {
        self.iter()
            .map(|entry| entry.value().snapshot_records(now))
            .sum()
    }

    fn encode_snapshot(&self, now: u64) -> Result<(Vec<u8>, usize), StoreError> {
        let mut bytes = JOURNAL_HEADER.to_vec();
        let mut records = 0;
        for entry in self.iter() {
            for record in entry.value().snapshot(entry.key(), now) {
                record
                    .encode_into(&mut bytes)
                    .map_err(|error| StoreError::Encode(error.to_string()))?;
                records += 1;
            }
        }
        Ok((bytes, records))
    }
}

/// Writes `snapshot` durably to the temporary compaction file; returns a handle open for
/// writing at its end, which stays valid through [`install_snapshot`]'s rename.
pub(crate) fn write_snapshot(data_dir: &Path, snapshot: &[u8]) -> Result<File, StoreError> {
    let temporary = data_dir.join(COMPACTION_FILE_NAME);
    let mut file = File::create(&temporary).map_err(io_error("create", &temporary))?;
    if let Err(error) = file.write_all(snapshot).and_then(|()| file.sync_all()) {
        // A half-written copy only takes space (a full disk is the usual cause).
        let _ = fs::remove_file(&temporary);
        return Err(io_error("write", &temporary)(error));
    }
    Ok(file)
}

/// Renames the written snapshot over the journal. Durable only after [`sync_dir`].
pub(crate) fn install_snapshot(data_dir: &Path) -> Result<(), StoreError> {
    let temporary = data_dir.join(COMPACTION_FILE_NAME);
    fs::rename(&temporary, data_dir.join(JOURNAL_FILE_NAME)).map_err(io_error("rename", &temporary))
}

/// Makes a creation or rename inside `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(io_error("sync the directory", dir))
}

impl Slot {
    pub(crate) fn snapshot_records(&self, now: u64) -> usize {
        match self {
            Slot::Live(session) if session.is_live(now) => 1 + session.clients.len(),
            _ => 1,
        }
    }

    fn snapshot(&self, id: &SessionId, now: u64) -> Vec<Record> {
        match self {
            Slot::Live(session) if session.is_live(now) => {
                let created = Record::Created(session.created_record(id));
                std::iter::once(created)
                    .chain(session.clients.iter().map(|(client, &joined_at)| {
                        Record::Joined(JoinedRecord {
                            id: id.clone(),
                            client: client.clone(),
                            joined_at,
                        })
                    }))
                    .collect()
            }
            Slot::Live(session) => vec![Record::Closed(session.retire(now).record(id))],
            Slot::Retired(retired) => vec![Record::Closed(retired.record(id))],
        }
    }
}
