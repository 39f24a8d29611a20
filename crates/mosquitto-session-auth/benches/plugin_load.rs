//! What the plugin costs the broker, against the same Mosquitto without authentication, in
//! one run: broker CPU time per message and per connect.
//!
//! The figure is the broker's own CPU time (its main thread, which runs every client and
//! every plugin callback, from /proc/<pid>/schedstat) divided by the operations done, so
//! the load clients' cost and a busy machine's scheduling stay out of it. The broker is
//! pinned to CPU 0 and the load clients to CPU 1 (`taskset`). Cases, each round in turn:
//!
//! - publish: one publisher sends `PLUGIN_BENCH_MESSAGES` (default 1 000 000) QoS 0
//!   PUBLISHes of 64 bytes to one subscriber (an ACL check for the publish and one for the
//!   delivery, each message);
//! - connect, known token: connect + CONNACK + DISCONNECT with the same token over and over
//!   (a device reconnecting), from 1 client and from 8 concurrent ones;
//! - connect, new token: the same with a token the broker has never seen on each connect (a
//!   device's first connect), 1 and 8 clients.
//!
//! Brokers: anonymous (`allow_anonymous true`), the plugin of this build, and, when
//! `PLUGIN_BENCH_BASELINE_SO` names another build of the plugin library, that one too (the
//! code before a change, built in a scratch worktree). Each ratio is the anonymous broker's
//! CPU per operation divided by the plugin's: the rate the plugin broker reaches, as a
//! share of the anonymous one, when the broker's core is the limit. Within a round each case
//! runs on every broker back to back, in an order that alternates from round to round
//! (`PLUGIN_BENCH_ROUNDS`, default 3); the median of the per-round ratios is reported.
//!
//! Each plugin broker has the service's link connected and subscribed to the presence
//! reports, as deployed, so the figures include delivering presence to the service
//! (`PLUGIN_BENCH_LINK=0` leaves the link out, to see what presence costs with nobody
//! listening).
//!
//! Every broker logs what the deployed one logs (`test_support::mosquitto::LOG_AS_DEPLOYED`:
//! no line per message); `PLUGIN_BENCH_BROKER_LOG=all` makes them log everything, a line
//! per message included, as the brokers of the tests do (which doubles the cost of a
//! message for every broker and so flatters the plugin's ratio).
//!
//! `cargo bench -p mosquitto-session-auth --bench plugin_load`; `PLUGIN_BENCH_CASES=3,4`
//! runs only those cases (numbered from 0 in the order above), e.g. to profile one path.
//!
//! The clients speak MQTT over plain sockets with packets encoded once by `rumqttc`.

// Test code: a failed expectation is a failed run, so helpers may `expect` too.
#![allow(clippy::expect_used)]

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use test_support::fixture_tokens::{jwks, SigningKey};
use test_support::mosquitto::{
    plugin_path, plugin_settings_for, readable_copy, Broker, LOG_AS_DEPLOYED, LOG_EVERYTHING,
};
use test_support::raw_mqtt::{connect_cycle, raw_connect};
use test_support::service_link::ServiceLink;

const SESSION: &str = "424242";
const TOPIC: &str = "/424242/bench";
const PAYLOAD_BYTES: usize = 64;
const SEQUENTIAL_CONNECTS: usize = 1_500;
const CONCURRENT_CLIENTS: usize = 8;
const CONNECTS_PER_CONCURRENT_CLIENT: usize = 250;
const BROKER_CPU: &str = "0";
const CLIENT_CPU: &str = "1";

/// Credentials for one connect: (client id, username, password); empty for anonymous.
type Credentials = (String, String, String);

/// One broker under test.
struct Subject {
    name: &'static str,
    broker: Broker,
    /// Signs tokens; `None` for the anonymous broker.
    key: Option<SigningKey>,
}

impl Subject {
    fn credentials(&self, client: &str) -> Credentials {
        match &self.key {
            Some(key) => (
                client.into(),
                client.into(),
                key.device_token(SESSION, client, 3600),
            ),
            None => (client.into(), String::new(), String::new()),
        }
    }

    /// `count` credentials of distinct clients named `{prefix}-{i}`, signed on both cores.
    fn fresh_credentials(&self, prefix: &str, count: usize) -> Vec<Credentials> {
        let names: Vec<String> = (0..count).map(|i| format!("{prefix}-{i}")).collect();
        let (first, second) = names.split_at(count / 2);
        std::thread::scope(|scope| {
            let other = scope.spawn(|| {
                second
                    .iter()
                    .map(|n| self.credentials(n))
                    .collect::<Vec<_>>()
            });
            let mut all: Vec<Credentials> = first.iter().map(|n| self.credentials(n)).collect();
            all.extend(other.join().expect("signer"));
            all
        })
    }
}

fn pin(pid: u32, cpu: &str) {
    let status = Command::new("taskset")
        .args(["-pc", cpu, &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("taskset runs (apt-get install util-linux)");
    assert!(status.success(), "taskset -pc {cpu} {pid}");
}

fn connect(port: u16, (id, user, pass): &Credentials) -> std::net::TcpStream {
    raw_connect(port, id, user, pass).unwrap_or_else(|code| panic!("{id} refused: {code}"))
}

/// What one measurement found.
#[derive(Clone, Copy)]
struct Sample {
    /// Broker CPU time per operation, in microseconds.
    cpu_us: f64,
    /// Operations per second of wall-clock time.
    rate: f64,
}

/// Publishes `messages` QoS 0 messages through the broker; CPU per published message.
fn publish(subject: &Subject, messages: usize) -> Sample {
    let port = subject.broker.port();
    let mut subscriber = connect(port, &subject.credentials("bench-sub"));
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
    const BATCH: usize = 256;
    let batch: Vec<u8> = packet
        .iter()
        .copied()
        .cycle()
        .take(packet_len * BATCH)
        .collect();
    let mut publisher = connect(port, &subject.credentials("bench-pub"));

    let cpu_before = subject.broker.cpu_time();
    let start = Instant::now();
    let received = std::thread::scope(|scope| {
        scope.spawn(|| {
            for _ in 0..messages.div_ceil(BATCH) {
                publisher.write_all(&batch).expect("publish batch");
            }
        });
        subscriber
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("read timeout");
        let mut buffer = vec![0u8; 1 << 16];
        let mut bytes = 0usize;
        while bytes < messages.div_ceil(BATCH) * BATCH * packet_len {
            match subscriber.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => bytes += n,
            }
        }
        bytes / packet_len
    });
    let elapsed = start.elapsed();
    let cpu = subject.broker.cpu_time() - cpu_before;
    let sent = messages.div_ceil(BATCH) * BATCH;
    if received < sent {
        println!(
            "note: {}: {received} of {sent} messages arrived",
            subject.name
        );
    }
    Sample {
        cpu_us: cpu.as_secs_f64() * 1e6 / sent as f64,
        rate: received as f64 / elapsed.as_secs_f64(),
    }
}

/// Each worker connects once per entry of its list, all workers at once; CPU per connect.
fn connects(subject: &Subject, workers: &[Vec<Credentials>]) -> Sample {
    let port = subject.broker.port();
    let cpu_before = subject.broker.cpu_time();
    let start = Instant::now();
    let total: usize = std::thread::scope(|scope| {
        let running: Vec<_> = workers
            .iter()
            .map(|list| {
                scope.spawn(move || {
                    for (id, user, pass) in list {
                        assert_eq!(connect_cycle(port, id, user, pass), 0, "{id} admitted");
                    }
                    list.len()
                })
            })
            .collect();
        running.into_iter().map(|w| w.join().expect("worker")).sum()
    });
    let elapsed = start.elapsed();
    let cpu = subject.broker.cpu_time() - cpu_before;
    Sample {
        cpu_us: cpu.as_secs_f64() * 1e6 / total as f64,
        rate: total as f64 / elapsed.as_secs_f64(),
    }
}

/// `clients` workers, each reconnecting `per_client` times with its own token.
fn known_token_workers(
    subject: &Subject,
    clients: usize,
    per_client: usize,
) -> Vec<Vec<Credentials>> {
    (0..clients)
        .map(|i| vec![subject.credentials(&format!("bench-known-{i}")); per_client])
        .collect()
}

/// `clients` workers, each connecting `per_client` times, every time with a token not seen
/// before (a distinct client).
fn new_token_workers(
    subject: &Subject,
    round: usize,
    clients: usize,
    per_client: usize,
) -> Vec<Vec<Credentials>> {
    let mut fresh = subject.fresh_credentials(
        &format!("bench-new-{round}-{clients}"),
        clients * per_client,
    );
    (0..clients)
        .map(|_| fresh.split_off(fresh.len() - per_client))
        .collect()
}

/// Mosquitto drops QoS 0 messages for a subscriber whose queue is full
/// (`max_queued_messages`, 1000 by default); a load client starved of CPU for a moment on a
/// busy machine would then receive, and cost, fewer messages. No limit: every message is
/// delivered.
const UNLIMITED_QUEUE: &str = "max_queued_messages 0\n";

/// What the brokers log: as deployed, or everything with `PLUGIN_BENCH_BROKER_LOG=all`.
fn broker_log_types() -> &'static str {
    match std::env::var("PLUGIN_BENCH_BROKER_LOG").as_deref() {
        Ok("all") => LOG_EVERYTHING,
        Ok("" | "deployed") | Err(_) => LOG_AS_DEPLOYED,
        Ok(other) => {
            panic!("PLUGIN_BENCH_BROKER_LOG={other}: use `deployed` (the default) or `all`")
        }
    }
}

/// A broker loading the plugin library at `plugin`, trusting `jwks`.
fn broker_with_plugin(plugin: &std::path::Path, jwks: &str) -> Broker {
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = plugin_settings_for(plugin, &dir, jwks, &[]);
    Broker::start_logging(
        dir,
        &format!("{settings}{UNLIMITED_QUEUE}"),
        broker_log_types(),
    )
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
        })
        .unwrap_or(default)
}

/// The median, NaN for a case that did not run.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

const CASES: [&str; 5] = [
    "publish (per message)",
    "connect, known token, 1 client",
    "connect, known token, 8 clients",
    "connect, new token, 1 client",
    "connect, new token, 8 clients",
];

fn main() {
    let rounds = env_usize("PLUGIN_BENCH_ROUNDS", 3);
    let messages = env_usize("PLUGIN_BENCH_MESSAGES", 1_000_000);
    // PLUGIN_BENCH_CASES=3,4 runs only those cases (numbered from 0 as in CASES), e.g. to
    // profile one path of the broker.
    let selected: Vec<usize> = match std::env::var("PLUGIN_BENCH_CASES") {
        Ok(list) if !list.is_empty() => list
            .split(',')
            .map(|n| {
                n.trim()
                    .parse()
                    .expect("PLUGIN_BENCH_CASES lists case numbers")
            })
            .collect(),
        _ => (0..CASES.len()).collect(),
    };
    pin(std::process::id(), CLIENT_CPU);
    println!("load average before: {}", loadavg());
    println!(
        "brokers log: {}",
        if broker_log_types() == LOG_EVERYTHING {
            "everything (a line per message)"
        } else {
            "as deployed (no line per message)"
        }
    );

    let jwks_doc = jwks(&[&SigningKey::rsa()]);
    let mut subjects = vec![Subject {
        name: "anonymous",
        broker: Broker::start_logging(
            tempfile::tempdir().expect("temp dir"),
            &format!("allow_anonymous true\n{UNLIMITED_QUEUE}"),
            broker_log_types(),
        ),
        key: None,
    }];
    if let Some(baseline) = std::env::var_os("PLUGIN_BENCH_BASELINE_SO").filter(|v| !v.is_empty()) {
        let copy = readable_copy(&PathBuf::from(baseline), "baseline");
        subjects.push(Subject {
            name: "baseline plugin",
            broker: broker_with_plugin(&copy, &jwks_doc),
            key: Some(SigningKey::rsa()),
        });
    }
    subjects.push(Subject {
        name: "plugin",
        broker: broker_with_plugin(&plugin_path(), &jwks_doc),
        key: Some(SigningKey::rsa()),
    });
    // The service's link on each plugin broker, subscribed to presence; their own threads
    // take the reports in. Kept until the end of the run.
    let with_link = std::env::var("PLUGIN_BENCH_LINK").as_deref() != Ok("0");
    let _links: Vec<ServiceLink> = subjects
        .iter()
        .filter(|subject| with_link && subject.key.is_some())
        .map(|subject| ServiceLink::connect(subject.broker.port(), &SigningKey::rsa()))
        .collect();
    println!(
        "service link: {}",
        if with_link {
            "connected to each plugin broker, subscribed to presence"
        } else {
            "none (PLUGIN_BENCH_LINK=0)"
        }
    );
    for subject in &subjects {
        pin(subject.broker.pid(), BROKER_CPU);
    }

    // samples[subject][case] = one Sample per round. Within a round each case is measured
    // on every broker back to back, so the ratios compare runs seconds apart.
    let mut samples = vec![vec![Vec::new(); CASES.len()]; subjects.len()];
    for round in 0..rounds {
        // Alternate the order of the brokers from round to round.
        let mut order: Vec<usize> = (0..subjects.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for (case, name) in CASES.iter().enumerate() {
            if !selected.contains(&case) {
                continue;
            }
            for &s in &order {
                let subject = &subjects[s];
                let sample = match case {
                    0 => publish(subject, messages),
                    1 => connects(
                        subject,
                        &known_token_workers(subject, 1, SEQUENTIAL_CONNECTS),
                    ),
                    2 => connects(
                        subject,
                        &known_token_workers(
                            subject,
                            CONCURRENT_CLIENTS,
                            CONNECTS_PER_CONCURRENT_CLIENT,
                        ),
                    ),
                    3 => connects(
                        subject,
                        &new_token_workers(subject, round, 1, SEQUENTIAL_CONNECTS),
                    ),
                    _ => connects(
                        subject,
                        &new_token_workers(
                            subject,
                            round,
                            CONCURRENT_CLIENTS,
                            CONNECTS_PER_CONCURRENT_CLIENT,
                        ),
                    ),
                };
                println!(
                    "round {} {:<16} {:<32} {:8.2} µs broker CPU/op {:10.0} op/s",
                    round + 1,
                    subject.name,
                    name,
                    sample.cpu_us,
                    sample.rate
                );
                samples[s][case].push(sample);
            }
        }
    }
    println!("load average after: {}", loadavg());

    println!();
    println!(
        "median of {rounds} rounds: broker CPU per operation (µs, + over anonymous), and the \
         median of the per-round ratios anonymous ÷ plugin (the share of the anonymous rate \
         when the broker's core is the limit) [each round's ratio]"
    );
    let anonymous: Vec<f64> = (0..CASES.len())
        .map(|case| median(samples[0][case].iter().map(|s| s.cpu_us).collect()))
        .collect();
    for case in selected {
        let mut line = format!("{:<32} anonymous {:7.2}", CASES[case], anonymous[case]);
        for (s, subject) in subjects.iter().enumerate().skip(1) {
            let cpu = median(samples[s][case].iter().map(|s| s.cpu_us).collect());
            // Per round: the ratio against the anonymous figure of the same round.
            let per_round: Vec<f64> = samples[s][case]
                .iter()
                .zip(&samples[0][case])
                .map(|(p, a)| a.cpu_us / p.cpu_us)
                .collect();
            let listed: Vec<String> = per_round.iter().map(|r| format!("{r:.2}")).collect();
            line.push_str(&format!(
                " | {} {:7.2} (+{:.2}) ratio {:.2} [{}]",
                subject.name,
                cpu,
                cpu - anonymous[case],
                median(per_round),
                listed.join(" ")
            ));
        }
        println!("{line}");
    }
}
