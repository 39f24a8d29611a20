//! `session-manager token`: issue, list and revoke service tokens from the command line,
//! for automation (provisioning a backend's credentials in a deploy script).
//!
//! It calls the running service's admin API (`--admin-url`, `ISM_ADMIN_URL`; the key in
//! `--admin-key`, `ISM_ADMIN_API_KEY`) rather than opening the store and the signer
//! itself: one code path issues every token, it works in every signing mode (KMS
//! included) without the command holding signing rights, and it never contends with the
//! service for the data directory's lock. The answer is printed as JSON; an error answer
//! is printed as the API's message and the command fails.

use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::error::Error;

/// How long the command waits for the admin API.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Args)]
pub(super) struct TokenArgs {
    /// Base URL of the running service's admin API.
    #[arg(
        long,
        env = "ISM_ADMIN_URL",
        default_value = "http://127.0.0.1:50001",
        global = true
    )]
    admin_url: String,
    /// The admin API key (sent as `Authorization: Bearer`); leave unset for an admin API
    /// running with ISM_ADMIN_INSECURE=true.
    #[arg(long, env = "ISM_ADMIN_API_KEY", hide_env_values = true, global = true)]
    admin_key: Option<String>,
    #[command(subcommand)]
    action: TokenAction,
}

#[derive(Debug, Clone, Subcommand)]
enum TokenAction {
    /// Issue a service token for a trusted backend and print it (with its jti, grants and
    /// expiry) as JSON. The token is shown only this once.
    Create {
        /// Its name; the backend connects with username and client id `$svc-<name>`.
        #[arg(long)]
        name: String,
        /// A filter the backend may subscribe to (repeat for more), e.g. '/+/#'.
        #[arg(long)]
        subscribe: Vec<String>,
        /// A filter the backend may publish to (repeat for more), e.g. '/+/#'.
        #[arg(long)]
        publish: Vec<String>,
        /// Lifetime in seconds (default 30 days, at most 366 days).
        #[arg(long)]
        ttl_secs: Option<u64>,
    },
    /// List the service tokens not yet expired (never the tokens themselves).
    List,
    /// Revoke a service token by its jti: a connected holder is cut off, the token refused.
    Revoke {
        /// The token's jti, as `create` or `list` printed it.
        jti: String,
    },
}

/// Carries out the action against the admin API; the answer's JSON.
pub(super) async fn run(args: &TokenArgs) -> Result<Value, Error> {
    let base = format!(
        "{}/api/v1/service-tokens",
        args.admin_url.trim_end_matches('/')
    );
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|error| Error::AdminApi(error.to_string()))?;
    let request = match &args.action {
        TokenAction::Create {
            name,
            subscribe,
            publish,
            ttl_secs,
        } => client.post(&base).json(&json!({
            "name": name,
            "subscribe": subscribe,
            "publish": publish,
            "ttl_secs": ttl_secs,
        })),
        TokenAction::List => client.get(&base),
        TokenAction::Revoke { jti } => client.delete(format!("{base}/{jti}")),
    };
    let request = match &args.admin_key {
        Some(key) => request.bearer_auth(key),
        None => request,
    };
    let response = request
        .send()
        .await
        .map_err(|error| Error::AdminApi(format!("cannot reach {}: {error}", args.admin_url)))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|error| Error::AdminApi(format!("cannot read the answer: {error}")))?;
    let answer: Value = if body.is_empty() {
        json!({"status": status.as_u16()})
    } else {
        serde_json::from_slice(&body).unwrap_or_else(|_| json!({"status": status.as_u16()}))
    };
    if status.is_success() {
        Ok(answer)
    } else {
        let message = answer["error"]["message"].as_str().map_or_else(
            || format!("HTTP {status}"),
            |message| format!("{status}: {message}"),
        );
        Err(Error::AdminApi(message))
    }
}
