//! `/api/v1/carriers`: SIP trunks. DELETE archives (the row stays, routes keep their foreign
//! key); archiving or disabling a carrier that enabled routes still use is refused with 409
//! naming those routes. Tenant admins need the `self_service_carriers` feature and the write
//! scope to change carriers, read their own and the platform's, and never see another tenant's.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::criteria::{CostBody, parse_cost};
use super::error::{ApiError, ErrorBody, FieldErrors};
use super::extract::{ValidJson, ValidQuery};
use super::page::{ListResponse, page_request};
use super::write::{merge_patch, owner_for_write};
use crate::access::{Principal, visible_carrier};
use crate::api::ApiState;
use crate::model::{
    CallerIdFormat, Carrier, CarrierStatus, CarrierType, Cidr, Currency, Detail, Digits, Direction,
    DisplayName, FailoverCode, FailoverCodes, GatewayName, HeaderName, HeaderValue, Host,
    NewCarrier, Password, ProfileName, Scope, SipUser, Transport,
};
use crate::store::{CarrierFilter, TenantScope};

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_carriers, create_carrier))
        .routes(routes!(get_carrier, update_carrier, archive_carrier))
}

/// A carrier as the API writes it (POST, and PATCH merged over the stored carrier).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CarrierBody {
    /// Owner; null = a platform carrier (platform admins only).
    #[serde(default)]
    pub tenant_id: Option<Uuid>,
    pub name: String,
    /// Free notes, up to 1,000 characters.
    #[serde(default)]
    pub detail: String,
    /// FreeSWITCH gateway name, unique platform-wide; derived from `name` when absent.
    #[serde(default)]
    pub gateway_name: Option<String>,
    #[serde(rename = "type", default = "default_type")]
    pub carrier_type: CarrierType,
    #[serde(default = "default_direction")]
    pub direction: Direction,
    #[serde(default = "default_status")]
    pub status: CarrierStatus,
    pub remote_host: String,
    /// Default 5060 (5061 for tls).
    #[serde(default)]
    pub remote_port: Option<u32>,
    #[serde(default = "default_transport")]
    pub transport: Transport,
    /// Sofia profile; default `external`.
    #[serde(default)]
    pub profile: Option<String>,
    /// Whether the gateway registers; default true for `register_trunk`, else false.
    #[serde(default)]
    pub register: Option<bool>,
    #[serde(default)]
    pub auth_username: Option<String>,
    /// Write-only: never returned.
    #[serde(default)]
    pub auth_password: Option<String>,
    #[serde(default)]
    pub realm: Option<String>,
    #[serde(default)]
    pub from_user: Option<String>,
    #[serde(default)]
    pub from_domain: Option<String>,
    #[serde(default)]
    pub caller_id_in_from: bool,
    #[serde(default)]
    pub ping_seconds: Option<u32>,
    #[serde(default)]
    pub inbound_ips: Vec<String>,
    #[serde(default)]
    pub strip_prefix: String,
    #[serde(default)]
    pub add_prefix: String,
    #[serde(default)]
    pub add_suffix: String,
    #[serde(default)]
    pub tech_headers: BTreeMap<String, String>,
    #[serde(default)]
    pub attestation_header: Option<String>,
    /// Null = the platform default (404, 408, 5xx, 604, 606, 608).
    #[serde(default)]
    pub failover_codes: Option<Vec<String>>,
    #[serde(default)]
    pub leg_progress_timeout_seconds: Option<u32>,
    /// Default per-minute cost of routes to this carrier that name none.
    #[serde(default)]
    pub cost: Option<CostBody>,
    /// How this carrier receives the caller ID: `format` `as_presented` (default), `e164`,
    /// `e164_without_plus` or `national` (with `country_code`, and `national_prefix` such as
    /// `0`); `asserted_identity` sends P-Asserted-Identity, `privacy` adds `Privacy: id`.
    #[serde(default)]
    pub caller_id: CallerIdFormat,
}

fn default_type() -> CarrierType {
    CarrierType::SipTrunk
}
fn default_direction() -> Direction {
    Direction::Outbound
}
fn default_status() -> CarrierStatus {
    CarrierStatus::Active
}
fn default_transport() -> Transport {
    Transport::Udp
}

const MAX_INBOUND_IPS: usize = 256;
const MAX_TECH_HEADERS: usize = 32;

impl CarrierBody {
    /// The body that would recreate `c`, secret included: the base a PATCH merges over.
    fn from_carrier(c: &Carrier) -> Self {
        CarrierBody {
            tenant_id: c.tenant_id,
            name: c.name.to_string(),
            detail: c.detail.to_string(),
            gateway_name: Some(c.gateway_name.to_string()),
            carrier_type: c.carrier_type,
            direction: c.direction,
            status: c.status,
            remote_host: c.remote_host.to_string(),
            remote_port: Some(u32::from(c.remote_port)),
            transport: c.transport,
            profile: Some(c.profile.to_string()),
            register: Some(c.register),
            auth_username: c.auth_username.as_ref().map(ToString::to_string),
            auth_password: c.auth_password.as_ref().map(|p| p.expose().to_string()),
            realm: c.realm.as_ref().map(ToString::to_string),
            from_user: c.from_user.as_ref().map(ToString::to_string),
            from_domain: c.from_domain.as_ref().map(ToString::to_string),
            caller_id_in_from: c.caller_id_in_from,
            ping_seconds: c.ping_seconds,
            inbound_ips: c.inbound_ips.iter().map(ToString::to_string).collect(),
            strip_prefix: c.strip_prefix.to_string(),
            add_prefix: c.add_prefix.to_string(),
            add_suffix: c.add_suffix.to_string(),
            tech_headers: c
                .tech_headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            attestation_header: c.attestation_header.as_ref().map(ToString::to_string),
            failover_codes: c
                .failover_codes
                .as_ref()
                .map(|f| f.codes().iter().map(ToString::to_string).collect()),
            leg_progress_timeout_seconds: c.leg_progress_timeout_seconds,
            cost: c.cost.as_ref().map(CostBody::from_cost),
            caller_id: c.caller_id.clone(),
        }
    }

    /// Parses every field (FREESWITCH.md §6.4 allow-lists) and the rules between them, naming
    /// every refused field at once.
    fn parse(self, currency: &Currency) -> Result<NewCarrier, ApiError> {
        let mut e = FieldErrors::default();
        let name = e.parse("name", &self.name, DisplayName::parse);
        let detail = e.parse("detail", &self.detail, Detail::parse);
        let gateway_name = match &self.gateway_name {
            Some(g) => e.parse("gateway_name", g, GatewayName::parse),
            None => {
                let mut suffix = [0u8; 3];
                rand::rng().fill_bytes(&mut suffix);
                // Named after `name`: a derivation that fails is that field's fault.
                e.parse("name", &self.name, |n| {
                    GatewayName::derive(n, &hex::encode(suffix))
                })
            }
        };
        let remote_host = e.parse("remote_host", &self.remote_host, Host::parse);
        let remote_port = match self.remote_port {
            None => Some(self.transport.default_port()),
            Some(p @ 1..=65535) => Some(p as u16),
            Some(_) => {
                e.add("remote_port", "must be between 1 and 65535");
                None
            }
        };
        let profile = match &self.profile {
            None => Some(ProfileName::external()),
            Some(p) => e.parse("profile", p, ProfileName::parse),
        };
        let register = self
            .register
            .unwrap_or(self.carrier_type == CarrierType::RegisterTrunk);
        if self.carrier_type == CarrierType::RegisterTrunk && !register {
            e.add(
                "register",
                "a register_trunk registers: register cannot be false",
            );
        }
        let auth_username = e.parse_opt(
            "auth_username",
            self.auth_username.as_deref(),
            SipUser::parse,
        );
        let auth_password = e.parse_opt(
            "auth_password",
            self.auth_password.as_deref(),
            Password::parse,
        );
        // FreeSWITCH skips a registering gateway that lacks username or password (FREESWITCH.md §2.2).
        if register {
            if self.auth_username.is_none() {
                e.add("auth_username", "required when the carrier registers");
            }
            if self.auth_password.is_none() {
                e.add("auth_password", "required when the carrier registers");
            }
        }
        let realm = e.parse_opt("realm", self.realm.as_deref(), Host::parse);
        let from_user = e.parse_opt("from_user", self.from_user.as_deref(), SipUser::parse);
        let from_domain = e.parse_opt("from_domain", self.from_domain.as_deref(), Host::parse);
        // FreeSWITCH rejects a ping interval under 5 s (sofia.c parse_gateways).
        if let Some(p) = self.ping_seconds
            && !(5..=3600).contains(&p)
        {
            e.add("ping_seconds", "must be null or between 5 and 3600");
        }
        if let Some(t) = self.leg_progress_timeout_seconds
            && !(1..=300).contains(&t)
        {
            e.add(
                "leg_progress_timeout_seconds",
                "must be null or between 1 and 300",
            );
        }
        if self.inbound_ips.len() > MAX_INBOUND_IPS {
            e.add("inbound_ips", format!("at most {MAX_INBOUND_IPS} entries"));
        }
        let inbound_ips = e.parse_list("inbound_ips", &self.inbound_ips, Cidr::parse);
        let strip_prefix = e.parse("strip_prefix", &self.strip_prefix, Digits::parse);
        let add_prefix = e.parse("add_prefix", &self.add_prefix, Digits::parse);
        let add_suffix = e.parse("add_suffix", &self.add_suffix, Digits::parse);
        if self.tech_headers.len() > MAX_TECH_HEADERS {
            e.add(
                "tech_headers",
                format!("at most {MAX_TECH_HEADERS} headers"),
            );
        }
        let mut tech_headers = BTreeMap::new();
        for (k, v) in &self.tech_headers {
            let field = format!("tech_headers.{}", printable(k));
            let name = e.parse(&field, k, HeaderName::parse);
            let value = e.parse(&field, v, HeaderValue::parse);
            if let (Some(name), Some(value)) = (name, value) {
                tech_headers.insert(name, value);
            }
        }
        let attestation_header = e.parse_opt(
            "attestation_header",
            self.attestation_header.as_deref(),
            HeaderName::parse,
        );
        if let Some(Some(h)) = &attestation_header
            && tech_headers
                .keys()
                .any(|k| k.as_str().eq_ignore_ascii_case(h.as_str()))
        {
            e.add("attestation_header", "is also set in tech_headers");
        }
        let failover_codes = match &self.failover_codes {
            None => Some(None),
            Some(list) => e
                .parse_list("failover_codes", list, FailoverCode::parse)
                .and_then(|codes| {
                    FailoverCodes::new(codes)
                        .map_err(|err| e.add("failover_codes", err.0))
                        .ok()
                })
                .map(Some),
        };
        let cost = parse_cost(&mut e, "cost", self.cost.as_ref(), currency);
        if self.status == CarrierStatus::Archived {
            e.add("status", "use DELETE to archive a carrier");
        }
        if let Err((field, why)) = self.caller_id.check() {
            e.add(&format!("caller_id.{field}"), why.0);
        }
        e.finish()?;
        // Every `None` above recorded an error, so `finish` returned early.
        let missing = || ApiError::Internal("parsed field missing without an error".into());
        Ok(NewCarrier {
            tenant_id: self.tenant_id,
            name: name.ok_or_else(missing)?,
            gateway_name: gateway_name.ok_or_else(missing)?,
            carrier_type: self.carrier_type,
            direction: self.direction,
            status: self.status,
            remote_host: remote_host.ok_or_else(missing)?,
            remote_port: remote_port.ok_or_else(missing)?,
            transport: self.transport,
            profile: profile.ok_or_else(missing)?,
            register,
            auth_username: auth_username.ok_or_else(missing)?,
            auth_password: auth_password.ok_or_else(missing)?,
            realm: realm.ok_or_else(missing)?,
            from_user: from_user.ok_or_else(missing)?,
            from_domain: from_domain.ok_or_else(missing)?,
            caller_id_in_from: self.caller_id_in_from,
            ping_seconds: self.ping_seconds,
            inbound_ips: inbound_ips.ok_or_else(missing)?,
            strip_prefix: strip_prefix.ok_or_else(missing)?,
            add_prefix: add_prefix.ok_or_else(missing)?,
            add_suffix: add_suffix.ok_or_else(missing)?,
            tech_headers,
            attestation_header: attestation_header.ok_or_else(missing)?,
            failover_codes: failover_codes.ok_or_else(missing)?,
            leg_progress_timeout_seconds: self.leg_progress_timeout_seconds,
            cost: cost.ok_or_else(missing)?,
            detail: detail.ok_or_else(missing)?,
            caller_id: self.caller_id,
        })
    }
}

/// A header name as it may appear in a field path of an error: hostile names are not echoed.
fn printable(name: &str) -> String {
    if HeaderName::parse(name).is_ok() {
        name.to_string()
    } else {
        "<invalid name>".to_string()
    }
}

/// A carrier as the API returns it: never the password.
#[derive(Debug, Serialize, ToSchema)]
pub struct CarrierView {
    pub id: Uuid,
    pub tenant_id: Option<Uuid>,
    /// `platform` or `tenant`, from `tenant_id`.
    pub origin: &'static str,
    pub name: String,
    pub detail: String,
    pub gateway_name: String,
    #[serde(rename = "type")]
    pub carrier_type: CarrierType,
    pub direction: Direction,
    pub status: CarrierStatus,
    pub remote_host: String,
    pub remote_port: u16,
    pub transport: Transport,
    pub profile: String,
    pub register: bool,
    pub auth_username: Option<String>,
    pub has_password: bool,
    pub realm: Option<String>,
    pub from_user: Option<String>,
    pub from_domain: Option<String>,
    pub caller_id_in_from: bool,
    pub ping_seconds: Option<u32>,
    pub inbound_ips: Vec<String>,
    pub strip_prefix: String,
    pub add_prefix: String,
    pub add_suffix: String,
    pub tech_headers: BTreeMap<String, String>,
    pub attestation_header: Option<String>,
    pub failover_codes: Option<Vec<String>>,
    pub leg_progress_timeout_seconds: Option<u32>,
    pub cost: Option<CostBody>,
    pub caller_id: CallerIdFormat,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub archived_at: Option<DateTime<Utc>>,
}

impl From<Carrier> for CarrierView {
    fn from(c: Carrier) -> Self {
        let body = CarrierBody::from_carrier(&c);
        CarrierView {
            id: c.id,
            tenant_id: c.tenant_id,
            origin: if c.tenant_id.is_some() {
                "tenant"
            } else {
                "platform"
            },
            name: body.name,
            detail: body.detail,
            gateway_name: c.gateway_name.to_string(),
            carrier_type: c.carrier_type,
            direction: c.direction,
            status: c.status,
            remote_host: body.remote_host,
            remote_port: c.remote_port,
            transport: c.transport,
            profile: c.profile.to_string(),
            register: c.register,
            auth_username: body.auth_username,
            has_password: c.auth_password.is_some(),
            realm: body.realm,
            from_user: body.from_user,
            from_domain: body.from_domain,
            caller_id_in_from: c.caller_id_in_from,
            ping_seconds: c.ping_seconds,
            inbound_ips: body.inbound_ips,
            strip_prefix: body.strip_prefix,
            add_prefix: body.add_prefix,
            add_suffix: body.add_suffix,
            tech_headers: body.tech_headers,
            attestation_header: body.attestation_header,
            failover_codes: body.failover_codes,
            leg_progress_timeout_seconds: c.leg_progress_timeout_seconds,
            cost: body.cost,
            caller_id: body.caller_id,
            created_at: c.created_at,
            updated_at: c.updated_at,
            archived_at: c.archived_at,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CarrierListQuery {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
    /// Platform admins: only this tenant's carriers.
    pub tenant_id: Option<Uuid>,
    /// `active`, `disabled` or `archived` (archived carriers are listed only when asked).
    pub status: Option<CarrierStatus>,
}

#[utoipa::path(get, path = "/carriers", tag = "carriers", params(CarrierListQuery),
    responses((status = 200, body = ListResponse<CarrierView>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_carriers(
    State(state): State<ApiState>,
    principal: Principal,
    ValidQuery(q): ValidQuery<CarrierListQuery>,
) -> Result<Json<ListResponse<CarrierView>>, ApiError> {
    principal.require(Scope::CarriersRead)?;
    let page = page_request(q.limit, q.cursor.as_deref())?;
    let scope = match principal.acting_tenant(q.tenant_id)? {
        None => TenantScope::All,
        Some(t) if principal.is_platform_admin() => TenantScope::Tenant(t),
        Some(t) => TenantScope::TenantAndPlatform(t),
    };
    let filter = CarrierFilter {
        scope,
        status: q.status,
    };
    let found = state.store.list_carriers(&filter, &page).await?;
    Ok(Json(ListResponse::from_page(found, CarrierView::from)))
}

/// A TLS carrier needs a profile whose template turns TLS on: sofia skips the gateway otherwise
/// ("unsupported transport", sofia.c parse_gateways), so it is refused here rather than left
/// out of sofia.conf without a word.
fn check_transport(state: &ApiState, new: &NewCarrier) -> Result<(), ApiError> {
    if new.transport == Transport::Tls
        && !state.publisher.templates().profiles.has_tls(&new.profile)
    {
        return Err(ApiError::field(
            "transport",
            format!(
                "tls needs a sofia profile whose template sets tls=true, and profile {} does not: FreeSWITCH would not run this gateway",
                new.profile
            ),
        ));
    }
    Ok(())
}

#[utoipa::path(post, path = "/carriers", tag = "carriers", request_body = CarrierBody,
    responses((status = 201, body = CarrierView), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_carrier(
    State(state): State<ApiState>,
    principal: Principal,
    ValidJson(body): ValidJson<CarrierBody>,
) -> Result<(StatusCode, Json<CarrierView>), ApiError> {
    let carrier = create(&state, &principal, body).await?;
    Ok((StatusCode::CREATED, Json(carrier.into())))
}

/// Creates a carrier from `body` as the caller may (both APIs' POST): the write scope, the
/// self-service gate, the owner, every field's rules and the profile's TLS; then waits for the
/// published snapshot.
pub(super) async fn create(
    state: &ApiState,
    principal: &Principal,
    mut body: CarrierBody,
) -> Result<Carrier, ApiError> {
    principal.require(Scope::CarriersWrite)?;
    principal.require_self_service(&state.store).await?;
    body.tenant_id = owner_for_write(state, principal, body.tenant_id).await?;
    let new = body.parse(&state.settings.currency)?;
    check_transport(state, &new)?;
    let carrier = state.store.create_carrier(&new).await?;
    tracing::info!(token = %principal.token_id, carrier = %carrier.id, gateway = %carrier.gateway_name, "carrier created");
    state.after_write().await;
    Ok(carrier)
}

#[utoipa::path(get, path = "/carriers/{id}", tag = "carriers",
    responses((status = 200, body = CarrierView), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_carrier(
    State(state): State<ApiState>,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Result<Json<CarrierView>, ApiError> {
    principal.require(Scope::CarriersRead)?;
    Ok(Json(
        visible_carrier(&state.store, &principal, id).await?.into(),
    ))
}

#[utoipa::path(patch, path = "/carriers/{id}", tag = "carriers", request_body = Object,
    description = "JSON merge patch (RFC 7396) over the carrier's writable fields; null clears a field.",
    responses((status = 200, body = CarrierView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update_carrier(
    State(state): State<ApiState>,
    principal: Principal,
    Path(id): Path<Uuid>,
    ValidJson(patch): ValidJson<serde_json::Value>,
) -> Result<Json<CarrierView>, ApiError> {
    let carrier = update(&state, &principal, id, |existing| {
        merge_patch(&existing, patch)
    })
    .await?;
    Ok(Json(carrier.into()))
}

/// Changes carrier `id` as the caller may (PATCH here, PUT of `/v1.0/providers`): `edit` turns
/// the body that would recreate the carrier into the new one, and the new body passes the
/// same rules as a POST. An archived carrier no longer changes; the owner never does.
pub(super) async fn update(
    state: &ApiState,
    principal: &Principal,
    id: Uuid,
    edit: impl FnOnce(CarrierBody) -> Result<CarrierBody, ApiError>,
) -> Result<Carrier, ApiError> {
    principal.require(Scope::CarriersWrite)?;
    let existing = writable_carrier(state, principal, id).await?;
    principal.require_self_service(&state.store).await?;
    if existing.status == CarrierStatus::Archived {
        return Err(ApiError::Conflict(vec![super::error::FieldError {
            field: Some("status".into()),
            detail: "the carrier is archived and can no longer change".into(),
        }]));
    }
    let body = edit(CarrierBody::from_carrier(&existing))?;
    if body.tenant_id != existing.tenant_id {
        return Err(ApiError::field("tenant_id", "cannot be changed"));
    }
    let new = body.parse(&state.settings.currency)?;
    check_transport(state, &new)?;
    let carrier = state.store.update_carrier(id, &new).await?;
    tracing::info!(token = %principal.token_id, carrier = %carrier.id, "carrier updated");
    state.after_write().await;
    Ok(carrier)
}

#[utoipa::path(delete, path = "/carriers/{id}", tag = "carriers",
    description = "Archives the carrier (status `archived`). Refused with 409 while enabled routes use it.",
    responses((status = 200, body = CarrierView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn archive_carrier(
    State(state): State<ApiState>,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Result<Json<CarrierView>, ApiError> {
    Ok(Json(archive(&state, &principal, id).await?.into()))
}

/// Archives carrier `id` as the caller may (both APIs' DELETE).
pub(super) async fn archive(
    state: &ApiState,
    principal: &Principal,
    id: Uuid,
) -> Result<Carrier, ApiError> {
    principal.require(Scope::CarriersWrite)?;
    writable_carrier(state, principal, id).await?;
    principal.require_self_service(&state.store).await?;
    let carrier = state.store.archive_carrier(id).await?;
    tracing::info!(token = %principal.token_id, carrier = %carrier.id, "carrier archived");
    state.after_write().await;
    Ok(carrier)
}

/// The carrier if the caller may change it: 404 for another tenant's, 403 for a platform
/// carrier seen by a tenant admin.
async fn writable_carrier(
    state: &ApiState,
    principal: &Principal,
    id: Uuid,
) -> Result<Carrier, ApiError> {
    let carrier = visible_carrier(&state.store, principal, id).await?;
    if carrier.tenant_id.is_none() && !principal.is_platform_admin() {
        return Err(ApiError::Forbidden(
            "platform carriers are managed by the platform".into(),
        ));
    }
    Ok(carrier)
}
