//! Compaction of the journal while the real `session-manager` binary takes joins.
//!
//! The data directory starts with a journal written straight in the on-disk format: a
//! block of long-closed sessions (the bulk a snapshot must copy, so a compaction takes a
//! while) and a few sessions crowded with clients, which the test closes so that the file
//! holds far more history than live state. Joins to a fresh session then bring the file
//! to the point where the writer compacts; workers keep joining throughout.
//!
//! - joins go on being acknowledged while the snapshot is written (before, the writer
//!   compacted in line and every join waited for it), and nothing acknowledged is lost;
//! - a SIGKILL in the middle of a compaction loses nothing acknowledged either: the
//!   restarted service replays the old journal and removes the half-written snapshot.

#[path = "support/service.rs"]
mod service;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use session_manager::domain::Pin;
use session_manager::join::pin_check::hash_pin_blocking;
use test_support::journal_file::JournalWriter;
use test_support::session_api::{close_session, create_session, join, json_answer};

/// Long-closed sessions: what makes a snapshot take a while.
const RETIRED: usize = 100_000;
/// Sessions crowded with clients, closed by the test to turn their joins into history.
const CROWDED: usize = 50;
const CLIENTS_PER_CROWDED: usize = 3_000;
const WORKERS: usize = 8;
const COMPACTION_FILE: &str = "sessions.journal.compact";

const ENV: &[(&str, &str)] = &[
    ("ISM_JOIN_QUOTA_PER_SESSION", "0"),
    ("ISM_DEFAULT_MAX_CLIENTS", "0"),
];

fn crowded_id(n: usize) -> String {
    format!("{}", 100_000_000 + n)
}

/// Writes the starting journal into `data_dir`.
fn write_history(data_dir: &Path) {
    let now = test_support::now();
    let pin_hash = hash_pin_blocking(&Pin::parse("424242").expect("pin")).expect("hash");
    let mut journal = JournalWriter::create(data_dir);
    for n in 0..RETIRED {
        let id = format!("{}", 200_000_000 + n);
        journal.closed(&id, now - 60);
    }
    for n in 0..CROWDED {
        let id = crowded_id(n);
        journal.created(&id, now - 3600, None, None, &pin_hash);
        for c in 0..CLIENTS_PER_CROWDED {
            journal.joined(&id, &format!("old-{c}"), now - 3600);
        }
    }
    journal.finish();
}

async fn store_health(http: &reqwest::Client, admin: &str) -> Value {
    let health: Value = json_answer(http.get(format!("{admin}/healthz"))).await;
    health["store"].clone()
}

/// What the workers saw.
#[derive(Default)]
struct Joins {
    acknowledged: Mutex<Vec<String>>,
    /// Joins sent while the snapshot file existed and acknowledged while it still did.
    inside_compaction: AtomicUsize,
}

/// Joins new clients to `session` until `stop` is set or the service stops answering.
async fn drive_joins(
    worker: usize,
    public: String,
    data_dir: std::path::PathBuf,
    session: (String, String),
    joins: Arc<Joins>,
    stop: Arc<AtomicBool>,
) {
    let http = reqwest::Client::new();
    let (id, pin) = session;
    let compacting = || data_dir.join(COMPACTION_FILE).exists();
    for round in 0.. {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let client = format!("new-{worker}-{round}");
        let before = compacting();
        let Ok(response) = http
            .post(format!("{public}/api/v1/sessions/{id}/join"))
            .json(&json!({ "pin": pin, "client": client }))
            .send()
            .await
        else {
            return;
        };
        if response.status() != reqwest::StatusCode::OK {
            return;
        }
        if before && compacting() {
            joins.inside_compaction.fetch_add(1, Ordering::Relaxed);
        }
        joins.acknowledged.lock().expect("lock").push(client);
    }
}

/// Starts the service on the prepared history, closes the crowded sessions, creates the
/// session the workers join, and starts them.
async fn start_compacting_load(
    data_dir: &Path,
) -> (
    service::Service,
    (String, String),
    Arc<Joins>,
    Arc<AtomicBool>,
    Vec<tokio::task::JoinHandle<()>>,
) {
    write_history(data_dir);
    let service = service::start(data_dir, ENV).await;
    let http = reqwest::Client::new();
    let health = store_health(&http, &service.admin).await;
    assert_eq!(
        health["compactions"], 0,
        "start-up compacted already: {health}"
    );
    for n in 0..CROWDED {
        let closed = close_session(&http, &service.admin, &crowded_id(n)).await;
        assert_eq!(closed.status(), reqwest::StatusCode::NO_CONTENT);
    }
    let session = create_session(&http, &service.admin, &json!({})).await;
    // The first join runs argon2; the workers' joins use the cached check.
    let first = join(&http, &service.public, &session.id, &session.pin, "first").await;
    assert_eq!(first.status(), reqwest::StatusCode::OK);
    let session = (session.id, session.pin);
    let joins = Arc::new(Joins::default());
    joins
        .acknowledged
        .lock()
        .expect("lock")
        .push("first".to_owned());
    let stop = Arc::new(AtomicBool::new(false));
    let workers = (0..WORKERS)
        .map(|worker| {
            tokio::spawn(drive_joins(
                worker,
                service.public.clone(),
                data_dir.to_owned(),
                session.clone(),
                Arc::clone(&joins),
                Arc::clone(&stop),
            ))
        })
        .collect();
    (service, session, joins, stop, workers)
}

/// Every acknowledged client is in the session after a restart on `data_dir`.
async fn assert_nothing_lost(data_dir: &Path, session_id: &str, acknowledged: &[String]) {
    let service = service::start(data_dir, ENV).await;
    assert!(
        !data_dir.join(COMPACTION_FILE).exists(),
        "start-up left the half-written snapshot"
    );
    let http = reqwest::Client::new();
    // The session view pages its clients: follow `clients_next` to the end.
    let mut clients = std::collections::HashSet::new();
    let mut after: Option<String> = None;
    loop {
        let mut url = format!(
            "{}/api/v1/sessions/{session_id}?clients_limit=1000",
            service.admin
        );
        if let Some(cursor) = &after {
            url.push_str(&format!("&clients_after={cursor}"));
        }
        let page: Value = json_answer(http.get(url)).await;
        for client in page["clients"].as_array().expect("clients") {
            clients.insert(client["name"].as_str().expect("name").to_owned());
        }
        match page["clients_next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }
    let missing: Vec<&String> = acknowledged
        .iter()
        .filter(|client| !clients.contains(client.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged joins lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    // Closed sessions stay closed, and the service takes joins again.
    let closed = join(&http, &service.public, &crowded_id(0), "424242", "ghost").await;
    assert_eq!(closed.status(), reqwest::StatusCode::UNAUTHORIZED);
    let health = store_health(&http, &service.admin).await;
    assert_eq!(health["live_sessions"], 1, "{health}");
    service.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn joins_are_acknowledged_while_a_compaction_runs_and_none_is_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let (service, session, joins, stop, workers) = start_compacting_load(&data_dir).await;
    let history_len = std::fs::metadata(data_dir.join("sessions.journal"))
        .expect("journal")
        .len();
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let health = store_health(&http, &service.admin).await;
        if health["compactions"].as_u64() >= Some(1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no compaction finished: {health}; log:\n{}",
            service.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.expect("worker");
    }
    let inside = joins.inside_compaction.load(Ordering::Relaxed);
    assert!(
        inside > 0,
        "no join was acknowledged while the snapshot was being written"
    );
    let acknowledged = joins.acknowledged.lock().expect("lock").clone();
    println!(
        "{} joins acknowledged, {inside} of them entirely while the snapshot was being written",
        acknowledged.len()
    );
    let journal_len = std::fs::metadata(data_dir.join("sessions.journal"))
        .expect("journal")
        .len();
    service.kill();
    assert_nothing_lost(&data_dir, &session.0, &acknowledged).await;
    // The history of the crowded sessions is gone from the file.
    assert!(
        journal_len < history_len / 2,
        "journal still {journal_len} of {history_len} bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kill_in_the_middle_of_a_compaction_loses_no_acknowledged_join() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let (service, session, joins, stop, workers) = start_compacting_load(&data_dir).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    // Kill once joins were acknowledged during the compaction, while it still runs.
    while joins.inside_compaction.load(Ordering::Relaxed) < 3
        || !data_dir.join(COMPACTION_FILE).exists()
    {
        assert!(
            Instant::now() < deadline,
            "never caught a compaction under way; log:\n{}",
            service.log()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    service.kill();
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.expect("worker");
    }
    let acknowledged = joins.acknowledged.lock().expect("lock").clone();
    assert!(
        data_dir.join(COMPACTION_FILE).exists(),
        "the kill did not land in the middle of the compaction"
    );
    assert_nothing_lost(&data_dir, &session.0, &acknowledged).await;
}
