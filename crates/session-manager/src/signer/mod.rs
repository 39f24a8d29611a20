//! Token signing: the [`TokenSigner`] trait and the choice of signer by `MQTT_AUTH_MODE`.
//!
//! - [`no_auth::NoAuthSigner`] (`dev_no_auth`): nothing is signed; the "token" is the
//!   client name, as the original service did.
//! - [`local::LocalSigner`] (`dev_jwt_auth`): RS256 or ES256 with a private key held in
//!   memory, from `ISM_SIGNING_KEY(_FILE)` or a development key generated into the data
//!   directory.
//! - [`kms::KmsSigner`] (`kms_jwt_auth`): signed by AWS KMS, so the private key never
//!   leaves it.
//!
//! [`additional_keys`] publishes earlier keys next to any signer's during a rotation;
//! [`measured`] times every signature and counts the failures, by signer kind.
//!
//! Every signer assembles its tokens with [`jws`]. Signing is async because a remote signer waits on the network; local signers run the
//! CPU-bound part off the async executor where that pays (see `local`).

pub mod additional_keys;
pub mod jws;
pub mod kms;
pub mod local;
pub mod measured;
pub mod no_auth;

use std::path::Path;
use std::sync::Arc;

use jsonwebtoken::jwk::JwkSet;
use serde::Serialize;
use session_token::Claims;

use crate::config::{AuthMode, KmsConfig, SigningConfig};
use crate::error::Error;
pub(crate) use crate::error::SignError;

#[async_trait::async_trait]
pub trait TokenSigner: Send + Sync + 'static {
    /// JWT algorithm of issued tokens; None when tokens are not signed (dev_no_auth).
    fn algorithm(&self) -> Option<jsonwebtoken::Algorithm>;
    /// Public keys for /.well-known/jwks.json (empty set in dev_no_auth).
    fn jwks(&self) -> JwkSet;
    /// Compact JWT for these claims (header alg, typ "JWT", kid = RFC 7638 thumbprint).
    async fn sign(&self, claims: &Claims) -> Result<String, SignError>;
    /// Can the signer sign right now? (KMS reachability; local signers are always ready.)
    async fn health(&self) -> SignerHealth;
}

/// Readiness of the signer, reported by `/healthz` on the admin port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignerHealth {
    pub ready: bool,
    pub detail: String,
}

/// The signer `signing.auth_mode` asks for; the development key, if one is needed, lives
/// in `data_dir`.
pub async fn build(
    signing: &SigningConfig,
    kms: &KmsConfig,
    data_dir: &Path,
) -> Result<Arc<dyn TokenSigner>, Error> {
    let kind = match signing.auth_mode {
        AuthMode::DevNoAuth => "none",
        AuthMode::DevJwtAuth => "local",
        AuthMode::KmsJwtAuth => "kms",
    };
    let signer = build_unmeasured(signing, kms, data_dir).await?;
    Ok(Arc::new(measured::Measured::new(signer, kind)))
}

/// The signer `signing.auth_mode` asks for, with any additional public keys.
async fn build_unmeasured(
    signing: &SigningConfig,
    kms: &KmsConfig,
    data_dir: &Path,
) -> Result<Arc<dyn TokenSigner>, Error> {
    let additional = additional_keys::load(&signing.additional_public_key_files)?;
    let signer: Arc<dyn TokenSigner> = match signing.auth_mode {
        AuthMode::DevNoAuth => {
            if !additional.is_empty() {
                tracing::warn!(
                    "ISM_ADDITIONAL_PUBLIC_KEY_FILES is ignored: this mode signs no tokens"
                );
            }
            return Ok(Arc::new(no_auth::NoAuthSigner));
        }
        AuthMode::DevJwtAuth => Arc::new(local::LocalSigner::from_config(signing, data_dir)?),
        AuthMode::KmsJwtAuth => Arc::new(kms::KmsSigner::connect(kms).await?),
    };
    if additional.is_empty() {
        return Ok(signer);
    }
    tracing::info!(
        additional_keys = additional.len(),
        "publishing additional public keys in the JWKS (key rotation)"
    );
    Ok(Arc::new(additional_keys::WithAdditionalKeys::new(
        signer, additional,
    )))
}

/// The claims the signer tests sign: a 10-minute device token for `lamp-1` of session
/// `123456`.
#[cfg(test)]
pub(crate) fn sample_device_claims() -> Claims {
    Claims::for_device(&session_token::DeviceGrant {
        issuer: "ism",
        client: "lamp-1",
        session_id: "123456",
        issued_at: 1_700_000_000,
        lifetime_secs: 600,
        token_id: "t-1",
        generation: 0,
    })
}
