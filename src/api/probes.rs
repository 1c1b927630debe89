//! `/healthz`, `/readyz` and `/metrics`: what a load balancer and Prometheus ask. The probes are
//! open; `/metrics` names every tenant's carriers (gateway names derived from the names tenants
//! chose, and their traffic), so it answers a platform token only: a platform admin's, or one
//! made for the scrape (`trunkline token create --metrics`, scope `metrics:read`), which
//! Prometheus sends as `Authorization: Bearer` (README, "Metrics").

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::auth::Scraper;
use super::error::ApiError;
use crate::api::ApiState;
use crate::model::Scope;

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// The process is up and serving.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready to serve: the database answers and the published snapshot is current. While the
/// database is unreachable the xml_curl endpoint keeps answering from the last good snapshot,
/// but a load balancer should prefer an instance that is ready.
async fn readyz(State(state): State<ApiState>) -> impl IntoResponse {
    if let Err(e) = state.store.ping().await {
        tracing::warn!(error = %e, "readiness: database unreachable");
        return (StatusCode::SERVICE_UNAVAILABLE, "database unreachable\n");
    }
    if state.publisher.is_stale() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "configuration snapshot is stale\n",
        );
    }
    (StatusCode::OK, "ready\n")
}

async fn metrics(
    State(state): State<ApiState>,
    Scraper(principal): Scraper,
) -> Result<impl IntoResponse, ApiError> {
    principal.require_platform_scope(Scope::MetricsRead)?;
    state
        .quality
        .export_gauges(&state.published.load().snapshot);
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    ))
}
