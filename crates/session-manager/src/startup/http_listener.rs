//! Serving one listener with limits: HTTP/1.1 connections, at most `max_connections` at
//! once, a header read timeout and an idle timeout.
//!
//! Without them, idle TCP connections cost nothing to open and are kept forever, and
//! enough of them use up the process's file descriptors, which both listeners share: the
//! public port could starve the admin port. So:
//!
//! - when `max_connections` are open, the listener stops accepting until one closes (new
//!   connections wait in the kernel's backlog instead of taking descriptors);
//! - a connection that has not sent a complete request head within `header_timeout`
//!   (after it opened, or after its previous response) is closed;
//! - a connection on which no byte moved either way for `idle_timeout` is closed (a
//!   stalled body, a client that stops reading its response);
//! - the public cap is kept below the descriptor limit minus the admin cap
//!   ([`fit_to_open_files_limit`]), so the admin port always has descriptors left.
//!
//! On shutdown the listener stops accepting, open connections finish their requests in
//! flight and close, and [`serve`] returns when the last one has.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt as _;

use crate::shutdown::Shutdown;

/// Descriptors kept free for everything that is not a connection (journal, key files,
/// the broker link, the blocking pool).
pub const RESERVED_FILE_DESCRIPTORS: u64 = 64;
/// After a failed `accept` (typically out of descriptors), wait this long before retrying.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// How many connections one listener serves and how long it waits for them.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_connections: u32,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

/// Serves `router` on `listener` within `limits` until `shutdown` is triggered and every
/// connection has closed.
pub async fn serve(
    which: &'static str,
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: Shutdown,
) {
    let max = limits.max_connections.max(1);
    let slots = Arc::new(Semaphore::new(max as usize));
    let mut saturated_logged = false;
    loop {
        let permit = match Arc::clone(&slots).try_acquire_owned() {
            Ok(permit) => {
                saturated_logged = false;
                permit
            }
            Err(_) => {
                if !saturated_logged {
                    tracing::warn!(
                        listener = which,
                        max_connections = max,
                        "connection limit reached; new connections wait until one closes"
                    );
                    saturated_logged = true;
                }
                tokio::select! {
                    permit = Arc::clone(&slots).acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                    () = shutdown.wait() => break,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(listener = which, %error, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    continue;
                }
            },
            () = shutdown.wait() => break,
        };
        // Latency matters more than packet count for small JSON answers.
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(
            stream,
            peer,
            router.clone(),
            limits,
            shutdown.clone(),
            permit,
        ));
    }
    drop(listener);
    // Every connection holds a slot until it closes: all slots back means all closed.
    let _ = slots.acquire_many(max).await;
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: ConnectionLimits,
    shutdown: Shutdown,
    _slot: OwnedSemaphorePermit,
) {
    let activity = Activity::new();
    let io = TokioIo::new(TrackedIo {
        inner: stream,
        activity: Arc::clone(&activity),
    });
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(ConnectInfo(peer));
        let router = router.clone();
        async move {
            Ok::<_, Infallible>(
                router
                    .oneshot(request)
                    .await
                    .unwrap_or_else(|never| match never {}),
            )
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let mut connection = pin!(builder.serve_connection(io, service));
    let mut draining = false;
    loop {
        let idle_for = activity.idle_for();
        let idle_check = tokio::time::sleep(limits.idle_timeout.saturating_sub(idle_for));
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                return;
            }
            () = shutdown.wait(), if !draining => {
                connection.as_mut().graceful_shutdown();
                draining = true;
            }
            () = idle_check => {
                if activity.idle_for() >= limits.idle_timeout {
                    tracing::debug!(%peer, "closing an idle connection");
                    return;
                }
            }
        }
    }
}

/// When bytes last moved on a connection.
struct Activity {
    opened: Instant,
    last_millis: AtomicU64,
}

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Activity {
            opened: Instant::now(),
            last_millis: AtomicU64::new(0),
        })
    }

    fn touch(&self) {
        let millis = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_millis.store(millis, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_millis.load(Ordering::Relaxed));
        self.opened.elapsed().saturating_sub(last)
    }
}

/// A stream that notes in its [`Activity`] every read or write that moved bytes.
struct TrackedIo {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for TrackedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        result
    }
}

impl AsyncWrite for TrackedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(written)) if written > 0) {
            self.activity.touch();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(written)) if written > 0) {
            self.activity.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The public cap, lowered if needed so that it, the admin cap and
/// [`RESERVED_FILE_DESCRIPTORS`] fit under the process's open-files limit (when known).
pub fn fit_to_open_files_limit(public_max: u32, admin_max: u32) -> u32 {
    let Some(limit) = open_files_limit() else {
        return public_max;
    };
    let room = limit
        .saturating_sub(u64::from(admin_max))
        .saturating_sub(RESERVED_FILE_DESCRIPTORS);
    let fitted = u32::try_from(room).unwrap_or(u32::MAX).max(1);
    if fitted < public_max {
        tracing::warn!(
            open_files_limit = limit,
            configured = public_max,
            used = fitted,
            "ISM_PUBLIC_MAX_CONNECTIONS does not fit the open-files limit (ulimit -n) with the admin connections; lowering it"
        );
        fitted
    } else {
        public_max
    }
}

/// The soft limit of open files, from `/proc/self/limits` (Linux); None elsewhere.
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_files_limit(&limits)
}

fn parse_open_files_limit(limits: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_open_files_limit_is_read() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max cpu time              unlimited            unlimited            seconds   \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(parse_open_files_limit(limits), Some(1024));
        assert_eq!(
            parse_open_files_limit("Max open files  unlimited unlimited files"),
            None
        );
        assert_eq!(parse_open_files_limit(""), None);
    }
}
