//! PINs for the join and the sessions use-cases: issuing one (generated, then hashed with
//! argon2id for the store) and checking one against the hash the store hands back.
//!
//! Each PIN is a hashed secret ([`crate::secrets`]). Once this process has seen the right
//! PIN of a session, it keeps a keyed fast check of (session id, PIN) in memory, so that a
//! join costs one HMAC and a wrong PIN no argon2 at all. Sessions this process did not
//! create fall back to argon2 once per process. At most one argon2 run per argon2 thread at a
//! time.
//! The store never sees a PIN, only the hash.

use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::SemaphorePermit;

use crate::domain::{DomainError, Pin, SessionId};
use crate::secrets::{self, SecretChecker, SecretError, SecretTag};
use crate::store::StoreError;

/// The in-memory fast check of one session's PIN.
type PinTag = SecretTag;

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

pub struct PinChecker {
    secrets: SecretChecker,
    /// Digits of a generated PIN.
    pin_length: usize,
    /// Fast checks of the PINs this process knows to be right, by session.
    known: DashMap<SessionId, PinTag>,
}

impl PinChecker {
    /// A checker issuing PINs of `pin_length` digits (3–32).
    pub fn new(pin_length: usize) -> Result<Self, DomainError> {
        // Refuse an impossible length now rather than at the first session.
        Pin::generate(pin_length)?;
        Ok(Self {
            secrets: SecretChecker::new(secrets::argon2_threads()),
            pin_length,
            known: DashMap::new(),
        })
    }

    /// A fresh PIN for a new session and its argon2id hash, the only form the store keeps.
    pub async fn issue(&self) -> Result<(Pin, Arc<str>), StoreError> {
        let pin = Pin::generate(self.pin_length)?;
        let hash = {
            let _slot = self.argon2_slot().await?;
            hash_pin(pin.clone()).await?
        };
        Ok((pin, hash.into()))
    }

    /// Remembers that `pin` is the right PIN of session `id` (its creator knows it), so
    /// its joins need no argon2.
    pub fn remember(&self, id: &SessionId, pin: &Pin) {
        self.known.insert(id.clone(), self.tag(id, pin));
    }

    /// Forgets a closed session's fast check.
    pub fn forget(&self, id: &SessionId) {
        self.known.remove(id);
    }

    /// Whether `pin` is the PIN of session `id`, whose stored argon2id hash is
    /// `stored_hash`: the fast check when this process knows the PIN, else argon2 once.
    pub async fn check(
        &self,
        id: &SessionId,
        pin: &Pin,
        stored_hash: Arc<str>,
    ) -> Result<bool, StoreError> {
        if let Some(known) = self.matches_known(id, pin) {
            return Ok(known);
        }
        // Few argon2 runs at a time: each takes tens of MiB and a core for a while.
        let _slot = self.argon2_slot().await?;
        // Another join of this session may have verified the PIN while this one waited;
        // then its fast check answers and argon2 runs once, not once per join.
        if let Some(known) = self.matches_known(id, pin) {
            return Ok(known);
        }
        if !self.verify_hash(stored_hash, pin.clone()).await? {
            return Ok(false);
        }
        self.remember(id, pin);
        Ok(true)
    }

    /// The fast check's answer, or `None` when this process does not know the PIN yet.
    fn matches_known(&self, id: &SessionId, pin: &Pin) -> Option<bool> {
        let tag = self.known.get(id)?;
        Some(self.matches_tag(id, pin, &tag))
    }

    /// Waits for a turn to run argon2; hold it across the hashing or verification.
    async fn argon2_slot(&self) -> Result<SemaphorePermit<'_>, StoreError> {
        Ok(self.secrets.argon2_slot().await?)
    }

    fn tag(&self, id: &SessionId, pin: &Pin) -> PinTag {
        // Ids and PINs are digits only, so the checker's NUL separator keeps them apart.
        self.secrets
            .tag(&[id.as_str().as_bytes(), pin.as_str().as_bytes()])
    }

    /// Constant-time comparison of `pin` against a session's cached tag.
    fn matches_tag(&self, id: &SessionId, pin: &Pin, tag: &PinTag) -> bool {
        self.secrets
            .matches_tag(&[id.as_str().as_bytes(), pin.as_str().as_bytes()], tag)
    }

    /// The slow path: argon2 verification of `pin` against the stored PHC hash.
    async fn verify_hash(&self, hash: Arc<str>, pin: Pin) -> Result<bool, StoreError> {
        Ok(self.secrets.verify_hash(hash, PinBytes(pin)).await?)
    }

    /// How many times argon2 verification ran in this process.
    pub fn argon2_verifications(&self) -> u64 {
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
        let checker = PinChecker::new(6).unwrap();
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
        let checker = PinChecker::new(6).unwrap();
        let result = checker.verify_hash("not a hash".into(), pin("123")).await;
        assert!(matches!(result, Err(StoreError::PinHash(_))));
    }

    #[test]
    fn tag_matches_only_same_session_and_pin() {
        let checker = PinChecker::new(6).unwrap();
        let tag = checker.tag(&id("42"), &pin("1234"));
        assert!(checker.matches_tag(&id("42"), &pin("1234"), &tag));
        assert!(!checker.matches_tag(&id("42"), &pin("1235"), &tag));
        assert!(!checker.matches_tag(&id("421"), &pin("234"), &tag));
        assert!(!checker.matches_tag(&id("43"), &pin("1234"), &tag));
        assert_eq!(checker.argon2_verifications(), 0);
    }

    #[tokio::test]
    async fn check_runs_argon2_once_per_session_and_never_for_a_known_pin() {
        let checker = PinChecker::new(6).unwrap();
        let (right, hash) = checker.issue().await.unwrap();
        let wrong = pin(if right.as_str() == "000000" {
            "000001"
        } else {
            "000000"
        });
        let session = id("42");

        // Not known yet (a session this process did not create): argon2, once.
        assert!(!checker.check(&session, &wrong, hash.clone()).await.unwrap());
        assert!(checker.check(&session, &right, hash.clone()).await.unwrap());
        assert_eq!(checker.argon2_verifications(), 2);
        assert!(checker.check(&session, &right, hash.clone()).await.unwrap());
        assert!(!checker.check(&session, &wrong, hash.clone()).await.unwrap());
        assert_eq!(checker.argon2_verifications(), 2);

        // A created session is known from the start; a forgotten one goes back to argon2.
        checker.remember(&id("43"), &right);
        assert!(checker
            .check(&id("43"), &right, hash.clone())
            .await
            .unwrap());
        assert_eq!(checker.argon2_verifications(), 2);
        checker.forget(&session);
        assert!(checker.check(&session, &right, hash).await.unwrap());
        assert_eq!(checker.argon2_verifications(), 3);
    }

    #[test]
    fn impossible_pin_lengths_are_refused() {
        assert!(PinChecker::new(2).is_err());
        assert!(PinChecker::new(33).is_err());
        assert!(PinChecker::new(3).is_ok());
    }

    #[test]
    fn tags_are_keyed_per_process() {
        let first = PinChecker::new(6).unwrap();
        let second = PinChecker::new(6).unwrap();
        let tag = first.tag(&id("42"), &pin("1234"));
        assert!(!second.matches_tag(&id("42"), &pin("1234"), &tag));
    }
}
