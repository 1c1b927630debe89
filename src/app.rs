//! Wiring: application state, the router, the snapshot publisher and its background task, and
//! graceful shutdown. [`Application::build`] binds the listener first, so tests can ask for
//! port 0 and read the port back.
//!
//! Only this file knows [`AppState`]: each HTTP room takes the narrow state it needs
//! ([`ApiState`], [`StatusState`], [`FetchState`]), made from it here through axum's `FromRef`.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::FromRef;
use axum::routing::post;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::access::RecentPrincipals;
use crate::api::ApiState;
use crate::config::Settings;
use crate::esl::EslRuntime;
use crate::esl::live::LiveState;
use crate::esl::supervisor::SyncContext;
use crate::ingest::Ingest;
use crate::model::AllowList;
use crate::publish::{Published, Publisher};
use crate::quality::Quality;
use crate::quality::recorder::{self, Recorder};
use crate::quality::signals::{self, Signals};
use crate::serve::{self, ConnectionLimits, Listener};
use crate::status::StatusState;
use crate::store::Store;
use crate::xmlcurl::{self, FetchState};

/// Shared by every handler. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The database (SQLite or PostgreSQL).
    pub store: Store,
    /// What xml_curl fetches are answered from; swapped after every committed change.
    pub published: Arc<ArcSwap<Published>>,
    /// Rebuilds and swaps [`AppState::published`].
    pub publisher: Arc<Publisher>,
    pub settings: Arc<Settings>,
    /// Prometheus exposition of the process-wide metrics recorder.
    pub metrics: PrometheusHandle,
    /// The Event Socket supervisors (one per enabled switch).
    pub esl: Arc<EslRuntime>,
    /// What the nodes' Event Socket sessions last saw (connections, gateways).
    pub live: Arc<LiveState>,
    /// Scrape tokens verified recently (`/metrics` through a database outage).
    pub scrapers: Arc<RecentPrincipals>,
    /// Takes attempt records without waiting on the database; its writer stores them in
    /// batches and prunes old ones.
    pub recorder: Recorder,
    /// Carrier quality and health, fed by the nodes' leg events; the xml_curl path reads its
    /// health view.
    pub quality: Arc<Quality>,
}

impl FromRef<AppState> for ApiState {
    fn from_ref(app: &AppState) -> ApiState {
        ApiState {
            store: app.store.clone(),
            published: app.published.clone(),
            publisher: app.publisher.clone(),
            settings: app.settings.clone(),
            metrics: app.metrics.clone(),
            esl: app.esl.clone(),
            quality: app.quality.clone(),
            scrapers: app.scrapers.clone(),
        }
    }
}

impl FromRef<AppState> for StatusState {
    fn from_ref(app: &AppState) -> StatusState {
        StatusState {
            store: app.store.clone(),
            published: app.published.clone(),
            live: app.live.clone(),
            quality: app.quality.clone(),
        }
    }
}

impl FromRef<AppState> for FetchState {
    /// The endpoint on the main listener checks `xmlcurl_allow` per request; on a listener of
    /// its own the listener refuses other addresses at accept ([`Application::run`]), and the
    /// endpoint checks nothing more.
    fn from_ref(app: &AppState) -> FetchState {
        let allow = if app.settings.xmlcurl_listen.is_some() {
            AllowList::default()
        } else {
            app.settings.xmlcurl_allow.clone()
        };
        FetchState {
            published: app.published.clone(),
            health: app.quality.views(),
            allow,
            credentials: app.settings.xmlcurl_credentials.clone(),
        }
    }
}

/// The process-wide Prometheus recorder (metrics has one global recorder; tests build many apps).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
                    0.25, 0.5, 1.0,
                ])
                .expect("static bucket list is valid")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (e.g. by an embedding program): our
            // handle then renders nothing, which is harmless.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Every route of the service, as one listener serves them.
pub fn router(state: AppState) -> Router {
    api_router(state.clone()).merge(xmlcurl_router(state))
}

/// The API, health, metrics and the status page: everything but the xml_curl endpoint.
pub fn api_router(state: AppState) -> Router {
    // The trace and timeout layers wrap the API only. The xml_curl handler logs and counts
    // its own outcome, and awaits nothing but a body of at most `MAX_FETCH_BODY` (on the
    // connection's body deadline, `serve`) from a client that already passed the allow-list
    // and credentials; a per-request timer there cost a tenth of the fetch throughput
    // (BENCHMARKS.md, HTTP).
    crate::api::router(ApiState::from_ref(&state))
        .merge(crate::status::router(StatusState::from_ref(&state)))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(30),
        ))
}

/// A request's span: method and path, never the query string, which on `/v1.0` may carry a
/// VoIPBIN client's `?token=` or `?accesskey=` (tower-http's default span records the whole URI).
fn request_span<B>(request: &axum::http::Request<B>) -> tracing::Span {
    tracing::debug_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
    )
}

/// The xml_curl endpoint alone.
pub fn xmlcurl_router(state: AppState) -> Router {
    Router::new()
        .route("/freeswitch/xml", post(xmlcurl::handle_fetch))
        .with_state(FetchState::from_ref(&state))
}

/// A built, bound, not yet serving application.
pub struct Application {
    listener: TcpListener,
    /// The xml_curl endpoint's own listener, when configured.
    xmlcurl_listener: Option<TcpListener>,
    state: AppState,
    refresh_every: Duration,
    /// Stops the recorder's writer, which then flushes what it holds.
    recorder_stop: tokio::sync::watch::Sender<bool>,
    recorder_task: tokio::task::JoinHandle<()>,
    /// Turns what the switch sessions read into quality and attempt records.
    ingest: Ingest,
}

impl Application {
    /// Connects and migrates the database, reads the templates, publishes the first snapshot and
    /// binds the listener. Any failure here is a start-up error with a clear message.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let store = Store::connect(&settings.database_url)
            .await
            .with_context(|| "connecting to the database")?;
        store.migrate().await.context("migrating the database")?;
        Self::with_store(settings, store).await
    }

    /// [`Application::build`] over an already connected, migrated store.
    pub async fn with_store(settings: Settings, store: Store) -> anyhow::Result<Application> {
        let publisher = Arc::new(
            Publisher::start(
                store.clone(),
                &settings.templates,
                &settings.template_vars,
                settings.publish(),
            )
            .await?,
        );
        let published = publisher.published();
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("binding {}", settings.listen))?;
        let xmlcurl_listener = match settings.xmlcurl_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding {addr} (xmlcurl_listen)"))?,
            ),
            None => None,
        };
        let mut settings = settings;
        settings.http.max_connections =
            connection_bound(&settings.http, 1 + usize::from(xmlcurl_listener.is_some()));
        let refresh_every = settings.snapshot_refresh;
        for switch in &settings.switches {
            store.upsert_config_switch(switch).await.with_context(|| {
                format!("storing switch {} from the configuration file", switch.name)
            })?;
        }
        // Started here, not in `run`, because the state holds its handle. Records reach the
        // database only once the writer runs, which it does from now on; an application built
        // and dropped unrun drops the stop sender, which ends the writer (and the webhook) too.
        let (recorder_stop, stop) = tokio::sync::watch::channel(false);
        let signals = match &settings.health_webhook {
            Some(webhook) => signals::spawn_webhook(webhook.clone(), stop.clone()).0,
            None => Signals::log_only(),
        };
        let quality = Arc::new(Quality::new(settings.quality.clone(), signals));
        let (recorder, recorder_task) = recorder::spawn(store.clone(), settings.recorder(), stop);
        let live = Arc::new(LiveState::default());
        let ingest = Ingest::spawn(published.clone(), quality.clone(), recorder.clone());
        let esl = Arc::new(EslRuntime::new(SyncContext {
            store: store.clone(),
            published: published.clone(),
            publisher: publisher.clone(),
            settings: settings.esl.clone(),
            instance: uuid::Uuid::new_v4().to_string(),
            live: live.clone(),
            sink: ingest.feed(),
        }));
        let state = AppState {
            store,
            published,
            publisher,
            settings: Arc::new(settings),
            metrics: metrics_handle(),
            esl,
            live,
            scrapers: Arc::default(),
            recorder,
            quality,
        };
        Ok(Application {
            listener,
            xmlcurl_listener,
            state,
            refresh_every,
            recorder_stop,
            recorder_task,
            ingest,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Where the xml_curl endpoint's own listener is, when it has one.
    pub fn xmlcurl_addr(&self) -> Option<SocketAddr> {
        self.xmlcurl_listener
            .as_ref()
            .map(|l| l.local_addr().expect("a bound listener has an address"))
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let refresher = tokio::spawn(refresh_loop(self.state.clone(), self.refresh_every));
        let esl = self.state.esl.clone();
        if let Err(e) = esl.sync().await {
            tracing::error!(error = %e, "cannot start the switch supervisors; the timer retries");
        }
        let switches = tokio::spawn(switch_loop(
            esl.clone(),
            self.state.store.subscribe(),
            self.state.settings.esl.resync_every,
        ));
        let settings = self.state.settings.clone();
        let listeners = match self.xmlcurl_listener {
            None => vec![Listener {
                name: "http",
                tcp: self.listener,
                router: router(self.state),
                allow: AllowList::default(),
                limits: settings.http.clone(),
            }],
            // The endpoint's own listener serves FreeSWITCH alone, so it can refuse other
            // addresses before reading a byte.
            Some(xmlcurl) => vec![
                Listener {
                    name: "http",
                    tcp: self.listener,
                    router: api_router(self.state.clone()),
                    allow: AllowList::default(),
                    limits: settings.http.clone(),
                },
                Listener {
                    name: "xmlcurl",
                    tcp: xmlcurl,
                    router: xmlcurl_router(self.state),
                    allow: settings.xmlcurl_allow.clone(),
                    limits: settings.http.clone(),
                },
            ],
        };
        let served = serve::serve(listeners, shutdown)
            .await
            .context("serving HTTP");
        refresher.abort();
        switches.abort();
        esl.shutdown().await;
        // The sessions have stopped: the hangups they handed on become records before the
        // recorder stops.
        self.ingest.finish().await;
        // After the listeners and the switches: nothing records any more, so the writer's
        // last flush (bounded in time) stores everything that was recorded.
        let _ = self.recorder_stop.send(true);
        if let Err(e) = self.recorder_task.await {
            tracing::error!(error = %e, "the attempt recorder ended abnormally");
        }
        served?;
        Ok(())
    }
}

/// Raises the open-files limit as far as it goes, and bounds each listener's connections to
/// what that limit leaves room for.
fn connection_bound(limits: &ConnectionLimits, listeners: usize) -> usize {
    let open_files = match serve::raise_open_files_limit() {
        Ok((before, after)) => {
            if after > before {
                tracing::info!(
                    open_files = after,
                    raised_from = before,
                    "open-files limit raised to the hard limit"
                );
            } else {
                tracing::info!(open_files = after, "open-files limit");
            }
            after
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-files limit");
            return limits.max_connections;
        }
    };
    let bound = serve::connections_within(limits.max_connections, open_files, listeners);
    if bound < limits.max_connections {
        tracing::warn!(
            http_max_connections = limits.max_connections,
            bound,
            open_files,
            "http_max_connections lowered to fit the open-files limit"
        );
    }
    bound
}

/// How often a stale snapshot is retried (see [`refresh_loop`]).
const STALE_RETRY: Duration = Duration::from_secs(2);

/// Rebuilds the snapshot when the store announces a new version (this instance's writes, and
/// other instances' through PostgreSQL NOTIFY) and, as a safety net, on a slow timer.
async fn refresh_loop(state: AppState, every: Duration) {
    let mut changes = state.store.subscribe();
    let mut timer = tokio::time::interval(every);
    timer.tick().await;
    // While the last rebuild failed (the database unreachable), try again every few seconds:
    // `/readyz` then turns ready within seconds of the database's return, not at the next
    // safety-net tick.
    let mut stale_retry = tokio::time::interval(STALE_RETRY.min(every));
    stale_retry.tick().await;
    loop {
        let result = tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
                let version = *changes.borrow_and_update();
                state.publisher.refresh_to(version).await
            }
            _ = timer.tick() => state.publisher.refresh_if_changed().await,
            _ = stale_retry.tick(), if state.publisher.is_stale() => {
                state.publisher.refresh_if_changed().await
            }
        };
        if let Err(e) = result {
            tracing::warn!(error = %format!("{e:#}"), "snapshot refresh failed; serving the last good snapshot");
        }
    }
}

/// Picks up switches added, changed or removed by other instances: a switch write raises the
/// configuration version like any other, so it arrives on the change feed (PostgreSQL NOTIFY);
/// the slow timer is the safety net for a lost notification. (This instance's own API writes
/// sync at once.)
async fn switch_loop(
    esl: Arc<EslRuntime>,
    mut changes: tokio::sync::watch::Receiver<u64>,
    every: Duration,
) {
    let mut timer = tokio::time::interval(every);
    timer.tick().await;
    loop {
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
                changes.borrow_and_update();
            }
            _ = timer.tick() => {}
        }
        if let Err(e) = esl.sync().await {
            tracing::warn!(error = %e, "switch list refresh failed");
        }
    }
}

/// Completes on ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}
