//! Logging: the tracing subscriber (pretty or JSON lines, on stderr so stdout stays free
//! for the machine-readable start-up line) and the per-request span.
//!
//! Pretty logs are coloured only when stderr is a terminal and `NO_COLOR` is unset or
//! empty (no-color.org), so a redirected log holds no escape codes. `/healthz` requests
//! (container healthchecks, every few seconds) and answers 401 and 429 (refusals an
//! attacker can produce at will, logged in aggregate where they are decided) are logged
//! at DEBUG, the others at INFO.
//!
//! Request spans carry method, path, status and latency only. Bodies and the
//! `Authorization` header are never recorded, so PINs, admin keys and tokens stay out of
//! the logs.

use std::io::IsTerminal as _;
use std::time::Instant;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument as _;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber; the level comes from `RUST_LOG` (default `info`).
/// Does nothing if one is installed already (tests build several applications).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour_wanted(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR"),
        ))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}

/// Colour codes only for a terminal, and not when `NO_COLOR` is set to something.
fn colour_wanted(stderr_is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|value| value.is_empty())
}

/// Probes' path: their requests are logged at DEBUG.
const HEALTH_PATH: &str = "/healthz";

/// 401 and 429: refused credentials and throttled requests, which an attacker can
/// produce at will. Their access-log lines are DEBUG; the refusals themselves are logged,
/// aggregated, where they are decided (`refusal_log`).
fn is_refusal(status: u16) -> bool {
    status == 401 || status == 429
}

/// Middleware: one span per request, and one event when its response is ready.
pub async fn trace_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let is_probe = request.uri().path() == HEALTH_PATH;
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        status = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
    );
    let response = next.run(request).instrument(span.clone()).await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let status = response.status().as_u16();
    span.record("status", status);
    span.record("latency_ms", latency_ms);
    span.in_scope(|| {
        if response.status().is_server_error() {
            tracing::warn!(status, latency_ms, "request finished");
        } else if is_probe || is_refusal(status) {
            tracing::debug!(status, latency_ms, "request finished");
        } else {
            tracing::info!(status, latency_ms, "request finished");
        }
    });
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour_wanted(true, None));
        assert!(colour_wanted(true, Some("".into())));
        assert!(!colour_wanted(true, Some("1".into())));
        assert!(!colour_wanted(false, None));
    }
}
