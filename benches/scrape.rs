//! What a scrape costs at many quality keys (issue 36): `/metrics` (`Quality::export_gauges`
//! and the render) and `/api/v1/carriers/stats` as a platform admin sees it (every carrier,
//! per route, as JSON, from one `Quality::copy` as the handler does; before issue 36 it was
//! `carrier()` per carrier), timed on a `Quality` filled with N keys (carrier, tenant, route), and
//! the longest `observe` (what ingestion does per leg) while those scrapes ran, from a second
//! thread observing in a loop: the time ingestion waited for the lock a scrape held.
//!
//! Two shapes (`common::fill_quality`), out of the generated platform's carriers:
//! - `shared`: 20 carriers behind 50 platform routes each, every route carrying the calls of
//!   N / 1,000 tenants (100 at 100,000 keys);
//! - `wide`: 1,000 carriers behind 100 routes each, one tenant per route.
//!
//! `cargo bench --bench scrape`; `SCRAPE_KEYS` (default `10000,100000`), `SCRAPE_SHAPES`
//! (default `shared,wide`), `SCRAPE_ROUNDS` (default 5). Under `cargo test` one round at 2,000.
//! The figures for fetches and ingestion while scrapes loop come from `benches/ingest.rs`
//! (`INGEST_SCRAPERS`, `INGEST_QUALITY_KEYS`).

#[allow(dead_code)]
mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::PrometheusBuilder;
use trunkline::model::FailoverCodes;
use trunkline::quality::signals::Signals;
use trunkline::quality::{Quality, QualitySettings};
use uuid::Uuid;

fn list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.into())
        .split(',')
        .map(|v| v.trim().to_string())
        .collect()
}

fn main() {
    let benchmarking = common::benchmarking();
    let (keys, rounds): (Vec<usize>, usize) = if benchmarking {
        let rounds = list("SCRAPE_ROUNDS", "5")[0]
            .parse()
            .expect("SCRAPE_ROUNDS");
        let keys = list("SCRAPE_KEYS", "10000,100000")
            .iter()
            .map(|k| k.parse().expect("SCRAPE_KEYS"))
            .collect();
        (keys, rounds)
    } else {
        (vec![2_000], 1)
    };
    let prometheus = PrometheusBuilder::new()
        .install_recorder()
        .expect("a metrics recorder");
    let (published, _) = common::published_platform(1_000);
    let snapshot = &published.snapshot;
    for shape in list("SCRAPE_SHAPES", "shared,wide") {
        let (carriers, routes) = match shape.as_str() {
            "shared" => (20, 50),
            "wide" => (1_000, 100),
            other => panic!("SCRAPE_SHAPES: no shape {other}"),
        };
        let carriers: Vec<Uuid> = snapshot.carriers().take(carriers).map(|c| c.id).collect();
        for &n in &keys {
            let quality = Arc::new(Quality::new(
                QualitySettings::default(),
                Signals::log_only(),
            ));
            common::fill_quality(&quality, &carriers, routes, n);
            let ingesting = Arc::new(AtomicBool::new(true));
            let observer = {
                let (quality, ingesting, carrier) =
                    (quality.clone(), ingesting.clone(), carriers[0]);
                std::thread::spawn(move || {
                    let codes = FailoverCodes::platform_default();
                    let mut longest = Duration::ZERO;
                    let mut leg = 1u128 << 64;
                    while ingesting.load(Ordering::Relaxed) {
                        leg += 1;
                        let attempt = common::quality_attempt(leg, carrier, 0, 0);
                        let started = Instant::now();
                        quality.observe(&attempt, &codes, "bench");
                        longest = longest.max(started.elapsed());
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    longest
                })
            };
            let (mut metrics_ms, mut stats_ms) = (Vec::new(), Vec::new());
            for _ in 0..rounds {
                let started = Instant::now();
                quality.export_gauges(snapshot);
                black_box(prometheus.render());
                metrics_ms.push(started.elapsed().as_secs_f64() * 1000.0);
                let started = Instant::now();
                // As the handler does: one copy, then every carrier's view from it.
                let copy = quality.copy(|_| Some(None), true);
                let all: Vec<_> = copy
                    .carriers()
                    .into_iter()
                    .map(|id| copy.carrier(id))
                    .collect();
                black_box(serde_json::to_vec(&all).expect("JSON"));
                stats_ms.push(started.elapsed().as_secs_f64() * 1000.0);
            }
            ingesting.store(false, Ordering::Relaxed);
            let longest_observe = observer.join().expect("observer");
            println!(
                "scrape at {n} keys ({shape}: {} carriers × {routes} routes): /metrics median {:.1} ms (min {:.1}, max {:.1}); /carriers/stats median {:.1} ms (min {:.1}, max {:.1}); longest observe during them {:.1} ms; {rounds} rounds",
                carriers.len(),
                common::quantile(&metrics_ms, 0.5),
                common::quantile(&metrics_ms, 0.0),
                common::quantile(&metrics_ms, 1.0),
                common::quantile(&stats_ms, 0.5),
                common::quantile(&stats_ms, 0.0),
                common::quantile(&stats_ms, 1.0),
                longest_observe.as_secs_f64() * 1000.0,
            );
        }
    }
}
