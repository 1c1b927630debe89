//! Soak: a steady rate of realistic dialplan fetches (a new connection each, as mod_xml_curl
//! does) plus a trickle of API writes (2/s: carrier and route updates through the real API, each
//! one a snapshot rebuild) against one in-process trunkline on a temp SQLite file, loopback
//! only, bounded in time. Reports errors, fetch latency percentiles, write latency and resident
//! memory after warm-up and at the end; fails on any error or on RSS growth beyond
//! [`RSS_GROWTH_BOUND_MIB`].
//!
//! `cargo bench --bench soak` holds it for 60 s. Under `cargo test` (no `--bench` argument) it
//! runs a short smoke pass of a few seconds. RSS is the whole process: the load client's tasks
//! live here too, which only makes the bound stricter.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use trunkline::app::Application;
use trunkline::store::Store;
use uuid::Uuid;

#[allow(dead_code)]
mod common;

use common::{Phase, dialplan_body, fetch, fetch_request, paced, rss_mib};

/// Resident memory may grow this much between the end of warm-up and the end of the run.
const RSS_GROWTH_BOUND_MIB: f64 = 24.0;
const CARRIERS: usize = 8;
const ROUTES: usize = 64;
const WRITES_PER_SECOND: f64 = 2.0;

struct Plan {
    warm_up: Duration,
    duration: Duration,
    fetches_per_second: f64,
}

fn plan() -> Plan {
    if common::benchmarking() {
        Plan {
            warm_up: Duration::from_secs(5),
            duration: Duration::from_secs(60),
            fetches_per_second: 200.0,
        }
    } else {
        Plan {
            warm_up: Duration::from_millis(500),
            duration: Duration::from_secs(3),
            fetches_per_second: 50.0,
        }
    }
}

/// The real API, as an operator's tooling calls it.
struct Api {
    base: String,
    token: String,
    client: reqwest::Client,
}

impl Api {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> Result<Value, String> {
        let response = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let text = response.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{status}: {text}"));
        }
        serde_json::from_str(&text).map_err(|e| e.to_string())
    }

    async fn create(&self, path: &str, body: Value) -> Uuid {
        let created = self
            .send(reqwest::Method::POST, path, body)
            .await
            .unwrap_or_else(|e| panic!("seeding {path}: {e}"));
        Uuid::parse_str(created["id"].as_str().expect("an id")).expect("a uuid")
    }
}

/// A tenant, platform carriers and prefix routes, written through the API; the fetches that
/// reach them (each a different route, so every one bridges).
async fn seed(api: &Api, addr: SocketAddr) -> (Vec<Uuid>, Vec<Uuid>, Vec<Vec<u8>>) {
    let tenant = api
        .create(
            "/api/v1/tenants",
            json!({"name": "Soak", "context": "soak", "features": []}),
        )
        .await;
    let mut carriers = Vec::new();
    for i in 0..CARRIERS {
        let gateway = format!("soak-{i}");
        carriers.push(
            api.create(
                "/api/v1/carriers",
                json!({"name": gateway, "gateway_name": gateway, "remote_host": format!("sip.{gateway}.example")}),
            )
            .await,
        );
    }
    let mut routes = Vec::new();
    let mut requests = Vec::new();
    for i in 0..ROUTES {
        let prefix = format!("+1{}", 200 + i);
        routes.push(
            api.create(
                "/api/v1/outbound-routes",
                json!({"name": format!("NPA {prefix}"), "prefix": prefix, "carrier_id": carriers[i % CARRIERS], "priority": 1}),
            )
            .await,
        );
        requests.push(fetch_request(
            addr,
            &dialplan_body(tenant, &format!("{prefix}5550123"), i),
        ));
    }
    (carriers, routes, requests)
}

/// `WRITES_PER_SECOND` updates for `duration`, alternating a carrier's port and a route's
/// priority; latency of each acknowledged write, and the failures.
async fn trickle(api: &Api, carriers: &[Uuid], routes: &[Uuid], duration: Duration) -> Phase {
    let mut timer = tokio::time::interval(Duration::from_secs_f64(1.0 / WRITES_PER_SECOND));
    let started = Instant::now();
    let mut latencies_us = Vec::new();
    let mut errors = 0;
    let mut i = 0usize;
    while started.elapsed() < duration {
        timer.tick().await;
        let (path, body) = if i.is_multiple_of(2) {
            (
                format!("/api/v1/carriers/{}", carriers[i / 2 % carriers.len()]),
                json!({"remote_port": 5060 + (i % 100)}),
            )
        } else {
            (
                format!("/api/v1/outbound-routes/{}", routes[i / 2 % routes.len()]),
                json!({"priority": 1 + i % 9}),
            )
        };
        let t = Instant::now();
        match api.send(reqwest::Method::PATCH, &path, body).await {
            Ok(_) => latencies_us.push(t.elapsed().as_micros() as u64),
            Err(e) => {
                eprintln!("write {path} failed: {e}");
                errors += 1;
            }
        }
        i += 1;
    }
    Phase::new(latencies_us, errors, started.elapsed())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let plan = plan();
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("soak.db").display());
    let store = Store::connect(&url).await.expect("database");
    store.migrate().await.expect("migrate");
    let token = common::platform_admin_token(&store).await;
    let mut settings = trunkline::config::Settings::defaults();
    settings.listen = "127.0.0.1:0".parse().unwrap();
    let app = Application::with_store(settings, store)
        .await
        .expect("trunkline builds");
    let addr = app.local_addr();
    tokio::spawn(app.run(std::future::pending()));
    let api = Api {
        base: format!("http://{addr}"),
        token,
        client: reqwest::Client::new(),
    };
    let (carriers, routes, requests) = seed(&api, addr).await;
    let requests = Arc::new(requests);
    let first = fetch(addr, &requests[0]).await.expect("first fetch");
    assert!(first > 0);

    let warm = paced(
        addr,
        requests.clone(),
        plan.fetches_per_second,
        plan.warm_up,
    )
    .await;
    let rss_start = rss_mib();
    let (fetches, writes) = tokio::join!(
        paced(addr, requests, plan.fetches_per_second, plan.duration),
        trickle(&api, &carriers, &routes, plan.duration),
    );
    let rss_end = rss_mib();

    println!(
        "soak: {:.0} s at {:.0} fetches/s (new connection each) + {WRITES_PER_SECOND:.0} API writes/s; {CARRIERS} carriers, {ROUTES} routes",
        plan.duration.as_secs_f64(),
        plan.fetches_per_second
    );
    println!("| load | completed | per s | errors | p50 ms | p99 ms | p99.9 ms | max ms |");
    println!("|---|---|---|---|---|---|---|---|");
    for (label, phase) in [("fetches", &fetches), ("API writes", &writes)] {
        println!(
            "| {label} | {} | {:.1} | {} | {:.3} | {:.3} | {:.3} | {:.3} |",
            phase.completed(),
            phase.rate(),
            phase.errors,
            phase.percentile(0.50),
            phase.percentile(0.99),
            phase.percentile(0.999),
            phase.percentile(1.0)
        );
    }
    println!(
        "RSS: {rss_start:.1} MiB after warm-up, {rss_end:.1} MiB at the end (growth {:.1} MiB, bound {RSS_GROWTH_BOUND_MIB} MiB)",
        rss_end - rss_start
    );
    assert_eq!(warm.errors + fetches.errors, 0, "fetch errors");
    assert_eq!(writes.errors, 0, "API write errors");
    assert!(writes.completed() > 0, "no API write completed");
    assert!(
        rss_end - rss_start <= RSS_GROWTH_BOUND_MIB,
        "resident memory grew {:.1} MiB",
        rss_end - rss_start
    );
}
