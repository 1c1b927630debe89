//! A call explained as the caller may see it: the route-preview API and the status page's
//! explain form both answer through [`explain_for`], which answers through the xml_curl
//! endpoint's own [`explain`] over the published snapshot — so what they show is what
//! FreeSWITCH would get.

use chrono::{DateTime, FixedOffset, Utc};
use serde::Deserialize;
use uuid::Uuid;

use super::{AccessError, Principal, visible_carrier};
use crate::esl::live::LiveState;
use crate::model::Scope;
use crate::publish::Published;
use crate::quality::health::HealthView;
use crate::store::Store;
use crate::xmlcurl::explain::{ExplainRequest, Explanation, explain};

/// What to explain: a call as FreeSWITCH would post it, and the context that changes its answer.
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
    /// The caller-ID name the call presents; one that is not valid shows how it is replaced.
    pub caller_name: Option<String>,
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

/// What an explanation is read from.
pub struct ExplainSources<'a> {
    /// Where a forced carrier is looked up, so another tenant's is "no such carrier".
    pub store: &'a Store,
    /// The nodes' live view: which node a `switch_id` is, by its Core-UUID.
    pub live: &'a LiveState,
    pub published: &'a Published,
    pub health: &'a HealthView,
}

/// Explains a call as `principal` may see it and hands the explanation to `render` while the
/// snapshot it borrows from is held.
pub async fn explain_for<R>(
    sources: ExplainSources<'_>,
    principal: &Principal,
    q: PreviewQuery,
    render: impl FnOnce(&Explanation<'_>) -> R,
) -> Result<R, AccessError> {
    principal.require(Scope::OutboundRoutesRead)?;
    let tenant_id = principal.acting_tenant(q.tenant_id)?;
    if let Some(carrier) = q.carrier_id {
        // Another tenant's carrier is "no such carrier": explain must not reveal it exists.
        visible_carrier(sources.store, principal, carrier)
            .await
            .map_err(|_| AccessError::field("carrier_id", "no such carrier"))?;
    }
    let core_uuid = match q.switch_id {
        None => None,
        Some(id) => Some(
            sources
                .live
                .get(id)
                .and_then(|live| live.core_uuid)
                .ok_or_else(|| {
                    AccessError::field("switch_id", "no connected switch with that id")
                })?,
        ),
    };
    let request = ExplainRequest {
        tenant_id,
        destination: q.destination,
        forced_carrier: q.carrier_id,
        caller: q.caller,
        caller_name: q.caller_name,
        attestation: q.attestation,
        call_id: q.call_id,
        max_cost: q.max_cost,
        core_uuid,
    };
    let at = q.at.map_or_else(Utc::now, |t| t.with_timezone(&Utc));
    let explanation = explain(sources.published, sources.health, &request, at).map_err(|e| {
        if e.field == "tenant_id" {
            AccessError::NotFound
        } else {
            AccessError::field(e.field, e.detail)
        }
    })?;
    Ok(render(&explanation))
}
