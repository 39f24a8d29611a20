//! Restart with 100 000 sessions: the journal is built directly through the record format
//! (one argon2 hash reused, or building it would take longer than the test), then the
//! store is opened on it as the service does at start-up.

#[path = "support/journal.rs"]
mod journal;

use std::path::Path;
use std::time::Duration;

use session_manager::domain::{ClientName, Pin, SessionId};
use session_manager::join::pin_check::PinChecker;
use session_manager::store::{JournalStore, SessionStore, StoreConfig, JOURNAL_FILE_NAME};

const SESSIONS: usize = 100_000;

fn write_journal(dir: &Path, pin: &Pin, now: u64) -> usize {
    let (bytes, records) = journal::sessions_with_one_client(SESSIONS, pin, now).unwrap();
    std::fs::write(dir.join(JOURNAL_FILE_NAME), bytes).unwrap();
    records
}

#[tokio::test(flavor = "multi_thread")]
async fn hundred_thousand_sessions_recover() {
    let dir = tempfile::tempdir().unwrap();
    let pin = Pin::parse("424242").unwrap();
    let now = test_support::now();
    let records = write_journal(dir.path(), &pin, now);

    let config = StoreConfig {
        data_dir: dir.path().to_owned(),
        id_length: 7,
        repair_journal_at: None,
    };
    let (store, report) = JournalStore::open(config).await.unwrap();
    println!(
        "recovered {} sessions from {} records in {:?}",
        report.sessions, report.records, report.elapsed
    );
    assert_eq!(report.sessions, SESSIONS);
    assert_eq!(report.records, records);
    assert_eq!(report.discarded_tail_bytes, 0);
    assert!(report.skipped.is_empty());
    assert_eq!(store.live_count(now + 2).await.unwrap(), SESSIONS);
    if !cfg!(debug_assertions) {
        assert!(
            report.elapsed < Duration::from_secs(2),
            "recovery took {:?}",
            report.elapsed
        );
    }

    let first = SessionId::parse("1000000").unwrap();
    let info = store.get(&first, now + 2).await.unwrap().unwrap();
    assert_eq!(info.clients.len(), 1);
    let page = store.list(now + 2, Some(&first), 3).await.unwrap();
    let ids: Vec<_> = page.iter().map(|info| info.id.as_str()).collect();
    assert_eq!(ids, ["1000001", "1000002", "1000003"]);
    // A recovered session's PIN still works (argon2 once: this process never saw it).
    let pins = PinChecker::new(6).unwrap();
    let stored_hash = store.pin_hash(&first, now + 3).await.unwrap().unwrap();
    assert!(pins.check(&first, &pin, stored_hash).await.unwrap());
    store
        .join_record(&first, &ClientName::parse("device-2").unwrap(), now + 3)
        .await
        .unwrap();
    store.shutdown().await;
}
