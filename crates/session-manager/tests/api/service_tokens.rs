//! The service-token admin API: issuing (the token verifies against the served JWKS and
//! carries exactly the grants asked for, under the reserved `$svc-<name>` identity),
//! refusing every grant that could reach `$CONTROL` or write a session's system
//! sub-trees with a 400 naming the filter, listing without the token, and revoking
//! durably (across a restart). What the broker does with a revocation is tested against a
//! real Mosquitto in `tests/service_tokens_broker.rs`.

use reqwest::StatusCode;
use serde_json::{json, Value};
use session_manager::clock::Clock as _;
use session_token::{Acl, TokenVerifier, CONTROL_TOPIC};

use crate::event_stream::EventStream;
use crate::helpers::{error_code, sorted_keys, spawn_app, spawn_app_in};

#[tokio::test]
async fn an_issued_token_grants_exactly_what_was_asked_under_a_reserved_identity() {
    let app = spawn_app().await;
    let response = app
        .create_service_token(json!({
            "name": "backend-1",
            "subscribe": ["/+/#"],
            "publish": ["/+/#"],
            "ttl_secs": 7200
        }))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        sorted_keys(&body),
        [
            "client_id",
            "expires_at",
            "issued_at",
            "jti",
            "name",
            "publish",
            "revoked",
            "subscribe",
            "token",
            "username"
        ]
    );
    let jti = body["jti"].as_str().unwrap();
    assert_eq!(location, format!("/api/v1/service-tokens/{jti}"));
    assert_eq!(body["name"], "backend-1");
    assert_eq!(body["client_id"], "$svc-backend-1");
    assert_eq!(body["username"], "$svc-backend-1");
    assert_eq!(body["revoked"], false);

    let now = app.clock.unix_now();
    let claims = TokenVerifier::new(app.served_keys().await)
        .with_issuer("ism")
        .verify(body["token"].as_str().unwrap(), now)
        .expect("verifies against the served JWKS");
    assert_eq!(claims.sub, "$svc-backend-1");
    assert_eq!(claims.sid, "");
    assert_eq!(claims.jti, jti);
    assert_eq!(claims.exp, claims.iat + 7200);
    assert_eq!(body["expires_at"].as_u64(), Some(claims.exp));
    assert_eq!(claims.subs, ["/+/#"]);
    assert_eq!(claims.publ, ["/+/#"]);
    let acl = Acl::from_claims(&claims).unwrap();
    assert!(acl.may_publish("/123456/lamp/cmd"));
    assert!(!acl.may_publish(CONTROL_TOPIC));
    assert!(!acl.may_subscribe("$CONTROL/#"));

    let default_ttl = app
        .create_service_token(json!({"name": "reader", "subscribe": ["/+/telemetry/#"]}))
        .await;
    assert_eq!(default_ttl.status(), StatusCode::CREATED);
    let default_ttl: Value = default_ttl.json().await.unwrap();
    assert_eq!(
        default_ttl["expires_at"].as_u64(),
        Some(now + 30 * 24 * 3600),
        "30 days by default"
    );
    assert_eq!(default_ttl["publish"], json!([]));

    let listed = app.service_tokens().await;
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["jti"], jti);
    assert!(
        listed.iter().all(|token| token.get("token").is_none()),
        "{listed:?}"
    );
    assert_eq!(listed[0]["subscribe"], json!(["/+/#"]));
}

#[tokio::test]
async fn grants_that_could_reach_control_or_system_topics_are_refused_naming_the_filter() {
    let app = spawn_app().await;
    for (list, filter) in [
        ("subscribe", "$CONTROL/#"),
        ("subscribe", "#"),
        ("subscribe", "+/#"),
        ("publish", "$CONTROL/session-auth/v1"),
        ("subscribe", "$share/g/$CONTROL/#"),
        ("subscribe", "$CONTROL/session-auth/v1/presence"),
        ("publish", "$SYS/broker"),
        ("publish", "/+/$presence/#"),
        ("publish", "/+/$conductor/state"),
        ("subscribe", "/a/#/b"),
        ("publish", ""),
    ] {
        let mut body = json!({"name": "attacker"});
        body[list] = json!(["/+/#", filter]);
        let response = app.create_service_token(body).await;
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "{list} {filter}"
        );
        let body: Value = response.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("{list} filter {filter:?}")),
            "{list} {filter}: {message}"
        );
    }
    assert!(app.service_tokens().await.is_empty(), "nothing was issued");
}

#[tokio::test]
async fn bad_requests_get_a_clear_400() {
    let app = spawn_app().await;
    for body in [
        json!({"subscribe": ["/+/#"]}),
        json!({"name": "$svc-x", "subscribe": ["/+/#"]}),
        json!({"name": "has space", "subscribe": ["/+/#"]}),
        json!({"name": "x".repeat(65), "subscribe": ["/+/#"]}),
        json!({"name": "b"}),
        json!({"name": "b", "subscribe": [], "publish": []}),
        json!({"name": "b", "subscribe": ["/+/#"], "ttl_secs": 0}),
        json!({"name": "b", "subscribe": ["/+/#"], "ttl_secs": 366 * 24 * 3600 + 1}),
        json!({"name": "b", "subscribe": ["/+/#"], "ttl_secs": -1}),
        json!({"name": "b", "subscribe": "/+/#"}),
        json!({"name": "b", "subscribe": ["/+/#"], "sid": "123"}),
        json!({"name": "b", "subscribe": vec!["/x"; 65]}),
    ] {
        let response = app.create_service_token(body.clone()).await;
        assert_eq!(
            error_code(response, StatusCode::BAD_REQUEST).await,
            "invalid_request",
            "{body}"
        );
    }
    let unknown = app
        .revoke_service_token("00000000-0000-4000-8000-000000000000")
        .await;
    assert_eq!(
        error_code(unknown, StatusCode::NOT_FOUND).await,
        "not_found"
    );
    let garbage = app.revoke_service_token("not%20a%20jti").await;
    assert_eq!(
        error_code(garbage, StatusCode::NOT_FOUND).await,
        "not_found"
    );
}

#[tokio::test]
async fn issuing_and_revoking_are_events_outside_every_session() {
    let app = spawn_app().await;
    let mut all = EventStream::open(&app.client, &app.admin_url, "").await;
    let created = app.create_session(json!({})).await;
    let mut of_session = EventStream::open(
        &app.client,
        &app.admin_url,
        &format!("?session={}", created.id),
    )
    .await;
    let issued: Value = app
        .issue_service_token(json!({"name": "backend-1", "publish": ["/+/#"]}))
        .await;
    let jti = issued["jti"].as_str().unwrap();
    app.revoke_service_token(jti).await;
    app.revoke_service_token(jti).await;
    app.close(&created.id).await;
    let wait = std::time::Duration::from_secs(5);
    let types: Vec<(String, Value)> = {
        let mut seen = Vec::new();
        while seen.len() < 4 {
            let frame = all.next(wait).await.expect("a frame");
            seen.push((frame.event, frame.data));
        }
        seen
    };
    assert_eq!(types[0].0, "session_created");
    assert_eq!(types[1].0, "service_token_issued");
    assert_eq!(types[1].1["data"]["jti"], jti);
    assert_eq!(types[1].1["data"]["name"], "backend-1");
    assert_eq!(types[1].1["data"]["expires_at"], issued["expires_at"]);
    assert_eq!(types[2].0, "service_token_revoked", "announced once");
    assert_eq!(types[2].1["data"]["jti"], jti);
    assert_eq!(types[3].0, "session_closed");
    let first = of_session.next(wait).await.expect("a frame");
    assert_eq!(
        first.event, "session_closed",
        "a session's stream carries none of them"
    );
}

#[tokio::test]
async fn a_revocation_is_listed_and_survives_a_restart() {
    let app = spawn_app().await;
    let issued: Value = app
        .issue_service_token(json!({"name": "backend-1", "publish": ["/+/#"]}))
        .await;
    let kept: Value = app
        .issue_service_token(json!({"name": "backend-2", "publish": ["/+/#"]}))
        .await;
    let jti = issued["jti"].as_str().unwrap();
    assert_eq!(
        app.revoke_service_token(jti).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.revoke_service_token(jti).await.status(),
        StatusCode::NO_CONTENT,
        "revoking again is harmless"
    );
    let listed = app.service_tokens().await;
    assert_eq!(listed[0]["revoked"], true);
    let revoked_at = listed[0]["revoked_at"].as_u64().unwrap();
    assert_eq!(listed[1]["revoked"], false);
    assert!(listed[1].get("revoked_at").is_none());

    let data_dir = app.stop().await;
    let app = spawn_app_in(data_dir, |_| {}).await;
    let listed = app.service_tokens().await;
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["jti"], jti);
    assert_eq!(listed[0]["revoked_at"].as_u64(), Some(revoked_at));
    assert_eq!(listed[1]["jti"], kept["jti"]);

    // Once expired, a token is neither listed nor revocable.
    app.advance_clock(std::time::Duration::from_secs(31 * 24 * 3600));
    assert!(app.service_tokens().await.is_empty());
    let gone = app
        .revoke_service_token(kept["jti"].as_str().unwrap())
        .await;
    assert_eq!(error_code(gone, StatusCode::NOT_FOUND).await, "not_found");
}
