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

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, ErrorKind, Write};
use std::path::Path;
use std::time::Instant;

use dashmap::DashMap;

use super::journal::JOURNAL_FILE_NAME;
use super::record::{decode_frame, ClosedRecord, CreatedRecord, JoinedRecord, Record};
use super::{ClientInfo, LiveSession, RecoveryReport, Slot, StoreError};
use crate::domain::SessionId;

/// Compaction writes here first and renames over the journal once the copy is durable.
const COMPACTION_FILE_NAME: &str = "sessions.journal.compact";

/// History may be this many times the live state before a start-up compacts it...
const COMPACTION_RATIO: usize = 2;
/// ...and must exceed it by this many records, so small journals are left alone.
const COMPACTION_MIN_SURPLUS: usize = 1024;

pub(crate) struct Recovered {
    pub(crate) sessions: DashMap<SessionId, Slot>,
    pub(crate) ordered: BTreeSet<SessionId>,
    pub(crate) journal_file: File,
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

    let snapshot_records: usize = sessions.values().map(Slot::snapshot_records).sum();
    if records > snapshot_records * COMPACTION_RATIO + COMPACTION_MIN_SURPLUS {
        compact(data_dir, &journal_path, &compaction_path, &sessions)?;
        tracing::info!(
            records_before = records,
            records_after = snapshot_records,
            "compacted the session journal"
        );
    }

    let journal_file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&journal_path)
        .map_err(io_error("open", &journal_path))?;
    if !journal_existed {
        sync_dir(data_dir)?;
    }

    let ordered: BTreeSet<SessionId> = sessions
        .iter()
        .filter(|(_, slot)| matches!(slot, Slot::Live(_)))
        .map(|(id, _)| id.clone())
        .collect();
    let report = RecoveryReport {
        sessions: ordered.len(),
        records,
        discarded_tail_bytes,
        elapsed: started.elapsed(),
    };
    Ok(Recovered {
        sessions: sessions.into_iter().collect(),
        ordered,
        journal_file,
        report,
    })
}

fn apply(sessions: &mut HashMap<SessionId, Slot>, record: Record) {
    match record {
        Record::Created(created) => {
            let id = created.id.clone();
            if sessions.contains_key(&id) {
                tracing::warn!(session_id = %id, "journal creates a session id twice; the later one wins");
            }
            sessions.insert(id, Slot::Live(Box::new(LiveSession::from_record(created))));
        }
        Record::Joined(JoinedRecord {
            id,
            client,
            joined_at,
        }) => {
            if let Some(Slot::Live(session)) = sessions.get_mut(&id) {
                if !session.clients.iter().any(|known| known.name == client) {
                    session.clients.push(ClientInfo {
                        name: client,
                        joined_at,
                    });
                }
            }
        }
        Record::Closed(ClosedRecord { id }) => {
            sessions.insert(id, Slot::Retired);
        }
    }
}

/// Writes the live state as a fresh journal and atomically puts it in place.
fn compact(
    data_dir: &Path,
    journal_path: &Path,
    compaction_path: &Path,
    sessions: &HashMap<SessionId, Slot>,
) -> Result<(), StoreError> {
    let file = File::create(compaction_path).map_err(io_error("create", compaction_path))?;
    let mut writer = BufWriter::with_capacity(1 << 20, file);
    let mut frame = Vec::with_capacity(512);
    for (id, slot) in sessions {
        for record in slot.snapshot(id) {
            frame.clear();
            record
                .encode_into(&mut frame)
                .map_err(|error| StoreError::Encode(error.to_string()))?;
            writer
                .write_all(&frame)
                .map_err(io_error("write", compaction_path))?;
        }
    }
    let file = writer
        .into_inner()
        .map_err(|error| io_error("write", compaction_path)(error.into_error()))?;
    file.sync_all().map_err(io_error("sync", compaction_path))?;
    drop(file);
    fs::rename(compaction_path, journal_path).map_err(io_error("rename", compaction_path))?;
    sync_dir(data_dir)
}

fn truncate(path: &Path, len: u64) -> Result<(), StoreError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_error("open", path))?;
    file.set_len(len).map_err(io_error("truncate", path))?;
    file.sync_all().map_err(io_error("sync", path))
}

/// Makes a creation or rename inside `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(io_error("sync the directory", dir))
}

fn io_error<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

impl Slot {
    fn snapshot_records(&self) -> usize {
        match self {
            Slot::Live(session) => 1 + session.clients.len(),
            Slot::Retired => 1,
        }
    }

    fn snapshot(&self, id: &SessionId) -> Vec<Record> {
        match self {
            Slot::Live(session) => {
                let created = Record::Created(CreatedRecord {
                    id: id.clone(),
                    session_type: session.session_type.clone(),
                    created_at: session.created_at,
                    expires_at: session.expires_at,
                    max_clients: session.max_clients,
                    pin_hash: session.pin_hash.to_string(),
                });
                std::iter::once(created)
                    .chain(session.clients.iter().map(|client| {
                        Record::Joined(JoinedRecord {
                            id: id.clone(),
                            client: client.name.clone(),
                            joined_at: client.joined_at,
                        })
                    }))
                    .collect()
            }
            Slot::Retired => vec![Record::Closed(ClosedRecord { id: id.clone() })],
        }
    }
}
