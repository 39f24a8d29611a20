//! The versioned admin API: create, list (paginated), inspect, close.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{error_code, spawn_app, spawn_app_with};

#[tokio::test]
async fn create_returns_the_session_with_its_pin() {
    let app = spawn_app().await;
    let created = app
        .create_session(json!({"type": "demo", "ttl_secs": 600, "max_clients": 3}))
        .await;
    let body = &created.body;
    assert_eq!(body["type"], "demo");
    assert_eq!(body["max_clients"], 3);
    assert_eq!(body["topic_root"], format!("/{}/", created.id));
    assert_eq!(created.id.len(), 9);
    assert!(created.id.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(created.pin.len(), 6);
    assert!(created.pin.bytes().all(|b| b.is_ascii_digit()));
    let created_at = body["created_at"].as_u64().unwrap();
    assert_eq!(body["expires_at"].as_u64().unwrap(), created_at + 600);
    assert_eq!(body["clients"], json!([]));
}

#[tokio::test]
async fn create_with_an_empty_object_uses_the_defaults() {
    let app = spawn_app_with(|config| config.admin.default_max_clients = 0).await;
    let response = app.create(json!({})).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        location,
        format!("/api/v1/sessions/{}", body["id"].as_str().unwrap())
    );
    assert_eq!(body["type"], "default");
    assert_eq!(body["expires_at"], Value::Null);
    assert_eq!(body["max_clients"], Value::Null);
}

#[tokio::test]
async fn configured_id_and_pin_lengths_are_used() {
    let app = crate::helpers::spawn_app_with(|config| {
        config.store.id_length = 12;
        config.store.pin_length = 4;
    })
    .await;
    let created = app.create_session(json!({})).await;
    assert_eq!(created.id.len(), 12);
    assert_eq!(created.pin.len(), 4);
}

#[tokio::test]
async fn get_shows_joined_clients_but_never_the_pin() {
    let app = spawn_app().await;
    let created = app.create_session(json!({})).await;
    assert_eq!(
        app.join(&created.id, &created.pin, "lamp-1").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.join(&created.id, &created.pin, "lamp-2").await.status(),
        StatusCode::OK
    );
    let response = app.get_session(&created.id).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert!(body.get("pin").is_none());
    let names: Vec<&str> = body["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|client| client["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["lamp-1", "lamp-2"]);
    assert!(body["clients"][0]["joined_at"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn list_pages_through_every_live_session_without_pins() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(app.create_session(json!({})).await.id);
    }
    ids.sort();
    let mut seen = Vec::new();
    let mut query = "?limit=2".to_owned();
    loop {
        let response = app.list(&query).await;
        assert_eq!(response.status(), StatusCode::OK);
        let page: Value = response.json().await.unwrap();
        let sessions = page["sessions"].as_array().unwrap();
        assert!(sessions.len() <= 2);
        for session in sessions {
            assert!(session.get("pin").is_none());
            seen.push(session["id"].as_str().unwrap().to_owned());
        }
        match page["next"].as_str() {
            Some(next) => query = format!("?limit=2&after={next}"),
            None => break,
        }
    }
    assert_eq!(seen, ids);
}

#[tokio::test]
async fn list_rejects_a_bad_limit() {
    let app = spawn_app().await;
    for query in ["limit=0", "limit=100000", "limit=abc", "after=x1"] {
        let response = app.list(&format!("?{query}")).await;
        assert_eq!(
            error_code(response, StatusCode::BAD_REQUEST).await,
            "invalid_request",
            "{query}"
        );
    }
}

#[tokio::test]
async fn delete_closes_once_then_404_and_the_session_refuses_joins() {
    let app = spawn_app().await;
    let created = app.create_session(json!({})).await;
    let response = app.close(&created.id).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let again = app.close(&created.id).await;
    assert_eq!(error_code(again, StatusCode::NOT_FOUND).await, "not_found");
    let get = app.get_session(&created.id).await;
    assert_eq!(error_code(get, StatusCode::NOT_FOUND).await, "not_found");
    let join = app.join(&created.id, &created.pin, "late").await;
    assert_eq!(
        error_code(join, StatusCode::UNAUTHORIZED).await,
        "invalid_credentials"
    );
    assert_eq!(app.listed_sessions().await, json!([]));
}

#[tokio::test]
async fn unknown_sessions_are_404_on_the_admin_side() {
    let app = spawn_app().await;
    let response = app.get_session("999999").await;
    assert_eq!(
        error_code(response, StatusCode::NOT_FOUND).await,
        "not_found"
    );
}

#[tokio::test]
async fn sessions_survive_a_restart() {
    let app = spawn_app().await;
    let created = app.create_session(json!({"type": "kept"})).await;
    let data_dir = app.stop().await;
    let app = crate::helpers::spawn_app_in(data_dir, |_| {}).await;
    let response = app.join(&created.id, &created.pin, "after-restart").await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn live_messages_need_the_broker_link_and_a_well_formed_id() {
    // The in-process app has no broker link: nothing could ever be streamed.
    let app = spawn_app().await;
    let created = app.create_session(json!({})).await;
    let path = format!("/api/v1/sessions/{}/messages", created.id);
    let response = app.admin_get(&path).await;
    assert_eq!(
        error_code(response, StatusCode::SERVICE_UNAVAILABLE).await,
        "no_broker_link"
    );
    let response = app.admin_get("/api/v1/sessions/12x/messages").await;
    assert_eq!(
        error_code(response, StatusCode::BAD_REQUEST).await,
        "invalid_request"
    );
}
