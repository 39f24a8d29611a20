//! `/healthz` on both ports. The public one says only whether the service can issue
//! tokens (sign them, and record joins); the admin one adds the signer's detail and the store's figures.
//!
//! The admin one is 503 while the session journal cannot be written (a full disk, say):
//! changes are refused then, and `store.write_fault` says why. Damage that start-up
//! skipped in the journal is listed in `store.skipped` but is not a fault: the service
//! works, on the safe side of what was lost.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Json;
use axum::Router;
use serde::Serialize;

use crate::signer::SignerHealth;
use crate::state::AppState;
use crate::store::SkippedRange;

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
    /// Closes noted but not yet handed to the broker connection.
    pub pending: usize,
}

#[derive(Debug, Serialize)]
pub struct StoreHealth {
    /// `ok`, or `write_failing` while changes are refused.
    pub status: &'static str,
    pub live_sessions: usize,
    pub argon2_verifications: u64,
    /// Why the journal cannot be written right now; absent when it can.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_fault: Option<String>,
    /// Damaged journal ranges start-up skipped (offset, length, what was concluded).
    pub skipped: Vec<SkippedRange>,
    /// Bytes of torn tail (an append cut short by a crash) start-up cut off.
    pub torn_tail_bytes: u64,
}

fn status(ready: bool) -> (StatusCode, &'static str) {
    if ready {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "degraded")
    }
}

pub async fn public_health(State(state): State<AppState>) -> (StatusCode, Json<PublicHealth>) {
    // Joins write to the journal too: a store that cannot write cannot admit devices.
    let ready = state.signer.health().await.ready && state.store.write_fault().is_none();
    let (code, status) = status(ready);
    (code, Json(PublicHealth { status }))
}

pub async fn admin_health(State(state): State<AppState>) -> (StatusCode, Json<AdminHealth>) {
    let signer = state.signer.health().await;
    let write_fault = state.store.write_fault();
    let (code, status) = status(signer.ready && write_fault.is_none());
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
                status: if write_fault.is_some() {
                    "write_failing"
                } else {
                    "ok"
                },
                live_sessions: state.store.live_count(state.clock.unix_now()),
                argon2_verifications: stats.argon2_verifications,
                write_fault,
                skipped: state.store.skipped_ranges().to_vec(),
                torn_tail_bytes: state.store.torn_tail_bytes(),
            },
            revocation: state.revocation.as_ref().map(|link| RevocationHealth {
                connected: link.is_connected(),
                pending: link.pending(),
            }),
        }),
    )
}

/// `/healthz` of the admin port: the whole report, open to probes (no admin auth).
pub(crate) fn admin_router() -> Router<AppState> {
    Router::new().route("/healthz", get(admin_health))
}

/// `/healthz` of the public port.
pub(crate) fn public_router() -> Router<AppState> {
    Router::new().route("/healthz", get(public_health))
}
