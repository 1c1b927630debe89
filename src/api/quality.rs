//! `GET /api/v1/carriers/{id}/stats` and `GET /api/v1/carriers/stats`: each carrier's quality
//! (attempts, answered, ASR, ACD, PDD p50/p95, SIP statuses) over 5 min, 1 h and 24 h, per
//! carrier and per route (destination prefix), with its breaker. Scoped like `GET /carriers`:
//! a tenant admin sees its own carriers whole, and of a platform carrier only its own calls
//! (another tenant's traffic is not its to count).

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::error::{ApiError, ErrorBody};
use crate::access::{Principal, visible_carrier};
use crate::api::ApiState;
use crate::model::Scope;
use crate::quality::CarrierQuality;

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(carrier_stats))
        .routes(routes!(all_carrier_stats))
}

/// One carrier's quality, named.
#[derive(Debug, Serialize, ToSchema)]
pub struct CarrierStatsView {
    pub name: String,
    pub gateway_name: String,
    /// The tenant whose calls alone are counted (a platform carrier seen by a tenant admin);
    /// null: every call.
    pub counted_for_tenant: Option<Uuid>,
    #[serde(flatten)]
    #[schema(inline)]
    pub quality: CarrierQuality,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CarrierStatsList {
    /// Every visible carrier that carried a call in the last day or whose breaker is not
    /// closed, by id.
    pub items: Vec<CarrierStatsView>,
}

/// Whose calls of a carrier (of `tenant_id`) the caller may count: all, or only its own.
fn counted_for(principal: &Principal, carrier_tenant: Option<Uuid>) -> Option<Uuid> {
    match (principal.tenant_id, carrier_tenant) {
        (Some(own), None) if !principal.is_platform_admin() => Some(own),
        _ => None,
    }
}

#[utoipa::path(get, path = "/carriers/{id}/stats", tag = "carriers",
    description = "The carrier's quality over 5 min, 1 h and 24 h (as a whole and per route), and its circuit breaker.",
    responses((status = 200, body = CarrierStatsView), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn carrier_stats(
    State(state): State<ApiState>,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Result<Json<CarrierStatsView>, ApiError> {
    principal.require(Scope::CarriersRead)?;
    let carrier = visible_carrier(&state.store, &principal, id).await?;
    let tenant = counted_for(&principal, carrier.tenant_id);
    Ok(Json(CarrierStatsView {
        name: carrier.name.to_string(),
        gateway_name: carrier.gateway_name.to_string(),
        counted_for_tenant: tenant,
        quality: state.quality.carrier(id, tenant),
    }))
}

#[utoipa::path(get, path = "/carriers/stats", tag = "carriers",
    description = "The quality of every visible carrier that carried a call in the last day.",
    responses((status = 200, body = CarrierStatsList)),
    security(("bearer" = [])))]
pub async fn all_carrier_stats(
    State(state): State<ApiState>,
    principal: Principal,
) -> Result<Json<CarrierStatsList>, ApiError> {
    principal.require(Scope::CarriersRead)?;
    let published = state.published.load();
    let counted = |id| {
        let c = published.snapshot.carrier(id)?;
        principal
            .can_read(c.tenant_id, true)
            .then(|| counted_for(&principal, c.tenant_id))
    };
    // Copied in one pass under quality's lock; the views are built and serialised without it.
    let copy = state.quality.copy(counted, true);
    let items = copy
        .carriers()
        .into_iter()
        .filter_map(|id| published.snapshot.carrier(id))
        .map(|c| CarrierStatsView {
            name: c.name.to_string(),
            gateway_name: c.gateway_name.to_string(),
            counted_for_tenant: counted_for(&principal, c.tenant_id),
            quality: copy.carrier(c.id),
        })
        .filter(|v| v.counted_for_tenant.is_none() || v.quality.windows["24h"].attempts > 0)
        .collect();
    Ok(Json(CarrierStatsList { items }))
}
