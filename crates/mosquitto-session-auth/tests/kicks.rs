//! Kicks against a real Mosquitto loading the plugin: the service link kicks one device;
//! its connection is closed within a second and reported as kicked, its tokens from before
//! the kick are refused (the one in the token cache too, and after a broker restart), a
//! token of the new generation is admitted, and every other device carries on.

// Test code: a failed expectation is a failed test, so helpers may `expect` too.
#![allow(clippy::expect_used)]

#[path = "support/connection_closed.rs"]
mod connection_closed;

use std::time::{Duration, Instant};

use connection_closed::closed_at;
use session_token::{Claims, DisconnectReason, PresenceMessage};
use test_support::fixture_tokens::{device_claims, jwks, SigningKey};
use test_support::mosquitto::{require_mosquitto, Broker};
use test_support::mqtt_device::Device;
use test_support::service_link::{kicking, ServiceLink};

const REPORT: Duration = Duration::from_secs(5);
const WINDOW: Duration = Duration::from_millis(500);

fn broker(key: &SigningKey) -> Broker {
    require_mosquitto();
    Broker::with_plugin(&jwks(&[key]), &[])
}

/// A token for `client` of `session` of generation `generation`, with its own `jti`.
fn token_of_generation(key: &SigningKey, session: &str, client: &str, generation: u32) -> String {
    key.sign(&Claims {
        generation,
        jti: format!("{client}-gen-{generation}"),
        ..device_claims(session, client, 600)
    })
}

#[test]
fn a_kicked_device_is_cut_off_within_a_second_and_only_its_new_generation_comes_back() {
    let key = SigningKey::rsa();
    let broker = broker(&key);
    let port = broker.port();
    let mut link = ServiceLink::connect(port, &key);
    let old_token = token_of_generation(&key, "111", "lamp", 0);
    // Connected twice (bare and scoped id): both are the kicked device's connections.
    let mut lamp = Device::connect(port, "lamp", "lamp", &old_token).expect("admitted");
    let mut lamp_scoped = Device::connect(port, "111/lamp", "lamp", &old_token).expect("admitted");
    let mut switch = Device::of_session(port, &key, "111", "switch").expect("admitted");
    let mut lamp_b = Device::connect(
        port,
        "222/lamp",
        "lamp",
        &key.device_token("222", "lamp", 600),
    )
    .expect("the same name in another session");
    assert!(switch.subscribe("/111/#"));
    assert!(lamp_b.subscribe("/222/#"));

    let sent = Instant::now();
    link.send(&kicking("111", "lamp", 1));
    for device in [&mut lamp, &mut lamp_scoped] {
        let at = closed_at(device, REPORT).expect("the kicked device is disconnected");
        let latency = at.duration_since(sent);
        assert!(latency < Duration::from_secs(1), "took {latency:?}");
    }
    let mut reasons = Vec::new();
    while reasons.len() < 2 {
        let (report, _) = link
            .wait_for(REPORT, |m| matches!(m, PresenceMessage::Disconnected(_)))
            .expect("both disconnects are reported");
        if let PresenceMessage::Disconnected(device) = report {
            assert_eq!(
                (device.sid.as_str(), device.client.as_str()),
                ("111", "lamp")
            );
            reasons.push(device.reason);
        }
    }
    assert_eq!(reasons, vec![DisconnectReason::Kicked; 2]);
    assert!(broker.wait_for_log("kicked device(s)", REPORT));

    // Everyone else carries on.
    let writer = Device::of_session(port, &key, "111", "writer").expect("admitted");
    writer.publish("/111/x", b"1");
    assert_eq!(
        switch.messages_within(WINDOW),
        vec![("/111/x".to_owned(), b"1".to_vec())]
    );
    let writer_b = Device::of_session(port, &key, "222", "writer-b").expect("admitted");
    writer_b.publish("/222/x", b"2");
    assert_eq!(
        lamp_b.messages_within(WINDOW),
        vec![("/222/x".to_owned(), b"2".to_vec())]
    );

    // The old token is in the token cache (it connected before): refused all the same.
    assert!(Device::connect(port, "lamp", "lamp", &old_token).is_err());
    assert!(broker.wait_for_log(
        "the device was kicked and the token predates the kick",
        REPORT
    ));
    // So is any other token of the old generation, never seen before.
    let other_old = key.sign(&Claims {
        jti: "another".into(),
        ..device_claims("111", "lamp", 300)
    });
    assert!(Device::connect(port, "lamp", "lamp", &other_old).is_err());
    // The new generation is admitted, and may do what a device does.
    let mut fresh = Device::connect(
        port,
        "lamp",
        "lamp",
        &token_of_generation(&key, "111", "lamp", 1),
    )
    .expect("the new generation is admitted");
    assert!(fresh.subscribe("/111/#"));
    writer.publish("/111/y", b"3");
    assert_eq!(
        fresh.messages_within(WINDOW),
        vec![("/111/y".to_owned(), b"3".to_vec())]
    );

    // A later kick with a higher generation cuts off generation 1 as well.
    link.send(&kicking("111", "lamp", 2));
    assert!(closed_at(&mut fresh, REPORT).is_some());
    assert!(Device::connect(
        port,
        "lamp",
        "lamp",
        &token_of_generation(&key, "111", "lamp", 1)
    )
    .is_err());
}

#[test]
fn a_kick_of_a_device_that_is_not_connected_still_refuses_its_old_tokens() {
    let key = SigningKey::rsa();
    let broker = broker(&key);
    let port = broker.port();
    let link = ServiceLink::connect(port, &key);
    link.send(&kicking("111", "lamp", 1));
    assert!(broker.wait_for_log("kicked device(s)", REPORT));
    assert!(Device::of_session(port, &key, "111", "lamp").is_err());
    Device::of_session(port, &key, "111", "switch").expect("another device is admitted");
}

#[test]
fn kicks_survive_a_broker_restart_without_the_service() {
    let key = SigningKey::rsa();
    let broker = broker(&key);
    let old_token = token_of_generation(&key, "111", "lamp", 0);
    let _lamp = Device::connect(broker.port(), "lamp", "lamp", &old_token).expect("admitted");
    let link = ServiceLink::connect(broker.port(), &key);
    link.send(&kicking("111", "lamp", 1));
    assert!(broker.wait_for_log("kicked device(s)", REPORT));
    drop(link);

    // Restarted while the service is away: nobody sends the kick again.
    let broker = broker.restart();
    let port = broker.port();
    assert!(
        Device::connect(port, "lamp", "lamp", &old_token).is_err(),
        "the kicked generation is still refused"
    );
    assert!(broker.wait_for_log("the device was kicked", REPORT));
    assert!(
        broker.log().contains("devices kicked: 1"),
        "{}",
        broker.log()
    );
    Device::connect(
        port,
        "lamp",
        "lamp",
        &token_of_generation(&key, "111", "lamp", 1),
    )
    .expect("the new generation is admitted");
    Device::of_session(port, &key, "111", "switch").expect("other devices are admitted");
}

#[test]
fn devices_cannot_kick() {
    let key = SigningKey::rsa();
    let broker = broker(&key);
    let port = broker.port();
    let mut lamp = Device::of_session(port, &key, "111", "lamp").expect("admitted");
    let rogue = Device::of_session(port, &key, "111", "rogue").expect("admitted");
    rogue
        .client
        .publish(
            session_token::CONTROL_TOPIC,
            rumqttc::QoS::AtLeastOnce,
            false,
            kicking("111", "lamp", 1).to_payload(),
        )
        .expect("queued");
    assert!(closed_at(&mut lamp, WINDOW).is_none(), "the lamp stays");
    assert!(!broker.log().contains("kicked device(s)"));
    Device::of_session(port, &key, "111", "lamp").expect("its tokens are still admitted");
}
