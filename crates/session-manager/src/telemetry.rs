//! Logging: the tracing subscriber (pretty or JSON lines, on stderr so stdout stays free
//! for the machine-readable start-up line) and the request trace.
//!
//! Pretty logs are coloured only when stderr is a terminal and `NO_COLOR` is unset or
//! empty (no-color.org), so a redirected log holds no escape codes. `/healthz` requests
//! (container healthchecks, every few seconds) and answers 401 and 429 (refusals an
//! attacker can produce at will, logged in aggregate where they are decided) are logged
//! at DEBUG, server errors at WARN, the others at INFO.
//!
//! Every request carries a request id in `x-request-id` ([`trace_requests`]): the one a
//! trusted proxy sent (`ISM_TRUSTED_PROXIES`) when it is a sane token, else a fresh UUID.
//! The answer carries it back, and the request's span records it, so a client's or the
//! proxy's report of one request finds its log line. Request spans carry method, path,
//! route template, request id, status and latency only. Bodies and the `Authorization`
//! header are never recorded, so PINs, admin keys and tokens stay out of the logs.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue};
use axum::{middleware, Router};
use ipnet::IpNet;
use tower::util::MapRequestLayer;
use tower::ServiceBuilder;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::{MakeSpan, OnResponse, TraceLayer};
use tracing::{Level, Span};
use tracing_subscriber::EnvFilter;

use crate::client_ip::is_trusted_proxy;

use crate::config::LogFormat;
use crate::metrics::http::{record_request, PortMetrics, UNMATCHED_ROUTE};

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

/// The request id header, in requests and answers.
pub(crate) const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest request id kept from a proxy; a longer one is replaced.
const MAX_REQUEST_ID_BYTES: usize = 128;

/// 401 and 429: refused credentials and throttled requests, which an attacker can
/// produce at will. Their access-log lines are DEBUG; the refusals themselves are logged,
/// aggregated, where they are decided (`refusal_log`).
fn is_refusal(status: u16) -> bool {
    status == 401 || status == 429
}

/// Wraps `router` in the request trace: request ids (kept from a trusted proxy, else
/// made), one span per request and one log line when its answer is ready, and the id in
/// the answer's `x-request-id`; inside the span, the request metrics of the port
/// (`metrics`, [`crate::metrics::http`]).
///
/// The layers go on as one stack, with a single `Router::layer`: each `Router::layer` call
/// boxes every route once more, and a request clones and drops each box of its route.
pub(crate) fn trace_requests(
    router: Router,
    trusted_proxies: Arc<[IpNet]>,
    metrics: Arc<PortMetrics>,
) -> Router {
    let trace = TraceLayer::new_for_http()
        .make_span_with(RequestSpan)
        .on_request(())
        .on_response(RequestFinished)
        .on_body_chunk(())
        .on_eos(())
        // A server error is already logged at WARN by `RequestFinished`.
        .on_failure(());
    // Outermost first.
    router.layer(
        ServiceBuilder::new()
            .layer(MapRequestLayer::new(move |request: Request| {
                keep_request_id_of_trusted_proxies(request, &trusted_proxies)
            }))
            .layer(SetRequestIdLayer::new(REQUEST_ID_HEADER, FreshRequestId))
            .layer(PropagateRequestIdLayer::new(REQUEST_ID_HEADER))
            .layer(trace)
            .layer(middleware::from_fn_with_state(metrics, record_request)),
    )
}

/// Removes an incoming request id unless a trusted proxy sent it and it is a short run of
/// visible ASCII, so that the id layer makes a fresh one instead; anyone else could
/// otherwise plant ids (or junk) in the log.
fn keep_request_id_of_trusted_proxies(mut request: Request, trusted_proxies: &[IpNet]) -> Request {
    let keep = match request.headers().get(&REQUEST_ID_HEADER) {
        None => true,
        Some(value) => {
            let peer = request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip());
            peer.is_some_and(|peer| is_trusted_proxy(peer, trusted_proxies))
                && is_acceptable_request_id(value)
        }
    };
    if !keep {
        request.headers_mut().remove(&REQUEST_ID_HEADER);
    }
    request
}

/// Makes request ids: random (version 4) UUIDs from the thread's RNG, which costs no
/// system call per request (tower-http's `MakeRequestUuid` asks the OS every time).
#[derive(Debug, Clone, Copy)]
struct FreshRequestId;

impl MakeRequestId for FreshRequestId {
    fn make_request_id<B>(&mut self, _request: &axum::http::Request<B>) -> Option<RequestId> {
        let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let text = id.hyphenated().encode_lower(&mut text);
        HeaderValue::from_str(text).ok().map(RequestId::new)
    }
}

/// 1 to [`MAX_REQUEST_ID_BYTES`] bytes of visible ASCII.
fn is_acceptable_request_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    (1..=MAX_REQUEST_ID_BYTES).contains(&bytes.len())
        && bytes.iter().all(|byte| byte.is_ascii_graphic())
}

/// The span of one request: DEBUG for probes, INFO otherwise.
#[derive(Debug, Clone, Copy)]
struct RequestSpan;

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, request: &axum::http::Request<B>) -> Span {
        let path = request.uri().path();
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map_or(UNMATCHED_ROUTE, MatchedPath::as_str);
        let request_id = request
            .headers()
            .get(&REQUEST_ID_HEADER)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        macro_rules! request_span {
            ($level:expr) => {
                tracing::span!(
                    $level,
                    "request",
                    method = %request.method(),
                    path,
                    route,
                    request_id,
                    status = tracing::field::Empty,
                    latency_ms = tracing::field::Empty,
                )
            };
        }
        if path == HEALTH_PATH {
            request_span!(Level::DEBUG)
        } else {
            request_span!(Level::INFO)
        }
    }
}

/// The one log line of a request, when its answer is ready.
#[derive(Debug, Clone, Copy)]
struct RequestFinished;

impl<B> OnResponse<B> for RequestFinished {
    fn on_response(self, response: &axum::http::Response<B>, latency: Duration, span: &Span) {
        let latency_ms = latency.as_secs_f64() * 1000.0;
        let status = response.status().as_u16();
        span.record("status", status);
        span.record("latency_ms", latency_ms);
        // A probe's span is DEBUG; a span the filter turned off has no metadata, and
        // whatever it was, its INFO line would be filtered out too.
        let quiet_span = span
            .metadata()
            .is_none_or(|metadata| *metadata.level() == Level::DEBUG);
        span.in_scope(|| {
            if response.status().is_server_error() {
                tracing::warn!(status, latency_ms, "request finished");
            } else if quiet_span || is_refusal(status) {
                tracing::debug!(status, latency_ms, "request finished");
            } else {
                tracing::info!(status, latency_ms, "request finished");
            }
        });
    }
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

    #[test]
    fn only_short_visible_request_ids_are_kept() {
        let ok =
            |text: &str| is_acceptable_request_id(&HeaderValue::from_str(text).expect("value"));
        assert!(ok("3f2a-proxy.7:1"));
        assert!(!ok(""));
        assert!(!ok("two words"));
        assert!(!ok(&"x".repeat(MAX_REQUEST_ID_BYTES + 1)));
    }
}
