//! Backend principals end to end, with every real part: the `session-manager` binary
//! issues a service token through its admin API (and through `session-manager token
//! create`), a real Mosquitto loading the plugin admits it as `$svc-<name>`, and:
//! - a backend granted `/+/#` reaches the devices of two sessions, and they reach it;
//! - its token can neither subscribe to nor publish on `$CONTROL/...` (the attack: a
//!   forged close sent by the backend is ignored), nor write a session's presence;
//! - revoking it through the admin API disconnects it within a second, and the same token
//!   is refused from then on, also after a broker restart while the service is down, and
//!   by a broker that never heard of it, once a restarted service's link republished it.

// Test code: a failed expectation is a failed test, so helpers may `expect` too.
#![allow(clippy::expect_used)]

#[path = "support/connection_closed.rs"]
mod connection_closed;
#[path = "support/real_service.rs"]
mod real_service;

use std::time::{Duration, Instant};

use connection_closed::closed_at;
use real_service::{control_url, http, linked_to_a_broker, Service};
use serde_json::json;
use session_token::CONTROL_TOPIC;
use test_support::control_message::closing;
use test_support::fixture_tokens::{jwks, SigningKey};
use test_support::mosquitto::Broker;
use test_support::mqtt_device::Device;
use test_support::service::Launch;

const WINDOW: Duration = Duration::from_millis(500);
const WAIT: Duration = Duration::from_secs(5);

/// Issues a service token through the admin API: (token, jti, username).
fn issue(service: &Service, body: serde_json::Value) -> (String, String, String) {
    let issued = http(
        &service.admin,
        "POST",
        "/api/v1/service-tokens",
        &body.to_string(),
    );
    let field = |name: &str| issued[name].as_str().expect(name).to_owned();
    (field("token"), field("jti"), field("username"))
}

#[test]
fn a_backend_reaches_every_session_never_the_control_channel_and_a_revocation_cuts_it_off() {
    let (broker, service) = linked_to_a_broker();
    let port = broker.port();

    let (first, first_pin) = service.create_session();
    let (second, second_pin) = service.create_session();
    let mut lamp = Device::connect(
        port,
        "lamp",
        "lamp",
        &service.join(&first, &first_pin, "lamp"),
    )
    .expect("lamp admitted");
    let mut fan = Device::connect(
        port,
        "fan",
        "fan",
        &service.join(&second, &second_pin, "fan"),
    )
    .expect("fan admitted");
    assert!(lamp.subscribe(&format!("/{first}/#")));
    assert!(fan.subscribe(&format!("/{second}/#")));

    let (token, jti, username) = issue(
        &service,
        json!({"name": "backend", "subscribe": ["/+/#"], "publish": ["/+/#"], "ttl_secs": 600}),
    );
    assert_eq!(username, "$svc-backend");
    assert!(
        Device::connect(port, "backend", &username, &token).is_err(),
        "only its reserved client id"
    );
    let mut backend =
        Device::connect(port, &username, &username, &token).expect("backend admitted");
    assert!(backend.subscribe("/+/#"));

    // Both sessions' devices are reached, and reach the backend.
    backend.publish(&format!("/{first}/lamp/cmd"), b"on");
    backend.publish(&format!("/{second}/fan/cmd"), b"fast");
    assert!(lamp
        .wait_for_message(&format!("/{first}/lamp/cmd"), WAIT)
        .is_some());
    assert!(fan
        .wait_for_message(&format!("/{second}/fan/cmd"), WAIT)
        .is_some());
    lamp.publish(&format!("/{first}/lamp/state"), b"on");
    fan.publish(&format!("/{second}/fan/state"), b"fast");
    let fan_state = format!("/{second}/fan/state");
    let before_lamp = backend
        .wait_for_message(&format!("/{first}/lamp/state"), WAIT)
        .expect("the lamp's message reaches the backend");
    assert!(
        before_lamp.contains(&fan_state) || backend.wait_for_message(&fan_state, WAIT).is_some(),
        "the fan's message reaches the backend"
    );

    // The attack: the control channel is out of reach, whatever the filter.
    for filter in [
        "$CONTROL/#",
        CONTROL_TOPIC,
        "#",
        "+/#",
        "$share/g/$CONTROL/#",
    ] {
        assert!(!backend.subscribe(filter), "{filter} granted to a backend");
    }
    backend
        .client
        .publish(
            CONTROL_TOPIC,
            rumqttc::QoS::AtLeastOnce,
            false,
            closing(&[(first.as_str(), u64::MAX / 2)]).to_payload(),
        )
        .expect("publish queued");
    backend.publish(&format!("/{first}/$presence/lamp"), b"offline");
    let forged: Vec<_> = lamp
        .all_messages_within(WINDOW)
        .into_iter()
        .filter(|(_, payload)| payload.as_slice() == b"offline")
        .collect();
    assert!(
        forged.is_empty(),
        "the forged presence got through: {forged:?}"
    );
    assert!(broker.log().contains("$svc-backend"), "{}", broker.log());
    let still = service.join(&first, &first_pin, "switch");
    let switch =
        Device::connect(port, "switch", "switch", &still).expect("the session still lives");
    switch.publish(&format!("/{first}/lamp/cmd"), b"off");
    assert!(lamp
        .wait_for_message(&format!("/{first}/lamp/cmd"), WAIT)
        .is_some());

    // Revoked: cut off within a second, refused from then on.
    let sent = Instant::now();
    http(
        &service.admin,
        "DELETE",
        &format!("/api/v1/service-tokens/{jti}"),
        "",
    );
    let at = closed_at(&mut backend, WAIT).expect("the backend is disconnected");
    let latency = at.duration_since(sent);
    eprintln!("revoke -> disconnect: {latency:?}");
    assert!(latency < Duration::from_secs(1), "took {latency:?}");
    assert!(Device::connect(port, &username, &username, &token).is_err());
    assert!(broker.wait_for_log("revoked token(s)", WAIT));
    // The devices were never touched.
    switch.publish(&format!("/{first}/lamp/cmd"), b"on");
    assert!(lamp
        .wait_for_message(&format!("/{first}/lamp/cmd"), WAIT)
        .is_some());

    // A broker restart while the service is down keeps refusing it.
    drop((lamp, fan, switch));
    let data = service.kill();
    let broker = broker.restart();
    let Err(refusal) = Device::connect(broker.port(), &username, &username, &token) else {
        panic!("a revoked token is admitted after a broker restart");
    };
    eprintln!("after restart: {refusal}");
    assert!(
        broker.wait_for_log("the token has been revoked", WAIT),
        "{}",
        broker.log()
    );
    assert!(
        broker.log().contains("tokens revoked: 1"),
        "{}",
        broker.log()
    );

    // A broker without any state hears of it from the restarted service's link.
    let fresh = Broker::with_plugin(&jwks(&[&SigningKey::rsa()]), &[]);
    let service = Service::start_in(data, &[("ISM_BROKER_CONTROL_URL", &control_url(&fresh))]);
    service.wait_for_broker_link();
    assert!(
        fresh.wait_for_log("revoked token(s)", WAIT),
        "{}",
        fresh.log()
    );
    assert!(Device::connect(fresh.port(), &username, &username, &token).is_err());
    assert!(fresh.wait_for_log("the token has been revoked", WAIT));
}

#[test]
fn the_command_line_issues_a_working_token_and_revokes_it() {
    let (broker, service) = linked_to_a_broker();
    let port = broker.port();
    let (session, pin) = service.create_session();
    let mut lamp = Device::connect(port, "lamp", "lamp", &service.join(&session, &pin, "lamp"))
        .expect("lamp admitted");
    assert!(lamp.subscribe(&format!("/{session}/#")));

    let admin_url = format!("http://{}", service.admin);
    let output = Launch::new().env("ISM_ADMIN_URL", &admin_url).output([
        "token",
        "create",
        "--name",
        "cli-backend",
        "--publish",
        "/+/#",
        "--ttl-secs",
        "600",
    ]);
    assert!(output.status.success(), "{output:?}");
    let issued: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("the token as JSON");
    let token = issued["token"].as_str().expect("token");
    let username = issued["username"].as_str().expect("username");
    assert_eq!(username, "$svc-cli-backend");
    let backend = Device::connect(port, username, username, token).expect("admitted");
    backend.publish(&format!("/{session}/lamp/cmd"), b"on");
    assert!(lamp
        .wait_for_message(&format!("/{session}/lamp/cmd"), WAIT)
        .is_some());

    let listed = Launch::new().output(["token", "list", "--admin-url", &admin_url]);
    assert!(listed.status.success(), "{listed:?}");
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("JSON");
    assert_eq!(listed["service_tokens"][0]["jti"], issued["jti"]);
    assert!(listed["service_tokens"][0].get("token").is_none());

    let refused = Launch::new().env("ISM_ADMIN_URL", &admin_url).output([
        "token",
        "create",
        "--name",
        "intruder",
        "--subscribe",
        "$CONTROL/#",
    ]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("\"$CONTROL/#\" cannot be granted"),
        "{stderr}"
    );

    let jti = issued["jti"].as_str().expect("jti");
    let revoked = Launch::new()
        .env("ISM_ADMIN_URL", &admin_url)
        .output(["token", "revoke", jti]);
    assert!(revoked.status.success(), "{revoked:?}");
    let mut backend = backend;
    assert!(closed_at(&mut backend, WAIT).is_some(), "cut off");
    assert!(Device::connect(port, username, username, token).is_err());
}
