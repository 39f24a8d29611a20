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
//! exceed the live state by far (a running tally, never a pass over all sessions), it has
//! a thread of its own write a snapshot while it goes on appending and acknowledging
//! changes; it keeps a copy of each batch committed meanwhile, and between two batches
//! appends that copy to the finished snapshot and renames it over the journal (see
//! `compaction`). So no acknowledged record can fall between snapshot and rename, and
//! joins are never held up by a compaction.
//!
//! A failed write or fsync (a full disk, above all) fails its whole batch: no waiter of it
//! hears "done", and the store takes those changes back out of memory. The file may then
//! hold part of the batch, and a retried fsync may report success for pages that never
//! reached the disk, so the writer never builds on that state: it cuts the file back to
//! the length it had after the last successful fsync, and only once that worked and a
//! later write and fsync succeed does it call the journal healthy again. While it is
//! faulted ([`Journal::fault`], shown on `/healthz`), it probes every
//! [`PROBE_INTERVAL`] whether the disk takes writes again, and every change submitted is
//! tried for real, so the store recovers by itself once space is freed.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot};

use super::compaction::{self, SnapshotSource, WrittenSnapshot};
use super::StoreError;
use crate::clock::Clock;
use crate::metrics::handle::LazyHistogram;
use crate::metrics::{JOURNAL_BATCH_RECORDS, JOURNAL_FSYNC_DURATION_SECONDS};

/// Name of the journal file inside the data directory.
pub const JOURNAL_FILE_NAME: &str = "sessions.journal";

/// Upper bound on frames per fsync, so one batch cannot hold its first waiter for long.
const MAX_BATCH_FRAMES: usize = 4096;
/// `ism_journal_fsync_duration_seconds` and `ism_journal_batch_records`.
static FSYNC_DURATION: LazyHistogram = LazyHistogram::new(JOURNAL_FSYNC_DURATION_SECONDS);
static BATCH_RECORDS: LazyHistogram = LazyHistogram::new(JOURNAL_BATCH_RECORDS);
/// While writes fail, how often the writer checks whether the disk takes them again.
pub(crate) const PROBE_INTERVAL: Duration = Duration::from_millis(250);
/// The file the probe writes (and removes again) in the data directory.
const PROBE_FILE_NAME: &str = "sessions.journal.probe";
/// Bytes the probe writes: about one batch of records.
const PROBE_BYTES: usize = 16 * 1024;

/// Counters of the writer; `fsyncs / records` is what group commit saves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JournalStats {
    pub records: u64,
    pub fsyncs: u64,
    pub compactions: u64,
    /// Whether a compaction is under way right now.
    pub compacting: bool,
}

#[derive(Default)]
struct Counters {
    records: AtomicU64,
    fsyncs: AtomicU64,
    compactions: AtomicU64,
    compacting: AtomicBool,
    /// Why writes fail right now; `None` while the journal is healthy.
    fault: Mutex<Option<String>>,
}

impl Counters {
    fn set_fault(&self, fault: Option<String>) {
        *self.fault.lock().unwrap_or_else(PoisonError::into_inner) = fault;
    }
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
    /// The compaction thread has finished writing its snapshot (or failed to).
    SnapshotWritten(Result<WrittenSnapshot, StoreError>),
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
    /// which holds `records_in_file` records in `file_len` bytes; `snapshots` answers a
    /// compaction's request for the live state, as of `clock`'s time.
    pub(crate) fn start(
        file: File,
        file_len: u64,
        data_dir: PathBuf,
        snapshots: Arc<dyn SnapshotSource>,
        records_in_file: usize,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StoreError> {
        let (commands, receiver) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        let writer = Writer {
            commands: commands.downgrade(),
            compaction: None,
            file,
            data_dir,
            counters: Arc::clone(&counters),
            failure: None,
            durable_len: file_len,
            dir_unsynced: false,
            snapshots,
            clock,
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

    /// Why changes are refused right now, if they are.
    pub(crate) fn fault(&self) -> Option<String> {
        self.counters
            .fault
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn stats(&self) -> JournalStats {
        JournalStats {
            records: self.counters.records.load(Ordering::Relaxed),
            fsyncs: self.counters.fsyncs.load(Ordering::Relaxed),
            compactions: self.counters.compactions.load(Ordering::Relaxed),
            compacting: self.counters.compacting.load(Ordering::Relaxed),
        }
    }
}

/// A compaction under way: its thread writes the snapshot, the writer keeps the tail.
struct RunningCompaction {
    /// Every batch committed to the old journal since the snapshot was begun.
    tail: Vec<u8>,
    tail_records: usize,
    records_before: usize,
    started: Instant,
    cancel: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

struct Writer {
    /// For the compaction thread's report; weak, so dropping every [`Journal`] still
    /// stops the writer.
    commands: mpsc::WeakUnboundedSender<Command>,
    compaction: Option<RunningCompaction>,
    file: File,
    data_dir: PathBuf,
    counters: Arc<Counters>,
    /// Why the last write failed; cleared by the next write that succeeds.
    failure: Option<String>,
    /// Length of the file after the last successful fsync: everything up to here is
    /// durable, anything after it is the remains of a failed batch.
    durable_len: u64,
    /// A compaction's rename is not known to be durable yet.
    dir_unsynced: bool,
    /// The backend's state, snapshotted when compacting.
    snapshots: Arc<dyn SnapshotSource>,
    /// Decides which sessions have expired when a compaction drops them.
    clock: Arc<dyn Clock>,
    records_in_file: usize,
    /// The file is looked at for compaction once it has grown past this many records
    /// (see `compaction::next_check_after`).
    next_compaction_check: usize,
}

impl Writer {
    fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut batch = Vec::with_capacity(64 * 1024);
        let mut waiters = Vec::new();
        loop {
            let first = if self.failure.is_some() {
                match commands.try_recv() {
                    Ok(command) => command,
                    Err(TryRecvError::Empty) => {
                        std::thread::sleep(PROBE_INTERVAL);
                        self.probe();
                        continue;
                    }
                    Err(TryRecvError::Disconnected) => return,
                }
            } else {
                match commands.blocking_recv() {
                    Some(command) => command,
                    None => return,
                }
            };
            let mut shutdown = None;
            let mut snapshot = None;
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
                    Command::SnapshotWritten(written) => snapshot = Some(written),
                }
                if waiters.len() < MAX_BATCH_FRAMES {
                    next = commands.try_recv().ok();
                }
            }
            let outcome = self.commit(&batch);
            if outcome.is_ok() {
                if frames > 0 {
                    // Far below 2^52: exact.
                    #[allow(clippy::cast_precision_loss)]
                    BATCH_RECORDS.record(frames as f64);
                }
                self.counters.records.fetch_add(frames, Ordering::Relaxed);
                self.records_in_file += frames as usize;
                if let Some(running) = &mut self.compaction {
                    running.tail.extend_from_slice(&batch);
                    running.tail_records += frames as usize;
                }
            }
            batch.clear();
            for waiter in waiters.drain(..) {
                // A waiter that gave up (dropped its future) needs no answer.
                let _ = waiter.send(outcome.clone());
            }
            if let Some(done) = shutdown {
                self.cancel_compaction();
                let _ = done.send(());
                return;
            }
            if let Some(written) = snapshot {
                self.finish_compaction(written);
            }
            if outcome.is_ok()
                && self.compaction.is_none()
                && self.records_in_file >= self.next_compaction_check
            {
                self.compact_if_worth_it();
            }
        }
    }

    /// Begins a compaction when the file holds far more records than the live state.
    fn compact_if_worth_it(&mut self) {
        let estimate = self.snapshots.snapshot_records_estimate();
        self.next_compaction_check = compaction::next_check_after(self.records_in_file);
        if !compaction::worth_compacting(self.records_in_file, estimate) {
            return;
        }
        let Some(report) = self.commands.upgrade() else {
            return;
        };
        let cancel = Arc::new(AtomicBool::new(false));
        let (snapshots, data_dir, now) = (
            Arc::clone(&self.snapshots),
            self.data_dir.clone(),
            self.clock.unix_now(),
        );
        let thread_cancel = Arc::clone(&cancel);
        let spawned = std::thread::Builder::new()
            .name("session-compaction".to_owned())
            .spawn(move || {
                let written =
                    compaction::write_snapshot(&data_dir, &*snapshots, now, &thread_cancel);
                // Nobody listens once the writer stopped; the file is removed at start-up.
                let _ = report.send(Command::SnapshotWritten(written));
            });
        match spawned {
            Ok(thread) => {
                self.counters.compacting.store(true, Ordering::Relaxed);
                self.compaction = Some(RunningCompaction {
                    tail: Vec::new(),
                    tail_records: 0,
                    records_before: self.records_in_file,
                    started: Instant::now(),
                    cancel,
                    thread,
                });
            }
            Err(error) => {
                tracing::warn!(%error, "cannot start a session journal compaction; keeping the uncompacted journal");
            }
        }
    }

    /// Installs the written snapshot, with the tail appended, as the journal.
    fn finish_compaction(&mut self, written: Result<WrittenSnapshot, StoreError>) {
        let Some(running) = self.compaction.take() else {
            return;
        };
        self.counters.compacting.store(false, Ordering::Relaxed);
        // The thread has sent its last word; joining it only reaps it.
        let _ = running.thread.join();
        let installed = written.and_then(|mut snapshot| {
            compaction::append_tail(
                &self.data_dir,
                &mut snapshot,
                &running.tail,
                running.tail_records,
            )?;
            compaction::install_snapshot(&self.data_dir)?;
            Ok(snapshot)
        });
        let snapshot = match installed {
            Ok(snapshot) => snapshot,
            Err(error) => {
                // Nothing was renamed (or the rename failed): the old journal is complete
                // and stays in use.
                compaction::discard_snapshot(&self.data_dir);
                tracing::warn!(%error, "session journal compaction failed; keeping the uncompacted journal");
                self.next_compaction_check = compaction::next_check_after(self.records_in_file);
                return;
            }
        };
        tracing::info!(
            records_before = running.records_before,
            records_after = snapshot.records,
            appended_meanwhile = running.tail_records,
            elapsed_ms = running.started.elapsed().as_millis() as u64,
            "compacted the session journal"
        );
        self.file = snapshot.file;
        self.durable_len = snapshot.len;
        self.records_in_file = snapshot.records;
        self.next_compaction_check = compaction::next_check_after(snapshot.records);
        self.counters.compactions.fetch_add(1, Ordering::Relaxed);
        if let Err(error) = compaction::sync_dir(&self.data_dir) {
            // Which of the two files a crash would leave is unknown until this works.
            self.dir_unsynced = true;
            self.fail(format!("compacting the session journal: {error}"));
        }
    }

    /// Stops a compaction under way (at shutdown) and removes its file.
    fn cancel_compaction(&mut self) {
        if let Some(running) = self.compaction.take() {
            running.cancel.store(true, Ordering::Relaxed);
            let _ = running.thread.join();
            compaction::discard_snapshot(&self.data_dir);
            self.counters.compacting.store(false, Ordering::Relaxed);
        }
    }

    /// Records a write failure: refused changes and an unhealthy store until it heals.
    fn fail(&mut self, message: String) {
        if self.failure.is_none() {
            tracing::error!(error = %message, "session journal write failed; refusing changes until the disk takes writes again");
        }
        self.counters.set_fault(Some(message.clone()));
        self.failure = Some(message);
    }

    /// Cuts the remains of failed batches off and finishes a compaction's rename.
    fn heal(&mut self) -> std::io::Result<()> {
        self.file.set_len(self.durable_len)?;
        self.file.sync_all()?;
        if self.dir_unsynced {
            File::open(&self.data_dir).and_then(|dir| dir.sync_all())?;
            self.dir_unsynced = false;
        }
        Ok(())
    }

    /// While faulted: does the disk take a write and an fsync again?
    fn probe(&mut self) {
        let path = self.data_dir.join(PROBE_FILE_NAME);
        let written = self.heal().and_then(|()| {
            let mut file = File::create(&path)?;
            file.write_all(&[0; PROBE_BYTES])?;
            file.sync_all()
        });
        // The probe file is only ever a probe; a leftover is harmless and overwritten.
        let _ = std::fs::remove_file(&path);
        if written.is_ok() {
            self.recovered();
        }
    }

    fn recovered(&mut self) {
        if self.failure.take().is_some() {
            tracing::info!("session journal writes work again; accepting changes");
        }
        self.counters.set_fault(None);
    }

    fn commit(&mut self, batch: &[u8]) -> Result<(), String> {
        if batch.is_empty() {
            // Only barriers: everything before them was synced by an earlier batch, unless
            // that batch failed.
            return match &self.failure {
                Some(failure) => Err(failure.clone()),
                None => Ok(()),
            };
        }
        let path = self.data_dir.join(JOURNAL_FILE_NAME);
        if self.failure.is_some() {
            if let Err(error) = self.heal() {
                let message = format!("repairing {} after a failed write: {error}", path.display());
                self.fail(message.clone());
                return Err(message);
            }
        }
        let started = std::time::Instant::now();
        let result = self.file.write_all(batch).and_then(|()| {
            self.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
            self.file.sync_data()
        });
        FSYNC_DURATION.record(started.elapsed());
        match result {
            Ok(()) => {
                self.durable_len += batch.len() as u64;
                self.recovered();
                Ok(())
            }
            Err(error) => {
                let message = format!("writing {}: {error}", path.display());
                self.fail(message.clone());
                // Cut the failed batch off now if the disk lets us; else before the next.
                let _ = self.heal();
                Err(message)
            }
        }
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
        Journal::start(
            file,
            0,
            dir.to_owned(),
            Arc::new(super::super::SessionTable::new()),
            0,
            Arc::new(crate::clock::SystemClock),
        )
        .unwrap()
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
    async fn a_failed_write_is_never_acknowledged_and_the_fault_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(JOURNAL_FILE_NAME);
        std::fs::write(&path, b"").unwrap();
        // A read-only handle makes every write fail, as a broken disk would.
        let read_only = std::fs::File::open(&path).unwrap();
        let journal = Journal::start(
            read_only,
            0,
            dir.path().to_owned(),
            Arc::new(super::super::SessionTable::new()),
            0,
            Arc::new(crate::clock::SystemClock),
        )
        .unwrap();
        assert_eq!(journal.fault(), None);
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
        assert!(journal
            .fault()
            .is_some_and(|fault| fault.contains(JOURNAL_FILE_NAME)));
    }
}
