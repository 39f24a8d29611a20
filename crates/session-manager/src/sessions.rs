//! Creating and closing sessions, shared by the versioned and the compat admin routes:
//! a new session gets a fresh PIN whose argon2id hash is what the store keeps; the PIN
//! itself leaves only in the creation's answer. Both emit their event
//! (`session_created`, `session_closed`) once the store has made the change durable.

use crate::domain::{Pin, SessionId};
use crate::events::EventKind;
use crate::join::pin_check::PinChecker;
use crate::state::AppState;
use crate::store::{NewSession, SessionInfo, StoreError};

/// A new session and its PIN, which exists in the clear only in this value.
#[derive(Debug, Clone)]
pub struct CreatedSession {
    pub session: SessionInfo,
    pub pin: Pin,
}

/// Creates a session with a fresh id and PIN; durable before it returns.
pub async fn create_session(
    state: &AppState,
    pins: &PinChecker,
    new: NewSession,
) -> Result<CreatedSession, StoreError> {
    let (pin, pin_hash) = pins.issue().await?;
    let session = state
        .store
        .create(new, pin_hash, state.clock.unix_now())
        .await?;
    // Its creator knows the PIN: joins need no argon2 in this process.
    pins.remember(&session.id, &pin);
    state.emit(EventKind::SessionCreated {
        session_id: session.id.as_str().to_owned(),
        session_type: session.session_type.as_str().to_owned(),
        expires_at: session.expires_at,
    });
    Ok(CreatedSession { session, pin })
}

/// Closes a session for good; `false` when it is unknown, already closed or expired. A
/// confirmed close is passed on to the broker, which disconnects the session's devices.
pub async fn close_session(
    state: &AppState,
    pins: &PinChecker,
    id: &SessionId,
) -> Result<bool, StoreError> {
    if !state.store.close(id).await? {
        return Ok(false);
    }
    pins.forget(id);
    state.session_closed(id.as_str());
    state.emit(EventKind::SessionClosed {
        session_id: id.as_str().to_owned(),
    });
    Ok(true)
}
