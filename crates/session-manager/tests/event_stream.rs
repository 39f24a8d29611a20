//! The admin event stream of the real binary: every session event arrives, in order, with
//! `id:` = seq and `event:` = type, and `?session=` keeps one session's; a reader that
//! stops reading gets a gap marker with the exact number it lost while joins go on
//! unhindered; and an open stream does not hold up a graceful shutdown.

#[path = "support/event_stream.rs"]
mod event_stream;
#[path = "support/service.rs"]
mod service;

use std::time::{Duration, Instant};

use event_stream::{EventStream, Frame, StalledReader};
use reqwest::StatusCode;
use serde_json::{json, Value};
use test_support::session_api;

const PATIENCE: Duration = Duration::from_secs(10);

fn types(frames: &[Frame]) -> Vec<(String, String)> {
    frames
        .iter()
        .map(|frame| {
            (
                frame.data["type"].as_str().expect("type").to_owned(),
                frame.data["data"]["session_id"]
                    .as_str()
                    .expect("session_id")
                    .to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn every_session_event_arrives_and_the_session_filter_keeps_one_session() {
    let dir = tempfile::tempdir().expect("temp dir");
    let service = service::start(&dir.path().join("data"), &[]).await;
    let http = reqwest::Client::new();
    let admin = &service.admin;

    let bad = http
        .get(format!("{admin}/api/v1/events?session=not-a-session"))
        .send()
        .await
        .expect("answer");
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    let mut all = EventStream::open(&http, admin, "").await;
    let expiring = session_api::create_session(&http, admin, &json!({"ttl_secs": 2})).await;
    let mut only_expiring =
        EventStream::open(&http, admin, &format!("?session={}", expiring.id)).await;
    // Created through the compat route, closed through it.
    let compat: Value =
        session_api::json_answer(http.get(format!("{admin}/api/createSession?type=kiosk"))).await;
    let compat_id = compat["id"].as_str().expect("compat id").to_owned();
    let compat_pin = compat["pin"].as_str().expect("compat pin").to_owned();
    // Closed before its end: it must not be announced as expired.
    let closed_early = session_api::create_session(&http, admin, &json!({"ttl_secs": 1})).await;
    assert_eq!(
        session_api::close_session(&http, admin, &closed_early.id)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let joined =
        session_api::join(&http, &service.public, &expiring.id, &expiring.pin, "lamp").await;
    assert_eq!(joined.status(), StatusCode::OK);
    let refused = session_api::join(&http, &service.public, &expiring.id, "000000", "thief").await;
    assert_ne!(refused.status(), StatusCode::OK);
    let joined = session_api::join(&http, &service.public, &compat_id, &compat_pin, "fan").await;
    assert_eq!(joined.status(), StatusCode::OK);
    let closed = http
        .get(format!("{admin}/api/closeSession?id={compat_id}"))
        .send()
        .await
        .expect("compat close");
    assert!(closed.status().is_success(), "{}", closed.status());

    let frames = all.until_type("session_expired", PATIENCE).await;
    let expected = [
        ("session_created", &expiring.id),
        ("session_created", &compat_id),
        ("session_created", &closed_early.id),
        ("session_closed", &closed_early.id),
        ("device_joined", &expiring.id),
        ("device_joined", &compat_id),
        ("session_closed", &compat_id),
        ("session_expired", &expiring.id),
    ]
    .map(|(kind, id)| (kind.to_owned(), id.clone()));
    assert_eq!(types(&frames), expected);
    let first_seq = frames[0].id.expect("id");
    for (offset, frame) in frames.iter().enumerate() {
        assert_eq!(frame.id, Some(first_seq + offset as u64), "{frames:?}");
        assert_eq!(frame.data["seq"].as_u64(), frame.id);
        assert_eq!(frame.data["type"], frame.event.as_str());
        assert!(frame.data["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("evt_")));
    }
    assert_eq!(frames[0].data["data"]["session_type"], "default");
    assert_eq!(
        frames[0].data["data"]["expires_at"],
        expiring.body["expires_at"]
    );
    assert_eq!(frames[1].data["data"]["session_type"], "kiosk");
    assert_eq!(frames[4].data["data"]["client"], "lamp");

    let mine = only_expiring.until_type("session_expired", PATIENCE).await;
    assert_eq!(
        types(&mine),
        [
            ("device_joined".to_owned(), expiring.id.clone()),
            ("session_expired".to_owned(), expiring.id.clone()),
        ]
    );
    // The expiry came within about a second of the session's end.
    let expires_at = expiring.body["expires_at"].as_u64().expect("expires_at") * 1000;
    let announced = mine[1].data["timestamp"].as_u64().expect("timestamp");
    assert!(
        announced >= expires_at && announced < expires_at + 1500,
        "expired at {expires_at} ms, announced at {announced} ms"
    );
}

#[tokio::test]
async fn a_reader_that_stops_reading_gets_a_gap_marker_with_the_exact_count() {
    const JOINS: usize = 20_000;
    let dir = tempfile::tempdir().expect("temp dir");
    let service = service::start(
        &dir.path().join("data"),
        &[
            ("ISM_EVENT_BUFFER", "16"),
            ("ISM_JOIN_QUOTA_PER_SESSION", "0"),
            ("ISM_DEFAULT_MAX_CLIENTS", "0"),
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let stalled = StalledReader::open(service.admin_addr, "").await;
    let session = session_api::create_session(&http, &service.admin, &json!({})).await;

    // The reader reads nothing while events pile up; joins must not notice.
    let started = Instant::now();
    let joins = (0..16).map(|worker| {
        let http = http.clone();
        let public = service.public.clone();
        let session = session.clone();
        tokio::spawn(async move {
            let padding = "x".repeat(50);
            for n in (worker..JOINS).step_by(16) {
                let client = format!("{padding}-{n:08}");
                let answer =
                    session_api::join(&http, &public, &session.id, &session.pin, &client).await;
                assert_eq!(answer.status(), StatusCode::OK, "join {n}");
            }
        })
    });
    for join in joins.collect::<Vec<_>>() {
        join.await.expect("join worker");
    }
    println!(
        "{JOINS} joins in {:?} with a stalled stream reader",
        started.elapsed()
    );
    let health = tokio::time::timeout(
        Duration::from_secs(2),
        http.get(format!("{}/healthz", service.admin)).send(),
    )
    .await
    .expect("admin /healthz answers while a reader is stalled")
    .expect("health request");
    assert!(health.status().is_success());
    session_api::close_session(&http, &service.admin, &session.id).await;

    let body = stalled
        .read_until("event: session_closed", Duration::from_secs(30))
        .await;
    let frames = event_stream::parse_all(&body);
    let mut previous: Option<u64> = None;
    let mut dropped_before: u64 = 0;
    let mut gaps = 0;
    let mut received = 0;
    for frame in &frames {
        if frame.event == "gap" {
            assert_eq!(frame.id, None);
            dropped_before += frame.data["dropped"].as_u64().expect("dropped count");
            gaps += 1;
            continue;
        }
        let seq = frame.id.expect("event id");
        if let Some(previous) = previous {
            assert_eq!(
                seq,
                previous + dropped_before + 1,
                "a jump in seq must be announced by a gap of exactly that many"
            );
        }
        dropped_before = 0;
        previous = Some(seq);
        received += 1;
    }
    assert!(gaps > 0, "no gap marker after {JOINS} unread events");
    let first = frames
        .iter()
        .find_map(|frame| frame.id)
        .expect("some event");
    let total = previous.expect("last event") - first + 1;
    println!("stalled reader: {received} events received, {gaps} gaps, {total} events in all");
    assert!(
        received + 100 < total,
        "a reader that stopped reading still got {received} of {total} events"
    );
}

#[tokio::test]
async fn an_open_stream_ends_cleanly_and_does_not_hold_up_shutdown() {
    let dir = tempfile::tempdir().expect("temp dir");
    let service = service::start(&dir.path().join("data"), &[]).await;
    let http = reqwest::Client::new();
    let mut stream = EventStream::open(&http, &service.admin, "").await;
    let started = Instant::now();
    let stopping = tokio::task::spawn_blocking(move || service.terminate());
    assert!(
        stream.next(Duration::from_secs(5)).await.is_none(),
        "the stream ends at shutdown"
    );
    let status = stopping.await.expect("terminate");
    assert!(status.success(), "exit status {status}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown took {:?} with an open event stream",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_stream_needs_the_admin_key() {
    const KEY: &str = "correct horse battery staple";
    let hash = session_manager::admin_auth::hash_admin_key(KEY).expect("hash");
    let dir = tempfile::tempdir().expect("temp dir");
    let service = service::start(
        &dir.path().join("data"),
        &[("ISM_ADMIN_API_KEY_HASH", hash.as_str())],
    )
    .await;
    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/events", service.admin);
    for request in [http.get(&url), http.get(&url).bearer_auth("wrong")] {
        let answer = request.send().await.expect("answer");
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    }
    let mut stream = http
        .get(&url)
        .bearer_auth(KEY)
        .send()
        .await
        .expect("stream");
    assert_eq!(stream.status(), StatusCode::OK);
    session_api::join(&http, &service.public, "123456", "000000", "nobody").await;
    // A refused join is no event: the first frame is the creation below.
    let created = http
        .post(format!("{}/api/v1/sessions", service.admin))
        .bearer_auth(KEY)
        .json(&json!({}))
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), StatusCode::CREATED);
    let chunk = tokio::time::timeout(PATIENCE, stream.chunk())
        .await
        .expect("an event within the patience")
        .expect("chunk")
        .expect("not the end");
    assert!(
        std::str::from_utf8(&chunk)
            .expect("UTF-8")
            .contains("event: session_created"),
        "{chunk:?}"
    );
}

#[tokio::test]
async fn answered_conductor_calls_are_events() {
    let dir = tempfile::tempdir().expect("temp dir");
    let service = service::start(&dir.path().join("data"), &[]).await;
    let http = reqwest::Client::new();
    let admin = &service.admin;
    let session = session_api::create_session(&http, admin, &json!({"type": "active"})).await;
    let mut stream = EventStream::open(&http, admin, &format!("?session={}", session.id)).await;
    let unknown: Value = session_api::json_answer(http.get(format!(
        "{admin}/api/conductorRequest?id={}&method=fly",
        session.id
    )))
    .await;
    assert_eq!(
        unknown,
        json!("Error: No handler function registered for method: fly")
    );
    let started: Value = session_api::json_answer(http.get(format!(
        "{admin}/api/conductorRequest?id={}&method=start",
        session.id
    )))
    .await;
    assert_eq!(started, json!("Started"));
    let frames = stream.until_type("conductor_called", PATIENCE).await;
    let called = frames.last().expect("a conductor_called event");
    assert_eq!(
        called.data["data"],
        json!({"session_id": session.id, "conductor": "active", "method": "start", "answer": "Started"}),
        "the unanswered call is no event"
    );
}
