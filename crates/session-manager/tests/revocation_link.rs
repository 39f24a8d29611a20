//! The control link of the real binary, observed on the wire: it logs in as a reserved
//! `$` principal, republishes every close whose tokens can still be alive after a SIGKILL
//! and restart (with the same refusal end, computed from the close time in the journal),
//! and drops no close while the broker does not answer.

#[path = "support/control_observer.rs"]
mod control_observer;
#[path = "support/service.rs"]
mod service;

use std::collections::HashMap;
use std::time::Duration;

use control_observer::{Observed, Observer};
use reqwest::StatusCode;
use serde_json::{json, Value};
use test_support::now;
use test_support::session_api;

const TOKEN_TTL: u64 = 3600;
const WAIT: Duration = Duration::from_secs(30);

fn env(observer: &Observer) -> Vec<(&'static str, String)> {
    vec![
        ("MQTT_AUTH_MODE", "dev_jwt_auth".to_owned()),
        ("ISM_BROKER_CONTROL_URL", observer.url()),
        ("ISM_TOKEN_TTL_SECS", TOKEN_TTL.to_string()),
    ]
}

async fn start(data_dir: &std::path::Path, observer: &Observer) -> service::Service {
    let env = env(observer);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    service::start(data_dir, &env).await
}

async fn create(http: &reqwest::Client, admin: &str, body: Value) -> Value {
    session_api::create_session(http, admin, &body).await.body
}

async fn close(http: &reqwest::Client, admin: &str, id: &str) {
    let response = session_api::close_session(http, admin, id).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

/// Waits for the link to connect; asserts it is a reserved principal.
async fn link_connects(observer: &mut Observer) -> String {
    loop {
        if let Observed::Connected {
            client_id,
            username,
        } = observer.next(WAIT).await
        {
            assert!(client_id.starts_with("$ism-link-"), "{client_id}");
            assert_eq!(username, client_id, "the token's sub must be the client id");
            return client_id;
        }
    }
}

/// Collects closes until every id in `wanted` was seen; id → until.
async fn closes_until_all_seen(observer: &mut Observer, wanted: &[String]) -> HashMap<String, u64> {
    let mut seen = HashMap::new();
    while !wanted.iter().all(|id| seen.contains_key(id)) {
        if let Observed::Control(message) = observer.next(WAIT).await {
            for closed in message.closed {
                seen.insert(closed.sid, closed.until);
            }
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closes_are_republished_with_their_refusal_end_after_sigkill_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let http = reqwest::Client::new();
    let mut observer = Observer::start().await;
    let service = start(&data_dir, &observer).await;
    link_connects(&mut observer).await;

    let open_ended = create(&http, &service.admin, json!({})).await;
    let short = create(&http, &service.admin, json!({ "ttl_secs": 600 })).await;
    let expires_at = short["expires_at"].as_u64().unwrap();
    let open_ended = open_ended["id"].as_str().unwrap().to_owned();
    let short = short["id"].as_str().unwrap().to_owned();
    let closed_from = now();
    close(&http, &service.admin, &open_ended).await;
    close(&http, &service.admin, &short).await;
    let closed_to = now();

    let ids = [open_ended.clone(), short.clone()];
    let first = closes_until_all_seen(&mut observer, &ids).await;
    let until = first[&open_ended];
    assert!(
        (closed_from + TOKEN_TTL..=closed_to + TOKEN_TTL).contains(&until),
        "until {until} is not close time + token lifetime"
    );
    // Tokens never outlive their session: its end caps the refusal.
    assert_eq!(first[&short], expires_at);

    service.kill();
    let service = start(&data_dir, &observer).await;
    link_connects(&mut observer).await;
    let again = closes_until_all_seen(&mut observer, &ids).await;
    assert_eq!(again[&open_ended], until, "the close time was not kept");
    assert_eq!(again[&short], expires_at);
    drop(service);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_closes_while_the_broker_does_not_answer_are_all_delivered() {
    const SESSIONS: usize = 2000;
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let http = reqwest::Client::new();
    // Bound, but not answering: the link's connection sits in the backlog.
    let mut observer = Observer::bind().await;
    let service = start(&data_dir, &observer).await;

    let admin = service.admin.clone();
    let mut workers = Vec::new();
    for worker in 0..16 {
        let (http, admin) = (http.clone(), admin.clone());
        workers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in (worker..SESSIONS).step_by(16) {
                let created = create(&http, &admin, json!({})).await;
                let id = created["id"].as_str().unwrap().to_owned();
                close(&http, &admin, &id).await;
                ids.push(id);
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for worker in workers {
        ids.extend(worker.await.unwrap());
    }
    let closed_by = now();
    let health: Value = session_api::json_answer(http.get(format!("{admin}/healthz"))).await;
    assert_eq!(health["revocation"]["connected"], false, "{health}");

    observer.start_accepting();
    let seen = closes_until_all_seen(&mut observer, &ids).await;
    for id in &ids {
        assert!(seen[id] > closed_by, "{id} refused only until {}", seen[id]);
        assert!(seen[id] <= closed_by + TOKEN_TTL);
    }
    drop(service);
}
