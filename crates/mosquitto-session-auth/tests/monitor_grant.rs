//! The service link's monitor grant against a real Mosquitto loading the plugin: with the
//! link's own token (`Claims::for_revocation_service`) a client may read every session's
//! tree (`/+/#`, what the service's monitor subscribes to) and receives a device's
//! messages there, but it cannot read anything else (`#`, `+/#`, `$SYS/#`, the control
//! topic) nor write into a session.

// Test code: a failed expectation is a failed test, so helpers may `expect` too.
#![allow(clippy::expect_used)]

use std::time::Duration;

use session_token::claims::ALL_SESSIONS_FILTER;
use session_token::CONTROL_TOPIC;
use test_support::fixture_tokens::{jwks, SigningKey};
use test_support::mosquitto::{require_mosquitto, Broker};
use test_support::mqtt_device::Device;
use test_support::service_link::{link_token, LINK};

const ARRIVAL: Duration = Duration::from_secs(5);
/// How long a test waits to be sure that something does not arrive.
const QUIET: Duration = Duration::from_millis(500);

#[test]
fn the_link_reads_every_session_tree_and_nothing_else() {
    require_mosquitto();
    let key = SigningKey::rsa();
    let broker = Broker::with_plugin(&jwks(&[&key]), &[]);
    let port = broker.port();
    let mut link = Device::connect(port, LINK, LINK, &link_token(&key)).expect("link admitted");
    for outside in ["#", "+/#", "$SYS/#", CONTROL_TOPIC, "$CONTROL/#", "+/+/#"] {
        assert!(!link.subscribe(outside), "the link must not read {outside}");
    }
    assert!(link.subscribe(ALL_SESSIONS_FILTER), "the monitor's grant");

    let lamp = Device::of_session(port, &key, "111111", "lamp").expect("device admitted");
    let door = Device::of_session(port, &key, "222222", "door").expect("device admitted");
    lamp.publish("/111111/lamp/state", b"on");
    door.publish("/222222/door/state", b"open");
    // Devices of no session write outside the session trees: nothing to read there.
    let mut seen = link.messages_within(ARRIVAL);
    seen.sort();
    assert_eq!(
        seen,
        [
            ("/111111/lamp/state".to_owned(), b"on".to_vec()),
            ("/222222/door/state".to_owned(), b"open".to_vec()),
        ]
    );

    // Reading is all it may do in a session: its publish reaches nobody.
    let mut watcher = Device::of_session(port, &key, "111111", "watcher").expect("admitted");
    assert!(watcher.subscribe("/111111/#"));
    link.publish("/111111/lamp/state", b"forged");
    assert!(
        watcher.messages_within(QUIET).is_empty(),
        "the link wrote into a session"
    );
}
