//! The log as operators read it, from the real binary with stderr in a file: no colour
//! codes outside a terminal, healthchecks below INFO, and a broker that is still coming
//! up does not fill the log with warnings.

use std::time::{Duration, Instant};

use serde_json::Value;
use test_support::service::{Launch, Service};

/// The JSON log lines of `service` so far.
fn json_lines(service: &Service) -> Vec<Value> {
    service
        .log()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// Starts the service with `env`, its log in `dir`, and makes one admin request.
async fn service_after_one_admin_request(dir: &std::path::Path, env: &[(&str, &str)]) -> Service {
    let service = Launch::new()
        .data_dir(&dir.join("data"))
        .envs(env)
        .log_file(dir.join("service.log"))
        .start();
    service.wait_until_answering().await;
    let response = reqwest::Client::new()
        .get(format!("{}/api/v1/sessions", service.admin))
        .send()
        .await
        .expect("request");
    assert!(response.status().is_success(), "{}", response.status());
    service
}

fn level(line: &Value) -> &str {
    line["level"].as_str().unwrap_or("")
}

#[tokio::test]
async fn pretty_logs_written_to_a_file_carry_no_colour_codes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let service = service_after_one_admin_request(
        dir.path(),
        &[("ISM_LOG_FORMAT", "pretty"), ("RUST_LOG", "info")],
    )
    .await;
    let log_path = service.log_path.clone();
    assert!(service.terminate().success());
    let log = std::fs::read(&log_path).expect("the log file");
    let text = String::from_utf8_lossy(&log);
    assert!(text.contains("listening"), "{text}");
    assert!(
        !log.contains(&0x1b),
        "escape codes in a log that is not a terminal:\n{text}"
    );
}

#[tokio::test]
async fn healthchecks_are_logged_at_debug_not_info() {
    let dir = tempfile::tempdir().expect("temp dir");
    let service =
        service_after_one_admin_request(dir.path(), &[("RUST_LOG", "session_manager=debug")]).await;
    let http = reqwest::Client::new();
    for base in [&service.admin, &service.public, &service.admin] {
        let response = http
            .get(format!("{base}/healthz"))
            .send()
            .await
            .expect("healthz");
        assert!(response.status().is_success());
    }
    let path = service.log_path.clone();
    assert!(service.terminate().success());
    let lines: Vec<Value> = std::fs::read_to_string(path)
        .expect("log")
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .filter(|line: &Value| line["message"] == "request finished")
        .collect();
    let of_path = |path: &str| -> Vec<&Value> {
        lines
            .iter()
            .filter(|line| line["span"]["path"] == path)
            .collect()
    };
    let probes = of_path("/healthz");
    assert!(probes.len() >= 3, "{lines:?}");
    assert!(
        probes.iter().all(|line| level(line) == "DEBUG"),
        "{probes:?}"
    );
    let others = of_path("/api/v1/sessions");
    assert!(
        !others.is_empty() && others.iter().all(|line| level(line) == "INFO"),
        "{others:?}"
    );
}

#[tokio::test]
async fn a_broker_still_coming_up_is_not_a_warning() {
    // A port nothing listens on: the broker is not up yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let dir = tempfile::tempdir().expect("temp dir");
    let service = Launch::new()
        .data_dir(&dir.path().join("data"))
        .env("RUST_LOG", "session_manager=debug")
        .env("ISM_BROKER_CONTROL_URL", format!("mqtt://127.0.0.1:{port}"))
        .start();
    let mentions_the_link = |line: &Value| {
        line["message"]
            .as_str()
            .is_some_and(|message| message.contains("revocation link"))
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let failures = json_lines(&service)
            .into_iter()
            .filter(|line| mentions_the_link(line) && line["error"].is_string())
            .count();
        if failures >= 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "fewer than 3 connection attempts logged:\n{}",
            service.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let warnings: Vec<Value> = json_lines(&service)
        .into_iter()
        .filter(|line| level(line) == "WARN" || level(line) == "ERROR")
        .filter(|line| mentions_the_link(line) || line["broker"].is_string())
        .collect();
    assert!(warnings.is_empty(), "warnings at start-up: {warnings:?}");
    let first = json_lines(&service)
        .into_iter()
        .find(|line| mentions_the_link(line) && line["error"].is_string())
        .expect("a failure line");
    assert_eq!(level(&first), "INFO", "{first}");
    assert!(service.terminate().success());
}
