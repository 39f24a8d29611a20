//! The events the service sends out: the admin SSE stream's buffer and the webhook
//! receivers, their signing secret, timeout and queues.

use std::time::Duration;

use base64::Engine as _;
use clap::Args;

use super::SecretText;

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Events and webhooks")]
pub struct WebhooksConfig {
    /// Events kept for a listener of the admin event stream (`GET /api/v1/events`) that
    /// falls behind; one further behind gets `event: gap` with the number it lost.
    #[arg(long, env = "ISM_EVENT_BUFFER", default_value_t = 1024,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub event_buffer: u64,

    /// Receivers every event is POSTed to, comma-separated `http://` or `https://` URLs.
    /// Unset: no webhooks. Needs ISM_WEBHOOK_SECRET.
    #[arg(long, env = "ISM_WEBHOOK_URLS", value_delimiter = ',',
          value_parser = parse_webhook_url, hide_env_values = true)]
    pub webhook_urls: Vec<reqwest::Url>,

    /// The webhooks' signing secret, `whsec_` followed by base64 (Standard Webhooks); make
    /// one with `echo "whsec_$(openssl rand -base64 32)"`. Required with ISM_WEBHOOK_URLS.
    #[arg(long, env = "ISM_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<SecretText>,

    /// Seconds one webhook delivery may take before it counts as failed and is retried.
    #[arg(long, env = "ISM_WEBHOOK_TIMEOUT_SECS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=300))]
    pub webhook_timeout_secs: u64,

    /// Events queued per webhook receiver; when a receiver's queue is full, new events
    /// are dropped for it (counted and logged).
    #[arg(long, env = "ISM_WEBHOOK_QUEUE", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub webhook_queue: u64,
}

/// The webhook receivers, checked: what the delivery workers need.
#[derive(Debug, Clone)]
pub struct WebhookTargets {
    pub urls: Vec<reqwest::Url>,
    /// The decoded signing key (the bytes after `whsec_`).
    pub key: Vec<u8>,
    pub timeout: Duration,
    pub queue: usize,
}

/// How a refused secret is explained.
const MAKE_A_SECRET: &str = "make one with: echo \"whsec_$(openssl rand -base64 32)\"";
/// The shortest signing key accepted, in bytes.
const MIN_KEY_BYTES: usize = 16;

impl WebhooksConfig {
    /// The receivers and their key, `None` when no URL is set; an error saying what is
    /// wrong (and how to fix it) when the secret is missing or malformed.
    pub fn targets(&self) -> Result<Option<WebhookTargets>, String> {
        if self.webhook_urls.is_empty() {
            return Ok(None);
        }
        let Some(secret) = &self.webhook_secret else {
            return Err(format!(
                "ISM_WEBHOOK_URLS is set but ISM_WEBHOOK_SECRET is not; {MAKE_A_SECRET}"
            ));
        };
        let key = decode_secret(secret.expose())?;
        Ok(Some(WebhookTargets {
            urls: self.webhook_urls.clone(),
            key,
            timeout: Duration::from_secs(self.webhook_timeout_secs),
            queue: usize::try_from(self.webhook_queue).unwrap_or(usize::MAX),
        }))
    }
}

/// The key bytes of a `whsec_<base64>` secret.
fn decode_secret(secret: &str) -> Result<Vec<u8>, String> {
    let Some(encoded) = secret.trim().strip_prefix("whsec_") else {
        return Err(format!(
            "ISM_WEBHOOK_SECRET must be `whsec_` followed by base64; {MAKE_A_SECRET}"
        ));
    };
    let key = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| {
            format!(
                "ISM_WEBHOOK_SECRET: the part after `whsec_` is not valid base64; {MAKE_A_SECRET}"
            )
        })?;
    if key.len() < MIN_KEY_BYTES {
        return Err(format!(
            "ISM_WEBHOOK_SECRET is too short ({} bytes, at least {MIN_KEY_BYTES}); {MAKE_A_SECRET}",
            key.len()
        ));
    }
    Ok(key)
}

/// One receiver URL: absolute, `http` or `https`.
fn parse_webhook_url(text: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(text.trim()).map_err(|error| {
        format!("ISM_WEBHOOK_URLS: not a URL ({error}); expected http(s)://host[:port]/path")
    })?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(url),
        "http" | "https" => Err("ISM_WEBHOOK_URLS: the URL has no host".to_owned()),
        other => Err(format!(
            "ISM_WEBHOOK_URLS: scheme {other}: is not allowed, only http and https"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_must_be_whsec_base64_of_enough_bytes() {
        assert_eq!(
            decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").map(|key| key.len()),
            Ok(24)
        );
        for bad in [
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_!!!",
            "whsec_c2hvcnQ=",
        ] {
            let error = decode_secret(bad).expect_err(bad);
            assert!(error.contains("openssl rand -base64 32"), "{error}");
        }
    }

    #[test]
    fn urls_must_be_http_or_https_with_a_host() {
        assert!(parse_webhook_url("https://hooks.example/in?token=x").is_ok());
        assert!(parse_webhook_url("http://127.0.0.1:9000/").is_ok());
        assert!(parse_webhook_url("ftp://example/").is_err());
        assert!(parse_webhook_url("hooks.example/in").is_err());
    }
}
