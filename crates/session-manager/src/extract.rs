//! Request extractors whose rejections are [`ApiError`]s, so that malformed input gets
//! our JSON error body (400/413/415) instead of axum's plain-text defaults.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON request body. An empty body is refused (400) whatever its content type says, so
/// a body-less cross-site form post can never pass for a request; a non-empty body must
/// be declared JSON (`application/json` or `application/*+json`, else 415).
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let declares_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(is_json_content_type);
        let body = non_empty_body(request, state).await?;
        if !declares_json {
            return Err(ApiError::UnsupportedMediaType(
                "expected a JSON body with `Content-Type: application/json`".to_owned(),
            ));
        }
        parse_json_object(&body).map(JsonBody)
    }
}

/// A JSON request body under any content type, none included: the original service parsed
/// every join body as JSON, so callers label it anyhow (Tornado's test client as
/// `application/x-www-form-urlencoded`, scripts often not at all). Empty and malformed
/// bodies get the same 400s as [`JsonBody`].
///
/// A cross-site form can post such a body, so this is only for routes that need a secret
/// from the body itself (the compat join's PIN), never for the admin port.
#[derive(Debug)]
pub struct AnyContentTypeJson<T>(pub T);

impl<S, T> FromRequest<S> for AnyContentTypeJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let body = non_empty_body(request, state).await?;
        parse_json_object(&body).map(AnyContentTypeJson)
    }
}

/// The request body: 413 over the body limit, 400 when it is empty or only whitespace.
async fn non_empty_body<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    let body = Bytes::from_request(request, state)
        .await
        .map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::BadRequest(rejection.body_text())
            }
        })?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest(
            "the request body is empty; send a JSON object (`{}` for the defaults)".to_owned(),
        ));
    }
    Ok(body)
}

/// `body` as a `T`, or a 400 that says what is wrong in terms of the request: not JSON at
/// all (with serde's position), not an object, or the field that is missing or has the
/// wrong type (its path, from `serde_path_to_error`, and what was expected). The body is
/// parsed to a JSON value first, so field errors carry no line/column noise.
fn parse_json_object<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|error| ApiError::BadRequest(format!("body is not valid JSON: {error}")))?;
    if !value.is_object() {
        return Err(ApiError::BadRequest(
            "body must be a JSON object, e.g. {}".to_owned(),
        ));
    }
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let problem = error.into_inner();
        if path == "." {
            ApiError::BadRequest(problem.to_string())
        } else {
            ApiError::BadRequest(format!("{path}: {problem}"))
        }
    })
}

/// Query-string parameters.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct QueryParams<T>(pub T);

/// Path parameters.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct PathParams<T>(pub T);

fn is_json_content_type(value: &str) -> bool {
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}
