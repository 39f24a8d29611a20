//! A fixed set of named threads for CPU-bound work (RSA signatures, argon2), so that such
//! work never takes more threads than there are cores.
//!
//! tokio's blocking pool starts a new thread whenever every existing one is busy (up to
//! 512): under 64 concurrent joins it ran dozens of signing threads that competed with the
//! request handlers and the admin listener for the same cores, and every such thread kept
//! its own malloc arena, so memory freed after an argon2 run (19 MiB) was never given back.
//! A pool of as many threads as the process may use cores ([`cores_available`]) does the
//! same work with one thread per core: jobs wait in a queue (in arrival order) instead of
//! in the scheduler, and a worker drains the queue without a context switch per job.
//!
//! [`CpuPool::run`] is async: the caller's task waits for the answer without blocking its
//! executor thread.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

/// A job for a worker.
type Job = Box<dyn FnOnce() + Send + 'static>;

/// The pool is gone (it cannot be while its owner holds it) or the job panicked.
#[derive(Debug, thiserror::Error)]
#[error("the {pool} worker did not finish the job (it panicked or the pool stopped)")]
pub struct PoolError {
    pool: &'static str,
}

/// A fixed set of worker threads taking jobs from one queue.
pub struct CpuPool {
    name: &'static str,
    jobs: mpsc::Sender<Job>,
}

/// How many cores this process may run on (its CPU affinity), at least 1.
pub fn cores_available() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

impl CpuPool {
    /// Starts `threads` (at least 1) workers named `name`. They stop when the pool is
    /// dropped and the queue is empty.
    pub fn new(name: &'static str, threads: usize) -> std::io::Result<Self> {
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..threads.max(1) {
            let receiver = Arc::clone(&receiver);
            std::thread::Builder::new()
                .name(name.to_owned())
                .spawn(move || work(&receiver))?;
        }
        Ok(Self { name, jobs: sender })
    }

    /// Runs `job` on a worker and returns its result.
    pub async fn run<T, F>(&self, job: F) -> Result<T, PoolError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            // The caller may have gone away (request cancelled): nothing to tell then.
            let _ = answer.send(job());
        });
        if self.jobs.send(job).is_err() {
            return Err(PoolError { pool: self.name });
        }
        answered.await.map_err(|_| PoolError { pool: self.name })
    }
}

/// A worker's loop: one job at a time until the pool is dropped. A panicking job loses
/// its answer (its caller gets [`PoolError`]), not the worker.
fn work(receiver: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        let job = {
            let Ok(receiver) = receiver.lock() else {
                return;
            };
            match receiver.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[tokio::test]
    async fn jobs_run_on_the_pools_own_threads_only() {
        let pool = CpuPool::new("test-pool", 2).unwrap();
        let mut names = HashSet::new();
        let mut ids = HashSet::new();
        for _ in 0..50 {
            let (name, id) = pool
                .run(|| {
                    let current = std::thread::current();
                    (current.name().map(str::to_owned), current.id())
                })
                .await
                .unwrap();
            names.insert(name);
            ids.insert(id);
        }
        assert_eq!(names, HashSet::from([Some("test-pool".to_owned())]));
        assert!(ids.len() <= 2, "{ids:?}");
    }

    #[tokio::test]
    async fn a_panicking_job_is_an_error_and_the_worker_survives() {
        let pool = CpuPool::new("test-pool", 1).unwrap();
        let result = pool.run(|| -> u32 { panic!("job failed") }).await;
        assert!(result.is_err());
        assert_eq!(pool.run(|| 7).await.unwrap(), 7);
    }
}
