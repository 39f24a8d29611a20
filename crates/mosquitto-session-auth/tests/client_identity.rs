//! End to end against a real Mosquitto loading the plugin: the broker's client-id namespace
//! is shared by every session, and no device of one session can take over, disconnect, keep
//! off the air or inherit the offline session of a device of another.
//!
//! Session A's lamp holds a client id; session B's devices try to get it. Each attack is
//! checked from the holder's side: it stays connected, its will is not published, its
//! queued messages still reach it.

// Test code: a failed expectation is a failed test, so helpers may `expect` too.
#![allow(clippy::expect_used)]

use std::time::Duration;

use test_support::fixture_tokens::{jwks, SigningKey};
use test_support::mosquitto::Broker;
use test_support::raw_mqtt::{session_observer, ConnectOptions, RawClient};

const WINDOW: Duration = Duration::from_millis(500);
/// CONNACK return code 5 (MQTT 3.1.1): not authorised.
const NOT_AUTHORISED: u8 = 5;

fn broker(key: &SigningKey) -> Broker {
    Broker::with_plugin(&jwks(&[key]), &[])
}

/// Session A's lamp connected under its bare name `lamp-1`, with a will.
fn holder(port: u16, key: &SigningKey, persistent: bool) -> RawClient {
    let token = key.device_token("111", "lamp-1", 600);
    let mut options =
        ConnectOptions::device("lamp-1", "lamp-1", &token).will("/111/lamp-1/status", b"gone");
    options.persistent = persistent;
    RawClient::connect(port, &options).expect("A's lamp admitted")
}

/// Session A's switch, connected under its bare name.
fn switch(port: u16, key: &SigningKey) -> RawClient {
    let token = key.device_token("111", "switch", 600);
    RawClient::connect(port, &ConnectOptions::device("switch", "switch", &token))
        .expect("switch admitted")
}

/// Session B's device presenting the holder's client id `lamp-1` is refused, with a clean
/// session and with a persistent one; `when` says at which point of the test.
fn assert_intruder_refused(port: u16, key: &SigningKey, when: &str) {
    let intruder_token = key.device_token("222", "lamp-1", 600);
    for clean in [true, false] {
        let mut options = ConnectOptions::device("lamp-1", "lamp-1", &intruder_token);
        options.persistent = !clean;
        assert_eq!(
            RawClient::connect(port, &options).err(),
            Some(NOT_AUTHORISED),
            "clean session {clean}: refused {when}"
        );
    }
}

#[test]
fn another_sessions_device_cannot_take_over_a_bare_client_id() {
    let key = SigningKey::rsa();
    let broker = broker(&key);
    let port = broker.port();
    let mut observer = session_observer(port, &key, "111");
    let mut lamp = holder(port, &key, false);

    // Session B joined a device under the same name; it presents the same client id.
    let intruder_token = key.device_token("222", "lamp-1", 600);
    for attempt in 0..5 {
        let refused = RawClient::connect(
            port,
            &ConnectOptions::device("lamp-1", "lamp-1", &intruder_token)
                .will("/222/lamp-1/status", b"x"),
        );
        assert_eq!(
            refused.err(),
            Some(NOT_AUTHORISED),
            "attempt {attempt}: the newcomer is refused at CONNECT"
        );
    }
    assert!(
        lamp.stays_open_for(WINDOW),
        "the holder was never disconnected"
    );
    assert!(
        observer.messages_within(WINDOW).is_empty(),
        "no will of the holder was published"
    );
    assert!(broker.log().contains("held by another session"));
    assert!(!broker
        .log()
        .contains("already connected, closing old connection"));

    // The holder still works.
    let mut lamp_sub = holder(port, &key, false);
    drop(lamp);
    assert!(lamp_sub.subscribe("/111/lamp-1/cmd"));
}

#[test]
fn another_sessions_device_cannot_take_a_persisted_offline_session() {
    let key = SigningKey::rsa();
    let broker = broker(&key);
    let port = broker.port();
    let mut lamp = holder(port, &key, true);
    assert!(lamp.subscribe("/111/lamp-1/cmd"));
    lamp.disconnect();
    let mut switch = switch(port, &key);
    switch.publish("/111/lamp-1/cmd", b"on");

    assert_intruder_refused(port, &key, "while A's session is persisted");
    switch.publish("/111/lamp-1/cmd", b"off");

    let mut lamp = holder(port, &key, true);
    let queued = lamp.messages_within(WINDOW);
    assert_eq!(
        queued,
        vec![
            ("/111/lamp-1/cmd".to_owned(), b"on".to_vec()),
            ("/111/lamp-1/cmd".to_owned(), b"off".to_vec()),
        ],
        "the holder's offline queue survived the attempts"
    );
}

#[test]
fn a_scoped_client_id_belongs_to_its_session_and_name_only() {
    let key = SigningKey::rsa();
    let broker = broker(&key);
    let port = broker.port();
    let token = key.device_token("111", "lamp-1", 600);
    let mut lamp = RawClient::connect(
        port,
        &ConnectOptions::device("111/lamp-1", "lamp-1", &token),
    )
    .expect("the scoped id is admitted");
    for (session, name) in [("222", "lamp-1"), ("111", "switch")] {
        let other = key.device_token(session, name, 600);
        assert_eq!(
            RawClient::connect(port, &ConnectOptions::device("111/lamp-1", name, &other)).err(),
            Some(NOT_AUTHORISED),
            "{session}/{name} cannot use 111/lamp-1"
        );
    }
    assert_eq!(
        RawClient::connect(port, &ConnectOptions::device("222/x/y", "lamp-1", &token)).err(),
        Some(NOT_AUTHORISED),
        "ids with '/' are reserved for scoped ids"
    );
    assert!(lamp.stays_open_for(WINDOW));
}

#[test]
fn a_device_cannot_use_a_reserved_dollar_client_id() {
    let key = SigningKey::rsa();
    let broker = broker(&key);
    let port = broker.port();
    for name in ["$ism-link", "lamp"] {
        let token = key.device_token("111", name, 600);
        assert_eq!(
            RawClient::connect(port, &ConnectOptions::device("$ism-link", name, &token)).err(),
            Some(NOT_AUTHORISED),
            "a device named {name:?} cannot use a $ id"
        );
    }
}

#[test]
fn free_client_ids_are_first_come_when_allowed() {
    let key = SigningKey::rsa();
    let strict = broker(&key);
    let token_a = key.device_token("111", "unity", 600);
    assert_eq!(
        RawClient::connect(
            strict.port(),
            &ConnectOptions::device("unity-8f3a", "unity", &token_a)
        )
        .err(),
        Some(NOT_AUTHORISED),
        "a random id is refused by default"
    );

    let broker = Broker::with_plugin(&jwks(&[&key]), &[("allow_any_client_id", "true")]);
    let port = broker.port();
    let mut unity = RawClient::connect(
        port,
        &ConnectOptions::device("unity-8f3a", "unity", &token_a),
    )
    .expect("a random id is admitted with allow_any_client_id");
    let token_b = key.device_token("222", "other", 600);
    assert_eq!(
        RawClient::connect(
            port,
            &ConnectOptions::device("unity-8f3a", "other", &token_b)
        )
        .err(),
        Some(NOT_AUTHORISED),
        "another session cannot take the same random id"
    );
    assert_eq!(
        RawClient::connect(port, &ConnectOptions::device("$SYS-x", "other", &token_b)).err(),
        Some(NOT_AUTHORISED),
        "reserved forms stay reserved"
    );
    // An empty client id: the broker assigns one, which counts as a free id.
    RawClient::connect(port, &ConnectOptions::device("", "other", &token_b))
        .expect("an auto-assigned id is admitted");
    assert!(unity.stays_open_for(WINDOW));
}

#[test]
fn a_device_takes_over_its_own_old_connection_as_mqtt_expects() {
    let key = SigningKey::rsa();
    let broker = broker(&key);
    let port = broker.port();
    let mut observer = session_observer(port, &key, "111");
    let mut old = holder(port, &key, true);
    assert!(old.subscribe("/111/lamp-1/cmd"));
    old.publish("/111/lamp-1/state", b"old");
    assert_eq!(
        observer.next_message(WINDOW * 4).map(|(topic, _)| topic),
        Some("/111/lamp-1/state".to_owned())
    );

    // A fresh token for the same device (same session, same name) reconnects.
    let mut new = holder(port, &key, true);
    assert!(
        !old.stays_open_for(WINDOW * 2),
        "the old connection is closed"
    );
    assert!(broker
        .log()
        .contains("already connected, closing old connection"));
    new.publish("/111/lamp-1/state", b"new");
    let seen = observer.messages_within(WINDOW);
    assert_eq!(
        seen,
        vec![("/111/lamp-1/state".to_owned(), b"new".to_vec())],
        "the new connection works; a persistent takeover sends no will"
    );
    // The takeover kept the session: its subscription still delivers.
    let mut switch = switch(port, &key);
    switch.publish("/111/lamp-1/cmd", b"on");
    assert_eq!(
        new.next_message(WINDOW * 4),
        Some(("/111/lamp-1/cmd".to_owned(), b"on".to_vec()))
    );
}

#[test]
fn ownership_of_a_persisted_session_survives_a_broker_restart() {
    let key = SigningKey::rsa();
    let broker = Broker::with_plugin_persistent(&jwks(&[&key]), &[]);
    let mut lamp = holder(broker.port(), &key, true);
    assert!(lamp.subscribe("/111/lamp-1/cmd"));
    lamp.disconnect();
    let mut switch = switch(broker.port(), &key);
    switch.publish("/111/lamp-1/cmd", b"on");
    switch.disconnect();

    let broker = broker.restart();
    let port = broker.port();
    assert_intruder_refused(port, &key, "after the restart too");
    let mut lamp = holder(port, &key, true);
    assert_eq!(
        lamp.messages_within(WINDOW),
        vec![("/111/lamp-1/cmd".to_owned(), b"on".to_vec())],
        "the queue kept across the restart is delivered under the holder's grants"
    );
}
