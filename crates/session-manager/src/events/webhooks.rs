//! Webhook deliveries: every event is POSTed, signed ([`super::webhook_signature`]), to
//! each receiver of `ISM_WEBHOOK_URLS`.
//!
//! Each receiver has a bounded queue ([`WebhookQueue`], filled by the bus with `try_send`,
//! so publishing never waits) and one worker ([`WebhookWorker`]) that delivers the queue
//! in order: one event at a time, retried after a failure (non-2xx answer, timeout,
//! connection error) with exponential backoff from 0.5 s to 30 s with full jitter, until
//! a 2xx answer or the shutdown. Delivery is therefore at least once while the service
//! runs; the `webhook-id` header (the event id) stays the same across retries, so a
//! receiver can drop duplicates. A receiver whose queue is full loses the new event (only
//! that receiver); the drops are counted and logged at most once per 10 s with a count.
//!
//! Metrics carry the receiver's index in `ISM_WEBHOOK_URLS`, never the URL, which may hold
//! a secret; logs name only its index and host.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::http::header;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::{webhook_signature, Event};
use crate::config::WebhookTargets;
use crate::error::Error;
use crate::shutdown::Shutdown;

/// The first wait after a failed delivery; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often dropped events are logged, as one line with their count.
const DROP_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The producing end of one receiver's queue, held by the bus.
#[derive(Debug)]
pub struct WebhookQueue {
    receiver: Arc<str>,
    sender: mpsc::Sender<Arc<Event>>,
    drops: DropLog,
}

impl WebhookQueue {
    /// Queues the event for this receiver; never waits. A full queue drops it.
    pub fn offer(&self, event: &Arc<Event>) {
        match self.sender.try_send(Arc::clone(event)) {
            Ok(()) => self.note_depth(),
            Err(TrySendError::Full(_)) => {
                self.count_drop();
                self.drops.note(&self.receiver, self.sender.max_capacity());
            }
            // The worker has stopped: the service is shutting down.
            Err(TrySendError::Closed(_)) => self.count_drop(),
        }
    }

    fn count_drop(&self) {
        metrics::counter!("ism_webhook_deliveries_total",
            "receiver" => Arc::clone(&self.receiver), "outcome" => "dropped")
        .increment(1);
    }

    fn note_depth(&self) {
        depth_gauge(&self.receiver, &self.sender);
    }
}

fn depth_gauge<T>(receiver: &Arc<str>, sender: &mpsc::Sender<T>) {
    let depth = sender.max_capacity().saturating_sub(sender.capacity());
    metrics::gauge!("ism_webhook_queue_depth", "receiver" => Arc::clone(receiver))
        .set(depth as f64);
}

/// Dropped events not logged yet, and when the last drop line was written.
#[derive(Debug, Default)]
struct DropLog {
    unlogged: AtomicU64,
    last_logged: Mutex<Option<Instant>>,
}

impl DropLog {
    fn note(&self, receiver: &str, capacity: usize) {
        self.unlogged.fetch_add(1, Ordering::Relaxed);
        let mut last_logged = self
            .last_logged
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last_logged.is_some_and(|at| at.elapsed() < DROP_LOG_INTERVAL) {
            return;
        }
        *last_logged = Some(Instant::now());
        let dropped = self.unlogged.swap(0, Ordering::Relaxed);
        tracing::warn!(
            receiver,
            dropped,
            queue = capacity,
            "webhook queue full: events dropped for this receiver"
        );
    }
}

/// Delivers one receiver's queue, in order.
pub struct WebhookWorker {
    receiver: Arc<str>,
    url: reqwest::Url,
    key: Arc<[u8]>,
    client: reqwest::Client,
    queue: mpsc::Receiver<Arc<Event>>,
    /// A handle on the queue, only to report its depth (weak: the bus's sender alone
    /// keeps the queue open).
    depth: mpsc::WeakSender<Arc<Event>>,
}

/// One queue and one worker per receiver.
pub fn build(targets: &WebhookTargets) -> Result<(Vec<WebhookQueue>, Vec<WebhookWorker>), Error> {
    let client = reqwest::Client::builder()
        .timeout(targets.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("session-manager/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|error| Error::Config(format!("cannot build the webhook client: {error}")))?;
    let key: Arc<[u8]> = targets.key.clone().into();
    let mut queues = Vec::new();
    let mut workers = Vec::new();
    for (index, url) in targets.urls.iter().enumerate() {
        let receiver: Arc<str> = index.to_string().into();
        let (sender, queue) = mpsc::channel(targets.queue.max(1));
        queues.push(WebhookQueue {
            receiver: Arc::clone(&receiver),
            sender: sender.clone(),
            drops: DropLog::default(),
        });
        workers.push(WebhookWorker {
            receiver,
            url: url.clone(),
            key: Arc::clone(&key),
            client: client.clone(),
            queue,
            depth: sender.downgrade(),
        });
    }
    Ok((queues, workers))
}

/// How one delivery attempt went.
enum Attempt {
    Delivered,
    Failed(String),
}

impl WebhookWorker {
    /// Delivers events until the shutdown.
    pub async fn run(mut self, shutdown: Shutdown) {
        loop {
            let event = tokio::select! {
                event = self.queue.recv() => match event {
                    Some(event) => event,
                    None => return,
                },
                () = shutdown.wait() => return,
            };
            if let Some(sender) = self.depth.upgrade() {
                depth_gauge(&self.receiver, &sender);
            }
            tokio::select! {
                () = self.deliver(&event) => {}
                () = shutdown.wait() => return,
            }
        }
    }

    /// Delivers one event, retrying until the receiver accepts it.
    async fn deliver(&self, event: &Event) {
        let body = match serde_json::to_vec(event) {
            Ok(body) => body,
            Err(error) => {
                tracing::error!(%error, event_id = %event.id, "cannot encode an event");
                return;
            }
        };
        let mut backoff = FIRST_BACKOFF;
        let mut attempts: u32 = 0;
        loop {
            attempts += 1;
            let started = Instant::now();
            let outcome = self.attempt(&event.id, &body).await;
            metrics::histogram!("ism_webhook_delivery_duration_seconds",
                "receiver" => Arc::clone(&self.receiver))
            .record(started.elapsed().as_secs_f64());
            match outcome {
                Attempt::Delivered => {
                    metrics::counter!("ism_webhook_deliveries_total",
                        "receiver" => Arc::clone(&self.receiver), "outcome" => "delivered")
                    .increment(1);
                    return;
                }
                Attempt::Failed(reason) => {
                    metrics::counter!("ism_webhook_deliveries_total",
                        "receiver" => Arc::clone(&self.receiver), "outcome" => "failed")
                    .increment(1);
                    let wait = full_jitter(backoff);
                    tracing::warn!(
                        receiver = %self.receiver,
                        host = self.url.host_str().unwrap_or(""),
                        event_id = %event.id,
                        attempts,
                        retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        reason,
                        "webhook delivery failed; retrying"
                    );
                    tokio::time::sleep(wait).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    async fn attempt(&self, id: &str, body: &[u8]) -> Attempt {
        let timestamp = crate::clock::unix_now();
        let signature = webhook_signature::sign(&self.key, id, timestamp, body);
        let sent = self
            .client
            .post(self.url.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body.to_vec())
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => Attempt::Delivered,
            Ok(response) => Attempt::Failed(format!("answered {}", response.status())),
            Err(error) if error.is_timeout() => Attempt::Failed("timed out".to_owned()),
            Err(error) => Attempt::Failed(describe(error)),
        }
    }
}

/// What went wrong, with its causes, without the URL (which may hold a secret).
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A random wait between zero and `backoff` ("full jitter").
fn full_jitter(backoff: Duration) -> Duration {
    let most = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::random_range(0..=most))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_the_backoff() {
        for _ in 0..100 {
            assert!(full_jitter(FIRST_BACKOFF) <= FIRST_BACKOFF);
        }
        let mut backoff = FIRST_BACKOFF;
        for _ in 0..10 {
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        assert_eq!(backoff, MAX_BACKOFF);
    }
}
