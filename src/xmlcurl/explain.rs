//! Route explain: which carriers a destination will use, why, and the exact XML FreeSWITCH
//! would receive. It builds the fetch FreeSWITCH would send and runs it through the same
//! [`dialplan_answer`] as the xml_curl endpoint, so explain and a real call cannot disagree.
//! Pure: the API's route preview and `trunkline route explain` both call it.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::answer::{Outcome as AnswerOutcome, dialplan_answer};
use crate::causes::{self, Collision};
use crate::dialstring::bridge_data;
use crate::fsxml::dialplan::continue_on_fail_causes;
use crate::fsxml::request::DialplanFetch;
use crate::model::{Attestation, CallerNumber, Destination, FailoverMode};
use crate::publish::Published;
use crate::quality::health::{Health, HealthView};
use crate::routing::{
    CallerIdDecision, Considered, CostCeiling, Criterion, Decision, Excluded, ForcedOutcome, Leg,
    Outcome, RouteScope,
};

/// What to explain: the inputs of a dialplan fetch, unvalidated (they come from a query string
/// or the command line).
#[derive(Debug, Clone, Default)]
pub struct ExplainRequest {
    pub tenant_id: Option<Uuid>,
    pub destination: String,
    pub forced_carrier: Option<Uuid>,
    pub caller: Option<String>,
    /// The caller-ID name the call presents (`Caller-Caller-ID-Name`). Never refused: a name
    /// that is not a valid one shows how it is replaced.
    pub caller_name: Option<String>,
    pub attestation: Option<String>,
    /// The call's `Unique-ID`, which seeds the weighted draw; `None` = the fixed seed that a
    /// fetch without one gets too.
    pub call_id: Option<Uuid>,
    /// A per-call cost ceiling (`trunkline_max_cost`), as posted.
    pub max_cost: Option<String>,
    /// The Core-UUID of the node whose gateway states apply (`None`: no node's).
    pub core_uuid: Option<String>,
}

/// An input explain refuses, naming it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {detail}")]
pub struct ExplainError {
    pub field: &'static str,
    pub detail: String,
}

/// One leg as FreeSWITCH will try it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LegExplanation {
    /// 1-based position in the failover order.
    pub position: usize,
    #[schema(value_type = Object)]
    pub leg: Leg,
    /// The bridge data FreeSWITCH receives for this leg.
    pub dial_string: String,
    /// What put this leg at its configured position: `forced`, `only`, `priority`, `cost`,
    /// `weight`, `specificity` or `age`.
    #[schema(value_type = String)]
    pub decided_by: Criterion,
    /// Its place before health moved anything; differs from `position` when a sick carrier
    /// went later (`health` says why).
    pub configured_position: usize,
    /// `healthy`, or why the carrier moved: its gateway is DOWN on the node, its breaker is
    /// open, or half-open and this call is not its trial.
    pub health: Health,
    /// The cause names on which FreeSWITCH moves on to the next leg by itself after this one
    /// fails (`true` in the exact form, where every failure comes back to trunkline).
    pub continue_on_fail: Vec<&'static str>,
    /// The cause names that send the call back to trunkline for a decision on the real SIP
    /// code: causes a failover code shares with a code that must not fail over.
    pub transfer_on_fail: Vec<&'static str>,
    /// Those shared causes, with the codes on each side as compact ranges (`400, 481`,
    /// `506–512`): only the collisions that change this leg's decision (none on the last leg,
    /// none in the exact form).
    #[schema(value_type = Vec<Object>)]
    pub collisions: Vec<Collision>,
    /// One line: what is done about failures of this leg.
    pub failover_handling: &'static str,
}

/// The failover part of a leg's explanation: what FreeSWITCH is told, and why.
fn leg_failover(
    leg: &Leg,
    last: bool,
    mode: FailoverMode,
) -> (
    Vec<&'static str>,
    Vec<&'static str>,
    Vec<Collision>,
    &'static str,
) {
    let compiled = causes::compile(&leg.failover_codes);
    if last {
        return (
            continue_on_fail_causes(leg, &compiled),
            Vec::new(),
            Vec::new(),
            "last leg: its carrier's answer is passed to the caller",
        );
    }
    if mode == FailoverMode::Exact {
        return (
            vec!["true"],
            Vec::new(),
            Vec::new(),
            "exact form: every failure comes back to trunkline, which fails over only on this leg's failover codes",
        );
    }
    let handling = if compiled.collisions.is_empty() {
        "every failover code has a cause of its own: FreeSWITCH moves on by itself"
    } else {
        "shared causes come back to trunkline (transfer_on_fail), which fails over on the failover codes only"
    };
    (
        continue_on_fail_causes(leg, &compiled),
        compiled.ambiguous,
        compiled.collisions,
        handling,
    )
}

/// The whole explanation; route names and patterns are borrowed from the snapshot explained.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Explanation<'s> {
    pub destination: String,
    pub tenant_id: Option<Uuid>,
    /// The dialplan context the fetch is made in.
    pub context: String,
    pub failover_mode: FailoverMode,
    /// The configuration version the answer was computed from.
    pub snapshot_version: u64,
    /// `bridge`, `exact` or `refused`.
    pub outcome: AnswerOutcome,
    /// Why the call is refused, when it is.
    pub reason: Option<String>,
    pub legs: Vec<LegExplanation>,
    /// Which route set was used: the tenant's own routes or the platform defaults.
    #[schema(value_type = String)]
    pub scope: RouteScope,
    /// What happened to the forced carrier, when one was asked for.
    #[schema(value_type = Option<Object>)]
    pub forced: Option<ForcedOutcome>,
    /// Every matching route in the order tried (with its cost, weight and the criterion that
    /// placed it), and why each was used or skipped.
    #[schema(value_type = Vec<Object>)]
    pub considered: Vec<Considered<'s>>,
    /// Routes whose destination rule matched but whose caller rule or schedule did not.
    #[schema(value_type = Vec<Object>)]
    pub excluded: Vec<Excluded<'s>>,
    /// The cost ceiling applied, when there is one (or a posted one was ignored).
    #[schema(value_type = Option<Object>)]
    pub cost_ceiling: Option<CostCeiling>,
    /// The call id that seeded the weighted draw; null = the fixed seed.
    pub call_id: Option<Uuid>,
    /// The caller ID the legs send and the attestation level, and why: kept, replaced or
    /// refused under the tenant's policy; and the caller-ID name presented (`name`), which
    /// each leg's `caller_name` then picks from under its carrier's `name` policy.
    #[schema(value_type = Object)]
    pub caller_id: CallerIdDecision,
    /// The moment the schedules were checked at.
    pub at: DateTime<Utc>,
    /// The exact document FreeSWITCH receives for this call's first fetch.
    pub xml: String,
}

pub fn explain<'s>(
    published: &'s Published,
    health: &HealthView,
    request: &ExplainRequest,
    now: DateTime<Utc>,
) -> Result<Explanation<'s>, ExplainError> {
    let refuse = |field: &'static str, detail: String| ExplainError { field, detail };
    let destination = Destination::parse(&request.destination)
        .map_err(|e| refuse("destination", e.to_string()))?;
    if let Some(c) = &request.caller {
        CallerNumber::parse(c).map_err(|e| refuse("caller", e.to_string()))?;
    }
    if let Some(a) = &request.attestation {
        Attestation::parse(a).map_err(|e| refuse("attestation", e.to_string()))?;
    }
    if let Some(t) = request.tenant_id
        && published.snapshot.tenant(t).is_none()
    {
        return Err(refuse("tenant_id", "no such tenant".into()));
    }
    let fetch = synthetic_fetch(published, request, &destination);
    let answered = dialplan_answer(published, health, &fetch, now, true);
    let healths = answered.health;
    // dialplan_answer decides for every valid destination of a known tenant in a context
    // trunkline owns, which is all synthetic_fetch builds; anything else is refused by name.
    let Some(Decision {
        legs,
        scope,
        forced,
        considered,
        excluded,
        cost_ceiling,
        call_id,
        caller_id,
    }) = answered.decision
    else {
        return Err(refuse(
            "destination",
            answered
                .answer
                .reason
                .map_or_else(|| "not routable".into(), Cow::into_owned),
        ));
    };
    let count = legs.len();
    let legs = legs
        .into_iter()
        .zip(healths)
        .enumerate()
        .map(|(i, (leg, health))| {
            let (continue_on_fail, transfer_on_fail, collisions, failover_handling) =
                leg_failover(&leg, i + 1 == count, answered.mode);
            LegExplanation {
                position: i + 1,
                decided_by: decided_by(health.configured_position, forced.as_ref(), &considered),
                configured_position: health.configured_position,
                health: health.health,
                dial_string: bridge_data(&leg, i + 1),
                continue_on_fail,
                transfer_on_fail,
                collisions,
                failover_handling,
                leg,
            }
        })
        .collect();
    Ok(Explanation {
        destination: destination.to_string(),
        tenant_id: answered.tenant_id,
        context: fetch.context.unwrap_or_default(),
        failover_mode: answered.mode,
        snapshot_version: published.version(),
        outcome: answered.answer.outcome,
        reason: answered.answer.reason.map(Cow::into_owned),
        legs,
        scope,
        forced,
        considered,
        excluded,
        cost_ceiling,
        call_id,
        caller_id,
        at: now,
        xml: String::from_utf8_lossy(&answered.answer.xml).into_owned(),
    })
}

/// The dialplan fetch FreeSWITCH would send for `request` (the destination already checked):
/// what route explain feeds to [`dialplan_answer`] so that both give the same answer.
pub fn synthetic_fetch(
    published: &Published,
    request: &ExplainRequest,
    destination: &Destination,
) -> DialplanFetch {
    let context = request
        .tenant_id
        .and_then(|t| published.snapshot.tenant(t))
        .and_then(|t| t.context.clone())
        .unwrap_or_else(|| published.default_context.clone());
    DialplanFetch {
        context: Some(context.to_string()),
        destination: Some(destination.to_string()),
        caller_number: request.caller.clone(),
        caller_name: request.caller_name.clone(),
        call_uuid: request.call_id.map(|c| c.to_string()),
        tenant_id: request.tenant_id.map(|t| t.to_string()),
        forced_carrier: request.forced_carrier.map(|c| c.to_string()),
        attestation: request.attestation.clone(),
        max_cost: request.max_cost.clone(),
        core_uuid: request.core_uuid.clone(),
        ..DialplanFetch::default()
    }
}

/// The criterion behind the leg at `position`: the forced carrier's, or that of the route that
/// produced it.
fn decided_by(
    position: usize,
    forced: Option<&ForcedOutcome>,
    considered: &[Considered],
) -> Criterion {
    let produced = |outcome: &Outcome| *outcome == Outcome::Used { position };
    if forced.is_some_and(|f| produced(&f.outcome)) {
        return Criterion::Forced;
    }
    considered
        .iter()
        .find(|c| produced(&c.outcome))
        .map_or(Criterion::Only, |c| c.decided_by)
}
