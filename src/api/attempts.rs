//! `/api/v1/attempts` and `/api/v1/calls/{call_id}/attempts`: what happened to each outbound leg
//! trunkline routed, as the nodes' hangup events reported it (`quality::recorder` stores them).
//! Read only. Scoped like the other lists: a tenant admin sees its own tenant's attempts, never
//! the platform's (tenant-less) ones nor another tenant's; a platform admin sees all. Needs the
//! `attempts:read` scope.
//!
//! Query values are checked here, before any query runs: a bad one is a 400 naming the
//! parameter, as the query-string extractor answers for a value of the wrong type.

use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::error::{ApiError, ErrorBody, FieldError};
use super::extract::ValidQuery;
use super::page::{ListResponse, page_request};
use crate::access::Principal;
use crate::api::ApiState;
use crate::model::{HangupBy, Scope, StatusClass};
use crate::store::{self, AttemptFilter, TenantScope};

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_attempts))
        .routes(routes!(call_attempts))
}

/// One leg's attempt as the API returns it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptView {
    pub id: Uuid,
    /// The call: the channel whose dialplan fetch trunkline answered.
    pub call_id: Uuid,
    /// The outbound leg's own Unique-ID.
    pub leg_id: Uuid,
    /// The node; null when the node is no longer configured.
    pub switch_id: Option<Uuid>,
    /// Null for a platform (tenant-less) call.
    pub tenant_id: Option<Uuid>,
    /// Null for a forced carrier.
    pub route_id: Option<Uuid>,
    pub carrier_id: Uuid,
    pub gateway: String,
    pub number: String,
    /// The leg's place in the call's order, 1-based.
    pub attempt: u32,
    /// The carrier's final SIP status; null when it sent none.
    pub sip_status: Option<u16>,
    /// FreeSWITCH's hangup cause, e.g. `NORMAL_CLEARING`.
    pub cause: String,
    pub q850: Option<u16>,
    pub started_at: DateTime<Utc>,
    pub progress_at: Option<DateTime<Utc>>,
    pub answered_at: Option<DateTime<Utc>>,
    pub ended_at: DateTime<Utc>,
    pub billable_seconds: u32,
    /// Post-dial delay: start to the first 180/183, else to the answer; null when neither came.
    pub pdd_ms: Option<i64>,
    pub hangup_by: Option<HangupBy>,
    /// The call went on to a later attempt after this one.
    pub failed_over: bool,
}

impl From<store::AttemptView> for AttemptView {
    fn from(v: store::AttemptView) -> Self {
        let pdd_ms = v.attempt.pdd().map(|d| d.num_milliseconds());
        let a = v.attempt;
        AttemptView {
            id: a.id,
            call_id: a.call_id,
            leg_id: a.leg_id,
            switch_id: a.switch_id,
            tenant_id: a.tenant_id,
            route_id: a.route_id,
            carrier_id: a.carrier_id,
            gateway: a.gateway,
            number: a.number,
            attempt: a.attempt,
            sip_status: a.sip_status,
            cause: a.cause,
            q850: a.q850,
            started_at: a.started_at,
            progress_at: a.progress_at,
            answered_at: a.answered_at,
            ended_at: a.ended_at,
            billable_seconds: a.billable_seconds,
            pdd_ms,
            hangup_by: a.hangup_by,
            failed_over: v.failed_over,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AttemptListQuery {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
    /// Platform admins: only this tenant's attempts.
    pub tenant_id: Option<Uuid>,
    pub carrier_id: Option<Uuid>,
    pub route_id: Option<Uuid>,
    /// The dialled number starts with this: digits, `*`, `#`, optionally after a `+`.
    pub destination_prefix: Option<String>,
    /// `2xx`, `3xx`, `4xx`, `5xx`, `6xx`, or `none` (no final SIP answer).
    pub status: Option<String>,
    /// Started at or after, RFC 3339.
    pub from: Option<String>,
    /// Started before, RFC 3339.
    pub to: Option<String>,
    pub call_id: Option<Uuid>,
}

/// A 400 about one query parameter.
fn bad(field: &str, detail: &str) -> ApiError {
    ApiError::BadRequest(FieldError {
        field: Some(field.to_string()),
        detail: detail.to_string(),
    })
}

/// `^\+?[0-9*#]{1,32}$`: what a dialled number is made of (the recorder stores the node's
/// report as is, but a prefix to search by is never anything else).
fn destination_prefix(s: &str) -> Result<String, ApiError> {
    let digits = s.strip_prefix('+').unwrap_or(s);
    if (1..=32).contains(&digits.len())
        && digits
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'*' || b == b'#')
    {
        Ok(s.to_string())
    } else {
        Err(bad(
            "destination_prefix",
            "1 to 32 digits, `*` or `#`, optionally after a leading `+`",
        ))
    }
}

fn instant(field: &str, s: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            bad(
                field,
                "must be an RFC 3339 time, e.g. 2025-01-31T23:59:59Z (a `+` offset written %2B)",
            )
        })
}

impl AttemptListQuery {
    fn filter(self, scope: TenantScope) -> Result<AttemptFilter, ApiError> {
        let status = self
            .status
            .as_deref()
            .map(|s| {
                StatusClass::parse(s)
                    .ok_or_else(|| bad("status", "must be one of: 2xx 3xx 4xx 5xx 6xx none"))
            })
            .transpose()?;
        let started_from = self
            .from
            .as_deref()
            .map(|s| instant("from", s))
            .transpose()?;
        let started_to = self.to.as_deref().map(|s| instant("to", s)).transpose()?;
        if let (Some(from), Some(to)) = (started_from, started_to)
            && from > to
        {
            return Err(bad("from", "must not be after `to`"));
        }
        Ok(AttemptFilter {
            scope,
            carrier_id: self.carrier_id,
            route_id: self.route_id,
            destination_prefix: self
                .destination_prefix
                .as_deref()
                .map(destination_prefix)
                .transpose()?,
            status,
            started_from,
            started_to,
            call_id: self.call_id,
        })
    }
}

/// The attempts `principal` may read, narrowed to `requested` (a platform admin's `tenant_id`).
fn scope_of(principal: &Principal, requested: Option<Uuid>) -> Result<TenantScope, ApiError> {
    principal.require(Scope::AttemptsRead)?;
    Ok(match principal.acting_tenant(requested)? {
        None => TenantScope::All,
        Some(t) => TenantScope::Tenant(t),
    })
}

#[utoipa::path(get, path = "/attempts", tag = "attempts", params(AttemptListQuery),
    description = "Attempt records, oldest first (keyset pages on the arrival-ordered id). `from` is inclusive, `to` exclusive.",
    responses((status = 200, body = ListResponse<AttemptView>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_attempts(
    State(state): State<ApiState>,
    principal: Principal,
    ValidQuery(q): ValidQuery<AttemptListQuery>,
) -> Result<Json<ListResponse<AttemptView>>, ApiError> {
    let scope = scope_of(&principal, q.tenant_id)?;
    let page = page_request(q.limit, q.cursor.as_deref())?;
    let filter = q.filter(scope)?;
    let found = state.store.list_attempts(&filter, &page).await?;
    Ok(Json(ListResponse::from_page(found, AttemptView::from)))
}

/// Every attempt of one call, in the call's order.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallAttempts {
    pub call_id: Uuid,
    pub attempts: Vec<AttemptView>,
}

#[utoipa::path(get, path = "/calls/{call_id}/attempts", tag = "attempts",
    params(("call_id" = Uuid, Path, description = "The call's Unique-ID")),
    responses((status = 200, body = CallAttempts), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn call_attempts(
    State(state): State<ApiState>,
    principal: Principal,
    Path(call_id): Path<String>,
) -> Result<Json<CallAttempts>, ApiError> {
    let scope = scope_of(&principal, None)?;
    let call_id = Uuid::try_parse(&call_id).map_err(|_| bad("call_id", "must be a UUID"))?;
    let attempts = state.store.call_attempts(scope, call_id).await?;
    // Another tenant's call answers exactly as a call that never happened.
    if attempts.is_empty() {
        return Err(ApiError::NotFound);
    }
    Ok(Json(CallAttempts {
        call_id,
        attempts: attempts.into_iter().map(AttemptView::from).collect(),
    }))
}
