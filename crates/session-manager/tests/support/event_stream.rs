//! Reading the admin event stream (`GET /api/v1/events`, Server-Sent Events) as a client
//! does: frames split on blank lines, comments skipped.
//!
//! Test files include it with `#[path = "support/event_stream.rs"] mod event_stream;`.

#![allow(dead_code)]

use std::time::Duration;

use serde_json::Value;

/// One frame: `event:`, `id:` (events only, not gap markers) and `data:` as JSON.
#[derive(Debug, Clone)]
pub struct Frame {
    pub event: String,
    pub id: Option<u64>,
    pub data: Value,
}

pub struct EventStream {
    response: reqwest::Response,
    buffer: String,
}

impl EventStream {
    /// Opens `{admin}/api/v1/events{query}`; asserts 200 and the SSE content type.
    pub async fn open(http: &reqwest::Client, admin: &str, query: &str) -> EventStream {
        let response = http
            .get(format!("{admin}/api/v1/events{query}"))
            .send()
            .await
            .expect("event stream request");
        assert_eq!(response.status(), reqwest::StatusCode::OK);
        assert_eq!(
            response.headers()[reqwest::header::CONTENT_TYPE],
            "text/event-stream"
        );
        EventStream {
            response,
            buffer: String::new(),
        }
    }

    /// The next frame within `patience`; `None` when the stream ended. Panics on timeout.
    pub async fn next(&mut self, patience: Duration) -> Option<Frame> {
        tokio::time::timeout(patience, self.next_frame())
            .await
            .unwrap_or_else(|_| panic!("no frame within {patience:?}"))
    }

    /// The next frame, however long it takes; `None` when the stream ended.
    async fn next_frame(&mut self) -> Option<Frame> {
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let text: String = self.buffer.drain(..end + 2).collect();
                if let Some(frame) = parse(&text) {
                    return Some(frame);
                }
            }
            let chunk = self.response.chunk().await.expect("event stream chunk")?;
            self.buffer
                .push_str(std::str::from_utf8(&chunk).expect("the stream is UTF-8"));
        }
    }

    /// Frames until (and with) the first whose `data.type` is `kind`.
    pub async fn until_type(&mut self, kind: &str, patience: Duration) -> Vec<Frame> {
        let mut frames = Vec::new();
        loop {
            let frame = self
                .next(patience)
                .await
                .unwrap_or_else(|| panic!("stream ended before a {kind} event: {frames:?}"));
            let done = frame.data["type"] == kind;
            frames.push(frame);
            if done {
                return frames;
            }
        }
    }
}

/// The frames of a complete stream text (comments skipped).
pub fn parse_all(text: &str) -> Vec<Frame> {
    text.split_inclusive("\n\n").filter_map(parse).collect()
}

/// A raw connection to the event stream with a small receive buffer that reads nothing
/// until told to: a listener that has stopped reading.
pub struct StalledReader {
    socket: tokio::net::TcpStream,
}

impl StalledReader {
    pub async fn open(admin: std::net::SocketAddr, query: &str) -> StalledReader {
        use tokio::io::AsyncWriteExt as _;
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .set_recv_buffer_size(4096)
            .expect("small receive buffer");
        let mut socket = socket.connect(admin).await.expect("connect");
        let request = format!(
            "GET /api/v1/events{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
        );
        socket
            .write_all(request.as_bytes())
            .await
            .expect("send request");
        StalledReader { socket }
    }

    /// Reads (at last) until the decoded body holds `needle` followed by a frame's end;
    /// the decoded body.
    pub async fn read_until(mut self, needle: &str, patience: Duration) -> String {
        use tokio::io::AsyncReadExt as _;
        let mut raw = Vec::new();
        let read = async {
            loop {
                let mut chunk = [0u8; 65536];
                let n = self.socket.read(&mut chunk).await.expect("read");
                assert!(n > 0, "the stream ended before {needle:?}");
                raw.extend_from_slice(&chunk[..n]);
                let body = dechunk(&raw);
                if let Some(at) = body.find(needle) {
                    if body[at..].contains("\n\n") {
                        return body;
                    }
                }
            }
        };
        tokio::time::timeout(patience, read)
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} within {patience:?}"))
    }
}

/// The body of an HTTP/1.1 chunked response read so far (an incomplete last chunk is left
/// out).
fn dechunk(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let Some(head_end) = text.find("\r\n\r\n") else {
        return String::new();
    };
    assert!(text.starts_with("HTTP/1.1 200"), "{}", &text[..head_end]);
    let mut rest = &text[head_end + 4..];
    let mut body = String::new();
    while let Some(line_end) = rest.find("\r\n") {
        let size = usize::from_str_radix(rest[..line_end].trim(), 16).expect("chunk size");
        let start = line_end + 2;
        if size == 0 || rest.len() < start + size + 2 {
            break;
        }
        body.push_str(&rest[start..start + size]);
        rest = &rest[start + size + 2..];
    }
    body
}

/// A frame's fields; `None` for a comment (keep-alive).
fn parse(text: &str) -> Option<Frame> {
    let mut event = None;
    let mut id = None;
    let mut data = None;
    for line in text.lines() {
        if let Some(value) = line.strip_prefix("event: ") {
            event = Some(value.to_owned());
        } else if let Some(value) = line.strip_prefix("id: ") {
            id = Some(value.parse().expect("numeric id"));
        } else if let Some(value) = line.strip_prefix("data: ") {
            data = Some(serde_json::from_str(value).expect("data is JSON"));
        } else {
            assert!(
                line.is_empty() || line.starts_with(':'),
                "unexpected line {line:?} in {text:?}"
            );
        }
    }
    Some(Frame {
        event: event?,
        id,
        data: data.expect("a frame with an event has data"),
    })
}
