//! The routing snapshot: every tenant, carrier and enabled route of one configuration version,
//! with the lookups the hot path needs precomputed. Immutable once built; the publisher builds a
//! new one after each committed change and swaps it in, so readers never wait and never see a
//! half-applied change.

use std::cmp::Reverse;
use std::collections::BTreeSet;

use regex::Regex;
use serde::Serialize;
use uuid::Uuid;

use super::index::RouteIndex;
use super::{CostSource, FastMap, RoutingSettings};
use crate::model::{
    CallerPrefix, Carrier, CarrierStatus, Cidr, Cost, Digits, E164, MatchType, ProfileName, Rate,
    Route, RouteMatch, Schedule, Tenant, Weight,
};

#[derive(Debug)]
pub struct Snapshot {
    version: u64,
    pub(super) settings: RoutingSettings,
    tenants: FastMap<Uuid, Tenant>,
    /// Tenant dialplan context → tenant.
    contexts: FastMap<String, Uuid>,
    pub(super) carriers: FastMap<Uuid, Carrier>,
    /// Enabled routes in the order they are tried (DESIGN.md §3 rule 4); a route's position here
    /// is its rank in the index. Only what routing reads, under a third of a `model::Route`: the
    /// snapshot holds every route of the platform, and at a million routes its layout decides
    /// both its memory and how many cache misses a lookup makes (BENCHMARKS.md).
    pub(super) routes: Vec<RouteEntry>,
    /// Every route's name and pattern, back to back (one allocation instead of two per route).
    text: String,
    /// Tenant → its `max_cost` in the platform currency.
    pub(super) tenant_ceilings: FastMap<Uuid, Rate>,
    /// Tenant → its phone numbers with voice capability, as sorted integers
    /// ([`E164::key`]): 8 bytes a number, looked up by binary search.
    voice_numbers: FastMap<Uuid, Box<[u64]>>,
    pub(super) index: RouteIndex,
}

/// One enabled route as routing needs it, all per-call inputs worked out: a call parses and
/// compiles nothing.
#[derive(Debug)]
pub(super) struct RouteEntry {
    pub(super) id: Uuid,
    /// The tenant owning the route; `None` for a platform default route.
    pub(super) owner: Option<Uuid>,
    pub(super) carrier_id: Uuid,
    pub(super) priority: i64,
    pub(super) match_type: MatchType,
    /// The name, then the prefix digits (never `+`; `""` = every destination) or the regex,
    /// in [`Snapshot::text`].
    text: TextSpan,
    /// The route's cost, else its carrier's, in the platform currency.
    pub(super) cost: Option<(Rate, CostSource)>,
    pub(super) weight: Option<Weight>,
    /// Most routes have no number manipulation, caller rule or schedule: they pay one pointer.
    pub(super) rules: Option<Box<RouteRules>>,
}

/// The rarer parts of a route.
#[derive(Debug)]
pub(super) struct RouteRules {
    pub(super) strip_prefix: Digits,
    pub(super) add_prefix: Digits,
    pub(super) caller_prefix: Option<CallerPrefix>,
    /// The compiled `caller_regex`. `Some(None)` only if a pattern that parsed no longer
    /// compiles (a changed regex crate): the route then matches no caller.
    pub(super) caller_regex: Option<Option<Regex>>,
    pub(super) schedule: Option<Schedule>,
}

impl RouteRules {
    pub(super) fn has_caller_rule(&self) -> bool {
        self.caller_prefix.is_some() || self.caller_regex.is_some()
    }
}

/// A route's name or pattern: where it is in the snapshot, read only when it is shown. A
/// decision lists every route it considered, and the xml_curl path shows none of them: at a
/// million routes reading them cost each call a miss to main memory (BENCHMARKS.md, fourth
/// session). Route explain and `route-preview` read them as they serialise the decision.
#[derive(Clone, Copy)]
pub struct RouteText<'s> {
    text: &'s str,
    start: usize,
    len: u16,
}

impl<'s> RouteText<'s> {
    pub fn as_str(&self) -> &'s str {
        // Spans are made by `TextSpan::push` on this very text, so they are in range and on
        // char boundaries; an empty string is the harmless answer should that ever not hold.
        self.text
            .get(self.start..self.start + usize::from(self.len))
            .unwrap_or_default()
    }
}

impl std::fmt::Debug for RouteText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

impl PartialEq for RouteText<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Serialize for RouteText<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Where a route's name and, right after it, its pattern are in [`Snapshot::text`]. Both are
/// bounded by their parsers (100 characters, 256 bytes), so their lengths fit a `u16`.
#[derive(Debug, Clone, Copy)]
struct TextSpan {
    start: usize,
    name_len: u16,
    pattern_len: u16,
}

impl RouteEntry {
    /// Prefix before regex, longer prefix first.
    pub(super) fn specificity(&self) -> (u8, Reverse<u16>) {
        match self.match_type {
            MatchType::Prefix => (0, Reverse(self.text.pattern_len)),
            MatchType::Regex => (1, Reverse(0)),
        }
    }

    pub(super) fn strip_and_add(&self) -> Option<(&Digits, &Digits)> {
        self.rules
            .as_ref()
            .map(|r| (&r.strip_prefix, &r.add_prefix))
    }
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
        let index = RouteIndex::build(routes.iter().map(|r| (r.tenant_id, &r.matcher)));
        let in_currency = |c: &Cost| (c.currency == settings.currency).then_some(c.rate);
        let carriers: FastMap<Uuid, Carrier> = carriers.into_iter().map(|c| (c.id, c)).collect();
        // Both arrays are allocated once at their final size, so that the huge-page advice
        // (`memory::LargeBlocksOnHugePages`) comes before their first write. Grown by
        // doubling, or collected in place into the rows' buffer, their pages were written
        // first as 4 KiB pages and stayed so: at a million routes 164 of 201 MiB were on huge
        // pages that way, 184 MiB this way (BENCHMARKS.md, fourth session).
        let mut text = String::with_capacity(
            routes
                .iter()
                .map(|r| r.name.as_str().len() + r.matcher.pattern().len())
                .sum(),
        );
        let mut entries: Vec<RouteEntry> = Vec::with_capacity(routes.len());
        entries.extend(routes.into_iter().map(|route| {
            let (id, r) = (route.id, route.fields);
            let carrier_cost = carriers
                .get(&r.carrier_id)
                .and_then(|c| c.cost.as_ref())
                .and_then(in_currency);
            let cost = match r.criteria.cost.as_ref().and_then(in_currency) {
                Some(rate) => Some((rate, CostSource::Route)),
                None => carrier_cost.map(|rate| (rate, CostSource::Carrier)),
            };
            let pattern = r.matcher.pattern();
            let criteria = r.criteria;
            let plain = r.strip_prefix.as_str().is_empty()
                && r.add_prefix.as_str().is_empty()
                && !criteria.has_caller_rule()
                && criteria.schedule.is_none();
            RouteEntry {
                id,
                owner: r.tenant_id,
                carrier_id: r.carrier_id,
                priority: r.priority,
                match_type: r.matcher.match_type(),
                text: TextSpan::push(&mut text, r.name.as_str(), pattern),
                cost,
                weight: criteria.weight,
                rules: (!plain).then(|| {
                    Box::new(RouteRules {
                        strip_prefix: r.strip_prefix,
                        add_prefix: r.add_prefix,
                        caller_prefix: criteria.caller_prefix,
                        caller_regex: criteria.caller_regex.as_ref().map(|x| x.compile()),
                        schedule: criteria.schedule,
                    })
                }),
            }
        }));
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
            routes: entries,
            text,
            tenant_ceilings,
            voice_numbers: FastMap::default(),
            index,
        }
    }

    /// This snapshot with the tenants' phone numbers that carry voice (the caller IDs their
    /// calls may present under `own_numbers`, and what attestation A is given for).
    pub fn with_voice_numbers(mut self, numbers: Vec<(Uuid, E164)>) -> Snapshot {
        let mut by_tenant: FastMap<Uuid, Vec<u64>> = FastMap::default();
        for (tenant, number) in numbers {
            by_tenant.entry(tenant).or_default().push(number.key());
        }
        self.voice_numbers = by_tenant
            .into_iter()
            .map(|(tenant, mut keys)| {
                keys.sort_unstable();
                keys.dedup();
                (tenant, keys.into_boxed_slice())
            })
            .collect();
        self
    }

    /// Whether `number` (E.164 digits as an integer) is one of `tenant`'s voice numbers.
    pub fn owns_number(&self, tenant: Uuid, number: u64) -> bool {
        self.voice_numbers
            .get(&tenant)
            .is_some_and(|keys| keys.binary_search(&number).is_ok())
    }

    pub(super) fn route_name(&self, route: &RouteEntry) -> RouteText<'_> {
        RouteText {
            text: &self.text,
            start: route.text.start,
            len: route.text.name_len,
        }
    }

    pub(super) fn route_pattern(&self, route: &RouteEntry) -> RouteText<'_> {
        let span = route.text;
        RouteText {
            text: &self.text,
            start: span.start + usize::from(span.name_len),
            len: span.pattern_len,
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

    /// Every carrier, archived ones included, in no particular order.
    pub fn carriers(&self) -> impl Iterator<Item = &Carrier> {
        self.carriers.values()
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

impl TextSpan {
    fn push(text: &mut String, name: &str, pattern: &str) -> TextSpan {
        let len = |s: &str| u16::try_from(s.len()).expect("bounded by its parser");
        let span = TextSpan {
            start: text.len(),
            name_len: len(name),
            pattern_len: len(pattern),
        };
        text.push_str(name);
        text.push_str(pattern);
        span
    }
}
