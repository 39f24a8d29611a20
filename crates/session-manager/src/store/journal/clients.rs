//! `Clients`: the clients that joined one session, name → first join time, in join order.
//!
//! Almost every session holds a handful of clients: one is kept inline, a few in a short
//! list (one exact allocation, searched linearly), which costs a fraction of a hash map; a session that grows past
//! [`FEW`] clients moves to an index map, so joins stay constant-time however many
//! thousands join it.

use indexmap::IndexMap;

use crate::domain::ClientName;

/// Clients kept as a list; one more moves them to a map.
const FEW: usize = 8;

pub(crate) enum Clients {
    One(ClientName, u64),
    Few(Vec<(ClientName, u64)>),
    Many(Box<IndexMap<ClientName, u64>>),
}

impl Default for Clients {
    fn default() -> Self {
        Self::Few(Vec::new())
    }
}

impl Clients {
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::One(..) => 1,
            Self::Few(list) => list.len(),
            Self::Many(map) => map.len(),
        }
    }

    /// When `name` first joined, if it did.
    pub(crate) fn get(&self, name: &ClientName) -> Option<u64> {
        match self {
            Self::One(n, at) => (n == name).then_some(*at),
            Self::Few(list) => list.iter().find(|(n, _)| n == name).map(|&(_, at)| at),
            Self::Many(map) => map.get(name).copied(),
        }
    }

    pub(crate) fn contains(&self, name: &ClientName) -> bool {
        self.get(name).is_some()
    }

    /// Records `name` as joined at `at`, unless it joined before (its first time stands).
    pub(crate) fn insert(&mut self, name: ClientName, at: u64) {
        if self.contains(&name) {
            return;
        }
        match self {
            Self::Few(list) if list.is_empty() => *self = Self::One(name, at),
            Self::One(..) => {
                let Self::One(first, first_at) = std::mem::take(self) else {
                    return;
                };
                *self = Self::Few(vec![(first, first_at), (name, at)]);
            }
            Self::Few(list) => {
                if list.len() < FEW {
                    list.reserve_exact(1);
                    list.push((name, at));
                    return;
                }
                let mut map: IndexMap<ClientName, u64> = list.drain(..).collect();
                map.insert(name, at);
                *self = Self::Many(Box::new(map));
            }
            Self::Many(map) => {
                map.entry(name).or_insert(at);
            }
        }
    }

    /// Forgets `name` (a join taken back), keeping the others' order.
    pub(crate) fn remove(&mut self, name: &ClientName) {
        match self {
            Self::One(n, _) => {
                if n == name {
                    *self = Self::default();
                }
            }
            Self::Few(list) => list.retain(|(n, _)| n != name),
            Self::Many(map) => {
                map.shift_remove(name);
            }
        }
    }

    /// Name and first join time, in join order.
    pub(crate) fn iter(&self) -> Box<dyn Iterator<Item = (&ClientName, u64)> + '_> {
        match self {
            Self::One(name, at) => Box::new(std::iter::once((name, *at))),
            Self::Few(list) => Box::new(list.iter().map(|(name, at)| (name, *at))),
            Self::Many(map) => Box::new(map.iter().map(|(name, at)| (name, *at))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: usize) -> ClientName {
        ClientName::parse(&format!("c{n}")).unwrap()
    }

    #[test]
    fn one_client_is_kept_inline_and_can_be_taken_back() {
        let mut clients = Clients::default();
        clients.insert(name(1), 7);
        assert!(matches!(clients, Clients::One(..)));
        clients.insert(name(1), 9);
        assert_eq!(clients.get(&name(1)), Some(7));
        clients.remove(&name(1));
        assert_eq!(clients.len(), 0);
        clients.insert(name(1), 1);
        clients.insert(name(2), 2);
        assert!(matches!(clients, Clients::Few(_)));
        assert_eq!(clients.len(), 2);
    }

    #[test]
    fn keeps_join_order_and_first_times_across_the_switch_to_a_map() {
        let mut clients = Clients::default();
        for n in 0..20 {
            clients.insert(name(n), n as u64);
            clients.insert(name(n), 1000);
            assert_eq!(clients.len(), n + 1);
        }
        assert!(matches!(clients, Clients::Many(_)));
        clients.remove(&name(3));
        let listed: Vec<(String, u64)> = clients
            .iter()
            .map(|(name, at)| (name.as_str().to_owned(), at))
            .collect();
        let expected: Vec<(String, u64)> = (0..20)
            .filter(|&n| n != 3)
            .map(|n| (format!("c{n}"), n as u64))
            .collect();
        assert_eq!(listed, expected);
        assert_eq!(clients.get(&name(5)), Some(5));
        assert!(!clients.contains(&name(3)));
    }
}
