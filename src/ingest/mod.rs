//! Ingestion: what the nodes' Event Socket sessions read ([`crate::esl::feed`]) becomes what
//! trunkline learns from its calls (DESIGN.md §5, last point). [`Feed`] is the sink every
//! session hands its readings to; it never makes a session wait.
//!
//! - A leg's hangup goes into a bounded queue; one task takes it off, [`attribute`]s it (pure:
//!   its node, its carrier's failover codes and name in the published snapshot), lets carrier
//!   quality judge it (which also drops a hangup delivered twice) and hands its record to the
//!   attempt recorder. A full queue drops the hangup and counts it lost, like the events the
//!   Event Socket client drops itself.
//! - A node's gateway report goes straight to the health table: it is rare, costs one short
//!   lock, and must never be dropped or wait behind a flood of hangups, since the fetch path
//!   moves carriers by it.
//!
//! Owns the queue and its accounting; decides nothing about breakers or windows (`quality`)
//! and stores nothing itself (`quality::recorder`). Counters that follow the nodes' legs
//! (channels in use per carrier) take their events here, beside [`Worker::take`].
//!
//! The node's clock is not trusted (issue 36): an attempt's times come from its `*_uepoch`
//! variables, and one far ahead would escape the retention prune (and one past year 9999 break
//! fixed-width timestamps), so [`clamp_times`] brings them within [`CLOCK_PAST`] before and
//! [`CLOCK_FUTURE`] after trunkline's own clock before quality or the recorder sees them.
//!
//! Metrics: `trunkline_leg_events_total{outcome}` (`attempt`, `repeated`, `not_ours`,
//! `unattributable`), `trunkline_events_lost_total` (dropped by the client or by this queue) and
//! `trunkline_events_clamped_total` (attempts whose times were brought within the margins).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use chrono::{DateTime, Duration, Utc};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::esl::feed::NodeSink;
use crate::esl::hangup::LegEvent;
use crate::model::{Attempt, FailoverCodes, Switch, SwitchName};
use crate::publish::Published;
use crate::quality::Quality;
use crate::quality::recorder::Recorder;
use crate::routing::Snapshot;

/// Leg hangups waiting for the ingest task, at most. A read hangup is a few hundred bytes, so a
/// full queue is about a megabyte; the task only takes short locks and never awaits, so it
/// keeps up with any node (a full queue means the process is starved, not slow storage).
pub const QUEUE: usize = 4096;

/// How far ahead of trunkline's clock a node's time may be. Nodes run NTP, so real skew is
/// milliseconds; a hangup is read as it happens, so its end is never in the future. Minutes
/// cover a badly kept clock while a record can outlive the retention by no more than that.
pub const CLOCK_FUTURE: Duration = Duration::minutes(5);
/// How far behind it may be: a leg starts before its hangup by its duration, and calls of many
/// hours happen, but none of a week; the default retention is the same week, so a record older
/// than this would be pruned on arrival anyway.
pub const CLOCK_PAST: Duration = Duration::days(7);

/// Brings an attempt's times within [`CLOCK_PAST`] before and [`CLOCK_FUTURE`] after `now`;
/// `true` when any moved. A node whose clock is off is off for all of a leg's times, so the
/// whole attempt shifts until its end (clock ahead) or its start (behind) is in range, its
/// post-dial delay and duration staying what the node measured; then each time is clamped into
/// the range. Both steps keep the order of
/// the times (start ≤ progress ≤ answer ≤ end), whatever it was.
pub fn clamp_times(attempt: &mut Attempt, now: DateTime<Utc>) -> bool {
    let (earliest, latest) = (now - CLOCK_PAST, now + CLOCK_FUTURE);
    let shift = if attempt.ended_at > latest {
        latest - attempt.ended_at
    } else if attempt.started_at < earliest {
        // Never past trunkline's now: a long call that really ended now keeps its end.
        (earliest - attempt.started_at)
            .min(now - attempt.ended_at)
            .max(Duration::zero())
    } else {
        Duration::zero()
    };
    let mut moved = false;
    let mut bring = |t: &mut DateTime<Utc>| {
        // Past chrono's range only from a start far from its end: it ends up at the bound.
        let shifted = t
            .checked_add_signed(shift)
            .unwrap_or(if shift < Duration::zero() {
                earliest
            } else {
                latest
            });
        let kept = shifted.clamp(earliest, latest);
        moved |= kept != *t;
        *t = kept;
    };
    bring(&mut attempt.started_at);
    attempt.progress_at.as_mut().map(&mut bring);
    attempt.answered_at.as_mut().map(&mut bring);
    bring(&mut attempt.ended_at);
    moved
}

/// One leg hangup and the node it came from.
struct NodeLeg {
    switch_id: Uuid,
    switch: SwitchName,
    leg: LegEvent,
}

/// What one leg hangup is to trunkline.
#[derive(Debug, PartialEq)]
pub enum Attributed<'s> {
    /// Not a leg trunkline routed.
    NotOurs,
    /// Carries our tags but cannot be read: counted, never guessed.
    Unattributable(&'static str),
    /// One of our legs: its record (with its node), judged by `failover` (its carrier's codes,
    /// else the platform's); `carrier` is the carrier's name for signals, empty when the
    /// snapshot no longer has it.
    Attempt {
        attempt: Box<Attempt>,
        failover: &'s FailoverCodes,
        carrier: &'s str,
    },
}

/// Attributes a leg read on node `switch_id`, by the carrier as `snapshot` has it now.
pub fn attribute(leg: LegEvent, switch_id: Uuid, snapshot: &Snapshot) -> Attributed<'_> {
    match leg {
        LegEvent::NotOurs => Attributed::NotOurs,
        LegEvent::Unattributable(why) => Attributed::Unattributable(why),
        LegEvent::Attempt(mut attempt) => {
            attempt.switch_id = Some(switch_id);
            let carrier = snapshot.carrier(attempt.carrier_id);
            Attributed::Attempt {
                failover: carrier
                    .and_then(|c| c.failover_codes.as_ref())
                    .unwrap_or(&snapshot.settings().default_failover_codes),
                carrier: carrier.map_or("", |c| c.name.as_str()),
                attempt,
            }
        }
    }
}

fn count_lost(events: u64) {
    metrics::counter!("trunkline_events_lost_total").increment(events);
}

/// The sink the sessions feed ([`NodeSink`]).
pub struct Feed {
    legs: mpsc::Sender<NodeLeg>,
    quality: Arc<Quality>,
    /// The queue refused a hangup since the last one it took: warn once per such stretch.
    dropping: AtomicBool,
}

impl NodeSink for Feed {
    fn leg_hangup(&self, switch: &Switch, leg: LegEvent) {
        let queued = self.legs.try_send(NodeLeg {
            switch_id: switch.id,
            switch: switch.name.clone(),
            leg,
        });
        match queued {
            Ok(()) => self.dropping.store(false, Ordering::Relaxed),
            Err(e) => {
                count_lost(1);
                if !self.dropping.swap(true, Ordering::Relaxed) {
                    let why = match e {
                        mpsc::error::TrySendError::Full(_) => "the ingest queue is full",
                        mpsc::error::TrySendError::Closed(_) => "ingestion has stopped",
                    };
                    tracing::warn!(switch = %switch.name, why, "leg hangups dropped");
                }
            }
        }
    }

    fn events_lost(&self, _: &Switch, events: u64) {
        count_lost(events);
    }

    fn gateways_down(
        &self,
        switch: &Switch,
        core_uuid: Option<&str>,
        down: Option<HashSet<String>>,
    ) {
        self.quality
            .node_gateways(switch.id, switch.name.as_str(), core_uuid, down);
    }
}

/// The ingest task's side: where attributed legs go.
struct Worker {
    published: Arc<ArcSwap<Published>>,
    quality: Arc<Quality>,
    recorder: Recorder,
    /// The last attempt's times were clamped: warn once per stretch of them.
    clamping: AtomicBool,
}

impl Worker {
    /// One leg hangup: ours becomes a quality observation and, unless seen already, an
    /// attempt record.
    fn take(&self, leg: NodeLeg) {
        let published = self.published.load();
        let outcome = match attribute(leg.leg, leg.switch_id, &published.snapshot) {
            Attributed::NotOurs => "not_ours",
            Attributed::Unattributable(why) => {
                tracing::debug!(switch = %leg.switch, why, "leg hangup not attributable");
                "unattributable"
            }
            Attributed::Attempt {
                mut attempt,
                failover,
                carrier,
            } => {
                let clamped = clamp_times(&mut attempt, Utc::now());
                if clamped {
                    metrics::counter!("trunkline_events_clamped_total").increment(1);
                }
                if clamped && !self.clamping.swap(clamped, Ordering::Relaxed) {
                    tracing::warn!(switch = %leg.switch, "leg hangup times beyond this clock's margins, clamped (is the node's clock set?)");
                } else if !clamped {
                    self.clamping.store(false, Ordering::Relaxed);
                }
                if self.quality.observe(&attempt, failover, carrier) {
                    self.recorder.record(*attempt);
                    "attempt"
                } else {
                    "repeated"
                }
            }
        };
        metrics::counter!("trunkline_leg_events_total", "outcome" => outcome).increment(1);
    }

    async fn run(self, mut legs: mpsc::Receiver<NodeLeg>, mut stop: oneshot::Receiver<()>) {
        loop {
            tokio::select! {
                biased;
                leg = legs.recv() => match leg {
                    Some(leg) => self.take(leg),
                    None => return,
                },
                // Asked to finish, or the handle was dropped.
                _ = &mut stop => break,
            }
        }
        legs.close();
        while let Some(leg) = legs.recv().await {
            self.take(leg);
        }
    }
}

/// The running ingest task and the sink that feeds it.
pub struct Ingest {
    feed: Arc<Feed>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Ingest {
    /// Starts the ingest task on the current runtime.
    pub fn spawn(
        published: Arc<ArcSwap<Published>>,
        quality: Arc<Quality>,
        recorder: Recorder,
    ) -> Ingest {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (stop, stopped) = oneshot::channel();
        let worker = Worker {
            published,
            quality: quality.clone(),
            recorder,
            clamping: AtomicBool::new(false),
        };
        Ingest {
            feed: Arc::new(Feed {
                legs: tx,
                quality,
                dropping: AtomicBool::new(false),
            }),
            stop,
            task: tokio::spawn(worker.run(rx, stopped)),
        }
    }

    /// The sink for the sessions.
    pub fn feed(&self) -> Arc<Feed> {
        self.feed.clone()
    }

    /// Takes the hangups still queued, then ends. Called once the sessions have stopped and
    /// before the recorder does, so every hangup read becomes a record or is counted.
    pub async fn finish(self) {
        let _ = self.stop.send(());
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "the ingest task ended abnormally");
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::model::fixtures;
    use crate::model::{FailoverCode, HangupBy};
    use crate::routing::RoutingSettings;

    const NODE: Uuid = Uuid::from_u128(0xf5);

    fn attempt(carrier: u128) -> Box<Attempt> {
        let at = Utc.with_ymd_and_hms(2026, 11, 22, 14, 0, 0).unwrap();
        Box::new(Attempt {
            id: Uuid::from_u128(1),
            call_id: Uuid::from_u128(2),
            leg_id: Uuid::from_u128(3),
            switch_id: None,
            tenant_id: None,
            route_id: None,
            carrier_id: Uuid::from_u128(carrier),
            gateway: "alpha".into(),
            number: "15551234567".into(),
            attempt: 1,
            sip_status: Some(503),
            cause: "NORMAL_TEMPORARY_FAILURE".into(),
            q850: Some(41),
            started_at: at,
            progress_at: None,
            answered_at: None,
            ended_at: at,
            billable_seconds: 0,
            hangup_by: Some(HangupBy::Carrier),
        })
    }

    fn snapshot() -> Snapshot {
        let plain = fixtures::carrier("alpha", 0xa);
        let mut own = fixtures::carrier("bravo", 0xb);
        own.failover_codes =
            Some(FailoverCodes::new(vec![FailoverCode::parse("486").unwrap()]).unwrap());
        Snapshot::build(
            1,
            vec![],
            vec![plain, own],
            vec![],
            RoutingSettings::default(),
        )
    }

    #[test]
    fn a_leg_of_ours_is_stamped_with_its_node_and_judged_by_its_carriers_codes() {
        let s = snapshot();
        let Attributed::Attempt {
            attempt: a,
            failover,
            carrier,
        } = attribute(LegEvent::Attempt(attempt(0xb)), NODE, &s)
        else {
            panic!("ours")
        };
        assert_eq!(a.switch_id, Some(NODE));
        assert_eq!(carrier, "bravo");
        assert!(failover.matches(486) && !failover.matches(503));
    }

    #[test]
    fn a_carrier_without_codes_or_gone_from_the_snapshot_is_judged_by_the_platforms() {
        let s = snapshot();
        let platform = &s.settings().default_failover_codes;
        for (id, name) in [(0xa, "alpha"), (0xdead, "")] {
            let Attributed::Attempt {
                failover, carrier, ..
            } = attribute(LegEvent::Attempt(attempt(id)), NODE, &s)
            else {
                panic!("ours")
            };
            assert_eq!((failover, carrier), (platform, name));
        }
    }

    #[test]
    fn legs_not_ours_or_unreadable_stay_so() {
        let s = snapshot();
        assert_eq!(attribute(LegEvent::NotOurs, NODE, &s), Attributed::NotOurs);
        assert_eq!(
            attribute(LegEvent::Unattributable("no Unique-ID"), NODE, &s),
            Attributed::Unattributable("no Unique-ID")
        );
    }

    fn times(attempt: &mut Attempt) -> [Option<DateTime<Utc>>; 4] {
        [
            Some(attempt.started_at),
            attempt.progress_at,
            attempt.answered_at,
            Some(attempt.ended_at),
        ]
    }

    /// An answered leg: start, progress 2 s later, answer 5 s later, end 65 s later.
    fn answered_at(start: DateTime<Utc>) -> Attempt {
        let mut a = *attempt(0xa);
        a.started_at = start;
        a.progress_at = Some(start + Duration::seconds(2));
        a.answered_at = Some(start + Duration::seconds(5));
        a.ended_at = start + Duration::seconds(65);
        a
    }

    #[test]
    fn times_within_the_margins_are_left_as_the_node_sent_them() {
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 14, 0, 0).unwrap();
        for start in [now - Duration::hours(3), now + Duration::minutes(3)] {
            let mut a = answered_at(start);
            let before = times(&mut a);
            assert!(!clamp_times(&mut a, now));
            assert_eq!(times(&mut a), before);
        }
    }

    #[test]
    fn a_leg_from_a_clock_ahead_or_behind_is_shifted_into_range_keeping_its_delays() {
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 14, 0, 0).unwrap();
        for (start, end) in [
            (now + Duration::days(365), now + CLOCK_FUTURE),
            (
                now - Duration::days(30),
                now - CLOCK_PAST + Duration::seconds(65),
            ),
        ] {
            let mut a = answered_at(start);
            assert!(clamp_times(&mut a, now));
            assert_eq!(a.ended_at, end);
            assert_eq!(a.pdd(), Some(Duration::seconds(2)));
            assert_eq!(a.ended_at - a.started_at, Duration::seconds(65));
        }
    }

    #[test]
    fn times_out_of_all_proportion_end_up_in_range_and_in_order() {
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 14, 0, 0).unwrap();
        let year_10000 = Utc.with_ymd_and_hms(10_000, 1, 1, 0, 0, 0).unwrap();
        let mut a = answered_at(DateTime::from_timestamp_micros(1).unwrap());
        a.answered_at = Some(year_10000 - Duration::days(1));
        a.ended_at = year_10000;
        assert!(clamp_times(&mut a, now));
        let t = times(&mut a).map(Option::unwrap);
        assert!(t.is_sorted(), "{t:?}");
        assert_eq!((t[0], t[3]), (now - CLOCK_PAST, now + CLOCK_FUTURE));
    }
}
