//! End to end against a real Mosquitto loading the plugin: Last Wills and offline queues
//! work as in plain Mosquitto for devices whose token is valid, and never for a device cut
//! off because its token expired or its session was closed.

use std::time::{Duration, Instant};

use rumqttc::QoS;
use session_token::{ClosedSession, ControlMessage, CONTROL_TOPIC};
use test_support::fixture_tokens::{device_claims, jwks, SigningKey};
use test_support::mosquitto::Broker;
use test_support::mqtt_device::Device;
use test_support::raw_mqtt::{session_observer, ConnectOptions, Mqtt5Options, RawClient};

const WINDOW: Duration = Duration::from_millis(500);
const WILL_TOPIC: &str = "/111/lamp/status";

fn lamp_options(token: &str) -> ConnectOptions {
    ConnectOptions::device("lamp", "lamp", token).will(WILL_TOPIC, b"offline")
}

#[test]
fn a_device_that_drops_unexpectedly_has_its_will_published_in_its_session() {
    let key = SigningKey::rsa();
    let broker = Broker::with_plugin(&jwks(&[&key]), &[]);
    let port = broker.port();
    let mut observer = session_observer(port, &key, "111");
    let mut outsider = RawClient::connect(
        port,
        &ConnectOptions::device(
            "outsider",
            "outsider",
            &key.device_token("222", "outsider", 600),
        ),
    )
    .expect("outsider admitted");
    assert!(outsider.subscribe("/222/#"));

    let lamp = RawClient::connect(port, &lamp_options(&key.device_token("111", "lamp", 600)))
        .expect("lamp admitted");
    lamp.drop_abruptly();
    assert_eq!(
        observer.next_message(Duration::from_secs(5)),
        Some((WILL_TOPIC.to_owned(), b"offline".to_vec())),
        "the will reaches the session"
    );
    assert!(outsider.messages_within(WINDOW).is_empty());

    // A clean DISCONNECT discards the will, as MQTT says.
    let lamp = RawClient::connect(port, &lamp_options(&key.device_token("111", "lamp", 600)))
        .expect("lamp admitted");
    lamp.disconnect();
    assert!(observer.messages_within(WINDOW).is_empty());
}

#[test]
fn an_mqtt5_will_delay_is_honoured() {
    let key = SigningKey::rsa();
    let broker = Broker::with_plugin(&jwks(&[&key]), &[]);
    let port = broker.port();
    let mut observer = session_observer(port, &key, "111");
    let lamp = RawClient::connect(
        port,
        &lamp_options(&key.device_token("111", "lamp", 600)).mqtt5(Mqtt5Options {
            will_delay_secs: 2,
            session_expiry_secs: 60,
        }),
    )
    .expect("lamp admitted");
    let dropped = Instant::now();
    lamp.drop_abruptly();
    assert_eq!(
        observer.next_message(Duration::from_secs(6)),
        Some((WILL_TOPIC.to_owned(), b"offline".to_vec())),
        "the delayed will arrives"
    );
    let delay = dropped.elapsed();
    assert!(
        delay >= Duration::from_millis(1900),
        "arrived after {delay:?}"
    );
}

#[test]
fn no_will_for_a_device_whose_token_expired() {
    let key = SigningKey::rsa();
    let broker = Broker::with_plugin(&jwks(&[&key]), &[]);
    let port = broker.port();
    let mut observer = session_observer(port, &key, "111");
    let claims = device_claims("111", "lamp", 2);
    let mut lamp =
        RawClient::connect(port, &lamp_options(&key.sign(&claims))).expect("lamp admitted");
    assert!(
        !lamp.stays_open_for(Duration::from_secs(6)),
        "disconnected at expiry"
    );
    assert!(broker.wait_for_log("token expired", Duration::from_secs(2)));
    assert!(
        observer.messages_within(WINDOW).is_empty(),
        "no will after an expiry"
    );
}

fn control_token(key: &SigningKey) -> String {
    key.sign(&session_token::Claims {
        sid: String::new(),
        subs: Vec::new(),
        publ: vec![CONTROL_TOPIC.to_owned()],
        acl: Vec::new(),
        ..device_claims("0", "$session-manager", 600)
    })
}

#[test]
fn no_will_for_a_device_whose_session_was_closed() {
    let key = SigningKey::rsa();
    let broker = Broker::with_plugin(&jwks(&[&key]), &[]);
    let port = broker.port();
    // The closed session's will would go to its own tree; watch it with a token of the
    // same session that is still connected (a fresh observer is refused once closed).
    let mut observer = session_observer(port, &key, "111");
    let mut lamp = RawClient::connect(port, &lamp_options(&key.device_token("111", "lamp", 600)))
        .expect("lamp admitted");
    let control = Device::connect(
        port,
        "$session-manager",
        "$session-manager",
        &control_token(&key),
    )
    .expect("control link admitted");
    let message = ControlMessage {
        closed: vec![ClosedSession {
            sid: "111".into(),
            until: test_support::now() + 600,
        }],
        ..ControlMessage::default()
    };
    control
        .client
        .publish(CONTROL_TOPIC, QoS::AtLeastOnce, false, message.to_payload())
        .expect("publish queued");
    assert!(
        !lamp.stays_open_for(Duration::from_secs(3)),
        "the lamp is cut off"
    );
    let seen: Vec<String> = observer
        .messages_within(WINDOW)
        .into_iter()
        .map(|(topic, _)| topic)
        .collect();
    assert!(!seen.contains(&WILL_TOPIC.to_owned()), "no will: {seen:?}");
}

#[test]
fn a_persistent_session_receives_what_was_queued_while_it_was_offline() {
    let key = SigningKey::rsa();
    let broker = Broker::with_plugin(&jwks(&[&key]), &[]);
    let port = broker.port();
    let token = key.device_token("111", "lamp", 600);
    let options = ConnectOptions::device("lamp", "lamp", &token).persistent();
    let mut lamp = RawClient::connect(port, &options).expect("lamp admitted");
    assert!(lamp.subscribe("/111/lamp/cmd"));
    lamp.disconnect();

    let mut switch = RawClient::connect(
        port,
        &ConnectOptions::device("switch", "switch", &key.device_token("111", "switch", 600)),
    )
    .expect("switch admitted");
    for payload in [&b"1"[..], b"2", b"3"] {
        switch.publish("/111/lamp/cmd", payload);
    }
    let mut lamp = RawClient::connect(port, &options).expect("lamp back");
    let received: Vec<Vec<u8>> = lamp
        .messages_within(WINDOW * 2)
        .into_iter()
        .map(|(_, payload)| payload)
        .collect();
    assert_eq!(received, vec![b"1".to_vec(), b"2".to_vec(), b"3".to_vec()]);
}
