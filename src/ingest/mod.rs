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
//! Metrics: `trunkline_leg_events_total{outcome}` (`attempt`, `repeated`, `not_ours`,
//! `unattributable`) and `trunkline_events_lost_total` (dropped by the client or by this queue).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
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
                attempt,
                failover,
                carrier,
            } => {
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
    use chrono::{TimeZone, Utc};

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
}
