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

use super::error::{ApiError, ErrorBody};
use super::extract::{ValidJson, ValidQuery};
use super::page::{ListResponse, page_request};
use super::write::{merge_patch, owner_for_write};
use crate::access::Principal;
use crate::api::ApiState;
use crate::model::{CarrierStatus, MatchType, NewRoute, Route, RouteInput, Scope};
use crate::store::{RouteFilter, TenantScope};

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_routes, create_route))
        .routes(routes!(get_route, update_route, delete_route))
}

/// An outbound route as the API writes it: the model's written form, whose schema keeps this
/// name.
pub type RouteBody = RouteInput;

/// A route as the API returns it: the written form, with what the store assigns.
#[derive(Debug, Serialize, ToSchema)]
pub struct RouteView {
    pub id: Uuid,
    #[serde(flatten)]
    pub fields: RouteInput,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Route> for RouteView {
    fn from(r: Route) -> Self {
        RouteView {
            id: r.id,
            fields: RouteInput::from(&r.fields),
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
    let new = NewRoute::parse(body, &state.settings.currency)?;
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
    let body = edit(RouteBody::from(&existing.fields))?;
    if body.tenant_id != existing.tenant_id {
        return Err(ApiError::field("tenant_id", "cannot be changed"));
    }
    let new = NewRoute::parse(body, &state.settings.currency)?;
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::fixtures;

    #[test]
    fn the_view_shows_the_fields_it_always_showed() {
        let view = serde_json::to_value(RouteView::from(fixtures::prefix_route(
            1,
            Some(2),
            "44",
            5,
            3,
        )))
        .unwrap();
        let at = "2026-11-22T14:00:00Z";
        assert_eq!(
            view,
            json!({
                "id": "00000000-0000-0000-0000-000000000001",
                "tenant_id": "00000000-0000-0000-0000-000000000002",
                "name": "route 1",
                "detail": "",
                "match_type": "prefix",
                "prefix": "44",
                "regex": null,
                "carrier_id": "00000000-0000-0000-0000-000000000003",
                "priority": 5,
                "strip_prefix": "",
                "add_prefix": "",
                "enabled": true,
                "schedule": null,
                "cost": null,
                "weight": null,
                "caller_prefix": null,
                "caller_regex": null,
                "created_at": at,
                "updated_at": at,
            })
        );
    }

    #[test]
    fn the_defaults_are_those_of_an_empty_post() {
        let posted: RouteBody =
            serde_json::from_value(json!({"name": "", "carrier_id": Uuid::nil()})).unwrap();
        assert_eq!(
            serde_json::to_value(posted).unwrap(),
            serde_json::to_value(RouteInput::defaults()).unwrap()
        );
    }
}
