//! The public API: joining, the same 401 for every bad credential, limits per session,
//! TTL expiry, CORS, JSON 404/405.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{error_code, send, spawn_app, spawn_app_with, wrong_pin};

#[tokio::test]
async fn join_returns_mqtt_credentials() {
    let app = spawn_app().await;
    let created = app.create_session(json!({})).await;
    let response = app.join(&created.id, &created.pin, "lamp-1").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["username"], "lamp-1");
    // Session-scoped: no device of another session can connect under it.
    assert_eq!(body["client_id"], format!("{}/lamp-1", created.id));
    assert_eq!(body["session_id"], created.id.as_str());
    assert_eq!(body["topic_root"], format!("/{}/", created.id));
    assert!(body["token"].as_str().unwrap().split('.').count() == 3);
    assert!(body["expires_at"].as_u64().unwrap() > created.body["created_at"].as_u64().unwrap());
}

#[tokio::test]
async fn wrong_pin_and_unknown_session_look_identical() {
    let app = spawn_app().await;
    let created = app.create_session(json!({})).await;
    let wrong = app
        .join(&created.id, &wrong_pin(&created.pin), "lamp")
        .await;
    let unknown = app.join("999999", &created.pin, "lamp").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    let wrong: Value = wrong.json().await.unwrap();
    let unknown: Value = unknown.json().await.unwrap();
    assert_eq!(wrong, unknown);
    assert_eq!(wrong["error"]["code"], "invalid_credentials");
}

#[tokio::test]
async fn max_clients_is_enforced_but_a_known_client_may_rejoin() {
    let app = spawn_app().await;
    let created = app.create_session(json!({"max_clients": 2})).await;
    assert_eq!(
        app.join(&created.id, &created.pin, "a").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.join(&created.id, &created.pin, "b").await.status(),
        StatusCode::OK
    );
    let third = app.join(&created.id, &created.pin, "c").await;
    assert_eq!(
        error_code(third, StatusCode::CONFLICT).await,
        "session_full"
    );
    assert_eq!(
        app.join(&created.id, &created.pin, "a").await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn an_expired_session_refuses_joins_and_leaves_the_listing() {
    let app = spawn_app().await;
    let created = app.create_session(json!({"ttl_secs": 1})).await;
    let response = app.join(&created.id, &created.pin, "early").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["expires_at"].as_u64().unwrap() <= created.body["expires_at"].as_u64().unwrap(),
        "a token must not outlive its session"
    );
    app.advance_clock(Duration::from_secs(2));
    let late = app.join(&created.id, &created.pin, "late").await;
    assert_eq!(
        error_code(late, StatusCode::UNAUTHORIZED).await,
        "invalid_credentials"
    );
    let get = app.get_session(&created.id).await;
    assert_eq!(get.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.listed_sessions().await, json!([]));
}

#[tokio::test]
async fn dev_no_auth_hands_out_the_client_name_as_token() {
    let app = spawn_app_with(|config| {
        config.signing.auth_mode = session_manager::config::AuthMode::DevNoAuth;
    })
    .await;
    let created = app.create_session(json!({})).await;
    let body: Value = app.join_body(&created.id, &created.pin, "lamp-7").await;
    assert_eq!(body["token"], "lamp-7");
    let jwks: Value = app.jwks().await.json().await.unwrap();
    assert_eq!(jwks, json!({"keys": []}));
}

#[tokio::test]
async fn cors_preflight_allows_a_page_from_another_origin_to_join() {
    let app = spawn_app().await;
    let preflight = app
        .public(Method::OPTIONS, "/api/v1/sessions/123456/join")
        .header("origin", "https://demo.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type");
    let response = send(preflight).await;
    assert!(response.status().is_success());
    let headers = response.headers();
    assert_eq!(headers["access-control-allow-origin"], "*");
    assert!(headers["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("POST"));
    assert!(headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase()
        .contains("content-type"));

    let created = app.create_session(json!({})).await;
    let join = app
        .join_request(
            &created.id,
            &json!({"pin": created.pin, "client": "browser"}),
        )
        .header("origin", "https://demo.example");
    let response = send(join).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
}

#[tokio::test]
async fn the_admin_port_has_no_cors() {
    let app = spawn_app().await;
    let response = send(
        app.admin(Method::GET, "/api/v1/sessions")
            .header("origin", "https://evil.example"),
    )
    .await;
    assert!(response
        .headers()
        .get("access-control-allow-origin")
        .is_none());
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors_on_both_ports() {
    let app = spawn_app().await;
    for response in [app.public_get("/nope").await, app.admin_get("/nope").await] {
        assert_eq!(
            error_code(response, StatusCode::NOT_FOUND).await,
            "not_found"
        );
    }
    let response = app.public_get("/api/v1/sessions/123456/join").await;
    assert_eq!(
        error_code(response, StatusCode::METHOD_NOT_ALLOWED).await,
        "method_not_allowed"
    );
    let response = send(app.admin(Method::PUT, "/api/v1/sessions")).await;
    assert_eq!(
        error_code(response, StatusCode::METHOD_NOT_ALLOWED).await,
        "method_not_allowed"
    );
}

#[tokio::test]
async fn the_admin_api_is_not_on_the_public_port() {
    let app = spawn_app().await;
    let response = send(app.public(Method::POST, "/api/v1/sessions")).await;
    assert!(matches!(
        response.status(),
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
    ));
    let response = app.public_get("/api/createSession").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}
