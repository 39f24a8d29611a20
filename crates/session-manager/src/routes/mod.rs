//! HTTP routes of the two ports, and the JSON views of sessions they return.
//!
//! - [`admin`]: the versioned admin API (`/api/v1/sessions...`), behind admin auth;
//! - [`compat`]: the original service's routes with their original shapes;
//! - [`public`]: joining and the JWKS;
//! - [`health`]: `/healthz` on both ports.

pub mod admin;
pub mod compat;
pub mod health;
pub mod public;

use axum::http::Method;
use serde::Serialize;

use crate::error::ApiError;
use crate::store::{ClientInfo, SessionInfo};

/// A session as the admin API shows it (never with its PIN).
#[derive(Debug, Serialize)]
pub struct SessionView {
    pub id: String,
    #[serde(rename = "type")]
    pub session_type: String,
    pub created_at: u64,
    pub expires_at: Option<u64>,
    pub max_clients: Option<u32>,
    pub topic_root: String,
    pub clients: Vec<ClientInfo>,
}

impl From<SessionInfo> for SessionView {
    fn from(session: SessionInfo) -> Self {
        SessionView {
            topic_root: session_token::claims::session_topic_root(session.id.as_str()),
            id: session.id.as_str().to_owned(),
            session_type: session.session_type.as_str().to_owned(),
            created_at: session.created_at,
            expires_at: session.expires_at,
            max_clients: session.max_clients,
            clients: session.clients,
        }
    }
}

/// Fallback of both routers: JSON 404 instead of an empty body.
pub async fn not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {method} {}", uri.path()))
}

/// Fallback for a known path with the wrong method: JSON 405.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
