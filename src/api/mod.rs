//! The admin REST API under `/api/v1` and VoIPBIN's under `/v1.0` (`voipbin`), plus `/healthz`, `/readyz`, `/metrics` and the OpenAPI
//! document at `/api/openapi.json`. Handlers parse bodies into the model's validated types,
//! authorise with [`Principal`](crate::access::Principal), call the store, and after a committed
//! write wait for the published snapshot to catch up ([`ApiState::after_write`]). Errors of every
//! layer become HTTP in one place: [`error::ApiError`].
//!
//! Handlers take [`ApiState`], which the wiring builds; no file here knows the application's
//! whole state, and no handler file imports another (what two share lives in a file that is not
//! a handler, or below, in [`crate::access`]).

pub mod attempts;
pub mod auth;
pub mod carriers;
pub mod error;
pub mod extract;
pub mod gateway_state;
pub mod numbers;
pub mod page;
pub mod preview;
pub mod probes;
pub mod quality;
pub mod routes;
pub mod switches;
pub mod tenants;
pub mod voipbin;
pub mod write;

use axum::Json;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use std::sync::Arc;

use arc_swap::ArcSwap;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::access::RecentPrincipals;
use crate::config::Settings;
use crate::esl::EslRuntime;
use crate::publish::{Published, Publisher};
use crate::quality::Quality;
use crate::store::Store;

/// What the API's handlers work with. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    /// The database (SQLite or PostgreSQL).
    pub store: Store,
    /// What xml_curl fetches are answered from: explain and the lists of carriers' figures read
    /// it too.
    pub published: Arc<ArcSwap<Published>>,
    /// Rebuilds [`ApiState::published`]; a write waits for it ([`ApiState::after_write`]).
    pub publisher: Arc<Publisher>,
    pub settings: Arc<Settings>,
    /// Prometheus exposition of the process-wide metrics recorder.
    pub metrics: PrometheusHandle,
    /// The Event Socket supervisors, started and stopped by switch writes, and their live view.
    pub esl: Arc<EslRuntime>,
    /// Carrier quality and breakers, for the figures endpoints and `/metrics`.
    pub quality: Arc<Quality>,
    /// Scrape tokens verified recently: `/metrics` keeps answering while the database is down.
    pub scrapers: Arc<RecentPrincipals>,
}

impl ApiState {
    /// Called by handlers after a committed write: returns once the new configuration is what
    /// FreeSWITCH gets, so a client that wrote and then fetches sees its own write.
    pub async fn after_write(&self) {
        let committed = *self.store.subscribe().borrow();
        if let Err(e) = self.publisher.refresh_to(committed).await {
            tracing::error!(error = %e, "snapshot rebuild after a write failed; the timer retries");
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "trunkline", description = "Outbound carrier routing for FreeSWITCH: admin API."),
    modifiers(&BearerScheme)
)]
struct ApiDoc;

/// Declares the security schemes the handlers' `security(...)` refer to: `bearer` everywhere,
/// and on `/v1.0` also VoIPBIN's `?token=` and `?accesskey=`.
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
        components.add_security_scheme(
            "accesskey",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::new("accesskey"))),
        );
    }
}

/// Every API route, with the OpenAPI document built from the same handler annotations.
pub fn router(state: ApiState) -> Router {
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
                .merge(gateway_state::router())
                .merge(quality::router())
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
    .merge(probes::router())
    .fallback(not_found)
    // axum's default would read 2 MiB of any body before a handler could refuse it.
    .layer(DefaultBodyLimit::max(extract::MAX_API_BODY))
    .with_state(state)
}

/// Unknown paths answer the API's JSON error shape, not an empty body.
async fn not_found() -> error::ApiError {
    error::ApiError::NotFound
}
