//! Public keys as the system names them: a JWK whose `kid` is its RFC 7638 thumbprint
//! (SHA-256), and the set of keys a verifier accepts.
//!
//! Every key pins its algorithm: RSA keys verify RS256 only, P-256 keys ES256 only.
//! Symmetric keys are refused outright; a JWKS carrying one is rejected as a whole, since
//! a public key set with a secret in it is a configuration mistake to stop on.

use aws_lc_rs::signature::{
    ParsedPublicKey, RsaPublicKeyComponents, ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256,
};
use base64::Engine;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse, ThumbprintHash,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};

/// Why a key or key set cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not a JSON Web Key Set: {0}")]
    NotJwks(serde_json::Error),
    #[error("the key set holds no keys")]
    Empty,
    #[error("key {kid:?}: unsupported key type or algorithm (only RSA/RS256 and P-256/ES256)")]
    Unsupported { kid: String },
    #[error("key {kid:?}: declared algorithm {declared:?} does not fit the key")]
    AlgorithmMismatch { kid: String, declared: String },
    #[error("key {kid:?} appears twice")]
    DuplicateKid { kid: String },
    #[error("not an RSA or P-256 public key in PEM form")]
    NotPublicKeyPem,
    #[error("invalid key: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    #[error("key {kid:?}: the key material is not a valid public key")]
    Rejected { kid: String },
}

/// One key a verifier accepts, with its id and the only algorithm it verifies.
#[derive(Clone)]
pub struct VerificationKey {
    pub kid: String,
    pub algorithm: Algorithm,
    pub key: DecodingKey,
    /// The same key parsed once for aws-lc-rs, so a verification does not rebuild it from
    /// its JWK components (as `jsonwebtoken::decode` does on every call).
    parsed: ParsedPublicKey,
}

impl std::fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerificationKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// The keys a verifier accepts, looked up by `kid`.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<VerificationKey>,
}

/// The algorithm a JWK's key material allows, whatever the JWK declares.
fn algorithm_of(jwk: &Jwk) -> Option<Algorithm> {
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            Some(Algorithm::ES256)
        }
        _ => None,
    }
}

/// Completes a public JWK the way we publish it: `kid` = thumbprint, `use` = sig, `alg` set.
fn finish_public_jwk(mut jwk: Jwk, algorithm: Algorithm) -> Result<Jwk, KeyError> {
    jwk.common.key_id = Some(jwk.thumbprint(ThumbprintHash::SHA256)?);
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    jwk.common.key_algorithm = Some(KeyAlgorithm::from(algorithm));
    Ok(jwk)
}

/// The public JWK (with thumbprint `kid`) of a private signing key.
pub fn public_jwk_of_signing_key(key: &EncodingKey, algorithm: Algorithm) -> Result<Jwk, KeyError> {
    finish_public_jwk(Jwk::from_encoding_key(key, algorithm)?, algorithm)
}

/// The public JWK (with thumbprint `kid`) of a PEM public key, RSA (PKCS#1 or SPKI) or P-256.
pub fn public_jwk_from_pem(pem: &[u8]) -> Result<Jwk, KeyError> {
    let (key, algorithm) = if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        (key, Algorithm::RS256)
    } else if let Ok(key) = DecodingKey::from_ec_pem(pem) {
        (key, Algorithm::ES256)
    } else {
        return Err(KeyError::NotPublicKeyPem);
    };
    let jwk = Jwk::from_decoding_key(&key, Some(algorithm))?;
    if algorithm_of(&jwk) != Some(algorithm) {
        return Err(KeyError::NotPublicKeyPem);
    }
    finish_public_jwk(jwk, algorithm)
}

/// The public key of `jwk`, parsed for verifying signatures of `algorithm`.
fn parse_public_key(
    jwk: &Jwk,
    algorithm: Algorithm,
    kid: &str,
) -> Result<ParsedPublicKey, KeyError> {
    let rejected = || KeyError::Rejected {
        kid: kid.to_owned(),
    };
    let decode = |text: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| rejected())
    };
    match (&jwk.algorithm, algorithm) {
        (AlgorithmParameters::RSA(rsa), Algorithm::RS256) => {
            let (n, e) = (decode(&rsa.n)?, decode(&rsa.e)?);
            // aws-lc-rs takes the components without leading zero bytes.
            let minimal = |bytes: &[u8]| {
                let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
                bytes[start..].to_vec()
            };
            let (n, e) = (minimal(&n), minimal(&e));
            RsaPublicKeyComponents {
                n: n.as_slice(),
                e: e.as_slice(),
            }
            .to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA256)
            .map_err(|_| rejected())
        }
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES256) => {
            // An uncompressed SEC 1 point: 0x04, then x and y.
            let mut point = vec![0x04];
            point.extend(decode(&ec.x)?);
            point.extend(decode(&ec.y)?);
            ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).map_err(|_| rejected())
        }
        _ => Err(KeyError::Unsupported {
            kid: kid.to_owned(),
        }),
    }
}

impl VerificationKey {
    /// Checks `signature` over `message` (a JWS signing input) with this key, by its own
    /// algorithm.
    pub fn verify_signature(&self, message: &[u8], signature: &[u8]) -> bool {
        self.parsed.verify_sig(message, signature).is_ok()
    }

    /// A verification key from a public JWK. A missing `kid` is filled with the thumbprint.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, KeyError> {
        let kid = match &jwk.common.key_id {
            Some(kid) => kid.clone(),
            None => jwk.thumbprint(ThumbprintHash::SHA256)?,
        };
        let algorithm =
            algorithm_of(jwk).ok_or_else(|| KeyError::Unsupported { kid: kid.clone() })?;
        if let Some(declared) = jwk.common.key_algorithm {
            if declared != KeyAlgorithm::from(algorithm) {
                return Err(KeyError::AlgorithmMismatch {
                    kid,
                    declared: format!("{declared:?}"),
                });
            }
        }
        let key = DecodingKey::from_jwk(jwk)?;
        let parsed = parse_public_key(jwk, algorithm, &kid)?;
        Ok(VerificationKey {
            kid,
            algorithm,
            key,
            parsed,
        })
    }
}

impl KeySet {
    /// Builds a key set; refuses an empty set and duplicate ids.
    pub fn new(keys: Vec<VerificationKey>) -> Result<Self, KeyError> {
        if keys.is_empty() {
            return Err(KeyError::Empty);
        }
        for (i, key) in keys.iter().enumerate() {
            if keys[..i].iter().any(|k| k.kid == key.kid) {
                return Err(KeyError::DuplicateKid {
                    kid: key.kid.clone(),
                });
            }
        }
        Ok(KeySet { keys })
    }

    /// Parses a JWKS document (`{"keys":[...]}`).
    pub fn from_jwks_json(json: &str) -> Result<Self, KeyError> {
        let set: JwkSet = serde_json::from_str(json).map_err(KeyError::NotJwks)?;
        Self::from_jwk_set(&set)
    }

    pub fn from_jwk_set(set: &JwkSet) -> Result<Self, KeyError> {
        Self::new(
            set.keys
                .iter()
                .map(VerificationKey::from_jwk)
                .collect::<Result<_, _>>()?,
        )
    }

    /// A set holding a single PEM public key, RSA or P-256, with its thumbprint as `kid`.
    pub fn from_public_key_pem(pem: &[u8]) -> Result<Self, KeyError> {
        Self::new(vec![VerificationKey::from_jwk(&public_jwk_from_pem(pem)?)?])
    }

    /// The key with this id, if any.
    pub fn find(&self, kid: &str) -> Option<&VerificationKey> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    /// The only key, when there is exactly one (tokens without `kid` may use it).
    pub fn sole_key(&self) -> Option<&VerificationKey> {
        match self.keys.as_slice() {
            [only] => Some(only),
            _ => None,
        }
    }

    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.kid.as_str())
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}
