//! `/api/v1/tenants`: platform admins create and change tenants (features are granted by the
//! platform, so a tenant cannot give itself `self_service_carriers`); a tenant admin reads only
//! its own tenant.

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
use super::write::merge_patch;
use crate::access::Principal;
use crate::api::ApiState;
use crate::model::{
    CallerIdPolicy, ContextName, CostInput, DisplayName, FailoverMode, Feature, NewTenant, Tenant,
    parse_cost,
};
use crate::store::TenantFilter;

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_tenants, create_tenant))
        .routes(routes!(get_tenant, update_tenant))
}

/// A tenant as the API writes it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantBody {
    pub name: String,
    /// The FreeSWITCH dialplan context of this tenant's outbound calls (unique).
    #[serde(default)]
    pub context: Option<String>,
    #[serde(default)]
    pub features: Vec<Feature>,
    /// Overrides the configured failover form for this tenant (`default` or `exact`).
    #[serde(default)]
    pub failover_mode: Option<FailoverMode>,
    /// The most a leg of this tenant's calls may cost per minute; dearer legs are dropped,
    /// legs of unknown cost kept.
    #[serde(default)]
    pub max_cost: Option<CostInput>,
    /// Which caller IDs this tenant's calls may present: `allow` `any` (default) or
    /// `own_numbers` (its phone numbers with voice capability); `foreign` `refuse` (default) or
    /// `replace` by `default_number`. A call with no valid caller ID is refused or replaced
    /// alike, whatever `allow` says. `default_name` is the caller-ID name sent to carriers
    /// whose `caller_id.name` is `replace`, and under `pass` when the call's own is not valid.
    #[serde(default)]
    pub caller_id_policy: CallerIdPolicy,
}

impl TenantBody {
    fn from_tenant(t: &Tenant) -> Self {
        TenantBody {
            name: t.name.to_string(),
            context: t.context.as_ref().map(ToString::to_string),
            features: t.features.clone(),
            failover_mode: t.failover_mode,
            max_cost: t.max_cost.as_ref().map(CostInput::from),
            caller_id_policy: t.caller_id_policy.clone(),
        }
    }

    fn parse(self, state: &ApiState) -> Result<NewTenant, ApiError> {
        let mut e = FieldErrors::default();
        let name = e.parse("name", &self.name, DisplayName::parse);
        let context = e.parse_opt("context", self.context.as_deref(), ContextName::parse);
        if let Some(Some(c)) = &context
            && c == &state.settings.default_context
        {
            e.add("context", "is trunkline's own default context");
        }
        let max_cost = parse_cost(
            &mut e,
            "max_cost",
            self.max_cost.as_ref(),
            &state.settings.currency,
        );
        if let Err((field, why)) = self.caller_id_policy.check() {
            e.add(&format!("caller_id_policy.{field}"), why.0);
        }
        e.finish()?;
        let mut features = self.features;
        features.sort_by_key(|f| f.as_str());
        features.dedup();
        let missing = || ApiError::Internal("parsed field missing without an error".into());
        Ok(NewTenant {
            name: name.ok_or_else(missing)?,
            context: context.ok_or_else(missing)?,
            features,
            failover_mode: self.failover_mode,
            max_cost: max_cost.ok_or_else(missing)?,
            caller_id_policy: self.caller_id_policy,
        })
    }
}

/// A tenant as the API returns it.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantView {
    pub id: Uuid,
    pub name: String,
    pub context: Option<String>,
    pub features: Vec<Feature>,
    pub failover_mode: Option<FailoverMode>,
    pub max_cost: Option<CostInput>,
    pub caller_id_policy: CallerIdPolicy,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Tenant> for TenantView {
    fn from(t: Tenant) -> Self {
        let body = TenantBody::from_tenant(&t);
        TenantView {
            id: t.id,
            name: body.name,
            context: body.context,
            features: body.features,
            failover_mode: body.failover_mode,
            max_cost: body.max_cost,
            caller_id_policy: body.caller_id_policy,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TenantListQuery {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

#[utoipa::path(get, path = "/tenants", tag = "tenants", params(TenantListQuery),
    responses((status = 200, body = ListResponse<TenantView>), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_tenants(
    State(state): State<ApiState>,
    principal: Principal,
    ValidQuery(q): ValidQuery<TenantListQuery>,
) -> Result<Json<ListResponse<TenantView>>, ApiError> {
    let page = page_request(q.limit, q.cursor.as_deref())?;
    let filter = TenantFilter {
        only: if principal.is_platform_admin() {
            None
        } else {
            principal.tenant_id
        },
    };
    let found = state.store.list_tenants(&filter, &page).await?;
    Ok(Json(ListResponse::from_page(found, TenantView::from)))
}

#[utoipa::path(post, path = "/tenants", tag = "tenants", request_body = TenantBody,
    responses((status = 201, body = TenantView), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_tenant(
    State(state): State<ApiState>,
    principal: Principal,
    ValidJson(body): ValidJson<TenantBody>,
) -> Result<(StatusCode, Json<TenantView>), ApiError> {
    principal.require_platform_admin()?;
    let new = body.parse(&state)?;
    let tenant = state.store.create_tenant(&new).await?;
    tracing::info!(token = %principal.token_id, tenant = %tenant.id, "tenant created");
    state.after_write().await;
    Ok((StatusCode::CREATED, Json(tenant.into())))
}

#[utoipa::path(get, path = "/tenants/{id}", tag = "tenants",
    responses((status = 200, body = TenantView), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_tenant(
    State(state): State<ApiState>,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Result<Json<TenantView>, ApiError> {
    if !principal.can_read(Some(id), false) {
        return Err(ApiError::NotFound);
    }
    let tenant = state
        .store
        .get_tenant(id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(tenant.into()))
}

#[utoipa::path(patch, path = "/tenants/{id}", tag = "tenants", request_body = Object,
    description = "JSON merge patch (RFC 7396) over the tenant's writable fields. Platform admins only.",
    responses((status = 200, body = TenantView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update_tenant(
    State(state): State<ApiState>,
    principal: Principal,
    Path(id): Path<Uuid>,
    ValidJson(patch): ValidJson<serde_json::Value>,
) -> Result<Json<TenantView>, ApiError> {
    if !principal.can_read(Some(id), false) {
        return Err(ApiError::NotFound);
    }
    principal.require_platform_admin()?;
    let existing = state
        .store
        .get_tenant(id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let body: TenantBody = merge_patch(&TenantBody::from_tenant(&existing), patch)?;
    let new = body.parse(&state)?;
    let tenant = state.store.update_tenant(id, &new).await?;
    tracing::info!(token = %principal.token_id, tenant = %tenant.id, "tenant updated");
    state.after_write().await;
    Ok(Json(tenant.into()))
}
