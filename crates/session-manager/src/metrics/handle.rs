//! Metric handles registered once per label set and reused, for the metrics recorded on
//! every join and every request.
//!
//! `metrics::counter!(name, labels)` builds a key (name and labels) and looks it up in the
//! recorder's registry on every call; on the join path that lookup, done for each counter
//! and histogram, cost more than the atomic update it leads to. A [`LazyCounter`] or
//! [`LazyHistogram`] names one fixed label set (all `'static`), registers it on its first
//! use, exactly where the macro would have, so `/metrics` shows a series only once
//! something was recorded under it, and from then on records through the handle.
//!
//! A handle is bound to the recorder it was registered with, so none is registered before
//! [`super::install`] put the process's recorder in place: until then recording through
//! these is a no-op, as it is through the macros with no recorder installed. (A recorder
//! set for one thread with `metrics::with_local_recorder` is not seen by these handles.)

use std::sync::OnceLock;

use metrics::{Counter, Histogram};

/// One label, or none.
type FixedLabel = Option<(&'static str, &'static str)>;

/// A counter of one fixed label set, registered on first use.
pub(crate) type LazyCounter = Lazy<Counter>;

/// A histogram of one fixed label set, registered on first use.
pub(crate) type LazyHistogram = Lazy<Histogram>;

/// A kind of metric a [`Lazy`] handle can register.
pub(crate) trait Registrable {
    /// Registers `name` with `label` in the installed recorder (as its macro would).
    fn register(name: &'static str, label: FixedLabel) -> Self;
}

impl Registrable for Counter {
    fn register(name: &'static str, label: FixedLabel) -> Self {
        match label {
            Some((key, value)) => metrics::counter!(name, key => value),
            None => metrics::counter!(name),
        }
    }
}

impl Registrable for Histogram {
    fn register(name: &'static str, label: FixedLabel) -> Self {
        match label {
            Some((key, value)) => metrics::histogram!(name, key => value),
            None => metrics::histogram!(name),
        }
    }
}

/// A metric of one fixed label set, registered on first use.
#[derive(Debug)]
pub(crate) struct Lazy<M> {
    name: &'static str,
    label: FixedLabel,
    handle: OnceLock<M>,
}

impl<M> Lazy<M> {
    /// The metric `name` with no label.
    pub(crate) const fn new(name: &'static str) -> Self {
        Self::with_label(name, None)
    }

    /// The metric `name{key="value"}`.
    pub(crate) const fn labelled(
        name: &'static str,
        key: &'static str,
        value: &'static str,
    ) -> Self {
        Self::with_label(name, Some((key, value)))
    }

    const fn with_label(name: &'static str, label: FixedLabel) -> Self {
        Lazy {
            name,
            label,
            handle: OnceLock::new(),
        }
    }

    /// The fixed label, for tests that check a table of handles.
    #[cfg(test)]
    pub(crate) fn label(&self) -> Option<(&'static str, &'static str)> {
        self.label
    }
}

impl<M: Registrable> Lazy<M> {
    /// The registered handle; `None` while no recorder is installed.
    fn handle(&self) -> Option<&M> {
        if !super::is_installed() {
            return None;
        }
        Some(
            self.handle
                .get_or_init(|| M::register(self.name, self.label)),
        )
    }
}

impl LazyCounter {
    pub(crate) fn increment(&self, value: u64) {
        if let Some(counter) = self.handle() {
            counter.increment(value);
        }
    }
}

impl LazyHistogram {
    pub(crate) fn record(&self, value: impl metrics::IntoF64) {
        if let Some(histogram) = self.handle() {
            histogram.record(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_record_under_their_name_and_label_once_installed() {
        let rendered = super::super::install();
        static ANSWERS: LazyCounter =
            LazyCounter::labelled("ism_test_lazy_answers_total", "kind", "fixed");
        static WAITS: LazyHistogram = LazyHistogram::new("ism_test_lazy_wait_seconds");
        ANSWERS.increment(2);
        ANSWERS.increment(1);
        WAITS.record(std::time::Duration::from_millis(3));
        let text = rendered.render();
        assert!(
            text.contains("ism_test_lazy_answers_total{kind=\"fixed\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("ism_test_lazy_wait_seconds_count 1"),
            "{text}"
        );
    }
}
