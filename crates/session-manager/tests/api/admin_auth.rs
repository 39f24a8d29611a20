//! Admin authentication: with ISM_ADMIN_API_KEY_HASH every admin route, compat routes
//! included, needs the Bearer key; without it, a non-loopback admin bind is refused.

use reqwest::StatusCode;
use serde_json::json;
use session_manager::admin_auth::hash_admin_key;
use session_manager::config::Config;
use session_manager::startup::Application;

use crate::helpers::{error_code, send, spawn_app_with};

const KEY: &str = "correct horse battery staple";

#[tokio::test]
async fn every_admin_route_needs_the_key() {
    let hash = hash_admin_key(KEY).unwrap();
    let app = spawn_app_with(|config| config.admin.admin_api_key_hash = Some(hash)).await;
    let routes = [
        (reqwest::Method::POST, "/api/v1/sessions"),
        (reqwest::Method::GET, "/api/v1/sessions"),
        (reqwest::Method::GET, "/api/v1/sessions/123456"),
        (reqwest::Method::DELETE, "/api/v1/sessions/123456"),
        (reqwest::Method::GET, "/api/createSession?type=x"),
        (reqwest::Method::GET, "/api/closeSession?id=123456"),
        (reqwest::Method::POST, "/api/v1/service-tokens"),
        (reqwest::Method::GET, "/api/v1/service-tokens"),
        (
            reqwest::Method::DELETE,
            "/api/v1/service-tokens/00000000-0000-4000-8000-000000000000",
        ),
    ];
    for (method, path) in &routes {
        for authorization in [None, Some("Bearer wrong"), Some("Basic Zm9vOmJhcg==")] {
            let mut request = app.admin(method.clone(), path);
            if let Some(authorization) = authorization {
                request = request.header("authorization", authorization);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
            assert_eq!(
                error_code(response, StatusCode::UNAUTHORIZED).await,
                "unauthorized",
                "{method} {path} with {authorization:?}"
            );
        }
        let response = send(app.admin(method.clone(), path).bearer_auth(KEY)).await;
        assert_ne!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{method} {path}"
        );
        assert!(!response.status().is_server_error(), "{method} {path}");
    }
    // Probes need no key.
    assert_eq!(app.admin_healthz().await.status(), StatusCode::OK);
    // And the public port needs none either.
    let created = send(
        app.admin(reqwest::Method::POST, "/api/v1/sessions")
            .bearer_auth(KEY)
            .json(&json!({})),
    )
    .await
    .json::<serde_json::Value>()
    .await
    .unwrap();
    let response = app
        .join(
            created["id"].as_str().unwrap(),
            created["pin"].as_str().unwrap(),
            "dev",
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_non_loopback_admin_bind_without_a_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_tests(dir.path().to_owned());
    config.listen.admin_addr = "0.0.0.0:0".parse().unwrap();
    let error = Application::build(config.clone())
        .await
        .err()
        .expect("refused");
    assert!(error.to_string().contains("ISM_ADMIN_INSECURE"), "{error}");

    config.admin.admin_insecure = true;
    let app = Application::build(config)
        .await
        .expect("allowed when insecure is explicit");
    assert!(app.admin_addr().ip().is_unspecified());
}

#[tokio::test]
async fn a_non_loopback_admin_bind_with_a_key_is_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_tests(dir.path().to_owned());
    config.listen.admin_addr = "0.0.0.0:0".parse().unwrap();
    config.admin.admin_api_key_hash = Some(hash_admin_key(KEY).unwrap());
    assert!(Application::build(config).await.is_ok());
}
