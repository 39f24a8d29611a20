//! The versioned admin API of a session's conductor:
//!
//! - `GET /api/v1/sessions/{id}/conductor` → `{"type", "api", "state"}`;
//! - `POST /api/v1/sessions/{id}/conductor/{method}` with `{"params": ...}` (any JSON,
//!   optional) → `{"result": "<the conductor's answer>"}`.
//!
//! An unknown, closed or expired session is a 404, and so is a method the session's
//! conductor does not have (its message is the original's answer for it).

use axum::extract::State;
use axum::routing::{get, post};
use axum::Json;
use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::conductor::{CallError, ConductorView};
use crate::domain::SessionId;
use crate::error::ApiError;
use crate::extract::{JsonBody, PathParams};
use crate::state::AppState;

/// Body of a call; `{}` calls without parameters.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallRequest {
    #[serde(default)]
    pub params: Value,
}

#[derive(Debug, Serialize)]
pub struct CallResult {
    pub result: String,
}

pub async fn view(
    State(state): State<AppState>,
    PathParams(id): PathParams<SessionId>,
) -> Result<Json<ConductorView>, ApiError> {
    Ok(Json(state.conductors.view(&id).await.map_err(api_error)?))
}

pub async fn call(
    State(state): State<AppState>,
    PathParams((id, method)): PathParams<(SessionId, String)>,
    JsonBody(request): JsonBody<CallRequest>,
) -> Result<Json<CallResult>, ApiError> {
    let result = state
        .conductors
        .call(&id, &method, &request.params)
        .await
        .map_err(api_error)?;
    Ok(Json(CallResult { result }))
}

/// An unknown session or method is a 404; the store's faults map as everywhere.
fn api_error(error: CallError) -> ApiError {
    match error {
        CallError::UnknownSession(_) | CallError::UnknownMethod(_) => {
            ApiError::NotFound(error.to_string())
        }
        CallError::Store(error) => error.into(),
    }
}

const CONDUCTOR: &str = "/api/v1/sessions/{id}/conductor";
const CONDUCTOR_METHOD: &str = "/api/v1/sessions/{id}/conductor/{method}";
/// The paths of [`router`].
pub(crate) const PATHS: &[&str] = &[CONDUCTOR, CONDUCTOR_METHOD];

/// The conductor API; [`super::admin_router`] puts admin auth in front of it.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route(CONDUCTOR, get(view))
        .route(CONDUCTOR_METHOD, post(call))
}
