//! How tokens are signed: the mode, the local key and its algorithm, and the claims every
//! token carries. The signers receive this group (and [`KmsConfig`](super::KmsConfig)),
//! never the whole configuration.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::SecretText;

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Token signing")]
pub struct SigningConfig {
    /// Token mode.
    #[arg(long, env = "MQTT_AUTH_MODE", value_enum, default_value_t = AuthMode::DevJwtAuth)]
    pub auth_mode: AuthMode,

    /// Private signing key as PEM text (PKCS#8, PKCS#1 RSA or SEC1 P-256). When neither
    /// this nor ISM_SIGNING_KEY_FILE is set, a development key is generated into the data
    /// directory on first start and reused afterwards.
    #[arg(
        long,
        env = "ISM_SIGNING_KEY",
        hide_env_values = true,
        conflicts_with = "signing_key_file"
    )]
    pub signing_key: Option<SecretText>,

    /// Path of a PEM private signing key (alternative to ISM_SIGNING_KEY).
    #[arg(long, env = "ISM_SIGNING_KEY_FILE")]
    pub signing_key_file: Option<PathBuf>,

    /// Signature algorithm of a generated development key. A supplied key decides for
    /// itself (RSA: RS256, P-256: ES256); a different value here only logs a warning.
    #[arg(long, env = "ISM_JWT_ALG", value_enum, default_value_t = JwtAlgorithm::Rs256)]
    pub jwt_alg: JwtAlgorithm,

    /// Public keys published in the JWKS after the signing key's (comma-separated paths of
    /// PEM public keys, e.g. the public_key.pem of the previous key): tokens signed by a
    /// previous key keep verifying while it is listed (key rotation).
    #[arg(long, env = "ISM_ADDITIONAL_PUBLIC_KEY_FILES", value_delimiter = ',',
          value_parser = path_or_empty)]
    pub additional_public_key_files: Vec<PathBuf>,

    /// Lifetime of issued device tokens, in seconds.
    #[arg(long, env = "ISM_TOKEN_TTL_SECS", default_value_t = 86_400,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub token_ttl_secs: u64,

    /// `iss` claim of issued tokens (the broker plugin requires the same value).
    #[arg(long, env = "ISM_ISSUER", default_value = "ism")]
    pub issuer: String,
}

/// A path; empty entries of a list (`a.pem,`) are kept as empty paths and skipped later
/// (clap's own path parser refuses them).
fn path_or_empty(text: &str) -> Result<PathBuf, std::convert::Infallible> {
    Ok(PathBuf::from(text.trim()))
}

/// How devices authenticate to the broker, and so how the service issues tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum AuthMode {
    /// No signing: the "token" is the client name (the broker allows anonymous).
    DevNoAuth,
    /// JWTs signed by a local key (ISM_SIGNING_KEY, or a generated development key).
    DevJwtAuth,
    /// JWTs signed by an AWS KMS key (ISM_KMS_KEY_ID).
    KmsJwtAuth,
}

/// Signature algorithm of issued tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum JwtAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (RSA 2048-bit keys when generated).
    #[value(name = "RS256", alias = "rs256")]
    Rs256,
    /// ECDSA P-256 with SHA-256.
    #[value(name = "ES256", alias = "es256")]
    Es256,
}

impl JwtAlgorithm {
    /// The name JWTs and `ISM_JWT_ALG` use.
    pub fn name(self) -> &'static str {
        match self {
            JwtAlgorithm::Rs256 => "RS256",
            JwtAlgorithm::Es256 => "ES256",
        }
    }

    /// The kind of key that signs this algorithm.
    pub fn key_kind(self) -> &'static str {
        match self {
            JwtAlgorithm::Rs256 => "RSA",
            JwtAlgorithm::Es256 => "P-256",
        }
    }

    pub fn as_jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            JwtAlgorithm::Rs256 => jsonwebtoken::Algorithm::RS256,
            JwtAlgorithm::Es256 => jsonwebtoken::Algorithm::ES256,
        }
    }
}
