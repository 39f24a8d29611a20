//! Tokens signed with the fixture keys in `crates/session-token/tests/fixtures/`: one
//! [`SigningKey`] per fixture private key, with its public JWK and thumbprint `kid`, and
//! the claims of a device token as the service issues them.

use std::path::PathBuf;

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{encode, EncodingKey, Header};
use session_token::keys::public_jwk_of_signing_key;
use session_token::{Algorithm, Claims, DeviceGrant};

use crate::now;

/// The issuer the fixture tokens carry and the test brokers and services expect.
pub const ISSUER: &str = "ism";

/// The path of fixture file `name`.
pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../session-token/tests/fixtures")
        .join(name)
}

/// The bytes of fixture file `name`.
pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(name)).expect("fixture readable")
}

/// A fixture private key with its public JWK (thumbprint `kid`).
pub struct SigningKey {
    pub encoding: EncodingKey,
    pub algorithm: Algorithm,
    pub jwk: Jwk,
    pub kid: String,
}

impl SigningKey {
    /// `rsa_private.pem` (RS256), the key the test services sign with.
    pub fn rsa() -> Self {
        Self::from_pem("rsa_private.pem", Algorithm::RS256)
    }

    /// `other_rsa_private.pem` (RS256), a key nobody trusts.
    pub fn other_rsa() -> Self {
        Self::from_pem("other_rsa_private.pem", Algorithm::RS256)
    }

    /// `ec_private.pem` (ES256).
    pub fn ec() -> Self {
        Self::from_pem("ec_private.pem", Algorithm::ES256)
    }

    fn from_pem(file: &str, algorithm: Algorithm) -> Self {
        let pem = fixture(file);
        let encoding = match algorithm {
            Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
            _ => EncodingKey::from_rsa_pem(&pem),
        }
        .expect("fixture key parses");
        let jwk = public_jwk_of_signing_key(&encoding, algorithm).expect("public jwk");
        let kid = jwk.common.key_id.clone().expect("kid");
        SigningKey {
            encoding,
            algorithm,
            jwk,
            kid,
        }
    }

    /// `claims` signed, with this key's `kid` in the header.
    pub fn sign(&self, claims: &Claims) -> String {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.clone());
        encode(&header, claims, &self.encoding).expect("signs")
    }

    /// A device token for `client` in `session`, valid from now for `lifetime_secs`.
    pub fn device_token(&self, session: &str, client: &str, lifetime_secs: u64) -> String {
        self.sign(&device_claims(session, client, lifetime_secs))
    }
}

/// The claims of a device token for `client` in `session`, issued now by [`ISSUER`].
pub fn device_claims(session: &str, client: &str, lifetime_secs: u64) -> Claims {
    Claims::for_device(&DeviceGrant {
        issuer: ISSUER,
        client,
        session_id: session,
        issued_at: now(),
        lifetime_secs,
        token_id: client,
        generation: 0,
    })
}

/// A JWKS document with the public keys of `keys`.
pub fn jwks(keys: &[&SigningKey]) -> String {
    serde_json::json!({ "keys": keys.iter().map(|k| &k.jwk).collect::<Vec<_>>() }).to_string()
}
