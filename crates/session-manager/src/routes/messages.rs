//! `GET /api/v1/sessions/{id}/messages`: the live messages of one session as Server-Sent
//! Events (see [`crate::monitor::stream`]), from the moment of the request.
//!
//! An unknown, closed or expired session is a 404 (there is nothing left to read); a
//! session closed or expiring while it is read ends the stream. Without a broker link
//! nothing can be read: 503 `no_broker_link`.

use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use crate::domain::SessionId;
use crate::error::ApiError;
use crate::extract::PathParams;
use crate::state::AppState;

pub async fn stream_messages(
    State(state): State<AppState>,
    PathParams(id): PathParams<SessionId>,
) -> Result<Response, ApiError> {
    if !state.monitor.is_linked() {
        return Err(ApiError::NoBrokerLink);
    }
    state
        .store
        .get(&id, state.clock.unix_now())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no live session {id}")))?;
    Ok(state.monitor.open_stream(&id))
}

const MESSAGES: &str = "/api/v1/sessions/{id}/messages";
/// The paths of [`router`].
pub(crate) const PATHS: &[&str] = &[MESSAGES];

/// The live message streams; [`super::admin_router`] puts admin auth in front of them.
pub(crate) fn router() -> Router<AppState> {
    Router::new().route(MESSAGES, get(stream_messages))
}
