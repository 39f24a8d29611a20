//! How joins end, for the metrics: `ism_joins_total{outcome}` and
//! `ism_join_duration_seconds`.
//!
//! [`super::join_session`] records what it decides, with the time the decision took (the
//! refusal floor excluded: that wait is deliberate, and `ism_http_request_duration_seconds`
//! shows what clients wait in all). A join refused before it gets there, for input that
//! does not parse (bad JSON, an invalid id or name, a body too large, a CSR refused), is counted by
//! [`count_refused_input`], the middleware of the join routes.

use std::time::Duration;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;

use crate::error::ApiError;
use crate::metrics::handle::{LazyCounter, LazyHistogram};
use crate::metrics::{JOINS_TOTAL, JOIN_DURATION_SECONDS};

/// The `outcome` label of `ism_joins_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinOutcome {
    /// A token was issued.
    Ok,
    /// Wrong PIN, or an unknown, closed or expired session (one answer for all).
    WrongPin,
    /// Refused unseen: the session or the client network is locked out.
    Locked,
    /// The PIN was right but the session's join quota is used up.
    RateLimited,
    /// The session has its maximum number of clients.
    SessionFull,
    /// The request did not parse.
    BadRequest,
    /// The store cannot write or the signer cannot sign right now.
    Unavailable,
}

impl JoinOutcome {
    /// What a join that ended with `error` counts as.
    pub fn of_error(error: &ApiError) -> Self {
        match error {
            ApiError::InvalidCredentials => JoinOutcome::WrongPin,
            ApiError::TooManyAttempts { .. } => JoinOutcome::Locked,
            ApiError::TooManyJoins { .. } => JoinOutcome::RateLimited,
            ApiError::SessionFull => JoinOutcome::SessionFull,
            ApiError::SignerUnavailable
            | ApiError::StoreUnavailable(_)
            | ApiError::Internal(_)
            | ApiError::NoBrokerLink => JoinOutcome::Unavailable,
            ApiError::BadRequest(_)
            | ApiError::Unauthorized
            | ApiError::NotFound(_)
            | ApiError::MethodNotAllowed
            | ApiError::PayloadTooLarge
            | ApiError::UnsupportedMediaType(_)
            | ApiError::Forbidden(_)
            | ApiError::InvalidCsr(_)
            | ApiError::ClientCertificatesDisabled => JoinOutcome::BadRequest,
        }
    }

    /// The label value.
    pub const fn label(self) -> &'static str {
        match self {
            JoinOutcome::Ok => "ok",
            JoinOutcome::WrongPin => "wrong_pin",
            JoinOutcome::Locked => "locked",
            JoinOutcome::RateLimited => "rate_limited",
            JoinOutcome::SessionFull => "session_full",
            JoinOutcome::BadRequest => "bad_request",
            JoinOutcome::Unavailable => "unavailable",
        }
    }

    /// `ism_joins_total` of this outcome.
    fn joins_total(self) -> &'static LazyCounter {
        const fn counter(outcome: JoinOutcome) -> LazyCounter {
            LazyCounter::labelled(JOINS_TOTAL, "outcome", outcome.label())
        }
        static OK: LazyCounter = counter(JoinOutcome::Ok);
        static WRONG_PIN: LazyCounter = counter(JoinOutcome::WrongPin);
        static LOCKED: LazyCounter = counter(JoinOutcome::Locked);
        static RATE_LIMITED: LazyCounter = counter(JoinOutcome::RateLimited);
        static SESSION_FULL: LazyCounter = counter(JoinOutcome::SessionFull);
        static BAD_REQUEST: LazyCounter = counter(JoinOutcome::BadRequest);
        static UNAVAILABLE: LazyCounter = counter(JoinOutcome::Unavailable);
        match self {
            JoinOutcome::Ok => &OK,
            JoinOutcome::WrongPin => &WRONG_PIN,
            JoinOutcome::Locked => &LOCKED,
            JoinOutcome::RateLimited => &RATE_LIMITED,
            JoinOutcome::SessionFull => &SESSION_FULL,
            JoinOutcome::BadRequest => &BAD_REQUEST,
            JoinOutcome::Unavailable => &UNAVAILABLE,
        }
    }
}

/// Counts a decided join and the time its decision took.
pub(crate) fn record<T>(result: &Result<T, ApiError>, decided_in: Duration) {
    let outcome = match result {
        Ok(_) => JoinOutcome::Ok,
        Err(error) => JoinOutcome::of_error(error),
    };
    outcome.joins_total().increment(1);
    JOIN_DURATION.record(decided_in);
}

/// `ism_join_duration_seconds`.
static JOIN_DURATION: LazyHistogram = LazyHistogram::new(JOIN_DURATION_SECONDS);

/// Middleware of the join routes: counts the joins refused for their input before
/// [`super::join_session`] saw them. Those are exactly its 400, 413, 415 and 422 answers:
/// `join_session` itself never answers any of these.
pub(crate) async fn count_refused_input(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if matches!(
        response.status(),
        StatusCode::BAD_REQUEST
            | StatusCode::PAYLOAD_TOO_LARGE
            | StatusCode::UNSUPPORTED_MEDIA_TYPE
            | StatusCode::UNPROCESSABLE_ENTITY
            // A CSR sent where no client CA is configured.
            | StatusCode::NOT_IMPLEMENTED
    ) {
        JoinOutcome::BadRequest.joins_total().increment(1);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_join_decision_never_answers_what_counts_as_refused_input() {
        let decided = [
            ApiError::InvalidCredentials,
            ApiError::TooManyAttempts {
                retry_after: Duration::from_secs(1),
            },
            ApiError::TooManyJoins {
                retry_after: Duration::from_secs(1),
            },
            ApiError::SessionFull,
            ApiError::SignerUnavailable,
            ApiError::StoreUnavailable("disk full".to_owned()),
            ApiError::Internal("bug".to_owned()),
        ];
        for error in decided {
            assert_ne!(
                JoinOutcome::of_error(&error),
                JoinOutcome::BadRequest,
                "{error:?}"
            );
        }
    }

    #[test]
    fn every_outcome_is_counted_under_its_own_label() {
        for outcome in [
            JoinOutcome::Ok,
            JoinOutcome::WrongPin,
            JoinOutcome::Locked,
            JoinOutcome::RateLimited,
            JoinOutcome::SessionFull,
            JoinOutcome::BadRequest,
            JoinOutcome::Unavailable,
        ] {
            assert_eq!(
                outcome.joins_total().label(),
                Some(("outcome", outcome.label()))
            );
        }
    }
}
