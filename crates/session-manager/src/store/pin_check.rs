//! PIN storage and checking: argon2id hashes on disk, a fast keyed check in memory.
//!
//! Why two mechanisms: a PIN is short (6 digits by default), so anyone who reads the
//! journal or a backup could try all of them against a fast hash in a blink. On disk a
//! PIN therefore exists only as an argon2id PHC string (default parameters), which makes
//! every guess expensive. But that same cost would cap joins at a few dozen per second per
//! core if paid on every join, and every wrong guess would burn the CPU an attacker asks
//! for.
//!
//! So the store keeps, per session, an HMAC-SHA256 tag of (session id, PIN) under a random
//! key that lives only in this process's memory. The tag is made when the PIN is known
//! anyway (at creation) or after the first successful argon2 verification of a session in
//! this process. From then on a join costs one HMAC, compared in constant time, and a
//! wrong PIN costs no argon2 at all. The tags are worthless outside the process: the key
//! is never written anywhere and is new on every start, which is also why sessions
//! recovered from the journal fall back to argon2 once.
//!
//! argon2 runs on the blocking pool and at most one verification per core at a time: each
//! takes about 19 MiB, and unbounded concurrent verifications (a burst of joins after a
//! restart, or wrong PINs sprayed at uncached sessions) would exhaust memory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::{Semaphore, SemaphorePermit};

use super::StoreError;
use crate::domain::{Pin, SessionId};

type HmacSha256 = Hmac<Sha256>;

/// The in-memory fast check of one session's PIN.
#[derive(Clone)]
pub(crate) struct PinTag([u8; 32]);

/// Argon2id PHC hash of `pin` with a fresh random salt. Blocking and slow by design: call
/// it from `spawn_blocking` (or [`hash_pin`]) in async code.
pub fn hash_pin_blocking(pin: &Pin) -> Result<String, StoreError> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|error| StoreError::PinHash(error.to_string()))?;
    Argon2::default()
        .hash_password(pin.as_str().as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| StoreError::PinHash(error.to_string()))
}

/// [`hash_pin_blocking`] on the blocking thread pool.
pub async fn hash_pin(pin: Pin) -> Result<String, StoreError> {
    tokio::task::spawn_blocking(move || hash_pin_blocking(&pin))
        .await
        .map_err(|error| StoreError::Task(error.to_string()))?
}

pub(crate) struct PinChecker {
    key: [u8; 32],
    argon2_verifications: AtomicU64,
    argon2_slots: Semaphore,
}

impl PinChecker {
    pub(crate) fn new() -> Self {
        Self {
            key: rand::random(),
            argon2_verifications: AtomicU64::new(0),
            argon2_slots: Semaphore::new(
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            ),
        }
    }

    /// Waits for a turn to run argon2; hold it across the hashing or verification.
    pub(crate) async fn argon2_slot(&self) -> Result<SemaphorePermit<'_>, StoreError> {
        self.argon2_slots
            .acquire()
            .await
            .map_err(|error| StoreError::Task(error.to_string()))
    }

    fn mac(&self, id: &SessionId, pin: &Pin) -> HmacSha256 {
        // HMAC accepts keys of any length, so this cannot fail for our 32-byte key; the
        // fallback only exists to avoid a panic path.
        let mut mac = HmacSha256::new_from_slice(&self.key)
            .unwrap_or_else(|_| HmacSha256::new(&Default::default()));
        // Ids and PINs are digits only, so a NUL separator keeps the pair unambiguous.
        mac.update(id.as_str().as_bytes());
        mac.update(&[0]);
        mac.update(pin.as_str().as_bytes());
        mac
    }

    pub(crate) fn tag(&self, id: &SessionId, pin: &Pin) -> PinTag {
        PinTag(self.mac(id, pin).finalize().into_bytes().into())
    }

    /// Constant-time comparison of `pin` against a session's cached tag.
    pub(crate) fn matches_tag(&self, id: &SessionId, pin: &Pin, tag: &PinTag) -> bool {
        self.mac(id, pin).verify_slice(&tag.0).is_ok()
    }

    /// The slow path: argon2 verification of `pin` against the stored PHC hash.
    pub(crate) async fn verify_hash(&self, hash: Arc<str>, pin: Pin) -> Result<bool, StoreError> {
        self.argon2_verifications.fetch_add(1, Ordering::Relaxed);
        tokio::task::spawn_blocking(move || {
            let parsed = PasswordHash::new(&hash).map_err(|error| {
                StoreError::PinHash(format!("stored PIN hash is unreadable: {error}"))
            })?;
            Ok(Argon2::default()
                .verify_password(pin.as_str().as_bytes(), &parsed)
                .is_ok())
        })
        .await
        .map_err(|error| StoreError::Task(error.to_string()))?
    }

    /// How many times argon2 verification ran in this process.
    pub(crate) fn argon2_verifications(&self) -> u64 {
        self.argon2_verifications.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SessionId {
        SessionId::parse(s).unwrap()
    }

    fn pin(s: &str) -> Pin {
        Pin::parse(s).unwrap()
    }

    #[tokio::test]
    async fn hash_is_argon2id_phc_and_verifies_only_the_right_pin() {
        let hash: Arc<str> = hash_pin(pin("123456")).await.unwrap().into();
        assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
        assert!(!hash.contains("123456"));
        let checker = PinChecker::new();
        assert!(checker
            .verify_hash(hash.clone(), pin("123456"))
            .await
            .unwrap());
        assert!(!checker.verify_hash(hash, pin("123457")).await.unwrap());
        assert_eq!(checker.argon2_verifications(), 2);
    }

    #[test]
    fn same_pin_hashes_differently_each_time() {
        let first = hash_pin_blocking(&pin("123")).unwrap();
        let second = hash_pin_blocking(&pin("123")).unwrap();
        assert_ne!(first, second);
    }

    #[tokio::test]
    async fn unreadable_hash_is_an_error_not_a_match() {
        let checker = PinChecker::new();
        let result = checker.verify_hash("not a hash".into(), pin("123")).await;
        assert!(matches!(result, Err(StoreError::PinHash(_))));
    }

    #[test]
    fn tag_matches_only_same_session_and_pin() {
        let checker = PinChecker::new();
        let tag = checker.tag(&id("42"), &pin("1234"));
        assert!(checker.matches_tag(&id("42"), &pin("1234"), &tag));
        assert!(!checker.matches_tag(&id("42"), &pin("1235"), &tag));
        assert!(!checker.matches_tag(&id("421"), &pin("234"), &tag));
        assert!(!checker.matches_tag(&id("43"), &pin("1234"), &tag));
        assert_eq!(checker.argon2_verifications(), 0);
    }

    #[test]
    fn tags_are_keyed_per_process() {
        let first = PinChecker::new();
        let second = PinChecker::new();
        let tag = first.tag(&id("42"), &pin("1234"));
        assert!(!second.matches_tag(&id("42"), &pin("1234"), &tag));
    }
}
