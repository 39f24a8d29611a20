//! End to end: what happens to connected clients over time — their token expires, or the
//! key set is rotated with SIGHUP.

// Test code: a failed expectation is a failed test, so helpers may `expect` too.
#![allow(clippy::expect_used)]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use test_support::fixture_tokens::{device_claims, jwks, SigningKey};
use test_support::mosquitto::Broker;
use test_support::mqtt_device::{Device, DeviceEvent};

/// The `Instant` at which wall-clock second `exp` begins.
fn instant_of(exp: u64) -> Instant {
    let exp = UNIX_EPOCH + Duration::from_secs(exp);
    let now = SystemTime::now();
    match exp.duration_since(now) {
        Ok(ahead) => Instant::now() + ahead,
        Err(behind) => Instant::now() - behind.duration(),
    }
}

/// Publishes to `topic` every 100 ms until `until`.
fn publish_until(publisher: rumqttc::Client, topic: &str, until: Instant) {
    while Instant::now() < until {
        publisher
            .publish(topic, rumqttc::QoS::AtMostOnce, false, b"tick".to_vec())
            .expect("publish queued");
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Observed {
    messages: Vec<Instant>,
    closed: Option<Instant>,
}

fn observe(device: &mut Device, until: Instant) -> Observed {
    let mut observed = Observed {
        messages: Vec::new(),
        closed: None,
    };
    while let Some(event) = device.next_event(until.saturating_duration_since(Instant::now())) {
        match event {
            DeviceEvent::Message { at, .. } => observed.messages.push(at),
            DeviceEvent::Closed { at, .. } => {
                observed.closed = Some(at);
                break;
            }
            DeviceEvent::SubAck(_) => {}
        }
    }
    observed
}

/// A token that expires 5 s after connect: nothing is delivered after `exp`, and the
/// client is disconnected within 2 s of it.
#[test]
fn an_expiring_client_receives_nothing_after_exp_and_is_disconnected() {
    let key = SigningKey::rsa();
    let broker = Broker::with_plugin(&jwks(&[&key]), &[]);
    let claims = device_claims("555", "short", 5);
    let expires_at = instant_of(claims.exp);
    let mut short = Device::connect(broker.port(), "short", "short", &key.sign(&claims))
        .expect("short-lived token admitted");
    assert!(short.subscribe("/555/#"));
    let publisher = Device::connect(
        broker.port(),
        "publisher",
        "publisher",
        &key.device_token("555", "publisher", 600),
    )
    .expect("publisher admitted");

    let end = expires_at + Duration::from_secs(4);
    let observed = std::thread::scope(|scope| {
        let client = publisher.client.clone();
        scope.spawn(move || publish_until(client, "/555/tick", end));
        observe(&mut short, end)
    });

    assert!(
        observed.messages.iter().any(|&at| at < expires_at),
        "messages flowed while the token was valid"
    );
    let slack = Duration::from_millis(150);
    let late: Vec<_> = observed
        .messages
        .iter()
        .filter(|&&at| at > expires_at + slack)
        .map(|&at| at - expires_at)
        .collect();
    assert!(late.is_empty(), "delivered after exp: {late:?}");
    let closed = observed.closed.expect("the expired client is disconnected");
    assert!(closed + slack >= expires_at, "disconnected before exp");
    assert!(
        closed <= expires_at + Duration::from_secs(2),
        "disconnected {:?} after exp",
        closed - expires_at
    );
    assert!(broker
        .log()
        .contains("disconnected client \"short\": token expired"));
}

/// With `disconnect_after_expire false` the client stays connected, but the delivery check
/// alone keeps every message from it once its token has expired.
#[test]
fn an_expired_client_left_connected_receives_nothing() {
    let key = SigningKey::rsa();
    let broker = Broker::with_plugin(&jwks(&[&key]), &[("disconnect_after_expire", "false")]);
    let claims = device_claims("556", "lingering", 3);
    let expires_at = instant_of(claims.exp);
    let mut lingering =
        Device::connect(broker.port(), "lingering", "lingering", &key.sign(&claims))
            .expect("admitted");
    assert!(lingering.subscribe("/556/#"));
    let publisher = Device::connect(
        broker.port(),
        "publisher",
        "publisher",
        &key.device_token("556", "publisher", 600),
    )
    .expect("publisher admitted");

    let end = expires_at + Duration::from_secs(3);
    let observed = std::thread::scope(|scope| {
        let client = publisher.client.clone();
        scope.spawn(move || publish_until(client, "/556/tick", end));
        observe(&mut lingering, end)
    });
    assert!(observed.messages.iter().any(|&at| at < expires_at));
    assert!(observed
        .messages
        .iter()
        .all(|&at| at <= expires_at + Duration::from_millis(150)));
    assert!(observed.closed.is_none(), "not disconnected when disabled");
}

/// SIGHUP re-reads the JWKS: a newly listed key is accepted at once, clients of keys still
/// listed stay, and clients of a withdrawn key are disconnected.
#[test]
fn sighup_rotates_keys_without_a_restart() {
    let (old_key, new_key) = (SigningKey::rsa(), SigningKey::other_rsa());
    let broker = Broker::with_plugin(&jwks(&[&old_key]), &[]);
    let port = broker.port();
    let mut veteran = Device::connect(
        port,
        "veteran",
        "veteran",
        &old_key.device_token("777", "veteran", 600),
    )
    .expect("old key admitted");
    assert!(veteran.subscribe("/777/#"));
    let new_token = new_key.device_token("777", "newcomer", 600);
    assert!(Device::connect(port, "newcomer", "newcomer", &new_token).is_err());

    std::fs::write(broker.jwks_path(), jwks(&[&old_key, &new_key])).expect("rotate jwks");
    broker.sighup();
    assert!(
        broker.wait_for_log("reloaded 2 key(s)", Duration::from_secs(5)),
        "reload logged:\n{}",
        broker.log()
    );
    let newcomer =
        Device::connect(port, "newcomer", "newcomer", &new_token).expect("new key admitted");
    Device::connect(
        port,
        "late",
        "late",
        &old_key.device_token("777", "late", 600),
    )
    .expect("old key still admitted");
    newcomer.publish("/777/hello", b"hi");
    assert!(
        veteran
            .wait_for_message("/777/hello", Duration::from_secs(5))
            .is_some(),
        "the veteran stays connected and receives"
    );

    std::fs::write(broker.jwks_path(), jwks(&[&new_key])).expect("withdraw old key");
    broker.sighup();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut kicked = false;
    while let Some(event) = veteran.next_event(deadline.saturating_duration_since(Instant::now())) {
        if matches!(event, DeviceEvent::Closed { .. }) {
            kicked = true;
            break;
        }
    }
    assert!(kicked, "a client of the withdrawn key is disconnected");
    assert!(Device::connect(
        port,
        "late2",
        "late2",
        &old_key.device_token("777", "late2", 600)
    )
    .is_err());
    let mut listener = Device::connect(
        port,
        "listener",
        "listener",
        &new_key.device_token("777", "listener", 600),
    )
    .expect("new key admitted");
    assert!(listener.subscribe("/777/#"));
    newcomer.publish("/777/still", b"here");
    assert!(
        listener
            .wait_for_message("/777/still", Duration::from_secs(5))
            .is_some(),
        "the newcomer's session is untouched"
    );
}
