//! A live message stream (Server-Sent Events, axum's [`Sse`]): one frame per message of
//! the session,
//!
//! ```text
//! event: message
//! data: {"session_id":"123456789","topic":"/123456789/lamp","payload":"on","encoding":"utf8","size":2,"qos":1,"retain":false,"time":1733616000123}
//! ```
//!
//! a comment (`: keep-alive`) after the keep-alive interval without a frame, and, for a
//! reader that fell more than its buffer behind, `event: lagged` with
//! `data: {"dropped": n}` before it goes on with the oldest message still buffered. The
//! stream ends when the client goes away (its [`ReaderGuard`] drops with it, which may
//! end the link's subscription), when the session is closed or expires, or at shutdown.

use std::convert::Infallible;
use std::sync::Arc;

use axum::response::sse::Event as SseEvent;
use axum::response::Response;
use futures_util::StreamExt as _;
use tokio::sync::broadcast;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;

use super::message::MonitoredMessage;
use super::readers::ReaderGuard;
use crate::events::sse::{dropped_frame, stream_response, StreamSettings};
use crate::metrics::handle::LazyCounter;
use crate::metrics::MONITOR_STREAM_LAGGED_TOTAL;

static LAGGED: LazyCounter = LazyCounter::new(MONITOR_STREAM_LAGGED_TOTAL);

/// The response streaming what `receiver` gets, for as long as the client reads.
pub fn open(
    receiver: broadcast::Receiver<Arc<MonitoredMessage>>,
    guard: ReaderGuard,
    settings: &StreamSettings,
) -> Response {
    let frames = BroadcastStream::new(receiver).map(move |received| {
        // The reader stays counted while the stream exists.
        let _reading = &guard;
        let frame = match received {
            Ok(message) => message_frame(&message),
            Err(BroadcastStreamRecvError::Lagged(dropped)) => {
                LAGGED.increment(dropped);
                dropped_frame("lagged", dropped)
            }
        };
        Ok::<_, Infallible>(frame)
    });
    stream_response(frames, settings)
}

fn message_frame(message: &MonitoredMessage) -> SseEvent {
    SseEvent::default().event("message").data(message.to_json())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::readers::Readers;
    use bytes::Bytes;

    #[tokio::test]
    async fn messages_become_frames_and_a_slow_reader_is_told_what_it_lost() {
        let readers = Readers::new(2);
        let (receiver, guard) = readers.join("7");
        let settings = StreamSettings::default();
        let response = open(receiver, guard, &settings);
        assert_eq!(
            response.headers().get("content-type").map(|v| v.as_bytes()),
            Some(&b"text/event-stream"[..])
        );
        for n in 0..5u8 {
            readers.deliver(&Arc::new(MonitoredMessage {
                session_id: "7".into(),
                topic: "/7/t".into(),
                payload: Bytes::from(vec![b'a' + n]),
                qos: 0,
                retain: false,
                time_ms: 9,
            }));
        }
        let mut body = response.into_body().into_data_stream();
        let mut text = String::new();
        while text.matches("\n\n").count() < 3 {
            let chunk = body.next().await.expect("a frame").expect("no error");
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        let frames: Vec<&str> = text.split_terminator("\n\n").collect();
        assert_eq!(frames[0], "event: lagged\ndata: {\"dropped\":3}");
        assert!(
            frames[1].starts_with("event: message\ndata: {"),
            "{}",
            frames[1]
        );
        assert!(frames[1].contains("\"payload\":\"d\""), "{}", frames[1]);
        assert!(frames[2].contains("\"payload\":\"e\""), "{}", frames[2]);
        assert_eq!(readers.sessions(), ["7"], "read while the stream lives");
        drop(body);
        assert!(readers.sessions().is_empty(), "the last reader left");
    }

    #[tokio::test]
    async fn the_stream_ends_with_its_session() {
        let readers = Readers::new(2);
        let (receiver, guard) = readers.join("7");
        let response = open(receiver, guard, &StreamSettings::default());
        readers.end_session("7");
        let mut body = response.into_body().into_data_stream();
        assert!(body.next().await.is_none());
    }
}
