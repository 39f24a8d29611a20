//! Hashed secrets: argon2id at rest, a per-process keyed fast check in memory. Both the
//! session PINs (see `join::pin_check`) and the admin API key (see `admin_auth`) are
//! checked this way; this module holds the mechanism, its users decide what a secret is.
//!
//! Why two mechanisms: a short secret (a 6-digit PIN) stored under a fast hash falls to
//! anyone who reads the disk or a backup in a blink, so at rest a secret exists only as an
//! argon2id PHC string (default parameters), which makes every guess expensive. But that
//! cost would cap checks at a few dozen per second per core if paid on every request, and
//! every wrong guess would burn the CPU an attacker asks for.
//!
//! So once argon2 has accepted a secret (or when it is known anyway, at creation), the
//! process keeps an HMAC-SHA256 [`SecretTag`] of it under a random key that lives only in
//! this process's memory. From then on a check costs one HMAC, compared in constant time.
//! Tags are worthless outside the process: the key is never written anywhere and is new on
//! every start, which is why a restarted process falls back to argon2 once per secret.
//!
//! argon2 runs on the blocking pool and only while holding one of the checker's slots:
//! each run takes about 19 MiB and a core for tens of milliseconds, and unbounded
//! concurrent runs (a burst after a restart, wrong secrets sprayed at uncached entries)
//! would exhaust memory and pin every core.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::{Semaphore, SemaphorePermit};

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("hashing failed: {0}")]
    Hash(String),
    #[error("the stored hash is unreadable: {0}")]
    UnreadableHash(String),
    #[error("a background task failed: {0}")]
    Task(String),
}

/// Argon2id PHC hash of `secret` with a fresh random salt. Blocking and slow by design:
/// call it from `spawn_blocking` (or [`hash_secret`]) in async code.
pub fn hash_secret_blocking(secret: &[u8]) -> Result<String, SecretError> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|error| SecretError::Hash(error.to_string()))?;
    Argon2::default()
        .hash_password(secret, &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| SecretError::Hash(error.to_string()))
}

/// [`hash_secret_blocking`] on the blocking thread pool.
pub async fn hash_secret(secret: impl AsRef<[u8]> + Send + 'static) -> Result<String, SecretError> {
    tokio::task::spawn_blocking(move || hash_secret_blocking(secret.as_ref()))
        .await
        .map_err(|error| SecretError::Task(error.to_string()))?
}

/// Ok when `phc` is a readable PHC string (checked once, at configuration time).
pub fn check_phc(phc: &str) -> Result<(), SecretError> {
    PasswordHash::new(phc)
        .map(drop)
        .map_err(|error| SecretError::UnreadableHash(error.to_string()))
}

/// The in-memory fast check of one secret; meaningful only to the checker that made it.
#[derive(Clone)]
pub struct SecretTag([u8; 32]);

/// Verifies secrets against argon2 hashes, a bounded number at a time, and makes and
/// compares the per-process fast-check tags.
pub struct SecretChecker {
    key: [u8; 32],
    argon2_slots: Semaphore,
    argon2_verifications: AtomicU64,
}

impl SecretChecker {
    /// A checker that runs at most `argon2_concurrency` argon2 computations at a time.
    pub fn new(argon2_concurrency: usize) -> Self {
        Self {
            key: rand::random(),
            argon2_slots: Semaphore::new(argon2_concurrency.max(1)),
            argon2_verifications: AtomicU64::new(0),
        }
    }

    /// A checker allowing one argon2 computation per core.
    pub fn one_per_core() -> Self {
        Self::new(std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get))
    }

    /// Waits for a turn to run argon2; hold it across the hashing or verification.
    pub async fn argon2_slot(&self) -> Result<SemaphorePermit<'_>, SecretError> {
        self.argon2_slots
            .acquire()
            .await
            .map_err(|error| SecretError::Task(error.to_string()))
    }

    /// `parts` is what identifies the secret and the secret itself (e.g. session id and
    /// PIN); they are separated by a NUL byte, so callers must pass parts without NULs
    /// (or a single part) for the pair to stay unambiguous.
    fn mac(&self, parts: &[&[u8]]) -> HmacSha256 {
        // HMAC accepts keys of any length, so this cannot fail for our 32-byte key; the
        // fallback only exists to avoid a panic path.
        let mut mac = HmacSha256::new_from_slice(&self.key)
            .unwrap_or_else(|_| HmacSha256::new(&Default::default()));
        for (index, part) in parts.iter().enumerate() {
            if index > 0 {
                mac.update(&[0]);
            }
            mac.update(part);
        }
        mac
    }

    pub fn tag(&self, parts: &[&[u8]]) -> SecretTag {
        SecretTag(self.mac(parts).finalize().into_bytes().into())
    }

    /// Constant-time comparison of `parts` against a tag this checker made.
    pub fn matches_tag(&self, parts: &[&[u8]], tag: &SecretTag) -> bool {
        self.mac(parts).verify_slice(&tag.0).is_ok()
    }

    /// The slow path: argon2 verification of `secret` against the PHC string `phc`. The
    /// caller holds an [`argon2_slot`](Self::argon2_slot).
    pub async fn verify_hash(
        &self,
        phc: Arc<str>,
        secret: impl AsRef<[u8]> + Send + 'static,
    ) -> Result<bool, SecretError> {
        self.argon2_verifications.fetch_add(1, Ordering::Relaxed);
        tokio::task::spawn_blocking(move || {
            let parsed = PasswordHash::new(&phc)
                .map_err(|error| SecretError::UnreadableHash(error.to_string()))?;
            Ok(Argon2::default()
                .verify_password(secret.as_ref(), &parsed)
                .is_ok())
        })
        .await
        .map_err(|error| SecretError::Task(error.to_string()))?
    }

    /// How many times argon2 verification ran in this checker.
    pub fn argon2_verifications(&self) -> u64 {
        self.argon2_verifications.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_is_argon2id_phc_and_verifies_only_the_right_secret() {
        let hash: Arc<str> = hash_secret(b"123456".to_vec()).await.unwrap().into();
        assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
        assert!(!hash.contains("123456"));
        let checker = SecretChecker::new(1);
        assert!(checker.verify_hash(hash.clone(), b"123456").await.unwrap());
        assert!(!checker.verify_hash(hash, b"123457").await.unwrap());
        assert_eq!(checker.argon2_verifications(), 2);
    }

    #[test]
    fn same_secret_hashes_differently_each_time() {
        assert_ne!(
            hash_secret_blocking(b"123").unwrap(),
            hash_secret_blocking(b"123").unwrap()
        );
    }

    #[tokio::test]
    async fn an_unreadable_hash_is_an_error_not_a_match() {
        let checker = SecretChecker::new(1);
        let result = checker.verify_hash("not a hash".into(), b"123").await;
        assert!(matches!(result, Err(SecretError::UnreadableHash(_))));
        assert!(check_phc("not a hash").is_err());
    }

    #[test]
    fn a_tag_matches_only_the_same_parts() {
        let checker = SecretChecker::new(1);
        let tag = checker.tag(&[b"42", b"1234"]);
        assert!(checker.matches_tag(&[b"42", b"1234"], &tag));
        assert!(!checker.matches_tag(&[b"42", b"1235"], &tag));
        assert!(!checker.matches_tag(&[b"421", b"234"], &tag));
        assert!(!checker.matches_tag(&[b"421234"], &tag));
        assert_eq!(checker.argon2_verifications(), 0);
    }

    #[test]
    fn tags_are_keyed_per_checker() {
        let tag = SecretChecker::new(1).tag(&[b"key"]);
        assert!(!SecretChecker::new(1).matches_tag(&[b"key"], &tag));
    }
}
