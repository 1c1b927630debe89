//! The real-FreeSWITCH interop suite: every test starts the `trunkline serve` binary on a real
//! port and SQLite file, a FreeSWITCH 1.10 node configured from `freeswitch-conf/` as its
//! README tells an operator (only ports and credentials substituted), carriers as sipp UAS
//! processes and callers as sipp UAC through the caller-facing profile of
//! `templates/examples/callers.xml`, then asserts on what reached the wire.
//!
//! The platform they share is `support/platform.rs`; where the node comes from and what happens
//! without one, `support/freeswitch.rs`. The tests take one lock, so one node runs at a time
//! (they are CPU-bound on a small machine), and every wait is bounded. One module per area.

#[path = "../support/mod.rs"]
mod support;

/// The node's boot and the static fallback.
mod boot;
/// The tenant's caller-ID policy and the carriers' caller-ID formats.
mod caller_ids;
/// Failover between carriers, both forms.
mod failover;
/// Gateways following their carriers.
mod gateways;
/// Two instances and the node's lease.
mod ha;
/// Breakers, attempt records and health order.
mod quality;
/// Routes, number formatting and hostile dialled numbers.
mod routing;
