//! Presence against a real Mosquitto loading the plugin: a test client playing the service
//! link reads the reports on the presence topic (every connect, every disconnect with its
//! reason, the sync answer in parts), devices of the session read the retained presence
//! of their peers, and nobody else can read or forge any of it.

// Test code: a failed expectation is a failed test, so helpers may `expect` too.
#![allow(clippy::expect_used)]

#[path = "support/connection_closed.rs"]
mod connection_closed;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use connection_closed::closed_at;
use rumqttc::QoS;
use serde_json::Value;
use session_token::{
    Claims, ControlMessage, DisconnectReason, PresenceBatch, PresenceMessage, CONTROL_TOPIC,
    PRESENCE_TOPIC,
};
use test_support::control_message::closing;
use test_support::fixture_tokens::{device_claims, jwks, SigningKey};
use test_support::mosquitto::{require_mosquitto, Broker};
use test_support::mqtt_device::Device;
use test_support::raw_mqtt::raw_connect;
use test_support::service_link::ServiceLink;

const REPORT: Duration = Duration::from_secs(5);
/// How long a test waits to be sure that something does not arrive.
const QUIET: Duration = Duration::from_millis(500);

/// A real Mosquitto loading the plugin that trusts `key`, its port, and a client playing
/// the service's link connected to it.
fn broker_with_link(key: SigningKey) -> (Broker, SigningKey, u16, ServiceLink) {
    require_mosquitto();
    let broker = Broker::with_plugin(&jwks(&[&key]), &[]);
    let port = broker.port();
    let link = ServiceLink::connect(port, &key);
    (broker, key, port, link)
}

fn is_connected(client: &str) -> impl Fn(&PresenceMessage) -> bool + '_ {
    move |message| matches!(message, PresenceMessage::Connected(d) if d.client == client)
}

fn is_disconnected(client: &str) -> impl Fn(&PresenceMessage) -> bool + '_ {
    move |message| matches!(message, PresenceMessage::Disconnected(d) if d.client == client)
}

/// Waits for `client`'s disconnect report and returns its reason.
fn disconnect_reason(link: &mut ServiceLink, client: &str, timeout: Duration) -> DisconnectReason {
    match link.wait_for(timeout, is_disconnected(client)) {
        Some((PresenceMessage::Disconnected(device), _)) => device.reason,
        other => panic!("no disconnect report for {client}: {other:?}"),
    }
}

/// A principal without a session allowed to read session `sid`'s presence sub-tree (as a
/// dashboard would be): it outlives the session's close.
fn presence_reader(port: u16, key: &SigningKey, sid: &str) -> Device {
    let name = format!("$reader-{sid}");
    let token = key.sign(&Claims {
        sid: String::new(),
        subs: vec![format!("/{sid}/$presence/#")],
        publ: Vec::new(),
        acl: Vec::new(),
        ..device_claims("0", &name, 600)
    });
    Device::connect(port, &name, &name, &token).expect("reader admitted")
}

/// The retained messages a subscription to `filter` gets at once, parsed (an empty
/// payload reads as `null`).
fn retained(device: &mut Device, filter: &str) -> Vec<(String, Value)> {
    assert!(device.subscribe(filter), "{filter} granted");
    device
        .all_messages_within(QUIET)
        .into_iter()
        .map(|(topic, payload)| {
            let value = if payload.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&payload).expect("presence is JSON")
            };
            (topic, value)
        })
        .collect()
}

/// The topics of the retained messages a subscription to `filter` gets at once.
fn retained_topics(device: &mut Device, filter: &str) -> HashSet<String> {
    retained(device, filter)
        .into_iter()
        .map(|(topic, _)| topic)
        .collect()
}

#[test]
fn a_connect_and_a_clean_disconnect_are_reported_and_retained_for_the_session() {
    let (_broker, key, port, mut link) = broker_with_link(SigningKey::rsa());
    let lamp = Device::of_session(port, &key, "111", "lamp").expect("lamp admitted");

    let (report, before) = link
        .wait_for(REPORT, is_connected("lamp"))
        .expect("the connect is reported");
    assert!(
        before.is_empty(),
        "the link itself is not reported: {before:?}"
    );
    let PresenceMessage::Connected(device) = report else {
        unreachable!()
    };
    assert_eq!(
        (
            device.sid.as_str(),
            device.client_id.as_str(),
            device.jti.as_str()
        ),
        ("111", "lamp", "lamp")
    );
    assert!(device.at.abs_diff(test_support::now()) <= 2);

    let mut peer = Device::of_session(port, &key, "111", "peer").expect("peer admitted");
    let seen = retained(&mut peer, "/111/$presence/#");
    assert!(
        seen.contains(&(
            "/111/$presence/lamp".to_owned(),
            serde_json::json!({"online": true, "at": device.at})
        )),
        "{seen:?}"
    );

    drop(lamp);
    assert_eq!(
        disconnect_reason(&mut link, "lamp", REPORT),
        DisconnectReason::Disconnected
    );
    let mut later = Device::of_session(port, &key, "111", "later").expect("admitted");
    let seen = retained(&mut later, "/111/$presence/lamp");
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].1["online"], false);
    assert_eq!(seen[0].1["reason"], "disconnected");
}

#[test]
fn a_lost_connection_is_reported_as_disconnected_too() {
    let (_broker, key, port, mut link) = broker_with_link(SigningKey::rsa());
    let stream =
        raw_connect(port, "lamp", "lamp", &key.device_token("111", "lamp", 600)).expect("admitted");
    link.wait_for(REPORT, is_connected("lamp"))
        .expect("connect reported");
    stream
        .shutdown(std::net::Shutdown::Both)
        .expect("socket closed");
    assert_eq!(
        disconnect_reason(&mut link, "lamp", REPORT),
        DisconnectReason::Disconnected,
        "Mosquitto 2.0 does not tell a lost connection from a clean DISCONNECT"
    );
}

#[test]
fn a_takeover_is_reported_as_taken_over_and_the_device_stays_online() {
    let (_broker, key, port, mut link) = broker_with_link(SigningKey::rsa());
    let token = key.device_token("111", "lamp", 600);
    let mut first = Device::connect(port, "lamp", "lamp", &token).expect("first admitted");
    link.wait_for(REPORT, is_connected("lamp"))
        .expect("first connect reported");
    let _second = Device::connect(port, "lamp", "lamp", &token).expect("second admitted");
    assert!(
        closed_at(&mut first, REPORT).is_some(),
        "the first is taken over"
    );
    let (report, before) = link
        .wait_for(REPORT, is_disconnected("lamp"))
        .expect("the old connection's end is reported");
    assert!(
        matches!(&report, PresenceMessage::Disconnected(d) if d.reason == DisconnectReason::TakenOver),
        "{report:?}"
    );
    assert!(
        before.iter().any(is_connected("lamp")),
        "the newcomer is reported first: {before:?}"
    );
    let mut link_reports = link.reports_within(QUIET);
    link_reports.retain(is_disconnected("lamp"));
    assert!(
        link_reports.is_empty(),
        "one disconnect only: {link_reports:?}"
    );

    let mut peer = Device::of_session(port, &key, "111", "peer").expect("peer admitted");
    let seen = retained(&mut peer, "/111/$presence/lamp");
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].1["online"], true, "the device is still online");
}

#[test]
fn an_expired_token_is_reported_as_expired() {
    let (_broker, key, port, mut link) = broker_with_link(SigningKey::rsa());
    let _lamp = Device::connect(port, "lamp", "lamp", &key.device_token("111", "lamp", 2))
        .expect("admitted");
    assert_eq!(
        disconnect_reason(&mut link, "lamp", Duration::from_secs(6)),
        DisconnectReason::Expired
    );
}

#[test]
fn closing_a_session_reports_session_closed_and_clears_its_retained_presence() {
    let (broker, key, port, mut link) = broker_with_link(SigningKey::rsa());
    let _lamp = Device::of_session(port, &key, "111", "lamp").expect("lamp admitted");
    let switch = Device::of_session(port, &key, "111", "switch").expect("switch admitted");
    drop(switch);
    let _other = Device::of_session(port, &key, "222", "lamp-b").expect("admitted");
    assert_eq!(
        disconnect_reason(&mut link, "switch", REPORT),
        DisconnectReason::Disconnected
    );
    let mut before = presence_reader(port, &key, "111");
    let topics = retained_topics(&mut before, "/111/$presence/#");
    assert_eq!(
        topics,
        HashSet::from([
            "/111/$presence/lamp".to_owned(),
            "/111/$presence/switch".to_owned()
        ])
    );

    link.send(&closing(&[("111", test_support::now() + 600)]));
    assert_eq!(
        disconnect_reason(&mut link, "lamp", REPORT),
        DisconnectReason::SessionClosed
    );
    assert!(broker.wait_for_log("closed session(s)", REPORT));
    let mut after = presence_reader(port, &key, "111");
    // The clean-up is published right after the disconnects; wait for its last message.
    let seen = retained(&mut after, "/111/$presence/#");
    assert!(
        seen.is_empty(),
        "the closed session's presence is gone: {seen:?}"
    );
    let mut peer_b = Device::of_session(port, &key, "222", "peer-b").expect("admitted");
    let topics = retained_topics(&mut peer_b, "/222/$presence/#");
    assert_eq!(
        topics,
        HashSet::from([
            "/222/$presence/lamp-b".to_owned(),
            "/222/$presence/peer-b".to_owned()
        ]),
        "another session's presence stays"
    );
}

#[test]
fn a_session_whose_last_token_expired_loses_its_retained_presence() {
    let (_broker, key, port, mut link) = broker_with_link(SigningKey::rsa());
    let _lamp = Device::connect(port, "lamp", "lamp", &key.device_token("333", "lamp", 2))
        .expect("admitted");
    let _other = Device::of_session(port, &key, "444", "other").expect("admitted");
    let mut reader = presence_reader(port, &key, "333");
    assert_eq!(retained(&mut reader, "/333/$presence/#").len(), 1);
    assert_eq!(
        disconnect_reason(&mut link, "lamp", Duration::from_secs(6)),
        DisconnectReason::Expired
    );
    // The reader sees the offline presence, then its deletion (an empty retained message).
    let mut seen = Vec::new();
    let deadline = Instant::now() + REPORT;
    while !seen
        .iter()
        .any(|(_, payload): &(String, Vec<u8>)| payload.is_empty())
    {
        assert!(Instant::now() < deadline, "no deletion: {seen:?}");
        seen.extend(reader.all_messages_within(Duration::from_millis(200)));
    }
    let mut fresh = presence_reader(port, &key, "333");
    let left = retained(&mut fresh, "/333/$presence/#");
    assert!(left.is_empty(), "{left:?}");
    let mut other_reader = presence_reader(port, &key, "444");
    assert_eq!(
        retained(&mut other_reader, "/444/$presence/#").len(),
        1,
        "a session with a live token keeps its presence"
    );
}

#[test]
fn presence_is_out_of_reach_of_other_sessions_and_cannot_be_forged() {
    let (_broker, key, port, mut link) = broker_with_link(SigningKey::rsa());
    let lamp = Device::of_session(port, &key, "111", "lamp").expect("lamp admitted");
    link.wait_for(REPORT, is_connected("lamp"))
        .expect("connect reported");
    let mut stranger = Device::of_session(port, &key, "222", "stranger").expect("admitted");
    for filter in [
        "/111/$presence/#",
        "/111/$presence/lamp",
        "/+/$presence/#",
        PRESENCE_TOPIC,
        "$CONTROL/#",
        "$CONTROL/session-auth/v1/+",
        "#",
    ] {
        assert!(
            !stranger.subscribe(filter),
            "{filter} refused to another session"
        );
    }
    let mut reader = presence_reader(port, &key, "111");
    assert_eq!(retained(&mut reader, "/111/$presence/#").len(), 1);

    // The device itself, and its peers, cannot write presence or reports.
    let peer = Device::of_session(port, &key, "111", "peer").expect("admitted");
    for device in [&lamp, &peer] {
        for topic in ["/111/$presence/lamp", "/111/$presence/ghost"] {
            device
                .client
                .publish(
                    topic,
                    QoS::AtLeastOnce,
                    true,
                    b"{\"online\":false,\"at\":1}".to_vec(),
                )
                .expect("queued");
        }
        let forged = PresenceMessage::Connected(session_token::ConnectedDevice {
            sid: "111".into(),
            client: "ghost".into(),
            client_id: "ghost".into(),
            jti: "x".into(),
            at: 1,
        });
        device
            .client
            .publish(
                PRESENCE_TOPIC,
                QoS::AtLeastOnce,
                false,
                PresenceBatch::of([&forged]).into_payload(),
            )
            .expect("queued");
        device
            .client
            .publish(
                CONTROL_TOPIC,
                QoS::AtLeastOnce,
                false,
                ControlMessage {
                    sync: Some("forged".into()),
                    ..ControlMessage::default()
                }
                .to_payload(),
            )
            .expect("queued");
    }
    let mut lamp_and_peer = Device::of_session(port, &key, "111", "watcher").expect("admitted");
    assert!(lamp_and_peer.subscribe("/111/$presence/#"));
    assert!(
        !lamp_and_peer.subscribe(PRESENCE_TOPIC),
        "not even its own session's reports"
    );
    assert!(!lamp_and_peer.subscribe("$CONTROL/#"));
    let reports = link.reports_within(QUIET);
    assert!(
        reports.iter().all(|report| match report {
            PresenceMessage::Connected(d) =>
                ["stranger", "peer", "watcher"].contains(&d.client.as_str()),
            _ => false,
        }),
        "only the plugin's own reports reach the link: {reports:?}"
    );
    assert!(reader
        .messages_within(QUIET)
        .iter()
        .all(|(topic, _)| { topic == "/111/$presence/peer" || topic == "/111/$presence/watcher" }));
    let mut fresh = presence_reader(port, &key, "111");
    let seen = retained(&mut fresh, "/111/$presence/#");
    let topics: HashSet<&str> = seen.iter().map(|(topic, _)| topic.as_str()).collect();
    assert_eq!(
        topics,
        HashSet::from([
            "/111/$presence/lamp",
            "/111/$presence/peer",
            "/111/$presence/watcher"
        ])
    );
    assert!(
        seen.iter().all(|(_, value)| value["online"] == true),
        "{seen:?}"
    );
}

#[test]
fn a_sync_lists_every_live_device_in_parts() {
    const DEVICES: usize = 450;
    let (_broker, key, port, mut link) = broker_with_link(SigningKey::ec());
    let mut connections = Vec::with_capacity(DEVICES);
    for index in 0..DEVICES {
        let name = format!("device-{index}");
        let session = format!("{}", 1000 + index % 7);
        let token = key.device_token(&session, &name, 600);
        connections.push(raw_connect(port, &name, &name, &token).expect("admitted"));
    }
    // The connect reports come first; the sync answer follows them.
    link.send(&ControlMessage {
        sync: Some("r1".into()),
        ..ControlMessage::default()
    });
    let mut parts = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (report, payload) = link
            .next_report(deadline.saturating_duration_since(Instant::now()))
            .expect("the sync answer arrives");
        if let PresenceMessage::Online(part) = report {
            assert_eq!(part.sync, "r1");
            assert!(
                payload.len() < 64 * 1024,
                "a part of {} bytes",
                payload.len()
            );
            let done = part.done;
            parts.push(part);
            if done {
                break;
            }
        } else {
            assert!(parts.is_empty(), "the parts come back to back: {report:?}");
        }
    }
    assert!(parts.len() >= 3, "{} parts", parts.len());
    assert!(parts.iter().all(|part| part.clients.len() <= 200));
    let listed: Vec<String> = parts
        .iter()
        .flat_map(|part| part.clients.iter().map(|device| device.client.clone()))
        .collect();
    let unique: HashSet<&String> = listed.iter().collect();
    assert_eq!(listed.len(), DEVICES, "each device once");
    assert_eq!(unique.len(), DEVICES);

    drop(connections);
    // Once they are gone, an answer is a single empty, final part.
    let mut gone = 0;
    while gone < DEVICES {
        link.wait_for(REPORT, |m| matches!(m, PresenceMessage::Disconnected(_)))
            .expect("each disconnect is reported");
        gone += 1;
    }
    link.send(&ControlMessage {
        sync: Some("r2".into()),
        ..ControlMessage::default()
    });
    let (answer, _) = link
        .wait_for(REPORT, |m| matches!(m, PresenceMessage::Online(_)))
        .expect("answered");
    let PresenceMessage::Online(answer) = answer else {
        unreachable!()
    };
    assert_eq!(
        (answer.sync.as_str(), answer.clients.len(), answer.done),
        ("r2", 0, true)
    );
}
