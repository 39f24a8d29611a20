//! The `unavailable` join outcome, for real: the data directory is a small tmpfs filled
//! with a ballast file, so the join record cannot be written; the refused joins count as
//! `ism_joins_total{outcome="unavailable"}` and the signer is never asked.
//!
//! Needs root (or CAP_SYS_ADMIN) for `mount -t tmpfs`; without it the test fails saying so.

#[path = "support/tmpfs.rs"]
mod tmpfs;

use reqwest::StatusCode;
use serde_json::json;
use test_support::service::Launch;
use test_support::session_api;
use tmpfs::Tmpfs;

/// `name{labels}` on the admin port's `/metrics`, 0 when absent.
async fn sample(http: &reqwest::Client, admin: &str, series: &str) -> f64 {
    let page = http
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("the page");
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn joins_the_store_cannot_record_count_as_unavailable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let tmpfs = Tmpfs::mount(&data_dir, "2m");
    let service = Launch::new()
        .data_dir(&data_dir)
        .env("ISM_JOIN_REFUSAL_FLOOR_MS", "1")
        .log_file(dir.path().join("service.log"))
        .start();
    service.wait_until_answering().await;
    let http = reqwest::Client::new();
    let session = session_api::create_session(&http, &service.admin, &json!({})).await;
    let unavailable = r#"ism_joins_total{outcome="unavailable"}"#;
    let signed = r#"ism_signer_duration_seconds_count{signer="local"}"#;
    assert_eq!(sample(&http, &service.admin, unavailable).await, 0.0);

    tmpfs.fill();
    // The journal's last page may still take a record or two; the disk takes no more.
    let mut joined = 0;
    let refused = loop {
        let response = session_api::join(
            &http,
            &service.public,
            &session.id,
            &session.pin,
            &format!("lamp-{joined}"),
        )
        .await;
        if response.status() != StatusCode::OK {
            break response.status();
        }
        joined += 1;
        assert!(joined < 100, "the full disk takes every join");
    };
    assert_eq!(refused, StatusCode::SERVICE_UNAVAILABLE);
    let signatures = sample(&http, &service.admin, signed).await;
    let again = session_api::join(&http, &service.public, &session.id, &session.pin, "late")
        .await
        .status();
    assert_eq!(again, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(sample(&http, &service.admin, unavailable).await, 2.0);
    assert_eq!(
        sample(&http, &service.admin, signed).await,
        signatures,
        "a join that was not recorded was signed"
    );
    assert!(service.terminate().success());
    drop(tmpfs);
}
