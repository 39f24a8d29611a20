//! `/healthz` on both ports. The public one says only whether the service can issue
//! tokens (sign them, and record joins); the admin one adds the signer's detail and the store's figures.
//!
//! The admin one is 503 while the session journal cannot be written (a full disk, say):
//! changes are refused then, and `store.write_fault` says why. Damage that start-up
//! skipped in the journal is listed in `store.skipped` but is not a fault: the service
//! works, on the safe side of what was lost.

use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Json;
use axum::Router;
use serde::Serialize;

use crate::join::pin_check::PinChecker;
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
    /// Journal compactions finished since start.
    pub compactions: u64,
    /// Whether a journal compaction is under way (joins go on meanwhile).
    pub compacting: bool,
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
    let ready = state.signer.health().await.ready && state.store.health().write_fault.is_none();
    let (code, status) = status(ready);
    (code, Json(PublicHealth { status }))
}

pub async fn admin_health(
    State(state): State<AppState>,
    Extension(pins): Extension<Arc<PinChecker>>,
) -> (StatusCode, Json<AdminHealth>) {
    let signer = state.signer.health().await;
    let store = state.store.health();
    let write_fault = store.write_fault;
    let (code, status) = status(signer.ready && write_fault.is_none());
    let algorithm = state
        .signer
        .algorithm()
        .map(|algorithm| format!("{algorithm:?}"));
    // A running tally, not a pass over the sessions. A store that cannot count right now
    // is reported with none live rather than failing the whole report, whose point is to
    // say what is wrong.
    let live_sessions = match state.store.live_count(state.clock.unix_now()).await {
        Ok(count) => count,
        Err(error) => {
            tracing::warn!(%error, "cannot count live sessions for /healthz");
            0
        }
    };
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
                live_sessions,
                argon2_verifications: pins.argon2_verifications(),
                write_fault,
                skipped: store.skipped,
                torn_tail_bytes: store.torn_tail_bytes,
                compactions: store.compactions,
                compacting: store.compacting,
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
    Router::new().route(PATHS[0], get(admin_health))
}

/// `/healthz` of the public port.
pub(crate) fn public_router() -> Router<AppState> {
    Router::new().route(PATHS[0], get(public_health))
}

/// The route both ports serve.
pub(crate) const PATHS: &[&str] = &["/healthz"];
