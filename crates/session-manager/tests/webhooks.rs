//! Webhooks of the real binary, delivered to real HTTP receivers on loopback that the tests
//! start: each delivery is the event's JSON with a Standard Webhooks signature the test
//! checks with its own HMAC; a receiver that is down for 5 s and then fails once gets
//! every event afterwards with the same ids; a receiver that accepts connections and never
//! answers does not slow joins; and bad settings refuse to start with a clear message.

#[path = "support/service.rs"]
mod service;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use reqwest::StatusCode as HttpStatus;
use serde_json::{json, Value};
use sha2::Sha256;
use test_support::session_api;
use tokio::sync::mpsc;

/// `whsec_` + base64 of these 32 bytes.
const KEY: &[u8; 32] = b"0123456789abcdef0123456789abcdef";

fn secret() -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(KEY)
    )
}

/// One POST the receiver got.
#[derive(Debug, Clone)]
struct Delivery {
    headers: HeaderMap,
    body: Bytes,
    /// What the receiver answered.
    accepted: bool,
}

impl Delivery {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} header"))
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }
}

/// An HTTP receiver on loopback that answers 500 to its first `failures` requests and 204
/// after, and reports every request.
struct Receiver {
    url: String,
    deliveries: mpsc::UnboundedReceiver<Delivery>,
}

impl Receiver {
    async fn start(failures: usize) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        Self::serve(listener, failures)
    }

    fn serve(listener: tokio::net::TcpListener, failures: usize) -> Receiver {
        let addr = listener.local_addr().expect("receiver address");
        let (sender, deliveries) = mpsc::unbounded_channel();
        let remaining_failures = Arc::new(AtomicUsize::new(failures));
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let sender = sender.clone();
                let remaining_failures = Arc::clone(&remaining_failures);
                async move {
                    let fail = remaining_failures
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok();
                    let _ = sender.send(Delivery {
                        headers,
                        body,
                        accepted: !fail,
                    });
                    if fail {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::NO_CONTENT
                    }
                }
            }),
        );
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("receiver serves");
        });
        Receiver {
            url: format!("http://{addr}/hook"),
            deliveries,
        }
    }

    async fn next(&mut self, patience: Duration) -> Delivery {
        tokio::time::timeout(patience, self.deliveries.recv())
            .await
            .unwrap_or_else(|_| panic!("no delivery within {patience:?}"))
            .expect("receiver running")
    }

    /// Deliveries until `count` distinct events were accepted.
    async fn accepted(&mut self, count: usize, patience: Duration) -> Vec<Delivery> {
        let deadline = Instant::now() + patience;
        let mut all = Vec::new();
        let mut accepted_ids = std::collections::BTreeSet::new();
        while accepted_ids.len() < count {
            let delivery = self
                .next(deadline.saturating_duration_since(Instant::now()))
                .await;
            if delivery.accepted {
                accepted_ids.insert(delivery.header("webhook-id").to_owned());
            }
            all.push(delivery);
        }
        all
    }
}

/// The check a receiver does: `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")).
fn assert_signed(delivery: &Delivery) {
    let id = delivery.header("webhook-id");
    let timestamp = delivery.header("webhook-timestamp");
    let mut mac = Hmac::<Sha256>::new_from_slice(KEY).expect("HMAC key");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(&delivery.body);
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    assert_eq!(delivery.header("webhook-signature"), expected);
    let sent_at: u64 = timestamp.parse().expect("numeric timestamp");
    assert!(
        sent_at.abs_diff(test_support::now()) < 60,
        "timestamp {sent_at} is not now"
    );
    assert_eq!(delivery.header("content-type"), "application/json");
    assert_eq!(delivery.json()["id"], id, "webhook-id is the event id");
}

async fn start_with_receivers(
    data_dir: &std::path::Path,
    urls: &[&str],
    extra: &[(&str, &str)],
) -> service::Service {
    let urls = urls.join(",");
    let secret = secret();
    let mut env = vec![
        ("ISM_WEBHOOK_URLS", urls.as_str()),
        ("ISM_WEBHOOK_SECRET", secret.as_str()),
    ];
    env.extend_from_slice(extra);
    service::start(data_dir, &env).await
}

#[tokio::test]
async fn every_event_is_delivered_signed_in_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut receiver = Receiver::start(0).await;
    let service = start_with_receivers(&dir.path().join("data"), &[&receiver.url], &[]).await;
    let http = reqwest::Client::new();
    let session = session_api::create_session(&http, &service.admin, &json!({})).await;
    let joined = session_api::join(&http, &service.public, &session.id, &session.pin, "lamp").await;
    assert_eq!(joined.status(), HttpStatus::OK);
    session_api::close_session(&http, &service.admin, &session.id).await;

    let deliveries = receiver.accepted(3, Duration::from_secs(10)).await;
    let kinds: Vec<Value> = deliveries
        .iter()
        .map(|d| d.json()["type"].clone())
        .collect();
    assert_eq!(
        kinds,
        ["session_created", "device_joined", "session_closed"].map(Value::from)
    );
    for delivery in &deliveries {
        assert_signed(delivery);
        assert_eq!(delivery.json()["data"]["session_id"], session.id.as_str());
    }
    assert_eq!(deliveries[1].json()["data"]["client"], "lamp");
    let seqs: Vec<u64> = deliveries
        .iter()
        .map(|d| d.json()["seq"].as_u64().expect("seq"))
        .collect();
    assert!(
        seqs.windows(2).all(|pair| pair[1] == pair[0] + 1),
        "{seqs:?}"
    );
}

#[tokio::test]
async fn a_receiver_down_for_five_seconds_then_back_gets_every_event_with_stable_ids() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A port nothing listens on (yet): deliveries are refused.
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").expect("reserve a port");
    let addr: SocketAddr = reserved.local_addr().expect("address");
    drop(reserved);
    let url = format!("http://{addr}/hook");
    let service = start_with_receivers(&dir.path().join("data"), &[&url], &[]).await;
    let http = reqwest::Client::new();
    let session = session_api::create_session(&http, &service.admin, &json!({})).await;
    for client in ["a", "b", "c"] {
        let joined =
            session_api::join(&http, &service.public, &session.id, &session.pin, client).await;
        assert_eq!(joined.status(), HttpStatus::OK);
    }
    session_api::close_session(&http, &service.admin, &session.id).await;
    tokio::time::sleep(Duration::from_secs(5)).await;

    // Back, and failing its first request: that event must come again, unchanged.
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("the receiver's port is free again");
    let mut receiver = Receiver::serve(listener, 1);
    let deliveries = receiver.accepted(5, Duration::from_secs(60)).await;
    let refused = deliveries.first().expect("a first delivery");
    assert!(!refused.accepted);
    let retried = deliveries
        .iter()
        .find(|d| d.accepted && d.header("webhook-id") == refused.header("webhook-id"))
        .expect("the refused event was delivered again");
    assert_eq!(retried.body, refused.body);
    let mut accepted: Vec<Value> = Vec::new();
    for delivery in deliveries.iter().filter(|d| d.accepted) {
        assert_signed(delivery);
        if !accepted
            .iter()
            .any(|seen| seen["id"] == delivery.json()["id"])
        {
            accepted.push(delivery.json());
        }
    }
    let kinds: Vec<&str> = accepted
        .iter()
        .map(|event| event["type"].as_str().expect("type"))
        .collect();
    assert_eq!(
        kinds,
        [
            "session_created",
            "device_joined",
            "device_joined",
            "device_joined",
            "session_closed"
        ]
    );
    let log = service.log();
    assert!(log.contains("webhook delivery failed; retrying"), "{log}");
    assert!(
        !log.contains(&url),
        "the log names the receiver's URL:\n{log}"
    );
}

/// p99 of `count` joins one after another, in milliseconds.
async fn join_p99(service: &service::Service, count: usize) -> f64 {
    let http = reqwest::Client::new();
    let session = session_api::create_session(&http, &service.admin, &json!({})).await;
    let mut took = Vec::with_capacity(count);
    for n in 0..count {
        let started = Instant::now();
        let joined = session_api::join(
            &http,
            &service.public,
            &session.id,
            &session.pin,
            &format!("device-{n}"),
        )
        .await;
        took.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(joined.status(), HttpStatus::OK);
    }
    took.sort_by(f64::total_cmp);
    took[(count * 99 / 100).min(count - 1)]
}

#[tokio::test]
async fn a_receiver_that_never_answers_does_not_slow_joins() {
    const JOINS: usize = 300;
    // Accepts connections and never says a word.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let silent_url = format!("http://{}/hook", silent.local_addr().expect("address"));
    let held = tokio::spawn(async move {
        let mut connections = Vec::new();
        while let Ok((connection, _)) = silent.accept().await {
            connections.push(connection);
        }
    });
    let limits = [
        ("ISM_JOIN_QUOTA_PER_SESSION", "0"),
        ("ISM_WEBHOOK_QUEUE", "10"),
    ];
    let base = tempfile::tempdir().expect("temp dir");
    let without = service::start(&base.path().join("without"), &limits).await;
    let with = start_with_receivers(&base.path().join("with"), &[&silent_url], &limits).await;
    // Warm both up, then measure them in turn.
    join_p99(&without, 20).await;
    join_p99(&with, 20).await;
    let p99_without = join_p99(&without, JOINS).await;
    let p99_with = join_p99(&with, JOINS).await;
    println!("join p99 over {JOINS} joins: {p99_without:.2} ms without webhooks, {p99_with:.2} ms with a silent receiver");
    assert!(
        p99_with < p99_without * 3.0 + 20.0,
        "joins slowed by a silent receiver: p99 {p99_with:.2} ms against {p99_without:.2} ms"
    );
    let log = with.log();
    assert!(
        log.contains("webhook queue full: events dropped for this receiver"),
        "{log}"
    );
    held.abort();
}

#[test]
fn bad_webhook_settings_refuse_to_start_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("temp dir");
    /// Settings, and what the refusal must say.
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: [Case; 5] = [
        (
            &[("ISM_WEBHOOK_URLS", "http://127.0.0.1:9/hook")],
            &["ISM_WEBHOOK_SECRET is not", "openssl rand -base64 32"],
        ),
        (
            &[
                ("ISM_WEBHOOK_URLS", "http://127.0.0.1:9/hook"),
                ("ISM_WEBHOOK_SECRET", "my-password"),
            ],
            &["whsec_", "openssl rand -base64 32"],
        ),
        (
            &[
                ("ISM_WEBHOOK_URLS", "http://127.0.0.1:9/hook"),
                ("ISM_WEBHOOK_SECRET", "whsec_not*base64"),
            ],
            &["not valid base64", "openssl rand -base64 32"],
        ),
        (
            &[
                (
                    "ISM_WEBHOOK_URLS",
                    "http://127.0.0.1:9/hook,ftp://files.example/in",
                ),
                (
                    "ISM_WEBHOOK_SECRET",
                    "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
                ),
            ],
            &["ISM_WEBHOOK_URLS", "only http and https"],
        ),
        (
            &[("ISM_EVENT_BUFFER", "0")],
            &["--event-buffer", "0 is not in 1..="],
        ),
    ];
    for (index, (env, expected)) in cases.iter().enumerate() {
        let (status, log) = service::run_to_exit(&dir.path().join(format!("data-{index}")), env);
        assert!(!status.success(), "{env:?} started");
        for needle in *expected {
            assert!(log.contains(needle), "{env:?}: {needle:?} not in\n{log}");
        }
        assert!(
            !log.contains("my-password"),
            "the secret was printed:\n{log}"
        );
    }
}
