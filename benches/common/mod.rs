//! What the benches share:
//! - the load client of the HTTP benches (`http_load`, `soak`): fetches the way mod_xml_curl
//!   sends them — a **new TCP connection per request** (FREESWITCH.md §1.1: `curl_easy_init`
//!   per fetch, no keep-alive) carrying the realistic ~160-field form body — an open-loop
//!   pacer and the percentile arithmetic. Loopback only;
//! - the one-match platform the `resolve` benches time (`hot_path`, `resolve_ratio`);
//! - the process's resident memory and its share on huge pages.
//!
//! Every bench includes this module, so every bench runs on the service's allocator.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use trunkline::config::Settings;
use trunkline::fsxml::testdata::SAMPLE_DIALPLAN_FETCH;
use trunkline::model::Dataset;
use trunkline::model::fixtures::platform;
use trunkline::model::{Destination, Route, RouteMatch};
use trunkline::publish::load_templates;
use trunkline::publish::{PublishSettings, Published};
use trunkline::quality::health::{Demotion, HealthView, OpenReason};
use trunkline::routing::{RouteRequest, RoutingSettings, Snapshot};
use uuid::Uuid;

/// As in the `trunkline` binary: the snapshot's large arrays on huge pages.
#[global_allocator]
static ALLOCATOR: trunkline::memory::LargeBlocksOnHugePages =
    trunkline::memory::LargeBlocksOnHugePages;

/// Whether this is a benchmark run (`cargo bench`) rather than the short pass `cargo test`
/// makes of every bench.
pub fn benchmarking() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// This process's resident set size (`VmRSS`), in MiB.
pub fn rss_mib() -> f64 {
    proc_kib_field("/proc/self/status", "VmRSS:") / 1024.0
}

/// How much of this process's memory is on transparent huge pages (`AnonHugePages`), in MiB.
pub fn huge_pages_mib() -> f64 {
    proc_kib_field("/proc/self/smaps_rollup", "AnonHugePages:") / 1024.0
}

/// A `name: N kB` line of a `/proc` file; 0 where there is none.
fn proc_kib_field(file: &str, name: &str) -> f64 {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// The fixture body with its tenant, destination and call id replaced, encoded as FreeSWITCH
/// encodes values (`+` as `%2B`).
pub fn dialplan_body(tenant: Uuid, destination: &str, call: usize) -> String {
    let encoded = destination.replace('+', "%2B");
    SAMPLE_DIALPLAN_FETCH
        .split('&')
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = match name {
                "variable_trunkline_tenant_id" => tenant.to_string(),
                "Caller-Destination-Number" | "Hunt-Destination-Number" => encoded.clone(),
                "Unique-ID" | "Caller-Unique-ID" => {
                    format!("{:08x}-0000-4000-8000-000000000000", call)
                }
                _ => value.to_string(),
            };
            format!("{name}={value}")
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// What the service publishes for the generated platform (1,000 tenants, 1,000 carriers,
/// `routes` routes) with the built-in templates and the default settings, built with the
/// same `Published::build` the service runs after a committed change; and the routes, for
/// picking destinations. Version 0 is an empty database's, so a service given this snapshot
/// sees nothing newer to reload.
pub fn published_platform(routes: usize) -> (Published, Vec<Route>) {
    let settings = Settings::defaults();
    let templates =
        load_templates(&settings.templates, &settings.template_vars).expect("templates");
    let publish = PublishSettings {
        default_context: settings.default_context.clone(),
        failover_mode: settings.failover_mode,
        routing: settings.routing(),
    };
    let (tenants, carriers, routes) = platform(1_000, 1_000, routes);
    let dataset = Dataset {
        version: 0,
        tenants,
        carriers,
        routes: routes.clone(),
        voice_numbers: vec![],
    };
    let published = Published::build(dataset, &templates, &publish).expect("documents render");
    (published, routes)
}

/// 256 dialplan fetch bodies spread over the routes: each call's destination starts with the
/// digits of one route of its tenant (for a regex route, `1`).
pub fn dialplan_bodies(routes: &[Route]) -> Vec<String> {
    routes
        .iter()
        .step_by((routes.len() / 256).max(1))
        .enumerate()
        .map(|(i, r)| {
            let digits = match &r.matcher {
                RouteMatch::Prefix(p) => p.digits().to_string(),
                RouteMatch::Regex(_) => "1".to_string(),
            };
            let destination = format!(
                "+{digits}{}",
                "5550123456"
                    .get(..(12 - digits.len().min(11)))
                    .unwrap_or("5")
            );
            dialplan_body(r.tenant_id.unwrap_or_default(), &destination, i)
        })
        .collect()
}

/// The request of a call of `tenant` to `destination`, nothing else set: what the `resolve`
/// benches time.
pub fn request(tenant: Uuid, destination: &Destination, now: DateTime<Utc>) -> RouteRequest<'_> {
    RouteRequest {
        tenant_id: Some(tenant),
        destination,
        forced_carrier: None,
        caller: None,
        caller_withheld: false,
        caller_name: trunkline::routing::PresentedName::Absent,
        attestation: None,
        now,
        call_id: None,
        max_cost: None,
    }
}

/// The platform of `routes` routes, and per tenant a destination that matches exactly one of
/// its routes: a route's digits, then filler tried until no other route of the tenant matches.
/// Every call then does the same work at every size (one match, one leg) and only the table
/// grows, which is what the 1,000-vs-1,000,000 target is about.
pub fn platform_with_one_match_calls(routes: usize) -> (Snapshot, Vec<(Uuid, Destination)>) {
    let (tenants, carriers, routes) = platform(1_000, 1_000, routes);
    let mut seeds: Vec<(Uuid, String)> = Vec::new();
    for route in &routes {
        let Some(tenant) = route.tenant_id else {
            continue;
        };
        if seeds.iter().filter(|(t, _)| *t == tenant).count() < 8 {
            let digits = match &route.matcher {
                RouteMatch::Prefix(p) => p.digits().to_string(),
                RouteMatch::Regex(r) => r.required_prefix().to_string(),
            };
            seeds.push((tenant, digits));
        }
        if seeds.len() == 8 * tenants.len() {
            break;
        }
    }
    let snapshot = Snapshot::build(1, tenants, carriers, routes, RoutingSettings::default());
    let now = Utc::now();
    let mut calls: Vec<(Uuid, Destination)> = Vec::new();
    for (tenant, digits) in seeds {
        if calls.iter().any(|(t, _)| *t == tenant) {
            continue;
        }
        let found = (0..200u64).find_map(|filler| {
            let number = format!(
                "+{digits}{:0>width$}",
                filler * 7_919,
                width = 11 - digits.len().min(10)
            );
            let destination = Destination::parse(&number).ok()?;
            let decision = snapshot.resolve(&request(tenant, &destination, now));
            (decision.considered.len() == 1 && decision.legs.len() == 1).then_some(destination)
        });
        if let Some(destination) = found {
            calls.push((tenant, destination));
        }
    }
    assert!(calls.len() >= 500, "{} one-match calls", calls.len());
    (snapshot, calls)
}

/// A raw HTTP/1.1 fetch of `body`, asking the server to close the connection.
pub fn fetch_request(addr: SocketAddr, body: &str) -> Vec<u8> {
    format!(
        "POST /freeswitch/xml HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: freeswitch-xml/1.0\r\nAccept: */*\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// One fetch on a new connection; the size of the answer.
pub async fn fetch(addr: SocketAddr, request: &[u8]) -> std::io::Result<usize> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    stream.write_all(request).await?;
    let mut answer = Vec::with_capacity(4096);
    stream.read_to_end(&mut answer).await?;
    if !answer.starts_with(b"HTTP/1.1 200") {
        return Err(std::io::Error::other("not HTTP 200"));
    }
    Ok(answer.len())
}

/// The outcome of one measured phase.
pub struct Phase {
    pub errors: u64,
    pub elapsed: Duration,
    /// One per completed request, sorted.
    latencies_us: Vec<u64>,
}

impl Phase {
    /// The phase whose completed requests took `latencies_us` (any order).
    pub fn new(mut latencies_us: Vec<u64>, errors: u64, elapsed: Duration) -> Phase {
        latencies_us.sort_unstable();
        Phase {
            errors,
            elapsed,
            latencies_us,
        }
    }

    pub fn completed(&self) -> u64 {
        self.latencies_us.len() as u64
    }

    pub fn rate(&self) -> f64 {
        self.completed() as f64 / self.elapsed.as_secs_f64()
    }

    /// Two runs of one phase as one.
    pub fn merge(self, other: Phase) -> Phase {
        let mut latencies_us = self.latencies_us;
        latencies_us.extend(other.latencies_us);
        Phase::new(
            latencies_us,
            self.errors + other.errors,
            self.elapsed + other.elapsed,
        )
    }

    /// The `p` quantile (0–1) in milliseconds.
    pub fn percentile(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies_us.len() as f64 * p).ceil() as usize)
            .clamp(1, self.latencies_us.len());
        self.latencies_us[i - 1] as f64 / 1000.0
    }
}

/// Open loop: requests start at a fixed `rate` whatever the server does; latency counts from
/// the scheduled start (no coordinated omission).
///
/// The pacer is a thread of its own sleeping with `std::thread::sleep` (nanosleep, tens of µs
/// late at most), not a task on the runtime: tokio's timer has a 1 ms resolution, so a pacer
/// on it released requests in bursts once a millisecond and added up to a millisecond of its
/// own to every latency measured from the scheduled start, for the baseline and trunkline
/// alike. The requests themselves run on the runtime.
pub async fn paced(
    addr: SocketAddr,
    requests: Arc<Vec<Vec<u8>>>,
    rate: f64,
    duration: Duration,
) -> Phase {
    let interval = Duration::from_secs_f64(1.0 / rate.max(1.0));
    let total = (duration.as_secs_f64() * rate).max(1.0) as usize;
    let runtime = tokio::runtime::Handle::current();
    let started = Instant::now();
    let tasks = tokio::task::spawn_blocking(move || {
        (0..total)
            .map(|i| {
                let scheduled = started + interval * i as u32;
                std::thread::sleep(scheduled.saturating_duration_since(Instant::now()));
                let requests = requests.clone();
                runtime.spawn(async move {
                    fetch(addr, &requests[i % requests.len()])
                        .await
                        .map(|_| scheduled.elapsed().as_micros() as u64)
                })
            })
            .collect::<Vec<_>>()
    })
    .await
    .expect("pacer thread");
    let mut latencies_us = Vec::with_capacity(total);
    let mut errors = 0;
    for t in tasks {
        match t.await.expect("request task") {
            Ok(us) => latencies_us.push(us),
            Err(_) => errors += 1,
        }
    }
    Phase::new(latencies_us, errors, started.elapsed())
}

/// A health table for the generated platform: one carrier in `every` with its breaker open,
/// and one in `every` (others) with its gateway DOWN on the node the sample fetch comes from
/// (its Core-UUID).
pub fn sick_view(published: &Published, routes: &[Route], every: usize) -> HealthView {
    let mut carriers: Vec<Uuid> = routes.iter().map(|r| r.carrier_id).collect();
    carriers.sort();
    carriers.dedup();
    let open = Demotion::Open {
        until: Utc::now() + chrono::TimeDelta::hours(1),
        reason: OpenReason::ConsecutiveFailures { failures: 5 },
    };
    let breakers = carriers
        .iter()
        .step_by(every)
        .map(|id| (*id, (open.clone(), 5)))
        .collect();
    let down = carriers
        .iter()
        .skip(every / 2)
        .step_by(every)
        .filter_map(|id| published.snapshot.carrier(*id))
        .map(|c| c.gateway_name.to_string())
        .collect();
    let node = "d2c6a4f0-9b1e-4e3d-8c7b-6a5f4e3d2c1b".to_string();
    HealthView::new(breakers, std::collections::HashMap::from([(node, down)]))
}

/// The `q` quantile of `values` (nearest rank), as the alternating-round benches report them.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[i - 1]
}

/// A platform admin token stored in `store`; returns its secret.
pub async fn platform_admin_token(store: &trunkline::store::Store) -> String {
    let token = trunkline::access::generate_token();
    store
        .create_token(&trunkline::model::NewApiToken {
            token_hash: token.hash,
            tenant_id: None,
            role: trunkline::model::Role::PlatformAdmin,
            scopes: trunkline::model::Scope::ALL.to_vec(),
        })
        .await
        .expect("token");
    token.secret
}

/// Fills `quality` with `keys` quality keys (carrier, the call's tenant, route), as a platform
/// whose shared routes serve every tenant makes them: `carriers` each behind `routes` routes,
/// each route carrying the calls of `keys / (carriers × routes)` tenants. One attempt per key,
/// half of them answered, in the current minute.
pub fn fill_quality(
    quality: &trunkline::quality::Quality,
    carriers: &[Uuid],
    routes: usize,
    keys: usize,
) {
    let codes = trunkline::model::FailoverCodes::platform_default();
    for i in 0..keys {
        let carrier = carriers[i % carriers.len()];
        let route = (i / carriers.len()) % routes;
        let tenant = i / (carriers.len() * routes);
        quality.observe(
            &quality_attempt(i as u128, carrier, tenant as u128, route as u128),
            &codes,
            "bench",
        );
    }
}

/// One attempt on the key (`carrier`, tenant `tenant`, route `route`); `leg` makes it a new leg.
pub fn quality_attempt(
    leg: u128,
    carrier: Uuid,
    tenant: u128,
    route: u128,
) -> trunkline::model::Attempt {
    let now = Utc::now();
    let answered = leg.is_multiple_of(2);
    trunkline::model::Attempt {
        id: Uuid::from_u128(leg),
        call_id: Uuid::from_u128(leg),
        leg_id: Uuid::from_u128(leg),
        switch_id: None,
        tenant_id: Some(Uuid::from_u128(0x7e00_0000 + tenant)),
        route_id: Some(Uuid::from_u128(0x1200_0000 + route)),
        carrier_id: carrier,
        gateway: "bench".into(),
        number: "15551234567".into(),
        attempt: 1,
        sip_status: Some(if answered { 200 } else { 503 }),
        cause: "NORMAL_CLEARING".into(),
        q850: None,
        started_at: now - chrono::Duration::seconds(30),
        progress_at: Some(now - chrono::Duration::seconds(29)),
        answered_at: answered.then(|| now - chrono::Duration::seconds(28)),
        ended_at: now,
        billable_seconds: if answered { 28 } else { 0 },
        hangup_by: None,
    }
}
