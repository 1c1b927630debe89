//! `/v1.0/routes`: VoIPBIN routes, which are trunkline's prefix routes. `customer_id`
//! `00000000-0000-0000-0000-000000000001` is the platform (default routes, `tenant_id` null);
//! any other value is a tenant. `target` is a prefix as `/api/v1` writes one (`+82`), or
//! `all`. A tenant's token sees and changes only its own routes; regex routes have no VoIPBIN
//! form and are managed through `/api/v1/outbound-routes` only.
//!
//! VoIPBIN routes may have an empty `name`; a trunkline route has one, so an empty name is
//! stored as `route to <target>`. DELETE removes the route (it leaves every list and a GET
//! answers 404 afterwards) and answers it as it was, with `tm_delete` set.

use axum::Json;
use axum::extract::{Path, State};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{Paging, ResultList, time, updated};
use crate::access::Principal;
use crate::api::ApiState;
use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::{ValidJson, ValidQuery};
use crate::api::write;
use crate::model::{MatchType, Route, RouteInput, RouteMatch, Scope};
use crate::store::{RouteFilter, TenantScope};

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_routes, create_route))
        .routes(routes!(get_route, update_route, delete_route))
}

/// VoIPBIN's customer id for the platform's default routes.
pub const PLATFORM_CUSTOMER: Uuid = Uuid::from_u128(1);

/// `/api/v1` field names as VoIPBIN names them, for errors.
const FIELD_NAMES: &[(&str, &str)] = &[
    ("tenant_id", "customer_id"),
    ("carrier_id", "provider_id"),
    ("prefix", "target"),
];

/// A route as a VoIPBIN client writes it (POST and PUT: PUT replaces these fields and keeps
/// the route's other settings).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoipbinRouteBody {
    /// The tenant, or `00000000-0000-0000-0000-000000000001` for the platform; a tenant's
    /// token may omit it. `""` is omitted: the `vn` client sends its unset `--customer-id`
    /// so.
    #[serde(default, deserialize_with = "super::empty_as_none")]
    pub customer_id: Option<Uuid>,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub detail: String,
    #[serde(default)]
    pub provider_id: Option<Uuid>,
    /// Lower is tried first.
    #[serde(default)]
    pub priority: i64,
    /// A destination prefix such as `+82`, or `all`.
    #[serde(default)]
    pub target: String,
}

impl VoipbinRouteBody {
    /// `base` with VoIPBIN's fields replaced by this body's.
    fn apply(self, mut base: RouteInput, tenant_id: Option<Uuid>) -> Result<RouteInput, ApiError> {
        let Some(provider_id) = self.provider_id else {
            return Err(ApiError::field("provider_id", "required"));
        };
        if self.target.trim().is_empty() {
            return Err(ApiError::field(
                "target",
                "required: a prefix such as +82, or all",
            ));
        }
        base.tenant_id = tenant_id;
        base.name = if self.name.trim().is_empty() {
            format!("route to {}", self.target)
        } else {
            self.name
        };
        base.detail = self.detail;
        base.carrier_id = provider_id;
        base.priority = self.priority;
        base.match_type = MatchType::Prefix;
        base.prefix = Some(self.target);
        base.regex = None;
        Ok(base)
    }
}

/// The owner named by a `customer_id`.
fn tenant_of(customer_id: Uuid) -> Option<Uuid> {
    (customer_id != PLATFORM_CUSTOMER).then_some(customer_id)
}

/// A route as VoIPBIN shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct VoipbinRouteView {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub name: String,
    pub detail: String,
    pub provider_id: Uuid,
    pub priority: i64,
    pub target: String,
    pub tm_create: String,
    pub tm_update: String,
    pub tm_delete: String,
}

impl VoipbinRouteView {
    fn of(r: Route, tm_delete: String) -> Self {
        let target = match &r.matcher {
            RouteMatch::Prefix(p) if p.as_str().is_empty() => "all".to_string(),
            RouteMatch::Prefix(p) => p.to_string(),
            RouteMatch::Regex(x) => x.to_string(),
        };
        VoipbinRouteView {
            id: r.id,
            customer_id: r.tenant_id.unwrap_or(PLATFORM_CUSTOMER),
            name: r.name.to_string(),
            detail: r.detail.to_string(),
            provider_id: r.carrier_id,
            priority: r.priority,
            target,
            tm_create: time(r.created_at),
            tm_update: updated(r.created_at, r.updated_at),
            tm_delete,
        }
    }
}

impl From<Route> for VoipbinRouteView {
    fn from(r: Route) -> Self {
        Self::of(r, super::NOT_YET.to_string())
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RouteListQuery {
    /// Only this customer's routes (`00000000-0000-0000-0000-000000000001`: the platform's).
    pub customer_id: Option<Uuid>,
    pub page_size: Option<u32>,
    pub page_token: Option<String>,
}

#[utoipa::path(get, path = "/routes", tag = "voipbin", params(RouteListQuery),
    description = "Prefix routes, newest first: a tenant's token lists its own.",
    responses((status = 200, body = ResultList<VoipbinRouteView>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("token" = []), ("accesskey" = [])))]
pub async fn list_routes(
    State(state): State<ApiState>,
    principal: Principal,
    ValidQuery(q): ValidQuery<RouteListQuery>,
) -> Result<Json<ResultList<VoipbinRouteView>>, ApiError> {
    principal.require(Scope::OutboundRoutesRead)?;
    let paging = Paging {
        page_size: q.page_size,
        page_token: q.page_token,
    };
    let scope = match q.customer_id {
        Some(PLATFORM_CUSTOMER) if principal.is_platform_admin() => TenantScope::Platform,
        Some(PLATFORM_CUSTOMER) => return Err(ApiError::NotFound),
        requested => match principal.acting_tenant(requested)? {
            None => TenantScope::All,
            Some(t) => TenantScope::Tenant(t),
        },
    };
    let filter = RouteFilter {
        scope,
        carrier_id: None,
        match_type: Some(MatchType::Prefix),
    };
    let found = state
        .store
        .list_routes_newest_first(&filter, &paging.request()?)
        .await?;
    Ok(Json(ResultList::of(
        found,
        |r| r.created_at,
        VoipbinRouteView::from,
    )))
}

#[utoipa::path(post, path = "/routes", tag = "voipbin", request_body = VoipbinRouteBody,
    responses((status = 200, body = VoipbinRouteView), (status = 403, body = ErrorBody), (status = 400, body = ErrorBody)),
    security(("bearer" = []), ("token" = []), ("accesskey" = [])))]
pub async fn create_route(
    State(state): State<ApiState>,
    principal: Principal,
    ValidJson(body): ValidJson<VoipbinRouteBody>,
) -> Result<Json<VoipbinRouteView>, ApiError> {
    let tenant_id = match body.customer_id {
        Some(PLATFORM_CUSTOMER) if !principal.is_platform_admin() => {
            return Err(ApiError::field(
                "customer_id",
                "only a platform admin writes the platform's routes",
            ));
        }
        Some(c) => tenant_of(c),
        None if principal.is_platform_admin() => {
            return Err(ApiError::field(
                "customer_id",
                "required: a tenant's id, or 00000000-0000-0000-0000-000000000001 for the platform",
            ));
        }
        None => principal.tenant_id,
    };
    // The `/api/v1` defaults, for every setting VoIPBIN has no field for.
    let created = match body.apply(RouteInput::defaults(), tenant_id) {
        Ok(body) => write::routes::create(&state, &principal, body).await,
        Err(e) => Err(e),
    };
    let route = created.map_err(|e| e.renamed(FIELD_NAMES))?;
    Ok(Json(route.into()))
}

#[utoipa::path(get, path = "/routes/{id}", tag = "voipbin",
    responses((status = 200, body = VoipbinRouteView), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("token" = []), ("accesskey" = [])))]
pub async fn get_route(
    State(state): State<ApiState>,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Result<Json<VoipbinRouteView>, ApiError> {
    principal.require(Scope::OutboundRoutesRead)?;
    Ok(Json(prefix_route(&state, &principal, id).await?.into()))
}

#[utoipa::path(put, path = "/routes/{id}", tag = "voipbin", request_body = VoipbinRouteBody,
    description = "Replaces the route's VoIPBIN fields; its other settings keep their values. `customer_id` cannot change.",
    responses((status = 200, body = VoipbinRouteView), (status = 404, body = ErrorBody), (status = 400, body = ErrorBody)),
    security(("bearer" = []), ("token" = []), ("accesskey" = [])))]
pub async fn update_route(
    State(state): State<ApiState>,
    principal: Principal,
    Path(id): Path<Uuid>,
    ValidJson(body): ValidJson<VoipbinRouteBody>,
) -> Result<Json<VoipbinRouteView>, ApiError> {
    let existing = prefix_route(&state, &principal, id).await?;
    let tenant_id = body.customer_id.map_or(existing.tenant_id, tenant_of);
    let route = write::routes::update(&state, &principal, id, |base| body.apply(base, tenant_id))
        .await
        .map_err(|e| e.renamed(FIELD_NAMES))?;
    Ok(Json(route.into()))
}

#[utoipa::path(delete, path = "/routes/{id}", tag = "voipbin",
    description = "Deletes the route and answers it with `tm_delete` set.",
    responses((status = 200, body = VoipbinRouteView), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("token" = []), ("accesskey" = [])))]
pub async fn delete_route(
    State(state): State<ApiState>,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Result<Json<VoipbinRouteView>, ApiError> {
    prefix_route(&state, &principal, id).await?;
    let route = write::routes::delete(&state, &principal, id).await?;
    Ok(Json(VoipbinRouteView::of(route, time(Utc::now()))))
}

/// The caller's prefix route `id`, else 404.
async fn prefix_route(
    state: &ApiState,
    principal: &Principal,
    id: Uuid,
) -> Result<Route, ApiError> {
    let route = write::routes::owned_route(state, principal, id).await?;
    match route.matcher {
        RouteMatch::Prefix(_) => Ok(route),
        RouteMatch::Regex(_) => Err(ApiError::NotFound),
    }
}
