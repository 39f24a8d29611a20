//! End to end against a real Mosquitto loading the plugin: a token the plugin verified
//! before (and so admits again from its cache of verified tokens) is still refused once its
//! session is closed, once its key is withdrawn, and from its `exp` on.

// Test code: a failed expectation is a failed test, so helpers may `expect` too.
#![allow(clippy::expect_used)]

use std::time::{Duration, Instant};

use mosquitto_session_auth::CONTROL_TOPIC;
use rumqttc::QoS;
use session_token::Claims;
use test_support::control_message::closing;
use test_support::fixture_tokens::{device_claims, jwks, SigningKey};
use test_support::mosquitto::Broker;
use test_support::mqtt_device::Device;
use test_support::raw_mqtt::connect_cycle;

/// CONNACK return code 5: not authorised.
const NOT_AUTHORISED: u8 = 5;
const LINK: &str = "$session-manager";

/// Connects and disconnects twice with the same token: the first verifies it, the second
/// is admitted from the cache.
fn connect_twice(broker: &Broker, client: &str, token: &str) {
    for attempt in 1..=2 {
        assert_eq!(
            connect_cycle(broker.port(), client, client, token),
            0,
            "{client} admitted (attempt {attempt})"
        );
    }
}

#[test]
fn a_cached_token_is_refused_once_its_session_is_closed() {
    let key = SigningKey::rsa();
    let broker = Broker::with_plugin(&jwks(&[&key]), &[]);
    let token_a = key.device_token("111", "lamp-a", 600);
    let token_b = key.device_token("222", "lamp-b", 600);
    connect_twice(&broker, "lamp-a", &token_a);
    connect_twice(&broker, "lamp-b", &token_b);

    let link_token = key.sign(&Claims {
        sid: String::new(),
        subs: Vec::new(),
        publ: vec![CONTROL_TOPIC.to_owned()],
        acl: Vec::new(),
        ..device_claims("0", LINK, 600)
    });
    let link = Device::connect(broker.port(), LINK, LINK, &link_token).expect("link admitted");
    link.client
        .publish(
            CONTROL_TOPIC,
            QoS::AtLeastOnce,
            false,
            closing(&[("111", test_support::now() + 600)]).to_payload(),
        )
        .expect("publish queued");
    assert!(
        broker.wait_for_log("closed session(s) [\"111\"]", Duration::from_secs(5)),
        "close applied:\n{}",
        broker.log()
    );

    for attempt in 1..=3 {
        assert_eq!(
            connect_cycle(broker.port(), "lamp-a", "lamp-a", &token_a),
            NOT_AUTHORISED,
            "the closed session's known token is refused (attempt {attempt})"
        );
    }
    assert!(broker.log().contains("the token's session has been closed"));
    assert_eq!(
        connect_cycle(broker.port(), "lamp-b", "lamp-b", &token_b),
        0,
        "another session's known token is still admitted"
    );
}

#[test]
fn a_cached_token_of_a_withdrawn_key_is_verified_again_and_refused() {
    let (old_key, new_key) = (SigningKey::rsa(), SigningKey::other_rsa());
    let broker = Broker::with_plugin(&jwks(&[&old_key]), &[]);
    let token = old_key.device_token("333", "lamp", 600);
    connect_twice(&broker, "lamp", &token);

    std::fs::write(broker.jwks_path(), jwks(&[&new_key])).expect("withdraw the old key");
    broker.sighup();
    assert!(
        broker.wait_for_log("reloaded 1 key(s)", Duration::from_secs(5)),
        "reload logged:\n{}",
        broker.log()
    );
    assert_eq!(
        connect_cycle(broker.port(), "lamp", "lamp", &token),
        NOT_AUTHORISED,
        "the known token of a withdrawn key is refused"
    );
    assert!(
        broker.log().contains("is not in the key set"),
        "refused by a fresh verification:\n{}",
        broker.log()
    );
    connect_twice(&broker, "lamp", &new_key.device_token("333", "lamp", 600));
}

#[test]
fn a_cached_token_is_refused_from_its_exp_on() {
    let key = SigningKey::rsa();
    let broker = Broker::with_plugin(&jwks(&[&key]), &[]);
    let claims = device_claims("444", "lamp", 2);
    let exp = claims.exp;
    let token = key.sign(&claims);
    connect_twice(&broker, "lamp", &token);

    let deadline = Instant::now() + Duration::from_secs(10);
    while test_support::now() < exp {
        assert!(Instant::now() < deadline, "the clock reaches exp");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        connect_cycle(broker.port(), "lamp", "lamp", &token),
        NOT_AUTHORISED,
        "a known token is dead from its exp on"
    );
    assert!(broker.log().contains(&format!("token expired at {exp}")));
}
