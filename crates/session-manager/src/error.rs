//! Errors of the service, and the one place where they become HTTP responses.
//!
//! [`Error`] is what stops the process (bad configuration, a key that cannot be read, a
//! port that cannot be bound). [`ApiError`] is what one request gets back: every failure a
//! handler or an extractor can meet converts into it, and its `IntoResponse` writes the
//! body every client sees, `{"error": {"code": "...", "message": "..."}}`. Handlers never
//! build error responses themselves, so the status codes and codes stay consistent, bad
//! input can never turn into a 500, and internal details are logged rather than sent.

use std::path::PathBuf;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::domain::DomainError;
use crate::store::{JoinError, StoreError};

/// Why the service cannot start, or a command cannot complete.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configuration: {0}")]
    Config(String),
    #[error("signing key: {0}")]
    Key(String),
    #[error("certificate: {0}")]
    Certificate(String),
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot bind the {which} address {addr}: {source}")]
    Bind {
        which: &'static str,
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("session store: {0}")]
    Store(#[from] StoreError),
    #[error("server: {0}")]
    Serve(std::io::Error),
    /// A command that calls the admin API got an error (or no answer).
    #[error("admin API: {0}")]
    AdminApi(String),
}

/// Why a token could not be signed (defined here, with the other errors, so that the
/// signers depend on this module and not the other way round).
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The signer cannot be reached or is overloaded; the client may retry (503).
    #[error("signer unavailable: {0}")]
    Unavailable(String),
    /// Signing failed for a reason a retry will not fix (500, logged).
    #[error("signing failed: {0}")]
    Failed(String),
}

/// What one request gets back when it fails.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed input: bad JSON, missing or mistyped fields, invalid ids or names.
    #[error("{0}")]
    BadRequest(String),
    /// Wrong PIN or unknown/closed/expired session: one indistinguishable answer.
    #[error("unknown session or wrong PIN")]
    InvalidCredentials,
    /// Missing or wrong admin API key.
    #[error("missing or invalid admin API key; send it as `Authorization: Bearer <key>`")]
    Unauthorized,
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("the session has reached its maximum number of clients")]
    SessionFull,
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("too many failed attempts; retry later")]
    TooManyAttempts { retry_after: Duration },
    /// The session's join quota (joins per minute) is used up; the PIN was right.
    #[error("too many joins to this session; retry later")]
    TooManyJoins { retry_after: Duration },
    /// A request the admin API refuses to serve: a foreign `Host`, or sent by another site.
    #[error("{0}")]
    Forbidden(String),
    #[error("token signing is unavailable right now")]
    SignerUnavailable,
    /// The session store cannot write (e.g. the disk is full); nothing was changed and the
    /// store recovers by itself once writing works again.
    #[error("the session store cannot write right now; retry later")]
    StoreUnavailable(String),
    /// Something on our side failed; the detail goes to the log, not to the client.
    #[error("internal error")]
    Internal(String),
    /// A route that reads MQTT traffic, on a service without a broker link.
    #[error("this needs the broker link (ISM_BROKER_CONTROL_URL, in a mode that signs tokens)")]
    NoBrokerLink,
    /// The join carried a certificate signing request the service will not sign.
    #[error("{0}")]
    InvalidCsr(String),
    /// The join carried a certificate signing request, but no client CA is configured (or
    /// the mode signs no tokens).
    #[error(
        "this deployment issues no client certificates (no client CA is configured, or the mode is dev_no_auth); join without `csr`"
    )]
    ClientCertificatesDisabled,
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::InvalidCredentials | ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::SessionFull => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooManyAttempts { .. } | ApiError::TooManyJoins { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::SignerUnavailable | ApiError::StoreUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::NoBrokerLink => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::InvalidCsr(_) => StatusCode::BAD_REQUEST,
            ApiError::ClientCertificatesDisabled => StatusCode::NOT_IMPLEMENTED,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "invalid_request",
            ApiError::InvalidCredentials => "invalid_credentials",
            ApiError::Unauthorized => "unauthorized",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::SessionFull => "session_full",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::TooManyAttempts { .. } => "too_many_attempts",
            ApiError::TooManyJoins { .. } => "too_many_joins",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::SignerUnavailable => "signer_unavailable",
            ApiError::StoreUnavailable(_) => "store_unavailable",
            ApiError::Internal(_) => "internal",
            ApiError::NoBrokerLink => "no_broker_link",
            ApiError::InvalidCsr(_) => "invalid_csr",
            ApiError::ClientCertificatesDisabled => "client_certificates_disabled",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Internal(detail) => tracing::error!(%detail, "request failed"),
            ApiError::StoreUnavailable(detail) => {
                tracing::warn!(%detail, "request refused: the session store cannot write");
            }
            _ => {}
        }
        let status = self.status();
        let body = json!({ "error": { "code": self.code(), "message": self.to_string() } });
        let mut response = (status, Json(body)).into_response();
        match &self {
            ApiError::TooManyAttempts { retry_after } | ApiError::TooManyJoins { retry_after } => {
                // Round up: a client that waits exactly this long must be let through.
                let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
            }
            ApiError::Unauthorized => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::SignerUnavailable | ApiError::StoreUnavailable(_) => {
                // A signer that already retried (KMS throttling or outage), or a store that
                // cannot write: a client that waits a second spreads a burst instead of
                // renewing it.
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

impl From<DomainError> for ApiError {
    fn from(error: DomainError) -> Self {
        ApiError::BadRequest(error.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::JournalFailed(detail) => ApiError::StoreUnavailable(detail),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<JoinError> for ApiError {
    fn from(error: JoinError) -> Self {
        match error {
            JoinError::InvalidCredentials => ApiError::InvalidCredentials,
            JoinError::SessionFull => ApiError::SessionFull,
            JoinError::Store(error) => error.into(),
        }
    }
}

impl From<SignError> for ApiError {
    fn from(error: SignError) -> Self {
        match error {
            SignError::Unavailable(detail) => {
                tracing::warn!(%detail, "token signer unavailable");
                ApiError::SignerUnavailable
            }
            SignError::Failed(detail) => {
                ApiError::Internal(format!("token signing failed: {detail}"))
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(
                "expected a JSON body with `Content-Type: application/json`".to_owned(),
            ),
            _ => ApiError::BadRequest(rejection.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::BadRequest(rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::BadRequest(rejection.body_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_rounded_up_to_whole_seconds() {
        let response = ApiError::TooManyAttempts {
            retry_after: Duration::from_millis(1500),
        }
        .into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
    }

    #[test]
    fn internal_details_are_not_sent() {
        let error = ApiError::Internal("disk on fire at /secret/path".to_owned());
        assert_eq!(error.to_string(), "internal error");
    }
}
