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
use super::write::{self, merge_patch};
use crate::access::Principal;
use crate::api::ApiState;
use crate::model::{MatchType, Route, RouteInput, Scope};
use crate::store::{RouteFilter, TenantScope};

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_routes, create_route))
        .routes(routes!(get_route, update_route, delete_route))
}

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

#[utoipa::path(post, path = "/outbound-routes", tag = "outbound-routes", request_body = RouteInput,
    responses((status = 201, body = RouteView), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_route(
    State(state): State<ApiState>,
    principal: Principal,
    ValidJson(body): ValidJson<RouteInput>,
) -> Result<(StatusCode, Json<RouteView>), ApiError> {
    let route = write::routes::create(&state, &principal, body).await?;
    Ok((StatusCode::CREATED, Json(route.into())))
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
    Ok(Json(
        write::routes::owned_route(&state, &principal, id)
            .await?
            .into(),
    ))
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
    let route = write::routes::update(&state, &principal, id, |existing| {
        merge_patch(&existing, patch)
    })
    .await?;
    Ok(Json(route.into()))
}

#[utoipa::path(delete, path = "/outbound-routes/{id}", tag = "outbound-routes",
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_route(
    State(state): State<ApiState>,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    write::routes::delete(&state, &principal, id).await?;
    Ok(StatusCode::NO_CONTENT)
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
        let posted: RouteInput =
            serde_json::from_value(json!({"name": "", "carrier_id": Uuid::nil()})).unwrap();
        assert_eq!(
            serde_json::to_value(posted).unwrap(),
            serde_json::to_value(RouteInput::defaults()).unwrap()
        );
    }
}
