//! `/healthz` on both ports. The public one says only whether the service can issue
//! tokens; the admin one adds the signer's detail and the store's figures.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;

use crate::signer::SignerHealth;
use crate::state::{unix_now, AppState};

#[derive(Debug, Serialize)]
pub struct PublicHealth {
    pub status: &'static str,
}

#[derive(Debug, Serialize)]
pub struct AdminHealth {
    pub status: &'static str,
    /// JWT algorithm of issued tokens; null when tokens are not signed (dev_no_auth).
    pub algorithm: Option<String>,
    pub signer: SignerHealth,
    pub store: StoreHealth,
    /// The revocation link to the broker; null when not configured.
    pub revocation: Option<RevocationHealth>,
}

#[derive(Debug, Serialize)]
pub struct RevocationHealth {
    pub connected: bool,
}

#[derive(Debug, Serialize)]
pub struct StoreHealth {
    pub live_sessions: usize,
    pub argon2_verifications: u64,
}

fn status(ready: bool) -> (StatusCode, &'static str) {
    if ready {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "degraded")
    }
}

pub async fn public_health(State(state): State<AppState>) -> (StatusCode, Json<PublicHealth>) {
    let (code, status) = status(state.signer.health().await.ready);
    (code, Json(PublicHealth { status }))
}

pub async fn admin_health(State(state): State<AppState>) -> (StatusCode, Json<AdminHealth>) {
    let signer = state.signer.health().await;
    let (code, status) = status(signer.ready);
    let algorithm = state
        .signer
        .algorithm()
        .map(|algorithm| format!("{algorithm:?}"));
    let stats = state.store.stats();
    (
        code,
        Json(AdminHealth {
            status,
            algorithm,
            signer,
            store: StoreHealth {
                live_sessions: state.store.live_count(unix_now()),
                argon2_verifications: stats.argon2_verifications,
            },
            revocation: state.revocation.as_ref().map(|link| RevocationHealth {
                connected: link.is_connected(),
            }),
        }),
    )
}
