//! Enumerating live sessions by timing: after a restart, a wrong PIN for a live session
//! costs an argon2 verification and an unknown id does not. Both must be answered alike:
//! same status, body and headers, and timing distributions that no threshold separates.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{start_service, wrong_pin, ServiceProcess};

const SAMPLES: usize = 200;

/// Status, body and the headers that are not the date or the request id (unique to each
/// answer), timed from the client.
struct Sample {
    status: StatusCode,
    body: Value,
    headers: Vec<(String, String)>,
    elapsed: Duration,
}

async fn probe(service: &ServiceProcess, id: &str, pin: &str) -> Sample {
    let started = Instant::now();
    let response = service.join(id, pin, "probe").await;
    let status = response.status();
    let mut headers: Vec<(String, String)> = response
        .headers()
        .iter()
        .filter(|(name, _)| *name != "date" && *name != "x-request-id")
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap_or("").to_owned()))
        .collect();
    headers.sort();
    let body: Value = response.json().await.expect("json body");
    Sample {
        status,
        body,
        headers,
        elapsed: started.elapsed(),
    }
}

/// The two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical
/// distribution functions. 1.0 means one threshold separates the samples completely.
fn ks_statistic(a: &[Duration], b: &[Duration]) -> f64 {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort();
    b.sort();
    let (mut i, mut j, mut largest) = (0, 0, 0.0f64);
    while i < a.len() && j < b.len() {
        let next = a[i].min(b[j]);
        while i < a.len() && a[i] <= next {
            i += 1;
        }
        while j < b.len() && b[j] <= next {
            j += 1;
        }
        let gap = (i as f64 / a.len() as f64 - j as f64 / b.len() as f64).abs();
        largest = largest.max(gap);
    }
    largest
}

fn quantile(samples: &[Duration], q: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index]
}

fn median(samples: &[Duration]) -> Duration {
    quantile(samples, 0.5)
}

async fn argon2_verifications(service: &ServiceProcess) -> u64 {
    let health: Value = service.admin_healthz().await.json().await.expect("json");
    health["store"]["argon2_verifications"]
        .as_u64()
        .expect("argon2_verifications")
}

#[tokio::test]
async fn wrong_pins_for_live_and_unknown_sessions_are_indistinguishable_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    // The lockouts would end the experiment after five guesses; the attack measured here
    // is timing, so they are out of the way.
    let env = [
        ("ISM_SESSION_MAX_FAILURES", "1000000"),
        ("ISM_IP_MAX_FAILURES", "1000000"),
    ];
    let service = start_service(dir.path(), &env);
    let live = service.create_session(json!({})).await;
    service.stop();
    // After the restart no PIN has been checked yet: a wrong one costs argon2.
    let service = start_service(dir.path(), &env);
    let bad = wrong_pin(&live.pin);
    // An id of the same length that no session has: the live id with its last digit changed.
    let unknown_id = {
        let (head, last) = live.id.split_at(live.id.len() - 1);
        let other = if last == "9" { "8" } else { "9" };
        format!("{head}{other}")
    };
    let unknown_id = unknown_id.as_str();
    let argon2_before = argon2_verifications(&service).await;

    let (mut live_times, mut unknown_times) = (Vec::new(), Vec::new());
    let mut reference: Option<Sample> = None;
    // Interleaved, so that a busy machine slows both alike.
    for _ in 0..SAMPLES {
        for (id, times) in [
            (&*live.id, &mut live_times),
            (unknown_id, &mut unknown_times),
        ] {
            let sample = probe(&service, id, &bad).await;
            assert_eq!(sample.status, StatusCode::UNAUTHORIZED);
            times.push(sample.elapsed);
            match &reference {
                None => reference = Some(sample),
                Some(first) => {
                    assert_eq!(sample.body, first.body, "body differs for {id}");
                    assert_eq!(sample.headers, first.headers, "headers differ for {id}");
                }
            }
        }
    }
    // The attack was real: every live probe ran argon2.
    let argon2_runs = argon2_verifications(&service).await - argon2_before;
    assert!(
        argon2_runs >= SAMPLES as u64,
        "argon2 ran {argon2_runs} times"
    );

    let statistic = ks_statistic(&live_times, &unknown_times);
    let (live_median, unknown_median) = (median(&live_times), median(&unknown_times));
    // Critical value of the two-sample KS test at alpha = 0.001 for 200 + 200 samples.
    let critical = 1.95 * ((2 * SAMPLES) as f64 / (SAMPLES * SAMPLES) as f64).sqrt();
    eprintln!(
        "KS {statistic:.3} (critical {critical:.3}); medians {live_median:?} (live) vs {unknown_median:?} (unknown)"
    );
    assert!(
        statistic < critical,
        "timing tells live from unknown sessions: KS {statistic:.3} >= {critical:.3}, medians {live_median:?} (live) vs {unknown_median:?} (unknown)"
    );
    // The medians must also sit together, within 5 ms or a quarter of the spread of all
    // answers (the floor and its random share scale with how slow argon2 is on this
    // machine, and so does the sampling error of a median).
    let pooled: Vec<Duration> = live_times.iter().chain(&unknown_times).copied().collect();
    let spread = quantile(&pooled, 0.9) - quantile(&pooled, 0.1);
    let allowed = Duration::from_millis(5).max(spread / 4);
    let gap = live_median.abs_diff(unknown_median);
    assert!(
        gap < allowed,
        "medians {live_median:?} (live) vs {unknown_median:?} (unknown), allowed gap {allowed:?}"
    );
    service.stop();
}
