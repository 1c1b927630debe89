//! Wiring: application state, the router, the snapshot publisher and its background task, and
//! graceful shutdown. [`Application::build`] binds the listener first, so tests can ask for
//! port 0 and read the port back.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwap;
use axum::Router;
use axum::routing::post;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::config::Settings;
use crate::esl::EslRuntime;
use crate::esl::live::LiveState;
use crate::esl::supervisor::SyncContext;
use crate::publish::{Published, Publisher};
use crate::store::Store;
use crate::xmlcurl;

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
    /// The Event Socket supervisors (one per enabled switch) and their live view.
    pub esl: Arc<EslRuntime>,
}

impl AppState {
    /// Called by API handlers after a committed write: returns once the new configuration is
    /// what FreeSWITCH gets, so a client that wrote and then fetches sees its own write.
    pub async fn after_write(&self) {
        let committed = *self.store.subscribe().borrow();
        if let Err(e) = self.publisher.refresh_to(committed).await {
            tracing::error!(error = %e, "snapshot rebuild after a write failed; the timer retries");
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

/// Every route of the service.
pub fn router(state: AppState) -> Router {
    let xmlcurl = Router::new()
        .route("/freeswitch/xml", post(xmlcurl::handle_fetch))
        .with_state(state.clone());
    // The trace and timeout layers wrap the API only. The xml_curl handler logs and counts
    // its own outcome, and awaits nothing but a body of at most `MAX_FETCH_BODY` from a client
    // that already passed the allow-list and credentials; a per-request timer there cost a
    // tenth of the fetch throughput (BENCHMARKS.md, HTTP).
    crate::api::router(state)
        .layer(TraceLayer::new_for_http())
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(30),
        ))
        .merge(xmlcurl)
}

/// A built, bound, not yet serving application.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    refresh_every: Duration,
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
                &settings.templates_dir,
                &settings.template_vars,
                settings.publish(),
            )
            .await?,
        );
        let published = publisher.published();
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("binding {}", settings.listen))?;
        let refresh_every = settings.snapshot_refresh;
        for switch in &settings.switches {
            store.upsert_config_switch(switch).await.with_context(|| {
                format!("storing switch {} from the configuration file", switch.name)
            })?;
        }
        let esl = Arc::new(EslRuntime::new(SyncContext {
            store: store.clone(),
            published: published.clone(),
            publisher: publisher.clone(),
            settings: settings.esl.clone(),
            instance: uuid::Uuid::new_v4().to_string(),
            live: Arc::new(LiveState::default()),
        }));
        let state = AppState {
            store,
            published,
            publisher,
            settings: Arc::new(settings),
            metrics: metrics_handle(),
            esl,
        };
        Ok(Application {
            listener,
            state,
            refresh_every,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
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
        let app = router(self.state);
        let served = axum::serve(
            self.listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving HTTP");
        refresher.abort();
        switches.abort();
        esl.shutdown().await;
        served?;
        Ok(())
    }
}

/// Rebuilds the snapshot when the store announces a new version (this instance's writes, and
/// other instances' through PostgreSQL NOTIFY) and, as a safety net, on a slow timer.
async fn refresh_loop(state: AppState, every: Duration) {
    let mut changes = state.store.subscribe();
    let mut timer = tokio::time::interval(every);
    timer.tick().await;
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
