//! Brute-force protection: per-session lockout after 5 wrong PINs, per-address limit,
//! X-Forwarded-For honoured only from trusted proxies; body size limit.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{error_code, spawn_app, spawn_app_with, wrong_pin};

#[tokio::test]
async fn five_wrong_pins_lock_the_session_with_retry_after() {
    let app = spawn_app().await;
    let created = app.create_session(json!({})).await;
    let other = app.create_session(json!({})).await;
    let bad = wrong_pin(&created.pin);
    for _ in 0..5 {
        let response = app.join(&created.id, &bad, "guesser").await;
        assert_eq!(
            error_code(response, StatusCode::UNAUTHORIZED).await,
            "invalid_credentials"
        );
    }
    // Locked now: even the right PIN is refused until the back-off ends.
    let response = app.join(&created.id, &created.pin, "owner").await;
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=300).contains(&retry_after),
        "retry-after {retry_after}"
    );
    assert_eq!(
        error_code(response, StatusCode::TOO_MANY_REQUESTS).await,
        "too_many_attempts"
    );
    // Other sessions are not affected.
    assert_eq!(
        app.join(&other.id, &other.pin, "owner").await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_lockout_ends_after_the_configured_back_off() {
    let app = spawn_app_with(|config| config.lockout_secs = 1).await;
    let created = app.create_session(json!({})).await;
    for _ in 0..5 {
        app.join(&created.id, &wrong_pin(&created.pin), "guesser")
            .await;
    }
    assert_eq!(
        app.join(&created.id, &created.pin, "owner").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        app.join(&created.id, &created.pin, "owner").await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_per_address_limit_ignores_forwarded_for_from_untrusted_peers() {
    let app = spawn_app_with(|config| {
        config.ip_max_failures = 3;
        config.session_max_failures = 100;
    })
    .await;
    let created = app.create_session(json!({})).await;
    // Each guess claims another address, but the peer is not a trusted proxy.
    for n in 0..3 {
        let spoofed = format!("198.51.100.{n}");
        let response = app
            .join_from("999999", "000000", "scanner", Some(&spoofed))
            .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let response = app
        .join_from(&created.id, &created.pin, "scanner", Some("203.0.113.50"))
        .await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn the_per_address_limit_uses_forwarded_for_from_a_trusted_proxy() {
    let app = spawn_app_with(|config| {
        config.ip_max_failures = 3;
        config.session_max_failures = 100;
        config.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let created = app.create_session(json!({})).await;
    for _ in 0..3 {
        let response = app
            .join_from("999999", "000000", "scanner", Some("198.51.100.1"))
            .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let locked = app
        .join_from(&created.id, &created.pin, "scanner", Some("198.51.100.1"))
        .await;
    assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
    // A different client behind the same proxy is not locked.
    let other = app
        .join_from(&created.id, &created.pin, "device", Some("198.51.100.2"))
        .await;
    assert_eq!(other.status(), StatusCode::OK);
}

#[tokio::test]
async fn bodies_over_the_limit_get_413() {
    let app = spawn_app_with(|config| config.max_body_bytes = 1024).await;
    let created = app.create_session(json!({})).await;
    let huge = json!({"pin": created.pin, "client": "x".repeat(4096)});
    let response = app
        .client
        .post(format!(
            "{}/api/v1/sessions/{}/join",
            app.public_url, created.id
        ))
        .json(&huge)
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(response, StatusCode::PAYLOAD_TOO_LARGE).await,
        "payload_too_large"
    );
    let response = app
        .client
        .post(format!("{}/api/v1/sessions", app.admin_url))
        .json(&json!({"type": "x".repeat(4096)}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(response, StatusCode::PAYLOAD_TOO_LARGE).await,
        "payload_too_large"
    );
}
