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
//! argon2 runs only on the argon2 threads ([`ARGON2_THREADS`]: one per core but at most
//! [`MAX_ARGON2_THREADS`], started on first use) and only while holding one of the checker's slots: each run takes about
//! 19 MiB and a core for tens of milliseconds, and unbounded concurrent runs (a burst
//! after a restart, wrong secrets sprayed at uncached entries) would exhaust memory and
//! pin every core. Each argon2 thread keeps its 19 MiB work area and reuses it, so the
//! memory argon2 needs is allocated once per core for the life of the process. (When
//! argon2 ran on tokio's blocking pool, each run allocated its work area afresh on
//! whichever of dozens of threads it landed, and the allocator kept the freed memory in
//! that thread's arena: every session created after a join burst added about 17 MB of
//! memory that was never returned.)

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

use crate::cpu_pool::{cores_available, CpuPool};
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

/// Argon2id PHC hash of `secret` with a fresh random salt (default parameters). Blocking
/// and slow by design: call it through [`hash_secret`] in async code.
pub fn hash_secret_blocking(secret: &[u8]) -> Result<String, SecretError> {
    let hash_error = |error: &dyn std::fmt::Display| SecretError::Hash(error.to_string());
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(|e| hash_error(&e))?;
    let params = Params::default();
    let mut salt_bytes = [0u8; 64];
    let salt_raw = salt
        .decode_b64(&mut salt_bytes)
        .map_err(|e| hash_error(&e))?;
    let mut output = [0u8; Params::DEFAULT_OUTPUT_LEN];
    compute(
        Algorithm::Argon2id,
        Version::V0x13,
        &params,
        secret,
        salt_raw,
        &mut output,
    )
    .map_err(|e| hash_error(&e))?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| hash_error(&e))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&output).map_err(|e| hash_error(&e))?),
    };
    Ok(hash.to_string())
}

/// Whether `secret` matches the PHC string `phc` (any argon2 variant and parameters the
/// string names). Blocking and slow by design: call it through
/// [`SecretChecker::verify_hash`] in async code.
pub fn verify_secret_blocking(phc: &str, secret: &[u8]) -> Result<bool, SecretError> {
    let unreadable = |error: &dyn std::fmt::Display| SecretError::UnreadableHash(error.to_string());
    let parsed = PasswordHash::new(phc).map_err(|e| unreadable(&e))?;
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(|e| unreadable(&e))?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()
        .map_err(|e| unreadable(&e))?
        .unwrap_or_default();
    let params = Params::try_from(&parsed).map_err(|e| unreadable(&e))?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Err(SecretError::UnreadableHash(
            "the hash has no salt or no output".to_owned(),
        ));
    };
    let mut salt_bytes = [0u8; 64];
    let salt_raw = salt
        .decode_b64(&mut salt_bytes)
        .map_err(|e| unreadable(&e))?;
    let mut output = vec![0u8; expected.len()];
    // A secret argon2 refuses (too long, say) matches nothing.
    if compute(algorithm, version, &params, secret, salt_raw, &mut output).is_err() {
        return Ok(false);
    }
    // `Output`'s equality is constant-time.
    Ok(Output::new(&output).is_ok_and(|computed| computed == expected))
}

/// Work areas of at most this many 1 KiB blocks (the default parameters' 19 MiB) are kept
/// by the thread for its next run; a larger one (a hash made with a higher memory cost)
/// is allocated for its run only.
const KEPT_WORK_AREA_BLOCKS: usize = Params::DEFAULT_M_COST as usize;

thread_local! {
    /// This thread's argon2 work area, reused by every run on it.
    static WORK_AREA: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Raw argon2 of `secret` under `salt` into `output`, in this thread's kept work area.
fn compute(
    algorithm: Algorithm,
    version: Version,
    params: &Params,
    secret: &[u8],
    salt: &[u8],
    output: &mut [u8],
) -> Result<(), argon2::Error> {
    let argon2 = Argon2::new(algorithm, version, params.clone());
    let blocks = params.block_count();
    if blocks > KEPT_WORK_AREA_BLOCKS {
        let mut area = vec![Block::default(); blocks];
        return argon2.hash_password_into_with_memory(secret, salt, output, &mut area);
    }
    WORK_AREA.with(|area| {
        let mut area = area.borrow_mut();
        if area.len() < blocks {
            area.resize(blocks, Block::default());
        }
        argon2.hash_password_into_with_memory(secret, salt, output, &mut area[..blocks])
    })
}

/// At most this many argon2 threads, whatever the number of cores: each keeps a 19 MiB
/// work area for the life of the process, so this bounds argon2's memory (38 MiB).
pub const MAX_ARGON2_THREADS: usize = 2;

/// How many argon2 threads run: one per core this process may use, at most
/// [`MAX_ARGON2_THREADS`].
pub fn argon2_threads() -> usize {
    cores_available().min(MAX_ARGON2_THREADS)
}

/// The argon2 threads (started on first use, [`argon2_threads`] of them).
static ARGON2_THREADS: OnceLock<Result<CpuPool, String>> = OnceLock::new();

/// Runs `job` on an argon2 thread.
pub async fn on_argon2_thread<T, F>(job: F) -> Result<T, SecretError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let pool = ARGON2_THREADS
        .get_or_init(|| CpuPool::new("argon2", argon2_threads()).map_err(|error| error.to_string()))
        .as_ref()
        .map_err(|error| SecretError::Task(format!("cannot start the argon2 threads: {error}")))?;
    pool.run(job)
        .await
        .map_err(|error| SecretError::Task(error.to_string()))
}

/// [`hash_secret_blocking`] on an argon2 thread.
pub async fn hash_secret(secret: impl AsRef<[u8]> + Send + 'static) -> Result<String, SecretError> {
    on_argon2_thread(move || hash_secret_blocking(secret.as_ref())).await?
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
        on_argon2_thread(move || verify_secret_blocking(&phc, secret.as_ref())).await?
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
    fn hashes_are_interchangeable_with_the_argon2_crates_own() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let ours = hash_secret_blocking(b"4711").unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default().verify_password(b"4711", &parsed).is_ok());
        assert!(Argon2::default().verify_password(b"4712", &parsed).is_err());
        let salt = SaltString::encode_b64(&[7u8; 16]).unwrap();
        let theirs = Argon2::default()
            .hash_password(b"4711", &salt)
            .unwrap()
            .to_string();
        assert!(verify_secret_blocking(&theirs, b"4711").unwrap());
        assert!(!verify_secret_blocking(&theirs, b"4712").unwrap());
        // Other parameters than the defaults (a smaller memory cost) verify too.
        let small = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(64, 1, 1, None).unwrap(),
        )
        .hash_password(b"4711", &salt)
        .unwrap()
        .to_string();
        assert!(verify_secret_blocking(&small, b"4711").unwrap());
        assert!(!verify_secret_blocking(&small, b"4712").unwrap());
    }

    #[tokio::test]
    async fn argon2_runs_on_its_own_threads() {
        let name = on_argon2_thread(|| std::thread::current().name().map(str::to_owned))
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("argon2"));
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
