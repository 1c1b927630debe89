//! The xml_curl hot path, piece by piece (issue 7): `resolve` at 1,000 / 100,000 / 1,000,000
//! routes over 1,000 tenants, rendering a dialplan document of 1, 3 and 10 legs, parsing a
//! realistic FreeSWITCH dialplan form body, and rebuilding the snapshot at 100,000 routes.
//!
//! `cargo bench --bench hot_path`; figures and the machine they ran on are in BENCHMARKS.md.
//! Under `cargo test` (no `--bench`) every benchmark runs once on the smallest data, so the
//! suite checks they work without paying for the large builds.

use std::hint::black_box;

use chrono::Utc;
use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use trunkline::fsxml::dialplan::bridge_document;
use trunkline::fsxml::request;
use trunkline::fsxml::testdata::SAMPLE_DIALPLAN_FETCH;
use trunkline::model::fixtures::{carrier, platform, prefix_route};
use trunkline::model::{ContextName, Destination};
use trunkline::routing::{RouteRequest, RoutingSettings, Snapshot};
use uuid::Uuid;

fn benchmarking() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn route_counts() -> &'static [usize] {
    if benchmarking() {
        &[1_000, 100_000, 1_000_000]
    } else {
        &[1_000]
    }
}

fn snapshot(routes: usize) -> Snapshot {
    let (tenants, carriers, routes) = platform(1_000, 1_000, routes);
    Snapshot::build(1, tenants, carriers, routes, RoutingSettings::default())
}

/// Destinations that hit the generated prefixes (and miss some): the same for every size.
fn destinations() -> Vec<Destination> {
    (0..64u64)
        .map(|i| {
            Destination::parse(&format!(
                "+{}",
                10_000_000_000 + i * 1_234_567_891 % 89_999_999_999
            ))
            .unwrap()
        })
        .collect()
}

fn resolve(c: &mut Criterion) {
    let mut group = c.benchmark_group("resolve");
    let destinations = destinations();
    for &routes in route_counts() {
        let snapshot = snapshot(routes);
        let now = Utc::now();
        let mut i = 0usize;
        group.bench_with_input(BenchmarkId::from_parameter(routes), &snapshot, |b, s| {
            b.iter(|| {
                i = i.wrapping_add(1);
                let request = RouteRequest {
                    tenant_id: Some(Uuid::from_u128(0x1000_0000 + (i % 1_000) as u128)),
                    destination: &destinations[i % destinations.len()],
                    forced_carrier: None,
                    caller: None,
                    attestation: None,
                    now,
                    call_id: None,
                    max_cost: None,
                };
                black_box(s.resolve(black_box(&request)))
            })
        });
    }
    group.finish();
}

fn render(c: &mut Criterion) {
    let mut group = c.benchmark_group("render_dialplan");
    let context = ContextName::parse("trunkline").unwrap();
    let destination = Destination::parse("+15551234567").unwrap();
    for legs in [1usize, 3, 10] {
        let carriers = (0..legs)
            .map(|i| carrier(&format!("carrier-{i}"), i as u128))
            .collect();
        let routes = (0..legs)
            .map(|i| prefix_route(100 + i as u128, None, "1", i as i64, i as u128))
            .collect();
        let s = Snapshot::build(1, vec![], carriers, routes, RoutingSettings::default());
        let decision = s.resolve(&RouteRequest {
            tenant_id: None,
            destination: &destination,
            forced_carrier: None,
            caller: None,
            attestation: None,
            now: Utc::now(),
            call_id: None,
            max_cost: None,
        });
        assert_eq!(decision.legs.len(), legs);
        group.bench_with_input(
            BenchmarkId::from_parameter(legs),
            &decision.legs,
            |b, legs| {
                b.iter(|| {
                    black_box(bridge_document(&context, &destination, black_box(legs)).unwrap())
                })
            },
        );
    }
    group.finish();
}

fn parse_form(c: &mut Criterion) {
    let fields = SAMPLE_DIALPLAN_FETCH.split('&').count();
    c.bench_function(&format!("parse_dialplan_form/{fields}_fields"), |b| {
        b.iter(|| black_box(request::parse(black_box(SAMPLE_DIALPLAN_FETCH.as_bytes()))))
    });
}

fn rebuild(c: &mut Criterion) {
    let routes = if benchmarking() { 100_000 } else { 1_000 };
    let (tenants, carriers, route_list) = platform(1_000, 1_000, routes);
    let mut group = c.benchmark_group("snapshot_rebuild");
    group.sample_size(10);
    group.bench_function(BenchmarkId::from_parameter(routes), |b| {
        b.iter_batched(
            || (tenants.clone(), carriers.clone(), route_list.clone()),
            |(t, c, r)| black_box(Snapshot::build(2, t, c, r, RoutingSettings::default())),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, resolve, render, parse_form, rebuild);
criterion_main!(benches);
