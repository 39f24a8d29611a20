//! The per-message checks against a real Mosquitto loading the plugin: the shortcut that
//! decides a topic by its session prefix, text that is not ASCII (client ids and topics
//! taken through the UTF-8 check), session ids that are prefixes of one another, and grants
//! found by client id after the id changed hands.

use std::time::{Duration, Instant};

use test_support::fixture_tokens::{jwks, SigningKey};
use test_support::mosquitto::Broker;
use test_support::mqtt_device::Device;

const WINDOW: Duration = Duration::from_millis(500);
const ARRIVAL: Duration = Duration::from_secs(5);

fn device(port: u16, key: &SigningKey, session: &str, name: &str) -> Device {
    Device::of_session(port, key, session, name)
        .unwrap_or_else(|refusal| panic!("{name} of {session} refused: {refusal}"))
}

/// Publishes each of `refused` and then `marker` from `sender`, and returns what `watcher`
/// saw before the marker arrived (the broker handles one client's packets in order, so
/// anything let through would arrive first).
fn seen_before_marker(
    sender: &Device,
    watcher: &mut Device,
    refused: &[&str],
    marker: &str,
) -> Vec<String> {
    for topic in refused {
        sender.publish(topic, b"escape");
    }
    sender.publish(marker, b"marker");
    watcher
        .wait_for_message(marker, ARRIVAL)
        .unwrap_or_else(|| panic!("the allowed publish to {marker} did not arrive"))
}

#[test]
fn a_session_whose_id_prefixes_another_reaches_only_its_own_tree() {
    let key = SigningKey::rsa();
    let broker = Broker::with_plugin(&jwks(&[&key]), &[]);
    let port = broker.port();
    let short = device(port, &key, "11", "short");
    let mut short_peer = device(port, &key, "11", "short-peer");
    let mut long = device(port, &key, "111", "long");
    assert!(short_peer.subscribe("/11/#"));
    assert!(long.subscribe("/111/#"));
    assert!(!long.subscribe("/11/#"), "another session's tree");

    // `short` may not write into `/111/...` (which starts with its own id's digits), nor
    // to `/11` itself, nor into `/11x/...` or `/1/...`.
    let before = seen_before_marker(
        &short,
        &mut short_peer,
        &["/111/x", "/11", "/11x/y", "/1/x"],
        "/11/done",
    );
    assert!(before.is_empty(), "denied publishes delivered: {before:?}");
    assert!(long.messages_within(WINDOW).is_empty());
}

#[test]
fn text_beyond_ascii_is_checked_and_allowed_inside_the_session() {
    let key = SigningKey::rsa();
    let broker = Broker::with_plugin(&jwks(&[&key]), &[]);
    let port = broker.port();
    // A client name (and so a bare client id) beyond ASCII.
    let thermostat = device(port, &key, "4242", "thermostat-süd");
    let mut display = device(port, &key, "4242", "anzeige-ß");
    let mut outsider = device(port, &key, "4343", "outsider");
    assert!(display.subscribe("/4242/#"));
    assert!(outsider.subscribe("/4343/#"));

    thermostat.publish("/4343/température", b"escape");
    thermostat.publish("/4242/température/°C", b"21");
    let arrived = display.messages_within(WINDOW);
    assert_eq!(
        arrived,
        vec![("/4242/température/°C".to_owned(), b"21".to_vec())]
    );
    assert!(outsider.messages_within(WINDOW).is_empty());
}

#[test]
fn a_client_id_taken_over_by_another_session_carries_only_the_new_grants() {
    let key = SigningKey::rsa();
    let broker = Broker::with_plugin(&jwks(&[&key]), &[]);
    let port = broker.port();
    let mut first_home = device(port, &key, "111", "first-home");
    let mut second_home = device(port, &key, "222", "second-home");
    assert!(first_home.subscribe("/111/#"));
    assert!(second_home.subscribe("/222/#"));

    // `lamp` of session 111 publishes under the bare id `lamp`, then leaves; the id is free.
    let lamp = device(port, &key, "111", "lamp");
    lamp.publish("/111/lamp", b"on");
    assert!(first_home
        .wait_for_message("/111/lamp", ARRIVAL)
        .is_some_and(|before| before.is_empty()));
    drop(lamp);

    // A device of session 222 also named `lamp` takes the id once the broker has seen the
    // first one go (a refusal until then is the id rule, not this test's subject).
    let deadline = Instant::now() + ARRIVAL;
    let mut newcomer = loop {
        match Device::of_session(port, &key, "222", "lamp") {
            Ok(newcomer) => break newcomer,
            Err(_) if Instant::now() < deadline => {}
            Err(refusal) => panic!("the freed id was never admitted: {refusal}"),
        }
    };
    // Under the same client id it now has session 222's grants only: the old session's
    // tree is out of reach, for writing and for reading.
    assert!(!newcomer.subscribe("/111/#"));
    let before = seen_before_marker(&newcomer, &mut second_home, &["/111/lamp"], "/222/lamp");
    assert!(before.is_empty(), "denied publishes delivered: {before:?}");
    assert!(first_home.messages_within(WINDOW).is_empty());
}
