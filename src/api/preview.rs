//! `GET /api/v1/route-preview`: route explain over HTTP. Answers from the published snapshot
//! through the same code path as the xml_curl endpoint ([`crate::xmlcurl::explain`]), scoped
//! like the rest of the API: a tenant admin explains its own tenant's calls only, and may force
//! only a carrier it can see.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, FixedOffset, Utc};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::Principal;
use super::carriers::visible_carrier;
use super::error::{ApiError, ErrorBody};
use super::extract::ValidQuery;
use crate::app::AppState;
use crate::model::Scope;
use crate::xmlcurl::explain::{ExplainRequest, Explanation, explain};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(route_preview))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PreviewQuery {
    /// The dialled number, as FreeSWITCH would post it.
    pub destination: String,
    /// The tenant whose call this is (platform admins; a tenant admin's own tenant by default).
    pub tenant_id: Option<Uuid>,
    /// A forced carrier, as the `trunkline_carrier_id` channel variable sets it.
    pub carrier_id: Option<Uuid>,
    /// The caller ID number.
    pub caller: Option<String>,
    /// STIR/SHAKEN attestation level (`A`, `B` or `C`).
    pub attestation: Option<String>,
    /// The moment to route at, RFC 3339 (checks schedules); default now.
    pub at: Option<DateTime<FixedOffset>>,
    /// The call's `Unique-ID`, which seeds the weighted draw; default a fixed seed (the one a
    /// fetch without `Unique-ID` gets).
    pub call_id: Option<Uuid>,
    /// A per-call cost ceiling, as the `trunkline_max_cost` channel variable sets it.
    pub max_cost: Option<String>,
    /// The node the call would arrive on: the gateways it reports DOWN move later. Without it
    /// only the carriers' breakers apply.
    pub switch_id: Option<Uuid>,
}

#[utoipa::path(get, path = "/route-preview", tag = "route-preview", params(PreviewQuery),
    description = "Which carriers a destination will use and why, and the exact dialplan XML FreeSWITCH would receive.",
    responses((status = 200, body = Explanation), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn route_preview(
    State(state): State<AppState>,
    principal: Principal,
    ValidQuery(q): ValidQuery<PreviewQuery>,
) -> Result<Response, ApiError> {
    // Serialised inside, while the snapshot it borrows its route names from is held.
    explain_for(&state, &principal, q, |explanation| {
        Json(explanation).into_response()
    })
    .await
}

/// Explains a call as `principal` may see it and hands the explanation to `render` while the
/// snapshot it borrows from is held: the route-preview API and the status page's explain form.
pub async fn explain_for<R>(
    state: &AppState,
    principal: &Principal,
    q: PreviewQuery,
    render: impl FnOnce(&Explanation<'_>) -> R,
) -> Result<R, ApiError> {
    principal.require(Scope::OutboundRoutesRead)?;
    let tenant_id = principal.acting_tenant(q.tenant_id)?;
    if let Some(carrier) = q.carrier_id {
        // Another tenant's carrier is "no such carrier": explain must not reveal it exists.
        visible_carrier(state, principal, carrier)
            .await
            .map_err(|_| ApiError::field("carrier_id", "no such carrier"))?;
    }
    let core_uuid = match q.switch_id {
        None => None,
        Some(id) => Some(
            state
                .esl
                .live()
                .get(id)
                .and_then(|live| live.core_uuid)
                .ok_or_else(|| ApiError::field("switch_id", "no connected switch with that id"))?,
        ),
    };
    let request = ExplainRequest {
        tenant_id,
        destination: q.destination,
        forced_carrier: q.carrier_id,
        caller: q.caller,
        attestation: q.attestation,
        call_id: q.call_id,
        max_cost: q.max_cost,
        core_uuid,
    };
    let at = q.at.map_or_else(Utc::now, |t| t.with_timezone(&Utc));
    let published = state.published.load();
    let health = state.quality.view();
    let explanation = explain(&published, &health, &request, at).map_err(|e| {
        if e.field == "tenant_id" {
            ApiError::NotFound
        } else {
            ApiError::field(e.field, e.detail)
        }
    })?;
    Ok(render(&explanation))
}
