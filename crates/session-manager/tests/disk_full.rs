//! A full disk, for real: the data directory is a small tmpfs filled with a ballast file.
//! While writes fail, changes are refused (never acknowledged, never kept in memory) and
//! both `/healthz` say so; once space is freed the service takes changes again by itself.
//! A full disk at start-up does not keep a sound journal from starting.
//!
//! Needs root (or CAP_SYS_ADMIN) for `mount -t tmpfs`; without it the tests fail saying so.

#[path = "support/service.rs"]
mod service;
#[path = "support/tmpfs.rs"]
mod tmpfs;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use session_manager::domain::{ClientName, Pin, SessionId, SessionType};
use session_manager::join::pin_check::hash_pin_blocking;
use session_manager::store::journal::record::{
    encode_journal, ClosedRecord, CreatedRecord, JoinedRecord, Record,
};
use session_manager::store::JOURNAL_FILE_NAME;
use test_support::session_api;
use tmpfs::Tmpfs;

async fn health(http: &reqwest::Client, base: &str) -> (StatusCode, Value) {
    let response = http.get(format!("{base}/healthz")).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn create(http: &reqwest::Client, admin: &str) -> reqwest::Response {
    http.post(format!("{admin}/api/v1/sessions"))
        .json(&json!({}))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_changes_reports_the_fault_and_recovers_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let tmpfs = Tmpfs::mount(&data_dir, "2m");
    let http = reqwest::Client::new();
    let service = service::start(&data_dir, &[]).await;
    let kept: Value = create(&http, &service.admin).await.json().await.unwrap();
    let kept_id = kept["id"].as_str().unwrap().to_owned();

    let ballast = tmpfs.fill();
    // The journal's last page may still hold a record or two; the disk holds no more.
    let mut acknowledged = vec![kept_id.clone()];
    let refused = loop {
        let response = create(&http, &service.admin).await;
        if response.status() != StatusCode::CREATED {
            break response;
        }
        let body: Value = response.json().await.unwrap();
        acknowledged.push(body["id"].as_str().unwrap().to_owned());
        assert!(acknowledged.len() < 100, "the full disk takes every create");
    };
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        refused.headers().get("retry-after").map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "store_unavailable", "{body}");
    let again = create(&http, &service.admin).await;
    assert_eq!(again.status(), StatusCode::SERVICE_UNAVAILABLE);
    // Memory holds nothing the disk does not: the refused creates do not exist.
    let listed: Value = session_api::list_sessions(&http, &service.admin).await;
    assert_eq!(
        listed["sessions"].as_array().unwrap().len(),
        acknowledged.len(),
        "{listed}"
    );

    let (status, body) = health(&http, &service.admin).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["store"]["status"], "write_failing", "{body}");
    let fault = body["store"]["write_fault"].as_str().unwrap_or_default();
    assert!(fault.contains("No space left"), "{body}");
    assert_eq!(
        health(&http, &service.public).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );

    std::fs::remove_file(ballast).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while health(&http, &service.admin).await.0 != StatusCode::OK {
        assert!(
            Instant::now() < deadline,
            "the store did not recover after space was freed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(health(&http, &service.public).await.0, StatusCode::OK);
    let fresh = create(&http, &service.admin).await;
    assert_eq!(fresh.status(), StatusCode::CREATED);
    let fresh: Value = fresh.json().await.unwrap();
    let close = session_api::close_session(&http, &service.admin, &kept_id).await;
    assert_eq!(close.status(), StatusCode::NO_CONTENT);
    service.terminate();

    // What the restarted service reads is exactly what was acknowledged.
    let service = service::start(&data_dir, &[]).await;
    let listed: Value = session_api::list_sessions(&http, &service.admin).await;
    let mut ids: Vec<String> = listed["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|session| session["id"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    acknowledged.retain(|id| *id != kept_id);
    acknowledged.push(fresh["id"].as_str().unwrap().to_owned());
    acknowledged.sort();
    assert_eq!(
        ids, acknowledged,
        "closed {kept_id} or a refused create is back"
    );
    let (status, body) = health(&http, &service.admin).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["store"]["skipped"], json!([]), "{body}");
    service.terminate();
    drop(tmpfs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_at_start_up_does_not_stop_a_sound_journal() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let tmpfs = Tmpfs::mount(&data_dir, "4m");
    // A journal worth compacting at start: one session with 3000 joins, closed.
    let pin = Pin::parse("424242").unwrap();
    let now = test_support::now();
    let created = |id: &str| {
        Record::Created(CreatedRecord {
            id: SessionId::parse(id).unwrap(),
            session_type: SessionType::default(),
            created_at: now,
            expires_at: None,
            max_clients: None,
            pin_hash: hash_pin_blocking(&pin).unwrap(),
        })
    };
    let mut records = vec![created("111111111")];
    for n in 0..3000 {
        records.push(Record::Joined(JoinedRecord {
            id: SessionId::parse("111111111").unwrap(),
            client: ClientName::parse(&format!("device-{n}")).unwrap(),
            joined_at: now,
        }));
    }
    records.push(Record::Closed(ClosedRecord {
        id: SessionId::parse("111111111").unwrap(),
        closed_at: Some(now),
        session_end: None,
    }));
    records.push(created("222222222"));
    std::fs::write(
        data_dir.join(JOURNAL_FILE_NAME),
        encode_journal(&records).unwrap(),
    )
    .unwrap();
    let ballast = tmpfs.fill();

    let service = service::start(&data_dir, &[]).await;
    assert!(
        service
            .log()
            .contains("cannot compact the session journal at start-up"),
        "{}",
        service.log()
    );
    let http = reqwest::Client::new();
    let session = http
        .get(format!("{}/api/v1/sessions/222222222", service.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(session.status(), StatusCode::OK);
    std::fs::remove_file(ballast).unwrap();
    // Read-write: a change works and survives a restart.
    let join = http
        .post(format!("{}/api/v1/sessions/222222222/join", service.public))
        .json(&json!({ "pin": "424242", "client": "after" }))
        .send()
        .await
        .unwrap();
    assert_eq!(join.status(), StatusCode::OK);
    service.terminate();
    let service = service::start(&data_dir, &[]).await;
    let session: Value =
        session_api::json_answer(http.get(format!("{}/api/v1/sessions/222222222", service.admin)))
            .await;
    assert_eq!(session["clients"][0]["name"], "after", "{session}");
    service.terminate();
    drop(tmpfs);
}
