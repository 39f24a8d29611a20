//! Restart time of the session store with 100 000 sessions (each with one joined client).
//!
//! `cargo bench -p session-manager --bench store_recovery` builds the journal once through
//! the record format, then opens the store on it several times and prints each recovery
//! time and the median; `docs/PERFORMANCE.md` quotes the result. `ISM_BENCH_SESSIONS` and
//! `ISM_BENCH_RUNS` change the number of sessions and of runs.

#[path = "../tests/support/journal.rs"]
mod journal;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use session_manager::domain::Pin;
use session_manager::store::{JournalStore, SessionStore, StoreConfig, JOURNAL_FILE_NAME};

/// utime + stime of this process, in seconds.
fn process_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |index: usize| fields.get(index).and_then(|t| t.parse::<f64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(user), Some(system)) => (user + system) / 100.0,
        _ => f64::NAN,
    }
}

/// `field` (kB) of `/proc/self/status`, in MiB.
fn status_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

#[tokio::main]
async fn main() -> BenchResult<()> {
    let (sessions, runs) = (
        setting("ISM_BENCH_SESSIONS", 100_000),
        setting("ISM_BENCH_RUNS", 7),
    );
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let (journal, records) =
        journal::sessions_with_one_client(sessions, &Pin::parse("424242")?, now)?;
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join(JOURNAL_FILE_NAME), &journal)?;
    println!(
        "store_recovery: {sessions} sessions, {records} records, journal {:.1} MiB",
        journal.len() as f64 / (1024.0 * 1024.0)
    );

    let mut times: Vec<Duration> = Vec::with_capacity(runs);
    for run in 1..=runs {
        let config = StoreConfig {
            data_dir: dir.path().to_owned(),
            id_length: 7,
            repair_journal_at: None,
        };
        let cpu_before = process_cpu_secs();
        let (store, report) = JournalStore::open(config).await?;
        let cpu = process_cpu_secs() - cpu_before;
        if report.sessions != sessions {
            return Err(format!(
                "recovered {} sessions, expected {sessions}",
                report.sessions
            )
            .into());
        }
        println!(
            "run {run}: recovered in {:?} ({cpu:.2} s of CPU), RSS {:.0} MiB, peak {:.0} MiB",
            report.elapsed,
            status_mib("VmRSS:"),
            status_mib("VmHWM:")
        );
        times.push(report.elapsed);
        store.shutdown().await;
    }
    times.sort();
    println!(
        "store_recovery: median {:?}, min {:?}, max {:?} (target < 2 s)",
        times[runs / 2],
        times[0],
        times[runs - 1]
    );
    Ok(())
}
