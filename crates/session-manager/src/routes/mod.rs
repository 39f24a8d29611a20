//! HTTP routes of the two ports, and the JSON views of sessions they return.
//!
//! One module per resource, each with the handlers and its own `router()`; this module
//! composes them into the two ports' routers, with the layers every request passes:
//!
//! - [`admin`]: the versioned admin API (`/api/v1/sessions...`), behind admin auth;
//! - [`events`]: the admin event stream (`/api/v1/events`), behind admin auth;
//! - [`messages`]: a session's live MQTT messages (`/api/v1/sessions/{id}/messages`),
//!   behind admin auth;
//! - [`service_tokens`]: tokens for trusted backends (`/api/v1/service-tokens...`), behind
//!   admin auth;
//! - [`compat`]: the original service's routes with their original shapes;
//! - [`public`]: joining a session;
//! - [`jwks`]: the public keys brokers verify tokens with;
//! - [`health`]: `/healthz` on both ports;
//! - [`metrics`]: `/metrics` (Prometheus) on the admin port;
//! - [`wrong_port`]: the 404 that points a request to the port serving its route.
//!
//! A new resource is a new module with a `router()`, merged into [`admin_router`] or
//! [`public_router`] below.

pub(crate) mod admin;
pub(crate) mod compat;
pub(crate) mod conductor;
pub(crate) mod events;
pub(crate) mod health;
pub(crate) mod jwks;
pub(crate) mod messages;
pub(crate) mod metrics;
pub(crate) mod public;
pub(crate) mod service_tokens;
pub(crate) mod wrong_port;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, Method};
use axum::{middleware, Router};
use serde::Serialize;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{Any, CorsLayer};

use crate::admin_auth::request_origin::{refuse_foreign_requests, AllowedHosts};
use crate::admin_auth::{require_admin_key, AdminAuth};
use crate::broker::presence::{DevicePresenceView, PresenceTable};
use crate::domain::ClientName;
use crate::error::ApiError;
use crate::join::outcome::count_refused_input;
use crate::join::pin_check::PinChecker;
use crate::metrics::http::PortMetrics;
use crate::state::AppState;
use crate::store::{ClientInfo, SessionInfo};
use crate::telemetry;
use admin::SessionDefaults;
use wrong_port::OtherPort;

/// The routes the admin port serves besides `/healthz`.
fn admin_paths() -> Vec<&'static str> {
    [
        admin::PATHS,
        conductor::PATHS,
        events::PATHS,
        messages::PATHS,
        compat::ADMIN_PATHS,
        metrics::PATHS,
        service_tokens::PATHS,
    ]
    .concat()
}

/// The routes the public port serves besides `/healthz`.
fn public_paths() -> Vec<&'static str> {
    [public::PATHS, compat::PUBLIC_PATHS, jwks::PATHS].concat()
}

/// The admin port: the admin and compat APIs behind the host/origin check and admin
/// auth, `/healthz` and `/metrics` open for probes and scrapers.
pub(crate) fn admin_router(
    state: AppState,
    auth: Arc<AdminAuth>,
    allowed_hosts: Arc<AllowedHosts>,
    defaults: SessionDefaults,
    pins: Arc<PinChecker>,
    body_limit: usize,
    public_addr: SocketAddr,
) -> Router {
    let public_port = OtherPort {
        name: "public",
        addr: Some(public_addr),
        paths: public_paths(),
    };
    let guarded = Router::new()
        .merge(admin::router())
        .merge(conductor::router())
        .merge(events::router())
        .merge(messages::router())
        .merge(compat::admin_router())
        .merge(service_tokens::router())
        .route_layer(middleware::from_fn_with_state(auth, require_admin_key))
        // Outermost: a foreign page is refused before its key (if any) is even looked at.
        .route_layer(middleware::from_fn_with_state(
            allowed_hosts,
            refuse_foreign_requests,
        ))
        .layer(axum::Extension(defaults));
    let routes = Router::new()
        .merge(guarded)
        .merge(health::admin_router())
        .merge(metrics::router());
    let fallback = wrong_port::router(public_port, "admin");
    let trusted_proxies = Arc::clone(&state.trusted_proxies);
    let router = finish(routes, state, pins, body_limit, fallback);
    let served = [admin_paths().as_slice(), health::PATHS].concat();
    observe(router, "admin", &served, trusted_proxies)
}

/// The public port: joining, the JWKS and `/healthz`, open to any origin (CORS).
pub(crate) fn public_router(state: AppState, pins: Arc<PinChecker>, body_limit: usize) -> Router {
    let admin_port = OtherPort {
        name: "admin",
        addr: None,
        paths: admin_paths(),
    };
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::CONTENT_TYPE])
        .max_age(Duration::from_secs(3600));
    // Joins refused for their input never reach the join logic that counts the others.
    let joins = Router::new()
        .merge(public::router())
        .merge(compat::public_router())
        .route_layer(middleware::from_fn(count_refused_input));
    let routes = Router::new()
        .merge(joins)
        .merge(jwks::router())
        .merge(health::public_router());
    let fallback = wrong_port::router(admin_port, "public");
    let trusted_proxies = Arc::clone(&state.trusted_proxies);
    let router = finish(routes, state, pins, body_limit, fallback).layer(cors);
    let served = [public_paths().as_slice(), health::PATHS].concat();
    observe(router, "public", &served, trusted_proxies)
}

/// The outermost layers of a port: request metrics under `port`'s name (with handles for
/// the routes it `serves`), and the request trace with its request ids.
fn observe(
    router: Router,
    port: &'static str,
    serves: &[&'static str],
    trusted_proxies: Arc<[ipnet::IpNet]>,
) -> Router {
    telemetry::trace_requests(router, trusted_proxies, PortMetrics::new(port, serves))
}

/// What both ports share below their own outer layers: the PIN checker, the JSON 404/405
/// answers (`fallback` for unknown paths), the state, the body limit, and a panic turned into a 500 instead of a dropped
/// connection.
fn finish(
    routes: Router<AppState>,
    state: AppState,
    pins: Arc<PinChecker>,
    body_limit: usize,
    fallback: Router,
) -> Router {
    routes
        .layer(axum::Extension(pins))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback_service(fallback)
        .with_state(state)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(CatchPanicLayer::custom(panic_response))
}

fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    ApiError::Internal("a request handler panicked".to_owned()).into_response()
}

/// Clients in a session view when the request does not say (`clients_limit`), and the
/// most one page may hold: a session may have tens of thousands of clients, and a view
/// with all of them (1.3 MB for 25 000) is too big to build on every look.
pub(crate) const DEFAULT_CLIENTS_PAGE: usize = 100;
pub(crate) const MAX_CLIENTS_PAGE: usize = 1000;

/// One client in a session view: its join and its presence at the broker.
#[derive(Debug, Serialize)]
pub(crate) struct ClientView {
    #[serde(flatten)]
    pub client: ClientInfo,
    #[serde(flatten)]
    pub presence: DevicePresenceView,
}

/// A session as the admin API shows it (never with its PIN), with one page of its
/// clients in join order and how many of its devices are online.
#[derive(Debug, Serialize)]
pub(crate) struct SessionView {
    pub id: String,
    #[serde(rename = "type")]
    pub session_type: String,
    pub created_at: u64,
    pub expires_at: Option<u64>,
    pub max_clients: Option<u32>,
    pub topic_root: String,
    /// Devices of the session connected to the broker now.
    pub online_count: usize,
    pub clients: Vec<ClientView>,
    /// Cursor of the next page of clients (`?clients_after=`), None on the last page.
    pub clients_next: Option<String>,
}

impl SessionView {
    /// The view of `session` with at most `limit` clients, those after the client named
    /// `after` (from the first when None); 400 when `after` is not a client of the session.
    pub(crate) fn with_clients(
        session: SessionInfo,
        after: Option<&ClientName>,
        limit: usize,
        presence: &PresenceTable,
        now: u64,
    ) -> Result<Self, ApiError> {
        let start = match after {
            None => 0,
            Some(after) => {
                let position = session
                    .clients
                    .iter()
                    .position(|client| &client.name == after)
                    .ok_or_else(|| {
                        ApiError::BadRequest(format!(
                            "clients_after: no client {} in this session",
                            after.as_str()
                        ))
                    })?;
                position + 1
            }
        };
        Ok(Self::from_position(session, start, limit, presence, now))
    }

    /// The view with the first [`DEFAULT_CLIENTS_PAGE`] clients.
    pub(crate) fn first_page(session: SessionInfo, presence: &PresenceTable, now: u64) -> Self {
        Self::from_position(session, 0, DEFAULT_CLIENTS_PAGE, presence, now)
    }

    /// The view with at most `limit` clients from position `start` (join order).
    fn from_position(
        session: SessionInfo,
        start: usize,
        limit: usize,
        presence: &PresenceTable,
        now: u64,
    ) -> Self {
        let mut clients = session.clients;
        let end = start.saturating_add(limit).min(clients.len());
        let start = start.min(end);
        let clients_next = if end < clients.len() && end > start {
            clients
                .get(end - 1)
                .map(|client| client.name.as_str().to_owned())
        } else {
            None
        };
        clients.truncate(end);
        clients.drain(..start);
        let session_id = session.id.as_str();
        let clients = clients
            .into_iter()
            .map(|client| ClientView {
                presence: presence.device(session_id, client.name.as_str(), now),
                client,
            })
            .collect();
        SessionView {
            online_count: presence.online_count(session_id),
            topic_root: session_token::claims::session_topic_root(session.id.as_str()),
            id: session.id.as_str().to_owned(),
            session_type: session.session_type.as_str().to_owned(),
            created_at: session.created_at,
            expires_at: session.expires_at,
            max_clients: session.max_clients,
            clients,
            clients_next,
        }
    }
}

/// `clients_limit` checked: 1 to [`MAX_CLIENTS_PAGE`], [`DEFAULT_CLIENTS_PAGE`] when absent.
pub(crate) fn clients_page_size(requested: Option<usize>) -> Result<usize, ApiError> {
    let limit = requested.unwrap_or(DEFAULT_CLIENTS_PAGE);
    if (1..=MAX_CLIENTS_PAGE).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::BadRequest(format!(
            "clients_limit must be between 1 and {MAX_CLIENTS_PAGE}"
        )))
    }
}

/// Fallback of both routers: JSON 404 instead of an empty body.
async fn not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {method} {}", uri.path()))
}

/// Fallback for a known path with the wrong method: JSON 405.
async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
