//! Damage in the middle of the session journal, against the real binary: a flipped byte
//! must never revive a closed session, lose the sessions after it, or let an id be handed
//! out again; damage that cannot be decided, or a record that does not decode, stops the
//! start with the offset and the way out.

#[path = "support/service.rs"]
mod service;

use std::collections::HashSet;
use std::path::Path;

use reqwest::StatusCode;
use serde_json::{json, Value};
use session_manager::store::journal::record::{decode_frame, JOURNAL_HEADER};
use session_manager::store::JOURNAL_FILE_NAME;
use test_support::session_api::{self, CreatedSession};

async fn create(http: &reqwest::Client, admin: &str) -> CreatedSession {
    session_api::create_session(http, admin, &json!({})).await
}

async fn join(
    http: &reqwest::Client,
    public: &str,
    session: &CreatedSession,
    client: &str,
) -> StatusCode {
    session_api::join(http, public, &session.id, &session.pin, client)
        .await
        .status()
}

/// Start offsets of the frames in the journal.
fn frame_offsets(data_dir: &Path) -> Vec<usize> {
    let bytes = std::fs::read(data_dir.join(JOURNAL_FILE_NAME)).unwrap();
    assert!(bytes.starts_with(JOURNAL_HEADER));
    let mut offsets = Vec::new();
    let mut at = JOURNAL_HEADER.len();
    while at < bytes.len() {
        offsets.push(at);
        at += decode_frame(&bytes[at..]).expect("intact journal").1;
    }
    offsets
}

fn flip(data_dir: &Path, position: usize) {
    let path = data_dir.join(JOURNAL_FILE_NAME);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[position] ^= 0x20;
    std::fs::write(&path, bytes).unwrap();
}

fn body_offset(data_dir: &Path, frame: usize) -> usize {
    let bytes = std::fs::read(data_dir.join(JOURNAL_FILE_NAME)).unwrap();
    frame + bytes[frame..].iter().position(|&b| b == b'{').unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_mid_journal_revives_nothing_loses_nothing_after_it_and_reuses_no_id() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let http = reqwest::Client::new();
    // One-digit ids: nine exist, so any reuse of a used id shows at once.
    let env = [("ISM_ID_LENGTH", "1")];
    let service = service::start(&data_dir, &env).await;
    let first = create(&http, &service.admin).await;
    let damaged = create(&http, &service.admin).await;
    let closed_later = create(&http, &service.admin).await;
    assert_eq!(
        join(&http, &service.public, &closed_later, "lamp").await,
        200
    );
    let close = session_api::close_session(&http, &service.admin, &closed_later.id).await;
    assert_eq!(close.status(), StatusCode::NO_CONTENT);
    let later = create(&http, &service.admin).await;
    service.terminate();

    // Frames: create first, create damaged, create closed_later, join, close, create later.
    let offsets = frame_offsets(&data_dir);
    assert_eq!(offsets.len(), 6);
    flip(&data_dir, body_offset(&data_dir, offsets[1]) + 30);

    let service = service::start(&data_dir, &env).await;
    // The session closed after the damage stays closed.
    assert_eq!(
        join(&http, &service.public, &closed_later, "lamp2").await,
        401
    );
    let get = http
        .get(format!(
            "{}/api/v1/sessions/{}",
            service.admin, closed_later.id
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), StatusCode::NOT_FOUND);
    // The sessions before and after the damage are intact.
    for session in [&first, &later] {
        assert_eq!(join(&http, &service.public, session, "device").await, 200);
    }
    let listed: Value = session_api::list_sessions(&http, &service.admin).await;
    let listed: HashSet<&str> = listed["sessions"]
        .as_array()
        .or_else(|| listed.as_array())
        .expect("a list of sessions")
        .iter()
        .filter_map(|session| session["id"].as_str())
        .collect();
    assert_eq!(
        listed,
        HashSet::from([first.id.as_str(), later.id.as_str()])
    );
    // The damaged session's create was lost: it counts as closed, its PIN joins nothing.
    assert_eq!(join(&http, &service.public, &damaged, "device").await, 401);

    // The admin health shows the skipped range, and the service is fine (200).
    let health = http
        .get(format!("{}/healthz", service.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let health: Value = health.json().await.unwrap();
    let skipped = health["store"]["skipped"]
        .as_array()
        .expect("store.skipped");
    assert_eq!(skipped.len(), 1, "{health}");
    assert_eq!(skipped[0]["offset"], offsets[1]);
    assert_eq!(skipped[0]["len"], offsets[2] - offsets[1]);
    assert!(service.log().contains("session journal damage skipped"));

    // No id ever used comes back: create until the id space is full.
    let used: HashSet<String> = [&first, &damaged, &closed_later, &later]
        .iter()
        .map(|session| session.id.clone())
        .collect();
    let mut fresh = Vec::new();
    loop {
        let response = http
            .post(format!("{}/api/v1/sessions", service.admin))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        if response.status() != StatusCode::CREATED {
            break;
        }
        let body: Value = response.json().await.unwrap();
        fresh.push(body["id"].as_str().unwrap().to_owned());
    }
    assert!(!fresh.is_empty());
    for id in &fresh {
        assert!(!used.contains(id), "id {id} was handed out again");
    }
}

#[tokio::test]
async fn a_record_with_valid_checksums_that_does_not_decode_stops_the_start_naming_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let service = service::start(&data_dir, &[]).await;
    create(&reqwest::Client::new(), &service.admin).await;
    service.terminate();
    let path = data_dir.join(JOURNAL_FILE_NAME);
    let mut bytes = std::fs::read(&path).unwrap();
    let offset = bytes.len();
    let body = br#"{"suspended":{"id":"5"}}"#;
    let key = format!("x 5 {}", body.len());
    bytes.extend_from_slice(
        format!(
            "{key} {:08x} {:08x} ",
            crc32fast::hash(key.as_bytes()),
            crc32fast::hash(body)
        )
        .as_bytes(),
    );
    bytes.extend_from_slice(body);
    bytes.push(b'\n');
    std::fs::write(&path, &bytes).unwrap();

    let (status, log) = service::run_to_exit(&data_dir, &[]);
    assert!(!status.success());
    assert!(log.contains(&format!("record at byte {offset}")), "{log}");
    // Nothing was cut away.
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_that_may_have_been_a_close_stops_the_start_until_the_operator_repairs_it() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let http = reqwest::Client::new();
    let service = service::start(&data_dir, &[]).await;
    let before = create(&http, &service.admin).await;
    let damaged = create(&http, &service.admin).await;
    let after = create(&http, &service.admin).await;
    service.terminate();
    let offsets = frame_offsets(&data_dir);
    // Inside the key of the second frame: what it was cannot be known.
    flip(&data_dir, offsets[1] + 4);

    let (status, log) = service::run_to_exit(&data_dir, &[]);
    assert!(!status.success());
    let repair = format!("--repair-journal-at {}", offsets[1]);
    assert!(log.contains(&repair), "{log}");

    let offset = offsets[1].to_string();
    let service = service::start(&data_dir, &[("ISM_REPAIR_JOURNAL_AT", offset.as_str())]).await;
    // Open at the damage: closed to be safe. Created after it: kept.
    assert_eq!(join(&http, &service.public, &before, "d").await, 401);
    assert_eq!(join(&http, &service.public, &damaged, "d").await, 401);
    assert_eq!(join(&http, &service.public, &after, "d").await, 200);
    service.terminate();
    // Repaired for good: the next start needs no flag.
    let service = service::start(&data_dir, &[]).await;
    assert_eq!(join(&http, &service.public, &after, "e").await, 200);
}
