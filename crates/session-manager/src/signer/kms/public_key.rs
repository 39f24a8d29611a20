//! The public half of a KMS signing key, as downloaded with `GetPublicKey`: which JWT
//! algorithm it serves, its JWK (with the RFC 7638 thumbprint `kid`), its PEM, and how a
//! KMS signature becomes a JOSE signature.
//!
//! The algorithm is read from the SubjectPublicKeyInfo itself, never from `GetPublicKey`'s
//! optional `KeySpec`/`SigningAlgorithms` fields (some KMS-compatible endpoints omit them).
//! The JWK comes from `session_token::keys::public_jwk_from_pem`, the same function that
//! turns an exported `public_key.pem` into a key, so the `kid` in every token header is
//! exactly the one a broker computes from the exported file.

use aws_sdk_kms::types::SigningAlgorithmSpec;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey};

/// Smallest RSA modulus we sign with, in bytes (2048 bits; KMS has no smaller RSA keys).
const MIN_RSA_MODULUS_BYTES: usize = 256;

/// Why a KMS key cannot be used for tokens.
#[derive(Debug, thiserror::Error)]
pub enum UnusableKey {
    #[error(
        "its public key is neither RSA (2048 bits or more) nor NIST P-256; create the key with \
         --key-spec RSA_2048 (or RSA_3072, RSA_4096, ECC_NIST_P256) --key-usage SIGN_VERIFY"
    )]
    UnsupportedSpec,
    #[error("its RSA modulus has {bits} bits; at least 2048 are required")]
    RsaTooSmall { bits: usize },
}

/// A KMS key's public key and everything derived from it.
#[derive(Clone)]
pub struct KmsPublicKey {
    algorithm: Algorithm,
    spki_der: Vec<u8>,
    pem: String,
    jwk: Jwk,
    verifying_key: DecodingKey,
}

impl std::fmt::Debug for KmsPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsPublicKey")
            .field("algorithm", &self.algorithm)
            .field("kid", &self.kid())
            .finish_non_exhaustive()
    }
}

impl KmsPublicKey {
    /// Parses the DER SubjectPublicKeyInfo that `GetPublicKey` returns.
    pub fn from_spki_der(spki_der: &[u8]) -> Result<Self, UnusableKey> {
        let pem = pem::encode(&pem::Pem::new("PUBLIC KEY", spki_der.to_vec()));
        let jwk = session_token::keys::public_jwk_from_pem(pem.as_bytes())
            .map_err(|_| UnusableKey::UnsupportedSpec)?;
        let algorithm = match &jwk.algorithm {
            AlgorithmParameters::RSA(rsa) => {
                let modulus = URL_SAFE_NO_PAD
                    .decode(&rsa.n)
                    .map_err(|_| UnusableKey::UnsupportedSpec)?;
                let significant = modulus.iter().skip_while(|byte| **byte == 0).count();
                if significant < MIN_RSA_MODULUS_BYTES {
                    return Err(UnusableKey::RsaTooSmall {
                        bits: significant * 8,
                    });
                }
                Algorithm::RS256
            }
            // public_jwk_from_pem admits P-256 only among curves.
            AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
            _ => return Err(UnusableKey::UnsupportedSpec),
        };
        let verifying_key =
            DecodingKey::from_jwk(&jwk).map_err(|_| UnusableKey::UnsupportedSpec)?;
        Ok(KmsPublicKey {
            algorithm,
            spki_der: spki_der.to_vec(),
            pem,
            jwk,
            verifying_key,
        })
    }

    /// The JWT algorithm of tokens this key signs.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The KMS signing algorithm that produces that JWT algorithm's signatures.
    pub fn kms_signing_algorithm(&self) -> SigningAlgorithmSpec {
        match self.algorithm {
            Algorithm::ES256 => SigningAlgorithmSpec::EcdsaSha256,
            _ => SigningAlgorithmSpec::RsassaPkcs1V15Sha256,
        }
    }

    /// The public JWK, `kid` = RFC 7638 thumbprint.
    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }

    pub fn kid(&self) -> Option<&str> {
        self.jwk.common.key_id.as_deref()
    }

    /// SubjectPublicKeyInfo PEM (`public_key.pem` for brokers).
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// Whether `spki_der` is this very key (a later `GetPublicKey` may say otherwise if an
    /// alias was moved to another key).
    pub fn is_same_key(&self, spki_der: &[u8]) -> bool {
        self.spki_der == spki_der
    }

    /// Turns a KMS signature into the bytes JOSE puts in a JWT: RSA signatures are used as
    /// they are; ECDSA signatures come DER-encoded from KMS and JOSE wants fixed-size r‖s.
    pub fn jose_signature(&self, kms_signature: &[u8]) -> Option<Vec<u8>> {
        match self.algorithm {
            Algorithm::ES256 => p256::ecdsa::Signature::from_der(kms_signature)
                .ok()
                .map(|signature| signature.to_bytes().to_vec()),
            _ => Some(kms_signature.to_vec()),
        }
    }

    /// Checks a JOSE signature over `signing_input` against this public key.
    pub fn verifies(&self, signing_input: &[u8], jose_signature: &[u8]) -> bool {
        jsonwebtoken::crypto::verify(
            &URL_SAFE_NO_PAD.encode(jose_signature),
            signing_input,
            &self.verifying_key,
            self.algorithm,
        )
        .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::rsa::KeySize;
    use aws_lc_rs::signature::{
        EcdsaKeyPair, KeyPair as _, RsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING,
        ECDSA_P384_SHA384_ASN1_SIGNING, RSA_PKCS1_SHA256,
    };

    const MESSAGE: &[u8] = b"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJsYW1wIn0";

    fn spki_of_rsa(key: &RsaKeyPair) -> Vec<u8> {
        AsDer::<PublicKeyX509Der>::as_der(key.public_key())
            .unwrap()
            .as_ref()
            .to_vec()
    }

    fn spki_of_ec(key: &EcdsaKeyPair) -> Vec<u8> {
        AsDer::<PublicKeyX509Der>::as_der(key.public_key())
            .unwrap()
            .as_ref()
            .to_vec()
    }

    #[test]
    fn an_rsa_key_signs_rs256_and_its_signatures_pass_through() {
        let key = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let public = KmsPublicKey::from_spki_der(&spki_of_rsa(&key)).unwrap();
        assert_eq!(public.algorithm(), Algorithm::RS256);
        assert_eq!(
            public.kms_signing_algorithm(),
            SigningAlgorithmSpec::RsassaPkcs1V15Sha256
        );

        let mut signature = vec![0; key.public_modulus_len()];
        key.sign(
            &RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            MESSAGE,
            &mut signature,
        )
        .unwrap();
        let jose = public.jose_signature(&signature).unwrap();
        assert_eq!(jose, signature);
        assert!(public.verifies(MESSAGE, &jose));
        assert!(!public.verifies(b"another message", &jose));
    }

    #[test]
    fn a_p256_key_signs_es256_and_der_signatures_become_r_and_s() {
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
        let spki = spki_of_ec(&key);
        let public = KmsPublicKey::from_spki_der(&spki).unwrap();
        assert_eq!(public.algorithm(), Algorithm::ES256);
        assert_eq!(
            public.kms_signing_algorithm(),
            SigningAlgorithmSpec::EcdsaSha256
        );

        // KMS returns ASN.1 DER, like this signing algorithm.
        let der = key.sign(&SystemRandom::new(), MESSAGE).unwrap();
        assert!(der.as_ref().len() > 64);
        let jose = public.jose_signature(der.as_ref()).unwrap();
        assert_eq!(jose.len(), 64);
        assert!(public.verifies(MESSAGE, &jose));
        assert!(!public.verifies(MESSAGE, der.as_ref()));
        assert!(public.jose_signature(&jose).is_none(), "r‖s is not DER");
    }

    #[test]
    fn the_kid_is_what_a_broker_computes_from_the_exported_pem() {
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
        let public = KmsPublicKey::from_spki_der(&spki_of_ec(&key)).unwrap();
        let from_file = session_token::keys::public_jwk_from_pem(public.pem().as_bytes()).unwrap();
        assert_eq!(public.kid(), from_file.common.key_id.as_deref());
        assert!(public.pem().starts_with("-----BEGIN PUBLIC KEY-----"));
        let keys = session_token::KeySet::from_public_key_pem(public.pem().as_bytes()).unwrap();
        assert!(keys.find(public.kid().unwrap()).is_some());
    }

    #[test]
    fn other_curves_and_garbage_are_refused() {
        let p384 = EcdsaKeyPair::generate(&ECDSA_P384_SHA384_ASN1_SIGNING).unwrap();
        let spki = spki_of_ec(&p384);
        assert!(matches!(
            KmsPublicKey::from_spki_der(&spki),
            Err(UnusableKey::UnsupportedSpec)
        ));
        assert!(matches!(
            KmsPublicKey::from_spki_der(b"not a key"),
            Err(UnusableKey::UnsupportedSpec)
        ));
    }
}
