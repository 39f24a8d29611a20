//! Who may write a session's conductor topics, against a real Mosquitto loading the
//! plugin: the service's broker link (its reserved `$ism-link-` principal) writes
//! `/S/$conductor/state` and the session's devices receive it; a device, and a principal
//! without a session that holds the very same grants under another name (a backend's
//! service token), cannot; devices reach only their own session's conductor inbox.

use std::time::Duration;

use session_token::Claims;
use test_support::fixture_tokens::{jwks, SigningKey, ISSUER};
use test_support::mosquitto::Broker;
use test_support::mqtt_device::Device;
use test_support::now;

const WINDOW: Duration = Duration::from_millis(500);
const ARRIVAL: Duration = Duration::from_secs(5);

/// A principal without a session, logged in as `name` with the link's grants.
fn principal(port: u16, key: &SigningKey, name: &str) -> Device {
    let token = key.sign(&Claims::for_revocation_service(
        ISSUER,
        name,
        now(),
        600,
        &format!("jti-{name}"),
    ));
    Device::connect(port, name, name, &token)
        .unwrap_or_else(|refusal| panic!("{name} refused: {refusal}"))
}

fn device(port: u16, key: &SigningKey, session: &str, name: &str) -> Device {
    Device::of_session(port, key, session, name)
        .unwrap_or_else(|refusal| panic!("{name} of {session} refused: {refusal}"))
}

#[test]
fn only_the_link_writes_a_sessions_conductor_state() {
    let key = SigningKey::rsa();
    let broker = Broker::with_plugin(&jwks(&[&key]), &[]);
    let port = broker.port();
    let link = principal(port, &key, "$ism-link-0123456789abcdef");
    let backend = principal(port, &key, "$backend-1");
    let attacker = device(port, &key, "4242", "attacker");
    let mut watcher = device(port, &key, "4242", "watcher");
    assert!(watcher.subscribe("/4242/$conductor/#"));

    // Forgeries first, then the link's state: the broker handles each client's packets in
    // order, so whatever of the forgeries got through would arrive before the link's.
    attacker.publish("/4242/$conductor/state", b"forged by a device");
    attacker.publish("/4242/$conductor/out", b"forged by a device");
    backend.publish("/4242/$conductor/state", b"forged by a backend");
    std::thread::sleep(WINDOW);
    link.publish("/4242/$conductor/state", b"{\"status\":\"started\"}");
    let seen = watcher
        .wait_for_message("/4242/$conductor/state", ARRIVAL)
        .expect("the link's state reaches the session's devices");
    assert!(seen.is_empty(), "forgeries delivered before it: {seen:?}");
    let rest = watcher.messages_within(WINDOW);
    assert!(
        rest.iter()
            .all(|(_, payload)| !payload.starts_with(b"forged")),
        "a forgery was delivered: {rest:?}"
    );

    // The link writes conductor topics only: never a session's presence, nor its other
    // topics.
    assert!(watcher.subscribe("/4242/$presence/#"));
    assert!(watcher.subscribe("/4242/chat"));
    watcher.messages_within(WINDOW);
    link.publish("/4242/$presence/watcher", b"forged by the link");
    link.publish("/4242/chat", b"forged by the link");
    link.publish("/4242/$conductor/state", b"marker");
    let seen = watcher
        .wait_for_message("/4242/$conductor/state", ARRIVAL)
        .expect("the marker arrives");
    assert!(
        seen.is_empty(),
        "the link wrote outside the conductor topics: {seen:?}"
    );
}

#[test]
fn devices_reach_their_own_sessions_conductor_inbox_only() {
    let key = SigningKey::rsa();
    let broker = Broker::with_plugin(&jwks(&[&key]), &[]);
    let port = broker.port();
    let mut link = principal(port, &key, "$ism-link-0123456789abcdef");
    assert!(link.subscribe("/+/$conductor/in/#"));
    let sender = device(port, &key, "4242", "sender");
    let mut stranger = device(port, &key, "4343", "stranger");
    assert!(
        !stranger.subscribe("/4242/$conductor/#"),
        "another session's conductor"
    );
    assert!(!stranger.subscribe("/+/$conductor/in/#"));

    stranger.publish("/4242/$conductor/in/x", b"from another session");
    sender.publish("/4242/$conductor/in/button", b"press");
    let seen = link
        .wait_for_message("/4242/$conductor/in/button", ARRIVAL)
        .expect("the device's message reaches the link");
    assert!(seen.is_empty(), "delivered before it: {seen:?}");
}
