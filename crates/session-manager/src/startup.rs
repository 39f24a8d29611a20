//! Building and running the application: [`Application::build`] opens the store, builds
//! the signer and binds both listeners (port 0 works, and the bound addresses are
//! reported), [`Application::run_until_stopped`] serves until a shutdown is triggered,
//! finishes the requests in flight and flushes the store.
//!
//! Each listener is served with connection limits and timeouts ([`http_listener`]); the
//! routers come from [`crate::routes`]. The metrics recorder is installed first (once per
//! process, [`crate::metrics::install`]), and a task folds histogram samples into their
//! buckets while the application runs. The admin listener runs on a thread and runtime
//! of its own, so that a flood of joins on the public port cannot delay it.

mod http_listener;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;

use crate::admin_auth::request_origin::AllowedHosts;
use crate::admin_auth::AdminAuth;
use crate::broker::{self, LinkTask, PresenceTable};
use crate::clock::{Clock, SystemClock};
use crate::conductor::{self, Conductors};
use crate::config::Config;
use crate::data_dir_lock::DataDirLock;
use crate::error::Error;
use crate::events::sse::StreamSettings;
use crate::events::webhooks::{self, WebhookWorker};
use crate::events::{expiry, EventBus};
use crate::join::pin_check::PinChecker;
use crate::join::refusal_floor;
use crate::monitor::{Monitor, MonitorWorker};
use crate::rate_limit::{FailurePolicy, JoinThrottle, ThrottleSettings};
use crate::refusal_log::RefusalLog;
use crate::routes::admin::SessionDefaults;
use crate::routes::{admin_router, public_router};
use crate::shutdown::Shutdown;
use crate::signer;
use crate::state::{AppState, TokenPolicy};
use crate::store::{JournalStore, SessionStore, StoreConfig, StoreError};
use http_listener::ConnectionLimits;

/// How long requests in flight may take to finish once a shutdown starts.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How often repeated join refusals are logged, as one line per source with a count.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// How often the join throttle forgets stale entries.
const THROTTLE_SWEEP_INTERVAL: Duration = Duration::from_secs(30);
/// The longest an admin event stream goes without a byte (a keep-alive comment).
const EVENT_STREAM_KEEP_ALIVE: Duration = Duration::from_secs(15);

pub struct Application {
    admin_listener: TcpListener,
    public_listener: TcpListener,
    admin_router: Router,
    public_router: Router,
    admin_limits: ConnectionLimits,
    public_limits: ConnectionLimits,
    state: AppState,
    shutdown: Shutdown,
    revocation: Option<LinkTask>,
    /// One per webhook receiver.
    webhook_workers: Vec<WebhookWorker>,
    /// Logs, counts and streams what the broker link sees of the sessions' traffic.
    monitor_worker: MonitorWorker,
    /// Held until the process is done with the data directory.
    data_dir_lock: DataDirLock,
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, Error> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// [`Application::build`] on the given clock (tests drive time with a manual one).
    pub async fn build_with_clock(config: Config, clock: Arc<dyn Clock>) -> Result<Self, Error> {
        // First, so that everything from here on is measured (once per process).
        crate::metrics::install();
        let mut auth = AdminAuth::new(config.admin.admin_api_key_hash.as_deref())?;
        if config.admin.admin_compat_without_key {
            auth = auth.without_key_for(crate::routes::compat::ADMIN_PATHS);
            if auth.is_enabled() {
                tracing::warn!(
                    routes = ?crate::routes::compat::ADMIN_PATHS,
                    "ISM_ADMIN_COMPAT_WITHOUT_KEY: the original service's admin routes accept requests without the admin key; keep the admin port on a trusted network"
                );
            }
        }
        if !auth.is_enabled() {
            if !config.listen.admin_addr.ip().is_loopback() && !config.admin.admin_insecure {
                return Err(Error::Config(format!(
                    "refusing to serve the admin API on {} without authentication; set ISM_ADMIN_API_KEY_HASH (see `session-manager hash-admin-key`) or ISM_ADMIN_INSECURE=1",
                    config.listen.admin_addr
                )));
            }
            tracing::warn!(
                "ISM_ADMIN_API_KEY_HASH is not set: the admin API accepts every request"
            );
        }

        let webhook_targets = config.webhooks.targets().map_err(Error::Config)?;

        let data_dir_lock = DataDirLock::acquire(&config.store.data_dir)
            .map_err(|error| Error::Config(error.to_string()))?;

        let allowed_hosts =
            AllowedHosts::new(&config.admin.admin_allowed_hosts, config.listen.admin_addr)
                .map_err(|reason| Error::Config(format!("ISM_ADMIN_ALLOWED_HOSTS: {reason}")))?;
        let refusal_floor = match config.limits.join_refusal_floor_ms {
            Some(millis) => Duration::from_millis(millis),
            None => refusal_floor::calibrate().await?,
        };
        tracing::info!(
            refusal_floor_ms = u64::try_from(refusal_floor.as_millis()).unwrap_or(u64::MAX),
            "refused joins are answered no earlier than this after they arrive"
        );

        let client_ca = config.client_certificates.load()?.map(Arc::new);
        // A certificate carries a token; dev_no_auth issues none worth carrying.
        let client_ca = match client_ca {
            Some(_) if config.signing.auth_mode == crate::config::AuthMode::DevNoAuth => {
                tracing::info!("the client CA is ignored: dev_no_auth issues no signed tokens");
                None
            }
            Some(ca) => {
                tracing::info!("client certificates: joins that send a CSR get one");
                Some(ca)
            }
            None => None,
        };
        let pins = Arc::new(
            PinChecker::new(usize::try_from(config.store.pin_length).unwrap_or(usize::MAX))
                .map_err(StoreError::from)?,
        );
        // The store logs its own recovery report (sessions, records, discarded tail).
        let (store, _recovery) = JournalStore::open_with_clock(
            StoreConfig {
                data_dir: config.store.data_dir.clone(),
                id_length: usize::try_from(config.store.id_length).unwrap_or(usize::MAX),
                repair_journal_at: config.store.repair_journal_at,
            },
            Arc::clone(&clock),
        )
        .await?;
        let store: Arc<dyn SessionStore> = Arc::new(store);
        let signer = match signer::build(&config.signing, &config.kms, &config.store.data_dir).await
        {
            Ok(signer) => signer,
            Err(error) => {
                store.shutdown().await;
                return Err(error);
            }
        };
        if config.signing.auth_mode == crate::config::AuthMode::DevNoAuth {
            tracing::warn!(
                "MQTT_AUTH_MODE=dev_no_auth: tokens are not signed, the broker admits anonymous \
                 clients and sessions are not isolated from each other (development only)"
            );
        }
        let shutdown = Shutdown::new();
        let (webhook_queues, webhook_workers) = match &webhook_targets {
            Some(targets) => match webhooks::build(targets) {
                Ok(built) => built,
                Err(error) => {
                    store.shutdown().await;
                    return Err(error);
                }
            },
            None => (Vec::new(), Vec::new()),
        };
        // Streams must send something before the idle-connection timeout closes them.
        let idle_timeout = Duration::from_secs(config.listen.http_idle_timeout_secs);
        let stream_settings = StreamSettings {
            keep_alive: EVENT_STREAM_KEEP_ALIVE.min(idle_timeout / 2),
            shutdown: shutdown.clone(),
        };
        let events =
            EventBus::new(usize::try_from(config.webhooks.event_buffer).unwrap_or(usize::MAX))
                .with_webhooks(webhook_queues)
                .with_stream_settings(stream_settings.clone());
        let presence = Arc::new(PresenceTable::new(
            Arc::clone(&store),
            events.clone(),
            Arc::clone(&clock),
        ));
        let linked = config.broker.broker_control_url.is_some() && signer.algorithm().is_some();
        let (monitor, monitor_worker) =
            Monitor::new(&config.monitor, linked, Arc::clone(&clock), stream_settings);
        // Conductors publish through the broker link's outbox, when there is a link.
        let (conductor_outbox, conductor_outgoing) = if linked {
            let (outbox, outgoing) = conductor::outbox();
            (Some(outbox), Some(outgoing))
        } else {
            (None, None)
        };
        let conductors = Arc::new(Conductors::new(
            Arc::clone(&store),
            Arc::clone(&clock),
            conductor_outbox,
            Duration::from_secs(config.conductor.conductor_tick_secs),
            events.clone(),
        ));
        let (revocation_link, revocation_task) =
            match (&config.broker.broker_control_url, conductor_outgoing) {
                (Some(url), Some(conductor_outgoing)) => {
                    let (link, task) = broker::link(
                        url.clone(),
                        Arc::clone(&signer),
                        config.signing.issuer.clone(),
                        config.signing.token_ttl_secs,
                        Arc::clone(&store),
                        Arc::clone(&presence),
                        Arc::clone(&conductors),
                        conductor_outgoing,
                        monitor.clone(),
                    );
                    (Some(link), Some(task))
                }
                (Some(_), None) => {
                    tracing::info!("ISM_BROKER_CONTROL_URL is ignored: this mode signs no tokens");
                    (None, None)
                }
                (None, _) => (None, None),
            };
        let window = Duration::from_secs(config.limits.failure_window_secs);
        let lockout = Duration::from_secs(config.limits.lockout_secs);
        let state = AppState {
            conductors,
            events,
            monitor,
            presence,
            store,
            signer,
            throttle: Arc::new(JoinThrottle::new(ThrottleSettings {
                session_policy: FailurePolicy {
                    max_failures: config.limits.session_max_failures,
                    window,
                    lockout,
                },
                client_policy: FailurePolicy {
                    max_failures: config.limits.ip_max_failures,
                    window,
                    lockout,
                },
                capacity: usize::try_from(config.limits.throttle_capacity).unwrap_or(usize::MAX),
                ipv6_prefix_len: config.limits.ipv6_prefix_len,
                joins_per_session_per_minute: config.limits.join_quota_per_session,
                refusal_floor,
            })),
            tokens: Arc::new(TokenPolicy {
                issuer: config.signing.issuer.clone(),
                ttl_secs: config.signing.token_ttl_secs,
            }),
            refusals: Arc::new(RefusalLog::new()),
            trusted_proxies: config.listen.trusted_proxies.clone().into(),
            revocation: revocation_link,
            clock,
            client_ca,
        };

        let bind = |which: &'static str, addr: SocketAddr| async move {
            TcpListener::bind(addr).await.map_err(|source| Error::Bind {
                which,
                addr,
                source,
            })
        };
        let listeners = async {
            let admin = bind("admin", config.listen.admin_addr).await?;
            let public = bind("public", config.listen.public_addr).await?;
            Ok::<_, Error>((admin, public))
        }
        .await;
        let (admin_listener, public_listener) = match listeners {
            Ok(listeners) => listeners,
            Err(error) => {
                state.store.shutdown().await;
                return Err(error);
            }
        };
        let body_limit = usize::try_from(config.listen.max_body_bytes).unwrap_or(usize::MAX);
        let defaults = SessionDefaults {
            max_clients: NonZeroU32::new(config.admin.default_max_clients),
        };
        let admin_router = admin_router(
            state.clone(),
            Arc::new(auth),
            Arc::new(allowed_hosts),
            defaults,
            Arc::clone(&pins),
            body_limit,
            local_addr(&public_listener),
        );
        let public_router = public_router(state.clone(), pins, body_limit);

        let header_timeout = Duration::from_secs(config.listen.http_header_timeout_secs);
        let idle_timeout = Duration::from_secs(config.listen.http_idle_timeout_secs);
        let admin_limits = ConnectionLimits {
            max_connections: config.listen.admin_max_connections,
            header_timeout,
            idle_timeout,
        };
        let public_limits = ConnectionLimits {
            max_connections: http_listener::fit_to_open_files_limit(
                config.listen.public_max_connections,
                config.listen.admin_max_connections,
            ),
            header_timeout,
            idle_timeout,
        };
        let app = Application {
            admin_listener,
            public_listener,
            admin_router,
            public_router,
            admin_limits,
            public_limits,
            state,
            shutdown,
            revocation: revocation_task,
            webhook_workers,
            monitor_worker,
            data_dir_lock,
        };
        tracing::info!(admin_addr = %app.admin_addr(), public_addr = %app.public_addr(), webhooks = app.webhook_workers.len(), "listening");
        Ok(app)
    }

    pub fn admin_addr(&self) -> SocketAddr {
        local_addr(&self.admin_listener)
    }

    pub fn public_addr(&self) -> SocketAddr {
        local_addr(&self.public_listener)
    }

    /// Triggering this handle stops the application.
    pub fn shutdown_handle(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// The session store, for tests that look behind the API.
    pub fn store(&self) -> &dyn SessionStore {
        &*self.state.store
    }

    /// Serves both ports until the shutdown handle is triggered, then drains and flushes.
    pub async fn run_until_stopped(self) -> Result<(), Error> {
        let Application {
            admin_listener,
            public_listener,
            admin_router,
            public_router,
            admin_limits,
            public_limits,
            state,
            shutdown,
            revocation,
            webhook_workers,
            monitor_worker,
            data_dir_lock,
        } = self;
        let revocation = revocation.map(|task| task.spawn(shutdown.clone()));
        let mut event_tasks: Vec<tokio::task::JoinHandle<()>> = webhook_workers
            .into_iter()
            .map(|worker| tokio::spawn(worker.run(shutdown.clone())))
            .collect();
        let watch = expiry::ExpiryWatch {
            store: Arc::clone(&state.store),
            clock: Arc::clone(&state.clock),
            events: state.events.clone(),
        };
        event_tasks.push(tokio::spawn(expiry::run(watch, shutdown.clone())));
        event_tasks.push(tokio::spawn(
            Arc::clone(&state.conductors).run_upkeep(shutdown.clone()),
        ));
        event_tasks.push(monitor_worker.spawn(Arc::clone(&state.store), shutdown.clone()));

        let sweeper = tokio::spawn({
            let throttle = Arc::clone(&state.throttle);
            let clock = Arc::clone(&state.clock);
            let shutdown = shutdown.clone();
            async move {
                let mut ticks = tokio::time::interval(THROTTLE_SWEEP_INTERVAL);
                loop {
                    tokio::select! {
                        _ = ticks.tick() => throttle.sweep(clock.instant_now()),
                        _ = shutdown.wait() => break,
                    }
                }
            }
        });

        let metrics_upkeep = tokio::spawn({
            let metrics = crate::metrics::install();
            let shutdown = shutdown.clone();
            async move {
                let mut ticks = tokio::time::interval(crate::metrics::UPKEEP_INTERVAL);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = ticks.tick() => metrics.run_upkeep(),
                        _ = shutdown.wait() => break,
                    }
                }
            }
        });

        let refusal_flusher = tokio::spawn({
            let refusals = Arc::clone(&state.refusals);
            let shutdown = shutdown.clone();
            async move {
                let mut ticks = tokio::time::interval(REFUSAL_LOG_INTERVAL);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = ticks.tick() => refusals.flush(),
                        _ = shutdown.wait() => break,
                    }
                }
            }
        });
        let admin_server =
            match serve_on_own_thread(admin_listener, admin_router, admin_limits, shutdown.clone())
            {
                Ok(finished) => finished,
                Err(error) => {
                    sweeper.abort();
                    metrics_upkeep.abort();
                    refusal_flusher.abort();
                    event_tasks.iter().for_each(|task| task.abort());
                    state.store.shutdown().await;
                    return Err(error);
                }
            };
        let servers = async {
            tokio::join!(
                async {
                    // An error only means the admin thread is gone, which is its end too.
                    let _ = admin_server.await;
                },
                http_listener::serve(
                    "public",
                    public_listener,
                    public_router,
                    public_limits,
                    shutdown.clone()
                )
            );
        };
        let drain_deadline = async {
            shutdown.wait().await;
            tokio::time::sleep(DRAIN_TIMEOUT).await;
        };
        tokio::select! {
            () = servers => {}
            () = drain_deadline => {
                tracing::warn!("requests still in flight after the drain timeout; stopping anyway");
            }
        }
        sweeper.abort();
        metrics_upkeep.abort();
        refusal_flusher.abort();
        // Webhook workers and the expiry task stop on the shutdown signal; a delivery in
        // flight is abandoned (delivery is at least once while the service runs).
        event_tasks.iter().for_each(|task| task.abort());
        // The counts of the last, unfinished interval.
        state.refusals.flush();
        if let Some(revocation) = revocation {
            // The task stops on the shutdown signal; bounded in case the broker stalls.
            if tokio::time::timeout(Duration::from_secs(5), revocation)
                .await
                .is_err()
            {
                tracing::warn!("the revocation link did not stop in time");
            }
        }
        state.store.shutdown().await;
        drop(data_dir_lock);
        tracing::info!("stopped");
        Ok(())
    }
}

/// Serves the admin port on a thread of its own, with its own single-threaded runtime, so
/// that admin requests (probes, the operator) never wait in line behind the joins the
/// main runtime's workers are busy with. The returned receiver resolves when the admin
/// listener has stopped and its last connection has closed.
fn serve_on_own_thread(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: Shutdown,
) -> Result<tokio::sync::oneshot::Receiver<()>, Error> {
    let addr = local_addr(&listener);
    let bind_error = |source| Error::Bind {
        which: "admin",
        addr,
        source,
    };
    // A listener belongs to the runtime that registered it: hand it over unregistered.
    let listener = listener.into_std().map_err(bind_error)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(bind_error)?;
    let (finished, admin_finished) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("admin-http".to_owned())
        .spawn(move || {
            runtime.block_on(async move {
                match TcpListener::from_std(listener) {
                    Ok(listener) => {
                        http_listener::serve("admin", listener, router, limits, shutdown).await;
                    }
                    Err(error) => tracing::error!(%error, "cannot serve the admin port"),
                }
            });
            let _ = finished.send(());
        })
        .map_err(bind_error)?;
    Ok(admin_finished)
}

fn local_addr(listener: &TcpListener) -> SocketAddr {
    // A bound TCP listener always has a local address.
    listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}

/// Builds, announces and runs the service until SIGTERM or SIGINT.
pub async fn serve(config: Config) -> Result<(), Error> {
    let app = Application::build(config).await?;
    // Signal handlers go in before the start-up line: whoever reads that line may signal
    // at once, and a signal without a handler would kill the process uncleanly.
    app.shutdown_handle().trigger_on_signals();
    println!(
        "{}",
        serde_json::json!({
            "admin_addr": app.admin_addr().to_string(),
            "public_addr": app.public_addr().to_string(),
        })
    );
    app.run_until_stopped().await
}
