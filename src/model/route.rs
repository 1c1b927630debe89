//! An outbound route, defined once: [`NewRoute`] holds every writable field, [`Route`] is that
//! plus what the store assigns, and [`RouteInput`] is the written form that
//! [`NewRoute::parse`] turns into a route with every rule applied. The API's request body, its
//! view, a PATCH's base and VoIPBIN's routes are all this one form.

use std::ops::{Deref, DerefMut};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::criteria::{CallerPrefix, Currency, RouteCriteria, Schedule, ScheduleSpec, Weight};
use super::entities::MatchType;
use super::input::{CostInput, FieldErrors, parse_cost, parse_schedule};
use super::values::*;

/// How a route matches destinations.
#[derive(Debug, Clone, PartialEq)]
pub enum RouteMatch {
    Prefix(RoutePrefix),
    Regex(RouteRegex),
}

impl RouteMatch {
    pub fn match_type(&self) -> MatchType {
        match self {
            Self::Prefix(_) => MatchType::Prefix,
            Self::Regex(_) => MatchType::Regex,
        }
    }

    /// The prefix digits (never `+`; `""` = every destination) or the regex, as written.
    pub fn pattern(&self) -> &str {
        match self {
            Self::Prefix(p) => p.digits(),
            Self::Regex(r) => r.as_str(),
        }
    }
}

/// An outbound route: destinations matching it go to `carrier_id`, tried in `priority` order.
/// Reads of the writable fields go through `Deref` (`route.priority`).
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub fields: NewRoute,
}

impl Deref for Route {
    type Target = NewRoute;

    fn deref(&self) -> &NewRoute {
        &self.fields
    }
}

/// Tests and fixtures change one field of a stored route in place.
impl DerefMut for Route {
    fn deref_mut(&mut self) -> &mut NewRoute {
        &mut self.fields
    }
}

/// The writable fields of an outbound route. Built by [`NewRoute::parse`].
#[derive(Debug, Clone, PartialEq)]
pub struct NewRoute {
    /// `None` for a platform default route, used for tenants with no matching route of their own.
    pub tenant_id: Option<Uuid>,
    pub name: DisplayName,
    pub matcher: RouteMatch,
    pub carrier_id: Uuid,
    /// Lower is tried first.
    pub priority: i64,
    pub strip_prefix: Digits,
    pub add_prefix: Digits,
    pub enabled: bool,
    /// Schedule, cost, weight and caller rules (all optional).
    pub criteria: RouteCriteria,
    /// Free notes (VoIPBIN's `detail`).
    pub detail: Detail,
}

const PRIORITY_RANGE: std::ops::RangeInclusive<i64> = -1_000_000..=1_000_000;

/// An outbound route as written (POST, and PATCH merged over the stored route), and as shown.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(as = RouteBody)]
#[serde(deny_unknown_fields)]
pub struct RouteInput {
    /// Owner; null = a platform default route (platform admins only).
    #[serde(default)]
    pub tenant_id: Option<Uuid>,
    pub name: String,
    /// Free notes, up to 1,000 characters.
    #[serde(default)]
    pub detail: String,
    #[serde(default = "default_match_type")]
    pub match_type: MatchType,
    /// For `prefix` routes: digits with an optional leading `+`; `""` or `"all"` match
    /// everything. Shown as the digits matched (`""` matches every destination); null for
    /// regex routes.
    #[serde(default)]
    pub prefix: Option<String>,
    /// For `regex` routes: a digits-only pattern matched against the destination without `+`.
    #[serde(default)]
    pub regex: Option<String>,
    pub carrier_id: Uuid,
    /// Lower is tried first (default 100).
    #[serde(default = "default_priority")]
    pub priority: i64,
    #[serde(default)]
    pub strip_prefix: String,
    #[serde(default)]
    pub add_prefix: String,
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// When the route may be used (local time of an IANA zone); null = always.
    #[serde(default)]
    pub schedule: Option<ScheduleSpec>,
    /// Per-minute cost; null = the carrier's `cost`.
    #[serde(default)]
    pub cost: Option<CostInput>,
    /// Share in a weighted split among routes of equal priority and cost, 0 to 10000 (0 = last
    /// resort); null counts as 1 once a route of the group has a weight.
    #[serde(default)]
    pub weight: Option<i64>,
    /// Only calls whose caller ID number starts with these digits (`+` ignored).
    #[serde(default)]
    pub caller_prefix: Option<String>,
    /// Only calls whose caller ID number (without `+`) matches this digits-only pattern.
    #[serde(default)]
    pub caller_regex: Option<String>,
}

fn default_match_type() -> MatchType {
    MatchType::Prefix
}
fn default_priority() -> i64 {
    100
}
fn default_enabled() -> bool {
    true
}

impl RouteInput {
    /// The written form with every POST default, for the settings a client has no field for
    /// (VoIPBIN's routes). `name` is empty and `carrier_id` nil: the client must set them.
    pub fn defaults() -> Self {
        RouteInput {
            tenant_id: None,
            name: String::new(),
            detail: String::new(),
            match_type: default_match_type(),
            prefix: None,
            regex: None,
            carrier_id: Uuid::nil(),
            priority: default_priority(),
            strip_prefix: String::new(),
            add_prefix: String::new(),
            enabled: default_enabled(),
            schedule: None,
            cost: None,
            weight: None,
            caller_prefix: None,
            caller_regex: None,
        }
    }
}

/// The form that would recreate `r`: the base a PATCH merges over, and what is shown.
impl From<&NewRoute> for RouteInput {
    fn from(r: &NewRoute) -> Self {
        let (prefix, regex) = match &r.matcher {
            RouteMatch::Prefix(p) => (Some(p.to_string()), None),
            RouteMatch::Regex(x) => (None, Some(x.to_string())),
        };
        RouteInput {
            tenant_id: r.tenant_id,
            name: r.name.to_string(),
            detail: r.detail.to_string(),
            match_type: r.matcher.match_type(),
            prefix,
            regex,
            carrier_id: r.carrier_id,
            priority: r.priority,
            strip_prefix: r.strip_prefix.to_string(),
            add_prefix: r.add_prefix.to_string(),
            enabled: r.enabled,
            schedule: r.criteria.schedule.as_ref().map(Schedule::spec),
            cost: r.criteria.cost.as_ref().map(CostInput::from),
            weight: r.criteria.weight.map(|w| i64::from(w.get())),
            caller_prefix: r
                .criteria
                .caller_prefix
                .as_ref()
                .map(|p| p.as_str().to_string()),
            caller_regex: r.criteria.caller_regex.as_ref().map(ToString::to_string),
        }
    }
}

impl NewRoute {
    /// Parses every field and the rules between them (the matcher named by `match_type`),
    /// naming every refused field at once. A cost must be in `currency`, the platform's.
    pub fn parse(input: RouteInput, currency: &Currency) -> Result<NewRoute, FieldErrors> {
        let mut e = FieldErrors::default();
        let name = e.parse("name", &input.name, DisplayName::parse);
        let detail = e.parse("detail", &input.detail, Detail::parse);
        let matcher = match (input.match_type, &input.prefix, &input.regex) {
            (MatchType::Prefix, Some(p), None) => e
                .parse("prefix", p, RoutePrefix::parse)
                .map(RouteMatch::Prefix),
            (MatchType::Prefix, None, _) => {
                e.add(
                    "prefix",
                    "required for a prefix route (\"all\" matches every destination)",
                );
                None
            }
            (MatchType::Prefix, Some(_), Some(_)) => {
                e.add("regex", "must be null for a prefix route");
                None
            }
            (MatchType::Regex, None, Some(x)) => e
                .parse("regex", x, RouteRegex::parse)
                .map(RouteMatch::Regex),
            (MatchType::Regex, _, None) => {
                e.add("regex", "required for a regex route");
                None
            }
            (MatchType::Regex, Some(_), Some(_)) => {
                e.add("prefix", "must be null for a regex route");
                None
            }
        };
        if !PRIORITY_RANGE.contains(&input.priority) {
            e.add("priority", "must be between -1000000 and 1000000");
        }
        let strip_prefix = e.parse("strip_prefix", &input.strip_prefix, Digits::parse);
        let add_prefix = e.parse("add_prefix", &input.add_prefix, Digits::parse);
        let schedule = parse_schedule(&mut e, "schedule", input.schedule.as_ref());
        let cost = parse_cost(&mut e, "cost", input.cost.as_ref(), currency);
        let weight = match input.weight {
            None => Some(None),
            Some(w) => e
                .parse("weight", &w.to_string(), |_| Weight::new(w))
                .map(Some),
        };
        let caller_prefix = e.parse_opt(
            "caller_prefix",
            input.caller_prefix.as_deref(),
            CallerPrefix::parse,
        );
        let caller_regex = e.parse_opt(
            "caller_regex",
            input.caller_regex.as_deref(),
            RouteRegex::parse,
        );
        e.finish_with(|| {
            Some(NewRoute {
                tenant_id: input.tenant_id,
                name: name?,
                matcher: matcher?,
                carrier_id: input.carrier_id,
                priority: input.priority,
                strip_prefix: strip_prefix?,
                add_prefix: add_prefix?,
                enabled: input.enabled,
                criteria: RouteCriteria {
                    schedule: schedule?,
                    cost: cost?,
                    weight: weight?,
                    caller_prefix: caller_prefix?,
                    caller_regex: caller_regex?,
                },
                detail: detail?,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures;

    #[test]
    fn the_recreating_form_parses_back_to_the_same_route() {
        for r in [
            fixtures::prefix_route(1, Some(2), "4420", 5, 3),
            fixtures::regex_route(1, None, "^44[0-9]+$", 5, 3),
        ] {
            let input = RouteInput::from(&r.fields);
            assert_eq!(NewRoute::parse(input, &Currency::usd()).unwrap(), r.fields);
        }
    }

    #[test]
    fn a_prefix_route_refuses_a_regex_too() {
        let input = RouteInput {
            name: "both".into(),
            prefix: Some("44".into()),
            regex: Some("^44$".into()),
            ..RouteInput::defaults()
        };
        let refused: Vec<_> = NewRoute::parse(input, &Currency::usd())
            .unwrap_err()
            .into_iter()
            .map(|(field, _)| field)
            .collect();
        assert_eq!(refused, ["regex"]);
    }
}
