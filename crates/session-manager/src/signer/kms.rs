//! `kms_jwt_auth`: tokens signed by an asymmetric AWS KMS key, so the production private
//! key never leaves KMS.
//!
//! At start the signer downloads the key's public key (`GetPublicKey`), works out the JWT
//! algorithm from it (RSA → RS256, P-256 → ES256, see [`public_key`]) and signs one probe
//! message, so a key that cannot sign, or cannot sign the way we need, stops the service
//! with a clear message instead of failing every join later.
//!
//! Each token is one `Sign` call with `MessageType=RAW`: KMS hashes the JWT signing input
//! itself. Every signature is checked against the cached public key before it leaves the
//! service: a token that brokers would reject (an alias moved to another key, a broken
//! endpoint) is refused here, loudly, rather than handed to a device.
//!
//! Resilience, so a KMS outage costs joins a 503 and never a hang:
//! - each attempt is bounded by `ISM_KMS_TIMEOUT_MS`; the SDK retries transient failures
//!   (throttling, 5xx, connection errors) at most twice with short jittered backoff;
//! - the whole call, waiting for a concurrency permit included, is bounded by twice that
//!   timeout (the call budget);
//! - at most `ISM_KMS_MAX_CONCURRENCY` calls are in flight, which keeps a join burst from
//!   tripping KMS's per-account request quota (throttled calls are retried, then 503);
//! - nothing is cached about the failure: the next join simply tries again, so the service
//!   recovers on its own as soon as KMS answers.
//!
//! [`TokenSigner::health`] reports the outcome of the latest KMS call; when there has been
//! none for a few seconds it probes with `GetPublicKey` (cheap, and not metered as a
//! cryptographic operation), which also notices a key whose public key has changed.

pub mod public_key;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_kms::config::http::HttpResponse;
use aws_sdk_kms::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeyUsageType, MessageType};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::Algorithm;
use session_token::Claims;
use tokio::sync::Semaphore;

use self::public_key::KmsPublicKey;
use super::jws::JwsHeader;
use super::{SignError, SignerHealth, TokenSigner};
use crate::config::KmsConfig;
use crate::error::Error;

/// Largest message KMS signs with `MessageType=RAW`.
const KMS_RAW_MESSAGE_LIMIT: usize = 4096;
/// Attempts per KMS call (the first one and two retries).
const MAX_ATTEMPTS: u32 = 3;
const INITIAL_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_millis(500);
/// How long the outcome of a KMS call stands for the health report before a probe.
const HEALTH_PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// Signed once at start to prove the key signs the way tokens need.
const STARTUP_PROBE_MESSAGE: &[u8] = b"session-manager: can this KMS key sign tokens?";

/// KMS error codes that say "not now" rather than "never": worth a 503 and a retry.
const TRANSIENT_ERROR_CODES: &[&str] = &[
    "ThrottlingException",
    "KMSInternalException",
    "DependencyTimeoutException",
    "KeyUnavailableException",
    "LimitExceededException",
    "RequestLimitExceeded",
    "ServiceUnavailable",
    "ServiceUnavailableException",
];

pub struct KmsSigner {
    client: aws_sdk_kms::Client,
    /// As configured (id, ARN, alias name or alias ARN): KMS resolves it on every call.
    key_id: String,
    public_key: KmsPublicKey,
    header: JwsHeader,
    permits: Semaphore,
    call_budget: Duration,
    last_outcome: Mutex<Option<Outcome>>,
    /// Serialises health probes, so a burst of health checks costs one `GetPublicKey`.
    probe_gate: tokio::sync::Mutex<()>,
}

/// The result of the latest KMS call, for the health report.
#[derive(Debug, Clone)]
struct Outcome {
    at: Instant,
    problem: Option<String>,
}

impl KmsSigner {
    /// Connects to KMS with the standard AWS configuration chain (environment, profile,
    /// container or instance role; `AWS_ENDPOINT_URL` honoured) and checks the key.
    pub async fn connect(config: &KmsConfig) -> Result<Self, Error> {
        let key_id = config
            .kms_key_id
            .as_deref()
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .ok_or_else(|| {
                Error::Config(
                    "MQTT_AUTH_MODE=kms_jwt_auth needs ISM_KMS_KEY_ID (key id, key ARN, alias name or alias ARN)"
                        .to_owned(),
                )
            })?
            .to_owned();
        let attempt_timeout = Duration::from_millis(config.kms_timeout_ms.max(1));
        let call_budget = attempt_timeout * 2;
        let sdk_config = aws_config::defaults(BehaviorVersion::latest())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(attempt_timeout)
                    .operation_attempt_timeout(attempt_timeout)
                    .operation_timeout(call_budget)
                    .build(),
            )
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(MAX_ATTEMPTS)
                    .with_initial_backoff(INITIAL_BACKOFF)
                    .with_max_backoff(MAX_BACKOFF),
            )
            .load()
            .await;
        if sdk_config.region().is_none() {
            return Err(Error::Config(
                "kms_jwt_auth: no AWS region configured; set AWS_REGION (or a profile with a region)".to_owned(),
            ));
        }
        let client = aws_sdk_kms::Client::new(&sdk_config);
        let public_key = fetch_public_key(&client, &key_id).await?;
        let signer = Self::new(
            client,
            key_id,
            public_key,
            config.kms_max_concurrency,
            call_budget,
        )?;
        signer.check_signing().await?;
        tracing::info!(
            key = %signer.key_id,
            algorithm = ?signer.public_key.algorithm(),
            kid = signer.public_key.kid().unwrap_or_default(),
            "signing tokens with AWS KMS"
        );
        Ok(signer)
    }

    fn new(
        client: aws_sdk_kms::Client,
        key_id: String,
        public_key: KmsPublicKey,
        max_concurrency: u32,
        call_budget: Duration,
    ) -> Result<Self, Error> {
        let header = JwsHeader::new(public_key.algorithm(), public_key.kid().map(str::to_owned))?;
        Ok(KmsSigner {
            client,
            key_id,
            header,
            public_key,
            permits: Semaphore::new(
                usize::try_from(max_concurrency)
                    .unwrap_or(usize::MAX)
                    .max(1),
            ),
            call_budget,
            last_outcome: Mutex::new(None),
            probe_gate: tokio::sync::Mutex::new(()),
        })
    }

    /// The key's SubjectPublicKeyInfo PEM (`public_key.pem` for brokers).
    pub fn public_key_pem(&self) -> &str {
        self.public_key.pem()
    }

    async fn check_signing(&self) -> Result<(), Error> {
        self.sign_bytes(STARTUP_PROBE_MESSAGE)
            .await
            .map(drop)
            .map_err(|error| {
                let detail = match error {
                    SignError::Unavailable(detail) | SignError::Failed(detail) => detail,
                };
                Error::Key(format!(
                    "KMS key {} cannot sign tokens: {detail}",
                    self.key_id
                ))
            })
    }

    /// Signs `message` with KMS and returns the JOSE signature, checked against the
    /// public key.
    async fn sign_bytes(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        let result = match tokio::time::timeout(self.call_budget, self.call_kms_sign(message)).await
        {
            Ok(result) => result,
            Err(_) => Err(SignError::Unavailable(format!(
                "KMS did not sign within {} ms",
                self.call_budget.as_millis()
            ))),
        };
        let result = result.and_then(|kms_signature| {
            let jose = self.public_key.jose_signature(&kms_signature).ok_or_else(|| {
                SignError::Failed("KMS returned a malformed ECDSA signature".to_owned())
            })?;
            if self.public_key.verifies(message, &jose) {
                Ok(jose)
            } else {
                Err(SignError::Failed(format!(
                    "KMS signed with a key other than the one published (kid {}); did {} move to another key? \
                     Restart the service and re-export the public key",
                    self.public_key.kid().unwrap_or_default(),
                    self.key_id
                )))
            }
        });
        self.record(result.as_ref().err().map(ToString::to_string));
        result
    }

    async fn call_kms_sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| SignError::Failed("the KMS signer is shutting down".to_owned()))?;
        let output = self
            .client
            .sign()
            .key_id(&self.key_id)
            .message(Blob::new(message))
            .message_type(MessageType::Raw)
            .signing_algorithm(self.public_key.kms_signing_algorithm())
            .send()
            .await
            .map_err(|error| classify("Sign", &error))?;
        output
            .signature
            .map(Blob::into_inner)
            .ok_or_else(|| SignError::Failed("KMS answered Sign without a signature".to_owned()))
    }

    fn record(&self, problem: Option<String>) {
        if let Ok(mut last) = self.last_outcome.lock() {
            *last = Some(Outcome {
                at: Instant::now(),
                problem,
            });
        }
    }

    fn recent_outcome(&self) -> Option<Outcome> {
        let last = self.last_outcome.lock().ok()?.clone()?;
        (last.at.elapsed() < HEALTH_PROBE_INTERVAL).then_some(last)
    }

    async fn probe(&self) -> Outcome {
        let _gate = self.probe_gate.lock().await;
        if let Some(recent) = self.recent_outcome() {
            return recent;
        }
        let problem =
            match tokio::time::timeout(self.call_budget, fetch_spki(&self.client, &self.key_id))
                .await
            {
                Err(_) => Some(format!(
                    "KMS did not answer within {} ms",
                    self.call_budget.as_millis()
                )),
                Ok(Err(error)) => Some(error.to_string()),
                Ok(Ok(spki)) if !self.public_key.is_same_key(&spki) => Some(format!(
                    "{} now names a different key than the published one (kid {})",
                    self.key_id,
                    self.public_key.kid().unwrap_or_default()
                )),
                Ok(Ok(_)) => None,
            };
        self.record(problem.clone());
        Outcome {
            at: Instant::now(),
            problem,
        }
    }

    fn describe(&self, outcome: &Outcome) -> SignerHealth {
        match &outcome.problem {
            None => SignerHealth {
                ready: true,
                detail: format!(
                    "AWS KMS key {} ({:?}) reachable",
                    self.key_id,
                    self.public_key.algorithm()
                ),
            },
            Some(problem) => SignerHealth {
                ready: false,
                detail: format!("AWS KMS key {}: {problem}", self.key_id),
            },
        }
    }
}

#[async_trait::async_trait]
impl TokenSigner for KmsSigner {
    fn algorithm(&self) -> Option<Algorithm> {
        Some(self.public_key.algorithm())
    }

    fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: vec![self.public_key.jwk().clone()],
        }
    }

    async fn sign(&self, claims: &Claims) -> Result<String, SignError> {
        let input = self.header.signing_input(claims)?;
        if input.as_bytes().len() > KMS_RAW_MESSAGE_LIMIT {
            return Err(SignError::Failed(format!(
                "the token's signing input has {} bytes; KMS signs at most {KMS_RAW_MESSAGE_LIMIT}",
                input.as_bytes().len()
            )));
        }
        let signature = self.sign_bytes(input.as_bytes()).await?;
        Ok(input.into_token(&signature))
    }

    async fn health(&self) -> SignerHealth {
        let outcome = match self.recent_outcome() {
            Some(outcome) => outcome,
            None => self.probe().await,
        };
        self.describe(&outcome)
    }
}

/// `GetPublicKey`, checked: the key must be usable for signing and of a spec we serve.
async fn fetch_public_key(
    client: &aws_sdk_kms::Client,
    key_id: &str,
) -> Result<KmsPublicKey, Error> {
    let output = client
        .get_public_key()
        .key_id(key_id)
        .send()
        .await
        .map_err(|error| {
            Error::Key(format!(
                "cannot read the public key of KMS key {key_id}: {}",
                DisplayErrorContext(&error)
            ))
        })?;
    // Optional in the response; when present it gives the clearest refusal.
    if let Some(usage) = output
        .key_usage
        .as_ref()
        .filter(|usage| **usage != KeyUsageType::SignVerify)
    {
        return Err(Error::Key(format!(
            "KMS key {key_id} has key usage {}; tokens need a SIGN_VERIFY key",
            usage.as_str()
        )));
    }
    let spki = output
        .public_key
        .ok_or_else(|| Error::Key(format!("KMS returned no public key for {key_id}")))?;
    KmsPublicKey::from_spki_der(spki.as_ref())
        .map_err(|reason| Error::Key(format!("KMS key {key_id} cannot sign tokens: {reason}")))
}

/// The DER SubjectPublicKeyInfo of `key_id`, for health probes.
async fn fetch_spki(client: &aws_sdk_kms::Client, key_id: &str) -> Result<Vec<u8>, SignError> {
    let output = client
        .get_public_key()
        .key_id(key_id)
        .send()
        .await
        .map_err(|error| classify("GetPublicKey", &error))?;
    output.public_key.map(Blob::into_inner).ok_or_else(|| {
        SignError::Failed("KMS answered GetPublicKey without a public key".to_owned())
    })
}

/// Sorts a failed KMS call into "retry later" (503) and "will not work" (500).
fn classify<E>(operation: &str, error: &SdkError<E, HttpResponse>) -> SignError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let detail = format!("KMS {operation}: {}", DisplayErrorContext(error));
    match error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            SignError::Unavailable(detail)
        }
        SdkError::ServiceError(service) => {
            let transient_code = service
                .err()
                .code()
                .is_some_and(|code| TRANSIENT_ERROR_CODES.contains(&code));
            if transient_code || service.raw().status().is_server_error() {
                SignError::Unavailable(detail)
            } else {
                SignError::Failed(detail)
            }
        }
        _ => SignError::Failed(detail),
    }
}
