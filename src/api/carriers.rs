//! `/api/v1/carriers`: SIP trunks. DELETE archives (the row stays, routes keep their foreign
//! key); archiving or disabling a carrier that enabled routes still use is refused with 409
//! naming those routes. Tenant admins need the `self_service_carriers` feature and the write
//! scope to change carriers, read their own and the platform's, and never see another tenant's.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::error::{ApiError, ErrorBody};
use super::extract::{ValidJson, ValidQuery};
use super::page::{ListResponse, page_request};
use super::write::{merge_patch, owner_for_write};
use crate::access::{Principal, visible_carrier};
use crate::api::ApiState;
use crate::model::{Carrier, CarrierInput, CarrierStatus, NewCarrier, Scope, Transport};
use crate::store::{CarrierFilter, TenantScope};

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_carriers, create_carrier))
        .routes(routes!(get_carrier, update_carrier, archive_carrier))
}

/// A carrier as the API writes it (POST, and PATCH merged over the stored carrier): the
/// model's written form, whose schema keeps this name.
pub type CarrierBody = CarrierInput;

/// A carrier as the API returns it: the written form as [`CarrierInput::shown`] shows it (never
/// the password), with what the store assigns.
#[derive(Debug, Serialize, ToSchema)]
pub struct CarrierView {
    pub id: Uuid,
    /// `platform` or `tenant`, from `tenant_id`.
    pub origin: &'static str,
    #[serde(flatten)]
    pub fields: CarrierInput,
    pub has_password: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub archived_at: Option<DateTime<Utc>>,
}

impl From<Carrier> for CarrierView {
    fn from(c: Carrier) -> Self {
        CarrierView {
            id: c.id,
            origin: if c.tenant_id.is_some() {
                "tenant"
            } else {
                "platform"
            },
            fields: CarrierInput::shown(&c.fields),
            has_password: c.auth_password.is_some(),
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
    let new = NewCarrier::parse(body, &state.settings.currency)?;
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
    let body = edit(CarrierBody::from(&existing.fields))?;
    if body.tenant_id != existing.tenant_id {
        return Err(ApiError::field("tenant_id", "cannot be changed"));
    }
    let new = NewCarrier::parse(body, &state.settings.currency)?;
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::{CallerIdFormat, Password, SipUser, fixtures};

    #[test]
    fn the_view_shows_the_fields_it_always_showed_and_never_the_password() {
        let mut c = fixtures::carrier("gw-one", 1);
        c.auth_username = Some(SipUser::parse("acct").unwrap());
        c.auth_password = Some(Password::parse("s3cret").unwrap());
        let view = serde_json::to_value(CarrierView::from(c)).unwrap();
        let at = "2026-11-22T14:00:00Z";
        assert_eq!(
            view,
            json!({
                "id": "00000000-0000-0000-0000-000000000001",
                "tenant_id": null,
                "origin": "platform",
                "name": "gw-one",
                "detail": "",
                "gateway_name": "gw-one",
                "type": "sip_trunk",
                "direction": "outbound",
                "status": "active",
                "remote_host": "sip.example.net",
                "remote_port": 5060,
                "transport": "udp",
                "profile": "external",
                "register": false,
                "auth_username": "acct",
                "has_password": true,
                "realm": null,
                "from_user": null,
                "from_domain": null,
                "caller_id_in_from": false,
                "ping_seconds": null,
                "inbound_ips": [],
                "strip_prefix": "",
                "add_prefix": "",
                "add_suffix": "",
                "tech_headers": {},
                "attestation_header": null,
                "failover_codes": null,
                "leg_progress_timeout_seconds": null,
                "cost": null,
                "caller_id": serde_json::to_value(CallerIdFormat::default()).unwrap(),
                "created_at": at,
                "updated_at": at,
                "archived_at": null,
            })
        );
        assert!(!view.to_string().contains("s3cret"));
    }

    #[test]
    fn the_defaults_are_those_of_an_empty_post() {
        let posted: CarrierBody =
            serde_json::from_value(json!({"name": "", "remote_host": ""})).unwrap();
        assert_eq!(
            serde_json::to_value(posted).unwrap(),
            serde_json::to_value(CarrierInput::defaults()).unwrap()
        );
    }
}
