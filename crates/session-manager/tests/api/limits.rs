//! Brute-force protection: per-session lockout after 5 wrong PINs, per-address limit
//! (IPv6 per /64), X-Forwarded-For honoured only from trusted proxies, a full failure
//! table that still locks; the per-session join quota and default `max_clients`; body
//! size limit.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{error_code, send, spawn_app, spawn_app_with, start_service, wrong_pin};

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
    let app = spawn_app_with(|config| config.limits.lockout_secs = 1).await;
    let created = app.create_session(json!({})).await;
    for _ in 0..5 {
        app.join(&created.id, &wrong_pin(&created.pin), "guesser")
            .await;
    }
    assert_eq!(
        app.join(&created.id, &created.pin, "owner").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    app.advance_clock(std::time::Duration::from_millis(1100));
    assert_eq!(
        app.join(&created.id, &created.pin, "owner").await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_per_address_limit_ignores_forwarded_for_from_untrusted_peers() {
    let app = spawn_app_with(|config| {
        config.limits.ip_max_failures = 3;
        config.limits.session_max_failures = 100;
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
        config.limits.ip_max_failures = 3;
        config.limits.session_max_failures = 100;
        config.listen.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
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
    let app = spawn_app_with(|config| config.listen.max_body_bytes = 1024).await;
    let created = app.create_session(json!({})).await;
    let huge = json!({"pin": created.pin, "client": "x".repeat(4096)});
    let response = send(app.join_request(&created.id, &huge)).await;
    assert_eq!(
        error_code(response, StatusCode::PAYLOAD_TOO_LARGE).await,
        "payload_too_large"
    );
    let response = app.create(json!({"type": "x".repeat(4096)})).await;
    assert_eq!(
        error_code(response, StatusCode::PAYLOAD_TOO_LARGE).await,
        "payload_too_large"
    );
}

/// The attack: fill the failure table with wrong PINs for random syntactically valid ids
/// (from one address here; in the wild from many), then guess one live session's PIN.
/// The lockout must still come on the sixth wrong PIN, and the live session's counter
/// must survive the flood that follows its first failures.
#[tokio::test]
async fn a_full_failure_table_still_locks_a_live_session() {
    const CAPACITY: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let service = start_service(
        dir.path(),
        &[
            ("ISM_THROTTLE_CAPACITY", &CAPACITY.to_string()),
            ("ISM_IP_MAX_FAILURES", "1000000"),
            ("ISM_JOIN_REFUSAL_FLOOR_MS", "0"),
        ],
    );
    let target = service.create_session(json!({})).await;
    let bad = wrong_pin(&target.pin);
    let api = &service.api;
    let flood = |round: usize| {
        let target_id = target.id.clone();
        async move {
            let ids: Vec<String> = (0..CAPACITY * 2)
                .map(|n| format!("{}", 100_000 + round * 10_000 + n))
                .filter(|id| *id != target_id)
                .collect();
            for chunk in ids.chunks(32) {
                let mut requests = tokio::task::JoinSet::new();
                for id in chunk {
                    let request =
                        api.join_request(id, &json!({"pin": "000000", "client": "scanner"}));
                    requests.spawn(async move { request.send().await.expect("request").status() });
                }
                while let Some(status) = requests.join_next().await {
                    assert_eq!(status.expect("request task"), StatusCode::UNAUTHORIZED);
                }
            }
        }
    };
    flood(0).await;
    for round in 1..=5 {
        let response = service.join(&target.id, &bad, "guesser").await;
        assert_eq!(
            error_code(response, StatusCode::UNAUTHORIZED).await,
            "invalid_credentials",
            "wrong PIN {round}"
        );
        // The table overflows again between the guesses.
        flood(round).await;
    }
    let sixth = service.join(&target.id, &bad, "guesser").await;
    assert_eq!(
        error_code(sixth, StatusCode::TOO_MANY_REQUESTS).await,
        "too_many_attempts"
    );
    let right = service.join(&target.id, &target.pin, "owner").await;
    assert_eq!(right.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(right.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn ipv6_clients_are_counted_per_64_behind_a_trusted_proxy() {
    let app = spawn_app_with(|config| {
        config.limits.ip_max_failures = 3;
        config.limits.session_max_failures = 100;
        config.listen.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
        config.limits.join_refusal_floor_ms = Some(0);
    })
    .await;
    let created = app.create_session(json!({})).await;
    // Three addresses of one /64: one network, three failures.
    for host in 1..=3 {
        let address = format!("2001:db8:1:2::{host}");
        let response = app
            .join_from("999999", "000000", "scanner", Some(&address))
            .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let locked = app
        .join_from(&created.id, &created.pin, "x", Some("2001:db8:1:2:ffff::9"))
        .await;
    assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
    let other_network = app
        .join_from(&created.id, &created.pin, "y", Some("2001:db8:1:3::1"))
        .await;
    assert_eq!(other_network.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_join_quota_answers_429_with_retry_after_per_session() {
    let dir = tempfile::tempdir().unwrap();
    let service = start_service(dir.path(), &[("ISM_JOIN_QUOTA_PER_SESSION", "5")]);
    let busy = service.create_session(json!({})).await;
    let quiet = service.create_session(json!({})).await;
    for n in 0..5 {
        let response = service
            .join(&busy.id, &busy.pin, &format!("device-{n}"))
            .await;
        assert_eq!(response.status(), StatusCode::OK, "join {n}");
    }
    let over = service.join(&busy.id, &busy.pin, "device-5").await;
    let retry_after: u64 = over.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "retry-after {retry_after}");
    assert_eq!(
        error_code(over, StatusCode::TOO_MANY_REQUESTS).await,
        "too_many_joins"
    );
    // Another session has its own quota.
    assert_eq!(
        service
            .join(&quiet.id, &quiet.pin, "device-0")
            .await
            .status(),
        StatusCode::OK
    );
    service.stop();
}

#[tokio::test]
async fn sessions_created_without_max_clients_get_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let service = start_service(dir.path(), &[("ISM_DEFAULT_MAX_CLIENTS", "2")]);
    let limited = service.create_session(json!({})).await;
    assert_eq!(limited.body["max_clients"], 2);
    for name in ["a", "b"] {
        assert_eq!(
            service.join(&limited.id, &limited.pin, name).await.status(),
            StatusCode::OK
        );
    }
    assert_eq!(
        error_code(
            service.join(&limited.id, &limited.pin, "c").await,
            StatusCode::CONFLICT
        )
        .await,
        "session_full"
    );
    // A name that joined before may join again.
    assert_eq!(
        service.join(&limited.id, &limited.pin, "a").await.status(),
        StatusCode::OK
    );
    // An explicit value wins; the compat route gets the default too.
    let explicit = service.create_session(json!({"max_clients": 3})).await;
    assert_eq!(explicit.body["max_clients"], 3);
    let compat: serde_json::Value = service.compat_create("?type=x").await.json().await.unwrap();
    let id = compat["id"].as_str().unwrap();
    let view: serde_json::Value = service.get_session(id).await.json().await.unwrap();
    assert_eq!(view["max_clients"], 2);
    service.stop();
}
