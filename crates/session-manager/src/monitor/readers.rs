//! Who is reading which session's live messages: one broadcast channel per session with
//! at least one reader, counted so that the broker link holds a subscription to a session
//! exactly while someone reads it.
//!
//! Each channel is a `tokio::sync::broadcast` ring of [`Readers::new`]'s `buffer`
//! messages: sending never waits, and each reader keeps its own place in it, so a reader
//! that falls more than `buffer` messages behind loses the oldest (it is told how many)
//! while the others and the sender go on. A [`ReaderGuard`] is held by each open stream;
//! dropping the last one of a session removes its channel and wakes whoever follows
//! [`Readers::changed`] (the link's subscriptions).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{broadcast, Notify};

use super::message::MonitoredMessage;

/// Live readers by session.
#[derive(Debug)]
pub struct Readers {
    buffer: usize,
    channels: Mutex<HashMap<String, Channel>>,
    /// Raised whenever a session gains its first reader or loses its last.
    generation: AtomicU64,
    changed: Notify,
    /// Numbers the channels, so that a guard never touches a later channel of its session.
    next_channel: AtomicU64,
}

#[derive(Debug)]
struct Channel {
    id: u64,
    sender: broadcast::Sender<Arc<MonitoredMessage>>,
    readers: usize,
}

/// Keeps one reader of one session counted; dropping it ends the reading.
#[derive(Debug)]
pub struct ReaderGuard {
    readers: Arc<Readers>,
    session: String,
    channel: u64,
}

impl Drop for ReaderGuard {
    fn drop(&mut self) {
        self.readers.leave(&self.session, self.channel);
    }
}

impl Readers {
    /// Readers that each fall behind by at most `buffer` messages.
    pub fn new(buffer: usize) -> Arc<Self> {
        Arc::new(Readers {
            buffer: buffer.max(1),
            channels: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            changed: Notify::new(),
            next_channel: AtomicU64::new(0),
        })
    }

    fn channels(&self) -> std::sync::MutexGuard<'_, HashMap<String, Channel>> {
        self.channels.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new reader of `session`'s messages from now on.
    pub fn join(
        self: &Arc<Self>,
        session: &str,
    ) -> (broadcast::Receiver<Arc<MonitoredMessage>>, ReaderGuard) {
        let mut channels = self.channels();
        let first = !channels.contains_key(session);
        let channel = channels
            .entry(session.to_owned())
            .or_insert_with(|| Channel {
                id: self.next_channel.fetch_add(1, Ordering::Relaxed),
                sender: broadcast::channel(self.buffer).0,
                readers: 0,
            });
        channel.readers += 1;
        let receiver = channel.sender.subscribe();
        let guard = ReaderGuard {
            readers: Arc::clone(self),
            session: session.to_owned(),
            channel: channel.id,
        };
        drop(channels);
        if first {
            self.note_change();
        }
        (receiver, guard)
    }

    fn leave(&self, session: &str, channel_id: u64) {
        let mut channels = self.channels();
        let Some(channel) = channels.get_mut(session) else {
            return;
        };
        if channel.id != channel_id {
            return;
        }
        channel.readers -= 1;
        if channel.readers == 0 {
            channels.remove(session);
            drop(channels);
            self.note_change();
        }
    }

    /// Hands `message` to the readers of its session, if any; never waits.
    pub fn deliver(&self, message: &Arc<MonitoredMessage>) {
        if let Some(channel) = self.channels().get(&message.session_id) {
            // Fails only when no receiver is left, and then nobody is waiting for it.
            let _ = channel.sender.send(Arc::clone(message));
        }
    }

    /// The session ended: its readers' streams end (their guards then find nothing).
    pub fn end_session(&self, session: &str) {
        if self.channels().remove(session).is_some() {
            self.note_change();
        }
    }

    /// Ends the streams of every session `keep` refuses.
    pub fn retain(&self, mut keep: impl FnMut(&str) -> bool) {
        let mut channels = self.channels();
        let before = channels.len();
        channels.retain(|session, _| keep(session));
        let changed = channels.len() != before;
        drop(channels);
        if changed {
            self.note_change();
        }
    }

    /// Whether anyone reads any session now.
    pub fn any(&self) -> bool {
        !self.channels().is_empty()
    }

    /// The sessions someone reads now.
    pub fn sessions(&self) -> Vec<String> {
        self.channels().keys().cloned().collect()
    }

    /// Raised on every change of [`Self::sessions`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Resolves after the next change of [`Self::sessions`] (or at once when one happened
    /// since the last wait).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    fn note_change(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        // `notify_one` keeps a permit when nobody waits yet, so no change is missed.
        self.changed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use tokio::sync::broadcast::error::TryRecvError;

    fn message(session: &str, n: u8) -> Arc<MonitoredMessage> {
        Arc::new(MonitoredMessage {
            session_id: session.to_owned(),
            topic: format!("/{session}/x"),
            payload: Bytes::from(vec![n]),
            qos: 0,
            retain: false,
            time_ms: 0,
        })
    }

    #[test]
    fn a_session_is_read_while_its_last_reader_stays() {
        let readers = Readers::new(8);
        let start = readers.generation();
        let (_first_rx, first) = readers.join("1");
        assert_eq!(readers.generation(), start + 1);
        let (_second_rx, second) = readers.join("1");
        assert_eq!(
            readers.generation(),
            start + 1,
            "a second reader changes nothing"
        );
        assert_eq!(readers.sessions(), ["1"]);
        assert!(readers.any());
        drop(first);
        assert_eq!(readers.sessions(), ["1"]);
        assert_eq!(readers.generation(), start + 1);
        drop(second);
        assert!(readers.sessions().is_empty());
        assert!(!readers.any());
        assert_eq!(readers.generation(), start + 2);
    }

    #[test]
    fn readers_get_their_session_only() {
        let readers = Readers::new(8);
        let (mut one, _g1) = readers.join("1");
        let (mut two, _g2) = readers.join("2");
        readers.deliver(&message("1", 1));
        readers.deliver(&message("3", 3));
        assert_eq!(one.try_recv().expect("a message").session_id, "1");
        assert!(matches!(one.try_recv(), Err(TryRecvError::Empty)));
        assert!(matches!(two.try_recv(), Err(TryRecvError::Empty)));
    }

    #[test]
    fn a_slow_reader_loses_the_oldest_and_is_told_how_many() {
        let readers = Readers::new(4);
        let (mut slow, _guard) = readers.join("1");
        for n in 0..10 {
            readers.deliver(&message("1", n));
        }
        assert!(matches!(slow.try_recv(), Err(TryRecvError::Lagged(6))));
        let next = slow.try_recv().expect("the oldest kept");
        assert_eq!(next.payload.as_ref(), [6]);
    }

    #[test]
    fn an_ended_session_ends_its_streams_and_forgets_its_readers() {
        let readers = Readers::new(4);
        let (mut rx, guard) = readers.join("1");
        readers.end_session("1");
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Closed)));
        assert!(readers.sessions().is_empty());
        let generation = readers.generation();
        drop(guard);
        assert_eq!(readers.generation(), generation, "nothing left to leave");
        let (_rx, _again) = readers.join("2");
        readers.retain(|session| session != "2");
        assert!(readers.sessions().is_empty());
    }
}
