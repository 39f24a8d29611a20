//! HTTP request metrics: every answer counted by port, matched route template and status,
//! and timed by port and route.
//!
//! The route label is axum's [`MatchedPath`], the template (`/api/v1/sessions/{id}`),
//! never the raw path, so session ids and client names never become label values; a
//! request no route matched is labelled `unmatched`.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use metrics::SharedString;

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
    let status = status_label(response.status());
    metrics::histogram!(HTTP_REQUEST_DURATION_SECONDS, "port" => port, "route" => route.clone())
        .record(started.elapsed());
    metrics::counter!(HTTP_REQUESTS_TOTAL, "port" => port, "route" => route, "status" => status)
        .increment(1);
    response
}

/// The status label: a static string for the codes the service answers, so that the
/// common case allocates nothing.
fn status_label(status: StatusCode) -> SharedString {
    let known = match status.as_u16() {
        200 => "200",
        201 => "201",
        204 => "204",
        301 => "301",
        302 => "302",
        304 => "304",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        409 => "409",
        413 => "413",
        415 => "415",
        422 => "422",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        other => return SharedString::from(other.to_string()),
    };
    SharedString::const_str(known)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_labels_are_the_codes() {
        for code in [200, 401, 429, 503, 418, 599] {
            let status = StatusCode::from_u16(code).expect("a status");
            assert_eq!(status_label(status).as_ref(), code.to_string());
        }
    }
}
