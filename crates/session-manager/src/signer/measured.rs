//! A signer that times every signature and counts the failures
//! (`ism_signer_duration_seconds{signer}`, `ism_signer_errors_total{signer}`), around
//! whichever signer the configuration chose.

use std::sync::Arc;
use std::time::Instant;

use jsonwebtoken::jwk::JwkSet;
use session_token::Claims;

use super::{SignError, SignerHealth, TokenSigner};
use crate::metrics::handle::{LazyCounter, LazyHistogram};
use crate::metrics::{SIGNER_DURATION_SECONDS, SIGNER_ERRORS_TOTAL};

/// `inner`, measured under the `signer` label `kind` (none, local, kms).
pub struct Measured {
    inner: Arc<dyn TokenSigner>,
    /// Registered on first use, like the macros would ([`crate::metrics::handle`]).
    duration: LazyHistogram,
    errors: LazyCounter,
}

impl Measured {
    pub fn new(inner: Arc<dyn TokenSigner>, kind: &'static str) -> Self {
        Measured {
            inner,
            duration: LazyHistogram::labelled(SIGNER_DURATION_SECONDS, "signer", kind),
            errors: LazyCounter::labelled(SIGNER_ERRORS_TOTAL, "signer", kind),
        }
    }
}

#[async_trait::async_trait]
impl TokenSigner for Measured {
    fn algorithm(&self) -> Option<jsonwebtoken::Algorithm> {
        self.inner.algorithm()
    }

    fn jwks(&self) -> JwkSet {
        self.inner.jwks()
    }

    async fn sign(&self, claims: &Claims) -> Result<String, SignError> {
        let started = Instant::now();
        let result = self.inner.sign(claims).await;
        self.duration.record(started.elapsed());
        if result.is_err() {
            self.errors.increment(1);
        }
        result
    }

    async fn health(&self) -> SignerHealth {
        self.inner.health().await
    }
}
