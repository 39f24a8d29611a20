//! The broker link of the real binary in both directions, against a stand-in for the
//! plugin's side of the control channel (see `support/plugin_double.rs` for why not
//! Mosquitto): on every connect it subscribes to presence and asks who is connected;
//! presence reports show in the admin API within a second (a takeover leaves the device
//! online, a sync answer without a device marks it offline, malformed reports are
//! ignored); kicks are answered 204/404, published with the right generation and refusal
//! end, raise the generation of later tokens and survive `kill -9`.

#[path = "support/plugin_double.rs"]
mod plugin_double;
#[path = "support/service.rs"]
mod service;

use std::time::{Duration, Instant};

use base64::Engine as _;
use plugin_double::PluginDouble;
use reqwest::StatusCode;
use serde_json::{json, Value};
use session_token::{
    ConnectedDevice, DisconnectReason, DisconnectedDevice, OnlineDevices, PresenceBatch,
    PresenceMessage,
};
use test_support::now;
use test_support::session_api;

const TOKEN_TTL: u64 = 3600;
const WAIT: Duration = Duration::from_secs(30);
/// How soon a presence report must show in the admin API.
const PRESENCE_DELAY: Duration = Duration::from_secs(1);

async fn start(data_dir: &std::path::Path, double: &PluginDouble) -> service::Service {
    let url = double.url();
    let ttl = TOKEN_TTL.to_string();
    let env = [
        ("MQTT_AUTH_MODE", "dev_jwt_auth"),
        ("ISM_BROKER_CONTROL_URL", url.as_str()),
        ("ISM_TOKEN_TTL_SECS", ttl.as_str()),
    ];
    service::start(data_dir, &env).await
}

/// Joins `client`; returns the token's claims.
async fn join(http: &reqwest::Client, public: &str, session: &Value, client: &str) -> Value {
    let response = session_api::join(
        http,
        public,
        session["id"].as_str().expect("id"),
        session["pin"].as_str().expect("pin"),
        client,
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("a JSON join answer");
    let token = body["token"].as_str().expect("a token");
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url claims");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

async fn kick(
    http: &reqwest::Client,
    admin: &str,
    session_id: &str,
    client: &str,
) -> reqwest::Response {
    http.delete(format!(
        "{admin}/api/v1/sessions/{session_id}/clients/{client}"
    ))
    .send()
    .await
    .expect("kick request")
}

async fn session_view(http: &reqwest::Client, admin: &str, session_id: &str) -> Value {
    session_api::json_answer(http.get(format!("{admin}/api/v1/sessions/{session_id}"))).await
}

fn client<'a>(view: &'a Value, name: &str) -> &'a Value {
    view["clients"]
        .as_array()
        .and_then(|clients| clients.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no client {name} in {view}"))
}

/// Polls the session view until `ready` accepts it, for at most [`PRESENCE_DELAY`].
async fn view_within(
    http: &reqwest::Client,
    admin: &str,
    session_id: &str,
    ready: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + PRESENCE_DELAY;
    loop {
        let view = session_view(http, admin, session_id).await;
        if ready(&view) {
            return view;
        }
        assert!(
            Instant::now() < deadline,
            "the admin view did not follow presence within {PRESENCE_DELAY:?}: {view}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn connected(sid: &str, client: &str, client_id: &str, at: u64) -> PresenceMessage {
    PresenceMessage::Connected(ConnectedDevice {
        sid: sid.to_owned(),
        client: client.to_owned(),
        client_id: client_id.to_owned(),
        jti: format!("jti-{at}"),
        at,
    })
}

fn disconnected(sid: &str, client: &str, at: u64, reason: DisconnectReason) -> PresenceMessage {
    PresenceMessage::Disconnected(DisconnectedDevice {
        sid: sid.to_owned(),
        client: client.to_owned(),
        client_id: format!("{sid}/{client}"),
        at,
        reason,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_reports_and_sync_answers_show_in_the_admin_view() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let http = reqwest::Client::new();
    let mut double = PluginDouble::start().await;
    let service = start(&data_dir, &double).await;
    let (_first_sync, _) = double.link_ready(WAIT).await;

    let session = session_api::create_session(&http, &service.admin, &json!({})).await;
    let sid = session.id.clone();
    let body = session.body.clone();
    join(&http, &service.public, &body, "lamp").await;
    join(&http, &service.public, &body, "door").await;
    let view = session_view(&http, &service.admin, &sid).await;
    assert_eq!(view["online_count"], 0, "{view}");
    let lamp = client(&view, "lamp");
    assert_eq!(lamp["online"], false);
    assert_eq!(
        lamp["last_seen"],
        Value::Null,
        "never seen since start: {lamp}"
    );
    assert_eq!(lamp["disconnect_reason"], Value::Null);

    let t1 = now() - 5;
    double
        .publish(&connected(&sid, "lamp", &format!("{sid}/lamp"), t1))
        .await;
    let view = view_within(&http, &service.admin, &sid, |v| {
        client(v, "lamp")["online"] == true
    })
    .await;
    let lamp = client(&view, "lamp");
    assert_eq!(lamp["connected_at"], t1, "{lamp}");
    assert!(lamp["last_seen"].as_u64().expect("last_seen while online") >= now() - 1);
    assert_eq!(lamp["disconnect_reason"], Value::Null);
    assert_eq!(view["online_count"], 1);
    let listed = session_api::list_sessions(&http, &service.admin).await;
    let in_list = listed["sessions"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["id"] == sid.as_str()))
        .expect("the session in the list");
    assert_eq!(in_list["online_count"], 1, "{in_list}");

    // A takeover, in one batch: the new connection is reported before the old one's end,
    // and the reports are applied in their order.
    let t2 = t1 + 2;
    double
        .publish_batch(&[
            connected(&sid, "lamp", "lamp", t2),
            disconnected(&sid, "lamp", t2, DisconnectReason::TakenOver),
        ])
        .await;
    // Malformed batches in between are ignored whole.
    double.publish_raw(b"not json").await;
    double.publish_raw(br#"[{"left":{"sid":"1"}}]"#).await;
    let lone = PresenceBatch::of([&connected(&sid, "ghost", "ghost", t2)]).into_payload();
    double.publish_raw(&lone[1..lone.len() - 1]).await;
    double
        .publish(&PresenceMessage::Online(OnlineDevices {
            sync: "no-such-request".into(),
            clients: vec![],
            done: true,
        }))
        .await;
    double.publish(&connected(&sid, "door", "door", t2)).await;
    let view = view_within(&http, &service.admin, &sid, |v| {
        client(v, "door")["online"] == true
    })
    .await;
    let lamp = client(&view, "lamp");
    assert_eq!(
        lamp["online"], true,
        "a takeover leaves the device online: {lamp}"
    );
    assert_eq!(lamp["connected_at"], t2);
    assert_eq!(view["online_count"], 2);

    let t3 = t2 + 3;
    double
        .publish(&disconnected(
            &sid,
            "lamp",
            t3,
            DisconnectReason::Disconnected,
        ))
        .await;
    let view = view_within(&http, &service.admin, &sid, |v| {
        client(v, "lamp")["online"] == false
    })
    .await;
    let lamp = client(&view, "lamp");
    assert_eq!(lamp["last_seen"], t3, "{lamp}");
    assert_eq!(lamp["disconnect_reason"], "disconnected");
    assert_eq!(lamp["connected_at"], Value::Null);
    assert_eq!(view["online_count"], 1);

    // The broker goes away and comes back: the link asks again, and the answer (in two
    // parts) is the truth: door is gone, lamp is back.
    double.cut_connection();
    let (request, _) = double.link_ready(WAIT).await;
    let t4 = now();
    let lamp_back = ConnectedDevice {
        sid: sid.clone(),
        client: "lamp".into(),
        client_id: "lamp".into(),
        jti: "j4".into(),
        at: t4,
    };
    double
        .publish(&PresenceMessage::Online(OnlineDevices {
            sync: request.clone(),
            clients: vec![lamp_back],
            done: false,
        }))
        .await;
    double
        .publish(&PresenceMessage::Online(OnlineDevices {
            sync: request,
            clients: vec![],
            done: true,
        }))
        .await;
    let view = view_within(&http, &service.admin, &sid, |v| {
        client(v, "door")["online"] == false && client(v, "lamp")["online"] == true
    })
    .await;
    let door = client(&view, "door");
    assert_eq!(door["disconnect_reason"], "disconnected", "{door}");
    assert!(door["last_seen"].as_u64().expect("last_seen") >= t4);
    assert_eq!(client(&view, "lamp")["connected_at"], t4);
    assert_eq!(view["online_count"], 1);

    let health: Value =
        session_api::json_answer(http.get(format!("{}/healthz", service.admin))).await;
    assert_eq!(health["revocation"]["connected"], true, "{health}");
    drop(service);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kicks_raise_the_generation_and_survive_sigkill() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let http = reqwest::Client::new();
    let mut double = PluginDouble::start().await;
    let service = start(&data_dir, &double).await;
    double.link_ready(WAIT).await;

    let session = session_api::create_session(&http, &service.admin, &json!({})).await;
    let short = session_api::create_session(&http, &service.admin, &json!({"ttl_secs": 600})).await;
    let sid = session.id.clone();
    let first = join(&http, &service.public, &session.body, "lamp").await;
    assert_eq!(
        first.get("gen"),
        None,
        "a device never kicked has generation 0: {first}"
    );
    join(&http, &service.public, &short.body, "lamp").await;

    // Unknown session, unknown client, malformed name.
    assert_eq!(
        kick(&http, &service.admin, "999999999", "lamp")
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let unknown = kick(&http, &service.admin, &sid, "ghost").await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let error: Value = unknown.json().await.expect("a JSON error");
    assert_eq!(error["error"]["code"], "not_found", "{error}");

    let kicked_from = now();
    let response = kick(&http, &service.admin, &sid, "lamp").await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let kicked_to = now();
    let message = double
        .control_where(WAIT, |m| m.kicked.iter().any(|k| k.sid == sid))
        .await;
    let kicked = message
        .kicked
        .iter()
        .find(|k| k.sid == sid)
        .expect("the kick");
    assert_eq!(kicked.client, "lamp");
    assert_eq!(kicked.below_gen, 1);
    assert!(
        (kicked_from + TOKEN_TTL..=kicked_to + TOKEN_TTL).contains(&kicked.until),
        "until {} is not kick time + token lifetime",
        kicked.until
    );
    let until = kicked.until;

    // A fresh join with the PIN works at once, with a token of the new generation.
    let after = join(&http, &service.public, &session.body, "lamp").await;
    assert_eq!(after["gen"], 1, "{after}");

    // The kick of a session that ends sooner is refused only until its end.
    assert_eq!(
        kick(&http, &service.admin, &short.id, "lamp")
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let message = double
        .control_where(WAIT, |m| m.kicked.iter().any(|k| k.sid == short.id))
        .await;
    let capped = message
        .kicked
        .iter()
        .find(|k| k.sid == short.id)
        .expect("the kick");
    assert_eq!(Some(capped.until), short.body["expires_at"].as_u64());

    // Durable: after kill -9 the kick is republished as it was, and the generation stays.
    service.kill();
    let service = start(&data_dir, &double).await;
    let (_, mut republished) = double.link_ready(WAIT).await;
    while !republished
        .iter()
        .any(|m| m.kicked.iter().any(|k| k.sid == sid))
    {
        republished.push(double.control_where(WAIT, |m| !m.kicked.is_empty()).await);
    }
    let again = republished
        .iter()
        .flat_map(|m| m.kicked.iter())
        .find(|k| k.sid == sid)
        .expect("the kick republished");
    assert_eq!((again.below_gen, again.until), (1, until), "{again:?}");
    let rejoined = join(&http, &service.public, &session.body, "lamp").await;
    assert_eq!(
        rejoined["gen"], 1,
        "the generation was not kept: {rejoined}"
    );
    assert_eq!(
        kick(&http, &service.admin, &sid, "lamp").await.status(),
        StatusCode::NO_CONTENT
    );
    let message = double
        .control_where(WAIT, |m| m.kicked.iter().any(|k| k.sid == sid))
        .await;
    assert_eq!(
        message
            .kicked
            .iter()
            .find(|k| k.sid == sid)
            .map(|k| k.below_gen),
        Some(2)
    );
    assert_eq!(
        join(&http, &service.public, &session.body, "lamp").await["gen"],
        2
    );

    // A closed session has nobody left to kick.
    let closed = session_api::close_session(&http, &service.admin, &sid).await;
    assert_eq!(closed.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        kick(&http, &service.admin, &sid, "lamp").await.status(),
        StatusCode::NOT_FOUND
    );
    drop(service);
}
