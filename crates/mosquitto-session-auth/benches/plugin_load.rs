//! Load comparison of the same Mosquitto with the plugin and with anonymous access, in one
//! run: publish throughput (QoS 0, 64-byte payload, one publisher, one subscriber,
//! messages/s received) and connect rate (connect + CONNACK + disconnect per second).
//!
//! The clients speak MQTT over plain sockets with packets encoded once by `rumqttc`, so the
//! broker, not the load generator, is what gets measured. Run it with
//! `cargo bench -p mosquitto-session-auth --bench plugin_load`.

// Test code: a failed expectation is a failed test, so helpers may `expect` too.
#![allow(clippy::expect_used)]

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use test_support::fixture_tokens::{jwks, SigningKey};
use test_support::mosquitto::Broker;
use test_support::raw_mqtt::{connect_cycle, raw_connect};

const TOPIC: &str = "/424242/bench";
const PAYLOAD_BYTES: usize = 64;
const PUBLISH_SECS: u64 = 4;
const CONNECT_SECS: u64 = 3;
const CONNECT_THREADS: usize = 2;
const ROUNDS: usize = 3;

/// Credentials for one client: (client id, username, password); empty for anonymous.
type Credentials = (String, String, String);

fn credentials(key: Option<&SigningKey>, client: &str) -> Credentials {
    match key {
        Some(key) => (
            client.into(),
            client.into(),
            key.device_token("424242", client, 3600),
        ),
        None => (client.into(), String::new(), String::new()),
    }
}

fn connect(port: u16, (id, user, pass): &Credentials) -> std::net::TcpStream {
    raw_connect(port, id, user, pass).unwrap_or_else(|code| panic!("{id} refused: {code}"))
}

/// Messages per second the subscriber receives while the publisher floods.
fn publish_rate(port: u16, key: Option<&SigningKey>) -> f64 {
    let mut subscriber = connect(port, &credentials(key, "bench-sub"));
    let mut subscribe = bytes::BytesMut::new();
    let mut request = rumqttc::Subscribe::new(TOPIC, rumqttc::QoS::AtMostOnce);
    request.pkid = 1;
    request.write(&mut subscribe).expect("SUBSCRIBE encodes");
    subscriber.write_all(&subscribe).expect("SUBSCRIBE sent");
    let mut suback = [0u8; 5];
    subscriber.read_exact(&mut suback).expect("SUBACK");
    assert_eq!(suback[4], 0, "subscription granted");

    let mut packet = bytes::BytesMut::new();
    rumqttc::Publish::new(TOPIC, rumqttc::QoS::AtMostOnce, vec![7u8; PAYLOAD_BYTES])
        .write(&mut packet)
        .expect("PUBLISH encodes");
    let packet_len = packet.len();
    let batch: Vec<u8> = packet
        .iter()
        .copied()
        .cycle()
        .take(packet_len * 256)
        .collect();
    let mut publisher = connect(port, &credentials(key, "bench-pub"));

    let duration = Duration::from_secs(PUBLISH_SECS);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let start = Instant::now();
            while start.elapsed() < duration {
                publisher.write_all(&batch).expect("publish batch");
            }
        });
        subscriber
            .set_read_timeout(Some(Duration::from_millis(500)))
            .expect("read timeout");
        let mut buffer = vec![0u8; 1 << 16];
        let mut received = 0usize;
        let start = Instant::now();
        let mut last = start;
        while let Ok(n) = subscriber.read(&mut buffer) {
            if n == 0 {
                break;
            }
            received += n;
            last = Instant::now();
        }
        (received / packet_len) as f64 / (last - start).as_secs_f64()
    })
}

/// Connect cycles per second from a few parallel clients.
fn connect_rate(port: u16, key: Option<&SigningKey>) -> f64 {
    let clients: Vec<Credentials> = (0..CONNECT_THREADS)
        .map(|i| credentials(key, &format!("bench-conn-{i}")))
        .collect();
    let duration = Duration::from_secs(CONNECT_SECS);
    let start = Instant::now();
    let total: usize = std::thread::scope(|scope| {
        let workers: Vec<_> = clients
            .iter()
            .map(|(id, user, pass)| {
                scope.spawn(move || {
                    let mut cycles = 0;
                    while start.elapsed() < duration {
                        assert_eq!(connect_cycle(port, id, user, pass), 0);
                        cycles += 1;
                    }
                    cycles
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("worker")).sum()
    });
    total as f64 / start.elapsed().as_secs_f64()
}

fn best(samples: &[f64]) -> f64 {
    samples.iter().copied().fold(0.0, f64::max)
}

fn main() {
    let key = SigningKey::rsa();
    let with_plugin = Broker::with_plugin(&jwks(&[&key]), &[]);
    let anonymous = Broker::anonymous();

    let (mut pub_plugin, mut pub_anon, mut conn_plugin, mut conn_anon) =
        (vec![], vec![], vec![], vec![]);
    for round in 1..=ROUNDS {
        pub_plugin.push(publish_rate(with_plugin.port(), Some(&key)));
        pub_anon.push(publish_rate(anonymous.port(), None));
        conn_plugin.push(connect_rate(with_plugin.port(), Some(&key)));
        conn_anon.push(connect_rate(anonymous.port(), None));
        println!(
            "round {round}: publish {:.0} vs {:.0} msg/s, connect {:.0} vs {:.0} /s (plugin vs anonymous)",
            pub_plugin[round - 1], pub_anon[round - 1], conn_plugin[round - 1], conn_anon[round - 1]
        );
    }
    let (pp, pa, cp, ca) = (
        best(&pub_plugin),
        best(&pub_anon),
        best(&conn_plugin),
        best(&conn_anon),
    );
    println!("publish throughput (QoS 0, {PAYLOAD_BYTES} B, 1 pub / 1 sub), best of {ROUNDS}:");
    println!(
        "  with plugin: {pp:.0} msg/s; anonymous: {pa:.0} msg/s; ratio {:.1} %",
        100.0 * pp / pa
    );
    println!(
        "connect rate ({CONNECT_THREADS} clients, connect+CONNACK+disconnect), best of {ROUNDS}:"
    );
    println!(
        "  with plugin: {cp:.0} /s; anonymous: {ca:.0} /s; ratio {:.1} %",
        100.0 * cp / ca
    );
}
