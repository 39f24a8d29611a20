//! The AWS KMS key of `kms_jwt_auth` and how hard the service leans on KMS.

use clap::Args;

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "AWS KMS (kms_jwt_auth)")]
pub struct KmsConfig {
    /// KMS key id or ARN (kms_jwt_auth).
    #[arg(long, env = "ISM_KMS_KEY_ID")]
    pub kms_key_id: Option<String>,

    /// Timeout of one KMS call, in milliseconds (kms_jwt_auth).
    #[arg(long, env = "ISM_KMS_TIMEOUT_MS", default_value_t = 2000)]
    pub kms_timeout_ms: u64,

    /// Most KMS signing calls in flight at once (kms_jwt_auth).
    #[arg(long, env = "ISM_KMS_MAX_CONCURRENCY", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub kms_max_concurrency: u32,
}
