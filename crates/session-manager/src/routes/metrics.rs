//! `GET /metrics` on the admin port: every metric in the Prometheus text format.
//!
//! It sits beside `/healthz`, outside admin auth and the host check: Prometheus scrapes
//! by address without our admin key, the admin port listens on the trusted network only,
//! and the page holds counts, never names, addresses or secrets, and session ids only
//! with `ISM_MONITOR=log` (the monitor's per-session counters, appended from their
//! bounded table). The public port does not serve it. `ism_sessions_live` is read from
//! the store when the page is rendered, so the join path pays nothing for it.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::metrics::SESSIONS_LIVE;
use crate::state::AppState;

const METRICS: &str = "/metrics";
/// The paths of [`router`].
pub(crate) const PATHS: &[&str] = &[METRICS];

/// The Prometheus text format's media type.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

pub async fn render(State(state): State<AppState>) -> impl IntoResponse {
    match state.store.live_count(state.clock.unix_now()).await {
        // Counts far below 2^52 convert exactly.
        #[allow(clippy::cast_precision_loss)]
        Ok(live) => metrics::gauge!(SESSIONS_LIVE).set(live as f64),
        Err(error) => tracing::warn!(%error, "cannot count the live sessions for /metrics"),
    }
    let mut page = crate::metrics::install().render();
    state.monitor.render_counters(&mut page);
    ([(CONTENT_TYPE, TEXT_FORMAT)], page)
}

/// `/metrics`, on the admin port, open like `/healthz`.
pub(crate) fn router() -> Router<AppState> {
    Router::new().route(METRICS, get(render))
}
