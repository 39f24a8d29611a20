//! A session's clients come in pages: `GET /api/v1/sessions/{id}` shows the first page
//! (`clients_limit`, 100 unless asked, at most 1000) and a `clients_next` cursor for
//! `clients_after`; lists show each session's first page. Against the real binary.

use reqwest::StatusCode;
use serde_json::{json, Value};
use test_support::service::Launch;
use test_support::session_api::{create_session, join};

const CLIENTS: usize = 250;

fn names(view: &Value) -> Vec<String> {
    view["clients"]
        .as_array()
        .expect("clients")
        .iter()
        .map(|client| client["name"].as_str().expect("name").to_owned())
        .collect()
}

#[tokio::test]
async fn a_sessions_clients_come_in_pages_that_add_up_to_all_of_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let service = Launch::new().data_dir(&dir.path().join("data")).start();
    service.wait_until_answering().await;
    let http = reqwest::Client::new();
    let session = create_session(&http, &service.admin, &json!({})).await;
    let joined: Vec<String> = (0..CLIENTS).map(|i| format!("device-{i:03}")).collect();
    for name in &joined {
        let response = join(&http, &service.public, &session.id, &session.pin, name).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let get = |query: String| {
        let (http, admin, id) = (http.clone(), service.admin.clone(), session.id.clone());
        async move {
            http.get(format!("{admin}/api/v1/sessions/{id}{query}"))
                .send()
                .await
                .expect("get session")
        }
    };

    // The plain view: the first 100 clients, in join order, and a cursor.
    let first: Value = get(String::new()).await.json().await.expect("json");
    assert_eq!(names(&first), joined[..100]);
    assert_eq!(first["clients_next"], joined[99]);

    // Following the cursor page by page yields every client once, in join order.
    let mut seen = Vec::new();
    let mut query = "?clients_limit=70".to_owned();
    loop {
        let response = get(query.clone()).await;
        assert_eq!(response.status(), StatusCode::OK);
        let page: Value = response.json().await.expect("json");
        let page_names = names(&page);
        assert!(page_names.len() <= 70);
        seen.extend(page_names);
        match page["clients_next"].as_str() {
            Some(next) => query = format!("?clients_limit=70&clients_after={next}"),
            None => break,
        }
    }
    assert_eq!(seen, joined);

    // One page big enough holds them all, with no cursor.
    let all: Value = get("?clients_limit=1000".to_owned())
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(names(&all), joined);
    assert_eq!(all["clients_next"], Value::Null);

    // Bad page requests are 400s that say what is wrong.
    for query in [
        "?clients_limit=0",
        "?clients_limit=1001",
        "?clients_limit=ten",
        "?clients_after=nobody-here",
        "?clients_page=2",
    ] {
        let response = get(query.to_owned()).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
        let body: Value = response.json().await.expect("json");
        assert!(body["error"]["message"].is_string(), "{query}: {body}");
    }

    // The list shows each session's first page too.
    let list: Value = http
        .get(format!("{}/api/v1/sessions", service.admin))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let listed = list["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .find(|listed| listed["id"] == session.id.as_str())
        .expect("the session is listed");
    assert_eq!(names(listed), joined[..100]);
    assert_eq!(listed["clients_next"], joined[99]);

    // The compat route keeps its original shape.
    let compat: Value = http
        .get(format!("{}/api/createSession?type=chat", service.admin))
        .send()
        .await
        .expect("compat create")
        .json()
        .await
        .expect("json");
    let mut keys: Vec<&str> = compat
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["clients", "id", "pin", "type"]);
    assert!(service.terminate().success());
}
