//! Routing: the immutable in-memory snapshot of carriers and routes, its indexes, and
//! `resolve`, which turns (tenant, destination, forced carrier, caller, time) into the ordered
//! legs to try plus an explanation of why. Pure: no I/O. The same `resolve` serves the xml_curl
//! dialplan fetch, the route-preview API and `trunkline route explain`, so the explanation is
//! exactly what FreeSWITCH gets.
//!
//! - [`snapshot`]: the data and its indexes, built once per committed change.
//! - [`resolve`]: the routing rules of DESIGN.md §3, one call per dialplan fetch.
//! - [`order`]: the try order of the matching routes (priority, cost, weighted draw, rank) and
//!   which criterion decided each place.
//! - [`caller_id`]: the caller ID the legs send under the tenant's policy, the attestation
//!   level, and each carrier's format of the number.

mod caller_id;
mod index;
mod order;
mod resolve;
mod snapshot;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

pub use caller_id::{
    AttestationSource, CallerIdDecision, CallerIdOutcome, CallerIdReason, CallerNameDecision,
    PresentedName,
};
pub use snapshot::{RouteText, Snapshot};

/// The snapshot's hash maps (and its index's). Keys are UUIDs and prefixes, hashed on every
/// call: foldhash is several times faster than the default SipHash on them, and still seeded
/// per process.
type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

use crate::model::{
    Attestation, CallerName, CallerNumber, Currency, Destination, DialNumber, FailoverCodes,
    GatewayName, HeaderName, HeaderValue, Invalid, MatchType, Rate, Weight,
};

/// The platform-wide settings resolve applies.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutingSettings {
    /// Failover codes of carriers that have none of their own.
    pub default_failover_codes: FailoverCodes,
    /// At most this many legs per call (carriers tried in one call).
    pub max_legs: usize,
    /// The platform currency. Costs and ceilings in any other currency are not comparable and
    /// count as unknown (the API refuses them; this covers a changed setting).
    pub currency: Currency,
}

impl Default for RoutingSettings {
    fn default() -> Self {
        RoutingSettings {
            default_failover_codes: FailoverCodes::platform_default(),
            max_legs: 10,
            currency: Currency::usd(),
        }
    }
}

/// One carrier attempt, ready for the dial-string builder: every field is already validated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Leg {
    pub carrier_id: Uuid,
    pub gateway_name: GatewayName,
    /// The number after route and carrier manipulation.
    pub number: DialNumber,
    /// SIP headers for this leg, in order: the carrier's `tech_headers`, then the attestation
    /// header when the caller asked for a level and the carrier names a header for it.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// `leg_progress_timeout` for this leg (seconds), from the carrier.
    pub progress_timeout_seconds: Option<u32>,
    /// The SIP codes on which to move past this leg (the carrier's, else the platform default).
    pub failover_codes: FailoverCodes,
    /// The route that produced this leg; `None` for a forced carrier.
    pub route_id: Option<Uuid>,
    /// The call's tenant (`None` = platform scope), tagged on the leg for its attempt record.
    pub tenant_id: Option<Uuid>,
    /// The caller ID this leg sends (`origination_caller_id_number`), in the carrier's format;
    /// `None`: the caller's own, passed on by FreeSWITCH unchanged.
    pub caller_id: Option<CallerNumber>,
    /// The caller-ID name this leg sends (`origination_caller_id_name`), under the carrier's
    /// `name` policy; `None`: no display name (`_undef_`). Always set on the leg, never left
    /// to FreeSWITCH, which would pass the caller's own as it holds it.
    pub caller_name: Option<CallerName>,
    /// P-Asserted-Identity on this leg (FreeSWITCH `sip_cid_type=pid`), and with it `Privacy:
    /// id` when `privacy`, else `Privacy: none`.
    pub asserted_identity: bool,
    pub privacy: bool,
}

impl Leg {
    /// A leg of `gateway` dialling `number` with nothing else set: what the pure modules'
    /// tests build on.
    #[cfg(test)]
    pub(crate) fn plain(carrier_id: Uuid, gateway: &str, number: &str) -> Leg {
        Leg {
            carrier_id,
            gateway_name: GatewayName::parse(gateway).unwrap(),
            number: DialNumber::parse(number).unwrap(),
            headers: Vec::new(),
            progress_timeout_seconds: None,
            failover_codes: FailoverCodes::platform_default(),
            route_id: None,
            tenant_id: None,
            caller_id: None,
            caller_name: None,
            asserted_identity: false,
            privacy: false,
        }
    }
}

/// The inputs of one routing decision, all validated.
#[derive(Debug, Clone)]
pub struct RouteRequest<'a> {
    /// The tenant whose call this is; `None` = platform scope (platform default routes only).
    pub tenant_id: Option<Uuid>,
    pub destination: &'a Destination,
    /// A carrier the originator asked for (`trunkline_carrier_id`); tried first when usable.
    pub forced_carrier: Option<Uuid>,
    pub caller: Option<&'a CallerNumber>,
    /// The call presents no number but `anonymous`: a caller ID withheld on purpose, which
    /// FreeSWITCH passes on as it is where the tenant's policy allows any caller ID.
    pub caller_withheld: bool,
    /// The caller-ID name the call presented (`Caller-Caller-ID-Name`).
    pub caller_name: PresentedName,
    /// The STIR/SHAKEN level the call asked for (`trunkline_attestation`); without one the
    /// level is derived from the caller ID (`caller_id`).
    pub attestation: Option<Attestation>,
    /// The moment the schedules are checked at (routing never reads a clock).
    pub now: DateTime<Utc>,
    /// The call's `Unique-ID`: it seeds the weighted draw, so every fetch of one call (the exact
    /// failover form fetches once per leg) sees the same order. `None` = a fixed seed.
    pub call_id: Option<Uuid>,
    /// The per-call ceiling as posted (`trunkline_max_cost`, platform currency): a refused value
    /// is ignored, and the decision says why.
    pub max_cost: Option<Result<Rate, Invalid>>,
}

/// Which route set supplied the candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteScope {
    /// The tenant's own routes (at least one matched).
    Tenant,
    /// The platform default routes: platform-scope calls, and tenants with no matching route.
    Platform,
}

/// Why a route's carrier (or the forced carrier) gave no leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// No such carrier, or one the tenant may not use (its existence is not revealed).
    UnknownCarrier,
    CarrierDisabled,
    CarrierArchived,
    /// The carrier only takes inbound calls.
    InboundOnly,
    /// `iax2` / `webrtc`: stored, but FreeSWITCH has no sofia gateway for it.
    NotSip,
    /// An earlier leg already uses this carrier (one leg per carrier).
    DuplicateCarrier,
    /// `max_legs` legs are already chosen.
    MaxLegsReached,
    /// Strip/add left a number FreeSWITCH must not dial (empty or too long).
    InvalidNumber,
    /// The leg costs more than the tenant's or the call's ceiling.
    OverMaxCost,
}

impl SkipReason {
    pub fn detail(&self) -> &'static str {
        match self {
            Self::UnknownCarrier => "no such carrier for this tenant",
            Self::CarrierDisabled => "carrier is disabled",
            Self::CarrierArchived => "carrier is archived",
            Self::InboundOnly => "carrier is inbound-only",
            Self::NotSip => "carrier type has no sofia gateway",
            Self::DuplicateCarrier => "carrier already used by an earlier leg",
            Self::MaxLegsReached => "max_legs legs already chosen",
            Self::InvalidNumber => "number after strip/add is not dialable",
            Self::OverMaxCost => "costs more than the max_cost ceiling",
        }
    }
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.detail())
    }
}

/// What became of one candidate (a matching route, or the forced carrier).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// It produced the leg at this 1-based position.
    Used { position: usize },
    Skipped {
        reason: SkipReason,
        detail: &'static str,
    },
}

impl Outcome {
    fn skipped(reason: SkipReason) -> Self {
        Outcome::Skipped {
            reason,
            detail: reason.detail(),
        }
    }
}

/// The criterion that put a route where it is in the try order, against its neighbour (the
/// route before it, or for the first the route after it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Criterion {
    /// The originator forced this carrier (`trunkline_carrier_id`).
    Forced,
    /// The only matching route: nothing to decide.
    Only,
    /// Lower priority value first.
    Priority,
    /// Equal priority: cheaper first, unknown cost after known costs.
    Cost,
    /// Equal priority and cost: the per-call weighted draw.
    Weight,
    /// Prefix before regex, longer prefix first.
    Specificity,
    /// Older route first.
    Age,
}

/// Where a leg's cost comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CostSource {
    Route,
    Carrier,
}

/// A matching route, in the order tried, and what became of it. Its texts stay in the snapshot
/// until shown ([`RouteText`]): the xml_curl path never reads them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Considered<'s> {
    pub route_id: Uuid,
    pub route_name: RouteText<'s>,
    pub priority: i64,
    pub match_type: MatchType,
    /// The prefix digits (`""` = every destination) or the regex.
    pub pattern: RouteText<'s>,
    pub carrier_id: Uuid,
    /// The carrier's gateway, when the carrier exists for this tenant.
    pub gateway_name: Option<&'s GatewayName>,
    /// Per-minute cost in the platform currency; `None` = unknown.
    pub cost: Option<Rate>,
    pub cost_source: Option<CostSource>,
    pub weight: Option<Weight>,
    /// What placed this route here in the try order.
    pub decided_by: Criterion,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// Why a route the destination matched is not a candidate for this call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExcludeReason {
    /// The route has a caller rule and the call has no valid caller number.
    NoCaller,
    /// The caller number does not match the route's caller prefix or regex.
    CallerMismatch,
    /// The call is outside every window of the route's schedule.
    OutsideSchedule,
}

impl ExcludeReason {
    pub fn detail(&self) -> &'static str {
        match self {
            Self::NoCaller => "route has a caller rule and the call has no valid caller number",
            Self::CallerMismatch => "caller number does not match the route's caller rule",
            Self::OutsideSchedule => "outside every window of the route's schedule",
        }
    }
}

/// A route whose destination rule matched but whose caller rule or schedule did not.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Excluded<'s> {
    pub route_id: Uuid,
    pub route_name: RouteText<'s>,
    pub reason: ExcludeReason,
    pub detail: &'static str,
}

/// The cost ceiling of one call: the stricter of the tenant's `max_cost` and the call's
/// `trunkline_max_cost`. Legs costing more are dropped; legs of unknown cost are kept, since a
/// missing rate is an operator's omission, not a price.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostCeiling {
    /// The ceiling applied, if any.
    pub max_rate: Option<Rate>,
    pub tenant_max_rate: Option<Rate>,
    pub request_max_rate: Option<Rate>,
    /// Why a posted `trunkline_max_cost` was ignored.
    pub request_ignored: Option<String>,
    pub unknown_cost: &'static str,
}

/// What became of the forced carrier.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForcedOutcome {
    pub carrier_id: Uuid,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// The answer of [`Snapshot::resolve`]: the legs in order and why, borrowing the routes' texts
/// from the snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision<'s> {
    pub legs: Vec<Leg>,
    pub scope: RouteScope,
    pub forced: Option<ForcedOutcome>,
    /// Every matching route, in the order tried.
    pub considered: Vec<Considered<'s>>,
    /// Routes the destination matched but the caller rule or schedule excluded.
    pub excluded: Vec<Excluded<'s>>,
    /// Present when a ceiling applies or a posted one was ignored.
    pub cost_ceiling: Option<CostCeiling>,
    /// The call id that seeded the weighted draw (`None` = the fixed seed).
    pub call_id: Option<Uuid>,
    /// The caller ID the legs send, and the attestation level, and why.
    pub caller_id: CallerIdDecision,
}
