//! Checking a token: the key is chosen by `kid`, the algorithm is the key's own (never the
//! token's word for it), and the time claims are compared with a `now` the caller passes.
//!
//! A header with a `crit` member is refused: no critical extension is understood here
//! (RFC 7515 §4.1.11). `"crit": null` reads as no `crit` at all (it names nothing).
//!
//! `alg: none` and HS* tokens never verify: every key in a [`KeySet`] is RSA or P-256 and
//! pins RS256 or ES256, and a header naming any other algorithm is refused before any
//! signature check.

use base64::Engine;
use jsonwebtoken::Header;

use crate::claims::Claims;
use crate::keys::KeySet;

/// Tokens longer than this are refused unread; ours are well under 2 KiB.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Default tolerance for clock skew on `exp` and `nbf`.
pub const DEFAULT_LEEWAY_SECS: u64 = 5;

/// Why a token was refused. The messages never include the token itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("token is longer than {MAX_TOKEN_BYTES} bytes")]
    TooLong,
    #[error("token is malformed: {0}")]
    Malformed(String),
    #[error("token names no key id and the key set has more than one key")]
    MissingKid,
    #[error("token key id {0:?} is not in the key set")]
    UnknownKid(String),
    #[error("token algorithm {token:?} is not the key's algorithm {key:?}")]
    AlgorithmMismatch { token: String, key: String },
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token expired at {exp}")]
    Expired { exp: u64 },
    #[error("token is not valid before {nbf}")]
    NotYetValid { nbf: u64 },
    #[error("token header marks extensions {0:?} as critical; none are understood")]
    UnknownCritical(Vec<String>),
    #[error("token issuer {0:?} is not the expected issuer")]
    WrongIssuer(String),
}

/// A token that verified, with the id of the key that vouched for it (so a holder of the
/// token can be re-examined when the key set changes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    pub claims: Claims,
    pub kid: String,
}

/// Verifies tokens against a key set.
#[derive(Debug, Clone)]
pub struct TokenVerifier {
    keys: KeySet,
    issuer: Option<String>,
    leeway_secs: u64,
}

impl TokenVerifier {
    pub fn new(keys: KeySet) -> Self {
        TokenVerifier {
            keys,
            issuer: None,
            leeway_secs: DEFAULT_LEEWAY_SECS,
        }
    }

    /// Require this `iss`.
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    pub fn with_leeway(mut self, leeway_secs: u64) -> Self {
        self.leeway_secs = leeway_secs;
        self
    }

    pub fn keys(&self) -> &KeySet {
        &self.keys
    }

    /// Verifies `token` at time `now` (seconds since the epoch) and returns its claims.
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, VerifyError> {
        self.verify_with_kid(token, now)
            .map(|verified| verified.claims)
    }

    /// Like [`verify`](Self::verify), and also says which key verified the token.
    pub fn verify_with_kid(&self, token: &str, now: u64) -> Result<VerifiedToken, VerifyError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(VerifyError::TooLong);
        }
        // Each part is decoded once: the header to pick the key, the signature checked over
        // the signing input with the key parsed at load time, then the claims.
        let malformed = |what: &str| VerifyError::Malformed(what.to_owned());
        let (signing_input, signature) = token
            .rsplit_once('.')
            .ok_or_else(|| malformed("not three dot-separated parts"))?;
        let (header, payload) = signing_input
            .split_once('.')
            .ok_or_else(|| malformed("not three dot-separated parts"))?;
        if payload.contains('.') {
            return Err(malformed("not three dot-separated parts"));
        }
        let header: Header = serde_json::from_slice(&base64url(header)?)
            .map_err(|e| VerifyError::Malformed(format!("header: {e}")))?;
        // RFC 7515 §4.1.11: a recipient must refuse a token whose `crit` names an extension
        // it does not understand. This verifier understands none.
        if let Some(critical) = header.crit {
            return Err(VerifyError::UnknownCritical(critical));
        }
        let key = match &header.kid {
            Some(kid) => self
                .keys
                .find(kid)
                .ok_or_else(|| VerifyError::UnknownKid(kid.clone()))?,
            None => self.keys.sole_key().ok_or(VerifyError::MissingKid)?,
        };
        if header.alg != key.algorithm {
            return Err(VerifyError::AlgorithmMismatch {
                token: format!("{:?}", header.alg),
                key: format!("{:?}", key.algorithm),
            });
        }
        if !key.verify_signature(signing_input.as_bytes(), &base64url(signature)?) {
            return Err(VerifyError::BadSignature);
        }
        // Time and issuer are checked below against the caller's clock.
        let claims: Claims = serde_json::from_slice(&base64url(payload)?)
            .map_err(|e| VerifyError::Malformed(format!("claims: {e}")))?;

        if claims.exp.saturating_add(self.leeway_secs) <= now {
            return Err(VerifyError::Expired { exp: claims.exp });
        }
        if claims.nbf > now.saturating_add(self.leeway_secs) {
            return Err(VerifyError::NotYetValid { nbf: claims.nbf });
        }
        if let Some(issuer) = &self.issuer {
            if &claims.iss != issuer {
                return Err(VerifyError::WrongIssuer(claims.iss));
            }
        }
        Ok(VerifiedToken {
            claims,
            kid: key.kid.clone(),
        })
    }
}

/// Decodes one part of a compact JWS (base64url, no padding).
fn base64url(part: &str) -> Result<Vec<u8>, VerifyError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|e| VerifyError::Malformed(format!("base64: {e}")))
}
