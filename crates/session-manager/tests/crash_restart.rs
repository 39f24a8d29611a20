//! Kill -9 mid-traffic: every create, join and close the real `session-manager` binary
//! acknowledged before it was killed must still be there after a restart on the same data
//! directory, and the restarted service must work normally.
//!
//! Workers drive creates, joins and closes concurrently over HTTP and note each one only
//! once its success response arrived; the process is SIGKILLed while requests are in
//! flight. Those unacknowledged requests may or may not have taken effect, but nothing
//! acknowledged may be missing.

#[path = "support/service.rs"]
mod service;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use test_support::session_api::json_answer;

const WORKERS: usize = 16;

/// What the service confirmed before it died.
#[derive(Default)]
struct Acknowledged {
    pins: HashMap<String, String>,
    joined: HashMap<String, Vec<String>>,
    closed: HashSet<String>,
    /// Closes sent whose answer may not have arrived: the SIGKILL can land after the close
    /// was made durable but before the 204 went out, so either outcome is correct for them.
    close_sent: HashSet<String>,
}

/// Creates, joins and closes sessions until the service stops answering.
async fn drive(
    worker: usize,
    admin: String,
    public: String,
    http: reqwest::Client,
    acknowledged: Arc<Mutex<Acknowledged>>,
) {
    for round in 0.. {
        let Ok(response) = http
            .post(format!("{admin}/api/v1/sessions"))
            .json(&json!({ "type": "crash-test" }))
            .send()
            .await
        else {
            return;
        };
        if response.status() != reqwest::StatusCode::CREATED {
            return;
        }
        let Ok(body) = response.json::<Value>().await else {
            return;
        };
        let id = body["id"]
            .as_str()
            .expect("created session has an id")
            .to_owned();
        let pin = body["pin"]
            .as_str()
            .expect("created session has a PIN")
            .to_owned();
        acknowledged
            .lock()
            .unwrap()
            .pins
            .insert(id.clone(), pin.clone());

        for client in ["lamp", "switch"] {
            let client = format!("{client}-{worker}-{round}");
            let Ok(response) = http
                .post(format!("{public}/api/v1/sessions/{id}/join"))
                .json(&json!({ "pin": pin, "client": client }))
                .send()
                .await
            else {
                return;
            };
            if response.status() != reqwest::StatusCode::OK {
                return;
            }
            acknowledged
                .lock()
                .unwrap()
                .joined
                .entry(id.clone())
                .or_default()
                .push(client);
        }

        if round % 3 == 0 {
            acknowledged.lock().unwrap().close_sent.insert(id.clone());
            let Ok(response) = http
                .delete(format!("{admin}/api/v1/sessions/{id}"))
                .send()
                .await
            else {
                return;
            };
            if response.status() != reqwest::StatusCode::NO_CONTENT {
                return;
            }
            acknowledged.lock().unwrap().closed.insert(id);
        }
    }
}

/// Names of the joined clients in a session document, whether listed as strings or as
/// objects with a `name`.
fn client_names(session: &Value) -> HashSet<String> {
    session["clients"]
        .as_array()
        .map(|clients| {
            clients
                .iter()
                .filter_map(|client| client.as_str().or_else(|| client["name"].as_str()))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_changes_survive_sigkill_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    let service = service::start(&data_dir, &[]).await;
    let acknowledged = Arc::new(Mutex::new(Acknowledged::default()));
    let workers: Vec<_> = (0..WORKERS)
        .map(|worker| {
            tokio::spawn(drive(
                worker,
                service.admin.clone(),
                service.public.clone(),
                http.clone(),
                Arc::clone(&acknowledged),
            ))
        })
        .collect();
    // Let traffic build up, then kill the service in the middle of it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while acknowledged.lock().unwrap().closed.len() < 20 {
        assert!(Instant::now() < deadline, "too little traffic got through");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    service.kill(); // SIGKILL
    for worker in workers {
        worker.await.unwrap();
    }

    let acknowledged = std::mem::take(&mut *acknowledged.lock().unwrap());
    let creates = acknowledged.pins.len();
    let joins: usize = acknowledged.joined.values().map(Vec::len).sum();
    println!(
        "acknowledged before SIGKILL: {creates} creates, {joins} joins, {} closes",
        acknowledged.closed.len()
    );

    let service = service::start(&data_dir, &[]).await;
    for (id, pin) in &acknowledged.pins {
        let response = http
            .get(format!("{}/api/v1/sessions/{id}", service.admin))
            .send()
            .await
            .unwrap();
        let probe = format!("probe-{id}");
        let join = http
            .post(format!("{}/api/v1/sessions/{id}/join", service.public))
            .json(&json!({ "pin": pin, "client": probe }))
            .send()
            .await
            .unwrap()
            .status();
        if acknowledged.closed.contains(id) {
            assert_eq!(response.status(), 404, "closed session {id} is back");
            assert_eq!(join, 401, "closed session {id} accepts joins");
            continue;
        }
        if acknowledged.close_sent.contains(id) && response.status() == 404 {
            // Its close was in flight at the SIGKILL and reached the disk: closed for good.
            assert_eq!(join, 401, "closed session {id} accepts joins");
            continue;
        }
        assert_eq!(response.status(), 200, "acknowledged session {id} is lost");
        let session: Value = response.json().await.unwrap();
        let present = client_names(&session);
        for client in acknowledged.joined.get(id).into_iter().flatten() {
            assert!(
                present.contains(client),
                "acknowledged join of {client} to {id} is lost: {session}"
            );
        }
        assert_eq!(join, 200, "acknowledged session {id} refuses its PIN");
    }

    // The restarted service takes new work as usual.
    let created: Value = json_answer(
        http.post(format!("{}/api/v1/sessions", service.admin))
            .json(&json!({})),
    )
    .await;
    assert!(!acknowledged
        .pins
        .contains_key(created["id"].as_str().unwrap()));
    service.kill();
}
