//! The xml_curl answer with a health table against the same answer with nothing sick, timed
//! side by side (issue 17: fetch throughput with the health table at least 0.95 × without).
//!
//! As `resolve_ratio.rs`: one process, the platform and bodies of the HTTP load (100,000
//! routes, 1,000 carriers), alternating rounds with the order swapped every round, each a
//! warm-up pass then a timed batch of the same fetches; the figure is the median of the
//! per-round throughput ratios (clear time / table time). Two tables: a few sick carriers
//! (1 in 100 with its breaker open, 1 in 100 with its gateway DOWN on the fetching node) and
//! many (1 in 10 each). The share of fetches whose legs health moved is printed beside them.
//!
//! `cargo bench --bench health_ratio`; under `cargo test` a few rounds at 1,000 routes.

#[allow(dead_code)]
mod common;

use std::hint::black_box;
use std::time::Instant;

use chrono::Utc;
use trunkline::publish::Published;
use trunkline::quality::health::HealthView;
use trunkline::xmlcurl::answer::answer;

fn main() {
    let (routes, rounds, batch) = if common::benchmarking() {
        (100_000, 200, 20_000)
    } else {
        (1_000, 4, 500)
    };
    let (published, route_list) = common::published_platform(routes);
    let bodies = common::dialplan_bodies(&route_list);
    let clear = HealthView::default();
    for (name, every) in [("few sick (1 in 100)", 100), ("many sick (1 in 10)", 10)] {
        let sick = common::sick_view(&published, &route_list, every);
        let moved = bodies
            .iter()
            .filter(|b| answer(&published, &sick, b.as_bytes(), Utc::now()).health_moved)
            .count();
        let mut ratios = Vec::with_capacity(rounds);
        let (mut clear_ns, mut sick_ns) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let (c, s) = if round % 2 == 0 {
                let c = time_fetches(&published, &clear, &bodies, batch);
                (c, time_fetches(&published, &sick, &bodies, batch))
            } else {
                let s = time_fetches(&published, &sick, &bodies, batch);
                (time_fetches(&published, &clear, &bodies, batch), s)
            };
            clear_ns.push(c);
            sick_ns.push(s);
            ratios.push(c / s);
        }
        let ratio = common::quantile(&ratios, 0.5);
        println!(
            "xml_curl answer at {routes} routes, {name}: clear {:.0} ns, table {:.0} ns (medians of {rounds} alternating rounds of {batch}); throughput ratio per round: median {ratio:.3}, p10 {:.3}, p90 {:.3}; health moved legs in {moved} of {} fetches",
            common::quantile(&clear_ns, 0.5),
            common::quantile(&sick_ns, 0.5),
            common::quantile(&ratios, 0.1),
            common::quantile(&ratios, 0.9),
            bodies.len(),
        );
        assert!(ratio.is_finite() && moved > 0, "the table moved something");
    }
}

/// The mean time of one answer over `batch` fetches, after one untimed pass over every body.
fn time_fetches(
    published: &Published,
    health: &HealthView,
    bodies: &[String],
    batch: usize,
) -> f64 {
    let now = Utc::now();
    let fetch = |i: usize| {
        let body = bodies[i % bodies.len()].as_bytes();
        black_box(answer(published, health, black_box(body), now));
    };
    (0..bodies.len()).for_each(fetch);
    let started = Instant::now();
    (0..batch).for_each(fetch);
    started.elapsed().as_nanos() as f64 / batch as f64
}
