//! The original service's routes keep their original shapes.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{error_code, sorted_keys, spawn_app, wrong_pin};

#[tokio::test]
async fn create_session_compat_returns_the_original_shape() {
    let app = spawn_app().await;
    let response = app.compat_create("?type=chat").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(sorted_keys(&body), ["clients", "id", "pin", "type"]);
    assert_eq!(body["type"], "chat");
    assert_eq!(body["clients"], json!([]));
    let default: Value = app.compat_create("").await.json().await.unwrap();
    assert_eq!(default["type"], "default");
}

#[tokio::test]
async fn close_session_compat_answers_success_or_error() {
    let app = spawn_app().await;
    let created: Value = app.compat_create("").await.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    let close = |id: String| {
        let app = &app;
        async move {
            let response = app.compat_close(&id).await;
            assert_eq!(response.status(), StatusCode::OK);
            response.json::<Value>().await.unwrap()
        }
    };
    assert_eq!(close(id.to_owned()).await, json!("Success"));
    assert_eq!(close(id.to_owned()).await, json!("Error"));
    assert_eq!(close("not-an-id".to_owned()).await, json!("Error"));
    let missing: Value = app
        .admin_get("/api/closeSession")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(missing, json!("Error"));
}

#[tokio::test]
async fn join_session_compat_returns_only_the_token() {
    let app = spawn_app().await;
    let created = app.create_session(json!({})).await;
    let response = app
        .compat_join(json!({"id": created.id, "pin": created.pin, "client": "old-client"}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body.as_object().unwrap().len(), 1);
    assert_eq!(body["token"].as_str().unwrap().split('.').count(), 3);

    // The original clients sent the id as a number.
    let numeric_id: u64 = created.id.parse().unwrap();
    let response = app
        .compat_join(json!({"id": numeric_id, "pin": created.pin, "client": "old-client-2"}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);

    let response = app
        .compat_join(json!({"id": created.id, "pin": wrong_pin(&created.pin), "client": "x"}))
        .await;
    assert_eq!(
        error_code(response, StatusCode::UNAUTHORIZED).await,
        "invalid_credentials"
    );
}
