//! A key-less admin port and the operator's browser: foreign pages must not close or
//! create sessions (cross-site requests, body-less or `text/plain` posts) nor read
//! anything through DNS rebinding (a foreign `Host`). Non-browser clients, the original
//! ones included, keep working.

use reqwest::StatusCode;
use serde_json::{json, Value};

use test_support::session_api;

use crate::helpers::{error_code, start_service, ServiceProcess};

async fn live_sessions(service: &ServiceProcess) -> usize {
    let page = session_api::list_sessions(&service.client, &service.admin_url).await;
    page["sessions"].as_array().unwrap().len()
}

#[tokio::test]
async fn foreign_hosts_and_cross_site_requests_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let service = start_service(dir.path(), &[]);
    let victim = service.create_session(json!({})).await;
    let admin = &service.admin_url;
    let port = service.admin_addr.port();

    // DNS rebinding: the page's own name in Host; it can neither create nor read.
    let rebound = service
        .client
        .post(format!("{admin}/api/v1/sessions"))
        .header("host", format!("attacker.example:{port}"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(rebound, StatusCode::FORBIDDEN).await,
        "forbidden"
    );
    let rebound = service
        .client
        .get(format!("{admin}/api/v1/sessions/{}", victim.id))
        .header("host", "attacker.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(rebound, StatusCode::FORBIDDEN).await,
        "forbidden"
    );

    // Cross-site GETs on the state-changing compat routes (an <img> on a foreign page).
    let closing = service
        .client
        .get(format!("{admin}/api/closeSession?id={}", victim.id))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(closing, StatusCode::FORBIDDEN).await,
        "forbidden"
    );
    let creating = service
        .client
        .get(format!("{admin}/api/createSession?type=x"))
        .header("referer", "https://attacker.example/page")
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(creating, StatusCode::FORBIDDEN).await,
        "forbidden"
    );

    // A text/plain form post from another origin.
    let posted = service
        .client
        .post(format!("{admin}/api/v1/sessions"))
        .header("origin", "https://attacker.example")
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(posted, StatusCode::FORBIDDEN).await, "forbidden");
    let opaque = service
        .client
        .delete(format!("{admin}/api/v1/sessions/{}", victim.id))
        .header("origin", "null")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(opaque, StatusCode::FORBIDDEN).await, "forbidden");

    // Nothing changed.
    assert_eq!(live_sessions(&service).await, 1);
    service.stop();
}

#[tokio::test]
async fn an_empty_body_is_never_taken_for_json_on_v1_routes() {
    let dir = tempfile::tempdir().unwrap();
    let service = start_service(dir.path(), &[]);
    for content_type in [None, Some("text/plain"), Some("application/json")] {
        let mut request = service
            .client
            .post(format!("{}/api/v1/sessions", service.admin_url));
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.unwrap();
        assert_eq!(
            error_code(response, StatusCode::BAD_REQUEST).await,
            "invalid_request",
            "{content_type:?}"
        );
    }
    assert_eq!(live_sessions(&service).await, 0);
    service.stop();
}

#[tokio::test]
async fn original_clients_and_same_origin_pages_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let service = start_service(dir.path(), &[]);
    let admin = &service.admin_url;
    let port = service.admin_addr.port();
    // The original clients: plain GETs, no Origin, the compat shapes.
    let created: Value = service
        .client
        .get(format!("{admin}/api/createSession?type=chat"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut keys: Vec<&str> = created
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(keys, ["clients", "id", "pin", "type"]);
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
            .client
            .get(format!("{admin}/api/v1/sessions"))
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
        .client
        .get(format!(
            "{admin}/api/closeSession?id={}",
            created["id"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap()
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
            .client
            .get(format!("{}/api/v1/sessions", service.admin_url))
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
    let health = service
        .client
        .get(format!("{}/healthz", service.admin_url))
        .header("host", "anything.example")
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    service.stop();
}
