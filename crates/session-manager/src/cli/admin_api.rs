//! How command-line tools reach the running service's admin API (`--admin-url`,
//! `ISM_ADMIN_URL`; the key in `--admin-key`, `ISM_ADMIN_API_KEY`): one request, its JSON
//! answer, and an API error turned into the command's error with the API's message.
//!
//! The commands that issue credentials (`token`, `certs client`) go through the API rather
//! than opening the store and the signer themselves: one code path issues every token, it
//! works in every signing mode (KMS included) without the command holding signing rights,
//! and it never contends with the service for the data directory's lock.

use std::time::Duration;

use clap::Args;
use reqwest::{Client, Method, RequestBuilder};
use serde_json::{json, Value};

use crate::error::Error;

/// How long a command waits for the admin API.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the admin API is and how to authenticate to it.
#[derive(Debug, Clone, Args)]
pub(super) struct AdminApiArgs {
    /// Base URL of the running service's admin API.
    #[arg(
        long,
        env = "ISM_ADMIN_URL",
        default_value = "http://127.0.0.1:50001",
        global = true
    )]
    pub admin_url: String,
    /// The admin API key (sent as `Authorization: Bearer`); leave unset for an admin API
    /// without a key.
    #[arg(long, env = "ISM_ADMIN_API_KEY", hide_env_values = true, global = true)]
    pub admin_key: Option<String>,
}

impl AdminApiArgs {
    /// Sends `method path` (with `body` as JSON, if any) and returns the answer's JSON (for
    /// an empty answer, `{"status": <code>}`); an error answer becomes an error carrying the
    /// API's message.
    pub(super) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Error> {
        let client = Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|error| Error::AdminApi(error.to_string()))?;
        let url = format!("{}{path}", self.admin_url.trim_end_matches('/'));
        let mut request: RequestBuilder = client.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(key) = &self.admin_key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.map_err(|error| {
            Error::AdminApi(format!("cannot reach {}: {error}", self.admin_url))
        })?;
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
}
