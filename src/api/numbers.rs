//! `/api/v1/phone-numbers`: the DID inventory. A number belongs to one tenant and optionally to a
//! carrier the tenant can use; it outlives its carrier (the foreign key is SET NULL). Every write
//! publishes a new snapshot: caller-ID policies and attestation read the numbers from it.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::error::{ApiError, ErrorBody, FieldErrors};
use super::extract::{ValidJson, ValidQuery};
use super::page::{ListResponse, page_request};
use super::write::{merge_patch, owner_for_write};
use crate::access::Principal;
use crate::api::ApiState;
use crate::model::{Capability, E164, NewPhoneNumber, PhoneNumber, Scope};
use crate::store::{PhoneNumberFilter, TenantScope};

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_phone_numbers, create_phone_number))
        .routes(routes!(
            get_phone_number,
            update_phone_number,
            delete_phone_number
        ))
}

/// A phone number as the API writes it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PhoneNumberBody {
    /// Required for platform admins; a tenant admin's own tenant otherwise.
    #[serde(default)]
    pub tenant_id: Option<Uuid>,
    /// E.164, e.g. `+442071234567`.
    pub number: String,
    #[serde(default)]
    pub carrier_id: Option<Uuid>,
    /// Subset of `voice`, `sms`, `mms`, `fax` (default `["voice"]`).
    #[serde(default = "default_capabilities")]
    pub capabilities: Vec<Capability>,
}

fn default_capabilities() -> Vec<Capability> {
    vec![Capability::Voice]
}

impl PhoneNumberBody {
    fn from_number(n: &PhoneNumber) -> Self {
        PhoneNumberBody {
            tenant_id: Some(n.tenant_id),
            number: n.number.to_string(),
            carrier_id: n.carrier_id,
            capabilities: n.capabilities.clone(),
        }
    }

    fn parse(self) -> Result<NewPhoneNumber, ApiError> {
        let mut e = FieldErrors::default();
        let number = e.parse("number", &self.number, E164::parse);
        let Some(tenant_id) = self.tenant_id else {
            e.add("tenant_id", "required: a phone number belongs to a tenant");
            return Err(e.finish().expect_err("an error was recorded").into());
        };
        e.finish()?;
        // A set, kept in the order written so that it round-trips; repeats are dropped.
        let mut capabilities = Vec::with_capacity(self.capabilities.len());
        for c in self.capabilities {
            if !capabilities.contains(&c) {
                capabilities.push(c);
            }
        }
        Ok(NewPhoneNumber {
            tenant_id,
            number: number.ok_or_else(|| ApiError::Internal("number missing".into()))?,
            carrier_id: self.carrier_id,
            capabilities,
        })
    }
}

/// A phone number as the API returns it.
#[derive(Debug, Serialize, ToSchema)]
pub struct PhoneNumberView {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub number: String,
    pub carrier_id: Option<Uuid>,
    pub capabilities: Vec<Capability>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<PhoneNumber> for PhoneNumberView {
    fn from(n: PhoneNumber) -> Self {
        PhoneNumberView {
            id: n.id,
            tenant_id: n.tenant_id,
            number: n.number.to_string(),
            carrier_id: n.carrier_id,
            capabilities: n.capabilities,
            created_at: n.created_at,
            updated_at: n.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PhoneNumberListQuery {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
    /// Platform admins: only this tenant's numbers.
    pub tenant_id: Option<Uuid>,
    pub carrier_id: Option<Uuid>,
}

#[utoipa::path(get, path = "/phone-numbers", tag = "phone-numbers", params(PhoneNumberListQuery),
    responses((status = 200, body = ListResponse<PhoneNumberView>), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_phone_numbers(
    State(state): State<ApiState>,
    principal: Principal,
    ValidQuery(q): ValidQuery<PhoneNumberListQuery>,
) -> Result<Json<ListResponse<PhoneNumberView>>, ApiError> {
    principal.require(Scope::PhoneNumbersRead)?;
    let page = page_request(q.limit, q.cursor.as_deref())?;
    let scope = match principal.acting_tenant(q.tenant_id)? {
        None => TenantScope::All,
        Some(t) => TenantScope::Tenant(t),
    };
    let filter = PhoneNumberFilter {
        scope,
        carrier_id: q.carrier_id,
    };
    let found = state.store.list_phone_numbers(&filter, &page).await?;
    Ok(Json(ListResponse::from_page(found, PhoneNumberView::from)))
}

#[utoipa::path(post, path = "/phone-numbers", tag = "phone-numbers", request_body = PhoneNumberBody,
    responses((status = 201, body = PhoneNumberView), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_phone_number(
    State(state): State<ApiState>,
    principal: Principal,
    ValidJson(mut body): ValidJson<PhoneNumberBody>,
) -> Result<(StatusCode, Json<PhoneNumberView>), ApiError> {
    principal.require(Scope::PhoneNumbersWrite)?;
    body.tenant_id = owner_for_write(&state, &principal, body.tenant_id).await?;
    let new = body.parse()?;
    check_carrier(&state, &new).await?;
    let number = state.store.create_phone_number(&new).await?;
    tracing::info!(token = %principal.token_id, phone_number = %number.id, "phone number created");
    // Caller-ID policies and attestation read the numbers from the snapshot.
    state.after_write().await;
    Ok((StatusCode::CREATED, Json(number.into())))
}

#[utoipa::path(get, path = "/phone-numbers/{id}", tag = "phone-numbers",
    responses((status = 200, body = PhoneNumberView), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_phone_number(
    State(state): State<ApiState>,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Result<Json<PhoneNumberView>, ApiError> {
    principal.require(Scope::PhoneNumbersRead)?;
    Ok(Json(owned_number(&state, &principal, id).await?.into()))
}

#[utoipa::path(patch, path = "/phone-numbers/{id}", tag = "phone-numbers", request_body = Object,
    description = "JSON merge patch (RFC 7396) over the number's writable fields.",
    responses((status = 200, body = PhoneNumberView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update_phone_number(
    State(state): State<ApiState>,
    principal: Principal,
    Path(id): Path<Uuid>,
    ValidJson(patch): ValidJson<serde_json::Value>,
) -> Result<Json<PhoneNumberView>, ApiError> {
    principal.require(Scope::PhoneNumbersWrite)?;
    let existing = owned_number(&state, &principal, id).await?;
    let body: PhoneNumberBody = merge_patch(&PhoneNumberBody::from_number(&existing), patch)?;
    if body.tenant_id != Some(existing.tenant_id) {
        return Err(ApiError::field("tenant_id", "cannot be changed"));
    }
    let new = body.parse()?;
    check_carrier(&state, &new).await?;
    let number = state.store.update_phone_number(id, &new).await?;
    tracing::info!(token = %principal.token_id, phone_number = %number.id, "phone number updated");
    // Caller-ID policies and attestation read the numbers from the snapshot.
    state.after_write().await;
    Ok(Json(number.into()))
}

#[utoipa::path(delete, path = "/phone-numbers/{id}", tag = "phone-numbers",
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_phone_number(
    State(state): State<ApiState>,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    principal.require(Scope::PhoneNumbersWrite)?;
    owned_number(&state, &principal, id).await?;
    state.store.delete_phone_number(id).await?;
    tracing::info!(token = %principal.token_id, phone_number = %id, "phone number deleted");
    // Caller-ID policies and attestation read the numbers from the snapshot.
    state.after_write().await;
    Ok(StatusCode::NO_CONTENT)
}

async fn owned_number(
    state: &ApiState,
    principal: &Principal,
    id: Uuid,
) -> Result<PhoneNumber, ApiError> {
    let number = state
        .store
        .get_phone_number(id)
        .await?
        .ok_or(ApiError::NotFound)?;
    if principal.can_read(Some(number.tenant_id), false) {
        Ok(number)
    } else {
        Err(ApiError::NotFound)
    }
}

/// A number's carrier must be one its tenant can use: its own or a platform carrier.
async fn check_carrier(state: &ApiState, n: &NewPhoneNumber) -> Result<(), ApiError> {
    let Some(carrier_id) = n.carrier_id else {
        return Ok(());
    };
    match state.store.get_carrier(carrier_id).await? {
        Some(c) if c.tenant_id.is_none() || c.tenant_id == Some(n.tenant_id) => Ok(()),
        _ => Err(ApiError::field("carrier_id", "no such carrier")),
    }
}
