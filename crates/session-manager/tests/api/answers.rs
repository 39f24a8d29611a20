//! Answers a newcomer can act on, from the real binary: a route asked on the wrong port
//! says which port serves it, a refused admin request names the header it needs, and a
//! bad JSON body names the field and what was expected.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::{send, start_service, with_raw_body, Api};

/// The status and the JSON error's (code, message).
async fn error_of(response: reqwest::Response) -> (StatusCode, String, String) {
    let status = response.status();
    let body: Value = response.json().await.expect("a JSON error body");
    let text = |field: &str| {
        body["error"][field]
            .as_str()
            .unwrap_or_else(|| panic!("no error.{field} in {body}"))
            .to_owned()
    };
    (status, text("code"), text("message"))
}

/// Sends `request` with a JSON body, asserts the 404 `not_found` a route on the wrong port
/// gets, and returns its message.
async fn wrong_port_message(request: reqwest::RequestBuilder, what: &str) -> String {
    let request = with_raw_body(request, Some("application/json"), "{}");
    let (status, code, message) = error_of(send(request).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::NOT_FOUND, "not_found"),
        "{what}: {message}"
    );
    message
}

#[tokio::test]
async fn a_route_on_the_wrong_port_says_which_port_serves_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let service = start_service(dir.path(), &[]);
    let public_addr = service.public_addr.to_string();
    let on_admin = [
        (Method::POST, "/api/v1/sessions/123456789/join"),
        (Method::POST, "/api/joinSession"),
        (Method::GET, "/.well-known/jwks.json"),
    ];
    for (method, path) in on_admin {
        let request = service.admin(method.clone(), path);
        let message = wrong_port_message(request, &format!("{method} {path}")).await;
        assert!(
            message.contains("public port") && message.contains(&public_addr),
            "{method} {path}: {message}"
        );
    }
    let on_public = [
        (Method::POST, "/api/v1/sessions"),
        (Method::GET, "/api/v1/sessions/123456789"),
        (Method::GET, "/api/createSession"),
    ];
    for (method, path) in on_public {
        let request = service.public(method.clone(), path);
        let message = wrong_port_message(request, &format!("{method} {path}")).await;
        assert!(message.contains("admin port"), "{method} {path}: {message}");
    }
    // A path neither port serves is a plain 404.
    let (status, _, message) = error_of(service.admin_get("/nowhere").await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!message.contains("port"), "{message}");
    service.stop();
}

#[tokio::test]
async fn a_refused_admin_request_names_the_header_it_needs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let hash = session_manager::admin_auth::hash_admin_key("door-key").expect("hash");
    let service = start_service(dir.path(), &[("ISM_ADMIN_API_KEY_HASH", &hash)]);
    for request in [
        service.admin(Method::GET, "/api/v1/sessions"),
        service
            .admin(Method::GET, "/api/v1/sessions")
            .bearer_auth("wrong"),
    ] {
        let (status, code, message) = error_of(send(request).await).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::UNAUTHORIZED, "unauthorized")
        );
        assert!(message.contains("Authorization: Bearer <key>"), "{message}");
    }
    service.stop();
}

/// The 400 message for `body` sent to `path` on the given port.
async fn bad_request_message(api: &Api, admin: bool, path: &str, body: &str) -> String {
    let request = if admin {
        api.admin(Method::POST, path)
    } else {
        api.public(Method::POST, path)
    };
    let (status, code, message) = error_of(
        send(with_raw_body(
            request,
            Some("application/json"),
            body.to_owned(),
        ))
        .await,
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_request"),
        "{body}: {message}"
    );
    message
}

#[tokio::test]
async fn a_bad_json_body_gets_the_field_and_what_was_expected() {
    let dir = tempfile::tempdir().expect("temp dir");
    let service = start_service(dir.path(), &[]);
    let create = "/api/v1/sessions";
    let message = bad_request_message(&service, true, create, r#"{"max_clients": "ten"}"#).await;
    assert!(message.starts_with("max_clients: "), "{message}");
    assert!(message.contains("expected"), "{message}");
    let message = bad_request_message(&service, true, create, r#"{"ttl_secs": -5}"#).await;
    assert!(message.starts_with("ttl_secs: "), "{message}");
    let join = "/api/v1/sessions/123456789/join";
    let message = bad_request_message(&service, false, join, r#"{"client": "lamp"}"#).await;
    assert_eq!(message, "missing field `pin`");
    let message = bad_request_message(&service, false, join, "{\"pin\": ").await;
    assert!(message.starts_with("body is not valid JSON"), "{message}");
    let message = bad_request_message(&service, false, join, "[1, 2]").await;
    assert!(message.contains("JSON object"), "{message}");
    for body in [r#"{"max_clients": "ten"}"#, r#"{"ttl_secs": -5}"#] {
        let message = bad_request_message(&service, true, create, body).await;
        assert!(
            !message.contains("line 1") && !message.contains("Failed to deserialize"),
            "{message}"
        );
    }
    service.stop();
}
