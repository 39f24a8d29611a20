//! Joining a session: the one operation devices perform, shared by the versioned and the
//! compat route.
//!
//! Order matters: the throttle is asked first (a locked session or address is refused
//! without looking at the PIN), then the store hands over the session's PIN hash and the
//! PIN is checked here ([`pin_check`]), and only a right PIN makes the store check expiry
//! and `max_clients` and record the join durably; then the session's join quota is taken,
//! and only then is a token signed (and `device_joined` emitted). A refused PIN counts against both the session and the client network;
//! the PIN itself is never logged. Refusals are logged through [`crate::refusal_log`], which
//! writes the first of each source at once and counts the repeats. Every refused join is answered no earlier than the
//! refusal floor after it arrived ([`refusal_floor`]), so its timing does not tell a live
//! session from an unknown one.
//!
//! Every join is counted by its outcome and timed ([`outcome`]).
//!
//! A join may carry a certificate signing request ([`certificate_request`], parsed and
//! checked before anything else); then the signed token is also wrapped in a client
//! certificate by the client CA ([`crate::client_ca`]). A join without one does no
//! certificate work at all.
//!
//! Time comes from the state's clock; only the refusal floor measures real time, since
//! what it shapes is how long a real response takes.

pub mod outcome;
pub mod pin_check;
pub mod refusal_floor;

use std::net::IpAddr;
use std::time::Instant;

use session_token::{Claims, DeviceGrant};

use crate::client_ca::{CertificateRequest, CertificateSubject, ClientCa};
use crate::domain::{ClientName, Pin, SessionId};
use crate::error::ApiError;
use crate::events::EventKind;
use crate::refusal_log::{Refusal, RefusalReason};
use crate::state::AppState;
use crate::store::{JoinError, JoinedSession};
use pin_check::PinChecker;

/// A device's request to join.
pub struct JoinAttempt {
    pub session_id: SessionId,
    pub pin: Pin,
    pub client: ClientName,
    pub client_ip: IpAddr,
    /// A checked CSR: the device also wants a client certificate.
    pub certificate_request: Option<CertificateRequest>,
}

/// What a device gets back: the MQTT credentials and where it may talk.
pub struct IssuedToken {
    pub token: String,
    pub claims: Claims,
    /// The client certificate (PEM) around the token, when the join sent a CSR.
    pub certificate: Option<String>,
}

/// The CSR a join sent, parsed and checked: a clear 400 for one we do not sign, a 501 when
/// this deployment has no client CA.
pub fn certificate_request(
    state: &AppState,
    csr: Option<&str>,
) -> Result<Option<CertificateRequest>, ApiError> {
    let Some(csr) = csr else {
        return Ok(None);
    };
    if state.client_ca.is_none() {
        return Err(ApiError::ClientCertificatesDisabled);
    }
    CertificateRequest::from_pem(csr)
        .map(Some)
        .map_err(|refusal| ApiError::InvalidCsr(refusal.to_string()))
}

pub async fn join_session(
    state: &AppState,
    pins: &PinChecker,
    attempt: JoinAttempt,
) -> Result<IssuedToken, ApiError> {
    let arrived = Instant::now();
    let result = decide_join(state, pins, attempt).await;
    outcome::record(&result, arrived.elapsed());
    if result.is_err() {
        refusal_floor::hold(arrived, state.throttle.refusal_floor).await;
    }
    result
}

async fn decide_join(
    state: &AppState,
    pins: &PinChecker,
    attempt: JoinAttempt,
) -> Result<IssuedToken, ApiError> {
    let JoinAttempt {
        session_id,
        pin,
        client,
        client_ip,
        certificate_request,
    } = attempt;
    let clock = &state.clock;
    if let Err(retry_after) = state
        .throttle
        .check(&session_id, client_ip, clock.instant_now())
    {
        note_refusal(state, RefusalReason::Locked, &session_id, client_ip);
        return Err(ApiError::TooManyAttempts { retry_after });
    }
    let now = clock.unix_now();
    let session = match admit(state, pins, &session_id, &pin, &client, now).await {
        Ok(session) => session,
        Err(JoinError::InvalidCredentials) => {
            note_refusal(
                state,
                RefusalReason::InvalidCredentials,
                &session_id,
                client_ip,
            );
            state
                .throttle
                .record_failure(&session_id, client_ip, clock.instant_now(), |id| {
                    state.store.is_live(id, clock.unix_now())
                });
            return Err(ApiError::InvalidCredentials);
        }
        Err(error) => return Err(error.into()),
    };
    if let Err(retry_after) = state
        .throttle
        .joins
        .try_take(&session_id, clock.instant_now())
    {
        note_refusal(state, RefusalReason::QuotaUsedUp, &session_id, client_ip);
        return Err(ApiError::TooManyJoins { retry_after });
    }
    // A token must not outlive its session.
    let lifetime_secs = match session.expires_at {
        Some(expires_at) => state.tokens.ttl_secs.min(expires_at.saturating_sub(now)),
        None => state.tokens.ttl_secs,
    };
    let token_id = uuid::Uuid::new_v4().to_string();
    let claims = Claims::for_device(&DeviceGrant {
        issuer: &state.tokens.issuer,
        client: client.as_str(),
        session_id: session_id.as_str(),
        issued_at: now,
        lifetime_secs,
        token_id: &token_id,
        // Raised by each kick: the broker refuses this device's tokens of older ones.
        generation: session.generation,
    });
    let token = state.signer.sign(&claims).await?;
    let certificate = match (&certificate_request, &state.client_ca) {
        (Some(request), Some(ca)) => Some(issue_certificate(ca, request, &token, &claims)?),
        _ => None,
    };
    tracing::info!(session_id = %session_id, client = %client, jti = %token_id, "device joined");
    state.emit(EventKind::DeviceJoined {
        session_id: session_id.as_str().to_owned(),
        client: client.as_str().to_owned(),
    });
    Ok(IssuedToken {
        token,
        claims,
        certificate,
    })
}

/// The client certificate around a freshly signed token: the token's identity, valid from
/// its `iat` to its `exp`.
fn issue_certificate(
    ca: &ClientCa,
    request: &CertificateRequest,
    token: &str,
    claims: &Claims,
) -> Result<String, ApiError> {
    let subject = CertificateSubject {
        token,
        session_id: &claims.sid,
        client_name: &claims.sub,
        not_before: claims.iat,
        not_after: claims.exp,
    };
    ca.issue(request, &subject)
        .map_err(|error| ApiError::Internal(format!("client certificate: {error}")))
}

/// Hands a refused join to the refusal log, which logs the first of each source and
/// counts the repeats ([`crate::refusal_log`]).
fn note_refusal(
    state: &AppState,
    reason: RefusalReason,
    session_id: &SessionId,
    client_ip: IpAddr,
) {
    state.refusals.record(&Refusal {
        reason,
        session_id,
        session_is_live: state.store.is_live(session_id, state.clock.unix_now()),
        client_ip,
        client_network: state.throttle.client_network(client_ip),
    });
}

/// Checks the PIN against the stored hash and, only when it is right, has the store record
/// the join. An unknown, closed or expired session and a wrong PIN look the same.
async fn admit(
    state: &AppState,
    pins: &PinChecker,
    session_id: &SessionId,
    pin: &Pin,
    client: &ClientName,
    now: u64,
) -> Result<JoinedSession, JoinError> {
    let Some(stored_hash) = state.store.pin_hash(session_id, now).await? else {
        // Expired (or closed elsewhere): its fast check is of no more use.
        pins.forget(session_id);
        return Err(JoinError::InvalidCredentials);
    };
    if !pins.check(session_id, pin, stored_hash).await? {
        return Err(JoinError::InvalidCredentials);
    }
    state.store.join_record(session_id, client, now).await
}
