//! HTTP load on `POST /freeswitch/xml` the way mod_xml_curl sends it: a **new TCP connection
//! per request** (FREESWITCH.md §1.1: `curl_easy_init` per fetch, no keep-alive), a realistic
//! ~160-field dialplan form body, over loopback only, bounded in time.
//!
//! It starts trunkline in-process on a generated platform (1,000 tenants, 1,000 carriers,
//! 100,000 routes) and, in the same run, a baseline: a minimal axum handler that reads the same
//! body and returns a fixed document of the same size. Each server gets a closed-loop phase
//! (maximum throughput) and an open-loop phase at half that rate (latency percentiles, measured
//! from each request's scheduled start so a stall is not hidden). The result that holds on a
//! noisy machine is the ratio of the two.
//!
//! `cargo bench --bench http_load` (about 45 s). Under `cargo test` it runs a short smoke pass
//! on a small platform. The dataset is published in-process with the same `Published::build` the
//! service uses after a committed change: writing 100,000 routes through the API first would
//! take minutes and measure nothing more.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::routing::post;
use tokio::net::TcpListener;
use trunkline::app::Application;
use trunkline::store::Store;

#[allow(dead_code)]
mod common;

use common::{Phase, dialplan_bodies, fetch, fetch_request, paced, published_platform, rss_mib};

struct Plan {
    routes: usize,
    phase: Duration,
    workers: usize,
}

fn plan() -> Plan {
    if common::benchmarking() {
        Plan {
            routes: 100_000,
            phase: Duration::from_secs(10),
            workers: 32,
        }
    } else {
        Plan {
            routes: 1_000,
            phase: Duration::from_millis(300),
            workers: 4,
        }
    }
}

/// Closed loop: `workers` clients each fetch back to back for `duration`.
async fn max_throughput(
    addr: SocketAddr,
    requests: Arc<Vec<Vec<u8>>>,
    workers: usize,
    duration: Duration,
) -> Phase {
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let (stop, errors, requests) = (stop.clone(), errors.clone(), requests.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut i = w;
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    match fetch(addr, &requests[i % requests.len()]).await {
                        Ok(_) => latencies.push(t.elapsed().as_micros() as u64),
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    i += workers;
                }
                latencies
            })
        })
        .collect();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies_us = Vec::new();
    for t in tasks {
        latencies_us.extend(t.await.expect("worker"));
    }
    let elapsed = started.elapsed();
    Phase::new(latencies_us, errors.load(Ordering::Relaxed), elapsed)
}

/// One server under test.
struct Server {
    name: &'static str,
    addr: SocketAddr,
    requests: Arc<Vec<Vec<u8>>>,
}

fn print(server: &Server, label: &str, phase: &Phase) {
    println!(
        "| {} | {label} | {:.0} req/s | {:.3} | {:.3} | {:.3} | {} |",
        server.name,
        phase.rate(),
        phase.percentile(0.50),
        phase.percentile(0.99),
        phase.percentile(0.999),
        phase.errors
    );
}

/// Both servers' maximum throughput, in the order baseline, trunkline, trunkline, baseline,
/// each for half the phase. Every fetch leaves a connection in TIME_WAIT on the shared
/// loopback (hundreds of thousands a run), which makes later connects dearer: measured one
/// after the other, the second server paid for the first's connections (the ratio fell from
/// 0.85 to 0.63 over runs a minute apart). In this order both see the same conditions.
async fn closed_loops(baseline: &Server, trunkline: &Server, plan: &Plan) -> (Phase, Phase) {
    let half = plan.phase / 2;
    let mut phases = Vec::new();
    for server in [baseline, trunkline, trunkline, baseline] {
        phases.push(max_throughput(server.addr, server.requests.clone(), plan.workers, half).await);
    }
    let b2 = phases.pop().expect("four phases");
    let t2 = phases.pop().expect("four phases");
    let t1 = phases.pop().expect("four phases");
    let b1 = phases.pop().expect("four phases");
    (b1.merge(b2), t1.merge(t2))
}

/// The baseline: reads the body, answers a fixed document of `size` bytes.
async fn baseline(size: usize) -> SocketAddr {
    let document = Bytes::from(vec![b' '; size]);
    let app = axum::Router::new().route(
        "/freeswitch/xml",
        post(move |body: Bytes| {
            let document = document.clone();
            async move {
                std::hint::black_box(body);
                ([(axum::http::header::CONTENT_TYPE, "text/xml")], document)
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind baseline");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("baseline serves") });
    addr
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let plan = plan();
    let rss_start = rss_mib();
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::connect(&format!(
        "sqlite://{}",
        dir.path().join("load.db").display()
    ))
    .await
    .expect("database");
    store.migrate().await.expect("migrate");
    let mut settings = trunkline::config::Settings::defaults();
    settings.listen = "127.0.0.1:0".parse().unwrap();
    let app = Application::with_store(settings, store)
        .await
        .expect("trunkline builds");
    let built = Instant::now();
    let (published, routes) = published_platform(plan.routes);
    let build_time = built.elapsed();
    app.state().published.store(Arc::new(published));
    let rss_loaded = rss_mib();
    let addr = app.local_addr();
    tokio::spawn(app.run(std::future::pending()));

    let bodies = dialplan_bodies(&routes);
    let requests: Arc<Vec<_>> = Arc::new(bodies.iter().map(|b| fetch_request(addr, b)).collect());
    let sample = fetch(addr, &requests[0]).await.expect("first fetch");
    let baseline_addr = baseline(sample).await;
    let baseline_requests: Arc<Vec<_>> = Arc::new(
        bodies
            .iter()
            .map(|b| fetch_request(baseline_addr, b))
            .collect(),
    );

    println!(
        "platform: 1000 tenants, 1000 carriers, {} routes; snapshot + documents built in {:.0} ms; RSS {rss_start:.0} MiB at start, {rss_loaded:.0} MiB loaded",
        plan.routes,
        build_time.as_secs_f64() * 1000.0
    );
    println!("| server | phase | throughput | p50 ms | p99 ms | p99.9 ms | errors |");
    println!("|---|---|---|---|---|---|---|");
    let baseline = Server {
        name: "baseline",
        addr: baseline_addr,
        requests: baseline_requests,
    };
    let trunkline = Server {
        name: "trunkline",
        addr,
        requests,
    };
    let (base_max, tl_max) = closed_loops(&baseline, &trunkline, &plan).await;
    print(&baseline, "closed loop", &base_max);
    print(&trunkline, "closed loop", &tl_max);
    let mut halves = Vec::new();
    for (server, max) in [(&baseline, &base_max), (&trunkline, &tl_max)] {
        let half = paced(
            server.addr,
            server.requests.clone(),
            max.rate() / 2.0,
            plan.phase,
        )
        .await;
        print(server, "paced at half", &half);
        halves.push(half);
    }
    let tl_half = halves.pop().expect("two paced phases");
    println!(
        "ratio trunkline/baseline throughput: {:.2}; trunkline p99 at half load: {:.3} ms; RSS at end {:.0} MiB",
        tl_max.rate() / base_max.rate(),
        tl_half.percentile(0.99),
        rss_mib()
    );
    assert_eq!(
        tl_max.errors + tl_half.errors,
        0,
        "trunkline answered with errors"
    );
    assert!(tl_max.completed() > 0, "no request completed");
}
