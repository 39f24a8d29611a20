//! PIN storage and checking for the store: each PIN is a hashed secret
//! ([`crate::secrets`]): an argon2id hash in the journal, and once this process has seen
//! the right PIN, a keyed fast check of (session id, PIN) in memory, so that a join costs
//! one HMAC and a wrong PIN no argon2 at all. Sessions recovered from the journal fall
//! back to argon2 once per process. At most one argon2 run per core at a time.

use std::sync::Arc;

use tokio::sync::SemaphorePermit;

use super::StoreError;
use crate::domain::{Pin, SessionId};
use crate::secrets::{self, SecretChecker, SecretError, SecretTag};

/// The in-memory fast check of one session's PIN.
pub(crate) type PinTag = SecretTag;

impl From<SecretError> for StoreError {
    fn from(error: SecretError) -> Self {
        match error {
            SecretError::Hash(detail) => StoreError::PinHash(detail),
            SecretError::UnreadableHash(detail) => {
                StoreError::PinHash(format!("stored PIN hash is unreadable: {detail}"))
            }
            SecretError::Task(detail) => StoreError::Task(detail),
        }
    }
}

/// Argon2id PHC hash of `pin` with a fresh random salt. Blocking and slow by design: call
/// it from `spawn_blocking` (or [`hash_pin`]) in async code.
pub fn hash_pin_blocking(pin: &Pin) -> Result<String, StoreError> {
    Ok(secrets::hash_secret_blocking(pin.as_str().as_bytes())?)
}

/// [`hash_pin_blocking`] on the blocking thread pool.
pub async fn hash_pin(pin: Pin) -> Result<String, StoreError> {
    Ok(secrets::hash_secret(PinBytes(pin)).await?)
}

/// A PIN as the bytes the hash covers.
struct PinBytes(Pin);

impl AsRef<[u8]> for PinBytes {
    fn as_ref(&self) -> &[u8] {
        self.0.as_str().as_bytes()
    }
}

pub(crate) struct PinChecker {
    secrets: SecretChecker,
}

impl PinChecker {
    pub(crate) fn new() -> Self {
        Self {
            secrets: SecretChecker::one_per_core(),
        }
    }

    /// Waits for a turn to run argon2; hold it across the hashing or verification.
    pub(crate) async fn argon2_slot(&self) -> Result<SemaphorePermit<'_>, StoreError> {
        Ok(self.secrets.argon2_slot().await?)
    }

    pub(crate) fn tag(&self, id: &SessionId, pin: &Pin) -> PinTag {
        // Ids and PINs are digits only, so the checker's NUL separator keeps them apart.
        self.secrets
            .tag(&[id.as_str().as_bytes(), pin.as_str().as_bytes()])
    }

    /// Constant-time comparison of `pin` against a session's cached tag.
    pub(crate) fn matches_tag(&self, id: &SessionId, pin: &Pin, tag: &PinTag) -> bool {
        self.secrets
            .matches_tag(&[id.as_str().as_bytes(), pin.as_str().as_bytes()], tag)
    }

    /// The slow path: argon2 verification of `pin` against the stored PHC hash.
    pub(crate) async fn verify_hash(&self, hash: Arc<str>, pin: Pin) -> Result<bool, StoreError> {
        Ok(self.secrets.verify_hash(hash, PinBytes(pin)).await?)
    }

    /// How many times argon2 verification ran in this process.
    pub(crate) fn argon2_verifications(&self) -> u64 {
        self.secrets.argon2_verifications()
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
