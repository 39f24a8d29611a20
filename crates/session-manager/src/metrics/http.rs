//! HTTP request metrics: every answer counted by port, matched route template and status,
//! and timed by port and route.
//!
//! The route label is axum's [`MatchedPath`], the template (`/api/v1/sessions/{id}`),
//! never the raw path, so session ids and client names never become label values; a
//! request no route matched is labelled `unmatched`.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::{HTTP_REQUESTS_TOTAL, HTTP_REQUEST_DURATION_SECONDS};

/// The route label of requests no route matched (wrong port, unknown path).
pub(crate) const UNMATCHED_ROUTE: &str = "unmatched";

/// Middleware (`from_fn_with_state` with the port's name, "admin" or "public"): counts
/// and times every request.
pub(crate) async fn record_request(
    State(port): State<&'static str>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED_ROUTE, MatchedPath::as_str)
        .to_owned();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!(HTTP_REQUEST_DURATION_SECONDS, "port" => port, "route" => route.clone())
        .record(started.elapsed());
    metrics::counter!(HTTP_REQUESTS_TOTAL, "port" => port, "route" => route, "status" => status)
        .increment(1);
    response
}
