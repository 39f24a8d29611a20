//! `dev_jwt_auth`: tokens signed with a private key held in this process.
//!
//! The key comes from `ISM_SIGNING_KEY` (PEM text) or `ISM_SIGNING_KEY_FILE`; with
//! neither, a development key is generated into the data directory on first start and
//! reused afterwards, so tokens survive restarts and brokers keep trusting the JWKS. A
//! supplied key decides the algorithm (RSA signs RS256, P-256 ES256); when `ISM_JWT_ALG`
//! says otherwise the service warns and follows the key.
//!
//! The JWT header never changes, so it is encoded once, and the key stays parsed
//! (`benches/token_signing.rs`: RS256 through `jsonwebtoken::encode`, which re-parses the
//! key per call, made 1 300 signatures/s on one core; the parsed key pair 3 900/s, the
//! same as `openssl speed rsa2048`).
//!
//! An RSA signature costs about 0.25 ms of CPU and runs on the signer's own threads, one
//! per core ([`crate::cpu_pool`]). Measured with wrk against the service pinned to one
//! core (so the runtime has a single worker): signing inline stalled the executor, journal
//! writer included (p99 over 1 s, time-outs at 64 connections); `block_in_place` was no
//! better; tokio's blocking pool kept p99 under 60 ms but started a thread per concurrent
//! join (dozens at 64 connections), which crowded out the admin listener; a fixed pool
//! does the same work with one thread per core. ECDSA signatures (~17 µs) are cheap
//! enough to run inline.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::Algorithm;
use session_token::Claims;

use super::jws::JwsHeader;
use super::{SignError, SignerHealth, TokenSigner};
use crate::config::{JwtAlgorithm, SigningConfig};
use crate::cpu_pool::{cores_available, CpuPool};
use crate::error::Error;
use crate::new_file::write_private_file;
use crate::signing_key::SigningKey;

pub struct LocalSigner {
    inner: Arc<Inner>,
    /// Where RSA signatures are made; None for keys cheap enough to sign inline.
    signing_threads: Option<CpuPool>,
}

struct Inner {
    key: SigningKey,
    algorithm: Algorithm,
    header: JwsHeader,
    jwks: JwkSet,
}

impl LocalSigner {
    /// The signer `config` describes (explicit key, or `data_dir`'s development key).
    pub fn from_config(config: &SigningConfig, data_dir: &Path) -> Result<Self, Error> {
        let key = match (&config.signing_key, &config.signing_key_file) {
            (Some(text), _) => SigningKey::from_pem(&unescape_newlines(text.expose()))?,
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
                    action: "read the signing key",
                    path: path.clone(),
                    source,
                })?;
                SigningKey::from_pem(&text)?
            }
            (None, None) => load_or_generate_dev_key(data_dir, config.jwt_alg)?,
        };
        if key.algorithm() != config.jwt_alg {
            // The key cannot sign anything else; refusing to start would only turn a
            // changed ISM_JWT_ALG into a crash loop.
            tracing::warn!(
                key_algorithm = key.algorithm().name(),
                configured = config.jwt_alg.name(),
                "the signing key is a {} key, so tokens are signed {} although ISM_JWT_ALG is {}; set ISM_JWT_ALG={} or supply a key for {}",
                key.algorithm().key_kind(),
                key.algorithm().name(),
                config.jwt_alg.name(),
                key.algorithm().name(),
                config.jwt_alg.name(),
            );
        }
        Self::new(key)
    }

    /// Signs on the calling thread (what `sign` runs on the blocking pool for RSA).
    pub fn sign_now(&self, claims: &Claims) -> Result<String, SignError> {
        self.inner.sign(claims)
    }

    /// SubjectPublicKeyInfo PEM of the signing key (`export-public-key`).
    pub fn public_key_pem(&self) -> Result<String, Error> {
        self.inner.key.public_spki_pem()
    }

    pub fn new(key: SigningKey) -> Result<Self, Error> {
        let algorithm = key.algorithm().as_jwt();
        let jwk = key.public_jwk()?;
        let header = JwsHeader::new(algorithm, jwk.common.key_id.clone())?;
        let signing_threads = match algorithm {
            Algorithm::RS256 => Some(CpuPool::new("rsa-signer", cores_available()).map_err(
                |error| Error::Key(format!("cannot start the signing threads: {error}")),
            )?),
            _ => None,
        };
        Ok(LocalSigner {
            signing_threads,
            inner: Arc::new(Inner {
                key,
                algorithm,
                header,
                jwks: JwkSet { keys: vec![jwk] },
            }),
        })
    }
}

impl Inner {
    fn sign(&self, claims: &Claims) -> Result<String, SignError> {
        let input = self.header.signing_input(claims)?;
        let signature = self
            .key
            .sign(input.as_bytes())
            .map_err(|_| SignError::Failed("the signing key refused to sign".to_owned()))?;
        Ok(input.into_token(&signature))
    }
}

#[async_trait::async_trait]
impl TokenSigner for LocalSigner {
    fn algorithm(&self) -> Option<Algorithm> {
        Some(self.inner.algorithm)
    }

    fn jwks(&self) -> JwkSet {
        self.inner.jwks.clone()
    }

    async fn sign(&self, claims: &Claims) -> Result<String, SignError> {
        match &self.signing_threads {
            Some(threads) => {
                let inner = Arc::clone(&self.inner);
                let claims = claims.clone();
                threads
                    .run(move || inner.sign(&claims))
                    .await
                    .map_err(|e| SignError::Failed(format!("signing task failed: {e}")))?
            }
            None => self.inner.sign(claims),
        }
    }

    async fn health(&self) -> SignerHealth {
        SignerHealth {
            ready: true,
            detail: format!("local {:?} key", self.inner.algorithm),
        }
    }
}

/// Environment files often carry a PEM on one line with literal `\n`s.
fn unescape_newlines(text: &str) -> String {
    if text.contains('\n') {
        text.to_owned()
    } else {
        text.replace("\\n", "\n")
    }
}

/// Where the development key for `algorithm` lives in the data directory.
fn dev_key_path(data_dir: &Path, algorithm: JwtAlgorithm) -> PathBuf {
    let name = match algorithm {
        JwtAlgorithm::Rs256 => "dev_signing_key_rs256.pem",
        JwtAlgorithm::Es256 => "dev_signing_key_es256.pem",
    };
    data_dir.join(name)
}

fn load_or_generate_dev_key(data_dir: &Path, algorithm: JwtAlgorithm) -> Result<SigningKey, Error> {
    let path = dev_key_path(data_dir, algorithm);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            tracing::warn!(path = %path.display(), "signing tokens with the development key from the data directory; set ISM_SIGNING_KEY in production");
            return SigningKey::from_pem(&text);
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(Error::Io {
                action: "read the development signing key",
                path,
                source,
            })
        }
    }
    std::fs::create_dir_all(data_dir).map_err(|source| Error::Io {
        action: "create the data directory",
        path: data_dir.to_owned(),
        source,
    })?;
    let key = SigningKey::generate(algorithm)?;
    write_private_file(&path, key.private_pkcs8_pem()?.as_bytes())?;
    tracing::warn!(path = %path.display(), "generated a development signing key; set ISM_SIGNING_KEY in production");
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signer::sample_device_claims;
    use session_token::{KeySet, TokenVerifier};

    #[tokio::test]
    async fn tokens_verify_against_the_published_jwks() {
        for algorithm in [JwtAlgorithm::Rs256, JwtAlgorithm::Es256] {
            let signer = LocalSigner::new(SigningKey::generate(algorithm).unwrap()).unwrap();
            let token = signer.sign(&sample_device_claims()).await.unwrap();
            let keys = KeySet::from_jwk_set(&signer.jwks()).unwrap();
            let verified = TokenVerifier::new(keys)
                .with_issuer("ism")
                .verify(&token, 1_700_000_100)
                .unwrap();
            assert_eq!(verified, sample_device_claims());
            let header = jsonwebtoken::decode_header(&token).unwrap();
            assert_eq!(header.alg, algorithm.as_jwt());
            assert_eq!(header.typ.as_deref(), Some("JWT"));
            assert_eq!(header.kid, signer.jwks().keys[0].common.key_id);
        }
    }

    #[test]
    fn the_dev_key_is_generated_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_generate_dev_key(dir.path(), JwtAlgorithm::Es256).unwrap();
        let second = load_or_generate_dev_key(dir.path(), JwtAlgorithm::Es256).unwrap();
        assert_eq!(
            first.public_jwk().unwrap().common.key_id,
            second.public_jwk().unwrap().common.key_id
        );
    }

    #[test]
    fn one_line_pem_with_escaped_newlines_is_accepted() {
        let pem = SigningKey::generate(JwtAlgorithm::Es256)
            .unwrap()
            .private_pkcs8_pem()
            .unwrap();
        let one_line = pem.replace("\r\n", "\\n").replace('\n', "\\n");
        assert!(SigningKey::from_pem(&unescape_newlines(&one_line)).is_ok());
    }
}
