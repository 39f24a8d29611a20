//! End to end with every real part: the `session-manager` binary creates sessions and
//! issues tokens, its published JWKS is the plugin's key file, and devices holding those
//! tokens talk inside their session only; closing a session through the admin API
//! disconnects its devices within a second (the service's revocation link).

// Test code: a failed expectation is a failed test, so helpers may `expect` too.
#![allow(clippy::expect_used)]

#[path = "support/connection_closed.rs"]
mod connection_closed;
#[path = "support/real_service.rs"]
mod real_service;

use std::time::{Duration, Instant};

use connection_closed::closed_at;
use real_service::{http, linked_to_a_broker, Service};
use test_support::mosquitto::Broker;
use test_support::mqtt_device::Device;

#[test]
fn tokens_from_the_service_admit_devices_to_their_session_only() {
    let service = Service::start();
    let jwks = http(&service.public, "GET", "/.well-known/jwks.json", "");
    let broker = Broker::with_plugin(&jwks.to_string(), &[]);
    let port = broker.port();

    let (session, pin) = service.create_session();
    let (other_session, other_pin) = service.create_session();
    let mut lamp = Device::connect(port, "lamp", "lamp", &service.join(&session, &pin, "lamp"))
        .expect("lamp admitted");
    let switch = Device::connect(
        port,
        "switch",
        "switch",
        &service.join(&session, &pin, "switch"),
    )
    .expect("switch admitted");
    let mut stranger = Device::connect(
        port,
        "stranger",
        "stranger",
        &service.join(&other_session, &other_pin, "stranger"),
    )
    .expect("stranger admitted");

    assert!(lamp.subscribe(&format!("/{session}/#")));
    assert!(
        !stranger.subscribe(&format!("/{session}/#")),
        "no subscribing across sessions"
    );
    assert!(stranger.subscribe(&format!("/{other_session}/#")));
    switch.publish(&format!("/{session}/lamp/on"), b"1");
    assert!(lamp
        .wait_for_message(&format!("/{session}/lamp/on"), Duration::from_secs(5))
        .is_some());
    assert!(stranger
        .messages_within(Duration::from_millis(500))
        .is_empty());

    // A token of one client is no use to another.
    let lamp_token = service.join(&session, &pin, "lamp");
    assert!(Device::connect(port, "thief", "thief", &lamp_token).is_err());
}

#[test]
fn closing_a_session_disconnects_its_devices_within_a_second() {
    // The service signs with the fixture key, so the broker can start first with its JWKS.
    let (broker, service) = linked_to_a_broker();
    let port = broker.port();

    let (other, other_pin) = service.create_session();
    let mut bystander = Device::connect(
        port,
        "bystander",
        "bystander",
        &service.join(&other, &other_pin, "bystander"),
    )
    .expect("bystander admitted");
    assert!(bystander.subscribe(&format!("/{other}/#")));

    let mut latencies = Vec::new();
    for round in 0..20 {
        let (session, pin) = service.create_session();
        let client = format!("lamp-{round}");
        let token = service.join(&session, &pin, &client);
        let mut lamp = Device::connect(port, &client, &client, &token).expect("lamp admitted");
        assert!(lamp.subscribe(&format!("/{session}/#")));

        let sent = Instant::now();
        http(
            &service.admin,
            "DELETE",
            &format!("/api/v1/sessions/{session}"),
            "",
        );
        let at = closed_at(&mut lamp, Duration::from_secs(5)).expect("the lamp is disconnected");
        latencies.push(at.duration_since(sent));
        assert!(
            Device::connect(port, &client, &client, &token).is_err(),
            "a closed session's token is refused"
        );
    }
    latencies.sort();
    let median = latencies[latencies.len() / 2];
    let max = latencies[latencies.len() - 1];
    eprintln!(
        "close -> disconnect over {} closes: median {median:?}, max {max:?}",
        latencies.len()
    );
    assert!(max < Duration::from_secs(1), "slowest close took {max:?}");

    // The other session was never touched.
    let sender = Device::connect(
        port,
        "sender",
        "sender",
        &service.join(&other, &other_pin, "sender"),
    )
    .expect("sender admitted");
    sender.publish(&format!("/{other}/ping"), b"1");
    assert!(bystander
        .wait_for_message(&format!("/{other}/ping"), Duration::from_secs(5))
        .is_some());
}
