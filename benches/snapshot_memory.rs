//! Resident memory of the routing snapshot at platform size (issue 7: 1,000,000 routes over
//! 1,000 tenants in at most 400 MB), and how long building it takes. The generated routes are
//! moved into the build, which keeps only what routing reads and frees the rest; once that is
//! returned to the system, as the service does after every publish, the figure is what a
//! running trunkline holds for them (plus its fixed overhead, printed first).
//!
//! Then as many phone numbers with voice capability (issue 19: 1,000,000 beside the 1,000,000
//! routes): the time to index them and the memory they hold.
//!
//! `cargo bench --bench snapshot_memory`; under `cargo test` it builds 10,000 routes only.

#[allow(dead_code)]
mod common;

use std::time::Instant;

use uuid::Uuid;

use trunkline::memory::release_freed_memory;
use trunkline::model::E164;
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

    // The DID inventory beside it (issue 19): as many voice numbers as routes, spread over the
    // tenants, as the caller-ID policies and attestation read them on every call.
    let tenant_ids: Vec<Uuid> = (0..1_000u128)
        .map(|t| Uuid::from_u128(0x1000_0000 + t))
        .collect();
    let numbers: Vec<(Uuid, E164)> = (0..routes as u64)
        .map(|i| {
            let number = E164::parse(&format!("+1{:010}", 2_000_000_000 + i * 7)).unwrap();
            (tenant_ids[(i % 1_000) as usize], number)
        })
        .collect();
    release_freed_memory();
    let with_rows = common::rss_mib();
    let started = Instant::now();
    let snapshot = snapshot.with_voice_numbers(numbers);
    let built = started.elapsed();
    release_freed_memory();
    let numbers_held = common::rss_mib();
    let started = Instant::now();
    let lookups = 1_000_000u64;
    let found = (0..lookups)
        .filter(|i| {
            let tenant = tenant_ids[(i % 1_000) as usize];
            snapshot.owns_number(tenant, 12_000_000_000 + (i % routes as u64) * 7)
        })
        .count();
    let per_lookup = started.elapsed().as_nanos() as f64 / lookups as f64;
    println!(
        "{routes} voice numbers over 1000 tenants: indexed in {:.0} ms; RSS {with_rows:.0} MiB with the generated rows, {numbers_held:.0} MiB once they are freed ({:.0} MiB above the routes' snapshot); owns_number {per_lookup:.0} ns a lookup ({found} of {lookups} found)",
        built.as_secs_f64() * 1000.0,
        numbers_held - trimmed
    );
    assert_eq!(found as u64, lookups, "every generated number is found");
}
