//! Key rotation: public keys published in the JWKS besides the signing key's
//! (`ISM_ADDITIONAL_PUBLIC_KEY_FILES`). During a rotation the new key signs and the old
//! key's public half stays published until the last token it signed has expired, so
//! brokers keep accepting those tokens. Each key gets the same `kid` (RFC 7638
//! thumbprint) it had as the signing key, so old tokens find it.
//!
//! [`WithAdditionalKeys`] wraps any signer: it signs through it and publishes its JWKS
//! followed by the additional keys.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use jsonwebtoken::jwk::{Jwk, JwkSet};
use session_token::Claims;

use super::{SignError, SignerHealth, TokenSigner};
use crate::error::Error;

/// The public JWKs of `paths` (PEM public keys: SPKI or PKCS#1 RSA, or P-256); an empty
/// path (from a trailing comma) is skipped. The first file that cannot be read or is
/// not a public key stops start-up, named in the error.
pub fn load(paths: &[PathBuf]) -> Result<Vec<Jwk>, Error> {
    paths
        .iter()
        .filter(|path| !path.as_os_str().is_empty())
        .map(|path| load_one(path))
        .collect()
}

fn load_one(path: &Path) -> Result<Jwk, Error> {
    let pem = std::fs::read(path).map_err(|source| Error::Io {
        action: "read the additional public key (ISM_ADDITIONAL_PUBLIC_KEY_FILES)",
        path: path.to_owned(),
        source,
    })?;
    session_token::keys::public_jwk_from_pem(&pem).map_err(|error| {
        Error::Key(format!(
            "ISM_ADDITIONAL_PUBLIC_KEY_FILES: {} is not a PEM RSA or P-256 public key: {error}",
            path.display()
        ))
    })
}

/// A signer whose JWKS also carries additional public keys.
pub struct WithAdditionalKeys {
    signer: Arc<dyn TokenSigner>,
    jwks: JwkSet,
}

impl WithAdditionalKeys {
    /// Publishes `signer`'s keys first, then each of `additional` not already among them.
    pub fn new(signer: Arc<dyn TokenSigner>, additional: Vec<Jwk>) -> Self {
        let mut jwks = signer.jwks();
        for jwk in additional {
            let known = jwks
                .keys
                .iter()
                .any(|key| key.common.key_id == jwk.common.key_id);
            if !known {
                jwks.keys.push(jwk);
            }
        }
        WithAdditionalKeys { signer, jwks }
    }
}

#[async_trait::async_trait]
impl TokenSigner for WithAdditionalKeys {
    fn algorithm(&self) -> Option<jsonwebtoken::Algorithm> {
        self.signer.algorithm()
    }

    fn jwks(&self) -> JwkSet {
        self.jwks.clone()
    }

    async fn sign(&self, claims: &Claims) -> Result<String, SignError> {
        self.signer.sign(claims).await
    }

    async fn health(&self) -> SignerHealth {
        self.signer.health().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signer::local::LocalSigner;
    use crate::signing_key::SigningKey;

    #[test]
    fn additional_keys_follow_the_signing_key_once_each() {
        let signing = SigningKey::generate(crate::config::JwtAlgorithm::Es256).unwrap();
        let own = signing.public_jwk().unwrap();
        let signer: Arc<dyn TokenSigner> = Arc::new(LocalSigner::new(signing).unwrap());
        let public = include_str!("../../../session-token/tests/fixtures/rsa_public.pem");
        let old = session_token::keys::public_jwk_from_pem(public.as_bytes()).unwrap();
        let published = WithAdditionalKeys::new(signer, vec![old.clone(), own.clone(), old]);
        let kids: Vec<_> = published
            .jwks()
            .keys
            .into_iter()
            .map(|key| key.common.key_id)
            .collect();
        assert_eq!(kids.len(), 2);
        assert_eq!(kids[0], own.common.key_id);
    }

    #[test]
    fn a_missing_or_invalid_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let error = load(&[missing]).unwrap_err().to_string();
        assert!(error.contains("missing.pem"), "{error}");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a key").unwrap();
        let error = load(&[garbage]).unwrap_err().to_string();
        assert!(error.contains("garbage.pem"), "{error}");
        assert!(load(&[PathBuf::new()]).unwrap().is_empty());
    }
}
