//! `GET /.well-known/jwks.json`: the public keys brokers (our plugin, EMQX) verify device
//! tokens with. Empty in `dev_no_auth`. Cacheable for a few minutes: keys change only on
//! rotation, when the new key is published before it signs.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

use crate::state::AppState;

async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(state.signer.jwks()),
    )
}

/// The JWKS, on the public port.
pub(crate) fn router() -> Router<AppState> {
    Router::new().route(PATHS[0], get(jwks))
}

/// The paths of [`router`].
pub(crate) const PATHS: &[&str] = &["/.well-known/jwks.json"];
