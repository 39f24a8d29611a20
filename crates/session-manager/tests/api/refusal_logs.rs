//! A burst of refused joins writes a bounded number of log lines that still account for
//! every refusal: the first of each source at once, the repeats as counts, lockouts
//! always; no INFO access-log line per 401/429. Against the real binary.

use std::sync::Arc;

use serde_json::{json, Value};
use test_support::service::Launch;
use test_support::session_api::{create_session, join};

const REFUSALS: usize = 600;
const CONNECTIONS: usize = 16;

#[tokio::test]
async fn a_burst_of_wrong_pins_logs_a_few_lines_that_carry_the_counts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let service = Launch::new()
        .data_dir(&dir.path().join("data"))
        .env("RUST_LOG", "info")
        .env("ISM_JOIN_REFUSAL_FLOOR_MS", "0")
        .log_file(dir.path().join("service.log"))
        .start();
    service.wait_until_answering().await;
    let http = reqwest::Client::new();
    let session = create_session(&http, &service.admin, &json!({})).await;
    let wrong_pin = if session.pin == "000000" {
        "000001"
    } else {
        "000000"
    };

    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (http, public, id, next) = (
                http.clone(),
                service.public.clone(),
                session.id.clone(),
                Arc::clone(&next),
            );
            tokio::spawn(async move {
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < REFUSALS {
                    let status = join(&http, &public, &id, wrong_pin, "intruder")
                        .await
                        .status();
                    assert!(status == 401 || status == 429, "{status}");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("worker");
    }
    // Stopping flushes the counts of the unfinished interval.
    let log_path = service.log_path.clone();
    assert!(service.terminate().success());
    let lines: Vec<Value> = std::fs::read_to_string(&log_path)
        .expect("log")
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let message = |line: &Value| line["message"].as_str().unwrap_or("").to_owned();
    let about_refusals: Vec<&Value> = lines
        .iter()
        .filter(|line| {
            let message = message(line);
            message.starts_with("join refus") || message.contains("locking it")
        })
        .collect();
    assert!(
        about_refusals.len() <= 20,
        "{} lines about {REFUSALS} refusals:\n{about_refusals:#?}",
        about_refusals.len()
    );
    // Every refusal is accounted for under the client's network: logged at once, or
    // counted in a "repeated" line.
    let at_once = about_refusals
        .iter()
        .filter(|line| message(line).starts_with("join refused"))
        .count() as u64;
    let counted: u64 = about_refusals
        .iter()
        .filter(|line| {
            message(line) == "join refusals repeated" && line["client_network"].is_string()
        })
        .map(|line| line["count"].as_u64().expect("count"))
        .sum();
    assert_eq!(at_once + counted, REFUSALS as u64, "{about_refusals:#?}");
    // The lockout of the session is logged as it happens.
    assert!(
        about_refusals
            .iter()
            .any(|line| message(line).contains("locking it")
                && line["session_id"] == session.id.as_str()),
        "{about_refusals:#?}"
    );
    // No access-log line at INFO for the refusals.
    let refused_access_lines = lines
        .iter()
        .filter(|line| message(line) == "request finished")
        .filter(|line| line["status"] == 401 || line["status"] == 429)
        .count();
    assert_eq!(refused_access_lines, 0);
}
