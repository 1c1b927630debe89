//! Learning from the calls trunkline routed: the attempts `ingest` attributes from the nodes'
//! leg hangups become attempt records (stored in batches by [`recorder`]), quality figures over
//! rolling windows ([`stats`]) and the health table the xml_curl path reads to move sick
//! carriers later ([`health`]); breakers opening and closing and gateways going down and up are
//! signalled ([`signals`]: log, counter, optional webhook).
//!
//! [`Quality`] holds the live state behind one short mutex that no await ever holds; the fetch
//! path never takes it: it reads the last published [`HealthView`] from an `ArcSwap`, which
//! changes only when a breaker or a gateway does. Ingestion takes it for every leg, so a report
//! holds it only to copy out sums ([`QualityCopy`]) and computes, renders and serialises after:
//! `/metrics` reads one key per carrier (quality is also kept by carrier alone), the stats API
//! one pass over the keys (issue 36).

pub mod health;
pub mod recorder;
pub mod signals;
pub mod stats;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use chrono::Utc;
use serde::Serialize;
use uuid::Uuid;

use self::health::{BreakerSettings, Demotion, HealthView, OpenReason, Transition, Verdict};
use self::signals::{Signal, SignalKind, Signals};
use self::stats::{Rolling, Tally, WindowStats};
use crate::model::{Attempt, FailoverCodes};

/// The breaker thresholds: one default, and overrides per carrier (by gateway name, from the
/// configuration file).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QualitySettings {
    pub breaker: BreakerSettings,
    pub per_gateway: HashMap<String, BreakerSettings>,
}

impl QualitySettings {
    pub fn breaker_for(&self, gateway: &str) -> &BreakerSettings {
        self.per_gateway.get(gateway).unwrap_or(&self.breaker)
    }
}

/// Where a carrier's breaker stands (`quality::health` has the rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    /// The value of `trunkline_carrier_breaker_state`.
    pub fn gauge(self) -> f64 {
        match self {
            BreakerState::Closed => 0.0,
            BreakerState::Open => 1.0,
            BreakerState::HalfOpen => 2.0,
        }
    }
}

/// A carrier's breaker as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct BreakerStatus {
    /// `closed`, `open` or `half_open`.
    pub state: BreakerState,
    pub reason: Option<OpenReason>,
    /// Seconds until an open breaker turns half-open.
    pub seconds_left: Option<u64>,
    pub consecutive_failures: u32,
}

impl BreakerStatus {
    /// A carrier without a breaker yet.
    const CLOSED: BreakerStatus = BreakerStatus {
        state: BreakerState::Closed,
        reason: None,
        seconds_left: None,
        consecutive_failures: 0,
    };
}

/// One carrier's quality.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CarrierQuality {
    pub carrier_id: Uuid,
    pub breaker: BreakerStatus,
    /// By window: `5m`, `1h`, `24h`.
    pub windows: BTreeMap<&'static str, WindowStats>,
    /// The same per route that sent calls to this carrier (its prefix is the destination
    /// prefix; `None`: a forced carrier).
    pub by_route: Vec<RouteQuality>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RouteQuality {
    pub route_id: Option<Uuid>,
    pub windows: BTreeMap<&'static str, WindowStats>,
}

/// What one node last reported of its gateways.
#[derive(Debug, Clone, Default, PartialEq)]
struct NodeGateways {
    /// The node's Core-UUID, which its fetches carry.
    core_uuid: Option<String>,
    down: HashSet<String>,
    /// Connected: the report is current. A node whose connection is down counts as having
    /// no gateway down, but its last report is kept to judge the next against.
    known: bool,
}

#[derive(Default)]
struct State {
    breakers: HashMap<Uuid, (health::Breaker, u32)>,
    /// Gateways each node last reported DOWN, by switch id.
    down: HashMap<Uuid, NodeGateways>,
    /// By carrier, the call's tenant and the route.
    rolling: Rolling<(Uuid, Option<Uuid>, Option<Uuid>)>,
    /// The same by carrier alone, kept beside it so that `/metrics` (scraped by anyone who can
    /// reach it, as often as they like) costs one key per carrier instead of a pass over all.
    by_carrier: Rolling<Uuid>,
    last_prune_minute: i64,
    /// The legs observed lately, so a repeated hangup counts once.
    recent_legs: RecentLegs,
}

/// The last [`RecentLegs::KEPT`] leg ids, oldest first: bounded, and far more than the legs
/// whose hangup could be delivered twice (a repeat follows its first within a connection).
#[derive(Default)]
struct RecentLegs {
    order: std::collections::VecDeque<Uuid>,
    seen: HashSet<Uuid>,
}

impl RecentLegs {
    const KEPT: usize = 65_536;

    /// `false` when `leg` was seen already.
    fn insert(&mut self, leg: Uuid) -> bool {
        if !self.seen.insert(leg) {
            return false;
        }
        self.order.push_back(leg);
        if self.order.len() > Self::KEPT
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        true
    }
}

/// The last published [`HealthView`], swapped whenever a breaker or a node's gateway changes.
pub type HealthViews = Arc<ArcSwap<HealthView>>;

/// The live quality and health of every carrier.
pub struct Quality {
    settings: QualitySettings,
    state: Mutex<State>,
    view: HealthViews,
    signals: Signals,
}

fn minute_now() -> i64 {
    Utc::now().timestamp().div_euclid(60)
}

impl Quality {
    pub fn new(settings: QualitySettings, signals: Signals) -> Quality {
        Quality {
            settings,
            state: Mutex::new(State::default()),
            view: Arc::new(ArcSwap::from_pointee(HealthView::default())),
            signals,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What the fetch path reads.
    pub fn view(&self) -> arc_swap::Guard<Arc<HealthView>> {
        self.view.load()
    }

    /// Where the view is published, for a reader that needs nothing else of quality (the
    /// xml_curl endpoint).
    pub fn views(&self) -> HealthViews {
        self.view.clone()
    }

    /// Counts one attempt and judges its carrier by the leg's failover codes; `false` (and
    /// nothing counted) for a leg already observed, should its hangup arrive twice.
    pub fn observe(&self, attempt: &Attempt, failover: &FailoverCodes, carrier_name: &str) -> bool {
        let verdict = health::verdict(attempt, failover);
        let settings = self.settings.breaker_for(&attempt.gateway);
        let minute = minute_now();
        let mut state = self.lock();
        if !state.recent_legs.insert(attempt.leg_id) {
            return false;
        }
        state.rolling.add(
            (attempt.carrier_id, attempt.tenant_id, attempt.route_id),
            minute,
            attempt,
        );
        state.by_carrier.add(attempt.carrier_id, minute, attempt);
        if minute - state.last_prune_minute >= 60 {
            state.rolling.prune(minute);
            state.by_carrier.prune(minute);
            state.last_prune_minute = minute;
        }
        let (breaker, one_in) = state.breakers.entry(attempt.carrier_id).or_default();
        *one_in = settings.half_open_one_in;
        let before = breaker.demotion();
        let transition = breaker.observe(verdict, Utc::now(), settings);
        // Also when only the wait changed: a failure while open restarts it, and the fetch
        // path must not start trials before the breaker would.
        if breaker.demotion() != before {
            self.publish(&state);
        }
        drop(state);
        if let Some(t) = transition {
            let (kind, detail) = match t {
                Transition::Opened(reason) => (SignalKind::BreakerOpened, Some(reason.to_string())),
                Transition::Closed => (SignalKind::BreakerClosed, None),
            };
            self.signals.send(Signal {
                kind,
                carrier_id: Some(attempt.carrier_id),
                carrier: Some(carrier_name.to_string()),
                gateway: attempt.gateway.clone(),
                switch: None,
                detail,
                at: Utc::now(),
            });
        }
        if verdict == Verdict::CarrierFailed {
            metrics::counter!("trunkline_carrier_failures_total").increment(1);
        }
        true
    }

    /// The gateways one node reports DOWN right now (after a gateway list or a gateway event);
    /// `None` when the node's state is unknown (disconnected): its gateways then count as up
    /// until it reports again, and the change is judged against what it last reported, so a
    /// gateway that came back while the connection was down is signalled up then.
    pub fn node_gateways(
        &self,
        switch_id: Uuid,
        switch_name: &str,
        core_uuid: Option<&str>,
        down: Option<HashSet<String>>,
    ) {
        let mut state = self.lock();
        let node = state.down.entry(switch_id).or_default();
        let before = node.clone();
        match down {
            Some(d) => {
                *node = NodeGateways {
                    core_uuid: core_uuid.map(str::to_string),
                    down: d,
                    known: true,
                };
            }
            None => node.known = false,
        }
        let after = node.clone();
        if before == after {
            return;
        }
        self.publish(&state);
        drop(state);
        if !after.known {
            return;
        }
        let went_down = after
            .down
            .difference(&before.down)
            .map(|g| (g, SignalKind::GatewayDown));
        let came_up = before
            .down
            .difference(&after.down)
            .map(|g| (g, SignalKind::GatewayUp));
        for (gateway, kind) in went_down.chain(came_up) {
            self.signals.send(Signal {
                kind,
                carrier_id: None,
                carrier: None,
                gateway: gateway.clone(),
                switch: Some(switch_name.to_string()),
                detail: None,
                at: Utc::now(),
            });
        }
    }

    /// Rebuilds the view the fetch path reads. Called with the state locked, on a change.
    fn publish(&self, state: &State) {
        let breakers = state
            .breakers
            .iter()
            .filter_map(|(id, (b, one_in))| Some((*id, (b.demotion()?, *one_in))))
            .collect();
        let down = state
            .down
            .values()
            .filter(|n| n.known && !n.down.is_empty())
            .filter_map(|n| Some((n.core_uuid.clone()?, n.down.clone())))
            .collect();
        self.view.store(Arc::new(HealthView::new(breakers, down)));
    }

    fn breaker_status(&self, state: &State, carrier_id: Uuid) -> BreakerStatus {
        let Some((breaker, _)) = state.breakers.get(&carrier_id) else {
            return BreakerStatus::CLOSED;
        };
        let now = Utc::now();
        let (state, reason, seconds_left) = match breaker.demotion() {
            None => (BreakerState::Closed, None, None),
            Some(Demotion::Open { until, reason }) if now < until => (
                BreakerState::Open,
                Some(reason),
                Some(health::seconds_until(until, now)),
            ),
            Some(Demotion::Open { reason, .. } | Demotion::HalfOpen { reason }) => {
                (BreakerState::HalfOpen, Some(reason), None)
            }
        };
        BreakerStatus {
            state,
            reason,
            seconds_left,
            consecutive_failures: breaker.consecutive_failures(),
        }
    }

    /// One carrier's quality (all zero for a carrier that carried nothing): all its traffic, or
    /// only the calls of `tenant` (what a tenant admin may see of a shared carrier).
    pub fn carrier(&self, carrier_id: Uuid, tenant: Option<Uuid>) -> CarrierQuality {
        self.copy(|id| (id == carrier_id).then_some(tenant), true)
            .carrier(carrier_id)
    }

    /// What a report of many carriers needs, copied out in one pass over the keys under the
    /// lock (ingestion takes it for every leg), so that the report is computed and rendered
    /// without it. `select(carrier)`: `None` leaves the carrier out, `Some(tenant)` counts its
    /// calls, only those of `tenant` when given. `by_route`: also per route.
    pub fn copy(
        &self,
        select: impl Fn(Uuid) -> Option<Option<Uuid>>,
        by_route: bool,
    ) -> QualityCopy {
        let minute = minute_now();
        let state = self.lock();
        let tallies = state.rolling.tally(
            |&(carrier, tenant, route)| {
                let counted = select(carrier)?;
                let visible = counted.is_none_or(|only| tenant == Some(only));
                visible.then_some((carrier, by_route.then_some(route)))
            },
            minute,
        );
        let breakers = self.breakers(&state, |id| select(id).is_some());
        drop(state);
        QualityCopy::new(breakers, tallies)
    }

    /// [`Quality::copy`] of the `selected` carriers' whole traffic, not by route: one key per
    /// carrier is read, however many routes and tenants it served.
    pub fn copy_totals(&self, selected: impl Fn(Uuid) -> bool) -> QualityCopy {
        let minute = minute_now();
        let state = self.lock();
        let tallies = state.by_carrier.tally(
            |&carrier| selected(carrier).then_some((carrier, None)),
            minute,
        );
        let breakers = self.breakers(&state, selected);
        drop(state);
        QualityCopy::new(breakers, tallies)
    }

    /// The breaker of every `selected` carrier that has one.
    fn breakers(
        &self,
        state: &State,
        selected: impl Fn(Uuid) -> bool,
    ) -> HashMap<Uuid, BreakerStatus> {
        state
            .breakers
            .keys()
            .filter(|id| selected(**id))
            .map(|id| (*id, self.breaker_status(state, *id)))
            .collect()
    }

    /// Every carrier that carried something in the last day, or whose breaker is not closed.
    pub fn carriers(&self) -> Vec<Uuid> {
        let state = self.lock();
        let mut ids: Vec<Uuid> = state
            .rolling
            .keys()
            .map(|(c, _, _)| *c)
            .chain(
                state
                    .breakers
                    .iter()
                    .filter(|(_, (b, _))| b.demotion().is_some())
                    .map(|(id, _)| *id),
            )
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Sets the per-carrier gauges `/metrics` shows, just before a scrape renders them:
    /// `trunkline_carrier_{attempts,answered,asr,pdd_p95_seconds}{carrier,window}` and
    /// `trunkline_carrier_breaker_state{carrier}` (0 closed, 1 open, 2 half-open). Labels are
    /// gateway names and the three window names: bounded by the carriers configured. Per route
    /// is left to the API (routes can number in the hundreds of thousands).
    pub fn export_gauges(&self, snapshot: &crate::routing::Snapshot) {
        let copy = self.copy_totals(|id| snapshot.carrier(id).is_some());
        for id in copy.carriers() {
            let Some(carrier) = snapshot.carrier(id) else {
                continue;
            };
            let label = carrier.gateway_name.to_string();
            let q = copy.carrier(id);
            for (window, w) in &q.windows {
                let labels = [
                    ("carrier", label.clone()),
                    ("window", (*window).to_string()),
                ];
                metrics::gauge!("trunkline_carrier_attempts", &labels).set(f64::from(w.attempts));
                metrics::gauge!("trunkline_carrier_answered", &labels).set(f64::from(w.answered));
                metrics::gauge!("trunkline_carrier_asr", &labels).set(w.asr.unwrap_or(0.0));
                metrics::gauge!("trunkline_carrier_pdd_p95_seconds", &labels)
                    .set(w.pdd_p95_ms.map_or(0.0, |ms| f64::from(ms) / 1000.0));
            }
            metrics::gauge!("trunkline_carrier_breaker_state", "carrier" => label)
                .set(q.breaker.state.gauge());
        }
    }
}

/// Carriers' quality as [`Quality::copy`] took it: owns its data, so reading it never holds
/// up ingestion.
#[derive(Debug, Default)]
pub struct QualityCopy {
    /// The breaker of every selected carrier that has one.
    breakers: HashMap<Uuid, BreakerStatus>,
    /// The counted calls of every selected carrier that has any.
    carriers: BTreeMap<Uuid, CarrierTally>,
}

#[derive(Debug, Default)]
struct CarrierTally {
    total: Tally,
    /// Empty unless copied by route.
    by_route: Vec<(Option<Uuid>, Tally)>,
}

impl QualityCopy {
    fn new(
        breakers: HashMap<Uuid, BreakerStatus>,
        tallies: HashMap<(Uuid, Option<Option<Uuid>>), Tally>,
    ) -> QualityCopy {
        let mut carriers: BTreeMap<Uuid, CarrierTally> = BTreeMap::new();
        for ((carrier, route), tally) in tallies {
            let c = carriers.entry(carrier).or_default();
            c.total.merge(&tally);
            if let Some(route) = route {
                c.by_route.push((route, tally));
            }
        }
        QualityCopy { breakers, carriers }
    }

    /// The selected carriers that carried something in the last day or whose breaker is not
    /// closed, by id.
    pub fn carriers(&self) -> Vec<Uuid> {
        let demoted = self
            .breakers
            .iter()
            .filter(|(_, b)| b.state != BreakerState::Closed)
            .map(|(id, _)| *id);
        let mut ids: Vec<Uuid> = self.carriers.keys().copied().chain(demoted).collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// One carrier's quality (all zero for one the copy holds nothing of).
    pub fn carrier(&self, carrier_id: Uuid) -> CarrierQuality {
        let none = CarrierTally::default();
        let counted = self.carriers.get(&carrier_id).unwrap_or(&none);
        let mut by_route: Vec<RouteQuality> = counted
            .by_route
            .iter()
            .map(|(route_id, tally)| RouteQuality {
                route_id: *route_id,
                windows: tally.windows(),
            })
            .collect();
        by_route.sort_by_key(|r| r.route_id);
        CarrierQuality {
            carrier_id,
            breaker: self
                .breakers
                .get(&carrier_id)
                .cloned()
                .unwrap_or(BreakerStatus::CLOSED),
            windows: counted.total.windows(),
            by_route,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_breaker_state_reads_as_the_api_and_the_gauge_have_always_shown_it() {
        let all = [
            BreakerState::Closed,
            BreakerState::Open,
            BreakerState::HalfOpen,
        ];
        assert_eq!(
            serde_json::to_string(&all).unwrap(),
            r#"["closed","open","half_open"]"#
        );
        assert_eq!(all.map(BreakerState::gauge), [0.0, 1.0, 2.0]);
    }

    fn attempt(carrier: u128, tenant: u128, route: u128, leg: u128) -> Attempt {
        let now = Utc::now();
        Attempt {
            id: Uuid::from_u128(leg),
            call_id: Uuid::from_u128(leg),
            leg_id: Uuid::from_u128(leg),
            switch_id: None,
            tenant_id: Some(Uuid::from_u128(tenant)),
            route_id: Some(Uuid::from_u128(route)),
            carrier_id: Uuid::from_u128(carrier),
            gateway: "alpha".into(),
            number: "15551234567".into(),
            attempt: 1,
            sip_status: Some(200),
            cause: "NORMAL_CLEARING".into(),
            q850: None,
            started_at: now,
            progress_at: None,
            answered_at: Some(now),
            ended_at: now,
            billable_seconds: 5,
            hangup_by: None,
        }
    }

    fn filled() -> Quality {
        let quality = Quality::new(QualitySettings::default(), Signals::log_only());
        let codes = FailoverCodes::platform_default();
        // Carriers 1 and 2, each behind routes 10 and 11, for tenants 100 and 101.
        for (leg, (carrier, route, tenant)) in [1, 2]
            .into_iter()
            .flat_map(|c| [10, 11].map(|r| (c, r)))
            .flat_map(|(c, r)| [100, 101].map(|t| (c, r, t)))
            .enumerate()
        {
            quality.observe(
                &attempt(carrier, tenant, route, leg as u128),
                &codes,
                "alpha",
            );
        }
        quality
    }

    #[test]
    fn a_copy_of_every_carrier_reports_what_each_carrier_alone_does() {
        let quality = filled();
        let tenant = Some(Uuid::from_u128(101));
        let copy = quality.copy(|_| Some(tenant), true);
        let ids = [1, 2].map(Uuid::from_u128);
        assert_eq!(copy.carriers(), ids);
        for id in ids {
            let q = copy.carrier(id);
            assert_eq!(q, quality.carrier(id, tenant));
            assert_eq!(q.windows["5m"].attempts, 2, "tenant 101's calls only");
            let routes: Vec<_> = q.by_route.iter().map(|r| r.route_id).collect();
            assert_eq!(
                routes,
                [Some(Uuid::from_u128(10)), Some(Uuid::from_u128(11))]
            );
        }
        for metrics in [
            quality.copy(|id| (id == ids[0]).then_some(None), false),
            quality.copy_totals(|id| id == ids[0]),
        ] {
            assert_eq!(metrics.carriers(), [ids[0]], "only the selected carrier");
            assert!(metrics.carrier(ids[0]).by_route.is_empty());
            assert_eq!(metrics.carrier(ids[0]).windows["5m"].attempts, 4);
        }
    }

    #[test]
    fn ingestion_goes_on_while_a_report_reads_its_copy_which_keeps_what_it_saw() {
        // Arrange: a report holding its copy, as a scrape does while it renders.
        let quality = std::sync::Arc::new(filled());
        let copy = quality.copy(|_| Some(None), true);
        // Act: a leg observed from another thread while the copy is still being read.
        let observing = quality.clone();
        let (done, observed) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let codes = FailoverCodes::platform_default();
            let taken = observing.observe(&attempt(1, 100, 10, 99), &codes, "alpha");
            done.send(taken).unwrap();
        });
        // Assert: a liveness bound, not a speed target — on the old code the lock was held for
        // the whole report, here it is not held at all.
        let taken = observed
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("observe returned while the copy was held");
        assert!(taken);
        let id = Uuid::from_u128(1);
        assert_eq!(copy.carrier(id).windows["5m"].attempts, 4);
        assert_eq!(quality.carrier(id, None).windows["5m"].attempts, 5);
    }
}
