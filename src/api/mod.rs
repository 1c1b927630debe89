//! The admin REST API under `/api/v1` and VoIPBIN's under `/v1.0` (`voipbin`), plus `/healthz`, `/readyz`, `/metrics` and the OpenAPI
//! document at `/api/openapi.json`. Handlers parse bodies into the model's validated types,
//! authorise with [`auth::Principal`], call the store, and after a committed write wait for the
//! published snapshot to catch up ([`AppState::after_write`]). Errors of every layer become
//! HTTP in one place: [`error::ApiError`].

pub mod attempts;
pub mod auth;
pub mod carrier_stats;
pub mod carrier_status;
pub mod carriers;
pub mod error;
pub mod extract;
pub mod numbers;
pub mod page;
pub mod preview;
pub mod routes;
pub mod switches;
pub mod tenants;
pub mod voipbin;
pub mod write;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::app::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "trunkline", description = "Outbound carrier routing for FreeSWITCH: admin API."),
    modifiers(&BearerScheme)
)]
struct ApiDoc;

/// Declares the security schemes the handlers' `security(...)` refer to: `bearer` everywhere,
/// and on `/v1.0` also VoIPBIN's `?token=`.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "token",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::new("token"))),
        );
    }
}

/// Every API route, with the OpenAPI document built from the same handler annotations.
pub fn router(state: AppState) -> Router {
    let (v1, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest(
            "/api/v1",
            OpenApiRouter::new()
                .merge(tenants::router())
                .merge(carriers::router())
                .merge(routes::router())
                .merge(numbers::router())
                .merge(preview::router())
                .merge(switches::router())
                .merge(carrier_status::router())
                .merge(carrier_stats::router())
                .merge(attempts::router()),
        )
        .nest("/v1.0", voipbin::router())
        .split_for_parts();
    let openapi = std::sync::Arc::new(openapi);
    v1.route(
        "/api/openapi.json",
        get(move || {
            let doc = openapi.clone();
            async move { Json(doc.as_ref().clone()) }
        }),
    )
    .route("/healthz", get(healthz))
    .route("/readyz", get(readyz))
    .route("/metrics", get(metrics))
    .fallback(not_found)
    .with_state(state)
}

/// The process is up and serving.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready to serve: the database answers and the published snapshot is current. While the
/// database is unreachable the xml_curl endpoint keeps answering from the last good snapshot,
/// but a load balancer should prefer an instance that is ready.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
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

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    state
        .quality
        .export_gauges(&state.published.load().snapshot);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

/// Unknown paths answer the API's JSON error shape, not an empty body.
async fn not_found() -> error::ApiError {
    error::ApiError::NotFound
}
