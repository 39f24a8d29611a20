//! The public API devices use: `POST /api/v1/sessions/{id}/join`.

use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::routing::post;
use axum::Json;
use axum::Router;
use serde::{Deserialize, Serialize};

use crate::client_ip::ClientIp;
use crate::domain::{ClientName, Pin, SessionId};
use crate::error::ApiError;
use crate::extract::{JsonBody, PathParams};
use crate::join::pin_check::PinChecker;
use crate::join::{certificate_request, join_session, JoinAttempt};
use crate::state::AppState;

#[derive(Debug, Deserialize)]
pub struct JoinRequest {
    pub pin: Pin,
    pub client: ClientName,
    /// A PEM certificate signing request: the answer then carries a client certificate.
    #[serde(default)]
    pub csr: Option<String>,
}

/// MQTT credentials for the device: the username is its client name, the client id the
/// session-scoped `"{session_id}/{client}"` (no other session's device can take it over;
/// the bare name still works for older clients), the password is the token.
#[derive(Debug, Serialize)]
pub struct JoinResponse {
    pub token: String,
    pub username: String,
    pub client_id: String,
    pub session_id: String,
    pub topic_root: String,
    pub expires_at: u64,
    /// The client certificate (PEM) for the broker's certificate listener, when the join
    /// sent a `csr`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
}

pub async fn join(
    State(state): State<AppState>,
    Extension(pins): Extension<Arc<PinChecker>>,
    ClientIp(client_ip): ClientIp,
    PathParams(session_id): PathParams<SessionId>,
    JsonBody(request): JsonBody<JoinRequest>,
) -> Result<Json<JoinResponse>, ApiError> {
    let attempt = JoinAttempt {
        session_id,
        pin: request.pin,
        client: request.client,
        client_ip,
        certificate_request: certificate_request(&state, request.csr.as_deref())?,
    };
    let issued = join_session(&state, &pins, attempt).await?;
    let claims = issued.claims;
    Ok(Json(JoinResponse {
        token: issued.token,
        client_id: session_token::scoped_client_id(&claims.sid, &claims.sub),
        username: claims.sub,
        topic_root: session_token::claims::session_topic_root(&claims.sid),
        session_id: claims.sid,
        expires_at: claims.exp,
        certificate: issued.certificate,
    }))
}

const JOIN: &str = "/api/v1/sessions/{id}/join";
/// The paths of [`router`].
pub(crate) const PATHS: &[&str] = &[JOIN];

/// Joining a session, on the public port.
pub(crate) fn router() -> Router<AppState> {
    Router::new().route(JOIN, post(join))
}
