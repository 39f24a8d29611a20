//! The versioned admin API: create, list, inspect and close sessions, and kick a device
//! out of its session. Views of a session carry one page of its clients with their
//! presence (see [`super::SessionView`]).

use std::num::{NonZeroU32, NonZeroU64};
use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Json;
use axum::Router;
use serde::{Deserialize, Serialize};

use super::{clients_page_size, SessionView};
use crate::domain::{ClientName, SessionId, SessionType};
use crate::error::ApiError;
use crate::extract::{JsonBody, PathParams, QueryParams};
use crate::join::pin_check::PinChecker;
use crate::sessions;
use crate::state::AppState;
use crate::store::NewSession;

/// Page size of `GET /api/v1/sessions` when no `limit` is given, and the most allowed.
const DEFAULT_PAGE_SIZE: usize = 100;
const MAX_PAGE_SIZE: usize = 1000;

/// What a session gets when its creator leaves a setting out.
#[derive(Debug, Clone, Copy, Default)]
pub struct SessionDefaults {
    /// `max_clients` of sessions created without one; None: no limit.
    pub max_clients: Option<NonZeroU32>,
}

/// Body of `POST /api/v1/sessions`; every field is optional (`{}` takes the defaults), the
/// body itself is not.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSessionRequest {
    #[serde(rename = "type", default)]
    pub session_type: Option<SessionType>,
    #[serde(default)]
    pub ttl_secs: Option<NonZeroU64>,
    #[serde(default)]
    pub max_clients: Option<NonZeroU32>,
}

#[derive(Debug, Serialize)]
pub struct CreatedSessionView {
    #[serde(flatten)]
    pub session: SessionView,
    pub pin: String,
}

pub async fn create_session(
    State(state): State<AppState>,
    Extension(defaults): Extension<SessionDefaults>,
    Extension(pins): Extension<Arc<PinChecker>>,
    JsonBody(request): JsonBody<CreateSessionRequest>,
) -> Result<Response, ApiError> {
    let new = NewSession {
        session_type: request.session_type.unwrap_or_default(),
        ttl_secs: request.ttl_secs.map(NonZeroU64::get),
        max_clients: request
            .max_clients
            .or(defaults.max_clients)
            .map(NonZeroU32::get),
    };
    let created = sessions::create_session(&state, &pins, new).await?;
    tracing::info!(session_id = %created.session.id, "session created");
    let location = format!("/api/v1/sessions/{}", created.session.id);
    let body = CreatedSessionView {
        session: SessionView::first_page(created.session, &state.presence, state.clock.unix_now()),
        pin: created.pin.as_str().to_owned(),
    };
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(body),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub limit: Option<usize>,
    pub after: Option<SessionId>,
}

#[derive(Debug, Serialize)]
pub struct SessionPage {
    pub sessions: Vec<SessionView>,
    /// Cursor for the next page (`?after=`), None on the last page.
    pub next: Option<String>,
}

pub async fn list_sessions(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Json<SessionPage>, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_PAGE_SIZE);
    if !(1..=MAX_PAGE_SIZE).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit must be between 1 and {MAX_PAGE_SIZE}"
        )));
    }
    // One more than asked tells whether another page follows.
    let now = state.clock.unix_now();
    let mut sessions = state
        .store
        .list(now, query.after.as_ref(), limit + 1)
        .await?;
    let next = if sessions.len() > limit {
        sessions.truncate(limit);
        sessions
            .last()
            .map(|session| session.id.as_str().to_owned())
    } else {
        None
    };
    Ok(Json(SessionPage {
        sessions: sessions
            .into_iter()
            .map(|session| SessionView::first_page(session, &state.presence, now))
            .collect(),
        next,
    }))
}

/// Query of `GET /api/v1/sessions/{id}`: which page of the session's clients to show.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionQuery {
    pub clients_limit: Option<usize>,
    pub clients_after: Option<ClientName>,
}

pub async fn get_session(
    State(state): State<AppState>,
    PathParams(id): PathParams<SessionId>,
    QueryParams(query): QueryParams<SessionQuery>,
) -> Result<Json<SessionView>, ApiError> {
    let limit = clients_page_size(query.clients_limit)?;
    let now = state.clock.unix_now();
    let session = state
        .store
        .get(&id, now)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no live session {id}")))?;
    Ok(Json(SessionView::with_clients(
        session,
        query.clients_after.as_ref(),
        limit,
        &state.presence,
        now,
    )?))
}

pub async fn close_session(
    State(state): State<AppState>,
    Extension(pins): Extension<Arc<PinChecker>>,
    PathParams(id): PathParams<SessionId>,
) -> Result<StatusCode, ApiError> {
    if sessions::close_session(&state, &pins, &id).await? {
        tracing::info!(session_id = %id, "session closed");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("no live session {id}")))
    }
}

/// `DELETE /api/v1/sessions/{id}/clients/{name}`: kicks the device out (its connections
/// are cut, its older tokens refused); a fresh join with the PIN works at once. 404 when
/// the session is not live or the name never joined it.
pub async fn kick_client(
    State(state): State<AppState>,
    PathParams((id, client)): PathParams<(SessionId, ClientName)>,
) -> Result<StatusCode, ApiError> {
    let now = state.clock.unix_now();
    let Some(kick) = state.store.kick(&id, &client, now).await? else {
        return Err(ApiError::NotFound(format!(
            "no client {} in a live session {id}",
            client.as_str()
        )));
    };
    tracing::info!(session_id = %id, client = %client, generation = kick.generation, "device kicked");
    state.device_kicked(&kick);
    Ok(StatusCode::NO_CONTENT)
}

const SESSIONS: &str = "/api/v1/sessions";
const SESSION: &str = "/api/v1/sessions/{id}";
const SESSION_CLIENT: &str = "/api/v1/sessions/{id}/clients/{name}";
/// The paths of [`router`].
pub(crate) const PATHS: &[&str] = &[SESSIONS, SESSION, SESSION_CLIENT];

/// The versioned admin API; [`super::admin_router`] puts admin auth in front of it.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route(SESSIONS, post(create_session).get(list_sessions))
        .route(SESSION, get(get_session).delete(close_session))
        .route(SESSION_CLIENT, delete(kick_client))
}
