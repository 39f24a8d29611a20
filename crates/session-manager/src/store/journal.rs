//! The append-only journal file and its single writer, which makes every change durable
//! with group commit.
//!
//! Callers hand over an encoded frame and get a [`PendingWrite`] to await. One dedicated
//! thread owns the file: it takes everything queued, writes it in one go, calls
//! `sync_data` once and then acknowledges every waiter. While it waits for the disk, new
//! frames pile up and ride the next fsync, so N concurrent changes cost far fewer than N
//! fsyncs, while each caller still hears back only once its own record is on disk.
//!
//! Submitting never blocks, so the store can submit while it holds a session's lock; that
//! is what keeps the order in the file equal to the order of changes in memory.
//!
//! The writer also keeps the file from growing forever: when the records in the file
//! exceed the live state by far, it compacts between two batches (see `compaction`).
//! Nothing is appended meanwhile, so no record can fall between snapshot and rename.
//!
//! A failed write or fsync leaves the file in an unknown state, and retrying fsync after a
//! failure may report success for data that never reached the disk. So the first failure
//! is final: the writer refuses every later change and the store stops accepting changes
//! (fail-stop) until the process restarts and recovery reads what really is on disk.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::{mpsc, oneshot};

use super::{compaction, unix_now, Slot, StoreError};
use crate::domain::SessionId;

/// Name of the journal file inside the data directory.
pub const JOURNAL_FILE_NAME: &str = "sessions.journal";

/// Upper bound on frames per fsync, so one batch cannot hold its first waiter for long.
const MAX_BATCH_FRAMES: usize = 4096;

/// Counters of the writer; `fsyncs / records` is what group commit saves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JournalStats {
    pub records: u64,
    pub fsyncs: u64,
    pub compactions: u64,
}

#[derive(Default)]
struct Counters {
    records: AtomicU64,
    fsyncs: AtomicU64,
    compactions: AtomicU64,
}

enum Command {
    /// An empty frame is a barrier: it is acknowledged once everything before it is durable.
    Append {
        frame: Vec<u8>,
        ack: oneshot::Sender<Result<(), String>>,
    },
    Shutdown {
        done: oneshot::Sender<()>,
    },
}

/// Handle to the writer thread; cheap to share behind the store's `Arc`.
pub(crate) struct Journal {
    commands: mpsc::UnboundedSender<Command>,
    counters: Arc<Counters>,
}

/// A submitted frame; await [`PendingWrite::durable`] before telling anyone about it.
#[must_use = "a change is durable only once `durable()` has returned Ok"]
pub(crate) struct PendingWrite(Result<oneshot::Receiver<Result<(), String>>, StoreError>);

impl PendingWrite {
    pub(crate) async fn durable(self) -> Result<(), StoreError> {
        match self.0?.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(StoreError::JournalFailed(message)),
            Err(_) => Err(StoreError::JournalClosed),
        }
    }
}

impl Journal {
    /// Starts the writer thread on `file`, the journal in `data_dir` opened for appending,
    /// which holds `records_in_file` records; `sessions` is what a compaction snapshots.
    pub(crate) fn start(
        file: File,
        data_dir: PathBuf,
        sessions: Arc<DashMap<SessionId, Slot>>,
        records_in_file: usize,
    ) -> Result<Self, StoreError> {
        let (commands, receiver) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        let writer = Writer {
            file,
            data_dir,
            counters: Arc::clone(&counters),
            failure: None,
            sessions,
            records_in_file,
            next_compaction_check: compaction::next_check_after(records_in_file),
        };
        std::thread::Builder::new()
            .name("session-journal".to_owned())
            .spawn(move || writer.run(receiver))
            .map_err(|source| StoreError::Io {
                action: "start the journal writer thread",
                path: PathBuf::new(),
                source,
            })?;
        Ok(Self { commands, counters })
    }

    /// Queues a frame without waiting; safe to call while holding a lock.
    pub(crate) fn submit(&self, frame: Vec<u8>) -> PendingWrite {
        let (ack, receiver) = oneshot::channel();
        let sent = self
            .commands
            .send(Command::Append { frame, ack })
            .map(|()| receiver)
            .map_err(|_| StoreError::JournalClosed);
        PendingWrite(sent)
    }

    /// Resolves once every change submitted so far is durable.
    pub(crate) fn barrier(&self) -> PendingWrite {
        self.submit(Vec::new())
    }

    /// Flushes what is queued and stops the writer; later submissions fail with
    /// [`StoreError::JournalClosed`].
    pub(crate) async fn shutdown(&self) {
        let (done, stopped) = oneshot::channel();
        if self.commands.send(Command::Shutdown { done }).is_ok() {
            // An error means the writer is gone already, which is what we want.
            let _ = stopped.await;
        }
    }

    pub(crate) fn stats(&self) -> JournalStats {
        JournalStats {
            records: self.counters.records.load(Ordering::Relaxed),
            fsyncs: self.counters.fsyncs.load(Ordering::Relaxed),
            compactions: self.counters.compactions.load(Ordering::Relaxed),
        }
    }
}

struct Writer {
    file: File,
    data_dir: PathBuf,
    counters: Arc<Counters>,
    failure: Option<String>,
    sessions: Arc<DashMap<SessionId, Slot>>,
    records_in_file: usize,
    /// Counting the live state costs a pass over all sessions, so it is only done when
    /// the file has grown past this many records (see `compaction::next_check_after`).
    next_compaction_check: usize,
}

impl Writer {
    fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut batch = Vec::with_capacity(64 * 1024);
        let mut waiters = Vec::new();
        while let Some(first) = commands.blocking_recv() {
            let mut shutdown = None;
            let mut frames = 0;
            let mut next = Some(first);
            while let Some(command) = next.take() {
                match command {
                    Command::Append { frame, ack } => {
                        if !frame.is_empty() {
                            batch.extend_from_slice(&frame);
                            frames += 1;
                        }
                        waiters.push(ack);
                    }
                    Command::Shutdown { done } => {
                        shutdown = Some(done);
                        break;
                    }
                }
                if waiters.len() < MAX_BATCH_FRAMES {
                    next = commands.try_recv().ok();
                }
            }
            let outcome = self.commit(&batch);
            batch.clear();
            if outcome.is_ok() {
                self.counters.records.fetch_add(frames, Ordering::Relaxed);
                self.records_in_file += frames as usize;
            }
            for waiter in waiters.drain(..) {
                // A waiter that gave up (dropped its future) needs no answer.
                let _ = waiter.send(outcome.clone());
            }
            if let Some(done) = shutdown {
                let _ = done.send(());
                return;
            }
            if outcome.is_ok() && self.records_in_file >= self.next_compaction_check {
                self.compact_if_worth_it();
            }
        }
    }

    fn compact_if_worth_it(&mut self) {
        let now = unix_now();
        let live = compaction::snapshot_len(&self.sessions, now);
        if !compaction::worth_compacting(self.records_in_file, live) {
            self.next_compaction_check = compaction::next_check_after(self.records_in_file);
            return;
        }
        let written =
            compaction::encode_snapshot(&self.sessions, now).and_then(|(bytes, records)| {
                compaction::write_snapshot(&self.data_dir, &bytes).map(|file| (file, records))
            });
        let (file, records) = match written.and_then(|(file, records)| {
            compaction::install_snapshot(&self.data_dir)?;
            Ok((file, records))
        }) {
            Ok(installed) => installed,
            Err(error) => {
                // Nothing was renamed: the old journal is complete and stays in use.
                tracing::warn!(%error, "session journal compaction failed; keeping the uncompacted journal");
                self.next_compaction_check = compaction::next_check_after(self.records_in_file);
                return;
            }
        };
        tracing::info!(
            records_before = self.records_in_file,
            records_after = records,
            "compacted the session journal"
        );
        self.file = file;
        self.records_in_file = records;
        self.next_compaction_check = compaction::next_check_after(records);
        self.counters.compactions.fetch_add(1, Ordering::Relaxed);
        if let Err(error) = compaction::sync_dir(&self.data_dir) {
            // Which of the two files a crash would leave is now unknown.
            let message = format!("compacting the session journal: {error}");
            tracing::error!(error = %message, "refusing further changes until restart");
            self.failure = Some(message);
        }
    }

    fn commit(&mut self, batch: &[u8]) -> Result<(), String> {
        if let Some(failure) = &self.failure {
            return Err(failure.clone());
        }
        if batch.is_empty() {
            // Only barriers: everything before them was synced by an earlier batch.
            return Ok(());
        }
        let result = self.file.write_all(batch).and_then(|()| {
            self.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
            self.file.sync_data()
        });
        result.map_err(|error| {
            let path = self.data_dir.join(JOURNAL_FILE_NAME);
            let message = format!("writing {}: {error}", path.display());
            tracing::error!(error = %message, "session journal write failed; refusing further changes until restart");
            self.failure = Some(message.clone());
            message
        })
    }
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;
    use std::path::Path;

    use super::*;

    fn start(dir: &Path) -> Journal {
        let path = dir.join(JOURNAL_FILE_NAME);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        Journal::start(file, dir.to_owned(), Arc::default(), 0).unwrap()
    }

    fn frame(n: usize) -> Vec<u8> {
        format!("frame {n}\n").into_bytes()
    }

    #[tokio::test]
    async fn acknowledged_frames_are_in_the_file_in_submission_order() {
        let dir = tempfile::tempdir().unwrap();
        let journal = start(dir.path());
        let pending: Vec<_> = (0..100).map(|n| journal.submit(frame(n))).collect();
        for write in pending {
            write.durable().await.unwrap();
        }
        let expected: Vec<u8> = (0..100).flat_map(frame).collect();
        assert_eq!(
            std::fs::read(dir.path().join(JOURNAL_FILE_NAME)).unwrap(),
            expected
        );
        let stats = journal.stats();
        assert_eq!(stats.records, 100);
        // Submitted back to back, the frames ride a handful of fsyncs, not one each.
        assert!(stats.fsyncs < 25, "{stats:?}");
    }

    #[tokio::test]
    async fn a_barrier_waits_for_earlier_frames_and_costs_no_fsync_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let journal = start(dir.path());
        journal.submit(frame(1)).durable().await.unwrap();
        let before = journal.stats();
        journal.barrier().durable().await.unwrap();
        assert_eq!(journal.stats(), before);
    }

    #[tokio::test]
    async fn shutdown_flushes_then_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let journal = start(dir.path());
        let queued = journal.submit(frame(1));
        journal.shutdown().await;
        queued.durable().await.unwrap();
        assert!(matches!(
            journal.submit(frame(2)).durable().await,
            Err(StoreError::JournalClosed)
        ));
        assert_eq!(
            std::fs::read(dir.path().join(JOURNAL_FILE_NAME)).unwrap(),
            frame(1)
        );
    }

    #[tokio::test]
    async fn the_first_write_failure_is_final() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(JOURNAL_FILE_NAME);
        std::fs::write(&path, b"").unwrap();
        // A read-only handle makes every write fail, as a broken disk would.
        let read_only = std::fs::File::open(&path).unwrap();
        let journal = Journal::start(read_only, dir.path().to_owned(), Arc::default(), 0).unwrap();
        assert!(matches!(
            journal.submit(frame(1)).durable().await,
            Err(StoreError::JournalFailed(_))
        ));
        assert!(matches!(
            journal.submit(frame(2)).durable().await,
            Err(StoreError::JournalFailed(_))
        ));
        assert!(matches!(
            journal.barrier().durable().await,
            Err(StoreError::JournalFailed(_))
        ));
        assert_eq!(journal.stats().fsyncs, 0);
    }
}
