//! The original service's routes, kept with their original request and response shapes
//! so existing clients keep working:
//!
//! - admin `GET /api/createSession?type=T` → `{"id","pin","type","clients"}`;
//! - admin `GET /api/closeSession?id=S` → `"Success"` or `"Error"`;
//! - admin `GET /api/conductorRequest?id=S&method=M&params=P` → the answer of the
//!   session's conductor, `"Could not locate session"` for an unknown, closed or expired
//!   session, `"Error: No handler function registered for method: M"` for a method it
//!   does not have;
//! - public `POST /api/joinSession` with `{"id","pin","client"}` → `{"token"}`.
//!
//! The original clients sent ids and PINs as strings or numbers, so both are accepted,
//! and the join takes its JSON body under any content type, as the original did (Tornado's
//! test client labels it `application/x-www-form-urlencoded`, scripts often send none).
//!
//! With `ISM_ADMIN_COMPAT_WITHOUT_KEY` the admin routes here need no admin key (the
//! original admin client sends none); see [`crate::admin_auth`].

use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::routing::{get, post};
use axum::Json;
use axum::Router;
use serde::{Deserialize, Serialize};

use super::admin::SessionDefaults;
use crate::client_ca::certificate_request;
use crate::client_ip::ClientIp;
use crate::conductor::{no_handler_answer, CallError, UNKNOWN_SESSION_ANSWER};
use crate::domain::{ClientName, Pin, SessionId, SessionType};
use crate::error::ApiError;
use crate::extract::{AnyContentTypeJson, QueryParams};
use crate::join::pin_check::PinChecker;
use crate::join::{join_session, JoinAttempt};
use crate::sessions;
use crate::state::AppState;
use crate::store::{ClientInfo, NewSession};

#[derive(Debug, Deserialize)]
pub struct CreateSessionQuery {
    #[serde(rename = "type")]
    pub session_type: Option<SessionType>,
}

#[derive(Debug, Serialize)]
pub struct CompatSession {
    pub id: String,
    pub pin: String,
    #[serde(rename = "type")]
    pub session_type: String,
    pub clients: Vec<ClientInfo>,
}

pub async fn create_session(
    State(state): State<AppState>,
    Extension(defaults): Extension<SessionDefaults>,
    Extension(pins): Extension<Arc<PinChecker>>,
    QueryParams(query): QueryParams<CreateSessionQuery>,
) -> Result<Json<CompatSession>, ApiError> {
    let new = NewSession {
        session_type: query.session_type.unwrap_or_default(),
        ttl_secs: None,
        max_clients: defaults.max_clients.map(std::num::NonZeroU32::get),
    };
    let created = sessions::create_session(&state, &pins, new).await?;
    tracing::info!(session_id = %created.session.id, "session created (compat route)");
    Ok(Json(CompatSession {
        id: created.session.id.as_str().to_owned(),
        pin: created.pin.as_str().to_owned(),
        session_type: created.session.session_type.as_str().to_owned(),
        clients: created.session.clients,
    }))
}

#[derive(Debug, Deserialize)]
pub struct CloseSessionQuery {
    pub id: Option<String>,
}

pub async fn close_session(
    State(state): State<AppState>,
    Extension(pins): Extension<Arc<PinChecker>>,
    QueryParams(query): QueryParams<CloseSessionQuery>,
) -> Result<Json<&'static str>, ApiError> {
    let Some(id) = query.id.as_deref().and_then(|id| SessionId::parse(id).ok()) else {
        return Ok(Json("Error"));
    };
    if sessions::close_session(&state, &pins, &id).await? {
        tracing::info!(session_id = %id, "session closed (compat route)");
        Ok(Json("Success"))
    } else {
        Ok(Json("Error"))
    }
}

#[derive(Debug, Deserialize)]
pub struct ConductorRequestQuery {
    pub id: Option<String>,
    pub method: Option<String>,
    pub params: Option<String>,
}

pub async fn conductor_request(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<ConductorRequestQuery>,
) -> Result<Json<String>, ApiError> {
    let Some(id) = query.id.as_deref().and_then(|id| SessionId::parse(id).ok()) else {
        return Ok(Json(UNKNOWN_SESSION_ANSWER.to_owned()));
    };
    let method = query.method.unwrap_or_default();
    let params = query
        .params
        .map_or(serde_json::Value::Null, serde_json::Value::String);
    match state.conductors.call(&id, &method, &params).await {
        Ok(answer) => Ok(Json(answer)),
        Err(CallError::UnknownSession(_)) => Ok(Json(UNKNOWN_SESSION_ANSWER.to_owned())),
        Err(CallError::UnknownMethod(method)) => Ok(Json(no_handler_answer(&method))),
        Err(CallError::Store(error)) => Err(error.into()),
    }
}

/// A string or an integer, as the original clients sent ids and PINs.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum StringOrNumber {
    Text(String),
    Number(u64),
}

impl StringOrNumber {
    fn into_string(self) -> String {
        match self {
            StringOrNumber::Text(text) => text,
            StringOrNumber::Number(number) => number.to_string(),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct CompatJoinRequest {
    pub id: StringOrNumber,
    pub pin: StringOrNumber,
    pub client: ClientName,
    /// Not in the original: a PEM certificate signing request, as on the v1 join.
    #[serde(default)]
    pub csr: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct CompatJoinResponse {
    pub token: String,
    /// Only when the join sent a `csr`, so the original shape is unchanged otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
}

pub async fn join_session_compat(
    State(state): State<AppState>,
    Extension(pins): Extension<Arc<PinChecker>>,
    ClientIp(client_ip): ClientIp,
    AnyContentTypeJson(request): AnyContentTypeJson<CompatJoinRequest>,
) -> Result<Json<CompatJoinResponse>, ApiError> {
    let attempt = JoinAttempt {
        session_id: SessionId::parse(&request.id.into_string())?,
        pin: Pin::parse(&request.pin.into_string())?,
        client: request.client,
        client_ip,
        certificate_request: certificate_request(
            state.client_ca.as_deref(),
            request.csr.as_deref(),
        )?,
    };
    let issued = join_session(&state, &pins, attempt).await?;
    Ok(Json(CompatJoinResponse {
        token: issued.token,
        certificate: issued.certificate,
    }))
}

/// The original service's admin routes (behind admin auth, like the v1 API).
pub(crate) fn admin_router() -> Router<AppState> {
    Router::new()
        .route(ADMIN_PATHS[0], get(create_session))
        .route(ADMIN_PATHS[1], get(close_session))
        .route(ADMIN_PATHS[2], get(conductor_request))
}

/// The paths of [`admin_router`].
pub(crate) const ADMIN_PATHS: &[&str] = &[
    "/api/createSession",
    "/api/closeSession",
    "/api/conductorRequest",
];

/// The original service's join route, on the public port.
pub(crate) fn public_router() -> Router<AppState> {
    Router::new().route(PUBLIC_PATHS[0], post(join_session_compat))
}

/// The paths of [`public_router`].
pub(crate) const PUBLIC_PATHS: &[&str] = &["/api/joinSession"];
