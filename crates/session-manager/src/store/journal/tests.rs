//! Behaviour of `JournalStore` against a real data directory: durability across reopen,
//! damaged journals, compaction, expiry, concurrency limits and the PIN fast path (the
//! tests' store pairs the backend with a `PinChecker`, as the create and join use-cases
//! do).

use std::path::Path;
use std::sync::Arc;

use super::record::{
    ClosedRecord, ConductorRecord, CreatedRecord, JoinedRecord, KickedRecord, Record,
};
use super::recovery::CHUNK_FOR_TESTS;
use super::*;
use crate::clock::unix_now;
use crate::domain::Pin;
use crate::store::JoinError;
// This whole file is test code (`#[cfg(test)] mod tests`): it may reach the use-cases.
#[cfg(test)]
use crate::join::pin_check::{hash_pin_blocking, PinChecker};

const NOW: u64 = 1_700_000_000;
const PIN_LENGTH: usize = 6;

fn config(dir: &Path) -> StoreConfig {
    StoreConfig {
        data_dir: dir.to_owned(),
        id_length: 6,
        repair_journal_at: None,
    }
}

/// A new session and its PIN.
#[derive(Debug, Clone)]
struct CreatedSession {
    session: SessionInfo,
    pin: Pin,
}

/// What the tests assert about: the journal's counters and argon2 runs.
struct TestStats {
    journal: JournalStats,
    argon2_verifications: u64,
}

/// The backend with one process's PIN checker: creates and joins the way the sessions and
/// join use-cases do, reads the way the trait does, synchronously.
#[derive(Clone)]
struct TestStore {
    store: JournalStore,
    pins: Arc<PinChecker>,
}

impl TestStore {
    fn new(store: JournalStore, pin_length: usize) -> Self {
        let pins = PinChecker::new(pin_length).expect("valid PIN length");
        Self {
            store,
            pins: Arc::new(pins),
        }
    }

    async fn create(&self, new: NewSession, now: u64) -> Result<CreatedSession, StoreError> {
        let (pin, pin_hash) = self.pins.issue().await?;
        let session = self.store.create(new, pin_hash, now).await?;
        self.pins.remember(&session.id, &pin);
        Ok(CreatedSession { session, pin })
    }

    async fn join(
        &self,
        id: &SessionId,
        pin: &Pin,
        client: &ClientName,
        now: u64,
    ) -> Result<JoinedSession, JoinError> {
        let Some(stored_hash) = self.store.pin_hash(id, now).await? else {
            return Err(JoinError::InvalidCredentials);
        };
        if !self.pins.check(id, pin, stored_hash).await? {
            return Err(JoinError::InvalidCredentials);
        }
        self.store.join_record(id, client, now).await
    }

    async fn close(&self, id: &SessionId) -> Result<bool, StoreError> {
        let closed = self.store.close(id).await?;
        if closed {
            self.pins.forget(id);
        }
        Ok(closed)
    }

    fn get(&self, id: &SessionId, now: u64) -> Option<SessionInfo> {
        self.store.live_info(id, now)
    }

    fn list(&self, now: u64, after: Option<&SessionId>, limit: usize) -> Vec<SessionInfo> {
        self.store.list_page(now, after, limit)
    }

    fn live_count(&self, now: u64) -> usize {
        self.store.count_live(now)
    }

    fn revocation(&self, id: &SessionId, token_ttl_secs: u64, now: u64) -> Option<Revocation> {
        self.store.closed_session(id, token_ttl_secs, now)
    }

    fn skipped_ranges(&self) -> Vec<SkippedRange> {
        self.store.health().skipped
    }

    async fn shutdown(&self) {
        self.store.shutdown().await;
    }

    fn stats(&self) -> TestStats {
        TestStats {
            journal: self.store.journal_stats(),
            argon2_verifications: self.pins.argon2_verifications(),
        }
    }
}

async fn open_store(config: StoreConfig) -> Result<(TestStore, RecoveryReport), StoreError> {
    let (store, report) = JournalStore::open(config).await?;
    Ok((TestStore::new(store, PIN_LENGTH), report))
}

async fn open(dir: &Path) -> (TestStore, RecoveryReport) {
    open_store(config(dir)).await.unwrap()
}

/// Closes the store the way a restart would and opens it again.
async fn reopen(store: TestStore, dir: &Path) -> (TestStore, RecoveryReport) {
    store.shutdown().await;
    drop(store);
    open(dir).await
}

fn client(name: &str) -> ClientName {
    ClientName::parse(name).unwrap()
}

fn journal_path(dir: &Path) -> std::path::PathBuf {
    dir.join(JOURNAL_FILE_NAME)
}

fn journal_len(dir: &Path) -> u64 {
    std::fs::metadata(journal_path(dir)).unwrap().len()
}

async fn create(store: &TestStore, new: NewSession) -> CreatedSession {
    store.create(new, NOW).await.unwrap()
}

#[tokio::test]
async fn create_join_close_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (store, report) = open(dir.path()).await;
    assert_eq!(report.sessions, 0);
    assert_eq!(report.discarded_tail_bytes, 0);

    let kept = create(
        &store,
        NewSession {
            session_type: SessionType::parse("chat").unwrap(),
            ttl_secs: None,
            max_clients: Some(3),
        },
    )
    .await;
    let closed = create(&store, NewSession::default()).await;
    store
        .join(&kept.session.id, &kept.pin, &client("lamp"), NOW + 5)
        .await
        .unwrap();
    store
        .join(&kept.session.id, &kept.pin, &client("switch"), NOW + 7)
        .await
        .unwrap();
    assert!(store.close(&closed.session.id).await.unwrap());

    let (store, report) = reopen(store, dir.path()).await;
    assert_eq!(report.sessions, 1);
    assert_eq!(report.records, 5);
    let info = store.get(&kept.session.id, NOW + 10).unwrap();
    assert_eq!(info, {
        let mut expected = kept.session.clone();
        expected.clients = vec![
            ClientInfo {
                name: client("lamp"),
                joined_at: NOW + 5,
            },
            ClientInfo {
                name: client("switch"),
                joined_at: NOW + 7,
            },
        ];
        expected
    });
    assert_eq!(info.session_type.as_str(), "chat");
    assert_eq!(info.max_clients, Some(3));
    assert!(store.get(&closed.session.id, NOW + 10).is_none());
    assert!(!store.close(&closed.session.id).await.unwrap());
    assert!(matches!(
        store
            .join(&closed.session.id, &closed.pin, &client("lamp"), NOW + 10)
            .await,
        Err(JoinError::InvalidCredentials)
    ));
    // The PIN still works after a restart (via argon2 now: the fast check is per process).
    store
        .join(&kept.session.id, &kept.pin, &client("third"), NOW + 11)
        .await
        .unwrap();
}

#[tokio::test]
async fn every_refusal_of_credentials_looks_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path()).await;
    let live = create(&store, NewSession::default()).await;
    let expiring = create(
        &store,
        NewSession {
            ttl_secs: Some(60),
            ..NewSession::default()
        },
    )
    .await;
    let closed = create(&store, NewSession::default()).await;
    store.close(&closed.session.id).await.unwrap();
    let wrong_pin = Pin::parse(if live.pin.as_str() == "000000" {
        "111111"
    } else {
        "000000"
    })
    .unwrap();
    let unknown = SessionId::parse("1").unwrap();

    let attempts = [
        (&live.session.id, &wrong_pin, NOW),
        (&unknown, &live.pin, NOW),
        (&closed.session.id, &closed.pin, NOW),
        (&expiring.session.id, &expiring.pin, NOW + 60),
    ];
    for (id, pin, now) in attempts {
        let result = store.join(id, pin, &client("lamp"), now).await;
        assert!(
            matches!(result, Err(JoinError::InvalidCredentials)),
            "{id}: {result:?}"
        );
    }
    assert!(store
        .join(
            &expiring.session.id,
            &expiring.pin,
            &client("lamp"),
            NOW + 59
        )
        .await
        .is_ok());
}

#[tokio::test]
async fn expired_sessions_vanish_from_get_list_and_count() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path()).await;
    let expiring = create(
        &store,
        NewSession {
            ttl_secs: Some(100),
            ..NewSession::default()
        },
    )
    .await;
    let forever = create(&store, NewSession::default()).await;
    assert_eq!(expiring.session.expires_at, Some(NOW + 100));
    assert_eq!(forever.session.expires_at, None);

    assert!(store.get(&expiring.session.id, NOW + 99).is_some());
    assert_eq!(store.live_count(NOW + 99), 2);
    assert_eq!(store.list(NOW + 99, None, 10).len(), 2);

    assert!(store.get(&expiring.session.id, NOW + 100).is_none());
    assert_eq!(store.live_count(NOW + 100), 1);
    let listed = store.list(NOW + 100, None, 10);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, forever.session.id);
}

#[tokio::test]
async fn list_pages_through_live_sessions_in_id_order_without_pins() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path()).await;
    let mut created = Vec::new();
    for _ in 0..17 {
        created.push(create(&store, NewSession::default()).await);
    }
    store.close(&created[3].session.id).await.unwrap();
    let mut expected: Vec<SessionId> = created
        .iter()
        .enumerate()
        .filter(|(index, _)| *index != 3)
        .map(|(_, c)| c.session.id.clone())
        .collect();
    expected.sort();

    let mut seen = Vec::new();
    let mut cursor: Option<SessionId> = None;
    loop {
        let page = store.list(NOW, cursor.as_ref(), 5);
        assert!(page.len() <= 5);
        let Some(last) = page.last() else { break };
        cursor = Some(last.id.clone());
        let json = serde_json::to_string(&page).unwrap();
        for session in &created {
            assert!(!json.contains(session.pin.as_str()), "a PIN leaked: {json}");
        }
        assert!(!json.contains("argon2"), "a PIN hash leaked: {json}");
        seen.extend(page.into_iter().map(|info| info.id));
    }
    assert_eq!(seen, expected);
    assert!(store.list(NOW, None, 0).is_empty());
}

#[tokio::test]
async fn live_ends_pages_through_the_ends_of_live_sessions_that_have_one() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path()).await;
    let with_ttl = |ttl| NewSession {
        ttl_secs: ttl,
        ..NewSession::default()
    };
    let mut created = Vec::new();
    // The one closed below must still be open by the store's own (real) clock, or the
    // close would find it expired already.
    let far = Some(2_000_000_000);
    for ttl in [
        Some(100),
        None,
        Some(10),
        Some(300),
        Some(200),
        None,
        far,
        Some(500),
    ] {
        created.push(create(&store, with_ttl(ttl)).await);
    }
    // Closed, expired (ttl 10) and never-ending sessions have no end to announce.
    assert!(store.close(&created[6].session.id).await.unwrap());
    let now = NOW + 50;
    let mut expected: Vec<SessionEnd> = created
        .iter()
        .enumerate()
        .filter(|(index, _)| *index != 6)
        .filter_map(|(_, c)| {
            let expires_at = c.session.expires_at.filter(|end| *end > now)?;
            Some(SessionEnd {
                id: c.session.id.clone(),
                expires_at,
            })
        })
        .collect();
    expected.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(expected.len(), 4);

    let backend: &dyn SessionStore = &store.store;
    let mut seen = Vec::new();
    let mut cursor: Option<SessionId> = None;
    loop {
        let page = backend.live_ends(now, cursor.as_ref(), 2).await.unwrap();
        assert!(page.len() <= 2);
        let full = page.len() == 2;
        cursor = page.last().map(|end| end.id.clone());
        seen.extend(page);
        if !full {
            break;
        }
    }
    assert_eq!(seen, expected);
    // The same as the full listing says, without the clients.
    let listed: Vec<SessionEnd> = backend
        .list(now, None, 100)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|info| {
            Some(SessionEnd {
                expires_at: info.expires_at?,
                id: info.id,
            })
        })
        .collect();
    assert_eq!(listed, expected);
    assert!(backend.live_ends(now, None, 0).await.unwrap().is_empty());
}

#[tokio::test]
async fn rejoining_client_keeps_first_join_time_and_counts_once() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path()).await;
    let created = create(
        &store,
        NewSession {
            max_clients: Some(2),
            ..NewSession::default()
        },
    )
    .await;
    let id = &created.session.id;
    store
        .join(id, &created.pin, &client("a"), NOW + 1)
        .await
        .unwrap();
    store
        .join(id, &created.pin, &client("a"), NOW + 2)
        .await
        .unwrap();
    let info = store.get(id, NOW + 2).unwrap();
    assert_eq!(info.clients.len(), 1);
    assert_eq!(info.clients[0].joined_at, NOW + 1);
    store
        .join(id, &created.pin, &client("b"), NOW + 3)
        .await
        .unwrap();
    assert!(matches!(
        store.join(id, &created.pin, &client("c"), NOW + 4).await,
        Err(JoinError::SessionFull)
    ));
    // Already joined clients may still come back to a full session.
    store
        .join(id, &created.pin, &client("b"), NOW + 5)
        .await
        .unwrap();

    let (store, _) = reopen(store, dir.path()).await;
    let info = store.get(id, NOW + 6).unwrap();
    let names: Vec<_> = info.clients.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(info.clients[0].joined_at, NOW + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_joins_never_overshoot_max_clients() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path()).await;
    let created = Arc::new(
        create(
            &store,
            NewSession {
                max_clients: Some(5),
                ..NewSession::default()
            },
        )
        .await,
    );
    let tasks: Vec<_> = (0..64)
        .map(|n| {
            let store = store.clone();
            let created = Arc::clone(&created);
            tokio::spawn(async move {
                store
                    .join(
                        &created.session.id,
                        &created.pin,
                        &client(&format!("c{n}")),
                        NOW,
                    )
                    .await
            })
        })
        .collect();
    let mut joined = 0;
    let mut full = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => joined += 1,
            Err(JoinError::SessionFull) => full += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((joined, full), (5, 59));
    assert_eq!(
        store.get(&created.session.id, NOW).unwrap().clients.len(),
        5
    );
    let (store, _) = reopen(store, dir.path()).await;
    assert_eq!(
        store.get(&created.session.id, NOW).unwrap().clients.len(),
        5
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_joins_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path()).await;
    let created = Arc::new(create(&store, NewSession::default()).await);
    let before = store.stats().journal;
    let barrier = Arc::new(tokio::sync::Barrier::new(64));
    let tasks: Vec<_> = (0..64)
        .map(|n| {
            let store = store.clone();
            let created = Arc::clone(&created);
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                store
                    .join(
                        &created.session.id,
                        &created.pin,
                        &client(&format!("c{n}")),
                        NOW,
                    )
                    .await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let after = store.stats().journal;
    let records = after.records - before.records;
    let fsyncs = after.fsyncs - before.fsyncs;
    println!("64 concurrent joins: {records} records, {fsyncs} fsyncs");
    assert_eq!(records, 64);
    assert!(
        fsyncs < 64 / 2,
        "group commit did not batch: {fsyncs} fsyncs"
    );
    assert_eq!(store.stats().argon2_verifications, 0);
}

#[tokio::test]
async fn pin_fast_path_skips_argon2_after_first_verification() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path()).await;
    let created = create(&store, NewSession::default()).await;
    let id = created.session.id.clone();
    let wrong = Pin::parse(if created.pin.as_str() == "000000" {
        "111111"
    } else {
        "000000"
    })
    .unwrap();

    // The creating process knows the PIN: no argon2 for right or wrong PINs.
    store
        .join(&id, &created.pin, &client("a"), NOW)
        .await
        .unwrap();
    assert!(store.join(&id, &wrong, &client("a"), NOW).await.is_err());
    assert_eq!(store.stats().argon2_verifications, 0);

    // A new process must verify once against the stored hash...
    let (store, _) = reopen(store, dir.path()).await;
    assert!(store.join(&id, &wrong, &client("a"), NOW).await.is_err());
    assert_eq!(store.stats().argon2_verifications, 1);
    store
        .join(&id, &created.pin, &client("b"), NOW)
        .await
        .unwrap();
    assert_eq!(store.stats().argon2_verifications, 2);
    // ...and never again for this session, whatever PIN is tried.
    store
        .join(&id, &created.pin, &client("c"), NOW)
        .await
        .unwrap();
    assert!(matches!(
        store.join(&id, &wrong, &client("d"), NOW).await,
        Err(JoinError::InvalidCredentials)
    ));
    assert_eq!(store.stats().argon2_verifications, 2);
}

#[tokio::test]
async fn journal_never_holds_the_pin() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path()).await;
    let created = create(&store, NewSession::default()).await;
    store.shutdown().await;
    let journal = std::fs::read_to_string(journal_path(dir.path())).unwrap();
    assert!(journal.contains("$argon2id$"));
    let json_of_pin = format!("\"{}\"", created.pin);
    assert!(!journal.contains(&json_of_pin), "{journal}");
}

#[tokio::test]
async fn changes_after_shutdown_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path()).await;
    let created = create(&store, NewSession::default()).await;
    store.shutdown().await;
    assert!(matches!(
        store.create(NewSession::default(), NOW).await,
        Err(StoreError::JournalClosed)
    ));
    assert!(matches!(
        store
            .join(&created.session.id, &created.pin, &client("a"), NOW)
            .await,
        Err(JoinError::Store(StoreError::JournalClosed))
    ));
    // A change that did not reach the disk is not visible either.
    assert!(store
        .get(&created.session.id, NOW)
        .unwrap()
        .clients
        .is_empty());
    assert!(matches!(
        store.close(&created.session.id).await,
        Err(StoreError::JournalClosed)
    ));
    assert!(store.get(&created.session.id, NOW).is_some());
}

#[tokio::test]
async fn retired_ids_are_never_reused_and_a_full_id_space_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = StoreConfig {
        data_dir: dir.path().to_owned(),
        id_length: 1,
        repair_journal_at: None,
    };
    let (store, _) = open_store(tiny.clone()).await.unwrap();
    // 9 one-digit ids exist; creation stops once 90 % of them are used or retired.
    let mut ids = Vec::new();
    for _ in 0..8 {
        ids.push(create(&store, NewSession::default()).await.session.id);
    }
    let distinct: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), 8);
    for id in &ids {
        store.close(id).await.unwrap();
    }
    store.shutdown().await;
    drop(store);

    let (store, report) = open_store(tiny).await.unwrap();
    assert_eq!(report.sessions, 0);
    // 8 of 9 is just under the limit: one more id, and never one of the retired ones.
    let fresh = create(&store, NewSession::default()).await.session.id;
    assert!(!ids.contains(&fresh), "retired id {fresh} was reused");
    let error = store.create(NewSession::default(), NOW).await.unwrap_err();
    assert!(
        matches!(error, StoreError::IdSpaceExhausted { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("ISM_ID_LENGTH"), "{error}");
}

#[tokio::test]
async fn impossible_lengths_are_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    for id_length in [0, 33] {
        let result = open_store(StoreConfig {
            data_dir: dir.path().to_owned(),
            id_length,
            repair_journal_at: None,
        })
        .await;
        assert!(matches!(result, Err(StoreError::Config(_))));
    }
    // PINs are the use-cases' business: their checker refuses impossible lengths.
    for pin_length in [2, 33] {
        assert!(PinChecker::new(pin_length).is_err());
    }
}

// --- damaged journals ---------------------------------------------------------------------

/// A store with three sessions (one joined by a client) and its journal's frame offsets.
async fn three_sessions(dir: &Path) -> (Vec<CreatedSession>, Vec<u64>) {
    let (store, _) = open(dir).await;
    let mut created = Vec::new();
    let mut offsets = vec![journal_len(dir)];
    for _ in 0..3 {
        created.push(create(&store, NewSession::default()).await);
        offsets.push(journal_len(dir));
    }
    store
        .join(
            &created[2].session.id,
            &created[2].pin,
            &client("late"),
            NOW,
        )
        .await
        .unwrap();
    offsets.push(journal_len(dir));
    store.shutdown().await;
    (created, offsets)
}

fn live_ids(store: &TestStore) -> Vec<SessionId> {
    store
        .list(NOW, None, 100)
        .into_iter()
        .map(|info| info.id)
        .collect()
}

fn sorted_ids(created: &[CreatedSession]) -> Vec<SessionId> {
    let mut ids: Vec<_> = created.iter().map(|c| c.session.id.clone()).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn truncated_mid_record_keeps_the_intact_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let (created, offsets) = three_sessions(dir.path()).await;
    // Cut the last record (the join) in the middle, as a crash mid-append would.
    let cut = offsets[3] + (offsets[4] - offsets[3]) / 2;
    std::fs::OpenOptions::new()
        .write(true)
        .open(journal_path(dir.path()))
        .unwrap()
        .set_len(cut)
        .unwrap();

    let (store, report) = open(dir.path()).await;
    assert_eq!(report.records, 3);
    assert_eq!(report.sessions, 3);
    assert_eq!(report.discarded_tail_bytes, cut - offsets[3]);
    assert_eq!(
        journal_len(dir.path()),
        offsets[3],
        "damaged tail not truncated"
    );
    assert_eq!(live_ids(&store), sorted_ids(&created));
    assert!(store
        .get(&created[2].session.id, NOW)
        .unwrap()
        .clients
        .is_empty());

    // New records land after the intact prefix and survive the next restart.
    store
        .join(
            &created[0].session.id,
            &created[0].pin,
            &client("after"),
            NOW,
        )
        .await
        .unwrap();
    let (store, report) = reopen(store, dir.path()).await;
    assert_eq!(report.discarded_tail_bytes, 0);
    assert_eq!(report.records, 4);
    assert_eq!(
        store
            .get(&created[0].session.id, NOW)
            .unwrap()
            .clients
            .len(),
        1
    );
}

/// Flips one byte at `offset + delta` of the journal in `dir`.
fn flip(dir: &Path, offset: u64, delta: u64) {
    let path = journal_path(dir);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[usize::try_from(offset + delta).unwrap()] ^= 0x20;
    std::fs::write(&path, &bytes).unwrap();
}

/// Offset of the JSON body inside the frame starting at `offset`.
fn body_start(dir: &Path, offset: u64) -> u64 {
    let bytes = std::fs::read(journal_path(dir)).unwrap();
    let frame = &bytes[usize::try_from(offset).unwrap()..];
    frame.iter().position(|&b| b == b'{').unwrap() as u64
}

#[tokio::test]
async fn a_damaged_create_is_skipped_its_id_reserved_and_later_records_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (created, offsets) = three_sessions(dir.path()).await;
    // Damage a byte inside the second record's JSON.
    flip(
        dir.path(),
        offsets[1],
        body_start(dir.path(), offsets[1]) + 20,
    );

    let (store, report) = open(dir.path()).await;
    assert_eq!(report.records, 3);
    assert_eq!(report.discarded_tail_bytes, 0);
    assert_eq!(report.skipped.len(), 1, "{report:?}");
    assert_eq!(report.skipped[0].offset, offsets[1]);
    assert_eq!(report.skipped[0].len, offsets[2] - offsets[1]);
    let lost = &created[1].session.id;
    assert!(report.skipped[0].detail.contains(lost.as_str()));
    assert_eq!(store.skipped_ranges(), report.skipped.as_slice());
    let mut expected = vec![created[0].session.id.clone(), created[2].session.id.clone()];
    expected.sort();
    assert_eq!(live_ids(&store), expected);
    assert_eq!(
        store
            .get(&created[2].session.id, NOW)
            .unwrap()
            .clients
            .len(),
        1
    );
    // The lost session's id counts as closed: reserved, and its tokens refused.
    let revocation = store.revocation(lost, 3600, unix_now()).unwrap();
    assert!(revocation.until > unix_now());

    // The file was rewritten without the damage: the next start reads clean.
    let (_store, report) = reopen(store, dir.path()).await;
    assert!(report.skipped.is_empty(), "{report:?}");
}

#[tokio::test]
async fn a_damaged_close_still_closes_and_later_sessions_survive() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path()).await;
    let first = create(&store, NewSession::default()).await;
    let closed = create(&store, NewSession::default()).await;
    let close_at = journal_len(dir.path());
    assert!(store.close(&closed.session.id).await.unwrap());
    let later = create(&store, NewSession::default()).await;
    store.shutdown().await;
    drop(store);
    flip(dir.path(), close_at, body_start(dir.path(), close_at) + 5);

    let (store, report) = open(dir.path()).await;
    assert_eq!(report.skipped.len(), 1, "{report:?}");
    assert!(
        store.get(&closed.session.id, NOW).is_none(),
        "closed session revived"
    );
    assert!(matches!(
        store
            .join(&closed.session.id, &closed.pin, &client("x"), NOW)
            .await,
        Err(JoinError::InvalidCredentials)
    ));
    assert!(store.get(&first.session.id, NOW).is_some());
    assert!(store.get(&later.session.id, NOW).is_some());
}

#[tokio::test]
async fn a_damaged_key_refuses_start_naming_the_offset_until_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let (created, offsets) = three_sessions(dir.path()).await;
    // The id digits of the second frame's key.
    flip(dir.path(), offsets[1], 3);

    let Err(error) = open_store(config(dir.path())).await else {
        panic!("the store opened on a damaged journal");
    };
    assert!(
        matches!(error, StoreError::UndecidableDamage { offset, .. } if offset == offsets[1]),
        "{error}"
    );
    let message = error.to_string();
    assert!(
        message.contains(&format!("--repair-journal-at {}", offsets[1])),
        "{message}"
    );

    let (store, report) = open_store(StoreConfig {
        repair_journal_at: Some(offsets[1]),
        ..config(dir.path())
    })
    .await
    .unwrap();
    assert_eq!(report.skipped.len(), 1);
    // Open at the damage: closed to be safe; created after it: kept.
    assert!(store.get(&created[0].session.id, NOW).is_none());
    assert!(store.get(&created[2].session.id, NOW).is_some());
    // The damaged create's id is still readable in its body, and stays reserved.
    assert!(store
        .revocation(&created[1].session.id, 3600, unix_now())
        .is_some());
    let (_store, report) = reopen(store, dir.path()).await;
    assert!(report.skipped.is_empty());
}

#[tokio::test]
async fn a_checksummed_record_that_does_not_decode_refuses_start() {
    let dir = tempfile::tempdir().unwrap();
    let (_, offsets) = three_sessions(dir.path()).await;
    let mut bytes = std::fs::read(journal_path(dir.path())).unwrap();
    let body = br#"{"renamed":{"id":"5"}}"#;
    let key = format!("x 5 {}", body.len());
    bytes.extend_from_slice(
        format!(
            "{key} {:08x} {:08x} ",
            crc32fast::hash(key.as_bytes()),
            crc32fast::hash(body)
        )
        .as_bytes(),
    );
    bytes.extend_from_slice(body);
    bytes.push(b'\n');
    std::fs::write(journal_path(dir.path()), &bytes).unwrap();

    let Err(error) = open_store(config(dir.path())).await else {
        panic!("the store opened on a damaged journal");
    };
    assert!(
        matches!(error, StoreError::UndecodableRecord { offset, .. } if offset == offsets[4]),
        "{error}"
    );
    assert!(error.to_string().contains(&format!("byte {}", offsets[4])));
}

#[tokio::test]
async fn a_format_1_journal_is_read_and_rewritten_in_the_current_format() {
    let dir = tempfile::tempdir().unwrap();
    let pin = Pin::parse("123456").unwrap();
    let pin_hash = hash_pin_blocking(&pin).unwrap();
    let mut bytes = Vec::new();
    for json in [
        format!(
            r#"{{"created":{{"id":"11","session_type":"chat","created_at":{NOW},"expires_at":null,"max_clients":null,"pin_hash":"{pin_hash}"}}}}"#
        ),
        format!(
            r#"{{"created":{{"id":"12","session_type":"chat","created_at":{NOW},"expires_at":null,"max_clients":null,"pin_hash":"{pin_hash}"}}}}"#
        ),
        r#"{"closed":{"id":"12"}}"#.to_owned(),
    ] {
        bytes.extend_from_slice(
            format!("{:08x} {json}\n", crc32fast::hash(json.as_bytes())).as_bytes(),
        );
    }
    std::fs::write(journal_path(dir.path()), &bytes).unwrap();

    let (store, report) = open(dir.path()).await;
    assert_eq!(report.records, 3);
    assert!(store.get(&SessionId::parse("11").unwrap(), NOW).is_some());
    assert!(store.get(&SessionId::parse("12").unwrap(), NOW).is_none());
    // A close without a time counts as closed at recovery: its tokens stay refused.
    let now = unix_now();
    let revocation = store
        .revocation(&SessionId::parse("12").unwrap(), 3600, now)
        .unwrap();
    assert!(revocation.until >= now + 3590, "{revocation:?}");
    assert!(std::fs::read(journal_path(dir.path()))
        .unwrap()
        .starts_with(record::JOURNAL_HEADER));
    let (store, _) = reopen(store, dir.path()).await;
    assert!(store.get(&SessionId::parse("11").unwrap(), NOW).is_some());
}

#[tokio::test]
async fn garbage_tail_is_reported_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (created, offsets) = three_sessions(dir.path()).await;
    let path = journal_path(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    let garbage = b"\0\0\0\0\xff\xfe garbage\nmore garbage without newline";
    bytes.extend_from_slice(garbage);
    std::fs::write(&path, &bytes).unwrap();

    let (store, report) = open(dir.path()).await;
    assert_eq!(report.records, 4);
    assert_eq!(report.discarded_tail_bytes, garbage.len() as u64);
    assert_eq!(journal_len(dir.path()), offsets[4]);
    assert_eq!(live_ids(&store), sorted_ids(&created));
    assert_eq!(
        store
            .get(&created[2].session.id, NOW)
            .unwrap()
            .clients
            .len(),
        1
    );
}

#[tokio::test]
async fn unfinished_compaction_file_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let (created, _) = three_sessions(dir.path()).await;
    std::fs::write(
        dir.path().join("sessions.journal.compact"),
        b"half a compaction",
    )
    .unwrap();
    let (store, report) = open(dir.path()).await;
    assert_eq!(report.sessions, 3);
    assert_eq!(live_ids(&store), sorted_ids(&created));
    assert!(!dir.path().join("sessions.journal.compact").exists());
}

// --- compaction ---------------------------------------------------------------------------

/// Waits (up to 30 s) until the store has finished `count` compactions.
async fn wait_for_compactions(store: &TestStore, count: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while store.stats().journal.compactions < count {
        assert!(
            std::time::Instant::now() < deadline,
            "no compaction finished: {:?}",
            store.stats().journal
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

fn write_journal(dir: &Path, records: &[Record]) {
    std::fs::write(journal_path(dir), record::encode_journal(records).unwrap()).unwrap();
}

#[tokio::test]
async fn compaction_keeps_exactly_the_live_state() {
    let dir = tempfile::tempdir().unwrap();
    let pin = Pin::parse("123456").unwrap();
    let pin_hash = hash_pin_blocking(&pin).unwrap();
    let now = unix_now();
    let id = |n: usize| SessionId::parse(&format!("{}", 100_000 + n)).unwrap();
    let mut records = Vec::new();
    // 3000 sessions: every third stays live with two clients, every third is closed,
    // every third expired an hour ago.
    for n in 0..3000 {
        records.push(Record::Created(CreatedRecord {
            id: id(n),
            session_type: SessionType::default(),
            created_at: now - 7200,
            expires_at: if n % 3 == 2 { Some(now - 3600) } else { None },
            max_clients: Some(10),
            pin_hash: pin_hash.clone(),
        }));
        for (name, at) in [("a", 1), ("b", 2), ("a", 3)] {
            records.push(Record::Joined(JoinedRecord {
                id: id(n),
                client: client(name),
                joined_at: now - 7200 + at,
            }));
        }
        if n % 3 == 1 {
            records.push(Record::Closed(ClosedRecord {
                id: id(n),
                closed_at: Some(now - 60),
                session_end: None,
            }));
        }
    }
    write_journal(dir.path(), &records);
    let size_before = journal_len(dir.path());

    let (store, report) = open(dir.path()).await;
    assert_eq!(report.records, records.len());
    assert_eq!(report.sessions, 1000);
    let state_before: Vec<SessionInfo> = store.list(now, None, usize::MAX);
    assert_eq!(state_before.len(), 1000);
    assert!(state_before
        .iter()
        .all(|info| info.clients.len() == 2 && info.clients[0].joined_at == now - 7199));
    store.shutdown().await;
    drop(store);

    // The header, live sessions (1 + 2 joins each) plus one tombstone per retired id.
    let compacted = std::fs::read_to_string(journal_path(dir.path())).unwrap();
    assert!(journal_len(dir.path()) < size_before / 2);
    assert_eq!(compacted.lines().count(), 1 + 1000 * 3 + 2000);
    assert_eq!(compacted.matches("\"created\"").count(), 1000);
    assert_eq!(compacted.matches("\"closed\"").count(), 2000);

    let (store, report) = open(dir.path()).await;
    assert_eq!(report.records, 5000);
    assert_eq!(report.sessions, 1000);
    assert_eq!(store.list(now, None, usize::MAX), state_before);
    // The compacted PIN hash still verifies.
    store.join(&id(0), &pin, &client("c"), now).await.unwrap();
    // Expired and closed ids are retired, not forgotten.
    assert_eq!(store.store.inner.sessions.map.len(), 3000);
}

#[tokio::test]
async fn small_journals_are_not_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let (created, offsets) = three_sessions(dir.path()).await;
    let (store, _) = open(dir.path()).await;
    store.close(&created[0].session.id).await.unwrap();
    let before = journal_len(dir.path());
    assert!(before > offsets[4]);
    let (_store, report) = reopen(store, dir.path()).await;
    assert_eq!(report.records, 5);
    assert_eq!(journal_len(dir.path()), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_running_store_compacts_its_journal() {
    let dir = tempfile::tempdir().unwrap();
    let pin = Pin::parse("123456").unwrap();
    let pin_hash = hash_pin_blocking(&pin).unwrap();
    let now = unix_now();
    let id = |n: usize| SessionId::parse(&format!("{}", 100_000 + n)).unwrap();
    // 100 sessions with 30 clients each, and one more without clients: all live, so the
    // start-up leaves the journal as it is.
    let mut records = Vec::new();
    for n in 0..=100 {
        records.push(Record::Created(CreatedRecord {
            id: id(n),
            session_type: SessionType::default(),
            created_at: now,
            expires_at: None,
            max_clients: None,
            pin_hash: pin_hash.clone(),
        }));
        for c in 0..if n < 100 { 30 } else { 0 } {
            records.push(Record::Joined(JoinedRecord {
                id: id(n),
                client: client(&format!("c{c}")),
                joined_at: now,
            }));
        }
    }
    write_journal(dir.path(), &records);
    let (store, report) = open(dir.path()).await;
    assert_eq!(report.records, 3101);
    assert_eq!(
        journal_len(dir.path()),
        std::fs::metadata(journal_path(dir.path())).unwrap().len()
    );

    // Closing the 100 crowded sessions leaves little live state; 924 joins to the last one
    // bring the file to 1024 appended records, when the writer looks at compacting.
    for n in 0..100 {
        assert!(store.close(&id(n)).await.unwrap());
    }
    let survivor = id(100);
    let joins: Vec<_> = (0..924)
        .map(|c| {
            let store = store.clone();
            let (survivor, pin) = (survivor.clone(), pin.clone());
            tokio::spawn(async move {
                store
                    .join(&survivor, &pin, &client(&format!("d{c}")), now)
                    .await
                    .map(|_| ())
            })
        })
        .collect();
    for join in joins {
        join.await.unwrap().unwrap();
    }
    // The writer begins compacting after acknowledging its batch; a thread of its own
    // writes the snapshot, which the writer installs once it is done.
    store
        .join(&survivor, &pin, &client("d0"), now)
        .await
        .unwrap();
    wait_for_compactions(&store, 1).await;

    // The file now holds the header, the live state (1 + 924 records) and 100 tombstones,
    // and takes later changes.
    let compacted = std::fs::read_to_string(journal_path(dir.path())).unwrap();
    assert_eq!(compacted.lines().count(), 1 + 1 + 924 + 100);
    store
        .join(&survivor, &pin, &client("after-compaction"), now)
        .await
        .unwrap();
    let state = store.list(now, None, 10);

    let (store, report) = reopen(store, dir.path()).await;
    assert_eq!(report.records, 1 + 924 + 100 + 1);
    assert_eq!(report.discarded_tail_bytes, 0);
    assert_eq!(store.list(now, None, 10), state);
    assert_eq!(state.len(), 1);
    assert_eq!(state[0].clients.len(), 925);
    assert!(store.get(&id(0), now).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_joins_after_restart_runs_argon2_only_a_few_times() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path()).await;
    let created = create(&store, NewSession::default()).await;
    let (store, _) = reopen(store, dir.path()).await;
    let created = Arc::new(created);
    let joins: Vec<_> = (0..16)
        .map(|n| {
            let (store, created) = (store.clone(), Arc::clone(&created));
            tokio::spawn(async move {
                store
                    .join(
                        &created.session.id,
                        &created.pin,
                        &client(&format!("c{n}")),
                        NOW,
                    )
                    .await
                    .map(|_| ())
            })
        })
        .collect();
    for join in joins {
        join.await.unwrap().unwrap();
    }
    // Those that were let in together verify in parallel; all later ones use the cache.
    let cores = std::thread::available_parallelism().unwrap().get() as u64;
    let verifications = store.stats().argon2_verifications;
    assert!((1..=cores).contains(&verifications), "{verifications}");
}

// --- replay in chunks -----------------------------------------------------------------------

/// A journal several read chunks long, with damage and a torn tail past the first chunk:
/// offsets are file offsets, every session before and after the damage is there, and a
/// damaged close still closes.
#[tokio::test]
async fn damage_and_a_torn_tail_beyond_the_first_chunk_are_handled_like_in_one_piece() {
    let dir = tempfile::tempdir().unwrap();
    let pin_hash = hash_pin_blocking(&Pin::parse("123456").unwrap()).unwrap();
    let id = |n: usize| SessionId::parse(&format!("{}", 100_000_000 + n)).unwrap();
    let created = |n: usize| {
        Record::Created(CreatedRecord {
            id: id(n),
            session_type: SessionType::default(),
            created_at: NOW,
            expires_at: None,
            max_clients: None,
            pin_hash: pin_hash.clone(),
        })
    };
    let sessions = 60_000;
    let mut bytes = record::encode_journal(&[]).unwrap();
    let mut damaged_at = 0;
    for n in 0..sessions {
        created(n).encode_into(&mut bytes).unwrap();
        if n == 40_000 {
            damaged_at = bytes.len();
            Record::Closed(ClosedRecord {
                id: id(7),
                closed_at: Some(NOW),
                session_end: None,
            })
            .encode_into(&mut bytes)
            .unwrap();
        }
    }
    assert!(bytes.len() > 3 * CHUNK_FOR_TESTS && damaged_at > CHUNK_FOR_TESTS);
    let body = bytes[damaged_at..].iter().position(|&b| b == b'{').unwrap();
    bytes[damaged_at + body + 5] ^= 0x20;
    let torn = created(sessions).encode().unwrap();
    bytes.extend_from_slice(&torn[..torn.len() / 2]);
    std::fs::write(journal_path(dir.path()), &bytes).unwrap();

    let (store, report) = open(dir.path()).await;
    assert_eq!(report.skipped.len(), 1, "{report:?}");
    assert_eq!(report.skipped[0].offset, damaged_at as u64);
    assert!(report.skipped[0].detail.contains(id(7).as_str()));
    assert_eq!(report.discarded_tail_bytes, (torn.len() / 2) as u64);
    assert_eq!(report.records, sessions);
    assert_eq!(report.sessions, sessions - 1);
    assert!(store.get(&id(7), NOW).is_none(), "closed session revived");
    assert!(store.get(&id(0), NOW).is_some());
    assert!(store.get(&id(sessions - 1), NOW).is_some());
    assert_eq!(store.store.count_live(NOW), sessions - 1);
}

/// One format-2 frame around `body`, checksums and all, however the body is spelled.
fn frame_with_body(kind: char, id: &str, body: &str) -> Vec<u8> {
    let key = format!("{kind} {id} {}", body.len());
    let key_crc = crc32fast::hash(key.as_bytes());
    let body_crc = crc32fast::hash(body.as_bytes());
    format!("{key} {key_crc:08x} {body_crc:08x} {body}\n").into_bytes()
}

#[tokio::test]
async fn bodies_spelled_otherwise_than_the_writer_spells_them_replay_alike() {
    let dir = tempfile::tempdir().unwrap();
    let phc = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";
    let created = |id: &str| {
        Record::Created(CreatedRecord {
            id: SessionId::parse(id).unwrap(),
            session_type: SessionType::parse("chat").unwrap(),
            created_at: NOW,
            expires_at: None,
            max_clients: Some(3),
            pin_hash: phc.to_owned(),
        })
    };
    let mut bytes = record::encode_journal(&[created("11"), created("33")]).unwrap();
    // Field order, white space and escapes the writer never produces, but JSON allows.
    bytes.extend(frame_with_body(
        'c',
        "22",
        &format!(
            r#"{{ "created": {{"pin_hash":"{}","max_clients":3,"expires_at":null,"created_at":{NOW},"session_type":"ch\u0061t","id":"22"}} }}"#,
            phc.replace('/', "\\/")
        ),
    ));
    bytes.extend(frame_with_body(
        'j',
        "11",
        r#"{"joined":{"client":"l\u0061mp","id":"11","joined_at":5}}"#,
    ));
    bytes.extend(frame_with_body(
        'j',
        "22",
        r#"{"joined": {"id": "22", "client": "lamp", "joined_at": 6}}"#,
    ));
    bytes.extend(frame_with_body(
        'x',
        "33",
        r#"{"closed":{"session_end":null,"closed_at":7,"id":"33"}}"#,
    ));
    std::fs::write(journal_path(dir.path()), &bytes).unwrap();

    let (store, report) = open(dir.path()).await;
    assert_eq!(report.records, 6);
    assert!(report.skipped.is_empty(), "{report:?}");
    for (id, joined_at) in [("11", 5), ("22", 6)] {
        let info = store.get(&SessionId::parse(id).unwrap(), NOW).unwrap();
        assert_eq!(info.session_type.as_str(), "chat");
        assert_eq!(info.max_clients, Some(3));
        assert_eq!(
            info.clients,
            vec![ClientInfo {
                name: client("lamp"),
                joined_at
            }]
        );
    }
    let spelled_otherwise = SessionId::parse("22").unwrap();
    let pin_hash = store.store.pin_hash(&spelled_otherwise, NOW).await.unwrap();
    assert_eq!(pin_hash.as_deref(), Some(phc));
    let closed = SessionId::parse("33").unwrap();
    assert!(store.get(&closed, NOW).is_none());
    assert_eq!(
        store.revocation(&closed, 100, 0).map(|r| r.until),
        Some(107)
    );
}

#[test]
fn the_test_journal_writer_spells_records_as_the_store_does() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut journal = test_support::journal_file::JournalWriter::create(dir.path());
    journal.created(
        "123456789",
        1_700_000_000,
        Some(1_700_086_400),
        None,
        "$argon2id$x",
    );
    journal.created("123456780", 1_700_000_000, None, Some(7), "$argon2id$y");
    journal.joined("123456789", "device-1", 1_700_000_001);
    journal.closed("123456789", 1_700_000_002);
    journal.finish();

    let id = |text: &str| SessionId::parse(text).expect("a valid id");
    let mut expected = record::JOURNAL_HEADER.to_vec();
    for record in [
        Record::Created(CreatedRecord {
            id: id("123456789"),
            session_type: SessionType::default(),
            created_at: 1_700_000_000,
            expires_at: Some(1_700_086_400),
            max_clients: None,
            pin_hash: "$argon2id$x".to_owned(),
        }),
        Record::Created(CreatedRecord {
            id: id("123456780"),
            session_type: SessionType::default(),
            created_at: 1_700_000_000,
            expires_at: None,
            max_clients: Some(7),
            pin_hash: "$argon2id$y".to_owned(),
        }),
        Record::Joined(JoinedRecord {
            id: id("123456789"),
            client: ClientName::parse("device-1").expect("a valid name"),
            joined_at: 1_700_000_001,
        }),
        Record::Closed(ClosedRecord {
            id: id("123456789"),
            closed_at: Some(1_700_000_002),
            session_end: None,
        }),
    ] {
        record.encode_into(&mut expected).expect("a record encodes");
    }
    let written = std::fs::read(dir.path().join(JOURNAL_FILE_NAME)).expect("the journal");
    assert_eq!(
        String::from_utf8_lossy(&written),
        String::from_utf8_lossy(&expected)
    );
}

#[tokio::test]
async fn kicks_raise_the_generation_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path()).await;
    // The store replays on the system clock: the session must still live after reopen.
    let now = unix_now();
    let session = store
        .create(
            NewSession {
                ttl_secs: Some(600),
                ..NewSession::default()
            },
            now,
        )
        .await
        .unwrap();
    let id = &session.session.id;
    let joined = store
        .join(id, &session.pin, &client("lamp"), now + 1)
        .await
        .unwrap();
    assert_eq!(joined.generation, 0);
    // Only a client that joined a live session can be kicked.
    assert_eq!(
        store
            .store
            .kick(id, &client("ghost"), now + 2)
            .await
            .unwrap(),
        None
    );
    let unknown = SessionId::parse("999999").unwrap();
    assert_eq!(
        store
            .store
            .kick(&unknown, &client("lamp"), now + 2)
            .await
            .unwrap(),
        None
    );

    let kick = store
        .store
        .kick(id, &client("lamp"), now + 2)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((kick.generation, kick.kicked_at), (1, now + 2));
    // Refused for a token lifetime, never beyond the session's end.
    assert_eq!(kick.refuse_until(100), now + 102);
    assert_eq!(kick.refuse_until(3600), now + 600);
    let second = store
        .store
        .kick(id, &client("lamp"), now + 3)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.generation, 2);
    let rejoined = store
        .join(id, &session.pin, &client("lamp"), now + 4)
        .await
        .unwrap();
    assert_eq!(rejoined.generation, 2);

    let (store, report) = reopen(store, dir.path()).await;
    assert_eq!(report.records, 4, "create, join and two kicks");
    let rejoined = store
        .join(id, &session.pin, &client("lamp"), now + 5)
        .await
        .unwrap();
    assert_eq!(rejoined.generation, 2, "the generation was not kept");
    let live = store.store.live_kicks(100, now + 5);
    assert_eq!(live.len(), 1);
    assert_eq!((live[0].generation, live[0].kicked_at), (2, now + 3));
    // A kick whose older tokens can no longer live needs no republishing.
    assert!(store.store.live_kicks(100, now + 103).is_empty());
    // Closing the session ends its kicks: the close refuses every token.
    assert!(store.close(id).await.unwrap());
    assert!(store.store.live_kicks(100, now + 5).is_empty());
    assert_eq!(
        store
            .store
            .kick(id, &client("lamp"), now + 6)
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn compaction_keeps_the_latest_kick_of_each_client() {
    let dir = tempfile::tempdir().unwrap();
    let pin = Pin::parse("123456").unwrap();
    let pin_hash = hash_pin_blocking(&pin).unwrap();
    let now = unix_now();
    let id = SessionId::parse("100001").unwrap();
    let records = kicked_thousands_of_times(&id, pin_hash, now);
    write_journal(dir.path(), &records);

    let (store, report) = open(dir.path()).await;
    assert_eq!(report.records, records.len());
    store.shutdown().await;
    drop(store);
    let compacted = std::fs::read_to_string(journal_path(dir.path())).unwrap();
    assert_eq!(compacted.lines().count(), 1 + 3, "{compacted}");
    assert_eq!(compacted.matches("\"kicked\"").count(), 1);

    let (store, _) = open(dir.path()).await;
    let joined = store.join(&id, &pin, &client("lamp"), now).await.unwrap();
    assert_eq!(joined.generation, 3000);
}

#[tokio::test]
async fn a_started_conductor_is_remembered_across_reopen_until_its_session_ends() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path()).await;
    // The store replays on the system clock: the sessions must still live after reopen.
    let now = unix_now();
    let ends = store
        .create(
            NewSession {
                ttl_secs: Some(600),
                ..NewSession::default()
            },
            now,
        )
        .await
        .unwrap();
    let stays = store.create(NewSession::default(), now).await.unwrap();
    let toggled = store.create(NewSession::default(), now).await.unwrap();
    let (ends, stays, toggled) = (ends.session.id, stays.session.id, toggled.session.id);
    for id in [&ends, &stays, &toggled] {
        assert!(store
            .store
            .set_conductor_started(id, true, now)
            .await
            .unwrap());
    }
    assert!(store
        .store
        .set_conductor_started(&toggled, false, now + 1)
        .await
        .unwrap());
    let unknown = SessionId::parse("999999").unwrap();
    assert!(!store
        .store
        .set_conductor_started(&unknown, true, now)
        .await
        .unwrap());
    let started = |mut ids: Vec<SessionId>| {
        ids.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        ids
    };
    let expected = started(vec![ends.clone(), stays.clone()]);
    assert_eq!(
        started(store.store.started_conductors(now).await.unwrap()),
        expected
    );

    let (store, report) = reopen(store, dir.path()).await;
    assert_eq!(
        report.records,
        3 + 4,
        "three creates, four conductor records"
    );
    assert_eq!(
        started(store.store.started_conductors(now).await.unwrap()),
        expected,
        "the started conductors were not kept"
    );
    // Once its session is over, a conductor is not started again.
    assert_eq!(
        store.store.started_conductors(now + 600).await.unwrap(),
        vec![stays.clone()]
    );
    assert!(!store
        .store
        .set_conductor_started(&ends, true, now + 600)
        .await
        .unwrap());
    assert!(store.close(&stays).await.unwrap());
    assert!(!store
        .store
        .set_conductor_started(&stays, true, now)
        .await
        .unwrap());
    let (store, _) = reopen(store, dir.path()).await;
    assert_eq!(
        store.store.started_conductors(now).await.unwrap(),
        vec![ends.clone()]
    );
}

#[tokio::test]
async fn compaction_keeps_a_started_conductor_in_one_record() {
    let dir = tempfile::tempdir().unwrap();
    let pin = Pin::parse("123456").unwrap();
    let pin_hash = hash_pin_blocking(&pin).unwrap();
    let now = unix_now();
    let started = SessionId::parse("100001").unwrap();
    let stopped = SessionId::parse("100002").unwrap();
    let mut records = Vec::new();
    for id in [&started, &stopped] {
        records.push(Record::Created(CreatedRecord {
            id: id.clone(),
            session_type: SessionType::parse("active").unwrap(),
            created_at: now - 100,
            expires_at: None,
            max_clients: None,
            pin_hash: pin_hash.clone(),
        }));
    }
    // Enough starts and stops that start-up compacts the journal.
    for step in 0..3000u64 {
        for (id, last) in [(&started, true), (&stopped, false)] {
            records.push(Record::Conductor(ConductorRecord {
                id: id.clone(),
                started: (step % 2 == 1) == last,
                at: now - 50,
            }));
        }
    }
    write_journal(dir.path(), &records);

    let (store, report) = open(dir.path()).await;
    assert_eq!(report.records, records.len());
    store.shutdown().await;
    drop(store);
    let compacted = std::fs::read_to_string(journal_path(dir.path())).unwrap();
    assert_eq!(compacted.lines().count(), 1 + 2 + 1, "{compacted}");
    assert_eq!(compacted.matches("\"conductor\"").count(), 1);

    let (store, _) = open(dir.path()).await;
    assert_eq!(
        store.store.started_conductors(now).await.unwrap(),
        vec![started]
    );
}

#[test]
fn a_live_session_stays_within_its_memory_budget() {
    // A million live sessions are kept in memory; a field added carelessly costs 8 MB.
    assert!(
        std::mem::size_of::<LiveSession>() <= 176,
        "{}",
        std::mem::size_of::<LiveSession>()
    );
}

/// A session `id` with one client kicked 3000 times: enough history that start-up
/// compacts the journal, which a snapshot reduces to three records.
fn kicked_thousands_of_times(id: &SessionId, pin_hash: String, now: u64) -> Vec<Record> {
    let mut records = vec![
        Record::Created(CreatedRecord {
            id: id.clone(),
            session_type: SessionType::default(),
            created_at: now - 100,
            expires_at: None,
            max_clients: None,
            pin_hash,
        }),
        Record::Joined(JoinedRecord {
            id: id.clone(),
            client: client("lamp"),
            joined_at: now - 90,
        }),
    ];
    records.extend((1..=3000).map(|generation| {
        Record::Kicked(KickedRecord {
            id: id.clone(),
            client: client("lamp"),
            generation,
            kicked_at: now - 50,
        })
    }));
    records
}

/// The records of the journal in `dir`, in order.
fn read_journal(dir: &Path) -> Vec<Record> {
    let bytes = std::fs::read(journal_path(dir)).unwrap();
    let mut records = Vec::new();
    let mut at = record::JOURNAL_HEADER.len();
    while at < bytes.len() {
        let (record, len) = record::decode_frame(&bytes[at..]).unwrap();
        records.push(record);
        at += len;
    }
    records
}

fn jti(n: u8) -> String {
    format!("00000000-0000-4000-8000-0000000000{n:02x}")
}

fn service_token(n: u8, issued_at: u64, expires_at: u64) -> ServiceTokenInfo {
    ServiceTokenInfo {
        jti: jti(n),
        name: crate::domain::ServiceTokenName::parse(&format!("backend-{n}")).unwrap(),
        subscribe: vec!["/+/#".to_owned()],
        publish: vec!["/+/cmd/#".to_owned()],
        issued_at,
        expires_at,
        revoked_at: None,
    }
}

#[tokio::test]
async fn service_tokens_and_their_revocations_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let now = unix_now();
    let (store, _) = open(dir.path()).await;
    let session = create(&store, NewSession::default()).await;
    for n in 1..=3 {
        store
            .store
            .service_token_issued(service_token(n, now + u64::from(n), now + 3600))
            .await
            .unwrap();
    }
    let revoked = store
        .store
        .revoke_service_token(&jti(2), now + 10)
        .await
        .unwrap();
    assert_eq!(
        revoked.map(|r| (r.token.revoked_at, r.newly)),
        Some((Some(now + 10), true))
    );
    let again = store
        .store
        .revoke_service_token(&jti(2), now + 20)
        .await
        .unwrap();
    assert_eq!(
        again.map(|r| (r.token.revoked_at, r.newly)),
        Some((Some(now + 10), false)),
        "the first stands"
    );
    assert_eq!(
        store
            .store
            .revoke_service_token(&jti(9), now)
            .await
            .unwrap(),
        None,
        "unknown"
    );

    let (store, report) = reopen(store, dir.path()).await;
    assert_eq!(report.records, 1 + 3 + 1);
    let tokens = store.store.service_tokens(now).await.unwrap();
    let listed: Vec<(String, Option<u64>)> = tokens
        .iter()
        .map(|t| (t.jti.clone(), t.revoked_at))
        .collect();
    assert_eq!(
        listed,
        vec![(jti(1), None), (jti(2), Some(now + 10)), (jti(3), None)],
        "oldest first, the revocation kept"
    );
    assert_eq!(tokens[0], service_token(1, now + 1, now + 3600));
    assert!(
        store.get(&session.session.id, NOW).is_some(),
        "sessions untouched"
    );
    assert!(
        store
            .store
            .service_tokens(now + 3600)
            .await
            .unwrap()
            .is_empty(),
        "expired tokens are not listed"
    );
    assert_eq!(
        store
            .store
            .revoke_service_token(&jti(1), now + 3600)
            .await
            .unwrap(),
        None,
        "an expired token cannot be revoked (nothing admits it anyway)"
    );
}

#[tokio::test]
async fn compaction_keeps_live_service_tokens_and_their_revocations_and_drops_expired_ones() {
    let dir = tempfile::tempdir().unwrap();
    let now = unix_now();
    let (store, _) = open(dir.path()).await;
    store
        .store
        .service_token_issued(service_token(1, now, now + 3600))
        .await
        .unwrap();
    store
        .store
        .service_token_issued(service_token(2, now, now + 3600))
        .await
        .unwrap();
    store
        .store
        .service_token_issued(service_token(3, now - 7200, now - 3600))
        .await
        .unwrap();
    store
        .store
        .revoke_service_token(&jti(2), now)
        .await
        .unwrap();
    store.shutdown().await;
    drop(store);
    let mut records = read_journal(dir.path());
    let pin_hash = hash_pin_blocking(&Pin::parse("123456").unwrap()).unwrap();
    records.extend(kicked_thousands_of_times(
        &SessionId::parse("100001").unwrap(),
        pin_hash,
        now,
    ));
    write_journal(dir.path(), &records);

    let (store, _) = open(dir.path()).await;
    store.shutdown().await;
    drop(store);
    let compacted = std::fs::read_to_string(journal_path(dir.path())).unwrap();
    assert_eq!(compacted.lines().count(), 1 + 3 + 2 + 1, "{compacted}");
    assert_eq!(compacted.matches("\"service_token_issued\"").count(), 2);
    assert_eq!(compacted.matches("\"service_token_revoked\"").count(), 1);
    assert!(!compacted.contains(&jti(3)), "the expired token is dropped");

    let (store, _) = open(dir.path()).await;
    let tokens = store.store.service_tokens(now).await.unwrap();
    let listed: Vec<(String, bool)> = tokens
        .iter()
        .map(|t| (t.jti.clone(), t.revoked_at.is_some()))
        .collect();
    assert_eq!(listed, vec![(jti(1), false), (jti(2), true)]);
}

#[tokio::test]
async fn a_damaged_service_token_record_leaves_the_token_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let now = unix_now();
    let (store, _) = open(dir.path()).await;
    let before = create(&store, NewSession::default()).await;
    let issue_at = journal_len(dir.path());
    store
        .store
        .service_token_issued(service_token(1, now, now + 3600))
        .await
        .unwrap();
    let after = create(&store, NewSession::default()).await;
    store.shutdown().await;
    drop(store);
    flip(dir.path(), issue_at, body_start(dir.path(), issue_at) + 5);

    let (store, report) = open(dir.path()).await;
    assert_eq!(report.skipped.len(), 1, "{report:?}");
    assert!(report.skipped[0].detail.contains(&jti(1)), "{report:?}");
    let tokens = store.store.service_tokens(now).await.unwrap();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].jti, jti(1));
    assert!(
        tokens[0].revoked_at.is_some(),
        "refused, whatever the lost record said"
    );
    assert!(tokens[0].expires_at >= now + crate::store::MAX_SERVICE_TOKEN_TTL_SECS);
    assert!(store.get(&before.session.id, NOW).is_some());
    assert!(store.get(&after.session.id, NOW).is_some());
}
