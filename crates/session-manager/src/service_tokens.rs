//! Service tokens: what issuing and revoking a token for a trusted backend means,
//! independent of HTTP (the admin routes in `routes/service_tokens.rs` and the
//! `session-manager token` command both end here, the latter through the admin API).
//!
//! A service token has no session: its `sub`, MQTT username and client id are
//! `$svc-<name>`, its grants are the filters the operator lists, each checked by
//! `session_token::check_service_grant` (never `$CONTROL`, never a first-level wildcard,
//! never publishing into a session's system sub-trees), and it lives `ttl_secs` (default
//! [`DEFAULT_SERVICE_TOKEN_TTL_SECS`], at most [`MAX_SERVICE_TOKEN_TTL_SECS`]).
//!
//! Issuing signs first and records second: the token is handed out only once the store
//! holds it durably, so every token in use can be listed and revoked. Revoking records the
//! revocation durably, then hands it to the broker link, which tells the broker (and tells
//! it again after any restart, for as long as the token could live): the broker cuts the
//! holder off and refuses the token from then on. Both are events
//! (`service_token_issued`, `service_token_revoked`) on the admin stream and webhooks.

use session_token::{check_service_grant, service_subject, Claims, GrantKind, ServiceGrant};

use crate::broker::revoked_token;
use crate::domain::ServiceTokenName;
use crate::error::ApiError;
use crate::events::EventKind;
use crate::state::AppState;
use crate::store::{RevokedServiceToken, ServiceTokenInfo, MAX_SERVICE_TOKEN_TTL_SECS};

/// Lifetime of a service token issued without `ttl_secs`: 30 days.
pub const DEFAULT_SERVICE_TOKEN_TTL_SECS: u64 = 30 * 24 * 3600;

/// Most filters in each of a service token's grant lists.
pub const MAX_GRANTS: usize = 64;

/// What the operator asks for.
#[derive(Debug, Clone)]
pub struct ServiceTokenRequest {
    pub name: ServiceTokenName,
    pub subscribe: Vec<String>,
    pub publish: Vec<String>,
    /// `None`: [`DEFAULT_SERVICE_TOKEN_TTL_SECS`].
    pub ttl_secs: Option<u64>,
}

/// A signed service token, its claims and what the store keeps of it.
#[derive(Debug, Clone)]
pub struct IssuedServiceToken {
    pub token: String,
    pub claims: Claims,
    pub info: ServiceTokenInfo,
}

/// Checks every grant of `request` and its lifetime; the first problem, naming the filter.
pub fn check_request(request: &ServiceTokenRequest) -> Result<u64, ApiError> {
    if request.subscribe.is_empty() && request.publish.is_empty() {
        return Err(ApiError::BadRequest(
            "a service token must grant at least one subscribe or publish filter".to_owned(),
        ));
    }
    for (list, kind) in [
        (&request.subscribe, GrantKind::Subscribe),
        (&request.publish, GrantKind::Publish),
    ] {
        if list.len() > MAX_GRANTS {
            return Err(ApiError::BadRequest(format!(
                "at most {MAX_GRANTS} {kind} filters may be granted"
            )));
        }
        for filter in list {
            check_service_grant(filter, kind).map_err(|refusal| {
                ApiError::BadRequest(format!(
                    "{kind} filter {filter:?} cannot be granted: {refusal}"
                ))
            })?;
        }
    }
    let ttl_secs = request.ttl_secs.unwrap_or(DEFAULT_SERVICE_TOKEN_TTL_SECS);
    if !(1..=MAX_SERVICE_TOKEN_TTL_SECS).contains(&ttl_secs) {
        return Err(ApiError::BadRequest(format!(
            "ttl_secs must be between 1 and {MAX_SERVICE_TOKEN_TTL_SECS} (366 days)"
        )));
    }
    Ok(ttl_secs)
}

/// Issues a service token: checks the request, signs, records it durably, returns it.
pub async fn issue_service_token(
    state: &AppState,
    request: ServiceTokenRequest,
) -> Result<IssuedServiceToken, ApiError> {
    let ttl_secs = check_request(&request)?;
    let now = state.clock.unix_now();
    let jti = uuid::Uuid::new_v4().to_string();
    let claims = Claims::for_service(&ServiceGrant {
        issuer: &state.tokens.issuer,
        name: request.name.as_str(),
        issued_at: now,
        lifetime_secs: ttl_secs,
        token_id: &jti,
        subscribe: &request.subscribe,
        publish: &request.publish,
    });
    let token = state.signer.sign(&claims).await?;
    let info = ServiceTokenInfo {
        jti,
        name: request.name,
        subscribe: request.subscribe,
        publish: request.publish,
        issued_at: now,
        expires_at: claims.exp,
        revoked_at: None,
    };
    state.store.service_token_issued(info.clone()).await?;
    tracing::info!(
        jti = %info.jti,
        name = %info.name,
        subscribe = ?info.subscribe,
        publish = ?info.publish,
        expires_at = info.expires_at,
        "service token issued"
    );
    state.emit(EventKind::ServiceTokenIssued {
        jti: info.jti.clone(),
        name: info.name.to_string(),
        expires_at: info.expires_at,
    });
    Ok(IssuedServiceToken {
        token,
        claims,
        info,
    })
}

/// Revokes service token `jti` and tells the broker; `None` when no live service token
/// has that id. Revoking twice is harmless (the first revocation stands).
pub async fn revoke_service_token(
    state: &AppState,
    jti: &str,
) -> Result<Option<ServiceTokenInfo>, ApiError> {
    let now = state.clock.unix_now();
    let Some(RevokedServiceToken { token, newly }) =
        state.store.revoke_service_token(jti, now).await?
    else {
        return Ok(None);
    };
    if let (Some(link), Some(revoked)) = (&state.revocation, revoked_token(&token)) {
        link.token_revoked(revoked);
    }
    // A token revoked before keeps its first revocation: announced then, not again.
    if newly {
        tracing::info!(jti = %token.jti, name = %token.name, "service token revoked");
        state.emit(EventKind::ServiceTokenRevoked {
            jti: token.jti.clone(),
            name: token.name.to_string(),
        });
    }
    Ok(Some(token))
}

/// The MQTT username and client id a service token named `name` connects with.
pub fn client_id_of(name: &ServiceTokenName) -> String {
    service_subject(name.as_str())
}
