//! Graceful shutdown as one small type: [`Shutdown`] is triggered by SIGTERM or SIGINT
//! (or by [`Shutdown::trigger`], which tests use), and every server and background task
//! waits on the same [`Shutdown::wait`]. The servers stop accepting, finish the requests
//! in flight, and then the store is flushed.

use std::sync::Arc;

use tokio::sync::watch;

#[derive(Clone)]
pub struct Shutdown {
    sender: Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        let (sender, _) = watch::channel(false);
        Shutdown {
            sender: Arc::new(sender),
        }
    }

    /// Starts the shutdown; later calls do nothing.
    pub fn trigger(&self) {
        self.sender.send_replace(true);
    }

    pub fn is_triggered(&self) -> bool {
        *self.sender.borrow()
    }

    /// Resolves once the shutdown has started.
    pub async fn wait(&self) {
        let mut receiver = self.sender.subscribe();
        // Err only when the sender is gone, which cannot happen while `self` holds it.
        let _ = receiver.wait_for(|triggered| *triggered).await;
    }

    /// Triggers the shutdown on SIGTERM or SIGINT (Ctrl-C). The handlers are installed
    /// before this returns (not when a task first runs), so a signal sent right after start-up
    /// already stops the service gracefully.
    pub fn trigger_on_signals(&self) {
        let shutdown = self.clone();
        let signals = TerminationSignals::install();
        tokio::spawn(async move {
            let signal = signals.recv().await;
            tracing::info!(signal, "shutting down");
            shutdown.trigger();
        });
    }
}

/// SIGTERM and SIGINT, listened for from the moment `install` returns.
#[cfg(unix)]
struct TerminationSignals {
    sigterm: Option<tokio::signal::unix::Signal>,
    sigint: Option<tokio::signal::unix::Signal>,
}

#[cfg(unix)]
impl TerminationSignals {
    fn install() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        let listen = |kind: SignalKind, name: &str| {
            signal(kind)
                .map_err(|error| tracing::warn!(%error, "cannot listen for {name}"))
                .ok()
        };
        TerminationSignals {
            sigterm: listen(SignalKind::terminate(), "SIGTERM"),
            sigint: listen(SignalKind::interrupt(), "SIGINT"),
        }
    }

    async fn recv(mut self) -> &'static str {
        async fn next(signal: &mut Option<tokio::signal::unix::Signal>) {
            match signal {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = next(&mut self.sigterm) => "SIGTERM",
            _ = next(&mut self.sigint) => "SIGINT",
        }
    }
}

#[cfg(not(unix))]
struct TerminationSignals;

#[cfg(not(unix))]
impl TerminationSignals {
    fn install() -> Self {
        TerminationSignals
    }

    async fn recv(self) -> &'static str {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_before_and_after_the_trigger_are_released() {
        let shutdown = Shutdown::new();
        let early = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { shutdown.wait().await }
        });
        tokio::task::yield_now().await;
        assert!(!shutdown.is_triggered());
        shutdown.trigger();
        early.await.unwrap();
        shutdown.wait().await;
        assert!(shutdown.is_triggered());
    }
}
