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
use super::write::{self, merge_patch};
use crate::access::{Principal, visible_carrier};
use crate::api::ApiState;
use crate::model::{Carrier, CarrierInput, CarrierStatus, Scope};
use crate::store::{CarrierFilter, TenantScope};

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_carriers, create_carrier))
        .routes(routes!(get_carrier, update_carrier, archive_carrier))
}

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

#[utoipa::path(post, path = "/carriers", tag = "carriers", request_body = CarrierInput,
    responses((status = 201, body = CarrierView), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_carrier(
    State(state): State<ApiState>,
    principal: Principal,
    ValidJson(body): ValidJson<CarrierInput>,
) -> Result<(StatusCode, Json<CarrierView>), ApiError> {
    let carrier = write::carriers::create(&state, &principal, body).await?;
    Ok((StatusCode::CREATED, Json(carrier.into())))
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
    let carrier = write::carriers::update(&state, &principal, id, |existing| {
        merge_patch(&existing, patch)
    })
    .await?;
    Ok(Json(carrier.into()))
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
    Ok(Json(
        write::carriers::archive(&state, &principal, id)
            .await?
            .into(),
    ))
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
        let posted: CarrierInput =
            serde_json::from_value(json!({"name": "", "remote_host": ""})).unwrap();
        assert_eq!(
            serde_json::to_value(posted).unwrap(),
            serde_json::to_value(CarrierInput::defaults()).unwrap()
        );
    }
}
