//! Outbound-route writes as the caller may make them, shared by `/api/v1/outbound-routes` and
//! `/v1.0/routes`: the write scope, the self-service gate, the owner, the model's rules and the
//! route's carrier, the store, then the wait for the published snapshot.

use uuid::Uuid;

use super::owner_for_write;
use crate::access::Principal;
use crate::api::ApiState;
use crate::api::error::ApiError;
use crate::model::{CarrierStatus, NewRoute, Route, RouteInput, Scope};

/// Creates a route from `body` as the caller may (both APIs' POST).
pub async fn create(
    state: &ApiState,
    principal: &Principal,
    mut body: RouteInput,
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

/// Changes route `id` as the caller may (PATCH here, PUT of `/v1.0/routes`): `edit` turns the
/// body that would recreate the route into the new one, which passes the rules of a POST. The
/// owner never changes.
pub async fn update(
    state: &ApiState,
    principal: &Principal,
    id: Uuid,
    edit: impl FnOnce(RouteInput) -> Result<RouteInput, ApiError>,
) -> Result<Route, ApiError> {
    principal.require(Scope::OutboundRoutesWrite)?;
    let existing = owned_route(state, principal, id).await?;
    principal.require_self_service(&state.store).await?;
    let body = edit(RouteInput::from(&existing.fields))?;
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

/// Deletes route `id` as the caller may (both APIs' DELETE), answering the route as it was.
pub async fn delete(state: &ApiState, principal: &Principal, id: Uuid) -> Result<Route, ApiError> {
    principal.require(Scope::OutboundRoutesWrite)?;
    let route = owned_route(state, principal, id).await?;
    principal.require_self_service(&state.store).await?;
    state.store.delete_route(id).await?;
    tracing::info!(token = %principal.token_id, route = %id, "outbound route deleted");
    state.after_write().await;
    Ok(route)
}

/// The route if it is the caller's (tenant admins never see platform or other tenants' routes).
pub async fn owned_route(
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
