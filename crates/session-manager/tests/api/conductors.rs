//! The sessions' conductors through the admin API: the compat `conductorRequest` with the
//! original's exact answers, the v1 view and calls with their errors, a session's end,
//! and a started conductor started again after a restart.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{error_code, spawn_app, spawn_app_in, with_raw_body, Api};

/// The compat answer (a JSON string) to `query`.
async fn compat(api: &Api, query: &str) -> Value {
    let response = api.compat_conductor(query).await;
    assert_eq!(response.status(), StatusCode::OK, "{query}");
    response.json().await.expect("a JSON answer")
}

async fn view(api: &Api, session_id: &str) -> Value {
    let response = api.conductor(session_id).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("a JSON view")
}

async fn call(api: &Api, session_id: &str, method: &str) -> Value {
    let response = api.conductor_call(session_id, method, json!({})).await;
    assert_eq!(response.status(), StatusCode::OK, "{method}");
    let body: Value = response.json().await.expect("a JSON result");
    body["result"].clone()
}

#[tokio::test]
async fn the_default_conductor_answers_as_the_original() {
    let app = spawn_app().await;
    let id = app.create_session(json!({})).await.id;
    for (method, answer) in [("state", "State"), ("start", "Start"), ("stop", "Stop")] {
        assert_eq!(
            compat(&app, &format!("?id={id}&method={method}&params=x")).await,
            json!(answer)
        );
        assert_eq!(call(&app, &id, method).await, json!(answer));
    }
    // Sessions of a type without a conductor of its own get the default one.
    let chat = app.create_session(json!({"type": "chat"})).await.id;
    assert_eq!(
        compat(&app, &format!("?id={chat}&method=start")).await,
        json!("Start")
    );
    assert_eq!(
        compat(&app, &format!("?id={id}&method=fly")).await,
        json!("Error: No handler function registered for method: fly")
    );
    assert_eq!(
        compat(&app, &format!("?id={id}&method=pause")).await,
        json!("Error: No handler function registered for method: pause")
    );
    assert_eq!(
        compat(&app, &format!("?id={id}")).await,
        json!("Error: No handler function registered for method: ")
    );
    for unknown in [
        "?id=999999&method=state",
        "?method=state",
        "?id=not-an-id&method=state",
        "",
    ] {
        assert_eq!(
            compat(&app, unknown).await,
            json!("Could not locate session"),
            "{unknown}"
        );
    }
    let described = view(&app, &id).await;
    assert_eq!(
        described,
        json!({
            "type": "default",
            "api": [
                {"method": "state", "params": []},
                {"method": "start", "params": []},
                {"method": "stop", "params": []}
            ],
            "state": {}
        })
    );
}

#[tokio::test]
async fn the_active_conductor_starts_pauses_and_stops() {
    let app = spawn_app().await;
    let created: Value = app
        .compat_create("?type=active")
        .await
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(
        compat(&app, &format!("?id={id}&method=state")).await,
        json!("Stopped")
    );
    assert_eq!(
        compat(&app, &format!("?id={id}&method=start")).await,
        json!("Started")
    );
    assert_eq!(
        compat(&app, &format!("?id={id}&method=start")).await,
        json!("Started")
    );
    assert_eq!(
        compat(&app, &format!("?id={id}&method=state")).await,
        json!("Started")
    );
    let described = view(&app, &id).await;
    assert_eq!(described["type"], "active");
    assert_eq!(described["api"].as_array().map(Vec::len), Some(4));
    assert_eq!(
        described["api"][3],
        json!({"method": "pause", "params": []})
    );
    assert_eq!(described["state"]["status"], "started");
    assert_eq!(described["state"]["received"], 0);
    assert_eq!(call(&app, &id, "pause").await, json!("Paused"));
    assert_eq!(view(&app, &id).await["state"]["status"], "paused");
    assert_eq!(call(&app, &id, "stop").await, json!("Stopped"));
    assert_eq!(
        compat(&app, &format!("?id={id}&method=state")).await,
        json!("Stopped")
    );
    assert_eq!(
        compat(&app, &format!("?id={id}&method=resume")).await,
        json!("Error: No handler function registered for method: resume")
    );
}

#[tokio::test]
async fn v1_errors_are_clear_4xx_in_the_error_shape() {
    let app = spawn_app().await;
    let id = app.create_session(json!({"type": "active"})).await.id;
    let unknown_method = app.conductor_call(&id, "fly", json!({})).await;
    assert_eq!(unknown_method.status(), StatusCode::NOT_FOUND);
    let body: Value = unknown_method.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        "Error: No handler function registered for method: fly"
    );
    assert_eq!(
        error_code(app.conductor("999999").await, StatusCode::NOT_FOUND).await,
        "not_found"
    );
    assert_eq!(
        error_code(
            app.conductor_call("999999", "start", json!({})).await,
            StatusCode::NOT_FOUND
        )
        .await,
        "not_found"
    );
    assert_eq!(
        error_code(app.conductor("not-an-id").await, StatusCode::BAD_REQUEST).await,
        "invalid_request"
    );
    for bad in [json!([1]), json!({"parameters": 1}), json!("start")] {
        let response = app.conductor_call(&id, "start", bad.clone()).await;
        assert_eq!(
            error_code(response, StatusCode::BAD_REQUEST).await,
            "invalid_request",
            "{bad}"
        );
    }
    let path = format!("/api/v1/sessions/{id}/conductor/start");
    let empty = with_raw_body(
        app.admin(reqwest::Method::POST, &path),
        Some("application/json"),
        "",
    );
    assert_eq!(
        error_code(crate::helpers::send(empty).await, StatusCode::BAD_REQUEST).await,
        "invalid_request"
    );
    // Parameters of any JSON shape are passed on.
    let with_params = app
        .conductor_call(&id, "state", json!({"params": {"speed": [1, 2]}}))
        .await;
    assert_eq!(with_params.status(), StatusCode::OK);
    // Nothing was started by the refused calls.
    assert_eq!(view(&app, &id).await["state"]["status"], "stopped");
}

#[tokio::test]
async fn a_closed_or_expired_session_has_no_conductor() {
    let app = spawn_app().await;
    let closed = app.create_session(json!({"type": "active"})).await.id;
    assert_eq!(call(&app, &closed, "start").await, json!("Started"));
    assert_eq!(app.close(&closed).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        compat(&app, &format!("?id={closed}&method=state")).await,
        json!("Could not locate session")
    );
    assert_eq!(app.conductor(&closed).await.status(), StatusCode::NOT_FOUND);

    let expiring = app
        .create_session(json!({"type": "active", "ttl_secs": 60}))
        .await
        .id;
    assert_eq!(call(&app, &expiring, "start").await, json!("Started"));
    app.advance_clock(Duration::from_secs(61));
    assert_eq!(
        compat(&app, &format!("?id={expiring}&method=state")).await,
        json!("Could not locate session")
    );
    assert_eq!(
        app.conductor_call(&expiring, "stop", json!({}))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_started_active_conductor_is_started_again_after_a_restart() {
    let app = spawn_app().await;
    let started = app.create_session(json!({"type": "active"})).await.id;
    let stopped = app.create_session(json!({"type": "active"})).await.id;
    let paused = app.create_session(json!({"type": "active"})).await.id;
    assert_eq!(call(&app, &started, "start").await, json!("Started"));
    assert_eq!(call(&app, &stopped, "start").await, json!("Started"));
    assert_eq!(call(&app, &stopped, "stop").await, json!("Stopped"));
    assert_eq!(call(&app, &paused, "start").await, json!("Started"));
    assert_eq!(call(&app, &paused, "pause").await, json!("Paused"));

    let data_dir = app.stop().await;
    let app = spawn_app_in(data_dir, |_| {}).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while view(&app, &started).await["state"]["status"] != "started" {
        assert!(
            std::time::Instant::now() < deadline,
            "the started conductor was not started again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        compat(&app, &format!("?id={started}&method=state")).await,
        json!("Started")
    );
    assert_eq!(
        compat(&app, &format!("?id={stopped}&method=state")).await,
        json!("Stopped")
    );
    assert_eq!(
        compat(&app, &format!("?id={paused}&method=state")).await,
        json!("Stopped")
    );
}
