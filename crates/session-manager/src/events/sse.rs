//! The admin event stream's body (Server-Sent Events): one frame per event,
//!
//! ```text
//! id: 42
//! event: device_joined
//! data: {"id":"evt_...","seq":42,"timestamp":...,"type":"device_joined","data":{...}}
//! ```
//!
//! a comment (`: keep-alive`) when nothing was sent for the keep-alive interval, and, for
//! a listener that fell more than the bus's buffer behind, `event: gap` with
//! `data: {"dropped": n}` before it goes on with the oldest event still buffered.
//!
//! A pump task per listener moves events from the bus to a small channel the response body
//! reads; a slow client slows only its own pump, never the bus. The stream ends when the
//! client goes away or the service shuts down (so a graceful shutdown does not wait for
//! open streams).

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use hyper::body::Frame;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use super::{Event, EventBus};
use crate::shutdown::Shutdown;

/// Frames waiting between a listener's pump and its connection.
const FRAMES_IN_FLIGHT: usize = 16;

/// How every stream of a bus is kept alive and ended.
#[derive(Clone)]
pub struct StreamSettings {
    /// A comment is sent after this long without a frame, so that idle-connection timeouts
    /// (ours and proxies') do not cut the stream.
    pub keep_alive: Duration,
    /// Streams end when this is triggered.
    pub shutdown: Shutdown,
}

impl std::fmt::Debug for StreamSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSettings")
            .field("keep_alive", &self.keep_alive)
            .field("ended", &self.shutdown.is_triggered())
            .finish()
    }
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings {
            keep_alive: Duration::from_secs(15),
            shutdown: Shutdown::new(),
        }
    }
}

/// A new stream of the bus's events from now on, only those of `session` when given.
pub fn open(bus: &EventBus, session: Option<String>, settings: &StreamSettings) -> Response {
    let listener = bus.subscribe();
    let (frames, body) = mpsc::channel(FRAMES_IN_FLIGHT);
    tokio::spawn(pump(listener, session, frames, settings.clone()));
    let mut response = axum::body::Body::new(EventStreamBody { frames: body }).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Reverse proxies (nginx) must pass frames on as they come.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// Moves events from the bus to the connection until either end is gone.
async fn pump(
    mut listener: tokio::sync::broadcast::Receiver<std::sync::Arc<Event>>,
    session: Option<String>,
    frames: mpsc::Sender<Bytes>,
    settings: StreamSettings,
) {
    let start = tokio::time::Instant::now() + settings.keep_alive;
    let mut keep_alive = tokio::time::interval_at(start, settings.keep_alive);
    keep_alive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let frame = tokio::select! {
            biased;
            () = settings.shutdown.wait() => return,
            () = frames.closed() => return,
            received = listener.recv() => match received {
                Ok(event) => {
                    if session.as_deref().is_some_and(|id| id != event.kind.session_id()) {
                        continue;
                    }
                    event_frame(&event)
                }
                Err(RecvError::Lagged(dropped)) => {
                    metrics::counter!("ism_event_stream_dropped_total").increment(dropped);
                    gap_frame(dropped)
                }
                Err(RecvError::Closed) => return,
            },
            _ = keep_alive.tick() => Bytes::from_static(b": keep-alive\n\n"),
        };
        keep_alive.reset();
        let sent = tokio::select! {
            sent = frames.send(frame) => sent.is_ok(),
            () = settings.shutdown.wait() => false,
        };
        if !sent {
            return;
        }
    }
}

/// `id:`, `event:` and `data:` of one event (its JSON holds no newline).
fn event_frame(event: &Event) -> Bytes {
    let json = serde_json::to_string(event).unwrap_or_else(|_| "{}".to_owned());
    Bytes::from(format!(
        "id: {}\nevent: {}\ndata: {json}\n\n",
        event.seq,
        event.kind.type_name()
    ))
}

/// The marker a listener gets after it lost `dropped` events.
fn gap_frame(dropped: u64) -> Bytes {
    Bytes::from(format!(
        "event: gap\ndata: {}\n\n",
        serde_json::json!({ "dropped": dropped })
    ))
}

/// The response body: the frames the pump sends, until it stops.
struct EventStreamBody {
    frames: mpsc::Receiver<Bytes>,
}

impl hyper::body::Body for EventStreamBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.frames
            .poll_recv(cx)
            .map(|frame| frame.map(|bytes| Ok(Frame::data(bytes))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventKind;

    #[test]
    fn frames_are_spelled_as_server_sent_events() {
        let event = Event {
            id: "evt_1".into(),
            seq: 7,
            timestamp: 1,
            kind: EventKind::SessionClosed {
                session_id: "123".into(),
            },
        };
        assert_eq!(
            event_frame(&event),
            Bytes::from(
                "id: 7\nevent: session_closed\ndata: {\"id\":\"evt_1\",\"seq\":7,\"timestamp\":1,\"type\":\"session_closed\",\"data\":{\"session_id\":\"123\"}}\n\n"
            )
        );
        assert_eq!(
            gap_frame(3),
            Bytes::from_static(b"event: gap\ndata: {\"dropped\":3}\n\n")
        );
    }
}
