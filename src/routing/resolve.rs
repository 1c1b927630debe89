//! `resolve`: the routing rules of DESIGN.md §3 over one snapshot.
//!
//! 1. A forced carrier that is usable by the tenant (and within the cost ceiling) is the first
//!    leg; otherwise it is ignored and the decision says why.
//! 2. Candidates are the tenant's enabled routes whose destination rule, caller rule and
//!    schedule match; if none do, the platform default routes that match.
//! 3. They are tried in the order of [`super::order`] (priority, cost, weighted draw, rank);
//!    each carrier gives at most one leg; unusable carriers and legs over the cost ceiling are
//!    skipped with a reason.
//! 4. Each leg's number: route strip/add first, then carrier strip/add/suffix. A prefix route
//!    never strips implicitly.

use uuid::Uuid;

use super::order::{Candidate, order};
use super::snapshot::RouteEntry;
use super::{
    CallerIdDecision, Considered, CostCeiling, Criterion, Decision, ExcludeReason, Excluded,
    ForcedOutcome, Leg, Outcome, RouteRequest, RouteScope, SkipReason, Snapshot,
};
use crate::model::{Carrier, CarrierStatus, DialNumber, Digits, HeaderValue, Rate};

impl Snapshot {
    /// The legs for one call, in order, and why. Never fails: a call nothing can carry gets no
    /// legs, and the caller refuses it.
    pub fn resolve(&self, request: &RouteRequest<'_>) -> Decision<'_> {
        // An unknown tenant has no routes of its own and may use platform carriers only.
        let tenant = request.tenant_id.and_then(|t| self.tenant(t));
        let tenant_id = tenant.map(|t| t.id);
        let caller_id = self.caller_id(
            tenant,
            request.caller,
            request.caller_withheld,
            request.attestation,
            &request.caller_name,
        );
        let cost_ceiling = self.cost_ceiling(tenant_id, request);
        let max_rate = cost_ceiling.as_ref().and_then(|c| c.max_rate);
        let over_ceiling = |cost: Option<Rate>| max_rate.zip(cost).is_some_and(|(max, c)| c > max);
        let mut legs = LegList {
            snapshot: self,
            request,
            caller_id: &caller_id,
            legs: Vec::new(),
        };
        let forced = request.forced_carrier.map(|carrier_id| ForcedOutcome {
            carrier_id,
            outcome: match self.usable_carrier(carrier_id, tenant_id) {
                Ok(carrier) if over_ceiling(self.carrier_rate(carrier)) => {
                    Outcome::skipped(SkipReason::OverMaxCost)
                }
                Ok(carrier) => legs.add(carrier, None),
                Err(reason) => Outcome::skipped(reason),
            },
        });

        let mut excluded = Vec::new();
        let mut candidates = match tenant_id {
            Some(tenant) => self.candidates(Some(tenant), request, &mut excluded),
            None => Vec::new(),
        };
        let mut scope = RouteScope::Tenant;
        if candidates.is_empty() {
            candidates = self.candidates(None, request, &mut excluded);
            scope = RouteScope::Platform;
        }
        let decided_by = order(&mut candidates, request.call_id);

        let considered = candidates
            .iter()
            .zip(decided_by)
            .map(|(candidate, decided_by)| {
                let route = candidate.route;
                // A route may use its owner's carriers and platform carriers only.
                let outcome = match self.usable_carrier(route.carrier_id, route.owner) {
                    Ok(_) if over_ceiling(candidate.cost()) => {
                        Outcome::skipped(SkipReason::OverMaxCost)
                    }
                    Ok(carrier) => legs.add(carrier, Some(route)),
                    Err(reason) => Outcome::skipped(reason),
                };
                let carrier = self.visible_carrier(route.carrier_id, route.owner);
                considered(self, candidate, carrier, decided_by, outcome)
            })
            .collect();
        Decision {
            legs: legs.legs,
            scope,
            forced,
            considered,
            excluded,
            cost_ceiling,
            call_id: request.call_id,
            caller_id,
        }
    }

    /// The routes of one scope (`Some(tenant)` or the platform's `None`) that match the call,
    /// in rank order. Routes whose destination rule matched but whose caller rule or schedule
    /// did not go to `excluded`.
    fn candidates<'s>(
        &'s self,
        scope: Option<Uuid>,
        request: &RouteRequest<'_>,
        excluded: &mut Vec<Excluded<'s>>,
    ) -> Vec<Candidate<'s>> {
        let Some(scope) = self.index.scope(scope) else {
            return Vec::new();
        };
        let mut ranks = Vec::new();
        self.index
            .matching(scope, request.destination.digits(), &mut ranks);
        ranks.sort_unstable();
        ranks.dedup();
        ranks
            .into_iter()
            .filter_map(|rank| {
                let route = &self.routes[rank as usize];
                match exclusion(route, request) {
                    Some(reason) => {
                        excluded.push(Excluded {
                            route_id: route.id,
                            route_name: self.route_name(route),
                            reason,
                            detail: reason.detail(),
                        });
                        None
                    }
                    None => Some(Candidate::new(rank, route)),
                }
            })
            .collect()
    }

    /// The stricter of the tenant's and the call's ceiling, or `None` when neither is set and
    /// nothing was posted.
    fn cost_ceiling(
        &self,
        tenant: Option<Uuid>,
        request: &RouteRequest<'_>,
    ) -> Option<CostCeiling> {
        let tenant_max_rate = tenant.and_then(|t| self.tenant_ceilings.get(&t).copied());
        let (request_max_rate, request_ignored) = match &request.max_cost {
            None => (None, None),
            Some(Ok(rate)) => (Some(*rate), None),
            Some(Err(e)) => (None, Some(format!("trunkline_max_cost ignored: {e}"))),
        };
        if tenant_max_rate.is_none() && request_max_rate.is_none() && request_ignored.is_none() {
            return None;
        }
        let max_rate = match (tenant_max_rate, request_max_rate) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Some(CostCeiling {
            max_rate,
            tenant_max_rate,
            request_max_rate,
            request_ignored,
            unknown_cost: "legs of unknown cost are kept",
        })
    }

    /// A carrier's default cost in the platform currency (the cost of a forced leg).
    fn carrier_rate(&self, carrier: &Carrier) -> Option<Rate> {
        carrier
            .cost
            .as_ref()
            .filter(|c| c.currency == self.settings.currency)
            .map(|c| c.rate)
    }

    /// The carrier if `owner` (a tenant, or `None` for the platform) may see it: its own or a
    /// platform carrier.
    fn visible_carrier(&self, id: Uuid, owner: Option<Uuid>) -> Option<&Carrier> {
        self.carrier(id)
            .filter(|c| c.tenant_id.is_none() || c.tenant_id == owner)
    }

    /// The carrier if `owner` may route calls to it right now.
    fn usable_carrier(&self, id: Uuid, owner: Option<Uuid>) -> Result<&Carrier, SkipReason> {
        let carrier = self
            .visible_carrier(id, owner)
            .ok_or(SkipReason::UnknownCarrier)?;
        match carrier.status {
            CarrierStatus::Archived => Err(SkipReason::CarrierArchived),
            CarrierStatus::Disabled => Err(SkipReason::CarrierDisabled),
            CarrierStatus::Active if !carrier.direction.is_outbound() => {
                Err(SkipReason::InboundOnly)
            }
            CarrierStatus::Active if !carrier.carrier_type.is_sip() => Err(SkipReason::NotSip),
            CarrierStatus::Active => Ok(carrier),
        }
    }
}

/// Why a route the destination matched does not match this call, if it does not.
fn exclusion(route: &RouteEntry, request: &RouteRequest<'_>) -> Option<ExcludeReason> {
    let rules = route.rules.as_deref()?;
    if rules.has_caller_rule() {
        let Some(caller) = request.caller else {
            return Some(ExcludeReason::NoCaller);
        };
        let digits = caller.as_str().strip_prefix('+').unwrap_or(caller.as_str());
        let prefix_ok = rules
            .caller_prefix
            .as_ref()
            .is_none_or(|p| digits.starts_with(p.digits()));
        let regex_ok = rules
            .caller_regex
            .as_ref()
            .is_none_or(|re| re.as_ref().is_some_and(|re| re.is_match(digits)));
        if !(prefix_ok && regex_ok) {
            return Some(ExcludeReason::CallerMismatch);
        }
    }
    match &rules.schedule {
        Some(schedule) if !schedule.is_open(request.now) => Some(ExcludeReason::OutsideSchedule),
        _ => None,
    }
}

fn considered<'s>(
    snapshot: &'s Snapshot,
    candidate: &Candidate<'s>,
    carrier: Option<&'s Carrier>,
    decided_by: Criterion,
    outcome: Outcome,
) -> Considered<'s> {
    let route = candidate.route;
    Considered {
        route_id: route.id,
        route_name: snapshot.route_name(route),
        priority: route.priority,
        match_type: route.match_type,
        pattern: snapshot.route_pattern(route),
        carrier_id: route.carrier_id,
        gateway_name: carrier.map(|c| &c.gateway_name),
        cost: candidate.cost(),
        cost_source: route.cost.map(|(_, source)| source),
        weight: route.weight,
        decided_by,
        outcome,
    }
}

/// The legs chosen so far for one call.
struct LegList<'a> {
    snapshot: &'a Snapshot,
    request: &'a RouteRequest<'a>,
    caller_id: &'a CallerIdDecision,
    legs: Vec<Leg>,
}

impl LegList<'_> {
    /// Adds a leg to `carrier` (via `route`, or forced when `None`), or says why not.
    fn add(&mut self, carrier: &Carrier, route: Option<&RouteEntry>) -> Outcome {
        if self.legs.iter().any(|l| l.carrier_id == carrier.id) {
            return Outcome::skipped(SkipReason::DuplicateCarrier);
        }
        if self.legs.len() >= self.snapshot.settings.max_legs {
            return Outcome::skipped(SkipReason::MaxLegsReached);
        }
        let route_steps = route.and_then(RouteEntry::strip_and_add);
        let steps = route_steps
            .into_iter()
            .chain([(&carrier.strip_prefix, &carrier.add_prefix)]);
        let Some(number) = dial_number(
            self.request.destination.as_str(),
            steps,
            &carrier.add_suffix,
        ) else {
            return Outcome::skipped(SkipReason::InvalidNumber);
        };
        self.legs.push(Leg {
            carrier_id: carrier.id,
            gateway_name: carrier.gateway_name.clone(),
            number,
            headers: self.headers(carrier),
            progress_timeout_seconds: carrier.leg_progress_timeout_seconds,
            failover_codes: carrier
                .failover_codes
                .clone()
                .unwrap_or_else(|| self.snapshot.settings.default_failover_codes.clone()),
            route_id: route.map(|r| r.id),
            tenant_id: self.request.tenant_id,
            caller_id: self.caller_id.for_carrier(carrier),
            caller_name: self.caller_id.name_for_carrier(carrier),
            asserted_identity: carrier.caller_id.asserted_identity,
            privacy: carrier.caller_id.privacy,
        });
        Outcome::Used {
            position: self.legs.len(),
        }
    }

    /// The carrier's `tech_headers`, then the attestation header when the carrier names one
    /// (which then replaces a tech header of the same name, so the leg never carries the
    /// header twice), with the call's level: asked for, or derived from the caller ID.
    fn headers(&self, carrier: &Carrier) -> Vec<(crate::model::HeaderName, HeaderValue)> {
        let attestation = carrier
            .attestation_header
            .as_ref()
            .map(|name| (self.caller_id.attestation, name));
        let mut headers: Vec<_> = carrier
            .tech_headers
            .iter()
            .filter(|(name, _)| attestation.is_none_or(|(_, a)| a != *name))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        if let Some((level, name)) = attestation {
            let value = HeaderValue::parse(level.as_str()).expect("A, B and C are header values");
            headers.push((name.clone(), value));
        }
        headers
    }
}

/// Applies each (strip, add) step in turn, then the suffix. A strip that the number does not
/// start with does nothing. `None` when the result is not a dialable number (for example a
/// prefix added in front of a `+`).
fn dial_number<'a>(
    destination: &str,
    steps: impl Iterator<Item = (&'a Digits, &'a Digits)>,
    suffix: &Digits,
) -> Option<DialNumber> {
    // Room for the usual prefixes and suffix, so that the edits below stay in one buffer.
    let mut number = String::with_capacity(destination.len() + 16);
    number.push_str(destination);
    for (strip, add) in steps {
        if number.starts_with(strip.as_str()) {
            number.drain(..strip.as_str().len());
        }
        number.insert_str(0, add.as_str());
    }
    number.push_str(suffix.as_str());
    DialNumber::parse(&number).ok()
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone, Utc};

    use super::*;
    use crate::model::fixtures::{carrier, prefix_route, regex_route, tenant};
    use crate::model::{
        Attestation, CarrierType, Destination, Direction, FailoverCodes, HeaderName, Route,
    };
    use crate::routing::RoutingSettings;
    use crate::routing::{CostSource, Criterion, ExcludeReason};

    const ACME: u128 = 0xacde;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn snapshot(carriers: Vec<Carrier>, routes: Vec<Route>) -> Snapshot {
        Snapshot::build(
            1,
            vec![tenant("acme", ACME)],
            carriers,
            routes,
            RoutingSettings::default(),
        )
    }

    fn resolve<'s>(
        s: &'s Snapshot,
        tenant: Option<u128>,
        dest: &str,
        forced: Option<u128>,
    ) -> Decision<'s> {
        let destination = Destination::parse(dest).unwrap();
        s.resolve(&RouteRequest {
            tenant_id: tenant.map(id),
            destination: &destination,
            forced_carrier: forced.map(id),
            caller: None,
            caller_withheld: false,
            caller_name: crate::routing::PresentedName::Absent,
            attestation: None,
            now: Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap(),
            call_id: None,
            max_cost: None,
        })
    }

    fn gateways<'d>(d: &'d Decision<'_>) -> Vec<&'d str> {
        d.legs.iter().map(|l| l.gateway_name.as_str()).collect()
    }

    fn reasons(d: &Decision<'_>) -> Vec<Option<SkipReason>> {
        d.considered
            .iter()
            .map(|c| match c.outcome {
                Outcome::Skipped { reason, .. } => Some(reason),
                Outcome::Used { .. } => None,
            })
            .collect()
    }

    #[test]
    fn routes_are_tried_by_priority_then_longer_prefix_then_prefix_before_regex_then_age() {
        let carriers = (1..=5).map(|n| carrier(&format!("gw{n}"), n)).collect();
        let mut older = prefix_route(10, None, "1", 1, 5);
        older.created_at -= Duration::hours(1);
        let s = snapshot(
            carriers,
            vec![
                regex_route(11, None, "^1555", 2, 1),
                prefix_route(12, None, "1", 2, 2),
                prefix_route(13, None, "1555", 2, 3),
                prefix_route(14, None, "1", 1, 4),
                older,
            ],
        );
        let d = resolve(&s, None, "+15551234567", None);
        assert_eq!(gateways(&d), ["gw5", "gw4", "gw3", "gw2", "gw1"]);
        assert_eq!(d.scope, RouteScope::Platform);
    }

    #[test]
    fn a_tenant_route_overrides_the_platform_defaults_which_apply_only_when_none_match() {
        let mut own = carrier("own", 2);
        own.tenant_id = Some(id(ACME));
        let s = snapshot(
            vec![carrier("platform", 1), own],
            vec![
                prefix_route(10, None, "", 1, 1),
                prefix_route(11, Some(ACME), "44", 1, 2),
            ],
        );
        let uk = resolve(&s, Some(ACME), "+442071234567", None);
        assert_eq!((gateways(&uk), uk.scope), (vec!["own"], RouteScope::Tenant));
        let us = resolve(&s, Some(ACME), "+15551234567", None);
        assert_eq!(
            (gateways(&us), us.scope),
            (vec!["platform"], RouteScope::Platform)
        );
        // Platform scope never sees a tenant's routes.
        assert_eq!(
            gateways(&resolve(&s, None, "+442071234567", None)),
            ["platform"]
        );
    }

    #[test]
    fn unusable_carriers_are_skipped_with_their_reason_and_one_leg_per_carrier() {
        let mut disabled = carrier("disabled", 2);
        disabled.status = CarrierStatus::Disabled;
        let mut archived = carrier("archived", 3);
        archived.status = CarrierStatus::Archived;
        let mut inbound = carrier("inbound", 4);
        inbound.direction = Direction::Inbound;
        let mut iax = carrier("iax", 5);
        iax.carrier_type = CarrierType::Iax2;
        let mut foreign = carrier("foreign", 6);
        foreign.tenant_id = Some(id(0xf0));
        let s = snapshot(
            vec![
                carrier("good", 1),
                disabled,
                archived,
                inbound,
                iax,
                foreign,
            ],
            (1..=6)
                .map(|n| prefix_route(10 + n, None, "1", n as i64, n))
                .chain([prefix_route(20, None, "15", 9, 1)])
                .collect(),
        );
        let d = resolve(&s, None, "15551234567", None);
        assert_eq!(gateways(&d), ["good"]);
        use SkipReason::*;
        assert_eq!(
            reasons(&d),
            [
                None,
                Some(CarrierDisabled),
                Some(CarrierArchived),
                Some(InboundOnly),
                Some(NotSip),
                Some(UnknownCarrier),
                Some(DuplicateCarrier)
            ]
        );
        assert_eq!(
            d.considered[5].gateway_name, None,
            "another tenant's carrier is not named"
        );
    }

    #[test]
    fn a_usable_forced_carrier_goes_first_and_an_unusable_one_is_ignored_with_a_reason() {
        let mut foreign = carrier("foreign", 3);
        foreign.tenant_id = Some(id(0xf0));
        let s = snapshot(
            vec![carrier("a", 1), carrier("b", 2), foreign],
            vec![
                prefix_route(10, None, "1", 1, 1),
                prefix_route(11, None, "1", 2, 2),
            ],
        );
        let d = resolve(&s, Some(ACME), "15551234567", Some(2));
        assert_eq!(gateways(&d), ["b", "a"]);
        assert_eq!(d.legs[0].route_id, None);
        assert_eq!(
            d.forced.as_ref().unwrap().outcome,
            Outcome::Used { position: 1 }
        );
        assert_eq!(reasons(&d), [None, Some(SkipReason::DuplicateCarrier)]);

        for bad in [3, 99] {
            let d = resolve(&s, Some(ACME), "15551234567", Some(bad));
            assert_eq!(gateways(&d), ["a", "b"]);
            assert_eq!(
                d.forced.unwrap().outcome,
                Outcome::skipped(SkipReason::UnknownCarrier)
            );
        }
    }

    #[test]
    fn numbers_get_route_strip_add_then_carrier_strip_add_suffix_and_prefixes_never_strip() {
        let mut c = carrier("c", 1);
        c.strip_prefix = Digits::parse("0").unwrap();
        c.add_prefix = Digits::parse("99").unwrap();
        c.add_suffix = Digits::parse("#").unwrap();
        let mut r = prefix_route(10, None, "+44", 1, 1);
        r.strip_prefix = Digits::parse("+44").unwrap();
        r.add_prefix = Digits::parse("0").unwrap();
        let plain = prefix_route(11, None, "+44", 2, 2);
        let s = snapshot(vec![c, carrier("d", 2)], vec![r, plain]);
        let d = resolve(&s, None, "+442071234567", None);
        // +442071234567 → route: 02071234567 → carrier: strip 0, add 99, suffix #.
        assert_eq!(d.legs[0].number.as_str(), "992071234567#");
        assert_eq!(
            d.legs[1].number.as_str(),
            "+442071234567",
            "no implicit strip"
        );
    }

    #[test]
    fn a_number_made_undialable_by_manipulation_skips_the_leg() {
        let mut c = carrier("c", 1);
        c.add_prefix = Digits::parse("99").unwrap();
        let s = snapshot(vec![c], vec![prefix_route(10, None, "", 1, 1)]);
        let d = resolve(&s, None, "+15551234567", None);
        assert!(d.legs.is_empty());
        assert_eq!(reasons(&d), [Some(SkipReason::InvalidNumber)]);
    }

    #[test]
    fn legs_stop_at_max_legs() {
        let carriers = (1..=4).map(|n| carrier(&format!("gw{n}"), n)).collect();
        let routes = (1..=4)
            .map(|n| prefix_route(10 + n, None, "", n as i64, n))
            .collect();
        let mut s = snapshot(carriers, routes);
        s.settings.max_legs = 2;
        let d = resolve(&s, None, "1", None);
        assert_eq!(gateways(&d), ["gw1", "gw2"]);
        assert_eq!(reasons(&d)[2..], [Some(SkipReason::MaxLegsReached); 2]);
    }

    #[test]
    fn legs_carry_tech_headers_then_attestation_progress_timeout_and_failover_codes() {
        let mut c = carrier("c", 1);
        let h = |s: &str| HeaderName::parse(s).unwrap();
        let v = |s: &str| HeaderValue::parse(s).unwrap();
        c.tech_headers.insert(h("X-Account"), v("42"));
        c.tech_headers.insert(h("X-Attest"), v("stale"));
        c.attestation_header = Some(h("X-Attest"));
        c.leg_progress_timeout_seconds = Some(8);
        c.failover_codes =
            Some(FailoverCodes::new(vec![crate::model::FailoverCode::Exact(503)]).unwrap());
        let s = snapshot(
            vec![c, carrier("d", 2)],
            vec![
                prefix_route(10, None, "", 1, 1),
                prefix_route(11, None, "", 2, 2),
            ],
        );
        let destination = Destination::parse("15551234567").unwrap();
        let d = s.resolve(&RouteRequest {
            tenant_id: None,
            destination: &destination,
            forced_carrier: None,
            caller: None,
            caller_withheld: false,
            caller_name: crate::routing::PresentedName::Absent,
            attestation: Some(Attestation::B),
            now: Utc::now(),
            call_id: None,
            max_cost: None,
        });
        assert_eq!(
            d.legs[0].headers,
            [(h("X-Account"), v("42")), (h("X-Attest"), v("B"))]
        );
        assert_eq!(d.legs[0].progress_timeout_seconds, Some(8));
        assert!(d.legs[0].failover_codes.matches(503) && !d.legs[0].failover_codes.matches(404));
        assert_eq!(d.legs[1].failover_codes, FailoverCodes::platform_default());
        assert!(d.legs[1].headers.is_empty());
    }

    #[test]
    fn disabled_routes_and_unmatched_destinations_give_nothing() {
        let mut off = prefix_route(10, None, "1", 1, 1);
        off.enabled = false;
        let s = snapshot(
            vec![carrier("c", 1)],
            vec![off, regex_route(11, None, "^44", 1, 1)],
        );
        let d = resolve(&s, None, "15551234567", None);
        assert!(d.legs.is_empty() && d.considered.is_empty());
    }

    // Routing criteria (issue 5).

    use crate::model::{
        CallerNumber, CallerPrefix, Cost, Currency, Invalid, Rate, RouteRegex, Schedule, Weight,
    };

    fn usd(rate: &str) -> Option<Cost> {
        Some(Cost {
            rate: Rate::parse(rate).unwrap(),
            currency: Currency::usd(),
        })
    }

    fn schedule(json: serde_json::Value) -> Option<Schedule> {
        Some(serde_json::from_value(json).unwrap())
    }

    struct Call<'a> {
        tenant: Option<u128>,
        dest: &'a str,
        caller: Option<&'a str>,
        now: chrono::DateTime<Utc>,
        call_id: Option<Uuid>,
        max_cost: Option<Result<Rate, Invalid>>,
    }

    impl Default for Call<'_> {
        fn default() -> Self {
            Call {
                tenant: None,
                dest: "+15551234567",
                caller: None,
                now: Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap(),
                call_id: None,
                max_cost: None,
            }
        }
    }

    fn call<'s>(s: &'s Snapshot, c: Call<'_>) -> Decision<'s> {
        let destination = Destination::parse(c.dest).unwrap();
        let caller = c.caller.map(|n| CallerNumber::parse(n).unwrap());
        s.resolve(&RouteRequest {
            tenant_id: c.tenant.map(id),
            destination: &destination,
            forced_carrier: None,
            caller: caller.as_ref(),
            caller_withheld: false,
            caller_name: crate::routing::PresentedName::Absent,
            attestation: None,
            now: c.now,
            call_id: c.call_id,
            max_cost: c.max_cost,
        })
    }

    fn criteria(d: &Decision<'_>) -> Vec<Criterion> {
        d.considered.iter().map(|c| c.decided_by).collect()
    }

    #[test]
    fn a_route_matches_only_inside_its_schedule_including_windows_across_midnight() {
        // Acme's night carrier 22:00–06:00 Berlin time, starting Monday to Friday; the platform
        // default otherwise.
        let mut night = prefix_route(10, Some(ACME), "1", 1, 2);
        night.criteria.schedule = schedule(serde_json::json!({"time_zone": "Europe/Berlin",
            "windows": [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "22:00", "end": "06:00"}]}));
        let s = snapshot(
            vec![carrier("day", 1), carrier("night", 2)],
            vec![prefix_route(11, None, "", 1, 1), night],
        );
        let at = |d, h, m| Call {
            tenant: Some(ACME),
            now: Utc.with_ymd_and_hms(2026, 11, d, h, m, 0).unwrap(),
            ..Call::default()
        };
        // Monday 23 November 2026; Berlin is UTC+1.
        let inside = call(&s, at(23, 21, 0)); // Monday 22:00
        assert_eq!(
            (gateways(&inside), inside.scope),
            (vec!["night"], RouteScope::Tenant)
        );
        let after_midnight = call(&s, at(24, 4, 59)); // Tuesday 05:59, from Monday's window
        assert_eq!(gateways(&after_midnight), ["night"]);
        let outside = call(&s, at(23, 12, 0)); // Monday noon
        assert_eq!(
            (gateways(&outside), outside.scope),
            (vec!["day"], RouteScope::Platform)
        );
        assert_eq!(outside.excluded[0].reason, ExcludeReason::OutsideSchedule);
        // Saturday 02:00 belongs to Friday night's window; Sunday 02:00 to no window.
        assert_eq!(gateways(&call(&s, at(28, 1, 0))), ["night"]);
        assert_eq!(gateways(&call(&s, at(29, 1, 0))), ["day"]);
    }

    #[test]
    fn a_schedule_follows_local_time_across_a_daylight_saving_change() {
        // Open 08:00–18:00 Berlin time on Sundays; 29 March 2026 springs forward (UTC+1 → +2).
        let mut r = prefix_route(10, None, "", 1, 1);
        r.criteria.schedule = schedule(serde_json::json!({"time_zone": "Europe/Berlin",
            "windows": [{"days": ["sun"], "start": "08:00", "end": "18:00"}]}));
        let s = snapshot(vec![carrier("c", 1)], vec![r]);
        let at = |d, h, m| Call {
            now: Utc.with_ymd_and_hms(2026, 3, d, h, m, 0).unwrap(),
            ..Call::default()
        };
        assert!(
            call(&s, at(22, 6, 30)).legs.is_empty(),
            "07:30 CET a week before"
        );
        assert_eq!(gateways(&call(&s, at(29, 6, 30))), ["c"], "08:30 CEST");
        assert!(call(&s, at(29, 16, 0)).legs.is_empty(), "18:00 CEST");
    }

    #[test]
    fn within_a_priority_cheaper_legs_come_first_and_unknown_cost_last() {
        let mut dear = carrier("dear", 1);
        dear.cost = usd("0.02");
        let mut cheap_carrier = carrier("cheap", 2);
        cheap_carrier.cost = usd("0.05");
        let mut cheap = prefix_route(11, None, "1", 1, 2);
        cheap.criteria.cost = usd("0.0099"); // the route's cost wins over its carrier's
        let s = snapshot(
            vec![
                dear,
                cheap_carrier,
                carrier("unknown", 3),
                carrier("backup", 4),
            ],
            vec![
                prefix_route(10, None, "1555", 1, 1),
                cheap,
                prefix_route(12, None, "1555", 1, 3),
                prefix_route(13, None, "1", 2, 4),
            ],
        );
        let d = call(&s, Call::default());
        assert_eq!(gateways(&d), ["cheap", "dear", "unknown", "backup"]);
        use Criterion::*;
        assert_eq!(criteria(&d), [Cost, Cost, Cost, Priority]);
        assert_eq!(d.considered[0].cost_source, Some(CostSource::Route));
        assert_eq!(d.considered[1].cost_source, Some(CostSource::Carrier));
        assert_eq!(d.considered[2].cost, None);
    }

    #[test]
    fn the_stricter_ceiling_drops_dearer_legs_keeps_unknown_cost_and_ignores_a_bad_value() {
        let priced = |gw: &str, n: u128, rate: &str| {
            let mut c = carrier(gw, n);
            c.cost = usd(rate);
            c
        };
        let mut s_tenant = tenant("acme", ACME);
        s_tenant.max_cost = usd("0.03");
        let s = Snapshot::build(
            1,
            vec![s_tenant],
            vec![
                priced("c01", 1, "0.01"),
                priced("c02", 2, "0.02"),
                priced("c04", 3, "0.04"),
                carrier("unknown", 4),
            ],
            (1..=4)
                .map(|n| prefix_route(10 + n, None, "", n as i64, n))
                .collect(),
            RoutingSettings::default(),
        );
        let with = |max_cost| {
            call(
                &s,
                Call {
                    tenant: Some(ACME),
                    max_cost,
                    ..Call::default()
                },
            )
        };
        let tenant_only = with(None);
        assert_eq!(gateways(&tenant_only), ["c01", "c02", "unknown"]);
        assert_eq!(reasons(&tenant_only)[2], Some(SkipReason::OverMaxCost));
        let ceiling = tenant_only.cost_ceiling.unwrap();
        assert_eq!(ceiling.max_rate, Rate::parse("0.03").ok());
        // The call's ceiling applies when stricter, not when looser.
        let stricter = with(Some(Rate::parse("0.015")));
        assert_eq!(gateways(&stricter), ["c01", "unknown"]);
        assert_eq!(
            gateways(&with(Some(Rate::parse("1")))),
            ["c01", "c02", "unknown"]
        );
        // A refused posted value is ignored, with the reason.
        let bad = with(Some(Rate::parse("-1")));
        assert_eq!(gateways(&bad), ["c01", "c02", "unknown"]);
        assert!(
            bad.cost_ceiling
                .unwrap()
                .request_ignored
                .unwrap()
                .contains("ignored")
        );
        // Platform scope has only the call's ceiling.
        let platform = call(
            &s,
            Call {
                max_cost: Some(Rate::parse("0.02")),
                ..Call::default()
            },
        );
        assert_eq!(gateways(&platform), ["c01", "c02", "unknown"]);
    }

    #[test]
    fn a_weighted_split_matches_its_shares_over_10000_calls_and_weight_0_is_last() {
        let weighted = |route: u128, carrier: u128, w: Option<i64>| {
            let mut r = prefix_route(route, None, "1", 1, carrier);
            r.criteria.weight = w.map(|w| Weight::new(w).unwrap());
            r
        };
        let s = snapshot(
            (1..=4).map(|n| carrier(&format!("gw{n}"), n)).collect(),
            vec![
                weighted(11, 1, Some(70)),
                weighted(12, 2, Some(20)),
                weighted(13, 3, None), // no weight: counts as 1
                weighted(14, 4, Some(0)),
            ],
        );
        let mut first = [0usize; 4];
        // A fixed sequence of call ids: the test is reproducible.
        for n in 0..10_000u128 {
            let d = call(
                &s,
                Call {
                    call_id: Some(Uuid::from_u128(0x5eed_0000 + n * 7919)),
                    ..Call::default()
                },
            );
            let gw = d.legs[0].gateway_name.as_str();
            first[gw[2..].parse::<usize>().unwrap() - 1] += 1;
            assert_eq!(
                d.legs[3].gateway_name.as_str(),
                "gw4",
                "weight 0 is always last"
            );
            assert!(
                d.considered
                    .iter()
                    .all(|c| c.decided_by == Criterion::Weight)
            );
        }
        let share = |i: usize| first[i] as f64 / 10_000.0;
        // Expected 70/91, 20/91, 1/91; ±2 percentage points is over 4 standard deviations.
        for (i, expected) in [70.0 / 91.0, 20.0 / 91.0, 1.0 / 91.0]
            .into_iter()
            .enumerate()
        {
            assert!(
                (share(i) - expected).abs() < 0.02,
                "gw{} {} vs {expected}",
                i + 1,
                share(i)
            );
        }
        assert_eq!(first[3], 0);
    }

    #[test]
    fn every_fetch_of_one_call_sees_the_same_draw_and_no_call_id_a_fixed_one() {
        let mut routes: Vec<Route> = (1..=5)
            .map(|n| prefix_route(10 + n, None, "1", 1, n))
            .collect();
        routes
            .iter_mut()
            .for_each(|r| r.criteria.weight = Some(Weight::new(10).unwrap()));
        let s = snapshot(
            (1..=5).map(|n| carrier(&format!("gw{n}"), n)).collect(),
            routes,
        );
        let order = |call_id| {
            gateways(&call(
                &s,
                Call {
                    call_id,
                    ..Call::default()
                },
            ))
            .join(",")
        };
        let id = Some(Uuid::from_u128(0xabc));
        assert_eq!(order(id), order(id));
        assert_eq!(order(None), order(None));
        let distinct: std::collections::BTreeSet<String> = (0..50u128)
            .map(|n| order(Some(Uuid::from_u128(n))))
            .collect();
        assert!(distinct.len() > 10, "different calls draw different orders");
    }

    #[test]
    fn caller_rules_by_prefix_and_regex_combine_with_the_destination_rule() {
        let mut berlin = prefix_route(10, None, "1", 1, 1);
        berlin.criteria.caller_prefix = Some(CallerPrefix::parse("+4930").unwrap());
        let mut mobile = regex_route(11, None, "^1555", 1, 2);
        mobile.criteria.caller_regex = Some(RouteRegex::parse("^491[5-7][0-9]+$").unwrap());
        let mut both = prefix_route(12, None, "1", 1, 3);
        both.criteria.caller_prefix = Some(CallerPrefix::parse("49").unwrap());
        both.criteria.caller_regex = Some(RouteRegex::parse("^49[0-9]{9}$").unwrap());
        let s = snapshot(
            vec![
                carrier("berlin", 1),
                carrier("mobile", 2),
                carrier("both", 3),
                carrier("any", 4),
            ],
            vec![berlin, mobile, both, prefix_route(13, None, "1", 2, 4)],
        );
        let from = |caller, dest| {
            let d = call(
                &s,
                Call {
                    caller,
                    dest,
                    ..Call::default()
                },
            );
            gateways(&d).join(",")
        };
        assert_eq!(from(Some("+493012345678"), "+15551234567"), "berlin,any");
        assert_eq!(from(Some("49301234567"), "+15551234567"), "berlin,both,any");
        assert_eq!(from(Some("+4915112345678"), "+15551234567"), "mobile,any");
        // The destination rule still applies: the regex route wants 1555.
        assert_eq!(from(Some("+4915112345678"), "+16661234567"), "any");
        let none = call(&s, Call::default());
        assert_eq!(gateways(&none), ["any"]);
        use ExcludeReason::*;
        let why: Vec<_> = none.excluded.iter().map(|x| x.reason).collect();
        assert_eq!(why, [NoCaller, NoCaller, NoCaller]);
        let other = call(
            &s,
            Call {
                caller: Some("+33142685300"),
                ..Call::default()
            },
        );
        assert!(other.excluded.iter().all(|x| x.reason == CallerMismatch));
    }

    #[test]
    fn each_place_names_the_criterion_that_decided_it() {
        let mut older = prefix_route(10, None, "1", 3, 5);
        older.created_at -= Duration::hours(1);
        let s = snapshot(
            (1..=6).map(|n| carrier(&format!("gw{n}"), n)).collect(),
            vec![
                prefix_route(11, None, "1", 1, 1),
                prefix_route(12, None, "1555", 2, 2),
                regex_route(13, None, "^1", 2, 3),
                prefix_route(14, None, "1", 3, 4),
                older,
            ],
        );
        let d = call(&s, Call::default());
        assert_eq!(gateways(&d), ["gw1", "gw2", "gw3", "gw5", "gw4"]);
        use Criterion::*;
        assert_eq!(
            criteria(&d),
            [Priority, Priority, Specificity, Priority, Age]
        );
        let single = snapshot(
            vec![carrier("c", 1)],
            vec![prefix_route(10, None, "", 1, 1)],
        );
        assert_eq!(criteria(&call(&single, Call::default())), [Only]);
    }
}
