//! `/metrics` and request ids, from the real binary: the Prometheus page answers on the
//! admin port and not on the public one, every join outcome moves its counter, route
//! labels are templates (no session id ever becomes a label value), and every answer
//! carries a request id, kept from a trusted proxy and made up otherwise.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde_json::{json, Value};
use test_support::service::{Launch, Service};
use test_support::session_api::{self, CreatedSession};

/// One sample of the Prometheus text format: name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The samples of a `/metrics` page (label values here never hold `,` `"` or `}`).
fn parse(page: &str) -> Vec<Sample> {
    page.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample line");
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (key, value) = pair.split_once('=').expect("label=value");
                    (key.to_owned(), value.trim_matches('"').to_owned())
                })
                .collect();
            Sample {
                name: name.to_owned(),
                labels,
                value: value.parse().expect("a number"),
            }
        })
        .collect()
}

/// The value of `name` with exactly these labels among its own, 0 when absent.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|sample| sample.name == name)
        .filter(|sample| {
            labels
                .iter()
                .all(|(key, value)| sample.labels.get(*key).map(String::as_str) == Some(*value))
        })
        .map(|sample| sample.value)
        .sum()
}

async fn scrape(http: &reqwest::Client, service: &Service) -> (String, Vec<Sample>) {
    let response = http
        .get(format!("{}/metrics", service.admin))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let page = response.text().await.expect("the page");
    let samples = parse(&page);
    (page, samples)
}

/// The binary with a small lockout and join quota, and no calibrated refusal floor.
fn start(dir: &std::path::Path, extra: &[(&str, &str)]) -> Service {
    Launch::new()
        .data_dir(&dir.join("data"))
        .envs(&[
            ("ISM_SESSION_MAX_FAILURES", "2"),
            ("ISM_JOIN_QUOTA_PER_SESSION", "2"),
            ("ISM_JOIN_REFUSAL_FLOOR_MS", "1"),
        ])
        .envs(extra)
        .log_file(dir.join("service.log"))
        .start()
}

async fn create(http: &reqwest::Client, service: &Service, body: Value) -> CreatedSession {
    session_api::create_session(http, &service.admin, &body).await
}

async fn join(
    http: &reqwest::Client,
    service: &Service,
    session: &CreatedSession,
    pin: &str,
    client: &str,
) -> StatusCode {
    session_api::join(http, &service.public, &session.id, pin, client)
        .await
        .status()
}

#[tokio::test]
async fn metrics_answer_on_the_admin_port_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    let service = start(dir.path(), &[]);
    service.wait_until_answering().await;
    let http = reqwest::Client::new();
    let (page, _) = scrape(&http, &service).await;
    assert!(page.contains("# HELP ism_sessions_live"), "{page}");
    // Open to scrapers like /healthz: no key, any Host, while the admin API refuses that
    // Host.
    for (path, expected) in [
        ("/metrics", StatusCode::OK),
        ("/api/v1/sessions", StatusCode::FORBIDDEN),
    ] {
        let response = http
            .get(format!("{}{path}", service.admin))
            .header("host", "prometheus.internal:9090")
            .send()
            .await
            .expect("request with another Host");
        assert_eq!(response.status(), expected, "{path}");
    }
    let public = http
        .get(format!("{}/metrics", service.public))
        .send()
        .await
        .expect("GET /metrics on the public port");
    assert_eq!(public.status(), StatusCode::NOT_FOUND);
    assert!(service.terminate().success());
}

#[tokio::test]
async fn every_join_outcome_moves_its_counter_and_routes_are_templates() {
    let dir = tempfile::tempdir().expect("temp dir");
    let service = start(dir.path(), &[]);
    service.wait_until_answering().await;
    let http = reqwest::Client::new();
    let (_, before) = scrape(&http, &service).await;
    let joins = |samples: &[Sample], outcome: &str| {
        value(samples, "ism_joins_total", &[("outcome", outcome)])
    };

    // ok, then session_full.
    let small = create(&http, &service, json!({ "max_clients": 1 })).await;
    assert_eq!(
        join(&http, &service, &small, &small.pin, "lamp-1").await,
        StatusCode::OK
    );
    assert_eq!(
        join(&http, &service, &small, &small.pin, "lamp-2").await,
        StatusCode::CONFLICT
    );
    // wrong_pin twice, which locks the session: locked.
    let guarded = create(&http, &service, json!({})).await;
    let wrong_pin = if guarded.pin.starts_with('0') {
        "1"
    } else {
        "0"
    }
    .repeat(guarded.pin.len());
    for _ in 0..2 {
        assert_eq!(
            join(&http, &service, &guarded, &wrong_pin, "lamp-1").await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        join(&http, &service, &guarded, &guarded.pin, "lamp-1").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Two joins use up the quota: rate_limited.
    let busy = create(&http, &service, json!({})).await;
    for client in ["lamp-1", "lamp-2"] {
        assert_eq!(
            join(&http, &service, &busy, &busy.pin, client).await,
            StatusCode::OK
        );
    }
    assert_eq!(
        join(&http, &service, &busy, &busy.pin, "lamp-3").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // bad_request: a body that is not JSON, on the versioned and the compat route.
    let bad = http
        .post(format!(
            "{}/api/v1/sessions/{}/join",
            service.public, busy.id
        ))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("join");
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let bad_compat = http
        .post(format!("{}/api/joinSession", service.public))
        .json(&json!({ "id": busy.id }))
        .send()
        .await
        .expect("compat join");
    assert!(
        bad_compat.status().is_client_error(),
        "{}",
        bad_compat.status()
    );

    let (page, after) = scrape(&http, &service).await;
    for (outcome, moved) in [
        ("ok", 3.0),
        ("session_full", 1.0),
        ("wrong_pin", 2.0),
        ("locked", 1.0),
        ("rate_limited", 1.0),
        ("bad_request", 2.0),
    ] {
        assert_eq!(
            joins(&after, outcome) - joins(&before, outcome),
            moved,
            "outcome {outcome}:\n{page}"
        );
    }
    assert_eq!(
        value(&after, "ism_join_duration_seconds_count", &[])
            - value(&before, "ism_join_duration_seconds_count", &[]),
        8.0,
        "{page}"
    );
    assert_eq!(value(&after, "ism_sessions_live", &[]), 3.0, "{page}");
    assert!(
        value(
            &after,
            "ism_signer_duration_seconds_count",
            &[("signer", "local")]
        ) >= 3.0,
        "{page}"
    );
    assert!(
        value(&after, "ism_journal_fsync_duration_seconds_count", &[]) >= 1.0,
        "{page}"
    );
    assert!(
        value(&after, "ism_journal_batch_records_sum", &[]) >= 1.0,
        "{page}"
    );

    // Route labels are templates: the joins above count under the pattern, by status.
    let join_route = [("port", "public"), ("route", "/api/v1/sessions/{id}/join")];
    for (status, count) in [
        ("200", 3.0),
        ("409", 1.0),
        ("401", 2.0),
        ("429", 2.0),
        ("400", 1.0),
    ] {
        let labels = [join_route[0], join_route[1], ("status", status)];
        assert_eq!(
            value(&after, "ism_http_requests_total", &labels)
                - value(&before, "ism_http_requests_total", &labels),
            count,
            "status {status}:\n{page}"
        );
    }
    assert!(
        value(
            &after,
            "ism_http_request_duration_seconds_count",
            &join_route
        ) >= 9.0,
        "{page}"
    );
    let label_values: Vec<&String> = after
        .iter()
        .flat_map(|sample| sample.labels.values())
        .collect();
    for session in [&small, &guarded, &busy] {
        assert!(
            label_values
                .iter()
                .all(|value| !value.contains(&session.id)),
            "session id {} in a label:\n{page}",
            session.id
        );
    }
    assert!(service.terminate().success());
}

/// The `x-request-id` of a GET of `url`, sent with `sent` if any.
async fn request_id_of(http: &reqwest::Client, url: &str, sent: Option<&str>) -> String {
    let mut request = http.get(url);
    if let Some(sent) = sent {
        request = request.header("x-request-id", sent);
    }
    let response = request.send().await.expect("request");
    response
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .expect("an x-request-id in the answer")
        .to_owned()
}

#[tokio::test]
async fn request_ids_are_made_or_kept_from_a_trusted_proxy_and_logged() {
    let http = reqwest::Client::new();

    // No trusted proxy: a planted id is replaced by a fresh UUID.
    let dir = tempfile::tempdir().expect("temp dir");
    let service = start(dir.path(), &[]);
    service.wait_until_answering().await;
    let sessions = format!("{}/api/v1/sessions", service.admin);
    let made = request_id_of(&http, &sessions, None).await;
    assert!(uuid::Uuid::parse_str(&made).is_ok(), "{made}");
    let replaced = request_id_of(&http, &sessions, Some("planted-by-anyone")).await;
    assert!(uuid::Uuid::parse_str(&replaced).is_ok(), "{replaced}");
    assert_ne!(made, replaced);
    assert!(service.terminate().success());

    // Loopback is the trusted proxy: its id is kept, and the log line carries it.
    let dir = tempfile::tempdir().expect("temp dir");
    let service = start(
        dir.path(),
        &[("ISM_TRUSTED_PROXIES", "127.0.0.0/8"), ("RUST_LOG", "info")],
    );
    service.wait_until_answering().await;
    let session = create(&http, &service, json!({})).await;
    let join_url = format!("{}/api/v1/sessions/{}/join", service.public, session.id);
    let response = http
        .post(&join_url)
        .header("x-request-id", "proxy-7f3a.1")
        .json(&json!({ "pin": session.pin, "client": "lamp-1" }))
        .send()
        .await
        .expect("join");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response
            .headers()
            .get("x-request-id")
            .and_then(|value| value.to_str().ok()),
        Some("proxy-7f3a.1")
    );
    // An id with a space is not a sane token: replaced even from the proxy.
    let junk = request_id_of(
        &http,
        &format!("{}/api/v1/sessions", service.admin),
        Some("a b"),
    )
    .await;
    assert!(uuid::Uuid::parse_str(&junk).is_ok(), "{junk}");
    let log_path = service.log_path.clone();
    assert!(service.terminate().success());
    let lines: Vec<Value> = std::fs::read_to_string(log_path)
        .expect("log")
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .filter(|line: &Value| line["message"] == "request finished")
        .collect();
    let joined = lines
        .iter()
        .find(|line| line["span"]["request_id"] == "proxy-7f3a.1")
        .unwrap_or_else(|| panic!("no log line with the proxy's request id: {lines:?}"));
    assert_eq!(
        joined["span"]["route"], "/api/v1/sessions/{id}/join",
        "{joined}"
    );
    assert_eq!(joined["span"]["method"], "POST", "{joined}");
    assert_eq!(joined["status"], 200, "{joined}");
    assert!(joined["latency_ms"].is_number(), "{joined}");
    assert_eq!(joined["level"], "INFO", "{joined}");
}
