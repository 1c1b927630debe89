//! What a session hands on of what it reads from its node: leg hangups, events the connection
//! dropped, and the gateways the node reports DOWN. [`NodeSink`] is the one way out; the
//! `ingest` room implements it (attribution, quality, attempt records, and the counters that
//! come later), so `esl` depends on no consumer and a new consumer never touches the session.
//!
//! A sink must never make the session wait: the session also answers liveness probes and
//! drives reconcile passes, and a stalled reader makes the node's events pile up in the
//! client's queue (`client::EVENT_QUEUE`).

use std::collections::HashSet;

use super::hangup::LegEvent;
use crate::model::Switch;

/// Where a session's readings go. Every method returns at once; what cannot be taken is the
/// sink's to count.
pub trait NodeSink: Send + Sync {
    /// A leg's hangup as `switch` reported it.
    fn leg_hangup(&self, switch: &Switch, leg: LegEvent);

    /// `events` events of `switch` were dropped before anyone read them (the client's queue was
    /// full): the leg hangups among them are gone for good.
    fn events_lost(&self, switch: &Switch, events: u64);

    /// The gateways `switch` reports DOWN right now (after a gateway list or a gateway event),
    /// with its Core-UUID; `None` while its state is unknown (the connection is down).
    fn gateways_down(
        &self,
        switch: &Switch,
        core_uuid: Option<&str>,
        down: Option<HashSet<String>>,
    );
}

/// A sink that takes everything and keeps nothing: for a supervisor whose readings nobody
/// consumes (a test driving reconcile passes alone).
#[derive(Debug, Clone, Copy, Default)]
pub struct Discard;

impl NodeSink for Discard {
    fn leg_hangup(&self, _: &Switch, _: LegEvent) {}
    fn events_lost(&self, _: &Switch, _: u64) {}
    fn gateways_down(&self, _: &Switch, _: Option<&str>, _: Option<HashSet<String>>) {}
}
