//! Private signing keys held in memory: parsed from PEM or generated, and encoded back to
//! the files operators and brokers need. RSA (2048 bits or more) signs RS256, P-256 signs
//! ES256; the algorithm follows from the key, never from a token.
//!
//! Keys are kept as parsed aws-lc-rs key pairs: jsonwebtoken's `EncodingKey` re-parses
//! (and re-validates) the DER on every signature, which is measurable on the join path.

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair as _, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256,
};
use jsonwebtoken::jwk::Jwk;

use crate::config::JwtAlgorithm;
use crate::error::Error;

/// Smallest accepted RSA modulus, in bytes (2048 bits).
const MIN_RSA_MODULUS_BYTES: usize = 256;

/// A private key that signs JWTs.
pub enum SigningKey {
    Rsa(RsaKeyPair),
    Ecdsa(EcdsaKeyPair),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({:?})", self.algorithm())
    }
}

impl SigningKey {
    /// A fresh key: RSA 2048 for RS256, P-256 for ES256.
    pub fn generate(algorithm: JwtAlgorithm) -> Result<Self, Error> {
        let failed = |_| Error::Key("key generation failed".to_owned());
        Ok(match algorithm {
            JwtAlgorithm::Rs256 => {
                SigningKey::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).map_err(failed)?)
            }
            JwtAlgorithm::Es256 => SigningKey::Ecdsa(
                EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).map_err(failed)?,
            ),
        })
    }

    /// Parses a PEM private key: PKCS#8 (`PRIVATE KEY`), PKCS#1 (`RSA PRIVATE KEY`) or
    /// SEC1 (`EC PRIVATE KEY`, P-256 only).
    pub fn from_pem(text: &str) -> Result<Self, Error> {
        let pem = pem::parse(text.trim())
            .map_err(|e| Error::Key(format!("not a PEM private key: {e}")))?;
        let der = pem.contents();
        let key = match pem.tag() {
            "RSA PRIVATE KEY" => RsaKeyPair::from_der(der)
                .map(SigningKey::Rsa)
                .map_err(|e| Error::Key(format!("invalid RSA private key: {e}")))?,
            "EC PRIVATE KEY" => EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                .map(SigningKey::Ecdsa)
                .map_err(|e| Error::Key(format!("invalid or non-P-256 EC private key: {e}")))?,
            "PRIVATE KEY" => match RsaKeyPair::from_pkcs8(der) {
                Ok(key) => SigningKey::Rsa(key),
                Err(_) => EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map(SigningKey::Ecdsa)
                    .map_err(|_| Error::Key("the PKCS#8 key is neither RSA nor P-256".to_owned()))?,
            },
            other => {
                return Err(Error::Key(format!(
                    "expected a PEM private key (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY), found {other:?}"
                )))
            }
        };
        if let SigningKey::Rsa(rsa) = &key {
            if rsa.public_modulus_len() < MIN_RSA_MODULUS_BYTES {
                return Err(Error::Key(
                    "RSA keys must have at least 2048 bits".to_owned(),
                ));
            }
        }
        Ok(key)
    }

    pub fn algorithm(&self) -> JwtAlgorithm {
        match self {
            SigningKey::Rsa(_) => JwtAlgorithm::Rs256,
            SigningKey::Ecdsa(_) => JwtAlgorithm::Es256,
        }
    }

    /// Signature over `message` in JWS form (PKCS#1 v1.5 for RSA, fixed r||s for ECDSA).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, aws_lc_rs::error::Unspecified> {
        let rng = SystemRandom::new();
        match self {
            SigningKey::Rsa(key) => {
                let mut signature = vec![0; key.public_modulus_len()];
                key.sign(&RSA_PKCS1_SHA256, &rng, message, &mut signature)?;
                Ok(signature)
            }
            SigningKey::Ecdsa(key) => Ok(key.sign(&rng, message)?.as_ref().to_vec()),
        }
    }

    /// The private key as PKCS#8 PEM.
    pub fn private_pkcs8_pem(&self) -> Result<String, Error> {
        let failed = |_| Error::Key("cannot encode the private key".to_owned());
        let der = match self {
            SigningKey::Rsa(key) => AsDer::<Pkcs8V1Der>::as_der(key)
                .map_err(failed)?
                .as_ref()
                .to_vec(),
            SigningKey::Ecdsa(key) => key.to_pkcs8v1().map_err(failed)?.as_ref().to_vec(),
        };
        Ok(pem::encode(&pem::Pem::new("PRIVATE KEY", der)))
    }

    /// The public key as SubjectPublicKeyInfo PEM (`PUBLIC KEY`).
    pub fn public_spki_pem(&self) -> Result<String, Error> {
        let failed = |_| Error::Key("cannot encode the public key".to_owned());
        let der = match self {
            SigningKey::Rsa(key) => AsDer::<PublicKeyX509Der>::as_der(key.public_key())
                .map_err(failed)?
                .as_ref()
                .to_vec(),
            SigningKey::Ecdsa(key) => AsDer::<PublicKeyX509Der>::as_der(key.public_key())
                .map_err(failed)?
                .as_ref()
                .to_vec(),
        };
        Ok(pem::encode(&pem::Pem::new("PUBLIC KEY", der)))
    }

    /// The RSA public key as PKCS#1 `RSAPublicKey` DER; None for EC keys.
    pub fn public_pkcs1_der(&self) -> Option<Vec<u8>> {
        match self {
            SigningKey::Rsa(key) => Some(key.public_key().as_ref().to_vec()),
            SigningKey::Ecdsa(_) => None,
        }
    }

    /// The public JWK as we publish it (`kid` = RFC 7638 thumbprint, `use` = sig, `alg`).
    pub fn public_jwk(&self) -> Result<Jwk, Error> {
        let pem = self.public_spki_pem()?;
        session_token::keys::public_jwk_from_pem(pem.as_bytes())
            .map_err(|e| Error::Key(format!("cannot describe the public key as a JWK: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_round_trip_through_pkcs8_pem_with_the_same_kid() {
        for algorithm in [JwtAlgorithm::Rs256, JwtAlgorithm::Es256] {
            let key = SigningKey::generate(algorithm).unwrap();
            let again = SigningKey::from_pem(&key.private_pkcs8_pem().unwrap()).unwrap();
            assert_eq!(again.algorithm(), algorithm);
            assert_eq!(
                key.public_jwk().unwrap().common.key_id,
                again.public_jwk().unwrap().common.key_id
            );
        }
    }

    #[test]
    fn the_kid_matches_the_token_crate_for_the_same_private_key() {
        let pem = include_str!("../../session-token/tests/fixtures/rsa_private.pem");
        let key = SigningKey::from_pem(pem).unwrap();
        let encoding = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
        let expected = session_token::keys::public_jwk_of_signing_key(
            &encoding,
            jsonwebtoken::Algorithm::RS256,
        )
        .unwrap();
        assert_eq!(
            key.public_jwk().unwrap().common.key_id,
            expected.common.key_id
        );
    }

    #[test]
    fn pkcs8_ec_keys_are_accepted() {
        let pem = include_str!("../../session-token/tests/fixtures/ec_private.pem");
        assert_eq!(
            SigningKey::from_pem(pem).unwrap().algorithm(),
            JwtAlgorithm::Es256
        );
    }

    #[test]
    fn garbage_and_public_keys_are_refused() {
        assert!(SigningKey::from_pem("hello").is_err());
        let public = include_str!("../../session-token/tests/fixtures/rsa_public.pem");
        assert!(SigningKey::from_pem(public).is_err());
    }
}
