//! The service's HTTP API as tests call it: create a session on the admin API (which must
//! answer 201 Created) and join one on the public API, against any running service, the
//! real binary or the application served in-process; close a session, list the sessions, fetch the JWKS.

use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};

/// A created session as the admin API returned it.
#[derive(Debug, Clone)]
pub struct CreatedSession {
    pub id: String,
    pub pin: String,
    pub body: Value,
}

/// `POST {admin}/api/v1/sessions` with `body`; asserts 201 Created.
pub async fn create_session(http: &reqwest::Client, admin: &str, body: &Value) -> CreatedSession {
    let response = http
        .post(format!("{admin}/api/v1/sessions"))
        .json(body)
        .send()
        .await
        .expect("create request");
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.expect("json");
    CreatedSession {
        id: body["id"].as_str().expect("id").to_owned(),
        pin: body["pin"].as_str().expect("pin").to_owned(),
        body,
    }
}

/// `POST {public}/api/v1/sessions/{session_id}/join` as `client` with `pin`.
pub async fn join(
    http: &reqwest::Client,
    public: &str,
    session_id: &str,
    pin: &str,
    client: &str,
) -> Response {
    http.post(format!("{public}/api/v1/sessions/{session_id}/join"))
        .json(&json!({ "pin": pin, "client": client }))
        .send()
        .await
        .expect("join request")
}

/// `DELETE {admin}/api/v1/sessions/{session_id}`: closes the session.
pub async fn close_session(http: &reqwest::Client, admin: &str, session_id: &str) -> Response {
    http.delete(format!("{admin}/api/v1/sessions/{session_id}"))
        .send()
        .await
        .expect("close request")
}

/// `GET {admin}/api/v1/sessions`: the page of live sessions, whatever the status.
pub async fn list_sessions(http: &reqwest::Client, admin: &str) -> Value {
    json_answer(http.get(format!("{admin}/api/v1/sessions"))).await
}

/// Sends `request` and reads the answer's body as JSON, whatever the status.
pub async fn json_answer(request: RequestBuilder) -> Value {
    request
        .send()
        .await
        .expect("request answered")
        .json()
        .await
        .expect("json")
}

/// `GET {public}/.well-known/jwks.json`: the published key set, as served.
pub async fn jwks(http: &reqwest::Client, public: &str) -> String {
    http.get(format!("{public}/.well-known/jwks.json"))
        .send()
        .await
        .expect("jwks request")
        .text()
        .await
        .expect("jwks body")
}
