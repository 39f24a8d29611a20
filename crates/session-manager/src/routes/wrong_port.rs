//! Requests on the wrong port. The admin and public APIs listen on different ports, and a
//! newcomer easily sends a join to the admin port or a session creation to the public
//! one. Instead of a bare "no route", such a request gets a 404 (the usual JSON error)
//! naming the port that serves the route. The admin port also gives the public port's
//! address; the public port, which faces the internet, does not give out the admin
//! port's.
//!
//! [`router`] answers the other port's routes with that hint and everything else with the
//! plain 404; each port's router uses it as its fallback.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{Method, Uri};
use axum::routing::any;
use axum::Router;

use crate::error::ApiError;

/// The port a request should have gone to.
#[derive(Debug, Clone)]
pub(crate) struct OtherPort {
    /// "admin" or "public".
    pub name: &'static str,
    /// Where it listens, when this port may say so.
    pub addr: Option<SocketAddr>,
    /// Its routes (axum path patterns).
    pub paths: Vec<&'static str>,
}

/// Answers `other`'s routes with a 404 that points there, anything else with the plain
/// 404.
pub(crate) fn router(other: OtherPort, this_port: &'static str) -> Router {
    let port = match other.addr {
        Some(addr) => format!("the {} port ({addr})", other.name),
        None => format!("the {} port", other.name),
    };
    let hint: Arc<str> = Arc::from(format!("is served on {port}, not on this {this_port} port"));
    let mut router = Router::new();
    for path in other.paths {
        let path: &str = path;
        let hint = Arc::clone(&hint);
        router = router.route(
            path,
            any(move |method: Method, uri: Uri| async move {
                ApiError::NotFound(format!("{method} {} {hint}", uri.path()))
            }),
        );
    }
    router.fallback(super::not_found)
}
