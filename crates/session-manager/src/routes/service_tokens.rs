//! The admin API of service tokens (tokens for trusted backends): issue
//! (`POST /api/v1/service-tokens`), list (`GET`, never the tokens themselves) and revoke
//! (`DELETE /api/v1/service-tokens/{jti}`, which also cuts off a connected holder). What
//! issuing and revoking mean lives in [`crate::service_tokens`].

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::domain::ServiceTokenName;
use crate::error::ApiError;
use crate::extract::{JsonBody, PathParams};
use crate::service_tokens::{self, ServiceTokenRequest};
use crate::state::AppState;
use crate::store::ServiceTokenInfo;

/// Body of `POST /api/v1/service-tokens`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateServiceTokenRequest {
    pub name: ServiceTokenName,
    #[serde(default)]
    pub subscribe: Vec<String>,
    #[serde(default)]
    pub publish: Vec<String>,
    #[serde(default)]
    pub ttl_secs: Option<u64>,
}

/// What anyone may see of a service token: everything but the token.
#[derive(Debug, Serialize)]
pub struct ServiceTokenView {
    pub jti: String,
    pub name: ServiceTokenName,
    /// The MQTT username and client id the token connects with (its `sub`).
    pub client_id: String,
    pub subscribe: Vec<String>,
    pub publish: Vec<String>,
    pub issued_at: u64,
    pub expires_at: u64,
    pub revoked: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<u64>,
}

impl From<ServiceTokenInfo> for ServiceTokenView {
    fn from(token: ServiceTokenInfo) -> Self {
        ServiceTokenView {
            client_id: service_tokens::client_id_of(&token.name),
            jti: token.jti,
            name: token.name,
            subscribe: token.subscribe,
            publish: token.publish,
            issued_at: token.issued_at,
            expires_at: token.expires_at,
            revoked: token.revoked_at.is_some(),
            revoked_at: token.revoked_at,
        }
    }
}

/// The answer to an issue: the view plus the token, shown this once.
#[derive(Debug, Serialize)]
pub struct CreatedServiceTokenView {
    pub token: String,
    /// Equal to `client_id`; the MQTT username to send with the token as password.
    pub username: String,
    #[serde(flatten)]
    pub view: ServiceTokenView,
}

#[derive(Debug, Serialize)]
pub struct ServiceTokenList {
    pub service_tokens: Vec<ServiceTokenView>,
}

pub async fn create_service_token(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<CreateServiceTokenRequest>,
) -> Result<Response, ApiError> {
    let issued = service_tokens::issue_service_token(
        &state,
        ServiceTokenRequest {
            name: request.name,
            subscribe: request.subscribe,
            publish: request.publish,
            ttl_secs: request.ttl_secs,
        },
    )
    .await?;
    let location = format!("{SERVICE_TOKENS}/{}", issued.info.jti);
    let view = ServiceTokenView::from(issued.info);
    let body = CreatedServiceTokenView {
        token: issued.token,
        username: issued.claims.sub,
        view,
    };
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(body),
    )
        .into_response())
}

pub async fn list_service_tokens(
    State(state): State<AppState>,
) -> Result<Json<ServiceTokenList>, ApiError> {
    let now = state.clock.unix_now();
    let tokens = state.store.service_tokens(now).await?;
    Ok(Json(ServiceTokenList {
        service_tokens: tokens.into_iter().map(ServiceTokenView::from).collect(),
    }))
}

/// 404 when no live service token has that id; revoking again answers 204 again.
pub async fn revoke_service_token(
    State(state): State<AppState>,
    PathParams(jti): PathParams<String>,
) -> Result<StatusCode, ApiError> {
    match service_tokens::revoke_service_token(&state, &jti).await? {
        Some(_) => Ok(StatusCode::NO_CONTENT),
        None => Err(ApiError::NotFound(format!("no live service token {jti:?}"))),
    }
}

const SERVICE_TOKENS: &str = "/api/v1/service-tokens";
const SERVICE_TOKEN: &str = "/api/v1/service-tokens/{jti}";
/// The paths of [`router`].
pub(crate) const PATHS: &[&str] = &[SERVICE_TOKENS, SERVICE_TOKEN];

/// The service-token admin API; [`super::admin_router`] puts admin auth in front of it.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route(
            SERVICE_TOKENS,
            post(create_service_token).get(list_service_tokens),
        )
        .route(SERVICE_TOKEN, delete(revoke_service_token))
}
