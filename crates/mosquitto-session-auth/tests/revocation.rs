//! End to end against a real Mosquitto loading the plugin: a closed session pushed on the
//! control topic disconnects that session's devices at once and refuses their tokens;
//! other sessions carry on, and devices cannot close sessions.

// Test code: a failed expectation is a failed test, so helpers may `expect` too.
#![allow(clippy::expect_used)]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mosquitto_session_auth::CONTROL_TOPIC;
use rumqttc::QoS;
use session_token::Claims;
use test_support::control_message::closing;
use test_support::fixture_tokens::{device_claims, jwks, SigningKey};
use test_support::mosquitto::{plugin_path, require_mosquitto, Broker};
use test_support::mqtt_device::{Device, DeviceEvent};

const WINDOW: Duration = Duration::from_millis(500);

/// A token for the control client: it may publish to the control topic and nothing else.
fn control_token(key: &SigningKey) -> String {
    key.sign(&Claims {
        sid: String::new(),
        subs: Vec::new(),
        publ: vec![CONTROL_TOPIC.to_owned()],
        acl: Vec::new(),
        ..device_claims("0", LINK, 600)
    })
}

/// A broker loading the plugin, trusting the fixture RSA key it returns.
fn broker_trusting_one_key() -> (SigningKey, Broker) {
    require_mosquitto();
    let key = SigningKey::rsa();
    let broker = Broker::with_plugin(&jwks(&[&key]), &[]);
    (key, broker)
}

/// The control link's client id (and `sub`): reserved ids start with `$`.
const LINK: &str = "$session-manager";

/// Closes `sessions`, each refused for the next 10 minutes.
fn close(client: &Device, sessions: &[&str]) {
    let until = test_support::now() + 600;
    close_until(
        client,
        &sessions.iter().map(|s| (*s, until)).collect::<Vec<_>>(),
    );
}

fn close_until(client: &Device, sessions: &[(&str, u64)]) {
    let message = closing(sessions);
    client
        .client
        .publish(CONTROL_TOPIC, QoS::AtLeastOnce, false, message.to_payload())
        .expect("publish queued");
}

/// Waits for the device's connection to be closed; returns when that happened.
fn closed_at(device: &mut Device, timeout: Duration) -> Option<Instant> {
    let deadline = Instant::now() + timeout;
    loop {
        match device.next_event(deadline.saturating_duration_since(Instant::now()))? {
            DeviceEvent::Closed { at, .. } => return Some(at),
            _ => continue,
        }
    }
}

#[test]
fn closing_a_session_disconnects_its_devices_within_a_second_and_only_them() {
    let (key, broker) = broker_trusting_one_key();
    let port = broker.port();
    let token_a = key.device_token("111", "lamp-a", 600);
    let mut lamp_a = Device::connect(port, "lamp-a", "lamp-a", &token_a).expect("A admitted");
    let mut lamp_b = Device::of_session(port, &key, "222", "lamp-b").expect("B admitted");
    let switch_b = Device::of_session(port, &key, "222", "switch-b").expect("B's switch admitted");
    assert!(lamp_a.subscribe("/111/#"));
    assert!(lamp_b.subscribe("/222/#"));
    let control =
        Device::connect(port, LINK, LINK, &control_token(&key)).expect("control client admitted");

    let sent = Instant::now();
    close(&control, &["111"]);
    let at = closed_at(&mut lamp_a, Duration::from_secs(5)).expect("A is disconnected");
    let latency = at.duration_since(sent);
    assert!(latency < Duration::from_secs(1), "took {latency:?}");
    assert!(broker.wait_for_log("its session was closed", Duration::from_secs(2)));

    switch_b.publish("/222/lamp/on", b"1");
    assert_eq!(
        lamp_b.messages_within(WINDOW),
        vec![("/222/lamp/on".to_owned(), b"1".to_vec())],
        "session B carries on"
    );

    let again = Device::connect(port, "lamp-a", "lamp-a", &token_a);
    assert!(again.is_err(), "a closed session's token is refused");
    assert!(broker.wait_for_log(
        "the token's session has been closed",
        Duration::from_secs(2)
    ));
    let fresh_a = Device::of_session(port, &key, "111", "lamp-a2");
    assert!(
        fresh_a.is_err(),
        "every token of the closed session is refused"
    );
}

#[test]
fn devices_cannot_close_sessions() {
    let (key, broker) = broker_trusting_one_key();
    let port = broker.port();
    let mut lamp = Device::of_session(port, &key, "111", "lamp").expect("admitted");
    assert!(lamp.subscribe("/111/#"));
    let rogue = Device::of_session(port, &key, "111", "rogue").expect("admitted");

    close(&rogue, &["111"]);
    close(&lamp, &["111"]);
    rogue.publish("/111/still", b"here");
    assert_eq!(
        lamp.messages_within(WINDOW),
        vec![("/111/still".to_owned(), b"here".to_vec())],
        "both devices stay connected"
    );
    assert!(Device::of_session(port, &key, "111", "late").is_ok());
    assert!(!broker.log().contains("closed session"));
}

#[test]
fn a_malformed_control_message_is_logged_and_ignored() {
    let (key, broker) = broker_trusting_one_key();
    let port = broker.port();
    let mut lamp = Device::of_session(port, &key, "111", "lamp").expect("admitted");
    assert!(lamp.subscribe("/111/#"));
    let control =
        Device::connect(port, LINK, LINK, &control_token(&key)).expect("control client admitted");
    control
        .client
        .publish(
            CONTROL_TOPIC,
            QoS::AtLeastOnce,
            false,
            b"{not json".to_vec(),
        )
        .expect("publish queued");
    assert!(broker.wait_for_log("malformed payload", Duration::from_secs(2)));
    close(&control, &["999"]);
    assert!(broker.wait_for_log("closed session(s) [\"999\"]", Duration::from_secs(2)));
    assert!(lamp.messages_within(WINDOW).is_empty());
    assert!(closed_at(&mut lamp, WINDOW).is_none(), "the lamp stays");
}

/// Waits until a token of `session` is admitted again; returns when that happened.
fn admitted_again_at(
    port: u16,
    key: &SigningKey,
    session: &str,
    deadline: Instant,
) -> Option<Instant> {
    let mut attempt = 0;
    while Instant::now() < deadline {
        attempt += 1;
        let name = format!("probe-{attempt}");
        if Device::of_session(port, key, session, &name).is_ok() {
            return Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

#[test]
fn a_revocation_lasts_until_the_end_the_service_sends_and_is_forgotten_after() {
    let (key, broker) = broker_trusting_one_key();
    let port = broker.port();
    let control = Device::connect(port, LINK, LINK, &control_token(&key)).expect("control link");
    let until = test_support::now() + 3;
    close_until(&control, &[("111", until), ("222", until + 600)]);
    assert!(broker.wait_for_log("closed session(s)", Duration::from_secs(2)));
    let end = UNIX_EPOCH + Duration::from_secs(until);
    let end = Instant::now() + end.duration_since(SystemTime::now()).unwrap_or_default();

    let again = admitted_again_at(port, &key, "111", end + Duration::from_secs(3))
        .expect("session 111 is admitted again after its end");
    assert!(again >= end, "admitted {:?} before the end", end - again);
    assert!(
        Device::of_session(port, &key, "222", "late").is_err(),
        "a session with a later end is still refused"
    );
}

#[test]
fn a_revocation_survives_a_broker_restart_without_the_service() {
    let (key, broker) = broker_trusting_one_key();
    let control =
        Device::connect(broker.port(), LINK, LINK, &control_token(&key)).expect("control link");
    close(&control, &["111"]);
    assert!(broker.wait_for_log("closed session(s)", Duration::from_secs(2)));
    drop(control);

    // Restarted while the service is away: nobody sends the closes again.
    let broker = broker.restart();
    let port = broker.port();
    let refused = Device::of_session(port, &key, "111", "lamp");
    assert!(
        refused.is_err(),
        "the closed session's token is still refused"
    );
    assert!(broker.wait_for_log(
        "the token's session has been closed",
        Duration::from_secs(2)
    ));
    Device::of_session(port, &key, "222", "other").expect("other sessions are admitted");
}

#[test]
fn a_damaged_state_file_stops_the_broker_with_a_message_naming_it() {
    require_mosquitto();
    let key = SigningKey::rsa();
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("readable by the broker's user");
    let state = dir.path().join("state");
    std::fs::write(&state, b"{\"version\":1,\"closed\":[{\"sid\":\"1").expect("write");
    let jwks_path = dir.path().join("jwks.json");
    std::fs::write(&jwks_path, jwks(&[&key])).expect("write jwks");
    let settings = format!(
        "allow_anonymous false\nplugin {}\nplugin_opt_jwks_file {}\nplugin_opt_state_file {}\n",
        plugin_path().display(),
        jwks_path.display(),
        state.display()
    );
    let (status, log) = Broker::run_until_exit(&settings);
    assert!(!status.success(), "mosquitto must not start");
    let expected = format!("state_file {} is damaged", state.display());
    assert!(log.contains(&expected), "log lacks {expected:?}:\n{log}");
}
