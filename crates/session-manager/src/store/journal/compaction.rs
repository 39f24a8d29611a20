//! Compaction: replacing the journal's history with a snapshot of the live state, so the
//! file does not grow forever.
//!
//! A snapshot holds, per live session, its `created` record, one `joined` record per
//! client and one `kicked` record per kicked client (its latest generation), a `conductor`
//! record when its conductor is started, and per closed or expired session a single `closed` record with its close time:
//! the session is gone, but its id stays retired so it is never handed out again, and its
//! close is republished to the broker for as long as its tokens can live. Then, per service
//! token not yet expired, its `service_token_issued` record and, if it was revoked, its
//! `service_token_revoked` record; expired service tokens are dropped.
//!
//! The snapshot is streamed to a temporary file, fsynced, renamed over the journal and the
//! directory fsynced, so a crash at any point leaves either the old journal or the new one,
//! never a mix. Start-up compacts after replay. While running, the snapshot is written by
//! a thread of its own, off the writer's path: the writer keeps appending and
//! acknowledging changes in the old journal and keeps a copy of every batch it commits
//! meanwhile (the *tail*); once the snapshot is durable, the writer appends the tail to
//! it, fsyncs, renames it over the journal and goes on in the new file (see `writer`). So
//! every acknowledged change is in the old file until the rename and in the new one after.
//!
//! The snapshot is taken from memory while changes go on, so it may already contain
//! changes that are also in the tail. Replaying such a record again after the snapshot is
//! harmless: `created` starts a live session over (and never revives a closed one) and
//! every later record of that session follows it in the tail, `joined` of a known client
//! and `closed` change nothing.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use super::record::{ConductorRecord, JoinedRecord, KickedRecord, Record, JOURNAL_HEADER};
use super::session_key::SessionKey;
use super::writer::JOURNAL_FILE_NAME;
use super::{io_error, SessionTable, Slot, StoreError};
use crate::domain::SessionId;

/// Compaction writes here first and renames over the journal once the copy is durable.
pub(crate) const COMPACTION_FILE_NAME: &str = "sessions.journal.compact";

/// History may be this many times the live state before it is compacted...
const COMPACTION_RATIO: usize = 2;
/// ...and must exceed it by this many records, so small journals are left alone.
const COMPACTION_MIN_SURPLUS: usize = 1024;
/// Sessions encoded between two looks at the cancel flag.
const CANCEL_CHECK_EVERY: usize = 4096;

/// Is a journal of `records` records with `snapshot_records` worth of live state worth
/// rewriting?
pub(crate) fn worth_compacting(records: usize, snapshot_records: usize) -> bool {
    records > snapshot_records * COMPACTION_RATIO + COMPACTION_MIN_SURPLUS
}

/// When the file holding `records_in_file` records should next be looked at.
pub(crate) fn next_check_after(records_in_file: usize) -> usize {
    records_in_file + COMPACTION_MIN_SURPLUS
}

/// What a compaction copies: the backend's state, asked for by the writer when it compacts
/// (the writer knows frames and files, not sessions).
pub(crate) trait SnapshotSource: Send + Sync {
    /// Records a snapshot would hold, at most; kept as a running tally, so cheap.
    fn snapshot_records_estimate(&self) -> usize;

    /// Writes the snapshot at `now` (records only, no header) to `out`; returns how many
    /// records it wrote. Gives up with [`StoreError::Task`] once `cancel` is set.
    fn write_snapshot(
        &self,
        now: u64,
        out: &mut dyn Write,
        cancel: &AtomicBool,
    ) -> Result<usize, StoreError>;
}

impl SnapshotSource for SessionTable {
    fn snapshot_records_estimate(&self) -> usize {
        self.tally.snapshot_records_estimate() + self.service_tokens.snapshot_records_estimate()
    }

    fn write_snapshot(
        &self,
        now: u64,
        out: &mut dyn Write,
        cancel: &AtomicBool,
    ) -> Result<usize, StoreError> {
        // Copy the ids first: iterating the map itself would hold each shard's lock for
        // as long as encoding that shard takes, stalling every change to its sessions.
        let keys: Vec<SessionKey> = self.map.iter().map(|entry| *entry.key()).collect();
        let mut records = 0;
        let mut frame = Vec::with_capacity(4096);
        for (index, key) in keys.iter().enumerate() {
            if index % CANCEL_CHECK_EVERY == 0 && cancel.load(Ordering::Relaxed) {
                return Err(StoreError::Task("compaction cancelled".to_owned()));
            }
            frame.clear();
            // Encode under the session's lock, write after releasing it.
            let Some(slot) = self.map.get(key) else {
                continue;
            };
            for record in slot.value().snapshot(&key.id(), now) {
                record
                    .encode_into(&mut frame)
                    .map_err(|error| StoreError::Encode(error.to_string()))?;
                records += 1;
            }
            drop(slot);
            out.write_all(&frame).map_err(|source| StoreError::Io {
                action: "write",
                path: COMPACTION_FILE_NAME.into(),
                source,
            })?;
        }
        frame.clear();
        for record in self.service_tokens.snapshot(now) {
            record
                .encode_into(&mut frame)
                .map_err(|error| StoreError::Encode(error.to_string()))?;
            records += 1;
        }
        out.write_all(&frame).map_err(|source| StoreError::Io {
            action: "write",
            path: COMPACTION_FILE_NAME.into(),
            source,
        })?;
        Ok(records)
    }
}

/// A snapshot written durably to the temporary compaction file, not yet installed.
pub(crate) struct WrittenSnapshot {
    /// Open for writing at its end; stays valid through [`install_snapshot`]'s rename.
    pub(crate) file: File,
    pub(crate) records: usize,
    pub(crate) len: u64,
}

/// Streams the snapshot at `now` (header included) durably to the temporary compaction
/// file. On failure the half-written copy is removed.
pub(crate) fn write_snapshot(
    data_dir: &Path,
    source: &dyn SnapshotSource,
    now: u64,
    cancel: &AtomicBool,
) -> Result<WrittenSnapshot, StoreError> {
    let temporary = data_dir.join(COMPACTION_FILE_NAME);
    let file = File::create(&temporary).map_err(io_error("create", &temporary))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let written = out
        .write_all(JOURNAL_HEADER)
        .map_err(io_error("write", &temporary))
        .and_then(|()| source.write_snapshot(now, &mut out, cancel))
        .and_then(|records| {
            let file = out
                .into_inner()
                .map_err(|error| io_error("write", &temporary)(error.into_error()))?;
            file.sync_all().map_err(io_error("sync", &temporary))?;
            let len = file
                .metadata()
                .map_err(io_error("measure", &temporary))?
                .len();
            Ok(WrittenSnapshot { file, records, len })
        });
    if written.is_err() {
        // A half-written copy only takes space (a full disk is the usual cause).
        let _ = fs::remove_file(&temporary);
    }
    written
}

/// Appends `tail` (changes made durable in the old journal while the snapshot was being
/// written) to the written snapshot and makes it durable.
pub(crate) fn append_tail(
    data_dir: &Path,
    snapshot: &mut WrittenSnapshot,
    tail: &[u8],
    tail_records: usize,
) -> Result<(), StoreError> {
    if tail.is_empty() {
        return Ok(());
    }
    let temporary = data_dir.join(COMPACTION_FILE_NAME);
    snapshot
        .file
        .write_all(tail)
        .and_then(|()| snapshot.file.sync_data())
        .map_err(io_error("write", &temporary))?;
    snapshot.len += tail.len() as u64;
    snapshot.records += tail_records;
    Ok(())
}

/// Removes an abandoned snapshot.
pub(crate) fn discard_snapshot(data_dir: &Path) {
    // Start-up removes a leftover too; a failure here only takes space.
    let _ = fs::remove_file(data_dir.join(COMPACTION_FILE_NAME));
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
    fn snapshot(&self, id: &SessionId, now: u64) -> Vec<Record> {
        match self {
            Slot::Live(session) if session.is_live(now) => {
                let created = Record::Created(session.created_record(id));
                std::iter::once(created)
                    .chain(session.clients.iter().map(|(client, joined_at)| {
                        Record::Joined(JoinedRecord {
                            id: id.clone(),
                            client: client.clone(),
                            joined_at,
                        })
                    }))
                    .chain(session.kicks.iter().map(|kick| {
                        Record::Kicked(KickedRecord {
                            id: id.clone(),
                            client: kick.client.clone(),
                            generation: kick.generation,
                            kicked_at: kick.kicked_at,
                        })
                    }))
                    .chain(session.conductor_started.then(|| {
                        Record::Conductor(ConductorRecord {
                            id: id.clone(),
                            started: true,
                            at: now,
                        })
                    }))
                    .collect()
            }
            Slot::Live(session) => vec![Record::Closed(session.retire(now).record(id))],
            Slot::Retired(retired) => vec![Record::Closed(retired.record(id))],
        }
    }
}
