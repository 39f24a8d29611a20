//! Memory stays bounded where argon2 runs: session creates after a burst of joins, and
//! each session's first join after a restart (which verifies its PIN with argon2), against
//! the real release binary (`ISM_TEST_RELEASE_DIR`, which the test insists on).
//!
//! argon2 needs 19 MiB per run. Run on an ever-growing set of threads, each run's memory
//! stayed with the thread that ran it and was never returned: after a join burst at 64
//! connections every session create added about 17 MB of resident memory.

use std::sync::Arc;

use serde_json::json;
use test_support::service::{Launch, Service};
use test_support::session_api::{create_session, join};

/// The bound: far above what the live data needs (a few hundred KiB for these sessions),
/// far below one argon2 work area per request.
const RSS_LIMIT_KIB: u64 = 64 * 1024;
const SESSIONS: usize = 1000;
const CONNECTIONS: usize = 64;
/// Joins of the burst per session, within the default join quota (600 a minute).
const BURST_JOINS_PER_SESSION: usize = 300;
const BURST_SESSIONS: usize = 10;

/// Runs `job(i)` for every `i < count`, `CONNECTIONS` at a time.
async fn concurrently<F, Fut>(count: usize, job: F)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let job = Arc::new(job);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let job = Arc::clone(&job);
            let next = Arc::clone(&next);
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    job(i).await;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("worker");
    }
}

fn assert_rss_bounded(service: &Service, after: &str) {
    let rss = service.rss_kib();
    let threads = service.proc_status("Threads");
    assert!(
        rss < RSS_LIMIT_KIB,
        "{after}: resident memory {rss} KiB (threads: {threads}), limit {RSS_LIMIT_KIB} KiB"
    );
    eprintln!("{after}: resident memory {rss} KiB, {threads} threads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argon2_memory_is_bounded_after_join_bursts_and_restarts() {
    // The bound is for the binary operators run: a debug build holds 10–20 MB more.
    assert!(
        std::env::var_os("ISM_TEST_RELEASE_DIR").is_some_and(|dir| !dir.is_empty()),
        "this test measures the release binary: run `cargo build --release` and set \
         ISM_TEST_RELEASE_DIR=<repository>/target/release (scripts/test does both)"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let service = Launch::new().data_dir(&data).start();
    service.wait_until_answering().await;
    let http = reqwest::Client::new();

    // A burst of new-client joins at 64 connections.
    let mut burst = Vec::new();
    for _ in 0..BURST_SESSIONS {
        burst.push(create_session(&http, &service.admin, &json!({})).await);
    }
    let burst = Arc::new(burst);
    let (public, client) = (service.public.clone(), http.clone());
    concurrently(BURST_SESSIONS * BURST_JOINS_PER_SESSION, move |i| {
        let (burst, public, client) = (Arc::clone(&burst), public.clone(), client.clone());
        async move {
            let session = &burst[i % BURST_SESSIONS];
            let response = join(
                &client,
                &public,
                &session.id,
                &session.pin,
                &format!("d{i}"),
            )
            .await;
            assert!(response.status().is_success(), "{}", response.status());
        }
    })
    .await;

    // Then session creates, each one argon2 hash.
    let sessions = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (admin, client, created) = (service.admin.clone(), http.clone(), Arc::clone(&sessions));
    concurrently(SESSIONS, move |_| {
        let (admin, client, created) = (admin.clone(), client.clone(), Arc::clone(&created));
        async move {
            let session = create_session(&client, &admin, &json!({})).await;
            created.lock().expect("lock").push(session);
        }
    })
    .await;
    assert_rss_bounded(
        &service,
        "after a 64-connection join burst and 1000 session creates",
    );

    // After a restart each session's first join verifies its PIN with argon2.
    assert!(service.terminate().success());
    let service = Launch::new().data_dir(&data).start();
    service.wait_until_answering().await;
    let sessions = Arc::new(std::mem::take(&mut *sessions.lock().expect("lock")));
    let (public, client, all) = (service.public.clone(), http.clone(), Arc::clone(&sessions));
    concurrently(SESSIONS, move |i| {
        let (public, client, all) = (public.clone(), client.clone(), Arc::clone(&all));
        async move {
            let session = &all[i];
            let response = join(&client, &public, &session.id, &session.pin, "first").await;
            assert!(response.status().is_success(), "{}", response.status());
        }
    })
    .await;
    assert_rss_bounded(&service, "after each session's first join after a restart");
    assert!(service.terminate().success());
}
