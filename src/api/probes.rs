//! `/healthz`, `/readyz` and `/metrics`: what a load balancer and Prometheus ask.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::api::ApiState;

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

async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    state
        .quality
        .export_gauges(&state.published.load().snapshot);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
