//! `resolve`: the routing rules of DESIGN.md §3 over one snapshot.
//!
//! 1. A forced carrier that is usable by the tenant is the first leg; otherwise it is ignored
//!    and the decision says why.
//! 2. Candidates are the tenant's enabled routes that match; if none match, the platform
//!    default routes that match.
//! 3. They are tried in rank order (priority, prefix before regex, longer prefix, age); each
//!    carrier gives at most one leg, and unusable carriers are skipped with a reason.
//! 4. Each leg's number: route strip/add first, then carrier strip/add/suffix. A prefix route
//!    never strips implicitly.

use uuid::Uuid;

use super::{
    Considered, Decision, ForcedOutcome, Leg, Outcome, RouteRequest, RouteScope, SkipReason,
    Snapshot,
};
use crate::model::{Carrier, CarrierStatus, DialNumber, Digits, HeaderValue, Route, RouteMatch};

impl Snapshot {
    /// The legs for one call, in order, and why. Never fails: a call nothing can carry gets no
    /// legs, and the caller refuses it.
    pub fn resolve(&self, request: &RouteRequest<'_>) -> Decision {
        // An unknown tenant has no routes of its own and may use platform carriers only.
        let tenant_id = request.tenant_id.filter(|t| self.tenant(*t).is_some());
        let mut legs = LegList {
            snapshot: self,
            request,
            legs: Vec::new(),
        };
        let forced = request.forced_carrier.map(|carrier_id| ForcedOutcome {
            carrier_id,
            outcome: match self.usable_carrier(carrier_id, tenant_id) {
                Ok(carrier) => legs.add(carrier, None),
                Err(reason) => Outcome::skipped(reason),
            },
        });

        let digits = request.destination.digits();
        let mut ranks = Vec::new();
        let mut scope = RouteScope::Platform;
        if let Some(index) = tenant_id.and_then(|t| self.indexes.get(&Some(t))) {
            index.matching(digits, &mut ranks);
            if !ranks.is_empty() {
                scope = RouteScope::Tenant;
            }
        }
        if ranks.is_empty()
            && let Some(index) = self.indexes.get(&None)
        {
            index.matching(digits, &mut ranks);
        }
        ranks.sort_unstable();
        ranks.dedup();

        let considered = ranks
            .into_iter()
            .map(|rank| {
                let route = &self.routes[rank as usize];
                // A route may use its owner's carriers and platform carriers only.
                let carrier = self.usable_carrier(route.carrier_id, route.tenant_id);
                let outcome = match carrier {
                    Ok(carrier) => legs.add(carrier, Some(route)),
                    Err(reason) => Outcome::skipped(reason),
                };
                considered(
                    route,
                    self.visible_carrier(route.carrier_id, route.tenant_id),
                    outcome,
                )
            })
            .collect();
        Decision {
            legs: legs.legs,
            scope,
            forced,
            considered,
        }
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

fn considered(route: &Route, carrier: Option<&Carrier>, outcome: Outcome) -> Considered {
    let pattern = match &route.matcher {
        RouteMatch::Prefix(p) => p.digits().to_string(),
        RouteMatch::Regex(r) => r.to_string(),
    };
    Considered {
        route_id: route.id,
        route_name: route.name.to_string(),
        priority: route.priority,
        match_type: route.matcher.match_type(),
        pattern,
        carrier_id: route.carrier_id,
        gateway_name: carrier.map(|c| c.gateway_name.clone()),
        outcome,
    }
}

/// The legs chosen so far for one call.
struct LegList<'a> {
    snapshot: &'a Snapshot,
    request: &'a RouteRequest<'a>,
    legs: Vec<Leg>,
}

impl LegList<'_> {
    /// Adds a leg to `carrier` (via `route`, or forced when `None`), or says why not.
    fn add(&mut self, carrier: &Carrier, route: Option<&Route>) -> Outcome {
        if self.legs.iter().any(|l| l.carrier_id == carrier.id) {
            return Outcome::skipped(SkipReason::DuplicateCarrier);
        }
        if self.legs.len() >= self.snapshot.settings.max_legs {
            return Outcome::skipped(SkipReason::MaxLegsReached);
        }
        let route_steps = route.map(|r| (&r.strip_prefix, &r.add_prefix));
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
        });
        Outcome::Used {
            position: self.legs.len(),
        }
    }

    /// The carrier's `tech_headers`, then the attestation header when the caller asked for a
    /// level and the carrier names a header for it (which then replaces a tech header of the
    /// same name, so the leg never carries the header twice).
    fn headers(&self, carrier: &Carrier) -> Vec<(crate::model::HeaderName, HeaderValue)> {
        let attestation = self
            .request
            .attestation
            .zip(carrier.attestation_header.as_ref());
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
    let mut number = destination.to_string();
    for (strip, add) in steps {
        if let Some(rest) = number.strip_prefix(strip.as_str()) {
            number = rest.to_string();
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
        Attestation, CarrierType, Destination, Direction, FailoverCodes, HeaderName,
    };
    use crate::routing::RoutingSettings;

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

    fn resolve(s: &Snapshot, tenant: Option<u128>, dest: &str, forced: Option<u128>) -> Decision {
        let destination = Destination::parse(dest).unwrap();
        s.resolve(&RouteRequest {
            tenant_id: tenant.map(id),
            destination: &destination,
            forced_carrier: forced.map(id),
            caller: None,
            attestation: None,
            now: Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap(),
        })
    }

    fn gateways(d: &Decision) -> Vec<&str> {
        d.legs.iter().map(|l| l.gateway_name.as_str()).collect()
    }

    fn reasons(d: &Decision) -> Vec<Option<SkipReason>> {
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
            attestation: Some(Attestation::B),
            now: Utc::now(),
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
}
