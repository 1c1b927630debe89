//! The routing snapshot: every tenant, carrier and enabled route of one configuration version,
//! with the lookups the hot path needs precomputed. Immutable once built; the publisher builds a
//! new one after each committed change and swaps it in, so readers never wait and never see a
//! half-applied change.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};

use uuid::Uuid;

use regex::Regex;

use super::index::RouteIndex;
use super::{CostSource, RoutingSettings};
use crate::model::{
    Carrier, CarrierStatus, Cidr, Cost, ProfileName, Rate, Route, RouteMatch, Tenant,
};

#[derive(Debug)]
pub struct Snapshot {
    version: u64,
    pub(super) settings: RoutingSettings,
    tenants: HashMap<Uuid, Tenant>,
    /// Tenant dialplan context → tenant.
    contexts: HashMap<String, Uuid>,
    pub(super) carriers: HashMap<Uuid, Carrier>,
    /// Enabled routes in the order they are tried (DESIGN.md §3 rule 4); a route's position here
    /// is its rank in the indexes.
    pub(super) routes: Vec<Route>,
    /// What each route needs per call beyond the route itself, at the same position as in
    /// `routes`: worked out here so that a call parses and compiles nothing.
    pub(super) prepared: Vec<Prepared>,
    /// Tenant → its `max_cost` in the platform currency.
    pub(super) tenant_ceilings: HashMap<Uuid, Rate>,
    /// One index per scope: `Some(tenant)` for a tenant's own routes, `None` for the platform
    /// default routes.
    pub(super) indexes: HashMap<Option<Uuid>, RouteIndex>,
}

/// The per-call inputs of one route, precomputed.
#[derive(Debug)]
pub(super) struct Prepared {
    /// The compiled `caller_regex`. `Some(None)` only if a pattern that parsed no longer
    /// compiles (a changed regex crate): the route then matches no caller.
    pub(super) caller_regex: Option<Option<Regex>>,
    /// The route's cost, else its carrier's, in the platform currency.
    pub(super) cost: Option<(Rate, CostSource)>,
}

/// The order routes are tried in: priority ascending; at equal priority prefix routes before
/// regex routes and the longer prefix first; then creation order (ids are UUIDv7, so the id
/// breaks a tie of equal timestamps in creation order too).
fn try_order(route: &Route) -> impl Ord + use<> {
    let (kind, prefix_len) = match &route.matcher {
        RouteMatch::Prefix(p) => (0u8, p.digits().len()),
        RouteMatch::Regex(_) => (1u8, 0),
    };
    (
        route.priority,
        kind,
        Reverse(prefix_len),
        route.created_at,
        route.id,
    )
}

impl Snapshot {
    pub fn build(
        version: u64,
        tenants: Vec<Tenant>,
        carriers: Vec<Carrier>,
        routes: Vec<Route>,
        settings: RoutingSettings,
    ) -> Snapshot {
        let contexts = tenants
            .iter()
            .filter_map(|t| t.context.as_ref().map(|c| (c.to_string(), t.id)))
            .collect();
        let mut routes: Vec<Route> = routes.into_iter().filter(|r| r.enabled).collect();
        routes.sort_by_cached_key(try_order);
        let mut by_scope: HashMap<Option<Uuid>, Vec<(u32, &RouteMatch)>> = HashMap::new();
        for (rank, route) in routes.iter().enumerate() {
            let rank = u32::try_from(rank).expect("fewer than 2^32 routes");
            by_scope
                .entry(route.tenant_id)
                .or_default()
                .push((rank, &route.matcher));
        }
        let indexes = by_scope
            .into_iter()
            .map(|(scope, entries)| (scope, RouteIndex::build(entries.into_iter())))
            .collect();
        let in_currency = |c: &Cost| (c.currency == settings.currency).then_some(c.rate);
        let carriers: HashMap<Uuid, Carrier> = carriers.into_iter().map(|c| (c.id, c)).collect();
        let prepared = routes
            .iter()
            .map(|r| {
                let carrier_cost = carriers
                    .get(&r.carrier_id)
                    .and_then(|c| c.cost.as_ref())
                    .and_then(in_currency);
                let cost = match r.criteria.cost.as_ref().and_then(in_currency) {
                    Some(rate) => Some((rate, CostSource::Route)),
                    None => carrier_cost.map(|rate| (rate, CostSource::Carrier)),
                };
                Prepared {
                    caller_regex: r.criteria.caller_regex.as_ref().map(|x| x.compile()),
                    cost,
                }
            })
            .collect();
        let tenant_ceilings = tenants
            .iter()
            .filter_map(|t| Some((t.id, t.max_cost.as_ref().and_then(in_currency)?)))
            .collect();
        Snapshot {
            version,
            settings,
            contexts,
            tenants: tenants.into_iter().map(|t| (t.id, t)).collect(),
            carriers,
            routes,
            prepared,
            tenant_ceilings,
            indexes,
        }
    }

    /// The configuration version this snapshot was built from.
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn settings(&self) -> &RoutingSettings {
        &self.settings
    }

    pub fn tenant(&self, id: Uuid) -> Option<&Tenant> {
        self.tenants.get(&id)
    }

    /// The tenant whose `context` this is.
    pub fn tenant_by_context(&self, context: &str) -> Option<&Tenant> {
        self.contexts
            .get(context)
            .and_then(|id| self.tenants.get(id))
    }

    pub fn carrier(&self, id: Uuid) -> Option<&Carrier> {
        self.carriers.get(&id)
    }

    /// Every carrier that should run as a sofia gateway (active, SIP, outbound-capable), of one
    /// profile or of all, sorted by gateway name. sofia.conf and the Event Socket reconciler
    /// both start from this.
    pub fn gateways(&self, profile: Option<&ProfileName>) -> Vec<&Carrier> {
        let mut out: Vec<&Carrier> = self
            .carriers
            .values()
            .filter(|c| c.is_gateway() && profile.is_none_or(|p| &c.profile == p))
            .collect();
        out.sort_by(|a, b| a.gateway_name.cmp(&b.gateway_name).then(a.id.cmp(&b.id)));
        out
    }

    /// The inbound IPs of every active carrier, whatever its direction, sorted and without
    /// duplicates: the `trunkline_carriers` list of acl.conf.
    pub fn inbound_cidrs(&self) -> Vec<Cidr> {
        self.carriers
            .values()
            .filter(|c| c.status == CarrierStatus::Active)
            .flat_map(|c| c.inbound_ips.iter().copied())
            .collect::<BTreeSet<Cidr>>()
            .into_iter()
            .collect()
    }
}
