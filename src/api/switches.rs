//! `/api/v1/switches`: the FreeSWITCH nodes trunkline keeps in step (platform admins only), with
//! their live connection state. `esl_password` is write-only: responses carry `has_password`.
//! Switches declared in the configuration file are read-only here (403).

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
use super::extract::ValidJson;
use super::write::merge_patch;
use crate::access::Principal;
use crate::api::ApiState;
use crate::esl::live::ConnectionState;
use crate::model::{DEFAULT_ESL_PORT, NewSwitch, Switch, SwitchName, normalise_profiles};
use crate::model::{Host, Password, ProfileName};

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_switches, create_switch))
        .routes(routes!(get_switch, update_switch, delete_switch))
}

/// A switch as the API writes it (POST, and PATCH merged over the stored switch).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SwitchBody {
    pub name: String,
    pub esl_host: String,
    /// Default 8021.
    #[serde(default)]
    pub esl_port: Option<u32>,
    /// Write-only.
    #[serde(default)]
    pub esl_password: Option<String>,
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// Managed sofia profiles; default `["external"]`.
    #[serde(default)]
    pub profiles: Vec<String>,
}

fn enabled() -> bool {
    true
}

impl SwitchBody {
    fn from_switch(s: &Switch) -> Self {
        SwitchBody {
            name: s.name.to_string(),
            esl_host: s.esl_host.to_string(),
            esl_port: Some(u32::from(s.esl_port)),
            esl_password: Some(s.esl_password.expose().to_string()),
            enabled: s.enabled,
            profiles: s.profiles.iter().map(ToString::to_string).collect(),
        }
    }

    fn parse(self) -> Result<NewSwitch, ApiError> {
        let mut e = FieldErrors::default();
        let name = e.parse("name", &self.name, SwitchName::parse);
        let esl_host = e.parse("esl_host", &self.esl_host, Host::parse);
        let esl_port = match self.esl_port {
            None => Some(DEFAULT_ESL_PORT),
            Some(p @ 1..=65535) => Some(p as u16),
            Some(_) => {
                e.add("esl_port", "must be between 1 and 65535");
                None
            }
        };
        let esl_password = match &self.esl_password {
            Some(p) => e.parse("esl_password", p, Password::parse),
            None => {
                e.add("esl_password", "required");
                None
            }
        };
        let profiles = e.parse_list("profiles", &self.profiles, ProfileName::parse);
        e.finish()?;
        let missing = || ApiError::Internal("parsed field missing without an error".into());
        Ok(NewSwitch {
            name: name.ok_or_else(missing)?,
            esl_host: esl_host.ok_or_else(missing)?,
            esl_port: esl_port.ok_or_else(missing)?,
            esl_password: esl_password.ok_or_else(missing)?,
            enabled: self.enabled,
            profiles: normalise_profiles(profiles.ok_or_else(missing)?),
        })
    }
}

/// A switch with its live state; never the password.
#[derive(Debug, Serialize, ToSchema)]
pub struct SwitchView {
    pub id: Uuid,
    pub name: String,
    pub esl_host: String,
    pub esl_port: u16,
    pub has_password: bool,
    pub enabled: bool,
    pub profiles: Vec<String>,
    /// Declared in the configuration file (read-only here).
    pub from_config: bool,
    pub connection: ConnectionState,
    /// Why the last connection attempt or pass failed.
    pub last_error: Option<String>,
    pub core_uuid: Option<String>,
    pub last_sync_at: Option<DateTime<Utc>>,
    /// The configuration version this node was last brought to, by whichever instance holds it.
    pub synced_version: Option<u64>,
    /// The trunkline instance holding (or last holding) the node's lease.
    pub lease_holder: Option<String>,
    /// Whether that is the instance answering.
    pub held_here: bool,
    pub pending_operations: usize,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

async fn view(state: &ApiState, s: Switch) -> Result<SwitchView, ApiError> {
    let live = state.esl.live().get(s.id).unwrap_or_default();
    let stored = state.store.switch_sync_state(s.id).await?;
    Ok(SwitchView {
        id: s.id,
        name: s.name.to_string(),
        esl_host: s.esl_host.to_string(),
        esl_port: s.esl_port,
        has_password: true,
        enabled: s.enabled,
        profiles: s.profiles.iter().map(ToString::to_string).collect(),
        from_config: s.from_config,
        connection: live.connection_of(&s),
        // A standby instance shows what the holder stored; the holder its own live state.
        last_error: live.last_error.or(stored.last_error),
        core_uuid: live.core_uuid.or(stored.core_uuid),
        last_sync_at: live.last_sync_at.or(stored.last_sync_at),
        synced_version: live.synced_version.or(stored.synced_version),
        held_here: stored.lease_holder.as_deref() == Some(state.esl.instance()),
        lease_holder: stored.lease_holder,
        pending_operations: live.pending_operations,
        created_at: s.created_at,
        updated_at: s.updated_at,
    })
}

/// A switch's connection as this instance sees it: `disabled` whatever the live state says
/// when the switch is.
/// Starts, restarts or stops supervisors after a switch write; a failure is retried by the timer.
async fn resync(state: &ApiState) {
    if let Err(e) = state.esl.sync().await {
        tracing::warn!(error = %e, "switch supervisors not updated; the timer retries");
    }
}

#[utoipa::path(get, path = "/switches", tag = "switches",
    responses((status = 200, body = Vec<SwitchView>), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_switches(
    State(state): State<ApiState>,
    principal: Principal,
) -> Result<Json<Vec<SwitchView>>, ApiError> {
    principal.require_platform_admin()?;
    let mut out = Vec::new();
    for s in state.store.list_switches().await? {
        out.push(view(&state, s).await?);
    }
    Ok(Json(out))
}

#[utoipa::path(post, path = "/switches", tag = "switches", request_body = SwitchBody,
    responses((status = 201, body = SwitchView), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_switch(
    State(state): State<ApiState>,
    principal: Principal,
    ValidJson(body): ValidJson<SwitchBody>,
) -> Result<(StatusCode, Json<SwitchView>), ApiError> {
    principal.require_platform_admin()?;
    let switch = state.store.create_switch(&body.parse()?, false).await?;
    tracing::info!(token = %principal.token_id, switch = %switch.name, "switch created");
    resync(&state).await;
    Ok((StatusCode::CREATED, Json(view(&state, switch).await?)))
}

#[utoipa::path(get, path = "/switches/{id}", tag = "switches",
    responses((status = 200, body = SwitchView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_switch(
    State(state): State<ApiState>,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Result<Json<SwitchView>, ApiError> {
    principal.require_platform_admin()?;
    let switch = state.store.get_switch(id).await?;
    Ok(Json(view(&state, switch).await?))
}

fn api_owned(s: &Switch) -> Result<(), ApiError> {
    if s.from_config {
        return Err(ApiError::Forbidden(
            "this switch is declared in the configuration file".into(),
        ));
    }
    Ok(())
}

#[utoipa::path(patch, path = "/switches/{id}", tag = "switches", request_body = Object,
    description = "JSON merge patch over the switch's writable fields.",
    responses((status = 200, body = SwitchView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update_switch(
    State(state): State<ApiState>,
    principal: Principal,
    Path(id): Path<Uuid>,
    ValidJson(patch): ValidJson<serde_json::Value>,
) -> Result<Json<SwitchView>, ApiError> {
    principal.require_platform_admin()?;
    let existing = state.store.get_switch(id).await?;
    api_owned(&existing)?;
    let body: SwitchBody = merge_patch(&SwitchBody::from_switch(&existing), patch)?;
    let switch = state.store.update_switch(id, &body.parse()?, false).await?;
    tracing::info!(token = %principal.token_id, switch = %switch.name, "switch updated");
    resync(&state).await;
    Ok(Json(view(&state, switch).await?))
}

#[utoipa::path(delete, path = "/switches/{id}", tag = "switches",
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_switch(
    State(state): State<ApiState>,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    principal.require_platform_admin()?;
    api_owned(&state.store.get_switch(id).await?)?;
    state.store.delete_switch(id).await?;
    tracing::info!(token = %principal.token_id, switch = %id, "switch deleted");
    resync(&state).await;
    Ok(StatusCode::NO_CONTENT)
}
