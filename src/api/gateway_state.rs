//! `GET /api/v1/carriers/{id}/status`: a carrier's gateway on every FreeSWITCH node, as the
//! nodes last reported it and as trunkline's last pass left it; scoped like
//! `GET /carriers/{id}`.

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
use crate::esl::live::{ConnectionState, GatewayResult};
use crate::model::Scope;

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(carrier_status))
}

/// A carrier's gateway on one switch.
#[derive(Debug, Serialize, ToSchema)]
pub struct GatewayOnSwitch {
    pub switch_id: Uuid,
    pub switch: String,
    pub connection: ConnectionState,
    pub exists: bool,
    /// `REGED`, `NOREG`, `FAILED`, … as sofia reports it.
    pub state: Option<String>,
    /// `UP` or `DOWN`.
    pub status: Option<String>,
    pub ping_time_ms: Option<f64>,
    pub calls_in: Option<u64>,
    pub calls_out: Option<u64>,
    pub failed_calls_in: Option<u64>,
    pub failed_calls_out: Option<u64>,
    pub last_reconcile: Option<GatewayResult>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CarrierStatusView {
    pub carrier_id: Uuid,
    pub gateway_name: String,
    pub switches: Vec<GatewayOnSwitch>,
}

#[utoipa::path(get, path = "/carriers/{id}/status", tag = "carriers",
    responses((status = 200, body = CarrierStatusView), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn carrier_status(
    State(state): State<ApiState>,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Result<Json<CarrierStatusView>, ApiError> {
    principal.require(Scope::CarriersRead)?;
    let carrier = visible_carrier(&state.store, &principal, id).await?;
    let gateway = carrier.gateway_name.to_string();
    let mut switches = Vec::new();
    for s in state.store.list_switches().await? {
        let live = state.esl.live().get(s.id).unwrap_or_default();
        let g = live.gateways.get(&gateway);
        switches.push(GatewayOnSwitch {
            switch_id: s.id,
            switch: s.name.to_string(),
            connection: live.connection_of(&s),
            exists: g.is_some(),
            state: g.map(|g| g.state.to_string()),
            status: g.map(|g| g.status.to_string()),
            ping_time_ms: g.and_then(|g| g.ping_time_ms),
            calls_in: g.and_then(|g| g.calls_in),
            calls_out: g.and_then(|g| g.calls_out),
            failed_calls_in: g.and_then(|g| g.failed_calls_in),
            failed_calls_out: g.and_then(|g| g.failed_calls_out),
            last_reconcile: live.results.get(&gateway).cloned(),
        });
    }
    Ok(Json(CarrierStatusView {
        carrier_id: id,
        gateway_name: gateway,
        switches,
    }))
}
