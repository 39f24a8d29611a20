//! Joins against the real binary holding 1 000 000 sessions: restart time and memory, the
//! latency of first joins (argon2) and of cached joins spread over many sessions.
//!
//! ```text
//! taskset -c 1 cargo bench -p session-manager --bench join_at_scale
//! ISM_TEST_RELEASE_DIR=/path/to/other/target/release taskset -c 1 cargo bench ...
//! ```
//!
//! The journal (sessions with 9-digit ids, the default length, one client each, all
//! sharing one PIN hash) is written straight in the on-disk format, spelled byte for byte
//! as the service writes its journal (`test_support::journal_file`). The service runs
//! pinned to CPU 0 (`taskset`) in its default signing mode (`dev_jwt_auth`, RS256), with
//! the per-session join quota lifted; this process is the load (run it pinned to CPU 1).
//! It reports:
//!
//! - start-up: from spawn until `/healthz` answers (wall clock, and the service's CPU
//!   time, which a busy machine inflates less), and the resident memory then (VmRSS) and
//!   at its peak (VmHWM);
//! - first joins: one join to each of `WARM_SESSIONS` sessions spread over the id range,
//!   each verifying the PIN with argon2 once;
//! - cached joins: `JOINS` joins, each of a new client (a durable journal record), to a
//!   random one of those sessions, from `CONCURRENCY` connections, while a probe reads the
//!   admin `/healthz` ten times a second; p50/p99/p99.9/max latency, joins/s, and the
//!   service's CPU time per join (utime+stime from `/proc`).
//!
//! `ISM_BENCH_SESSIONS`, `ISM_BENCH_JOINS` override the sizes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use test_support::journal_file::JournalWriter;
use test_support::service::{Launch, Service};

const PIN: &str = "424242";
const FIRST_ID: u64 = 100_000_000;
const WARM_SESSIONS: usize = 400;
const CONCURRENCY: usize = 8;

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// `field` (kB) of `/proc/<pid>/status`, in MiB.
fn status_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// utime + stime of `pid`, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |index: usize| fields.get(index).and_then(|t| t.parse::<f64>().ok());
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    match (ticks(11), ticks(12)) {
        (Some(user), Some(system)) => (user + system) / 100.0,
        _ => f64::NAN,
    }
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 * fraction).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

fn summary(name: &str, mut latencies: Vec<Duration>, elapsed: Duration) {
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name}: {} joins, {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        latencies.len(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99)),
        ms(percentile(&latencies, 0.999)),
        ms(latencies.last().copied().unwrap_or_default()),
    );
}

async fn join(http: &reqwest::Client, public: &str, id: u64, client: &str) -> Result<(), String> {
    let response = http
        .post(format!("{public}/api/v1/sessions/{id}/join"))
        .json(&json!({ "pin": PIN, "client": client }))
        .send()
        .await
        .map_err(|error| format!("join {id} as {client}: {error}"))?;
    if !response.status().is_success() {
        return Err(format!("join {id} as {client}: {}", response.status()));
    }
    Ok(())
}

fn start(data_dir: &std::path::Path) -> Service {
    let mut taskset = std::process::Command::new("taskset");
    taskset.args(["-c", "0"]);
    Launch::wrapped(taskset)
        .data_dir(data_dir)
        .env("ISM_JOIN_QUOTA_PER_SESSION", "0")
        .env("ISM_IP_MAX_FAILURES", "1000000")
        .env("ISM_SESSION_MAX_FAILURES", "1000000")
        .start()
}

#[tokio::main]
async fn main() -> BenchResult<()> {
    let sessions = setting("ISM_BENCH_SESSIONS", 1_000_000);
    let joins = setting("ISM_BENCH_JOINS", 40_000);
    let now = test_support::now();
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().join("data");
    let pin_hash = session_manager::join::pin_check::hash_pin_blocking(
        &session_manager::domain::Pin::parse(PIN)?,
    )?;
    let mut journal = JournalWriter::create(&data_dir);
    for n in 0..sessions as u64 {
        let id = (FIRST_ID + n).to_string();
        journal.created(&id, now, Some(now + 86_400), None, &pin_hash);
        journal.joined(&id, "device-1", now + 1);
    }
    let records = journal.finish();
    let journal_mib =
        std::fs::metadata(data_dir.join("sessions.journal"))?.len() as f64 / 1048576.0;
    println!(
        "join_at_scale: binary {}, {sessions} sessions (9-digit ids), {records} records, journal {journal_mib:.0} MiB",
        test_support::service::binary().display()
    );

    let started = Instant::now();
    let service = start(&data_dir);
    service.wait_until_answering().await;
    let ready = started.elapsed();
    let pid = service.pid();
    println!(
        "start-up: ready in {:.2} s ({:.2} s of CPU), RSS {:.0} MiB, peak RSS {:.0} MiB",
        ready.as_secs_f64(),
        cpu_secs(pid),
        status_mib(pid, "VmRSS:"),
        status_mib(pid, "VmHWM:")
    );

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY * 2)
        .build()?;
    let public = service.public.clone();
    let warm: Vec<u64> = (0..WARM_SESSIONS as u64)
        .map(|n| FIRST_ID + n * (sessions as u64 / WARM_SESSIONS as u64))
        .collect();

    // First joins: argon2 once per session.
    let mut first = Vec::with_capacity(warm.len());
    let began = Instant::now();
    for chunk in warm.chunks(CONCURRENCY) {
        let tasks: Vec<_> = chunk
            .iter()
            .map(|&id| {
                let (http, public) = (http.clone(), public.clone());
                tokio::spawn(async move {
                    let at = Instant::now();
                    join(&http, &public, id, "warm")
                        .await
                        .map(|()| at.elapsed())
                })
            })
            .collect();
        for task in tasks {
            first.push(task.await??);
        }
    }
    summary("first joins (argon2)", first, began.elapsed());

    // Cached joins under a 10/s health probe.
    let stop = Arc::new(AtomicBool::new(false));
    let probe = {
        let (http, admin, stop) = (http.clone(), service.admin.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let _ = http.get(format!("{admin}/healthz")).send().await;
            }
        })
    };
    let cpu_before = cpu_secs(pid);
    let began = Instant::now();
    let per_worker = joins / CONCURRENCY;
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|worker| {
            let (http, public, warm) = (http.clone(), public.clone(), warm.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_worker);
                for n in 0..per_worker {
                    // A cheap spread over the warmed sessions, different per worker.
                    let id = warm[(n * 7919 + worker * 104_729) % warm.len()];
                    let at = Instant::now();
                    join(&http, &public, id, &format!("c-{worker}-{n}")).await?;
                    latencies.push(at.elapsed());
                }
                Ok::<_, String>(latencies)
            })
        })
        .collect();
    let mut cached = Vec::with_capacity(joins);
    for worker in workers {
        cached.extend(worker.await??);
    }
    let elapsed = began.elapsed();
    let cpu = cpu_secs(pid) - cpu_before;
    stop.store(true, Ordering::Relaxed);
    probe.await?;
    let count = cached.len();
    summary("cached joins", cached, elapsed);
    println!(
        "service CPU: {:.1} µs per cached join; RSS after {:.0} MiB",
        cpu * 1e6 / count as f64,
        status_mib(pid, "VmRSS:")
    );
    service.kill();
    Ok(())
}
