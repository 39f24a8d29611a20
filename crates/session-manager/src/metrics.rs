//! Metrics: the names every part records under, their help texts and histogram buckets,
//! and the one Prometheus recorder `/metrics` renders ([`install`]).
//!
//! Parts record through the `metrics` facade (`metrics::counter!` and friends) under the
//! names below; nothing is passed around. The recorder is process-global: [`install`]
//! puts it in place once and hands back the same handle on every later call, so several
//! applications in one process (the tests) share it. Until it is installed, recording is
//! a no-op.
//!
//! Label values are always bounded sets: route templates (never raw paths, which carry
//! session ids), status codes, outcomes, signer kinds, event types, and a webhook
//! receiver's index in `ISM_WEBHOOK_URLS` (never its URL, which may carry a secret).
//! The one exception, the monitor's per-session counters (`ISM_MONITOR=log`), are not
//! in the recorder: a bounded table renders them at each scrape
//! ([`crate::monitor::counters`]).
//!
//! [`http`] records every HTTP request (port, matched route, status, duration). What is
//! recorded on every join or request goes through handles registered once per label set
//! ([`handle`]) rather than the macros, which look the key up in the registry each time.

pub(crate) mod handle;
pub(crate) mod http;

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Requests answered, by `port` (admin, public), `route` (template) and `status`.
pub const HTTP_REQUESTS_TOTAL: &str = "ism_http_requests_total";
/// Time to answer a request, by `port` and `route`.
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "ism_http_request_duration_seconds";
/// Joins decided, by `outcome`.
pub const JOINS_TOTAL: &str = "ism_joins_total";
/// Time to decide a join (throttle, PIN, store, signature), without the refusal floor.
pub const JOIN_DURATION_SECONDS: &str = "ism_join_duration_seconds";
/// Time to sign one token, by `signer` (none, local, kms).
pub const SIGNER_DURATION_SECONDS: &str = "ism_signer_duration_seconds";
/// Tokens the signer failed to sign, by `signer`.
pub const SIGNER_ERRORS_TOTAL: &str = "ism_signer_errors_total";
/// Time of one journal write and fsync.
pub const JOURNAL_FSYNC_DURATION_SECONDS: &str = "ism_journal_fsync_duration_seconds";
/// Records one journal fsync made durable.
pub const JOURNAL_BATCH_RECORDS: &str = "ism_journal_batch_records";
/// Sessions open now (set when `/metrics` is scraped).
pub const SESSIONS_LIVE: &str = "ism_sessions_live";
pub const DEVICES_ONLINE: &str = "ism_devices_online";
pub const BROKER_LINK_UP: &str = "ism_broker_link_up";
pub const BROKER_LINK_PENDING: &str = "ism_broker_link_pending";
pub const PRESENCE_MESSAGES_TOTAL: &str = "ism_presence_messages_total";
pub const KICKS_TOTAL: &str = "ism_kicks_total";
/// Messages of the sessions' conductors dropped because the broker link could not take
/// them (its outbox or the MQTT client's queue full).
pub const CONDUCTOR_MESSAGES_DROPPED_TOTAL: &str = "ism_conductor_messages_dropped_total";
pub const EVENTS_TOTAL: &str = "ism_events_total";
pub const EVENT_STREAM_DROPPED_TOTAL: &str = "ism_event_stream_dropped_total";
pub const WEBHOOK_DELIVERIES_TOTAL: &str = "ism_webhook_deliveries_total";
pub const WEBHOOK_QUEUE_DEPTH: &str = "ism_webhook_queue_depth";
pub const WEBHOOK_DELIVERY_DURATION_SECONDS: &str = "ism_webhook_delivery_duration_seconds";
/// Messages the monitor logged and counted (`ISM_MONITOR=log`), all sessions together.
pub const MONITOR_MESSAGES_TOTAL: &str = "ism_monitor_messages_total";
/// Their payload bytes.
pub const MONITOR_BYTES_TOTAL: &str = "ism_monitor_bytes_total";
/// Messages the broker link received but the monitor had no room for.
pub const MONITOR_DROPPED_TOTAL: &str = "ism_monitor_dropped_total";
/// Messages live message stream readers lost because they read too slowly.
pub const MONITOR_STREAM_LAGGED_TOTAL: &str = "ism_monitor_stream_lagged_total";
/// Sessions the broker link is subscribed to one by one for live message streams.
pub const MONITOR_SUBSCRIPTIONS: &str = "ism_monitor_subscriptions";

/// HTTP answers: 0.5 ms (a probe) to 10 s (a join waiting on a slow KMS).
const HTTP_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Join decisions: 1 ms to 5 s.
const JOIN_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
/// Signatures: 0.1 ms (local ES256) to 5 s (KMS at its call budget).
const SIGNER_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
/// Journal fsyncs: 0.1 ms (a fast SSD) to 1 s (a disk in trouble).
const FSYNC_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];
/// Records per fsync: 1 up to the writer's batch cap.
const BATCH_RECORD_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];
/// Webhook deliveries: 5 ms to 30 s.
const WEBHOOK_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// How often histogram samples are folded into their buckets when nobody scrapes, so
/// that memory stays bounded.
pub(crate) const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder (once per process) and describes every metric;
/// returns the handle `/metrics` renders. Later calls return the same handle. Should
/// another recorder already be installed (an embedding program's), this one still
/// renders, but sees nothing, and a warning says so.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = builder().build_recorder();
            let handle = recorder.handle();
            match metrics::set_global_recorder(recorder) {
                Ok(()) => describe_all(),
                Err(error) => tracing::warn!(
                    %error,
                    "another metrics recorder is installed: /metrics will stay empty"
                ),
            }
            handle
        })
        .clone()
}

/// Whether [`install`] has put the recorder in place: a handle registered before would
/// record nowhere for good ([`handle`]).
pub(crate) fn is_installed() -> bool {
    HANDLE.get().is_some()
}

/// The recorder's settings: one bucket set per histogram.
fn builder() -> PrometheusBuilder {
    let buckets: [(&str, &[f64]); 6] = [
        (HTTP_REQUEST_DURATION_SECONDS, HTTP_BUCKETS),
        (JOIN_DURATION_SECONDS, JOIN_BUCKETS),
        (SIGNER_DURATION_SECONDS, SIGNER_BUCKETS),
        (JOURNAL_FSYNC_DURATION_SECONDS, FSYNC_BUCKETS),
        (JOURNAL_BATCH_RECORDS, BATCH_RECORD_BUCKETS),
        (WEBHOOK_DELIVERY_DURATION_SECONDS, WEBHOOK_BUCKETS),
    ];
    buckets
        .into_iter()
        .try_fold(PrometheusBuilder::new(), |builder, (name, values)| {
            builder.set_buckets_for_metric(Matcher::Full(name.to_owned()), values)
        })
        // Only an empty bucket list is refused, and none of these is empty.
        .unwrap_or_else(|error| {
            tracing::warn!(%error, "histogram buckets refused: histograms become summaries");
            PrometheusBuilder::new()
        })
}

/// The HELP lines of every metric, whichever part records it.
fn describe_all() {
    describe_counter!(
        HTTP_REQUESTS_TOTAL,
        "HTTP requests answered, by port (admin, public), route template and status code"
    );
    describe_histogram!(
        HTTP_REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "Time from a request's arrival to its response headers, by port and route template"
    );
    describe_counter!(
        JOINS_TOTAL,
        "Join attempts by outcome: ok, wrong_pin (wrong PIN or unknown, closed or expired session), locked, rate_limited, session_full, bad_request, unavailable"
    );
    describe_histogram!(
        JOIN_DURATION_SECONDS,
        Unit::Seconds,
        "Time to decide a join (throttle, PIN check, durable join record, signature), without the refusal floor"
    );
    describe_histogram!(
        SIGNER_DURATION_SECONDS,
        Unit::Seconds,
        "Time to sign one token, by signer (none, local, kms)"
    );
    describe_counter!(
        SIGNER_ERRORS_TOTAL,
        "Tokens the signer could not sign (unavailable or failed), by signer"
    );
    describe_histogram!(
        JOURNAL_FSYNC_DURATION_SECONDS,
        Unit::Seconds,
        "Time of one session journal write and fsync (one group commit)"
    );
    describe_histogram!(
        JOURNAL_BATCH_RECORDS,
        Unit::Count,
        "Records made durable by one journal fsync (group commit)"
    );
    describe_gauge!(
        SESSIONS_LIVE,
        "Sessions open now (neither closed nor expired)"
    );
    describe_gauge!(
        DEVICES_ONLINE,
        "Devices connected to the broker, as its presence reports tell"
    );
    describe_gauge!(
        BROKER_LINK_UP,
        "1 while the control link to the broker is connected, 0 otherwise"
    );
    describe_gauge!(
        BROKER_LINK_PENDING,
        "Closes and kicks noted but not yet handed to the broker connection"
    );
    describe_counter!(
        PRESENCE_MESSAGES_TOTAL,
        "Presence messages received from the broker plugin, by kind"
    );
    describe_counter!(KICKS_TOTAL, "Devices kicked through the admin API");
    describe_counter!(
        CONDUCTOR_MESSAGES_DROPPED_TOTAL,
        "Conductor messages (heartbeats) dropped because the broker link could not take them"
    );
    describe_counter!(EVENTS_TOTAL, "Events published on the event bus, by type");
    describe_counter!(
        EVENT_STREAM_DROPPED_TOTAL,
        "Events an SSE listener missed because it read too slowly"
    );
    describe_counter!(
        WEBHOOK_DELIVERIES_TOTAL,
        "Webhook deliveries by receiver (index in ISM_WEBHOOK_URLS) and outcome (delivered, failed, dropped)"
    );
    describe_gauge!(
        WEBHOOK_QUEUE_DEPTH,
        "Events waiting to be delivered, by receiver (index in ISM_WEBHOOK_URLS)"
    );
    describe_histogram!(
        WEBHOOK_DELIVERY_DURATION_SECONDS,
        Unit::Seconds,
        "Time of one webhook delivery attempt, by receiver (index in ISM_WEBHOOK_URLS)"
    );
    describe_counter!(
        MONITOR_MESSAGES_TOTAL,
        "Messages of all sessions the monitor logged and counted (ISM_MONITOR=log)"
    );
    describe_counter!(
        MONITOR_BYTES_TOTAL,
        Unit::Bytes,
        "Payload bytes of the messages the monitor logged and counted (ISM_MONITOR=log)"
    );
    describe_counter!(
        MONITOR_DROPPED_TOTAL,
        "Session messages the broker link received but the monitor dropped, its queue being full"
    );
    describe_counter!(
        MONITOR_STREAM_LAGGED_TOTAL,
        "Messages a live message stream reader missed because it read too slowly"
    );
    describe_gauge!(
        MONITOR_SUBSCRIPTIONS,
        "Sessions the broker link subscribes to one by one because someone reads their live messages (ISM_MONITOR=off)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installing_twice_hands_back_the_same_recorder() {
        let first = install();
        let second = install();
        metrics::counter!(JOINS_TOTAL, "outcome" => "ok").increment(1);
        // Other tests record into the same recorder meanwhile: the two renders need not be
        // equal, but both must show what was recorded through the installed recorder.
        assert!(first.render().contains("ism_joins_total"));
        assert!(second.render().contains("ism_joins_total"));
    }

    #[test]
    fn every_histogram_has_its_own_buckets() {
        let recorder = builder().build_recorder();
        let render = |name: &str, value: f64| {
            metrics::with_local_recorder(&recorder, || {
                metrics::histogram!(name.to_owned()).record(value)
            });
            recorder.handle().render()
        };
        assert!(render(JOIN_DURATION_SECONDS, 0.002)
            .contains("ism_join_duration_seconds_bucket{le=\"5\"}"));
        assert!(render(JOURNAL_FSYNC_DURATION_SECONDS, 0.0002)
            .contains("ism_journal_fsync_duration_seconds_bucket{le=\"0.0001\"}"));
    }
}
