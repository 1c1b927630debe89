//! Event ingestion: leg hangups from one node. How many `CHANNEL_HANGUP_COMPLETE` events a
//! second trunkline takes from one FreeSWITCH node, turns into attempts and writes to the
//! database, and whether its lag grows (the target: at least 2,000 leg hangups a second
//! per node without growing lag).
//!
//! trunkline runs in process on a SQLite file (a temp dir) with one switch: the fake switch of
//! the tests (`tests/support/fake_switch.rs`) over real TCP, sending leg hangups captured on
//! FreeSWITCH 1.10.12 (`tests/support/testdata/`: every header as the node sent it, ~7 KB for a
//! failed leg, ~11 KB for an answered one), half failed (503) half answered, each with fresh
//! UUIDs, to one carrier. Each run emits at a fixed rate for `INGEST_SECONDS` (default 10), at
//! each rate of `INGEST_RATES` (default `1000,2000,4000,8000`), then as fast as the connection
//! takes them (`max`: the emitter keeps at most 1,024 events queued in the fake, as a node's own
//! queue is in its own process).
//!
//! Reported per run: emitted; ingested (`trunkline_leg_events_total{outcome="attempt"}`);
//! written (`trunkline_attempts_written_total`); lost (`trunkline_events_lost_total`, and what the
//! fake itself dropped); the backlog (emitted − ingested) sampled every 500 ms: its maximum, its
//! value when the last event was emitted, and whether it grows (the second half's mean above the
//! first half's by more than a quarter second of events); the time from the last emit until
//! everything was ingested and until everything was written; CPU (utime + stime of
//! `/proc/self/stat`, over the run until everything was written: the **whole process**, which
//! holds trunkline, the fake switch and the emitter, so an upper bound on trunkline's) and the
//! resident memory (`VmRSS`, the same process). Everything goes to `target/ingest/report.md`
//! and is printed.
//!
//! Scrapes while ingesting (issue 36): with `INGEST_SCRAPERS=n` (default unset), `n` tasks
//! scrape `/metrics` in a loop during each run and a prober sends one xml_curl dialplan fetch
//! every 20 ms on a new connection (as mod_xml_curl does), both from the same process; the
//! report adds the scrapes done and the fetches' p50/p99/max. `INGEST_QUALITY_KEYS=k` first
//! fills carrier quality with `k` keys (`common::fill_quality`: 20 carriers, the bench's and
//! 19 more, behind 50 routes each), so a scrape has that much to compute.
//!
//! `cargo bench --bench ingest` (about 1–2 min). Under `cargo test` a short pass (200/s for 1 s,
//! then `max` for 1 s) checks that every event is accounted for and every attempt written.

#[allow(dead_code)]
mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::app::{metric_value, metrics_text};
use support::fake_switch::{EventCounts, FakeSwitch, LegHangup, LegOutcome};
use trunkline::app::Application;
use trunkline::config::Settings;
use trunkline::quality::Quality;
use trunkline::store::Store;
use uuid::Uuid;

const PASSWORD: &str = "ClueCon-ingest";
/// The fake's event channel: more than any run emits ahead of trunkline, so it does not lag
/// (and counts it if it did).
const FAKE_CAPACITY: usize = 1 << 17;
/// Events the `max` run keeps queued in the fake.
const MAX_RUN_QUEUE: usize = 1024;
const SAMPLE_EVERY: Duration = Duration::from_millis(500);
const DRAIN_LIMIT: Duration = Duration::from_secs(120);
const PROBE_EVERY: Duration = Duration::from_millis(20);
/// A fetch slower than this counts as an error (FreeSWITCH's own xml_curl timeout is shorter).
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);
/// The carriers quality keys are spread over, and the routes behind each.
const FILLED_CARRIERS: usize = 20;
const FILLED_ROUTES: usize = 50;

/// A fixed rate, or as fast as the connection takes them.
#[derive(Debug, Clone, Copy)]
enum Rate {
    PerSecond(u32),
    Max,
}

impl Rate {
    fn label(self) -> String {
        match self {
            Rate::PerSecond(r) => r.to_string(),
            Rate::Max => "max".into(),
        }
    }
}

struct Plan {
    rates: Vec<Rate>,
    seconds: f64,
    /// Scrapers looping on `/metrics` during each run (and the fetch prober), when set.
    scrapers: Option<usize>,
    quality_keys: usize,
}

impl Plan {
    fn from_env(benchmarking: bool) -> Plan {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let mut rates: Vec<Rate> = match (var("INGEST_RATES"), benchmarking) {
            (Some(r), _) => r
                .split(',')
                .map(|r| Rate::PerSecond(r.trim().parse().expect("INGEST_RATES: events/s")))
                .collect(),
            (None, true) => [1000, 2000, 4000, 8000].map(Rate::PerSecond).to_vec(),
            (None, false) => vec![Rate::PerSecond(200)],
        };
        rates.push(Rate::Max);
        let seconds = var("INGEST_SECONDS").map_or(if benchmarking { 10.0 } else { 1.0 }, |s| {
            s.parse().expect("INGEST_SECONDS")
        });
        let scrapers = var("INGEST_SCRAPERS").map(|n| n.parse().expect("INGEST_SCRAPERS"));
        let quality_keys =
            var("INGEST_QUALITY_KEYS").map_or(0, |k| k.parse().expect("INGEST_QUALITY_KEYS"));
        Plan {
            rates,
            seconds,
            scrapers,
            quality_keys,
        }
    }
}

/// The counters of one `/metrics` reading.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    attempt: u64,
    other: u64,
    lost: u64,
    written: u64,
}

/// The sum of the series of `name` carrying every label of `labels`, as a count.
fn series(text: &str, name: &str, labels: &[&str]) -> u64 {
    metric_value(text, name, labels) as u64
}

struct Bench {
    base: String,
    addr: SocketAddr,
    quality: Arc<Quality>,
    /// Platform admin: `/metrics` answers platform tokens only.
    token: String,
    client: reqwest::Client,
    fake: FakeSwitch,
    carrier: Uuid,
    _dir: tempfile::TempDir,
}

impl Bench {
    async fn start() -> Bench {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::connect(&format!(
            "sqlite://{}",
            dir.path().join("ingest.db").display()
        ))
        .await
        .expect("database");
        store.migrate().await.expect("migrate");
        let fake = FakeSwitch::start_with_event_capacity(PASSWORD, FAKE_CAPACITY).await;
        store
            .create_switch(&fake.as_new_switch(PASSWORD, true), false)
            .await
            .expect("switch");
        let token = common::platform_admin_token(&store).await;
        let mut settings = Settings::defaults();
        settings.listen = "127.0.0.1:0".parse().unwrap();
        let app = Application::with_store(settings, store)
            .await
            .expect("trunkline");
        let addr = app.local_addr();
        let base = format!("http://{addr}");
        let quality = app.state().quality.clone();
        fake.set_trunkline(&base);
        tokio::spawn(app.run(std::future::pending()));
        let client = reqwest::Client::new();
        let carrier = create_carrier(&client, &base, &token, "alpha").await;
        // Subscribed, and the first reconcile pass (which reloads the ACL) done.
        support::process::eventually(
            "trunkline subscribed and its first pass done",
            Duration::from_secs(30),
            || {
                let counts = fake.event_counts();
                std::future::ready(counts.subscriptions > 0 && fake.acl_fetches() > 0)
            },
        )
        .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        Bench {
            base,
            addr,
            quality,
            token,
            client,
            fake,
            carrier,
            _dir: dir,
        }
    }

    /// Fills carrier quality with `keys` keys over this carrier and more (`FILLED_CARRIERS`).
    async fn fill_quality(&self, keys: usize) {
        let mut carriers = vec![self.carrier];
        for i in 1..FILLED_CARRIERS {
            let name = format!("filled{i:02}");
            carriers.push(create_carrier(&self.client, &self.base, &self.token, &name).await);
        }
        common::fill_quality(&self.quality, &carriers, FILLED_ROUTES, keys);
    }

    /// Scrapers looping on `/metrics` and a fetch prober, until `stop`.
    fn load(&self, scrapers: usize, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Load> {
        let scraping: Vec<_> = (0..scrapers)
            .map(|_| {
                let (client, base, token, stop) = (
                    self.client.clone(),
                    self.base.clone(),
                    self.token.clone(),
                    stop.clone(),
                );
                tokio::spawn(async move {
                    let mut done = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        metrics_text(&client, &base, &token).await;
                        done += 1;
                    }
                    done
                })
            })
            .collect();
        let addr = self.addr;
        tokio::spawn(async move {
            let started = Instant::now();
            let mut probing = Vec::new();
            let mut tick = tokio::time::interval(PROBE_EVERY);
            let mut call = 0;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                call += 1;
                let request = common::fetch_request(
                    addr,
                    &common::dialplan_body(Uuid::nil(), "+15551234567", call),
                );
                // Each fetch on its own task, as each FreeSWITCH session fetches on its own.
                probing.push(tokio::spawn(async move {
                    let sent = Instant::now();
                    match tokio::time::timeout(PROBE_TIMEOUT, common::fetch(addr, &request)).await {
                        Ok(Ok(_)) => Some(sent.elapsed().as_micros() as u64),
                        _ => None,
                    }
                }));
            }
            let mut latencies = Vec::new();
            let mut errors = 0;
            for probe in probing {
                match probe.await.expect("probe") {
                    Some(us) => latencies.push(us),
                    None => errors += 1,
                }
            }
            let mut scrapes = 0;
            for s in scraping {
                scrapes += s.await.expect("scraper");
            }
            Load {
                scrapes,
                fetches: common::Phase::new(latencies, errors, started.elapsed()),
            }
        })
    }

    async fn counters(&self) -> Counters {
        let text = metrics_text(&self.client, &self.base, &self.token).await;
        let legs = |outcome: &str| {
            series(
                &text,
                "trunkline_leg_events_total",
                &[&format!("outcome=\"{outcome}\"")],
            )
        };
        Counters {
            attempt: legs("attempt"),
            other: legs("not_ours") + legs("unattributable"),
            lost: series(&text, "trunkline_events_lost_total", &[]),
            written: series(&text, "trunkline_attempts_written_total", &[]),
        }
    }

    fn leg(&self, i: u64) -> LegHangup {
        let outcome = if i.is_multiple_of(2) {
            LegOutcome::Failed(503)
        } else {
            LegOutcome::Answered
        };
        LegHangup::new(self.carrier, Uuid::new_v4(), 1, outcome)
    }

    async fn run(&self, rate: Rate, seconds: f64, scrapers: Option<usize>) -> Run {
        let before = self.counters().await;
        let fake_before = self.fake.event_counts();
        let cpu_before = cpu_seconds();
        let emitted = move |c: EventCounts| c.emitted - fake_before.emitted;
        let fake_lost = |c: EventCounts| {
            (c.unheard - fake_before.unheard)
                + (c.lagged - fake_before.lagged)
                + (c.unsubscribed - fake_before.unsubscribed)
        };
        let started = Instant::now();
        // The sampler: the backlog every 500 ms while emitting, and the largest RSS.
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let stop = stop.clone();
            let (client, base, fake, token) = (
                self.client.clone(),
                self.base.clone(),
                self.fake.clone(),
                self.token.clone(),
            );
            tokio::spawn(async move {
                let mut backlog = Vec::new();
                let mut tick = tokio::time::interval(SAMPLE_EVERY);
                tick.tick().await;
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let out = fake.event_counts();
                    let text = metrics_text(&client, &base, &token).await;
                    let ingested =
                        series(&text, "trunkline_leg_events_total", &["outcome="]) as i64;
                    let before = (before.attempt + before.other) as i64;
                    backlog.push(emitted(out) as i64 - (ingested - before));
                }
                backlog
            })
        };
        let loading = scrapers.map(|n| self.load(n, stop.clone()));
        let mut rss_max = common::rss_mib();
        let mut sent = 0u64;
        let length = Duration::from_secs_f64(seconds);
        match rate {
            Rate::PerSecond(r) => {
                let mut tick = tokio::time::interval(Duration::from_millis(1));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                loop {
                    tick.tick().await;
                    let elapsed = started.elapsed().min(length);
                    let due = (elapsed.as_secs_f64() * f64::from(r)) as u64;
                    while sent < due {
                        self.fake.emit_leg_hangup(&self.leg(sent));
                        sent += 1;
                    }
                    if sent.is_multiple_of(500) {
                        rss_max = rss_max.max(common::rss_mib());
                    }
                    if elapsed >= length {
                        break;
                    }
                }
            }
            Rate::Max => {
                while started.elapsed() < length {
                    if self.fake.queued_events() >= MAX_RUN_QUEUE {
                        // Waiting, not spinning: the emitter's CPU counts in the process's.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        continue;
                    }
                    self.fake.emit_leg_hangup(&self.leg(sent));
                    sent += 1;
                    if sent.is_multiple_of(500) {
                        rss_max = rss_max.max(common::rss_mib());
                    }
                }
            }
        }
        let last_emit = Instant::now();
        let emit_seconds = started.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        let backlog = sampler.await.expect("sampler");
        let load = match loading {
            Some(l) => Some(l.await.expect("load")),
            None => None,
        };
        // Until every event is ingested or counted lost. The client reports a loss with the
        // next event it delivers, so when the counts stop moving one more event (an A-leg,
        // `not_ours`) brings any notice still pending.
        let mut extra = 0;
        let mut last_seen = (u64::MAX, Instant::now());
        let (ingested_after, d) = loop {
            let d = self.counters().await;
            let out = self.fake.event_counts();
            let taken = (d.attempt - before.attempt) + (d.other - before.other);
            let accounted = taken + (d.lost - before.lost) + fake_lost(out);
            rss_max = rss_max.max(common::rss_mib());
            if accounted >= emitted(out) && emitted(out) == sent + extra {
                break (last_emit.elapsed(), d);
            }
            if accounted != last_seen.0 {
                last_seen = (accounted, Instant::now());
            } else if last_seen.1.elapsed() > Duration::from_secs(1) && extra < 3 {
                self.fake.emit_a_leg_hangup(Uuid::new_v4(), self.carrier);
                extra += 1;
                last_seen.1 = Instant::now();
            }
            if last_emit.elapsed() >= DRAIN_LIMIT {
                // Under scrapes, a stall is the finding (issue 36): reported, not a failure.
                assert!(
                    scrapers.is_some(),
                    "{}: not everything was ingested or counted lost within {DRAIN_LIMIT:?}",
                    rate.label()
                );
                println!(
                    "{}: {accounted} of {} events accounted for {DRAIN_LIMIT:?} after the last emit",
                    rate.label(),
                    emitted(out)
                );
                break (last_emit.elapsed(), d);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let attempts = d.attempt - before.attempt;
        let (written_after, written) = loop {
            let d = self.counters().await;
            if d.written - before.written >= attempts || last_emit.elapsed() >= DRAIN_LIMIT * 2 {
                break (last_emit.elapsed(), d.written - before.written);
            }
            assert!(
                last_emit.elapsed() < DRAIN_LIMIT || scrapers.is_some(),
                "{}: attempts not written within {DRAIN_LIMIT:?}",
                rate.label()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let wall = started.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu_before;
        let out = self.fake.event_counts();
        let run = Run {
            rate,
            emitted: sent,
            emit_seconds,
            ingested: attempts,
            other: d.other - before.other,
            written,
            lost: d.lost - before.lost,
            fake_lost: fake_lost(out),
            backlog,
            ingested_after,
            written_after,
            cpu,
            wall,
            rss_max,
            sentinels: extra,
            load,
        };
        // Let the recorder's writer and the pruner go quiet before the next run.
        tokio::time::sleep(Duration::from_secs(1)).await;
        run
    }
}

/// utime + stime of this process, in seconds (`/proc/self/stat` fields 14 and 15, in clock
/// ticks of 1/100 s on Linux).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let after_name = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| fields[i].parse::<f64>().expect("a tick count");
    (ticks(11) + ticks(12)) / 100.0
}

struct Run {
    rate: Rate,
    emitted: u64,
    emit_seconds: f64,
    /// Attempts taken (`outcome="attempt"`).
    ingested: u64,
    /// Other leg hangups taken: the sentinels.
    other: u64,
    written: u64,
    lost: u64,
    fake_lost: u64,
    /// Emitted − ingested, every 500 ms while emitting.
    backlog: Vec<i64>,
    ingested_after: Duration,
    written_after: Duration,
    cpu: f64,
    wall: f64,
    rss_max: f64,
    sentinels: u64,
    load: Option<Load>,
}

/// What the scrapers and the fetch prober saw during one run.
struct Load {
    scrapes: u64,
    fetches: common::Phase,
}

impl Run {
    fn rate(&self) -> f64 {
        self.emitted as f64 / self.emit_seconds
    }

    /// Whether the backlog grows: the second half's mean above the first half's by more than
    /// a quarter second of events.
    fn growing(&self) -> bool {
        let n = self.backlog.len();
        if n < 2 {
            return false;
        }
        let mean = |s: &[i64]| s.iter().sum::<i64>() as f64 / s.len().max(1) as f64;
        let (first, second) = self.backlog.split_at(n / 2);
        mean(second) - mean(first) > self.rate() / 4.0
    }

    fn row(&self) -> String {
        let load = self.load.as_ref().map_or(String::new(), |l| {
            format!(
                " {} | {} | {:.1} | {:.1} | {:.1} | {} |",
                l.scrapes,
                l.fetches.completed(),
                l.fetches.percentile(0.5),
                l.fetches.percentile(0.99),
                l.fetches.percentile(1.0),
                l.fetches.errors,
            )
        });
        format!(
            "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.0} % | {:.1} | {:.0} |{load}",
            self.rate.label(),
            self.emitted,
            self.rate(),
            self.ingested,
            self.written,
            self.lost,
            self.fake_lost,
            self.backlog.iter().max().copied().unwrap_or(0),
            self.backlog.last().copied().unwrap_or(0),
            if self.growing() { "**yes**" } else { "no" },
            self.ingested_after.as_secs_f64() * 1000.0,
            self.written_after.as_secs_f64() * 1000.0,
            self.cpu / self.wall * 100.0,
            self.cpu * 1e6 / self.emitted.max(1) as f64,
            self.rss_max,
        )
    }
}

const HEADER: &str = "| rate/s | emitted | achieved/s | ingested | written | lost | lost in fake | backlog max | backlog at last emit | grows | ingested after last emit ms | written after last emit ms | process CPU | CPU µs/event | RSS max MiB |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|";

const LOAD_HEADER: &str =
    " scrapes | fetches | fetch p50 ms | fetch p99 ms | fetch max ms | fetches failed |";

/// Creates a carrier through the API; its id.
async fn create_carrier(client: &reqwest::Client, base: &str, token: &str, name: &str) -> Uuid {
    let created: serde_json::Value = client
        .post(format!("{base}/api/v1/carriers"))
        .bearer_auth(token)
        .json(&serde_json::json!({"name": name, "gateway_name": name, "remote_host": format!("sip.{name}.example")}))
        .send()
        .await
        .expect("carrier")
        .json()
        .await
        .expect("carrier body");
    Uuid::parse_str(created["id"].as_str().expect("carrier id")).unwrap()
}

fn report_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ingest/report.md")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let benchmarking = common::benchmarking();
    let plan = Plan::from_env(benchmarking);
    let bench = Bench::start().await;
    if plan.quality_keys > 0 {
        bench.fill_quality(plan.quality_keys).await;
    }
    let rates: Vec<String> = plan.rates.iter().map(|r| r.label()).collect();
    let (load_note, load_header, load_rule) = match plan.scrapers {
        Some(n) => (
            format!(
                "; {n} scrapers on /metrics, a fetch every {PROBE_EVERY:?}, {} quality keys",
                plan.quality_keys
            ),
            LOAD_HEADER,
            "---|---|---|---|---|---|",
        ),
        None => (String::new(), "", ""),
    };
    let (header, rule) = HEADER.split_once('\n').expect("two lines");
    let mut report = format!(
        "leg hangup ingestion, one node: rates {} per second, {} s a run; body sizes {} B (failed) and {} B (answered); RSS at start {:.0} MiB{load_note}\n\n{header}{load_header}\n{rule}{load_rule}\n",
        rates.join(", "),
        plan.seconds,
        bench.leg(0).render(&bench.fake.core_uuid()).len(),
        bench.leg(1).render(&bench.fake.core_uuid()).len(),
        common::rss_mib(),
    );
    print!("{report}");
    let mut runs = Vec::new();
    for &rate in &plan.rates {
        let run = bench.run(rate, plan.seconds, plan.scrapers).await;
        println!("{}", run.row());
        let _ = writeln!(report, "{}", run.row());
        runs.push(run);
    }
    let target = runs
        .iter()
        .find(|r| matches!(r.rate, Rate::PerSecond(2000)))
        .map(|r| {
            let kept_up = !r.growing() && r.lost == 0 && r.fake_lost == 0;
            format!(
                "target (2,000 leg hangups/s from one node without growing lag): {}",
                if kept_up { "met" } else { "NOT met" }
            )
        })
        .unwrap_or_else(|| "target: no run at 2,000/s".into());
    let best = runs
        .iter()
        .filter(|r| !r.growing() && r.lost == 0 && r.fake_lost == 0)
        .map(Run::rate)
        .fold(0.0, f64::max);
    let _ = writeln!(
        report,
        "\n{target}\nhighest rate taken without loss or growing lag: {best:.0}/s\nCPU and RSS are the whole process (trunkline, the fake switch and the emitter run in it)."
    );
    println!(
        "\n{}",
        report
            .lines()
            .rev()
            .take(3)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    std::fs::create_dir_all(report_path().parent().unwrap()).unwrap();
    std::fs::write(report_path(), &report).unwrap();

    if !benchmarking {
        for run in &runs {
            assert!(run.emitted > 0, "{}: emitted", run.rate.label());
            // Nothing vanishes uncounted; nothing is taken twice. (The loss count may exceed
            // the loss by one per loss notice: src/esl/client.rs `next_event`, `.max(1)`.)
            let taken = run.ingested + run.other + run.fake_lost;
            assert!(
                taken + run.lost >= run.emitted + run.sentinels
                    && taken <= run.emitted + run.sentinels,
                "{}: every event ingested or counted lost",
                run.rate.label()
            );
            assert_eq!(
                run.written,
                run.ingested,
                "{}: every attempt written",
                run.rate.label()
            );
            assert!(run.cpu > 0.0, "{}: the CPU read", run.rate.label());
        }
    }
}
