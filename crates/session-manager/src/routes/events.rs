//! `GET /api/v1/events`: the admin event stream (Server-Sent Events, see
//! [`crate::events::sse`]), every event from the moment of the request, or only those of
//! one session with `?session=<id>`.

use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use crate::domain::SessionId;
use crate::error::ApiError;
use crate::extract::QueryParams;
use crate::state::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Only this session's events.
    pub session: Option<SessionId>,
}

pub async fn stream_events(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<EventsQuery>,
) -> Result<Response, ApiError> {
    let session = query.session.map(|id| id.as_str().to_owned());
    Ok(state.events.stream(session))
}

const EVENTS: &str = "/api/v1/events";
/// The paths of [`router`].
pub(crate) const PATHS: &[&str] = &[EVENTS];

/// The event stream; [`super::admin_router`] puts admin auth in front of it.
pub(crate) fn router() -> Router<AppState> {
    Router::new().route(EVENTS, get(stream_events))
}
