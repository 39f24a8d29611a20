//! The admin event stream (Server-Sent Events, axum's [`Sse`]): one frame per event,
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
//! Each stream reads the bus's broadcast buffer at its own pace: a slow client falls
//! behind (and is told what it lost), it never holds up the bus. The stream ends when the
//! client goes away or the service shuts down (so a graceful shutdown does not wait for
//! open streams).

use std::convert::Infallible;
use std::time::Duration;

use axum::http::HeaderName;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;

use super::{Event, EventBus};
use crate::shutdown::Shutdown;

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
    let frames = BroadcastStream::new(bus.subscribe()).filter_map(move |received| {
        let frame = match received {
            Ok(event) => session
                .as_deref()
                .is_none_or(|id| id == event.kind.session_id())
                .then(|| event_frame(&event)),
            Err(BroadcastStreamRecvError::Lagged(dropped)) => {
                metrics::counter!("ism_event_stream_dropped_total").increment(dropped);
                Some(dropped_frame("gap", dropped))
            }
        };
        std::future::ready(frame.map(Ok::<_, Infallible>))
    });
    stream_response(frames, settings)
}

/// The response that streams `frames` until the client goes or the service shuts down,
/// with a keep-alive comment in quiet times and no buffering in a reverse proxy. Every
/// Server-Sent Events route of the service answers with it.
pub fn stream_response<S>(frames: S, settings: &StreamSettings) -> Response
where
    S: futures_util::Stream<Item = Result<SseEvent, Infallible>> + Send + 'static,
{
    let shutdown = settings.shutdown.clone();
    let frames = frames.take_until(async move { shutdown.wait().await });
    let stream = Sse::new(frames).keep_alive(
        KeepAlive::new()
            .interval(settings.keep_alive)
            .text("keep-alive"),
    );
    // Reverse proxies (nginx) must pass frames on as they come.
    let unbuffered = [(HeaderName::from_static("x-accel-buffering"), "no")];
    (unbuffered, stream).into_response()
}

/// The marker a reader gets after it lost `dropped` frames: `event: <name>` with
/// `{"dropped": n}`.
pub fn dropped_frame(name: &'static str, dropped: u64) -> SseEvent {
    SseEvent::default()
        .event(name)
        .data(serde_json::json!({ "dropped": dropped }).to_string())
}

/// `id:`, `event:` and `data:` of one event (its JSON holds no newline).
fn event_frame(event: &Event) -> SseEvent {
    let json = serde_json::to_string(event).unwrap_or_else(|_| "{}".to_owned());
    SseEvent::default()
        .id(event.seq.to_string())
        .event(event.kind.type_name())
        .data(json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventKind;

    #[tokio::test]
    async fn frames_are_server_sent_events_of_one_session_with_a_gap_marker() {
        let bus = EventBus::new(4);
        let settings = StreamSettings::default();
        let response = open(&bus, Some("123".into()), &settings);
        let header = |name: &str| response.headers().get(name).map(|v| v.as_bytes().to_vec());
        assert_eq!(header("content-type"), Some(b"text/event-stream".to_vec()));
        assert_eq!(header("x-accel-buffering"), Some(b"no".to_vec()));
        for session in ["123", "999", "123", "999", "123", "123"] {
            bus.publish(
                EventKind::SessionClosed {
                    session_id: session.into(),
                },
                1,
            );
        }
        let mut body = response.into_body().into_data_stream();
        let mut text = String::new();
        while text.matches("\n\n").count() < 4 {
            let chunk = body.next().await.expect("a frame").expect("no error");
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        settings.shutdown.trigger();
        assert!(body.next().await.is_none(), "the stream ends at shutdown");
        let frames: Vec<&str> = text.split_terminator("\n\n").collect();
        assert_eq!(frames.len(), 4, "{text}");
        assert_eq!(frames[0], "event: gap\ndata: {\"dropped\":2}");
        for (frame, seq) in frames[1..].iter().zip([3, 5, 6]) {
            assert_eq!(
                frame,
                &format!(
                    "id: {seq}\nevent: session_closed\ndata: {}",
                    frame.split_once("data: ").map_or("", |(_, json)| json)
                )
            );
            assert!(frame.contains(&format!("\"seq\":{seq},")), "{frame}");
            assert!(frame.contains("\"session_id\":\"123\""), "{frame}");
        }
    }
}
