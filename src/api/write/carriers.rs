//! Carrier writes as the caller may make them, shared by `/api/v1/carriers` and
//! `/v1.0/providers`: the write scope, the self-service gate, the owner, the model's rules and
//! the profile's TLS, the store, then the wait for the published snapshot.

use uuid::Uuid;

use super::owner_for_write;
use crate::access::{Principal, visible_carrier};
use crate::api::ApiState;
use crate::api::error::{ApiError, FieldError};
use crate::model::{Carrier, CarrierInput, CarrierStatus, NewCarrier, Scope, Transport};

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

/// Creates a carrier from `body` as the caller may (both APIs' POST): the write scope, the
/// self-service gate, the owner, every field's rules and the profile's TLS; then waits for the
/// published snapshot.
pub async fn create(
    state: &ApiState,
    principal: &Principal,
    mut body: CarrierInput,
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

/// Changes carrier `id` as the caller may (PATCH here, PUT of `/v1.0/providers`): `edit` turns
/// the body that would recreate the carrier into the new one, and the new body passes the
/// same rules as a POST. An archived carrier no longer changes; the owner never does.
pub async fn update(
    state: &ApiState,
    principal: &Principal,
    id: Uuid,
    edit: impl FnOnce(CarrierInput) -> Result<CarrierInput, ApiError>,
) -> Result<Carrier, ApiError> {
    principal.require(Scope::CarriersWrite)?;
    let existing = writable_carrier(state, principal, id).await?;
    principal.require_self_service(&state.store).await?;
    if existing.status == CarrierStatus::Archived {
        return Err(ApiError::Conflict(vec![FieldError {
            field: Some("status".into()),
            detail: "the carrier is archived and can no longer change".into(),
        }]));
    }
    let body = edit(CarrierInput::from(&existing.fields))?;
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

/// Archives carrier `id` as the caller may (both APIs' DELETE).
pub async fn archive(
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
