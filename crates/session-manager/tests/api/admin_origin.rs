//! A key-less admin port and the operator's browser: foreign pages must not close or
//! create sessions (cross-site requests, body-less or `text/plain` posts) nor read
//! anything through DNS rebinding (a foreign `Host`). Non-browser clients, the original
//! ones included, keep working.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{
    assert_forbidden, error_code, send, sorted_keys, start_service, with_raw_body,
};

#[tokio::test]
async fn foreign_hosts_and_cross_site_requests_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let service = start_service(dir.path(), &[]);
    let victim = service.create_session(json!({})).await;
    let port = service.admin_addr.port();

    // DNS rebinding: the page's own name in Host; it can neither create nor read.
    let rebound = service
        .admin(Method::POST, "/api/v1/sessions")
        .header("host", format!("attacker.example:{port}"))
        .json(&json!({}));
    assert_forbidden(send(rebound).await).await;
    let rebound = service
        .admin(Method::GET, &format!("/api/v1/sessions/{}", victim.id))
        .header("host", "attacker.example");
    assert_forbidden(send(rebound).await).await;

    // Cross-site GETs on the state-changing compat routes (an <img> on a foreign page).
    let closing = service
        .admin(Method::GET, &format!("/api/closeSession?id={}", victim.id))
        .header("sec-fetch-site", "cross-site");
    assert_forbidden(send(closing).await).await;
    let creating = service
        .admin(Method::GET, "/api/createSession?type=x")
        .header("referer", "https://attacker.example/page");
    assert_forbidden(send(creating).await).await;

    // A text/plain form post from another origin.
    let posted = service
        .admin(Method::POST, "/api/v1/sessions")
        .header("origin", "https://attacker.example")
        .header("content-type", "text/plain")
        .body("{}");
    assert_forbidden(send(posted).await).await;
    let opaque = service
        .admin(Method::DELETE, &format!("/api/v1/sessions/{}", victim.id))
        .header("origin", "null");
    assert_forbidden(send(opaque).await).await;

    // Nothing changed.
    assert_eq!(service.live_sessions().await, 1);
    service.stop();
}

#[tokio::test]
async fn an_empty_body_is_never_taken_for_json_on_v1_routes() {
    let dir = tempfile::tempdir().unwrap();
    let service = start_service(dir.path(), &[]);
    for content_type in [None, Some("text/plain"), Some("application/json")] {
        let request = service.admin(Method::POST, "/api/v1/sessions");
        let response = send(with_raw_body(request, content_type, "")).await;
        assert_eq!(
            error_code(response, StatusCode::BAD_REQUEST).await,
            "invalid_request",
            "{content_type:?}"
        );
    }
    assert_eq!(service.live_sessions().await, 0);
    service.stop();
}

#[tokio::test]
async fn original_clients_and_same_origin_pages_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let service = start_service(dir.path(), &[]);
    let port = service.admin_addr.port();
    // The original clients: plain GETs, no Origin, the compat shapes.
    let created: Value = service
        .compat_create("?type=chat")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(sorted_keys(&created), ["clients", "id", "pin", "type"]);
    // Loopback names with and without the port, and a same-origin page.
    for (host, origin) in [
        (format!("localhost:{port}"), None),
        ("localhost".to_owned(), None),
        (
            format!("127.0.0.1:{port}"),
            Some(format!("http://127.0.0.1:{port}")),
        ),
        (format!("[::1]:{port}"), None),
    ] {
        let mut request = service
            .admin(Method::GET, "/api/v1/sessions")
            .header("host", &host);
        if let Some(origin) = origin {
            request = request
                .header("origin", origin)
                .header("sec-fetch-site", "same-origin");
        }
        assert_eq!(
            request.send().await.unwrap().status(),
            StatusCode::OK,
            "{host}"
        );
    }
    let closed: Value = service
        .compat_close(created["id"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(closed, "Success");
    service.stop();
}

#[tokio::test]
async fn configured_allowed_hosts_replace_the_loopback_names() {
    let dir = tempfile::tempdir().unwrap();
    let service = start_service(
        dir.path(),
        &[(
            "ISM_ADMIN_ALLOWED_HOSTS",
            "admin.internal,session-manager:50001",
        )],
    );
    let get = |host: &'static str| {
        service
            .admin(Method::GET, "/api/v1/sessions")
            .header("host", host)
            .send()
    };
    assert_eq!(
        get("admin.internal").await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        get("session-manager:50001").await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        get("session-manager:8080").await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        get("localhost").await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    // Health checks are not guarded: they change and reveal nothing.
    let health = send(
        service
            .admin(Method::GET, "/healthz")
            .header("host", "anything.example"),
    )
    .await;
    assert_eq!(health.status(), StatusCode::OK);
    service.stop();
}
