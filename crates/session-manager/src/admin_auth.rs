//! Admin API authentication: `Authorization: Bearer <key>` checked against the argon2id
//! PHC string in `ISM_ADMIN_API_KEY_HASH`, and the `hash-admin-key` command that makes one.
//!
//! The key is a hashed secret ([`crate::secrets`]): the first request with the right key
//! pays for one argon2 verification; from then on the process compares a keyed per-process
//! tag in constant time. Before that first success, argon2 runs one at a time, so a flood
//! of wrong keys cannot pin every core.
//!
//! [`request_origin`] refuses what a browser sends on behalf of other sites (foreign
//! `Host`, cross-site `Origin`/`Sec-Fetch-Site`), with or without a key.
//!
//! `ISM_ADMIN_COMPAT_WITHOUT_KEY` opens the original service's admin routes without the
//! key ([`AdminAuth::without_key_for`]), for the original admin client on a trusted
//! network; the origin checks, which run before this one, still apply to them.

pub mod request_origin;

use std::io::{IsTerminal as _, Read as _};
use std::sync::{Arc, OnceLock};

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::error::{ApiError, Error};
use crate::secrets::{self, SecretChecker, SecretTag};

/// Longer keys are refused without hashing them.
const MAX_KEY_BYTES: usize = 512;

/// Checks admin API keys. Without a configured hash every request is let through.
pub struct AdminAuth {
    expected: Option<ExpectedKey>,
    /// Routes served without the key (the compat admin routes, when so configured).
    paths_without_key: &'static [&'static str],
}

struct ExpectedKey {
    phc: Arc<str>,
    /// One argon2 run at a time; makes and compares the fast check's tags.
    checker: SecretChecker,
    /// Tag of the key argon2 accepted, once one has been seen.
    accepted_tag: OnceLock<SecretTag>,
}

impl AdminAuth {
    /// `phc`: the argon2 PHC string, or None for no authentication.
    pub fn new(phc: Option<&str>) -> Result<Self, Error> {
        let expected = match phc.map(unquote).filter(|phc| !phc.is_empty()) {
            None => None,
            Some(phc) => {
                secrets::check_phc(phc).map_err(|e| {
                    Error::Config(format!("ISM_ADMIN_API_KEY_HASH is not a PHC string: {e}"))
                })?;
                Some(ExpectedKey {
                    phc: phc.into(),
                    checker: SecretChecker::new(1),
                    accepted_tag: OnceLock::new(),
                })
            }
        };
        Ok(AdminAuth {
            expected,
            paths_without_key: &[],
        })
    }

    /// Lets requests for exactly these `paths` through without the key: the original
    /// service's admin routes with `ISM_ADMIN_COMPAT_WITHOUT_KEY`, for its admin client,
    /// which sends none. The routes must be static paths (no parameters), so that the
    /// path a request matched is one of these strings.
    pub fn without_key_for(self, paths: &'static [&'static str]) -> Self {
        AdminAuth {
            paths_without_key: paths,
            ..self
        }
    }

    /// Is `path` served without the key?
    pub fn is_open_without_key(&self, path: &str) -> bool {
        self.paths_without_key.contains(&path)
    }

    pub fn is_enabled(&self) -> bool {
        self.expected.is_some()
    }

    /// Ok when the `Authorization` header value carries the admin key (or none is needed).
    pub async fn check(&self, authorization: Option<&str>) -> Result<(), ApiError> {
        let Some(expected) = &self.expected else {
            return Ok(());
        };
        let key = authorization
            .and_then(bearer_token)
            .filter(|key| !key.is_empty() && key.len() <= MAX_KEY_BYTES)
            .ok_or(ApiError::Unauthorized)?;
        if expected.fast_check(key)? {
            return Ok(());
        }
        let _permit = expected
            .checker
            .argon2_slot()
            .await
            .map_err(|e| ApiError::Internal(format!("admin key check failed: {e}")))?;
        // Another request may have been accepted while this one waited.
        if expected.fast_check(key)? {
            return Ok(());
        }
        let accepted = expected
            .checker
            .verify_hash(Arc::clone(&expected.phc), key.as_bytes().to_vec())
            .await
            .map_err(|e| ApiError::Internal(format!("admin key check failed: {e}")))?;
        if !accepted {
            return Err(ApiError::Unauthorized);
        }
        let _ = expected
            .accepted_tag
            .set(expected.checker.tag(&[key.as_bytes()]));
        Ok(())
    }
}

impl ExpectedKey {
    /// Ok(true): the accepted key; Err: a key is known and this is not it; Ok(false):
    /// no key has been accepted yet, so argon2 must decide.
    fn fast_check(&self, key: &str) -> Result<bool, ApiError> {
        match self.accepted_tag.get() {
            None => Ok(false),
            Some(tag) if self.checker.matches_tag(&[key.as_bytes()], tag) => Ok(true),
            Some(_) => Err(ApiError::Unauthorized),
        }
    }
}

/// The PHC string as configured: trimmed, and without one pair of surrounding single
/// quotes (`hash-admin-key` prints it quoted so that `.env` files keep its `$` signs;
/// compose versions that do not strip the quotes pass them on).
fn unquote(phc: &str) -> &str {
    let phc = phc.trim();
    phc.strip_prefix('\'')
        .and_then(|inner| inner.strip_suffix('\''))
        .map_or(phc, str::trim)
}

/// `phc` as a value a `.env` file keeps as is: in single quotes, so that neither compose
/// v2 (which expands `$name` in unquoted values) nor a shell touches its `$` signs. PHC
/// strings never contain a quote.
pub fn quoted_for_env_file(phc: &str) -> String {
    format!("'{phc}'")
}

fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Middleware guarding every admin route.
pub async fn require_admin_key(
    State(auth): State<Arc<AdminAuth>>,
    request: Request,
    next: Next,
) -> Response {
    // A route layer: runs only for a request that matched a route, whose path is then
    // the route's own (static) path.
    if auth.is_open_without_key(request.uri().path()) {
        return next.run(request).await;
    }
    let authorization = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    match auth.check(authorization).await {
        Ok(()) => next.run(request).await,
        Err(error) => {
            tracing::warn!("admin request refused: missing or wrong API key");
            error.into_response()
        }
    }
}

/// The argon2id PHC string of `key`.
pub fn hash_admin_key(key: &str) -> Result<String, Error> {
    secrets::hash_secret_blocking(key.as_bytes())
        .map_err(|e| Error::Config(format!("cannot hash the key: {e}")))
}

/// `session-manager hash-admin-key`: the key comes from stdin (trailing newline dropped);
/// with nothing on stdin a random key is generated and shown on stderr. The caller prints
/// the PHC string, quoted with [`quoted_for_env_file`].
pub fn hash_admin_key_command() -> Result<String, Error> {
    let mut key = String::new();
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        stdin
            .lock()
            .read_to_string(&mut key)
            .map_err(|source| Error::Io {
                action: "read the admin key from",
                path: "stdin".into(),
                source,
            })?;
    }
    let mut key = key.trim_end_matches(['\r', '\n']).to_owned();
    if key.is_empty() {
        key = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        eprintln!("generated admin API key (keep it secret; clients send it as `Authorization: Bearer <key>`):\n{key}");
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(Error::Config(format!(
            "admin keys are at most {MAX_KEY_BYTES} bytes"
        )));
    }
    hash_admin_key(&key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_right_key_passes_first_by_argon2_then_by_the_fast_check() {
        let auth = AdminAuth::new(Some(&hash_admin_key("s3cret").unwrap())).unwrap();
        assert!(auth.check(Some("Bearer s3cret")).await.is_ok());
        assert!(auth.check(Some("bearer s3cret")).await.is_ok());
        assert!(auth.check(Some("Bearer wrong")).await.is_err());
        assert!(auth.check(Some("Basic s3cret")).await.is_err());
        assert!(auth.check(None).await.is_err());
    }

    #[tokio::test]
    async fn wrong_keys_before_any_right_one_are_refused() {
        let auth = AdminAuth::new(Some(&hash_admin_key("s3cret").unwrap())).unwrap();
        assert!(auth.check(Some("Bearer nope")).await.is_err());
        assert!(auth.check(Some("Bearer s3cret")).await.is_ok());
    }

    #[tokio::test]
    async fn without_a_hash_everything_passes() {
        let auth = AdminAuth::new(None).unwrap();
        assert!(!auth.is_enabled());
        assert!(auth.check(None).await.is_ok());
    }

    #[tokio::test]
    async fn the_hash_is_accepted_in_single_quotes_as_printed() {
        let phc = hash_admin_key("s3cret").unwrap();
        for configured in [
            phc.clone(),
            quoted_for_env_file(&phc),
            format!(" '{phc}'\n"),
        ] {
            let auth = AdminAuth::new(Some(&configured)).unwrap();
            assert!(
                auth.check(Some("Bearer s3cret")).await.is_ok(),
                "{configured}"
            );
        }
        assert!(AdminAuth::new(Some("''"))
            .unwrap()
            .check(None)
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn only_the_listed_paths_are_open_without_the_key() {
        let auth = AdminAuth::new(Some(&hash_admin_key("s3cret").unwrap()))
            .unwrap()
            .without_key_for(&["/api/createSession", "/api/closeSession"]);
        assert!(auth.is_open_without_key("/api/createSession"));
        assert!(auth.is_open_without_key("/api/closeSession"));
        for other in [
            "/api/v1/sessions",
            "/api/createSession/",
            "/api/createsession",
            "",
        ] {
            assert!(!auth.is_open_without_key(other), "{other}");
        }
        // The key itself is still required everywhere else.
        assert!(auth.check(None).await.is_err());
    }

    #[test]
    fn a_malformed_hash_is_a_configuration_error() {
        assert!(AdminAuth::new(Some("not-a-phc")).is_err());
    }
}
