//! The live-session count on the admin `/healthz` is a running tally, not a pass over all
//! sessions: it must stay exact through creates, closes (repeated and of unknown ids),
//! expiry while running, sessions that were closed or expired in the journal before the
//! start, and a SIGKILL and restart. Checked against the real binary, and against the
//! sessions its own listing shows.

#[path = "support/service.rs"]
mod service;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use session_manager::domain::Pin;
use session_manager::join::pin_check::hash_pin_blocking;
use test_support::journal_file::JournalWriter;
use test_support::session_api::{close_session, create_session, json_answer, list_sessions};

/// Live sessions by `/healthz`, and by the listing.
async fn counts(http: &reqwest::Client, admin: &str) -> (u64, usize) {
    let health: Value = json_answer(http.get(format!("{admin}/healthz"))).await;
    let live = health["store"]["live_sessions"]
        .as_u64()
        .expect("live_sessions");
    let listed = list_sessions(http, admin).await["sessions"]
        .as_array()
        .expect("sessions")
        .len();
    (live, listed)
}

async fn assert_live(http: &reqwest::Client, admin: &str, expected: u64) {
    let (live, listed) = counts(http, admin).await;
    assert_eq!(live, expected, "/healthz live_sessions");
    assert_eq!(listed as u64, expected, "sessions listed");
}

/// A journal with 3 live sessions, 2 closed and 1 expired before the start.
fn write_history(data_dir: &Path, now: u64) {
    let pin_hash = hash_pin_blocking(&Pin::parse("424242").expect("pin")).expect("hash");
    let mut journal = JournalWriter::create(data_dir);
    journal.created("100000001", now - 100, None, None, &pin_hash);
    journal.created("100000002", now - 100, Some(now + 86_400), None, &pin_hash);
    journal.joined("100000002", "lamp", now - 50);
    journal.created("100000003", now - 100, Some(now + 86_400), None, &pin_hash);
    journal.created("100000004", now - 100, None, None, &pin_hash);
    journal.closed("100000004", now - 10);
    journal.closed("100000005", now - 10);
    journal.created("100000006", now - 100, Some(now - 1), None, &pin_hash);
    journal.finish();
}

#[tokio::test]
async fn live_count_stays_exact_across_create_close_expiry_and_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    write_history(&data_dir, test_support::now());
    let http = reqwest::Client::new();

    let service = service::start(&data_dir, &[]).await;
    let admin = service.admin.clone();
    assert_live(&http, &admin, 3).await;

    let lasting = create_session(&http, &admin, &json!({})).await;
    let brief = create_session(&http, &admin, &json!({ "ttl_secs": 2 })).await;
    let brief_ends = Instant::now() + Duration::from_secs(2);
    assert_live(&http, &admin, 5).await;

    assert_eq!(
        close_session(&http, &admin, "100000001").await.status(),
        reqwest::StatusCode::NO_CONTENT
    );
    // Closing again, closing one closed before the start, an expired one and an unknown
    // one change nothing.
    for id in ["100000001", "100000004", "100000006", "999999999"] {
        assert_eq!(
            close_session(&http, &admin, id).await.status(),
            reqwest::StatusCode::NOT_FOUND,
            "{id}"
        );
    }
    assert_eq!(
        close_session(&http, &admin, &lasting.id).await.status(),
        reqwest::StatusCode::NO_CONTENT
    );
    let (live, _) = counts(&http, &admin).await;
    if Instant::now() < brief_ends {
        assert_eq!(live, 3);
    }

    // The brief session ends by itself.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (live, listed) = counts(&http, &admin).await;
        if live == 2 && listed == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "session {} did not end: {live} live, {listed} listed",
            brief.id
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    service.kill();
    let service = service::start(&data_dir, &[]).await;
    assert_live(&http, &service.admin, 2).await;
    let fresh = create_session(&http, &service.admin, &json!({})).await;
    assert_live(&http, &service.admin, 3).await;
    assert_eq!(
        close_session(&http, &service.admin, &fresh.id)
            .await
            .status(),
        reqwest::StatusCode::NO_CONTENT
    );
    assert_live(&http, &service.admin, 2).await;
    service.kill();
}
