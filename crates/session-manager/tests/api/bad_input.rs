//! Bad input never yields a 500: every malformed request gets the right 4xx and the JSON
//! error body.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{error_code, send, spawn_app, with_raw_body};

#[tokio::test]
async fn malformed_join_bodies_get_400() {
    let app = spawn_app().await;
    let created = app.create_session(json!({})).await;
    let join_path = format!("/api/v1/sessions/{}/join", created.id);
    let bodies = [
        "not json",
        "{",
        "[]",
        "null",
        r#"{"pin": "123456"}"#,
        r#"{"client": "x"}"#,
        r#"{"pin": 123456, "client": "x"}"#,
        r#"{"pin": "123456", "client": 5}"#,
        r#"{"pin": "12", "client": "x"}"#,
        r#"{"pin": "12a456", "client": "x"}"#,
        r#"{"pin": "123456", "client": ""}"#,
        r#"{"pin": "123456", "client": "   "}"#,
        r#"{"pin": "123456", "client": "a/b"}"#,
        r#"{"pin": "123456", "client": "a+b"}"#,
        r#"{"pin": "123456", "client": "a#b"}"#,
        r#"{"pin": "123456", "client": "a\u0000b"}"#,
        r#"{"pin": "123456", "client": "a\nb"}"#,
    ];
    for body in bodies {
        let request = app.public(Method::POST, &join_path);
        let response = send(with_raw_body(request, Some("application/json"), body)).await;
        assert_eq!(
            error_code(response, StatusCode::BAD_REQUEST).await,
            "invalid_request",
            "{body}"
        );
    }
    let too_long = json!({"pin": created.pin, "client": "x".repeat(65)});
    let response = send(app.join_request(&created.id, &too_long)).await;
    assert_eq!(
        error_code(response, StatusCode::BAD_REQUEST).await,
        "invalid_request"
    );
}

#[tokio::test]
async fn the_wrong_content_type_gets_415() {
    let app = spawn_app().await;
    let created = app.create_session(json!({})).await;
    let body = json!({"pin": created.pin, "client": "x"}).to_string();
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let request = app.public(
            Method::POST,
            &format!("/api/v1/sessions/{}/join", created.id),
        );
        let response = send(with_raw_body(request, content_type, body.clone())).await;
        assert_eq!(
            error_code(response, StatusCode::UNSUPPORTED_MEDIA_TYPE).await,
            "unsupported_media_type",
            "{content_type:?}"
        );
    }
    let request = app.admin(Method::POST, "/api/v1/sessions");
    let response = send(with_raw_body(
        request,
        Some("text/plain"),
        r#"{"type":"x"}"#,
    ))
    .await;
    assert_eq!(
        error_code(response, StatusCode::UNSUPPORTED_MEDIA_TYPE).await,
        "unsupported_media_type"
    );
}

#[tokio::test]
async fn bad_session_ids_get_400() {
    let app = spawn_app().await;
    for id in [
        "abc",
        "12a4",
        "0x10",
        "123456789012345678901234567890123",
        "%20",
    ] {
        let response = app.join(id, "123456", "x").await;
        assert_eq!(
            error_code(response, StatusCode::BAD_REQUEST).await,
            "invalid_request",
            "join {id}"
        );
        let response = app.admin_get(&format!("/api/v1/sessions/{id}")).await;
        assert_eq!(
            error_code(response, StatusCode::BAD_REQUEST).await,
            "invalid_request",
            "get {id}"
        );
    }
}

#[tokio::test]
async fn malformed_create_bodies_get_400() {
    let app = spawn_app().await;
    let bodies = [
        "nope",
        r#"{"type": 5}"#,
        r#"{"type": "has space"}"#,
        r#"{"type": ""}"#,
        r#"{"ttl_secs": -1}"#,
        r#"{"ttl_secs": 0}"#,
        r#"{"ttl_secs": "60"}"#,
        r#"{"max_clients": 0}"#,
        r#"{"max_clients": 1.5}"#,
        r#"{"max_clients": 99999999999}"#,
        r#"{"unknown_field": 1}"#,
    ];
    for body in bodies {
        let request = app.admin(Method::POST, "/api/v1/sessions");
        let response = send(with_raw_body(request, Some("application/json"), body)).await;
        assert_eq!(
            error_code(response, StatusCode::BAD_REQUEST).await,
            "invalid_request",
            "{body}"
        );
    }
    let response = app.admin_get("/api/createSession?type=bad%20type").await;
    assert_eq!(
        error_code(response, StatusCode::BAD_REQUEST).await,
        "invalid_request"
    );
}

#[tokio::test]
async fn malformed_compat_joins_get_400() {
    let app = spawn_app().await;
    for body in [
        json!({}),
        json!({"id": "123456", "pin": "123456"}),
        json!({"id": "abc", "pin": "123456", "client": "x"}),
        json!({"id": "123456", "pin": "x", "client": "x"}),
        json!({"id": [1], "pin": "123456", "client": "x"}),
        json!({"id": "123456", "pin": "123456", "client": "a/b"}),
    ] {
        let response = app.compat_join(body.clone()).await;
        assert_eq!(
            error_code(response, StatusCode::BAD_REQUEST).await,
            "invalid_request",
            "{body}"
        );
    }
}

#[tokio::test]
async fn client_names_the_broker_refuses_or_that_hide_characters_get_400_at_join() {
    let dir = tempfile::tempdir().unwrap();
    let service = crate::helpers::start_service(dir.path(), &[]);
    let created = service.create_session(json!({})).await;
    for (name, says) in [
        ("lamp\u{FFFE}", "non-characters"),
        ("\u{FDD0}lamp", "non-characters"),
        ("lamp\u{10FFFF}", "non-characters"),
        ("lamp\u{202E}pmal", "invisible"),
        ("a\u{2066}b\u{2069}", "invisible"),
        ("lamp\u{200B}", "invisible"),
        ("\u{FEFF}lamp", "invisible"),
        ("la\u{2060}mp", "invisible"),
        ("$SYS", "reserved"),
        ("$control-link", "reserved"),
    ] {
        let response = service.join(&created.id, &created.pin, name).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{name:?}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_request");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{name:?}: {message}");
    }
    // Nothing was recorded for the refused names.
    let view: serde_json::Value = service.get_session(&created.id).await.json().await.unwrap();
    assert_eq!(view["clients"].as_array().unwrap().len(), 0);
    service.stop();
}
