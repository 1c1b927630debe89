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
use trunkline::quality::health::HealthView;
use trunkline::routing::{RouteRequest, RoutingSettings, Snapshot};
use trunkline::xmlcurl;
use uuid::Uuid;

#[allow(dead_code)]
mod common;

fn route_counts() -> &'static [usize] {
    if common::benchmarking() {
        &[1_000, 100_000, 1_000_000]
    } else {
        &[1_000]
    }
}

/// Fixed destinations, whatever they match: at 1,000 routes (one per tenant) nearly all miss,
/// at 1,000,000 most match one to three routes.
fn mixed_destinations() -> Vec<Destination> {
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
    for &routes in route_counts() {
        let now = Utc::now();
        let mut i = 0usize;
        // Built on the closure's first call, which criterion makes only when the benchmark is
        // selected (`--bench render` does not build a million routes first), then kept: it is
        // called again for every sample.
        let mut one_match = None;
        group.bench_function(BenchmarkId::new("one_match", routes), |b| {
            let (s, calls) =
                one_match.get_or_insert_with(|| common::platform_with_one_match_calls(routes));
            b.iter(|| {
                i = i.wrapping_add(1);
                let (tenant, destination) = &calls[i % calls.len()];
                black_box(s.resolve(black_box(&common::request(*tenant, destination, now))))
            })
        });
        let mut mixed = None;
        let destinations = mixed_destinations();
        group.bench_function(BenchmarkId::new("mixed", routes), |b| {
            let s = mixed.get_or_insert_with(|| {
                let (tenants, carriers, routes) = platform(1_000, 1_000, routes);
                Snapshot::build(1, tenants, carriers, routes, RoutingSettings::default())
            });
            b.iter(|| {
                i = i.wrapping_add(1);
                let tenant = Uuid::from_u128(0x1000_0000 + (i % 1_000) as u128);
                let destination = &destinations[i % destinations.len()];
                black_box(s.resolve(black_box(&common::request(tenant, destination, now))))
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
            caller_withheld: false,
            caller_name: trunkline::routing::PresentedName::Absent,
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
                    black_box(bridge_document(&context, &destination, black_box(legs), 0).unwrap())
                })
            },
        );
    }
    group.finish();
}

/// The whole pure path of one fetch, as the HTTP handler runs it: form body → request →
/// routing decision → legs → health order → XML, on the platform and bodies of the HTTP load
/// (100,000 routes). Twice in one run: with nothing sick (the health table empty), and with a
/// tenth of the carriers' breakers open and another tenth's gateways DOWN on the fetching node,
/// so that a good share of the fetches reorder their legs.
fn answer(c: &mut Criterion) {
    let routes = if common::benchmarking() {
        100_000
    } else {
        1_000
    };
    let (published, route_list) = common::published_platform(routes);
    let bodies = common::dialplan_bodies(&route_list);
    let sick = common::sick_view(&published, &route_list, 10);
    let clear = HealthView::default();
    let mut group = c.benchmark_group(format!("xmlcurl_answer/{routes}"));
    for (name, health) in [("health_clear", &clear), ("health_table", &sick)] {
        group.bench_function(name, |b| {
            let now = Utc::now();
            let mut i = 0usize;
            b.iter(|| {
                i = i.wrapping_add(1);
                let body = bodies[i % bodies.len()].as_bytes();
                black_box(xmlcurl::answer::answer(
                    &published,
                    health,
                    black_box(body),
                    now,
                ))
            })
        });
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
    let routes = if common::benchmarking() {
        100_000
    } else {
        1_000
    };
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

criterion_group!(benches, resolve, render, answer, parse_form, rebuild);
criterion_main!(benches);
