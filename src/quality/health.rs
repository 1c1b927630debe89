//! Carrier health as the xml_curl path reads it: a circuit breaker per carrier, the gateways
//! each node reports DOWN, and the order they give a call's legs. Pure: time is passed in.
//!
//! Health moves a carrier later, never out: a call whose every carrier is sick still tries
//! them all, in their configured order (DESIGN.md §3 rule 4).
//!
//! The breaker, per carrier:
//! - **closed**: counts consecutive carrier failures (a failover SIP code of the carrier, or no
//!   final answer at all); an answer, or a callee's own answer (busy, decline), resets it.
//!   `failures` in a row, or an ASR under `asr_floor` over at least `asr_min_attempts`
//!   attempts in the window, opens it;
//! - **open** for `open_for`: the carrier goes after the healthy ones;
//! - **half-open** after that: one fetch in `half_open_one_in` keeps the carrier in its place
//!   (a trial); an answer closes the breaker, a carrier failure opens it again.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, TimeDelta, Utc};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::{Attempt, FailoverCodes};
use crate::routing::Leg;

/// The breaker's thresholds. The defaults suit a small operator: five failed calls in a row
/// are rare on a working trunk, and a minute out of first place costs little.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerSettings {
    /// Consecutive carrier failures that open the breaker.
    pub failures: u32,
    /// ASR (answered / attempts) under which the breaker opens; 0 turns the rule off.
    pub asr_floor: f64,
    /// Attempts in the window the ASR rule needs before it judges.
    pub asr_min_attempts: u32,
    /// The ASR rule's window (seconds).
    pub asr_window_seconds: u64,
    /// How long an open breaker keeps the carrier back (seconds).
    pub open_seconds: u64,
    /// Half-open: one fetch in this many tries the carrier in its place.
    pub half_open_one_in: u32,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            failures: 5,
            asr_floor: 0.05,
            asr_min_attempts: 50,
            asr_window_seconds: 300,
            open_seconds: 60,
            half_open_one_in: 5,
        }
    }
}

impl BreakerSettings {
    /// Refuses thresholds that would make the breaker meaningless.
    pub fn check(&self) -> Result<(), String> {
        if self.failures == 0 {
            return Err("failures must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.asr_floor) {
            return Err("asr_floor must be between 0 and 1".into());
        }
        if self.asr_min_attempts == 0 || self.asr_window_seconds == 0 || self.open_seconds == 0 {
            return Err(
                "asr_min_attempts, asr_window_seconds and open_seconds must be at least 1".into(),
            );
        }
        if self.half_open_one_in == 0 {
            return Err("half_open_one_in must be at least 1".into());
        }
        Ok(())
    }
}

/// What one attempt says about its carrier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Answered,
    /// The carrier's failure: a failover code of the leg, or no final answer at all.
    CarrierFailed,
    /// The callee's own answer (busy, decline, …) or the caller gave up: says nothing bad.
    Neutral,
}

/// Causes FreeSWITCH gives a leg the carrier never answered (timers, transport, gateway).
const NO_ANSWER_FAILURES: [&str; 6] = [
    "RECOVERY_ON_TIMER_EXPIRE",
    "PROGRESS_TIMEOUT",
    "NETWORK_OUT_OF_ORDER",
    "DESTINATION_OUT_OF_ORDER",
    "GATEWAY_DOWN",
    "NORMAL_TEMPORARY_FAILURE",
];

/// Judges one attempt by the leg's failover codes (the carrier's, else the platform's).
pub fn verdict(attempt: &Attempt, failover: &FailoverCodes) -> Verdict {
    if attempt.answered() {
        return Verdict::Answered;
    }
    match attempt.sip_status {
        Some(code) if failover.matches(code) => Verdict::CarrierFailed,
        Some(_) => Verdict::Neutral,
        None if NO_ANSWER_FAILURES.contains(&attempt.cause.as_str()) => Verdict::CarrierFailed,
        None => Verdict::Neutral,
    }
}

/// Why a breaker opened.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum OpenReason {
    ConsecutiveFailures { failures: u32 },
    AsrBelowFloor { asr: f64, attempts: u32 },
}

impl std::fmt::Display for OpenReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenReason::ConsecutiveFailures { failures } => {
                write!(f, "{failures} consecutive carrier failures")
            }
            OpenReason::AsrBelowFloor { asr, attempts } => {
                write!(f, "ASR {:.1} % over {attempts} attempts", asr * 100.0)
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    Closed,
    Open {
        until: DateTime<Utc>,
        reason: OpenReason,
    },
    HalfOpen {
        reason: OpenReason,
    },
}

/// A state change the caller reports (log, metric, webhook).
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    Opened(OpenReason),
    Closed,
}

/// One carrier's breaker.
#[derive(Debug, Clone)]
pub struct Breaker {
    state: State,
    consecutive: u32,
    /// Recent attempts for the ASR rule: when, and whether answered.
    recent: VecDeque<(DateTime<Utc>, bool)>,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            state: State::Closed,
            consecutive: 0,
            recent: VecDeque::new(),
        }
    }
}

impl Breaker {
    /// Takes one attempt's verdict; returns the transition it caused, if any.
    pub fn observe(
        &mut self,
        verdict: Verdict,
        now: DateTime<Utc>,
        s: &BreakerSettings,
    ) -> Option<Transition> {
        self.expire(now);
        let window = TimeDelta::seconds(s.asr_window_seconds as i64);
        while self
            .recent
            .front()
            .is_some_and(|(at, _)| now - *at > window)
        {
            self.recent.pop_front();
        }
        if verdict != Verdict::Neutral {
            self.recent.push_back((now, verdict == Verdict::Answered));
            // Bounded: the rule needs no more than a window's worth at its minimum.
            if self.recent.len() > (s.asr_min_attempts as usize).max(1) * 4 {
                self.recent.pop_front();
            }
        }
        match verdict {
            Verdict::Answered => {
                self.consecutive = 0;
                let was_open = self.state != State::Closed;
                self.state = State::Closed;
                return was_open.then_some(Transition::Closed);
            }
            Verdict::Neutral => {
                if self.state == State::Closed {
                    self.consecutive = 0;
                }
                return None;
            }
            Verdict::CarrierFailed => self.consecutive += 1,
        }
        let reason = match &self.state {
            // Already out of first place: the failure only restarts the wait.
            State::Open { reason, .. } => Some(reason.clone()),
            // The trial failed: open again.
            State::HalfOpen { reason } => Some(reason.clone()),
            State::Closed => self.rule_broken(s),
        }?;
        let opened = self.state == State::Closed;
        self.state = State::Open {
            until: now + TimeDelta::seconds(s.open_seconds as i64),
            reason: reason.clone(),
        };
        opened.then_some(Transition::Opened(reason))
    }

    fn rule_broken(&self, s: &BreakerSettings) -> Option<OpenReason> {
        if self.consecutive >= s.failures {
            return Some(OpenReason::ConsecutiveFailures {
                failures: self.consecutive,
            });
        }
        let attempts = self.recent.len() as u32;
        if s.asr_floor > 0.0 && attempts >= s.asr_min_attempts {
            let answered = self.recent.iter().filter(|(_, a)| *a).count() as f64;
            let asr = answered / f64::from(attempts);
            if asr < s.asr_floor {
                return Some(OpenReason::AsrBelowFloor { asr, attempts });
            }
        }
        None
    }

    /// An open breaker whose time is up is half-open.
    fn expire(&mut self, now: DateTime<Utc>) {
        if let State::Open { until, reason } = &self.state
            && now >= *until
        {
            self.state = State::HalfOpen {
                reason: reason.clone(),
            };
        }
    }

    /// What the fetch path needs to know; `None` when closed.
    pub fn demotion(&self) -> Option<Demotion> {
        match &self.state {
            State::Closed => None,
            State::Open { until, reason } => Some(Demotion::Open {
                until: *until,
                reason: reason.clone(),
            }),
            State::HalfOpen { reason } => Some(Demotion::HalfOpen {
                reason: reason.clone(),
            }),
        }
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive
    }
}

/// A carrier the breaker keeps back.
#[derive(Debug, Clone, PartialEq)]
pub enum Demotion {
    Open {
        until: DateTime<Utc>,
        reason: OpenReason,
    },
    HalfOpen {
        reason: OpenReason,
    },
}

/// Looked up for every leg of every fetch while anything is sick: foldhash, as the snapshot's
/// maps (`routing::FastMap`).
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
type FastSet<T> = HashSet<T, foldhash::fast::RandomState>;

/// The health table the xml_curl path reads: rebuilt (rarely) when a breaker or a gateway
/// changes, read lock-free on every fetch.
#[derive(Debug, Default)]
pub struct HealthView {
    /// Carriers whose breaker is not closed, with their half-open trial settings.
    breakers: FastMap<Uuid, (Demotion, u32)>,
    /// Per node (by its Core-UUID, which every fetch carries): the gateways it reports DOWN.
    /// Only nodes with at least one.
    down: FastMap<String, FastSet<String>>,
    /// Counts the fetches that met a half-open carrier, so one in K is a trial.
    trials: AtomicU64,
}

/// Why a carrier is where it is, for explain and route preview.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Healthy,
    /// The fetching node reports the carrier's gateway DOWN.
    GatewayDown,
    /// The breaker is open: moved after the healthy carriers until `until` (seconds from now).
    BreakerOpen {
        reason: OpenReason,
        seconds_left: u64,
    },
    /// Half-open: this fetch is the carrier's trial (kept in place) or not (moved).
    HalfOpen {
        reason: OpenReason,
        trial: bool,
    },
}

impl Health {
    fn moves(&self) -> bool {
        match self {
            Health::Healthy => false,
            Health::HalfOpen { trial, .. } => !trial,
            Health::GatewayDown | Health::BreakerOpen { .. } => true,
        }
    }
}

/// One leg's health and where it came from, in the order the legs are returned.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LegHealth {
    pub carrier_id: Uuid,
    pub health: Health,
    /// The leg's place (1-based) before health moved anything.
    pub configured_position: usize,
    /// Tried earlier in this call (a follow-up fetch keeps those first, in their order).
    pub already_tried: bool,
}

/// What [`HealthView::order`] did.
#[derive(Debug, Default)]
pub struct Ordered {
    /// Each leg's health, in the new order (only when asked for).
    pub notes: Vec<LegHealth>,
    /// Health moved at least one leg later.
    pub moved: bool,
}

impl HealthView {
    pub fn new(
        breakers: HashMap<Uuid, (Demotion, u32)>,
        down: HashMap<String, HashSet<String>>,
    ) -> HealthView {
        HealthView {
            breakers: breakers.into_iter().collect(),
            down: down
                .into_iter()
                .filter(|(_, gateways)| !gateways.is_empty())
                .map(|(node, gateways)| (node, gateways.into_iter().collect()))
                .collect(),
            trials: AtomicU64::new(0),
        }
    }

    /// Nothing is sick anywhere: the fetch path returns the legs untouched.
    pub fn is_clear(&self) -> bool {
        self.breakers.is_empty() && self.down.is_empty()
    }

    fn health(&self, leg: &Leg, down: Option<&FastSet<String>>, now: DateTime<Utc>) -> Health {
        if down.is_some_and(|d| d.contains(leg.gateway_name.as_str())) {
            return Health::GatewayDown;
        }
        match self.breakers.get(&leg.carrier_id) {
            None => Health::Healthy,
            Some((Demotion::Open { until, reason }, _)) if now < *until => Health::BreakerOpen {
                reason: reason.clone(),
                seconds_left: seconds_until(*until, now),
            },
            Some((Demotion::Open { reason, .. } | Demotion::HalfOpen { reason }, one_in)) => {
                let n = self.trials.fetch_add(1, Ordering::Relaxed);
                Health::HalfOpen {
                    reason: reason.clone(),
                    trial: n.is_multiple_of(u64::from((*one_in).max(1))),
                }
            }
        }
    }

    /// Orders a call's legs: carriers already tried in this call first, in the order tried
    /// (`tried`, from the follow-up fetch), then the healthy ones, then the moved ones, each
    /// group in configured order. `core_uuid` is the fetching node's. Says whether health
    /// moved any leg, and each leg's health only when `explain` asks for it (the fetch path
    /// does not).
    pub fn order(
        &self,
        legs: &mut Vec<Leg>,
        core_uuid: Option<&str>,
        tried: &[Uuid],
        now: DateTime<Utc>,
        explain: bool,
    ) -> Ordered {
        let down = match core_uuid {
            Some(c) if !self.down.is_empty() => self.down.get(c),
            _ => None,
        };
        // The common case costs a lookup per leg and no allocation: nothing about these legs
        // is sick and nothing was tried before.
        let concerned = |leg: &Leg| {
            (!self.breakers.is_empty() && self.breakers.contains_key(&leg.carrier_id))
                || down.is_some_and(|d| d.contains(leg.gateway_name.as_str()))
        };
        if tried.is_empty() && !explain && !legs.iter().any(concerned) {
            return Ordered::default();
        }
        // Each leg's place: tried first (in the order tried), then healthy, then moved, each
        // group in configured order. A stable sort on (group, place) of at most `max_legs`.
        let mut moved = false;
        let mut notes = Vec::with_capacity(if explain { legs.len() } else { 0 });
        let mut keyed: Vec<((u8, usize), Leg)> = legs
            .drain(..)
            .enumerate()
            .map(|(i, leg)| {
                let health = self.health(&leg, down, now);
                let tried_at = tried.iter().position(|t| *t == leg.carrier_id);
                let key = match tried_at {
                    Some(t) => (0, t),
                    None if health.moves() => (2, i),
                    None => (1, i),
                };
                moved |= key.0 == 2;
                if explain {
                    notes.push((
                        key,
                        LegHealth {
                            carrier_id: leg.carrier_id,
                            health,
                            configured_position: i + 1,
                            already_tried: tried_at.is_some(),
                        },
                    ));
                }
                (key, leg)
            })
            .collect();
        keyed.sort_by_key(|(key, _)| *key);
        legs.extend(keyed.into_iter().map(|(_, leg)| leg));
        notes.sort_by_key(|(key, _)| *key);
        let notes = notes.into_iter().map(|(_, note)| note).collect();
        Ordered { notes, moved }
    }
}

/// Whole seconds from `now` to `until`, at least 1 (it is still open).
pub fn seconds_until(until: DateTime<Utc>, now: DateTime<Utc>) -> u64 {
    u64::try_from((until - now).num_seconds())
        .unwrap_or(0)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> BreakerSettings {
        BreakerSettings {
            failures: 3,
            asr_floor: 0.0,
            ..BreakerSettings::default()
        }
    }

    #[test]
    fn n_failures_open_it_time_half_opens_it_and_an_answer_closes_it() {
        let s = settings();
        let t0 = Utc::now();
        let mut b = Breaker::default();
        assert_eq!(b.observe(Verdict::CarrierFailed, t0, &s), None);
        assert_eq!(b.observe(Verdict::CarrierFailed, t0, &s), None);
        assert_eq!(
            b.observe(Verdict::CarrierFailed, t0, &s),
            Some(Transition::Opened(OpenReason::ConsecutiveFailures {
                failures: 3
            }))
        );
        assert!(matches!(b.demotion(), Some(Demotion::Open { .. })));
        // A failure while open restarts the wait but is no new transition.
        assert_eq!(b.observe(Verdict::CarrierFailed, t0, &s), None);
        let later = t0 + TimeDelta::seconds(s.open_seconds as i64 + 1);
        // Still failing after the wait: open again, silently.
        assert_eq!(b.observe(Verdict::CarrierFailed, later, &s), None);
        assert!(matches!(b.demotion(), Some(Demotion::Open { .. })));
        let later = later + TimeDelta::seconds(s.open_seconds as i64 + 1);
        b.expire(later);
        assert!(matches!(b.demotion(), Some(Demotion::HalfOpen { .. })));
        assert_eq!(
            b.observe(Verdict::Answered, later, &s),
            Some(Transition::Closed)
        );
        assert_eq!(b.demotion(), None);
    }

    #[test]
    fn a_callees_answer_resets_the_count_and_never_opens_it() {
        let s = settings();
        let t0 = Utc::now();
        let mut b = Breaker::default();
        for _ in 0..10 {
            b.observe(Verdict::CarrierFailed, t0, &s);
            b.observe(Verdict::CarrierFailed, t0, &s);
            assert_eq!(b.observe(Verdict::Neutral, t0, &s), None);
        }
        assert_eq!(b.demotion(), None);
    }

    #[test]
    fn a_low_asr_over_enough_attempts_opens_it() {
        let s = BreakerSettings {
            failures: 1000,
            asr_floor: 0.2,
            asr_min_attempts: 10,
            ..BreakerSettings::default()
        };
        let t0 = Utc::now();
        let mut b = Breaker::default();
        let mut opened = None;
        for i in 0..10 {
            let v = if i == 0 {
                Verdict::Answered
            } else {
                Verdict::CarrierFailed
            };
            opened = opened.or(b.observe(v, t0, &s));
        }
        assert_eq!(
            opened,
            Some(Transition::Opened(OpenReason::AsrBelowFloor {
                asr: 0.1,
                attempts: 10
            }))
        );
    }

    fn legs(ids: &[Uuid]) -> Vec<Leg> {
        ids.iter()
            .enumerate()
            .map(|(i, id)| Leg::plain(*id, &format!("gw{i}"), "15551234567"))
            .collect()
    }

    #[test]
    fn sick_carriers_move_after_healthy_ones_and_are_never_removed() {
        let ids: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
        let now = Utc::now();
        let open = Demotion::Open {
            until: now + TimeDelta::seconds(60),
            reason: OpenReason::ConsecutiveFailures { failures: 5 },
        };
        let view = HealthView::new(
            HashMap::from([(ids[0], (open, 5))]),
            HashMap::from([("node-a".to_string(), HashSet::from(["gw1".to_string()]))]),
        );
        let mut l = legs(&ids);
        let ordered = view.order(&mut l, Some("node-a"), &[], now, true);
        assert!(ordered.moved);
        let notes = ordered.notes;
        let order: Vec<Uuid> = l.iter().map(|l| l.carrier_id).collect();
        assert_eq!(order, vec![ids[2], ids[3], ids[0], ids[1]]);
        assert_eq!(notes[2].configured_position, 1);
        assert!(matches!(notes[2].health, Health::BreakerOpen { .. }));
        assert_eq!(notes[3].health, Health::GatewayDown);
        // Another node does not report gw1 down.
        let mut l = legs(&ids);
        view.order(&mut l, Some("node-b"), &[], now, false);
        let order: Vec<Uuid> = l.iter().map(|l| l.carrier_id).collect();
        assert_eq!(order, vec![ids[1], ids[2], ids[3], ids[0]]);
    }

    #[test]
    fn carriers_already_tried_stay_first_in_the_order_tried() {
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let now = Utc::now();
        // ids[0] failed and its breaker opened meanwhile: the follow-up still sees it first,
        // so the next leg is ids[1], not ids[0] again.
        let open = Demotion::Open {
            until: now + TimeDelta::seconds(60),
            reason: OpenReason::ConsecutiveFailures { failures: 5 },
        };
        let view = HealthView::new(HashMap::from([(ids[0], (open, 5))]), HashMap::new());
        let mut l = legs(&ids);
        view.order(&mut l, None, &[ids[0]], now, false);
        let order: Vec<Uuid> = l.iter().map(|l| l.carrier_id).collect();
        assert_eq!(order, ids);
    }

    #[test]
    fn half_open_carriers_keep_their_place_one_fetch_in_k() {
        let ids: Vec<Uuid> = (0..2).map(|_| Uuid::now_v7()).collect();
        let now = Utc::now();
        let half = Demotion::HalfOpen {
            reason: OpenReason::ConsecutiveFailures { failures: 5 },
        };
        let view = HealthView::new(HashMap::from([(ids[0], (half, 4))]), HashMap::new());
        let firsts: Vec<bool> = (0..8)
            .map(|_| {
                let mut l = legs(&ids);
                view.order(&mut l, None, &[], now, false);
                l[0].carrier_id == ids[0]
            })
            .collect();
        assert_eq!(
            firsts,
            [true, false, false, false, true, false, false, false]
        );
    }
}
