//! The original clients against us unchanged: the compat join takes its JSON body under any
//! content type (the original parsed every body as JSON), and with
//! `ISM_ADMIN_COMPAT_WITHOUT_KEY` the compat admin routes answer the key-less original admin
//! client while the v1 routes keep needing the key and other sites stay refused.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use session_manager::admin_auth::hash_admin_key;

use crate::helpers::{
    assert_forbidden, error_code, send, sorted_keys, spawn_app, spawn_app_with, with_raw_body,
};

const KEY: &str = "correct horse battery staple";

#[tokio::test]
async fn the_compat_join_takes_json_under_any_content_type() {
    let app = spawn_app().await;
    let created = app.create_session(json!({})).await;
    for (n, content_type) in [
        None,
        Some("application/x-www-form-urlencoded"),
        Some("text/plain;charset=UTF-8"),
        Some("application/json"),
        Some("application/octet-stream"),
    ]
    .into_iter()
    .enumerate()
    {
        let body = json!({"id": created.id, "pin": created.pin, "client": format!("old-{n}")});
        let request = app.public(Method::POST, "/api/joinSession");
        let response = send(with_raw_body(request, content_type, body.to_string())).await;
        assert_eq!(response.status(), StatusCode::OK, "{content_type:?}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(sorted_keys(&answer), ["token"], "{content_type:?}");
    }
}

#[tokio::test]
async fn malformed_or_empty_compat_join_bodies_get_400_under_any_content_type() {
    let app = spawn_app().await;
    for content_type in [
        None,
        Some("application/x-www-form-urlencoded"),
        Some("text/plain"),
    ] {
        for (body, says) in [
            ("id=123456789&pin=123456&client=x", "not valid JSON"),
            ("{\"id\":", "not valid JSON"),
            ("[1,2]", "JSON object"),
            ("", "empty"),
            ("  \n", "empty"),
        ] {
            let request = app.public(Method::POST, "/api/joinSession");
            let response = send(with_raw_body(request, content_type, body)).await;
            assert_eq!(
                response.status(),
                StatusCode::BAD_REQUEST,
                "{content_type:?} {body:?}"
            );
            let error: Value = response.json().await.unwrap();
            assert_eq!(error["error"]["code"], "invalid_request");
            let message = error["error"]["message"].as_str().unwrap();
            assert!(
                message.contains(says),
                "{content_type:?} {body:?}: {message}"
            );
        }
    }
}

#[tokio::test]
async fn the_v1_join_keeps_requiring_a_json_content_type() {
    let app = spawn_app().await;
    let created = app.create_session(json!({})).await;
    let body = json!({"pin": created.pin, "client": "strict"}).to_string();
    let request = app.public(
        Method::POST,
        &format!("/api/v1/sessions/{}/join", created.id),
    );
    let response = send(with_raw_body(
        request,
        Some("application/x-www-form-urlencoded"),
        body,
    ))
    .await;
    assert_eq!(
        error_code(response, StatusCode::UNSUPPORTED_MEDIA_TYPE).await,
        "unsupported_media_type"
    );
}

/// An app with an admin key and `ISM_ADMIN_COMPAT_WITHOUT_KEY` on.
async fn app_with_keyless_compat_admin() -> crate::helpers::TestApp {
    let hash = hash_admin_key(KEY).unwrap();
    spawn_app_with(|config| {
        config.admin.admin_api_key_hash = Some(hash);
        config.admin.admin_compat_without_key = true;
    })
    .await
}

#[tokio::test]
async fn with_the_setting_the_compat_admin_routes_need_no_key_and_v1_routes_still_do() {
    let app = app_with_keyless_compat_admin().await;

    // The original admin client: plain GETs without a key.
    let created: Value = app
        .compat_create("?type=default")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(sorted_keys(&created), ["clients", "id", "pin", "type"]);
    let id = created["id"].as_str().unwrap();

    for (method, path) in [
        (Method::POST, "/api/v1/sessions".to_owned()),
        (Method::GET, "/api/v1/sessions".to_owned()),
        (Method::GET, format!("/api/v1/sessions/{id}")),
        (Method::DELETE, format!("/api/v1/sessions/{id}")),
        (Method::GET, "/api/v1/events".to_owned()),
    ] {
        let response = send(app.admin(method.clone(), &path).json(&json!({}))).await;
        assert_eq!(
            error_code(response, StatusCode::UNAUTHORIZED).await,
            "unauthorized",
            "{method} {path}"
        );
    }
    let listed = send(app.admin(Method::GET, "/api/v1/sessions").bearer_auth(KEY)).await;
    assert_eq!(listed.status(), StatusCode::OK);

    let closed: Value = app.compat_close(id).await.json().await.unwrap();
    assert_eq!(closed, "Success");
}

#[tokio::test]
async fn with_the_setting_other_sites_still_cannot_use_the_compat_admin_routes() {
    let app = app_with_keyless_compat_admin().await;
    let victim: Value = app.compat_create("").await.json().await.unwrap();
    let victim_id = victim["id"].as_str().unwrap();
    let port = app
        .admin_url
        .rsplit(':')
        .next()
        .unwrap()
        .parse::<u16>()
        .unwrap();

    // An <img src> on a foreign page closing a session, a cross-site form creating one, a
    // DNS-rebinding page reading the PIN of a new one.
    let close = format!("/api/closeSession?id={victim_id}");
    let attacks = [
        app.admin(Method::GET, &close)
            .header("sec-fetch-site", "cross-site"),
        app.admin(Method::GET, &close)
            .header("referer", "https://attacker.example/page"),
        app.admin(Method::GET, "/api/createSession?type=x")
            .header("origin", "https://attacker.example"),
        app.admin(Method::GET, "/api/createSession?type=x")
            .header("origin", "null"),
        app.admin(Method::GET, "/api/createSession?type=x")
            .header("host", format!("attacker.example:{port}")),
    ];
    for attack in attacks {
        assert_forbidden(send(attack).await).await;
    }

    // Nothing changed: the victim is the only session and still live.
    let listed: Value = send(app.admin(Method::GET, "/api/v1/sessions").bearer_auth(KEY))
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = listed["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|session| session["id"].as_str())
        .collect();
    assert_eq!(ids, [victim_id]);
}

#[tokio::test]
async fn without_the_setting_the_compat_admin_routes_need_the_key() {
    let hash = hash_admin_key(KEY).unwrap();
    let app = spawn_app_with(|config| config.admin.admin_api_key_hash = Some(hash)).await;
    for response in [
        app.compat_create("?type=default").await,
        app.compat_close("123456789").await,
    ] {
        assert_eq!(
            error_code(response, StatusCode::UNAUTHORIZED).await,
            "unauthorized"
        );
    }
}
