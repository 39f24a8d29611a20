//! HTTP request metrics: every answer counted by port, matched route template and status,
//! and timed by port and route.
//!
//! The route label is axum's [`MatchedPath`], the template (`/api/v1/sessions/{id}`),
//! never the raw path, so session ids and client names never become label values; a
//! request no route matched is labelled `unmatched`.
//!
//! Each port's routes are known when its router is built, so [`PortMetrics`] holds a
//! handle per (route, status) of those, registered on first use ([`super::handle`]): a
//! request costs a short scan of the port's route names and two atomic updates instead of
//! two registry look-ups and a copy of its route. A route not given to [`PortMetrics::new`]
//! is still measured, through the registry.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use metrics::{Counter, Histogram, SharedString};

use super::{HTTP_REQUESTS_TOTAL, HTTP_REQUEST_DURATION_SECONDS};

/// The route label of requests no route matched (wrong port, unknown path).
pub(crate) const UNMATCHED_ROUTE: &str = "unmatched";

/// The status codes the service answers, labelled by a static string; any other is
/// labelled by its number all the same.
const KNOWN_STATUSES: [(u16, &str); 20] = [
    (200, "200"),
    (201, "201"),
    (204, "204"),
    (301, "301"),
    (302, "302"),
    (304, "304"),
    (400, "400"),
    (401, "401"),
    (403, "403"),
    (404, "404"),
    (405, "405"),
    (409, "409"),
    (413, "413"),
    (415, "415"),
    (422, "422"),
    (429, "429"),
    (500, "500"),
    (502, "502"),
    (503, "503"),
    (504, "504"),
];

/// The request metrics of one port ("admin" or "public"): the middleware's state.
#[derive(Debug)]
pub(crate) struct PortMetrics {
    port: &'static str,
    /// A handful per port: a scan is as quick as hashing the template would be.
    routes: Box<[RouteMetrics]>,
    /// Requests no route matched.
    unmatched: RouteMetrics,
}

/// The handles of one route of a port, each registered on first use.
#[derive(Debug)]
struct RouteMetrics {
    route: &'static str,
    duration: OnceLock<Histogram>,
    /// By the index of the status in [`KNOWN_STATUSES`].
    answers: [OnceLock<Counter>; KNOWN_STATUSES.len()],
}

impl RouteMetrics {
    fn new(route: &'static str) -> Self {
        RouteMetrics {
            route,
            duration: OnceLock::new(),
            answers: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    /// Times and counts one answer, on `port`.
    fn record(&self, port: &'static str, status: StatusCode, elapsed: Duration) {
        let route = self.route;
        self.duration
            .get_or_init(|| {
                metrics::histogram!(HTTP_REQUEST_DURATION_SECONDS, "port" => port, "route" => route)
            })
            .record(elapsed);
        let Some((index, label)) = known_status(status) else {
            metrics::counter!(HTTP_REQUESTS_TOTAL, "port" => port, "route" => route, "status" => status_label(status))
                .increment(1);
            return;
        };
        if let Some(answers) = self.answers.get(index) {
            answers
                .get_or_init(|| {
                    metrics::counter!(HTTP_REQUESTS_TOTAL, "port" => port, "route" => route, "status" => label)
                })
                .increment(1);
        }
    }
}

impl PortMetrics {
    /// The metrics of port `port`, serving `routes` (templates as given to the router).
    pub(crate) fn new(port: &'static str, routes: &[&'static str]) -> Arc<Self> {
        Arc::new(PortMetrics {
            port,
            routes: routes
                .iter()
                .map(|route| RouteMetrics::new(route))
                .collect(),
            unmatched: RouteMetrics::new(UNMATCHED_ROUTE),
        })
    }

    /// Times and counts one answer to a request that matched `matched` (none: `unmatched`).
    fn record(&self, matched: Option<&MatchedPath>, status: StatusCode, elapsed: Duration) {
        if !super::is_installed() {
            return;
        }
        let Some(matched) = matched else {
            self.unmatched.record(self.port, status, elapsed);
            return;
        };
        let template = matched.as_str();
        if let Some(known) = self.routes.iter().find(|known| known.route == template) {
            known.record(self.port, status, elapsed);
            return;
        }
        // A route the port was not told about: measured all the same, one copy of its name.
        let port = self.port;
        let route = SharedString::from(Arc::<str>::from(template));
        metrics::histogram!(HTTP_REQUEST_DURATION_SECONDS, "port" => port, "route" => route.clone())
            .record(elapsed);
        metrics::counter!(HTTP_REQUESTS_TOTAL, "port" => port, "route" => route, "status" => status_label(status))
            .increment(1);
    }
}

/// Middleware (`from_fn_with_state` with the port's [`PortMetrics`]): counts and times
/// every request.
pub(crate) async fn record_request(
    State(metrics): State<Arc<PortMetrics>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    // An `Arc` inside: the template is not copied.
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let response = next.run(request).await;
    metrics.record(matched.as_ref(), response.status(), started.elapsed());
    response
}

/// The index and label of a status the service answers, `None` for another.
fn known_status(status: StatusCode) -> Option<(usize, &'static str)> {
    let code = status.as_u16();
    KNOWN_STATUSES
        .iter()
        .enumerate()
        .find(|(_, (known, _))| *known == code)
        .map(|(index, (_, label))| (index, *label))
}

/// The status label: a static string for the codes the service answers, so that the
/// common case allocates nothing.
fn status_label(status: StatusCode) -> SharedString {
    match known_status(status) {
        Some((_, label)) => SharedString::const_str(label),
        None => SharedString::from(status.as_u16().to_string()),
    }
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

    #[tokio::test]
    async fn answers_are_counted_by_port_route_and_status_and_timed() {
        use axum::body::Body;
        use axum::routing::get;
        use tower::ServiceExt as _;

        let rendered = crate::metrics::install();
        let router = axum::Router::new()
            .route("/known", get(|| async { StatusCode::OK }))
            .route("/other/{x}", get(|| async { StatusCode::IM_A_TEAPOT }))
            .layer(axum::middleware::from_fn_with_state(
                PortMetrics::new("http-test", &["/known"]),
                record_request,
            ));
        for path in ["/known", "/known", "/other/1", "/nowhere"] {
            let request = axum::http::Request::get(path)
                .body(Body::empty())
                .expect("a request");
            router.clone().oneshot(request).await.expect("an answer");
        }
        let text = rendered.render();
        for line in [
            r#"ism_http_requests_total{port="http-test",route="/known",status="200"} 2"#,
            r#"ism_http_requests_total{port="http-test",route="/other/{x}",status="418"} 1"#,
            r#"ism_http_requests_total{port="http-test",route="unmatched",status="404"} 1"#,
            r#"ism_http_request_duration_seconds_count{port="http-test",route="/known"} 2"#,
            r#"ism_http_request_duration_seconds_count{port="http-test",route="/other/{x}"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
