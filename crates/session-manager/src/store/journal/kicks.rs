//! `Kicks`: the clients of one live session that were kicked, each with its generation
//! (how many times it was kicked) and the time of its last kick.
//!
//! Almost no session has any, so a session keeps `None` (one word) until its first kick.
//! A client never kicked has generation 0.

use crate::domain::ClientName;

/// One kicked client's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientKick {
    pub(crate) client: ClientName,
    pub(crate) generation: u32,
    pub(crate) kicked_at: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Kicks(Option<Box<[ClientKick]>>);

impl Kicks {
    /// The client's generation (0 when it was never kicked).
    pub(crate) fn generation(&self, client: &ClientName) -> u32 {
        self.get(client).map_or(0, |kick| kick.generation)
    }

    pub(crate) fn get(&self, client: &ClientName) -> Option<&ClientKick> {
        self.0
            .as_deref()
            .and_then(|kicks| kicks.iter().find(|kick| &kick.client == client))
    }

    /// Records a kick; a replayed kick never lowers a generation already known.
    pub(crate) fn record(&mut self, client: ClientName, generation: u32, kicked_at: u64) {
        let known = self
            .0
            .as_deref_mut()
            .and_then(|kicks| kicks.iter_mut().find(|kick| kick.client == client));
        match known {
            Some(kick) if kick.generation >= generation => {}
            Some(kick) => {
                kick.generation = generation;
                kick.kicked_at = kicked_at;
            }
            None => {
                // Kicked clients are few: the slice is rebuilt, one exact allocation.
                let mut kicks = self.0.take().map(Vec::from).unwrap_or_default();
                kicks.push(ClientKick {
                    client,
                    generation,
                    kicked_at,
                });
                self.0 = Some(kicks.into_boxed_slice());
            }
        }
    }

    /// Puts the client's state back as it was before a kick that did not reach the disk.
    pub(crate) fn restore(&mut self, client: &ClientName, previous: Option<ClientKick>) {
        let Some(kicks) = self.0.take() else {
            return;
        };
        let mut kicks = Vec::from(kicks);
        kicks.retain(|kick| &kick.client != client);
        kicks.extend(previous);
        self.0 = (!kicks.is_empty()).then(|| kicks.into_boxed_slice());
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &ClientKick> {
        self.0.as_deref().into_iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> ClientName {
        ClientName::parse(text).expect("a valid name")
    }

    #[test]
    fn generations_only_grow_and_a_failed_kick_is_taken_back() {
        let mut kicks = Kicks::default();
        assert_eq!(kicks.generation(&name("lamp")), 0);
        kicks.record(name("lamp"), 2, 20);
        kicks.record(name("lamp"), 1, 10);
        assert_eq!(kicks.generation(&name("lamp")), 2);
        assert_eq!(kicks.get(&name("lamp")).map(|k| k.kicked_at), Some(20));
        let before = kicks.get(&name("lamp")).cloned();
        kicks.record(name("lamp"), 3, 30);
        kicks.restore(&name("lamp"), before);
        assert_eq!(kicks.generation(&name("lamp")), 2);
        kicks.restore(&name("lamp"), None);
        assert_eq!(kicks.iter().count(), 0);
    }
}
