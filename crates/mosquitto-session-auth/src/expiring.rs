//! A set of keys, each with a deadline, swept in deadline order: the one structure behind
//! every "forget this at time T" of the plugin (closed sessions refused until their end,
//! client entries reported or forgotten at theirs).
//!
//! Lookups go through a hash map; the sweep walks an ordered index and stops at the first
//! deadline still ahead, so a TICK costs only the entries that are due, however many are
//! kept.

use std::collections::{BTreeSet, HashMap};

/// Keys (client ids, session ids) with their deadline, in seconds since the epoch.
#[derive(Debug, Default)]
pub(crate) struct ExpiringSet {
    deadlines: HashMap<String, u64, foldhash::fast::RandomState>,
    /// (deadline, key): the same entries in the order the sweep takes them.
    by_deadline: BTreeSet<(u64, String)>,
}

impl ExpiringSet {
    /// Sets `key`'s deadline, replacing any earlier one; returns the one it replaced.
    pub(crate) fn set(&mut self, key: &str, deadline: u64) -> Option<u64> {
        let previous = self.deadlines.insert(key.to_owned(), deadline);
        if previous != Some(deadline) {
            if let Some(previous) = previous {
                self.by_deadline.remove(&(previous, key.to_owned()));
            }
            self.by_deadline.insert((deadline, key.to_owned()));
        }
        previous
    }

    /// Drops `key` and its deadline.
    pub(crate) fn remove(&mut self, key: &str) {
        if let Some(deadline) = self.deadlines.remove(key) {
            self.by_deadline.remove(&(deadline, key.to_owned()));
        }
    }

    /// `key`'s deadline, if it has one.
    pub(crate) fn get(&self, key: &str) -> Option<u64> {
        self.deadlines.get(key).copied()
    }

    /// Takes out the key with the earliest deadline if that deadline is at or before `now`.
    pub(crate) fn pop_due(&mut self, now: u64) -> Option<(String, u64)> {
        let (deadline, _) = self.by_deadline.first()?;
        if *deadline > now {
            return None;
        }
        let (deadline, key) = self.by_deadline.pop_first()?;
        self.deadlines.remove(&key);
        Some((key, deadline))
    }

    /// Every key and its deadline, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, u64)> + '_ {
        self.deadlines
            .iter()
            .map(|(key, &deadline)| (key.as_str(), deadline))
    }

    pub(crate) fn len(&self) -> usize {
        self.deadlines.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_keys_come_out_in_deadline_order_and_later_ones_stay() {
        let mut set = ExpiringSet::default();
        set.set("b", 20);
        set.set("a", 10);
        set.set("c", 30);
        assert_eq!(set.pop_due(25), Some(("a".to_owned(), 10)));
        assert_eq!(set.pop_due(25), Some(("b".to_owned(), 20)));
        assert_eq!(set.pop_due(25), None);
        assert_eq!(set.get("c"), Some(30));
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn a_new_deadline_replaces_the_old_one_in_the_sweep() {
        let mut set = ExpiringSet::default();
        assert_eq!(set.set("a", 10), None);
        assert_eq!(set.set("a", 50), Some(10));
        assert_eq!(set.set("a", 50), Some(50));
        assert_eq!(set.pop_due(49), None, "the old deadline is gone");
        assert_eq!(set.pop_due(50), Some(("a".to_owned(), 50)));
        assert_eq!(set.get("a"), None);
        set.set("b", 60);
        set.remove("b");
        assert_eq!(set.pop_due(u64::MAX), None, "a removed key is not swept");
        assert_eq!(set.iter().count(), 0);
    }
}
