//! Resident memory of the routing snapshot at platform size (issue 7: 1,000,000 routes over
//! 1,000 tenants in at most 400 MB), and how long building it takes. The generated routes are
//! moved into the build, which keeps only what routing reads and frees the rest; once that is
//! returned to the system, as the service does after every publish, the figure is what a
//! running trunkline holds for them (plus its fixed overhead, printed first).
//!
//! `cargo bench --bench snapshot_memory`; under `cargo test` it builds 10,000 routes only.

#[allow(dead_code)]
mod common;

use std::time::Instant;

use trunkline::memory::release_freed_memory;
use trunkline::model::fixtures::platform;
use trunkline::routing::{RoutingSettings, Snapshot};

fn main() {
    let routes = if common::benchmarking() {
        1_000_000
    } else {
        10_000
    };
    let before = common::rss_mib();
    let (tenants, carriers, route_list) = platform(1_000, 1_000, routes);
    let generated = common::rss_mib();
    let started = Instant::now();
    let snapshot = Snapshot::build(1, tenants, carriers, route_list, RoutingSettings::default());
    let built = started.elapsed();
    let after = common::rss_mib();
    // What the service does after every publish (`memory::release_freed_memory`): the rows the
    // build consumed are freed, but glibc keeps their pages until trimmed.
    release_freed_memory();
    let trimmed = common::rss_mib();
    // Every call reads the snapshot's arrays at random: the share on huge pages is the share
    // read without a page walk (`memory::LargeBlocksOnHugePages`).
    let huge = common::huge_pages_mib();
    println!(
        "snapshot of {routes} routes, 1000 tenants, 1000 carriers: built in {:.0} ms; RSS {before:.0} MiB before, {generated:.0} MiB with the generated rows, {after:.0} MiB right after the build (rows freed, not yet returned), {trimmed:.0} MiB once freed memory is returned ({:.0} MiB above the start), {huge:.0} MiB of it on huge pages",
        built.as_secs_f64() * 1000.0,
        trimmed - before
    );
    assert_eq!(snapshot.version(), 1);
}
