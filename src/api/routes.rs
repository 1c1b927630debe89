//! `/api/v1/outbound-routes`: destination prefix or regex → carrier, tried in priority order.
//! A tenant's routes may use its own carriers or platform carriers, never another tenant's;
//! platform default routes (`tenant_id` null) use platform carriers only.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::criteria::{CostBody, parse_cost, parse_schedule};
use super::error::{ApiError, ErrorBody, FieldErrors};
use super::extract::{ValidJson, ValidQuery};
use super::page::{ListResponse, page_request};
use super::write::{merge_patch, owner_for_write};
use crate::access::Principal;
use crate::api::ApiState;
use crate::model::{
    CallerPrefix, CarrierStatus, Currency, Detail, Digits, DisplayName, MatchType, NewRoute, Route,
    RouteCriteria, RouteMatch, RoutePrefix, RouteRegex, Schedule, ScheduleSpec, Scope, Weight,
};
use crate::store::{RouteFilter, TenantScope};

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_routes, create_route))
        .routes(routes!(get_route, update_route, delete_route))
}

const PRIORITY_RANGE: std::ops::RangeInclusive<i64> = -1_000_000..=1_000_000;

/// An outbound route as the API writes it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteBody {
    /// Owner; null = a platform default route (platform admins only).
    #[serde(default)]
    pub tenant_id: Option<Uuid>,
    pub name: String,
    /// Free notes, up to 1,000 characters.
    #[serde(default)]
    pub detail: String,
    #[serde(default = "default_match_type")]
    pub match_type: MatchType,
    /// For `prefix` routes: digits with an optional leading `+`; `""` or `"all"` match everything.
    #[serde(default)]
    pub prefix: Option<String>,
    /// For `regex` routes: a digits-only pattern matched against the destination without `+`.
    #[serde(default)]
    pub regex: Option<String>,
    pub carrier_id: Uuid,
    /// Lower is tried first (default 100).
    #[serde(default = "default_priority")]
    pub priority: i64,
    #[serde(default)]
    pub strip_prefix: String,
    #[serde(default)]
    pub add_prefix: String,
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// When the route may be used (local time of an IANA zone); null = always.
    #[serde(default)]
    pub schedule: Option<ScheduleSpec>,
    /// Per-minute cost; null = the carrier's `cost`.
    #[serde(default)]
    pub cost: Option<CostBody>,
    /// Share in a weighted split among routes of equal priority and cost, 0 to 10000 (0 = last
    /// resort); null counts as 1 once a route of the group has a weight.
    #[serde(default)]
    pub weight: Option<i64>,
    /// Only calls whose caller ID number starts with these digits (`+` ignored).
    #[serde(default)]
    pub caller_prefix: Option<String>,
    /// Only calls whose caller ID number (without `+`) matches this digits-only pattern.
    #[serde(default)]
    pub caller_regex: Option<String>,
}

fn default_match_type() -> MatchType {
    MatchType::Prefix
}
fn default_priority() -> i64 {
    100
}
fn default_enabled() -> bool {
    true
}

impl RouteBody {
    fn from_route(r: &Route) -> Self {
        let (prefix, regex) = match &r.matcher {
            RouteMatch::Prefix(p) => (Some(p.to_string()), None),
            RouteMatch::Regex(x) => (None, Some(x.to_string())),
        };
        RouteBody {
            tenant_id: r.tenant_id,
            name: r.name.to_string(),
            detail: r.detail.to_string(),
            match_type: r.matcher.match_type(),
            prefix,
            regex,
            carrier_id: r.carrier_id,
            priority: r.priority,
            strip_prefix: r.strip_prefix.to_string(),
            add_prefix: r.add_prefix.to_string(),
            enabled: r.enabled,
            schedule: r.criteria.schedule.as_ref().map(Schedule::spec),
            cost: r.criteria.cost.as_ref().map(CostBody::from_cost),
            weight: r.criteria.weight.map(|w| i64::from(w.get())),
            caller_prefix: r
                .criteria
                .caller_prefix
                .as_ref()
                .map(|p| p.as_str().to_string()),
            caller_regex: r.criteria.caller_regex.as_ref().map(ToString::to_string),
        }
    }

    fn parse(self, currency: &Currency) -> Result<NewRoute, ApiError> {
        let mut e = FieldErrors::default();
        let name = e.parse("name", &self.name, DisplayName::parse);
        let detail = e.parse("detail", &self.detail, Detail::parse);
        let matcher = match (self.match_type, &self.prefix, &self.regex) {
            (MatchType::Prefix, Some(p), None) => e
                .parse("prefix", p, RoutePrefix::parse)
                .map(RouteMatch::Prefix),
            (MatchType::Prefix, None, _) => {
                e.add(
                    "prefix",
                    "required for a prefix route (\"all\" matches every destination)",
                );
                None
            }
            (MatchType::Prefix, Some(_), Some(_)) => {
                e.add("regex", "must be null for a prefix route");
                None
            }
            (MatchType::Regex, None, Some(x)) => e
                .parse("regex", x, RouteRegex::parse)
                .map(RouteMatch::Regex),
            (MatchType::Regex, _, None) => {
                e.add("regex", "required for a regex route");
                None
            }
            (MatchType::Regex, Some(_), Some(_)) => {
                e.add("prefix", "must be null for a regex route");
                None
            }
        };
        if !PRIORITY_RANGE.contains(&self.priority) {
            e.add("priority", "must be between -1000000 and 1000000");
        }
        let strip_prefix = e.parse("strip_prefix", &self.strip_prefix, Digits::parse);
        let add_prefix = e.parse("add_prefix", &self.add_prefix, Digits::parse);
        let schedule = parse_schedule(&mut e, "schedule", self.schedule.as_ref());
        let cost = parse_cost(&mut e, "cost", self.cost.as_ref(), currency);
        let weight = match self.weight {
            None => Some(None),
            Some(w) => e
                .parse("weight", &w.to_string(), |_| Weight::new(w))
                .map(Some),
        };
        let caller_prefix = e.parse_opt(
            "caller_prefix",
            self.caller_prefix.as_deref(),
            CallerPrefix::parse,
        );
        let caller_regex = e.parse_opt(
            "caller_regex",
            self.caller_regex.as_deref(),
            RouteRegex::parse,
        );
        e.finish()?;
        let missing = || ApiError::Internal("parsed field missing without an error".into());
        Ok(NewRoute {
            tenant_id: self.tenant_id,
            name: name.ok_or_else(missing)?,
            matcher: matcher.ok_or_else(missing)?,
            carrier_id: self.carrier_id,
            priority: self.priority,
            strip_prefix: strip_prefix.ok_or_else(missing)?,
            add_prefix: add_prefix.ok_or_else(missing)?,
            enabled: self.enabled,
            criteria: RouteCriteria {
                schedule: schedule.ok_or_else(missing)?,
                cost: cost.ok_or_else(missing)?,
                weight: weight.ok_or_else(missing)?,
                caller_prefix: caller_prefix.ok_or_else(missing)?,
                caller_regex: caller_regex.ok_or_else(missing)?,
            },
            detail: detail.ok_or_else(missing)?,
        })
    }
}

/// A route as the API returns it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RouteView {
    pub id: Uuid,
    pub tenant_id: Option<Uuid>,
    pub name: String,
    pub detail: String,
    pub match_type: MatchType,
    /// The digits matched (`""` matches every destination); null for regex routes.
    pub prefix: Option<String>,
    pub regex: Option<String>,
    pub carrier_id: Uuid,
    pub priority: i64,
    pub strip_prefix: String,
    pub add_prefix: String,
    pub enabled: bool,
    pub schedule: Option<ScheduleSpec>,
    pub cost: Option<CostBody>,
    pub weight: Option<i64>,
    pub caller_prefix: Option<String>,
    pub caller_regex: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Route> for RouteView {
    fn from(r: Route) -> Self {
        let body = RouteBody::from_route(&r);
        RouteView {
            id: r.id,
            tenant_id: r.tenant_id,
            name: body.name,
            detail: body.detail,
            match_type: body.match_type,
            prefix: body.prefix,
            regex: body.regex,
            carrier_id: r.carrier_id,
            priority: r.priority,
            strip_prefix: body.strip_prefix,
            add_prefix: body.add_prefix,
            enabled: r.enabled,
            schedule: body.schedule,
            cost: body.cost,
            weight: body.weight,
            caller_prefix: body.caller_prefix,
            caller_regex: body.caller_regex,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RouteListQuery {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
    /// Platform admins: only this tenant's routes.
    pub tenant_id: Option<Uuid>,
    pub carrier_id: Option<Uuid>,
    pub match_type: Option<MatchType>,
}

#[utoipa::path(get, path = "/outbound-routes", tag = "outbound-routes", params(RouteListQuery),
    responses((status = 200, body = ListResponse<RouteView>), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_routes(
    State(state): State<ApiState>,
    principal: Principal,
    ValidQuery(q): ValidQuery<RouteListQuery>,
) -> Result<Json<ListResponse<RouteView>>, ApiError> {
    principal.require(Scope::OutboundRoutesRead)?;
    let page = page_request(q.limit, q.cursor.as_deref())?;
    let scope = match principal.acting_tenant(q.tenant_id)? {
        None => TenantScope::All,
        Some(t) => TenantScope::Tenant(t),
    };
    let filter = RouteFilter {
        scope,
        carrier_id: q.carrier_id,
        match_type: q.match_type,
    };
    let found = state.store.list_routes(&filter, &page).await?;
    Ok(Json(ListResponse::from_page(found, RouteView::from)))
}

#[utoipa::path(post, path = "/outbound-routes", tag = "outbound-routes", request_body = RouteBody,
    responses((status = 201, body = RouteView), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_route(
    State(state): State<ApiState>,
    principal: Principal,
    ValidJson(body): ValidJson<RouteBody>,
) -> Result<(StatusCode, Json<RouteView>), ApiError> {
    let route = create(&state, &principal, body).await?;
    Ok((StatusCode::CREATED, Json(route.into())))
}

/// Creates a route from `body` as the caller may (both APIs' POST).
pub(super) async fn create(
    state: &ApiState,
    principal: &Principal,
    mut body: RouteBody,
) -> Result<Route, ApiError> {
    principal.require(Scope::OutboundRoutesWrite)?;
    principal.require_self_service(&state.store).await?;
    body.tenant_id = owner_for_write(state, principal, body.tenant_id).await?;
    let new = body.parse(&state.settings.currency)?;
    check_carrier(state, &new).await?;
    let route = state.store.create_route(&new).await?;
    tracing::info!(token = %principal.token_id, route = %route.id, "outbound route created");
    state.after_write().await;
    Ok(route)
}

#[utoipa::path(get, path = "/outbound-routes/{id}", tag = "outbound-routes",
    responses((status = 200, body = RouteView), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_route(
    State(state): State<ApiState>,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Result<Json<RouteView>, ApiError> {
    principal.require(Scope::OutboundRoutesRead)?;
    Ok(Json(owned_route(&state, &principal, id).await?.into()))
}

#[utoipa::path(patch, path = "/outbound-routes/{id}", tag = "outbound-routes", request_body = Object,
    description = "JSON merge patch (RFC 7396) over the route's writable fields.",
    responses((status = 200, body = RouteView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update_route(
    State(state): State<ApiState>,
    principal: Principal,
    Path(id): Path<Uuid>,
    ValidJson(patch): ValidJson<serde_json::Value>,
) -> Result<Json<RouteView>, ApiError> {
    let route = update(&state, &principal, id, |existing| {
        merge_patch(&existing, patch)
    })
    .await?;
    Ok(Json(route.into()))
}

/// Changes route `id` as the caller may (PATCH here, PUT of `/v1.0/routes`): `edit` turns the
/// body that would recreate the route into the new one, which passes the rules of a POST. The
/// owner never changes.
pub(super) async fn update(
    state: &ApiState,
    principal: &Principal,
    id: Uuid,
    edit: impl FnOnce(RouteBody) -> Result<RouteBody, ApiError>,
) -> Result<Route, ApiError> {
    principal.require(Scope::OutboundRoutesWrite)?;
    let existing = owned_route(state, principal, id).await?;
    principal.require_self_service(&state.store).await?;
    let body = edit(RouteBody::from_route(&existing))?;
    if body.tenant_id != existing.tenant_id {
        return Err(ApiError::field("tenant_id", "cannot be changed"));
    }
    let new = body.parse(&state.settings.currency)?;
    check_carrier(state, &new).await?;
    let route = state.store.update_route(id, &new).await?;
    tracing::info!(token = %principal.token_id, route = %route.id, "outbound route updated");
    state.after_write().await;
    Ok(route)
}

#[utoipa::path(delete, path = "/outbound-routes/{id}", tag = "outbound-routes",
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_route(
    State(state): State<ApiState>,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    delete(&state, &principal, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes route `id` as the caller may (both APIs' DELETE), answering the route as it was.
pub(super) async fn delete(
    state: &ApiState,
    principal: &Principal,
    id: Uuid,
) -> Result<Route, ApiError> {
    principal.require(Scope::OutboundRoutesWrite)?;
    let route = owned_route(state, principal, id).await?;
    principal.require_self_service(&state.store).await?;
    state.store.delete_route(id).await?;
    tracing::info!(token = %principal.token_id, route = %id, "outbound route deleted");
    state.after_write().await;
    Ok(route)
}

/// The route if it is the caller's (tenant admins never see platform or other tenants' routes).
pub(super) async fn owned_route(
    state: &ApiState,
    principal: &Principal,
    id: Uuid,
) -> Result<Route, ApiError> {
    let route = state.store.get_route(id).await?.ok_or(ApiError::NotFound)?;
    if principal.can_read(route.tenant_id, false) {
        Ok(route)
    } else {
        Err(ApiError::NotFound)
    }
}

/// A route's carrier must be visible to the route's owner (its own or a platform carrier) and,
/// for an enabled route, active: the same rule that refuses disabling a carrier in use.
async fn check_carrier(state: &ApiState, route: &NewRoute) -> Result<(), ApiError> {
    let carrier = state.store.get_carrier(route.carrier_id).await?;
    let Some(carrier) = carrier.filter(|c| c.tenant_id.is_none() || c.tenant_id == route.tenant_id)
    else {
        return Err(ApiError::field("carrier_id", "no such carrier"));
    };
    if carrier.status == CarrierStatus::Archived {
        return Err(ApiError::field("carrier_id", "the carrier is archived"));
    }
    if route.enabled && carrier.status != CarrierStatus::Active {
        return Err(ApiError::field(
            "carrier_id",
            "an enabled route needs an active carrier",
        ));
    }
    Ok(())
}
