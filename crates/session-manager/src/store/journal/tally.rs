//! Running tallies of the session table, kept up to date by every change, so that neither
//! `/healthz` (live sessions) nor the journal writer (how big a snapshot would be) ever
//! walks all sessions.
//!
//! - **Live sessions**: the table's live slots, less those whose end has passed. Slots are
//!   counted as they are added and retired; their ends are kept in an index (end → number
//!   of live slots ending then), and the count of ended ones is a running sum over that
//!   index up to the last `now` asked about, moved forward (or back) by only the part of
//!   the index in between. So a call costs the number of distinct end times crossed since
//!   the previous call, never the number of sessions.
//! - **Snapshot size**: one record per slot plus one per client of a live slot. Clients of
//!   a slot whose end has passed are still counted (they leave only at the next restart or
//!   compaction), so this is an upper bound; it only decides when compacting is worth it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

#[derive(Default)]
pub(crate) struct Tally {
    live: Mutex<LiveTally>,
    /// Clients of live slots (ended or not).
    clients: AtomicUsize,
    /// Slots of any kind: every id ever handed out that the table still knows.
    slots: AtomicUsize,
}

/// Slots counted by a pass over a whole table, for [`Tally::add_counted`].
#[derive(Default)]
pub(crate) struct Counted {
    live: usize,
    retired: usize,
    clients: usize,
    by_end: BTreeMap<u64, usize>,
}

impl Counted {
    pub(crate) fn live(&mut self, end: Option<u64>, clients: usize) {
        self.live += 1;
        self.clients += clients;
        if let Some(end) = end {
            *self.by_end.entry(end).or_default() += 1;
        }
    }

    pub(crate) fn retired(&mut self) {
        self.retired += 1;
    }
}

#[derive(Default)]
struct LiveTally {
    /// Live slots, ended or not.
    open: usize,
    /// End time → live slots ending then (sessions without an end are not in here).
    by_end: BTreeMap<u64, usize>,
    /// `now` of the last count...
    counted_at: u64,
    /// ...and how many live slots had ended by then.
    ended: usize,
}

impl Tally {
    /// A live slot was added.
    pub(crate) fn add_live(&self, end: Option<u64>, clients: usize) {
        self.slots.fetch_add(1, Ordering::Relaxed);
        self.clients.fetch_add(clients, Ordering::Relaxed);
        let mut live = self.live_lock();
        live.open += 1;
        if let Some(end) = end {
            *live.by_end.entry(end).or_default() += 1;
            if end <= live.counted_at {
                live.ended += 1;
            }
        }
    }

    /// A live slot was removed from the table altogether (a create taken back).
    pub(crate) fn remove_live(&self, end: Option<u64>, clients: usize) {
        self.retire_live(end, clients);
        self.slots.fetch_sub(1, Ordering::Relaxed);
    }

    /// A live slot became retired (closed).
    pub(crate) fn retire_live(&self, end: Option<u64>, clients: usize) {
        self.clients.fetch_sub(clients, Ordering::Relaxed);
        let mut live = self.live_lock();
        live.open = live.open.saturating_sub(1);
        if let Some(end) = end {
            if let std::collections::btree_map::Entry::Occupied(mut entry) = live.by_end.entry(end)
            {
                *entry.get_mut() -= 1;
                if *entry.get() == 0 {
                    entry.remove();
                }
            }
            if end <= live.counted_at {
                live.ended = live.ended.saturating_sub(1);
            }
        }
    }

    /// A retired slot was turned back into a live one (a close taken back).
    pub(crate) fn unretire_live(&self, end: Option<u64>, clients: usize) {
        self.add_live(end, clients);
        self.slots.fetch_sub(1, Ordering::Relaxed);
    }

    /// A retired slot was added (only the tests do that; replay counts in bulk).
    #[cfg(test)]
    pub(crate) fn add_retired(&self) {
        self.slots.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds the slots of a table counted in one pass (by replay), at once rather than one
    /// lock per slot.
    pub(crate) fn add_counted(&self, counted: Counted) {
        let Counted {
            live: open,
            retired,
            clients,
            by_end,
        } = counted;
        self.slots.fetch_add(open + retired, Ordering::Relaxed);
        self.clients.fetch_add(clients, Ordering::Relaxed);
        let mut live = self.live_lock();
        live.open += open;
        let counted_at = live.counted_at;
        live.ended += by_end.range(..=counted_at).map(|(_, n)| n).sum::<usize>();
        for (end, slots) in by_end {
            *live.by_end.entry(end).or_default() += slots;
        }
    }

    pub(crate) fn client_added(&self) {
        self.clients.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn client_removed(&self) {
        self.clients.fetch_sub(1, Ordering::Relaxed);
    }

    /// Live slots whose end has not come at `now`.
    pub(crate) fn live_at(&self, now: u64) -> usize {
        let mut live = self.live_lock();
        let at = live.counted_at;
        if now > at {
            let crossed: usize = live.by_end.range(at + 1..=now).map(|(_, n)| n).sum();
            live.ended += crossed;
        } else if now < at {
            let crossed: usize = live.by_end.range(now + 1..=at).map(|(_, n)| n).sum();
            live.ended = live.ended.saturating_sub(crossed);
        }
        live.counted_at = now;
        live.open.saturating_sub(live.ended)
    }

    /// Records a snapshot would hold, at most.
    pub(crate) fn snapshot_records_estimate(&self) -> usize {
        self.slots.load(Ordering::Relaxed) + self.clients.load(Ordering::Relaxed)
    }

    fn live_lock(&self) -> std::sync::MutexGuard<'_, LiveTally> {
        // Every update leaves the tally consistent, so a panic elsewhere cannot tear it.
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_adds_closes_and_ends_in_both_directions_of_time() {
        let tally = Tally::default();
        tally.add_live(None, 0);
        tally.add_live(Some(100), 2);
        tally.add_live(Some(200), 1);
        assert_eq!(tally.live_at(50), 3);
        assert_eq!(tally.live_at(100), 2);
        assert_eq!(tally.live_at(250), 1);
        assert_eq!(tally.live_at(150), 2);
        // A session ending before the last count is counted as ended at once.
        tally.add_live(Some(120), 0);
        assert_eq!(tally.live_at(150), 2);
        assert_eq!(tally.live_at(110), 3);
        tally.retire_live(Some(200), 1);
        assert_eq!(tally.live_at(110), 2);
        // Closing one that had ended already changes nothing live.
        tally.retire_live(Some(100), 2);
        assert_eq!(tally.live_at(110), 2);
        assert_eq!(tally.live_at(0), 2);
        tally.add_retired();
        assert_eq!(tally.snapshot_records_estimate(), 5);
    }

    #[test]
    fn counted_slots_add_up_as_one_by_one() {
        let one_by_one = Tally::default();
        let in_bulk = Tally::default();
        assert_eq!(in_bulk.live_at(150), 0);
        let mut counted = Counted::default();
        for (end, clients) in [(None, 0), (Some(100), 2), (Some(200), 1), (Some(100), 0)] {
            one_by_one.add_live(end, clients);
            counted.live(end, clients);
        }
        one_by_one.add_retired();
        counted.retired();
        in_bulk.add_counted(counted);
        for now in [150, 0, 100, 250, 120] {
            assert_eq!(in_bulk.live_at(now), one_by_one.live_at(now), "at {now}");
        }
        assert_eq!(
            in_bulk.snapshot_records_estimate(),
            one_by_one.snapshot_records_estimate()
        );
    }
}
