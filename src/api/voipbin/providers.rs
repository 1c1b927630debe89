//! `/v1.0/providers`: VoIPBIN providers, which are trunkline's platform carriers. Every tenant
//! token with `carriers:read` lists and reads them (its routes may use them); only a platform
//! admin creates, changes or deletes one. A tenant's own carriers are not providers.
//!
//! `tech_postfix` follows `add_suffix`'s rules. VoIPBIN's documentation also shows a postfix
//! `@provider.com`; on FreeSWITCH a gateway leg `sofia/gateway/<gw>/<number>@<domain>` sends
//! its INVITE to `<domain>` with `sip:<number>@<domain>` as the Request-URI, not to the
//! gateway's proxy (mod_sofia.c `sofia_outgoing_channel`; shown on the node by the interop test
//! `a_postfix_with_a_domain_sends_the_invite_to_that_domain_not_to_the_gateway`), and the
//! gateway's credentials answer that host's challenge (sofia_reg.c
//! `sofia_reg_handle_sip_r_challenge`): such a postfix is refused with 400.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{Paging, ResultList, time, time_or_not_yet, updated};
use crate::access::{Principal, visible_carrier};
use crate::api::ApiState;
use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::{ValidJson, ValidQuery};
use crate::api::write;
use crate::model::{Carrier, CarrierInput, Scope};
use crate::store::{CarrierFilter, TenantScope};

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_providers, create_provider))
        .routes(routes!(get_provider, update_provider, delete_provider))
}

/// `/api/v1` field names as VoIPBIN names them, for errors.
const FIELD_NAMES: &[(&str, &str)] = &[
    ("remote_host", "hostname"),
    ("remote_port", "hostname"),
    ("add_prefix", "tech_prefix"),
    ("add_suffix", "tech_postfix"),
];

/// A provider as a VoIPBIN client writes it (POST and PUT: PUT replaces these fields and keeps
/// every other setting of the carrier).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderBody {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub detail: String,
    /// `sip`, the only type.
    #[serde(rename = "type", default)]
    pub provider_type: Option<String>,
    /// The carrier's SIP server: a host name or address, optionally with `:port`.
    #[serde(default)]
    pub hostname: String,
    /// Added before the number sent to the carrier.
    #[serde(default)]
    pub tech_prefix: String,
    /// Added after the number; digits only (`@domain` is refused, see the module's note).
    #[serde(default)]
    pub tech_postfix: String,
    /// SIP headers sent on every INVITE to this carrier.
    #[serde(default)]
    pub tech_headers: BTreeMap<String, String>,
}

impl ProviderBody {
    /// `base` with VoIPBIN's fields replaced by this body's.
    fn apply(self, mut base: CarrierInput) -> Result<CarrierInput, ApiError> {
        if let Some(t) = &self.provider_type
            && t != "sip"
        {
            return Err(ApiError::field("type", "must be \"sip\""));
        }
        if self.hostname.is_empty() {
            return Err(ApiError::field("hostname", "required"));
        }
        if self.tech_postfix.contains('@') {
            return Err(ApiError::field(
                "tech_postfix",
                "a postfix with @domain sends the call to that domain instead of the provider's \
                 hostname, with the provider's credentials: set hostname to the carrier's \
                 server and keep tech_postfix to digits",
            ));
        }
        let (host, port) = split_hostname(&self.hostname)?;
        base.name = self.name;
        base.detail = self.detail;
        base.remote_host = host.to_string();
        base.remote_port = port;
        base.add_prefix = self.tech_prefix;
        base.add_suffix = self.tech_postfix;
        base.tech_headers = self.tech_headers;
        Ok(base)
    }
}

/// `host`, `host:port` or `[v6]:port` into the carrier's host and port (`None`: the
/// transport's default).
fn split_hostname(hostname: &str) -> Result<(&str, Option<u32>), ApiError> {
    let port_at = match hostname.rfind(':') {
        Some(i) if !hostname.starts_with('[') || hostname[..i].ends_with(']') => Some(i),
        _ => None,
    };
    match port_at {
        None => Ok((hostname, None)),
        Some(i) => {
            let port = hostname[i + 1..]
                .parse::<u32>()
                .map_err(|_| ApiError::field("hostname", "the port must be a number"))?;
            Ok((&hostname[..i], Some(port)))
        }
    }
}

/// A provider as VoIPBIN shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderView {
    pub id: Uuid,
    pub name: String,
    pub detail: String,
    #[serde(rename = "type")]
    pub provider_type: String,
    pub hostname: String,
    pub tech_prefix: String,
    pub tech_postfix: String,
    pub tech_headers: BTreeMap<String, String>,
    pub tm_create: String,
    pub tm_update: String,
    pub tm_delete: String,
}

impl From<Carrier> for ProviderView {
    fn from(c: Carrier) -> Self {
        let hostname = if c.remote_port == c.transport.default_port() {
            c.remote_host.to_string()
        } else {
            format!("{}:{}", c.remote_host, c.remote_port)
        };
        ProviderView {
            id: c.id,
            name: c.name.to_string(),
            detail: c.detail.to_string(),
            provider_type: if c.carrier_type.is_sip() {
                "sip".into()
            } else {
                c.carrier_type.as_str().into()
            },
            hostname,
            tech_prefix: c.add_prefix.to_string(),
            tech_postfix: c.add_suffix.to_string(),
            tech_headers: c
                .tech_headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            tm_create: time(c.created_at),
            tm_update: updated(c.created_at, c.updated_at),
            tm_delete: time_or_not_yet(c.archived_at),
        }
    }
}

#[utoipa::path(get, path = "/providers", tag = "voipbin", params(Paging),
    description = "The platform's carriers, newest first; deleted (archived) ones are not listed.",
    responses((status = 200, body = ResultList<ProviderView>), (status = 401, body = ErrorBody)),
    security(("bearer" = []), ("token" = []), ("accesskey" = [])))]
pub async fn list_providers(
    State(state): State<ApiState>,
    principal: Principal,
    ValidQuery(paging): ValidQuery<Paging>,
) -> Result<Json<ResultList<ProviderView>>, ApiError> {
    principal.require(Scope::CarriersRead)?;
    let filter = CarrierFilter {
        scope: TenantScope::Platform,
        status: None,
    };
    let found = state
        .store
        .list_carriers_newest_first(&filter, &paging.request()?)
        .await?;
    Ok(Json(ResultList::of(
        found,
        |c| c.created_at,
        ProviderView::from,
    )))
}

#[utoipa::path(post, path = "/providers", tag = "voipbin", request_body = ProviderBody,
    description = "Creates a platform carrier (platform admins only); its gateway goes live on every node.",
    responses((status = 200, body = ProviderView), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 400, body = ErrorBody)),
    security(("bearer" = []), ("token" = []), ("accesskey" = [])))]
pub async fn create_provider(
    State(state): State<ApiState>,
    principal: Principal,
    ValidJson(body): ValidJson<ProviderBody>,
) -> Result<Json<ProviderView>, ApiError> {
    principal.require_platform_admin()?;
    // The `/api/v1` defaults, for every setting VoIPBIN has no field for.
    let created = match body.apply(CarrierInput::defaults()) {
        Ok(body) => write::carriers::create(&state, &principal, body).await,
        Err(e) => Err(e),
    };
    let carrier = created.map_err(|e| e.renamed(FIELD_NAMES))?;
    Ok(Json(carrier.into()))
}

#[utoipa::path(get, path = "/providers/{id}", tag = "voipbin",
    description = "A provider, deleted ones included (with `tm_delete` set).",
    responses((status = 200, body = ProviderView), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("token" = []), ("accesskey" = [])))]
pub async fn get_provider(
    State(state): State<ApiState>,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Result<Json<ProviderView>, ApiError> {
    principal.require(Scope::CarriersRead)?;
    Ok(Json(provider(&state, &principal, id).await?.into()))
}

#[utoipa::path(put, path = "/providers/{id}", tag = "voipbin", request_body = ProviderBody,
    description = "Replaces the provider's VoIPBIN fields; every other carrier setting keeps its value.",
    responses((status = 200, body = ProviderView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 400, body = ErrorBody)),
    security(("bearer" = []), ("token" = []), ("accesskey" = [])))]
pub async fn update_provider(
    State(state): State<ApiState>,
    principal: Principal,
    Path(id): Path<Uuid>,
    ValidJson(body): ValidJson<ProviderBody>,
) -> Result<Json<ProviderView>, ApiError> {
    provider(&state, &principal, id).await?;
    let carrier = write::carriers::update(&state, &principal, id, |base| body.apply(base))
        .await
        .map_err(|e| e.renamed(FIELD_NAMES))?;
    Ok(Json(carrier.into()))
}

#[utoipa::path(delete, path = "/providers/{id}", tag = "voipbin",
    description = "Archives the carrier and answers it with `tm_delete` set; refused with 409 while enabled routes use it.",
    responses((status = 200, body = ProviderView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = []), ("token" = []), ("accesskey" = [])))]
pub async fn delete_provider(
    State(state): State<ApiState>,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Result<Json<ProviderView>, ApiError> {
    provider(&state, &principal, id).await?;
    Ok(Json(
        write::carriers::archive(&state, &principal, id)
            .await?
            .into(),
    ))
}

/// The platform carrier `id`, else 404 (a tenant's carrier is not a provider).
async fn provider(state: &ApiState, principal: &Principal, id: Uuid) -> Result<Carrier, ApiError> {
    let carrier = visible_carrier(&state.store, principal, id).await?;
    if carrier.tenant_id.is_some() {
        return Err(ApiError::NotFound);
    }
    Ok(carrier)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hostname_may_carry_a_port() {
        assert_eq!(
            split_hostname("sip.telnyx.com").unwrap(),
            ("sip.telnyx.com", None)
        );
        assert_eq!(
            split_hostname("sip.telnyx.com:5080").unwrap(),
            ("sip.telnyx.com", Some(5080))
        );
        assert_eq!(
            split_hostname("[2001:db8::1]").unwrap(),
            ("[2001:db8::1]", None)
        );
        assert_eq!(
            split_hostname("[2001:db8::1]:5070").unwrap(),
            ("[2001:db8::1]", Some(5070))
        );
        assert!(split_hostname("sip.telnyx.com:x").is_err());
    }
}
