//! `session-manager token`: issue, list and revoke service tokens from the command line,
//! for automation (provisioning a backend's credentials in a deploy script).
//!
//! It calls the running service's admin API (`--admin-url`, `ISM_ADMIN_URL`; the key in
//! `--admin-key`, `ISM_ADMIN_API_KEY`) rather than opening the store and the signer
//! itself: one code path issues every token, it works in every signing mode (KMS
//! included) without the command holding signing rights, and it never contends with the
//! service for the data directory's lock. The answer is printed as JSON; an error answer
//! is printed as the API's message and the command fails.

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};

use super::admin_api::AdminApiArgs;
use crate::error::Error;

#[derive(Debug, Clone, Args)]
pub(super) struct TokenArgs {
    #[command(flatten)]
    admin: AdminApiArgs,
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
    const BASE: &str = "/api/v1/service-tokens";
    match &args.action {
        TokenAction::Create {
            name,
            subscribe,
            publish,
            ttl_secs,
        } => {
            let body = json!({
                "name": name,
                "subscribe": subscribe,
                "publish": publish,
                "ttl_secs": ttl_secs,
            });
            args.admin.call(Method::POST, BASE, Some(body)).await
        }
        TokenAction::List => args.admin.call(Method::GET, BASE, None).await,
        TokenAction::Revoke { jti } => {
            let path = format!("{BASE}/{jti}");
            args.admin.call(Method::DELETE, &path, None).await
        }
    }
}
