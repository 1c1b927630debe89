//! The node-level load harness (issue 23): what a call routed by trunkline costs a real
//! FreeSWITCH 1.10 next to the same bridge from a static dialplan file.
//!
//! One `trunkline serve` (this build's binary, on a SQLite file) with one carrier on a `+1`
//! route; one answering sipp carrier; a FreeSWITCH from `../shared/freeswitch` configured from
//! `freeswitch-conf/` (the interop suite's `support::freeswitch`) with load settings in
//! `switch.conf.xml` ([`switch_conf`]); sipp callers at a fixed rate. Four paths, alternated at
//! every rate (the order reversed every other round), each run on a freshly started node that
//! trunkline has finished reconciling:
//! - `static`: the bridge in a static dialplan file FreeSWITCH reads itself, on a node whose
//!   xml_curl configuration has no dialplan binding. The file is trunkline's own answer for the
//!   number, so both paths run the very same actions;
//! - `trunkline`: the shipped configuration; every call's dialplan is fetched from trunkline;
//! - `not-owned`: the shipped configuration, the call entering a context trunkline does not own
//!   (the same static file): the fetch is answered "not found" and FreeSWITCH falls back to
//!   its file — what an operator's own contexts cost behind the binding;
//! - `own-file`: the shipped configuration, the call entering through a profile whose
//!   `dialplan` is `XML:<file>` (the same context as a document of its own): mod_dialplan_xml
//!   reads that file itself and never asks the binding — how an operator keeps such calls off
//!   it (`freeswitch-conf/README.md`).
//!
//! Reported per run: calls ok / failed, INVITE → 180 and INVITE → 200 p50 / p95 from the
//! caller's message timestamps, FreeSWITCH's and trunkline's CPU per call (utime + stime from
//! `/proc`) and the dialplan fetches trunkline answered per call (its `/metrics`). Then each
//! path's highest clean rate (0 failures and p95 to 200 under 1 s, at that rate and every lower
//! one) by two rules — every run clean, and most runs clean — the ratios the issue asks for,
//! and the CPU per call of the clean runs against `static`. Before the ladder, the fetch alone:
//! FreeSWITCH's CPU per `xml_locate` of trunkline's context on a node with and without the
//! binding (no call, so no media noise).
//!
//! `cargo bench --bench node_load` runs the ladder. Settings (environment):
//! `NODE_LOAD_RATES` (calls/s, default `50,60,…,140`; `none`: the fetch measurement only),
//! `NODE_LOAD_ROUNDS` (runs of each path at each rate, default 2), `NODE_LOAD_SECONDS` (length
//! of each run, default 8), `NODE_LOAD_PATHS` (default `static,trunkline,not-owned,own-file`),
//! `NODE_LOAD_FETCHES` (lookups of the fetch measurement, default 3000), `NODE_LOAD_TMPFS=1`
//! (the node's temp and log directories, where every fetched answer is written twice before it
//! is parsed, on `/dev/shm`), `NODE_LOAD_LOGLEVEL` (the node's core log level, default
//! `warning`). A path stops climbing after two lost rates in a row. The table and summary also
//! go to `target/node-load/report.md`. Under `cargo test` a short pass (a few calls each way)
//! checks that every path connects its calls, that the CPU figures are read, and that exactly
//! the `trunkline` and `not-owned` calls made a fetch.

#[path = "../tests/support/mod.rs"]
mod support;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use support::app::create_token;
use support::freeswitch::{
    self, Build, Node, NodeSpec, add_caller_profile, drop_in, free_port, templates_with_callers,
};
use support::process::{Server, eventually};
use support::sipp::{self, Answer, Carrier, LoadOutcome};
use trunkline::model::{Role, Scope};
use trunkline::store::Store;

const XMLCURL_USER: &str = "freeswitch";
const XMLCURL_PASSWORD: &str = "node-load-xmlcurl-secret";
const ESL_PASSWORD: &str = "node-load-esl-secret";
const NUMBER: &str = "+15551234567";
const CALLER_ID: &str = "+15550001111";
/// The context of the operator's own calls: a static file, not trunkline's.
const STATIC_CONTEXT: &str = "static_out";
const WAIT: Duration = Duration::from_secs(30);

/// One way of routing the same call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Routing {
    Static,
    Trunkline,
    NotOwned,
    /// The operator's own calls kept off the binding: their profile's `dialplan` is
    /// `XML:<file>`, which mod_dialplan_xml reads itself on every call (`dialplan_hunt`), on the
    /// shipped configuration.
    OwnFile,
}

impl Routing {
    fn name(self) -> &'static str {
        match self {
            Routing::Static => "static",
            Routing::Trunkline => "trunkline",
            Routing::NotOwned => "not-owned",
            Routing::OwnFile => "own-file",
        }
    }

    fn parse(name: &str) -> Routing {
        [
            Routing::Static,
            Routing::Trunkline,
            Routing::NotOwned,
            Routing::OwnFile,
        ]
        .into_iter()
        .find(|p| p.name() == name.trim())
        .unwrap_or_else(|| panic!("NODE_LOAD_PATHS: unknown path {name:?}"))
    }

    /// Whether the node's xml_curl configuration keeps the dialplan binding.
    fn dialplan_binding(self) -> bool {
        self != Routing::Static
    }
}

/// What the harness was told to do.
struct Plan {
    rates: Vec<u32>,
    seconds: u32,
    paths: Vec<Routing>,
    /// Runs of each path at each rate (alternated).
    rounds: u32,
    /// Lookups of the fetch-cost measurement.
    fetches: u32,
    tmpfs: bool,
    loglevel: String,
}

impl Plan {
    fn from_env(benchmarking: bool) -> Plan {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let rates = match (var("NODE_LOAD_RATES"), benchmarking) {
            (Some(rates), _) if rates == "none" => Vec::new(),
            (Some(rates), _) => rates
                .split(',')
                .map(|r| r.trim().parse().expect("NODE_LOAD_RATES: calls per second"))
                .collect(),
            (None, true) => vec![50, 60, 70, 80, 90, 100, 110, 120, 130, 140],
            (None, false) => vec![5],
        };
        Plan {
            rates,
            seconds: var("NODE_LOAD_SECONDS").map_or(if benchmarking { 8 } else { 2 }, |s| {
                s.parse().expect("NODE_LOAD_SECONDS")
            }),
            paths: var("NODE_LOAD_PATHS").map_or_else(
                || {
                    vec![
                        Routing::Static,
                        Routing::Trunkline,
                        Routing::NotOwned,
                        Routing::OwnFile,
                    ]
                },
                |p| p.split(',').map(Routing::parse).collect(),
            ),
            rounds: var("NODE_LOAD_ROUNDS").map_or(if benchmarking { 2 } else { 1 }, |s| {
                s.parse().expect("NODE_LOAD_ROUNDS")
            }),
            fetches: var("NODE_LOAD_FETCHES").map_or(if benchmarking { 3000 } else { 20 }, |s| {
                s.parse().expect("NODE_LOAD_FETCHES")
            }),
            tmpfs: var("NODE_LOAD_TMPFS").is_some_and(|v| v == "1"),
            loglevel: var("NODE_LOAD_LOGLEVEL").unwrap_or_else(|| "warning".into()),
        }
    }
}

/// One run: one path at one rate.
struct Run {
    rate: u32,
    path: Routing,
    calls: LoadOutcome,
    /// CPU seconds over the run.
    freeswitch_cpu: f64,
    trunkline_cpu: f64,
    /// Dialplan fetches trunkline answered during the run.
    fetches: u64,
    /// Leg hangups trunkline read from the node's events during the run (and until they
    /// settled), and the events its Event Socket client had to drop.
    legs: u64,
    lost: u64,
}

impl Run {
    fn failed(&self, calls: u32) -> usize {
        calls as usize - self.calls.connected
    }

    fn clean(&self, calls: u32) -> bool {
        self.failed(calls) == 0 && percentile(&self.calls.answered, 0.95) < 1.0
    }

    fn per_call_ms(&self, cpu: f64) -> f64 {
        cpu * 1000.0 / self.calls.placed.max(1) as f64
    }
}

/// The `q` quantile (nearest rank) of `values`, in seconds; infinite when there are none.
fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::INFINITY;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// utime + stime of a process, in seconds (`/proc/<pid>/stat` fields 14 and 15, in clock
/// ticks of 1/100 s on Linux).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/<pid>/stat");
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let after_name = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| fields[i].parse::<f64>().expect("a tick count");
    // Fields 14 and 15 are the 12th and 13th after the name (field 3 is the first).
    (ticks(11) + ticks(12)) / 100.0
}

/// The node's core settings for a load test. `sessions-per-second` is 30 in FreeSWITCH's
/// sample `switch.conf.xml` and 100 in many deployed ones: each call is two sessions (caller
/// and carrier leg), so 100 caps a test at about 50 calls/s. `max-sessions` and the RTP range
/// must hold every concurrent leg (each takes an RTP and an RTCP port).
fn switch_conf(rtp_start: u16, loglevel: &str) -> String {
    freeswitch::switch_conf(rtp_start, 9_999, 4000, 2000, loglevel)
}

/// The shipped xml_curl configuration without its dialplan binding: a node on which
/// FreeSWITCH reads every dialplan from its own files (sofia.conf and acl.conf still come from
/// trunkline, so both nodes run the same gateway).
fn xml_curl_without_dialplan_binding(url: &str, credentials: &str) -> String {
    let text = drop_in(
        "autoload_configs/xml_curl.conf.xml",
        &[
            ("http://127.0.0.1:8080/freeswitch/xml", url),
            ("freeswitch:change-this-xmlcurl-password", credentials),
        ],
    );
    let start = text
        .find("<binding name=\"trunkline_dialplan\">")
        .expect("the dialplan binding");
    let end = start + text[start..].find("</binding>").unwrap() + "</binding>".len();
    format!("{}{}", &text[..start], &text[end..])
}

/// trunkline's own answer for `NUMBER`, its context renamed: the static file holding the very
/// same actions.
async fn static_dialplan(base: &str) -> String {
    let form = [
        ("hostname", "node-load"),
        ("section", "dialplan"),
        ("tag_name", ""),
        ("key_name", ""),
        ("key_value", ""),
        ("Hunt-Context", "trunkline"),
        ("Hunt-Destination-Number", NUMBER),
        ("Hunt-Caller-ID-Number", CALLER_ID),
        ("Unique-ID", "0f0e0d0c-0b0a-4908-8706-050403020100"),
    ];
    let answer = reqwest::Client::new()
        .post(format!("{base}/freeswitch/xml"))
        .basic_auth(XMLCURL_USER, Some(XMLCURL_PASSWORD))
        .form(&form)
        .send()
        .await
        .expect("the dialplan fetch")
        .text()
        .await
        .unwrap();
    let start = answer
        .find("<context name=\"trunkline\">")
        .unwrap_or_else(|| panic!("trunkline routes {NUMBER}: {answer}"));
    let end = answer.rfind("</context>").unwrap() + "</context>".len();
    format!(
        "<include>\n{}\n</include>\n",
        answer[start..end].replace(
            "<context name=\"trunkline\">",
            &format!("<context name=\"{STATIC_CONTEXT}\">")
        )
    )
}

/// trunkline, its carrier and route, the sipp carrier, and what each node run needs.
struct Harness {
    build: Build,
    dir: tempfile::TempDir,
    server: Server,
    _carrier: Carrier,
    carrier_port: u16,
    caller_port: u16,
    operator_port: u16,
    own_file_port: u16,
    esl_port: u16,
    static_dialplan: String,
    /// With `NODE_LOAD_TMPFS=1`: where the nodes' temp and log directories go.
    tmpfs: Option<tempfile::TempDir>,
    plan: Plan,
    client: reqwest::Client,
    token: String,
}

impl Harness {
    async fn start(plan: Plan) -> Option<Harness> {
        let build = freeswitch::build()?;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("trunkline.db").display());
        let store = Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        let token = create_token(&store, Role::PlatformAdmin, None, Scope::ALL).await;
        drop(store);
        let (profile_port, caller_port, operator_port, own_file_port, esl_port) = (
            free_port(),
            free_port(),
            free_port(),
            free_port(),
            free_port(),
        );
        let own_file = dir.path().join("own-dialplan.xml");
        let config = format!(
            r#"database_url = {url:?}
xmlcurl_user = "{XMLCURL_USER}"
xmlcurl_password = "{XMLCURL_PASSWORD}"

[template_vars]
sip_ip = "127.0.0.1"
rtp_ip = "127.0.0.1"
ext_sip_ip = "127.0.0.1"
ext_rtp_ip = "127.0.0.1"
sip_port = "{profile_port}"
caller_sip_port = "{caller_port}"
operator_sip_port = "{operator_port}"
operator_context = "{STATIC_CONTEXT}"
own_file_sip_port = "{own_file_port}"
own_file_context = "{STATIC_CONTEXT}"
own_file_dialplan = "XML:{}"

[[switches]]
name = "fs1"
esl_host = "127.0.0.1"
esl_port = {esl_port}
esl_password = "{ESL_PASSWORD}"
profiles = ["external"]
"#,
            own_file.display()
        );
        let templates = templates_with_callers(dir.path());
        // A third caller-facing profile, whose calls mod_dialplan_xml routes from a file of its
        // own (`own_file_dialplan = "XML:<file>"`) instead of asking the bindings.
        add_caller_profile(&templates, "own_file");
        let server = Server::start_at(
            dir.path(),
            &templates,
            &config,
            support::process::free_loopback_addr(),
        )
        .await;
        let carrier = Carrier::start(dir.path(), "alpha", Answer::Connect);
        carrier.listening().await;
        let client = reqwest::Client::new();
        let post = |path: &str, body: Value| {
            client
                .post(format!("{}{path}", server.base))
                .bearer_auth(&token)
                .json(&body)
                .send()
        };
        let created: Value = post(
            "/api/v1/carriers",
            json!({"name": "alpha", "gateway_name": "alpha", "remote_host": "127.0.0.1",
                   "remote_port": carrier.port}),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        let route = post(
            "/api/v1/outbound-routes",
            json!({"name": "+1 via alpha", "prefix": "+1", "carrier_id": created["id"],
                   "priority": 1}),
        )
        .await
        .unwrap();
        assert!(route.status().is_success(), "route: {route:?}");
        let static_dialplan = static_dialplan(&server.base).await;
        // The same context as a whole document, for `dialplan=XML:<file>`.
        std::fs::write(
            &own_file,
            static_dialplan
                .replace(
                    "<include>",
                    "<document type=\"freeswitch/xml\">\n<section name=\"dialplan\">",
                )
                .replace("</include>", "</section>\n</document>"),
        )
        .unwrap();
        Some(Harness {
            build,
            carrier_port: carrier.port,
            _carrier: carrier,
            server,
            caller_port,
            operator_port,
            own_file_port,
            esl_port,
            static_dialplan,
            tmpfs: plan.tmpfs.then(|| {
                tempfile::Builder::new()
                    .prefix("node-load-")
                    .tempdir_in("/dev/shm")
                    .unwrap()
            }),
            dir,
            plan,
            client,
            token,
        })
    }

    /// A freshly started node for `path`, its profiles running and the gateway live.
    async fn node(&self, path: Routing) -> Node {
        let node_dir = self.dir.path().join(format!("node-{}", path.name()));
        let _ = std::fs::remove_dir_all(&node_dir);
        std::fs::create_dir_all(&node_dir).unwrap();
        if let Some(tmpfs) = &self.tmpfs {
            // mod_xml_curl writes each answer to `<temp>/<uuid>.tmp.xml`, and FreeSWITCH's
            // pre-processor writes its output to `<log>/<uuid>.tmp.xml.fsxml` before parsing
            // (switch_xml.c switch_xml_parse_file): both directories go on tmpfs.
            for sub in ["temp", "log"] {
                let on_tmpfs = tmpfs.path().join(format!("{}-{sub}", path.name()));
                let _ = std::fs::remove_dir_all(&on_tmpfs);
                std::fs::create_dir_all(&on_tmpfs).unwrap();
                std::os::unix::fs::symlink(on_tmpfs, node_dir.join(sub)).unwrap();
            }
        }
        let url = format!("{}/freeswitch/xml", self.server.base);
        let credentials = format!("{XMLCURL_USER}:{XMLCURL_PASSWORD}");
        let rtp_start = 20_000;
        let mut own_files = vec![
            (
                "autoload_configs/switch.conf.xml".to_string(),
                switch_conf(rtp_start, &self.plan.loglevel),
            ),
            (
                format!("dialplan/{STATIC_CONTEXT}.xml"),
                self.static_dialplan.clone(),
            ),
        ];
        if !path.dialplan_binding() {
            own_files.push((
                "autoload_configs/xml_curl.conf.xml".into(),
                xml_curl_without_dialplan_binding(&url, &credentials),
            ));
        }
        let node = Node::start(
            &self.build,
            &node_dir,
            NodeSpec {
                xmlcurl_url: url,
                xmlcurl_credentials: credentials,
                esl_port: self.esl_port,
                esl_password: ESL_PASSWORD.into(),
                rtp_start,
                own_files,
            },
        )
        .await;
        let proxy = format!("<proxy>sip:127.0.0.1:{}</proxy>", self.carrier_port);
        eventually("profiles running and gateway alpha live", WAIT, || async {
            let status = node.api("sofia status").await.unwrap_or_default();
            let gateway = node
                .api("sofia xmlstatus gateway alpha")
                .await
                .unwrap_or_default();
            ["external", "callers", "operator", "own_file"]
                .iter()
                .all(|p| {
                    status
                        .lines()
                        .any(|l| l.contains(p) && l.contains("profile") && l.contains("RUNNING"))
                })
                && gateway.contains(&proxy)
        })
        .await;
        // trunkline reconciles a node that (re)connects (xmlstatus, perhaps a rescan, which
        // makes the node fetch sofia.conf): that work must not fall into the measured run.
        eventually("trunkline synced the node", WAIT, || async {
            let switches: Value = self
                .client
                .get(format!("{}/api/v1/switches", self.server.base))
                .bearer_auth(&self.token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            support::app::switch_synced(&switches[0])
        })
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        node
    }

    async fn run(&self, path: Routing, rate: u32, calls: u32) -> Run {
        let mut node = self.node(path).await;
        let node_pid = node.pid().expect("the node runs");
        let port = match path {
            Routing::Trunkline => self.caller_port,
            Routing::Static | Routing::NotOwned => self.operator_port,
            Routing::OwnFile => self.own_file_port,
        };
        let counts_before = self.counts().await;
        let before = (cpu_seconds(node_pid), cpu_seconds(self.server.pid()));
        let outcome = sipp::load(self.dir.path(), port, NUMBER, CALLER_ID, rate, calls).await;
        let after = (cpu_seconds(node_pid), cpu_seconds(self.server.pid()));
        let counts = self.counts().await;
        // Every connected call's leg ends with a hangup event; give the last ones a moment.
        let mut settled = counts;
        for _ in 0..100 {
            if settled.legs - counts_before.legs >= outcome.connected as u64 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            settled = self.counts().await;
        }
        node.stop().await;
        Run {
            rate,
            path,
            calls: outcome,
            freeswitch_cpu: after.0 - before.0,
            trunkline_cpu: after.1 - before.1,
            fetches: counts.fetches - counts_before.fetches,
            legs: settled.legs - counts_before.legs,
            lost: settled.lost - counts_before.lost,
        }
    }

    /// trunkline's counters so far: dialplan fetches answered (every outcome), leg hangups
    /// read into attempts, events dropped.
    async fn counts(&self) -> Counts {
        let metrics =
            support::app::metrics_text(&self.client, &self.server.base, &self.token).await;
        let value =
            |name: &str, labels: &[&str]| support::app::metric_value(&metrics, name, labels) as u64;
        Counts {
            fetches: value(
                "trunkline_xmlcurl_requests_total",
                &["section=\"dialplan\""],
            ),
            legs: value("trunkline_leg_events_total", &["outcome=\"attempt\""]),
            lost: value("trunkline_events_lost_total", &[]),
        }
    }
}

#[derive(Clone, Copy)]
struct Counts {
    fetches: u64,
    legs: u64,
    lost: u64,
}

fn calls_at(rate: u32, seconds: u32) -> u32 {
    (rate * seconds).max(10)
}

fn row(run: &Run, calls: u32) -> String {
    let ms = |values: &[f64], q| percentile(values, q) * 1000.0;
    format!(
        "| {} | {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} | {:.2} | {} | {} |",
        run.rate,
        run.path.name(),
        calls,
        run.calls.connected,
        run.failed(calls),
        ms(&run.calls.ringing, 0.5),
        ms(&run.calls.ringing, 0.95),
        ms(&run.calls.answered, 0.5),
        ms(&run.calls.answered, 0.95),
        run.per_call_ms(run.freeswitch_cpu),
        run.per_call_ms(run.trunkline_cpu),
        run.fetches as f64 / f64::from(calls),
        run.legs,
        run.lost,
    )
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// How many runs of `path` at `rate` were clean, of how many.
fn clean_share(runs: &[Run], plan: &Plan, path: Routing, rate: u32) -> (usize, usize) {
    let at: Vec<&Run> = runs
        .iter()
        .filter(|r| r.path == path && r.rate == rate)
        .collect();
    let clean = at
        .iter()
        .filter(|r| r.clean(calls_at(rate, plan.seconds)))
        .count();
    (clean, at.len())
}

/// Whether a rate counts as clean for a path: every run (`strict`), or more than half of them.
/// Near the node's limit one stall (the virtual machine's, or sipp's 500 ms retransmission
/// feeding on itself) can turn a whole run bad on any path; the majority rule needs two of
/// three runs to go bad before a rate is lost.
fn rate_clean(share: (usize, usize), strict: bool) -> bool {
    let (clean, total) = share;
    total > 0
        && if strict {
            clean == total
        } else {
            clean * 2 > total
        }
}

/// The summary: each path's highest clean rate (that rate and every lower one clean), by
/// both rules, and trunkline against the static file.
fn summary(runs: &[Run], plan: &Plan) -> String {
    let mut out = String::new();
    let highest = |path: Routing, strict: bool| {
        plan.rates
            .iter()
            .copied()
            .take_while(|&rate| rate_clean(clean_share(runs, plan, path, rate), strict))
            .max()
    };
    for (rule, strict) in [("every run", true), ("most runs", false)] {
        for &path in &plan.paths {
            let _ = writeln!(
                out,
                "highest clean rate ({rule} clean), {}: {}",
                path.name(),
                highest(path, strict).map_or("none".into(), |r| format!("{r} calls/s"))
            );
        }
        if let (Some(ours), Some(theirs)) = (
            highest(Routing::Trunkline, strict),
            highest(Routing::Static, strict),
        ) {
            let _ = writeln!(
                out,
                "trunkline / static clean rate ({rule} clean): {:.2}",
                f64::from(ours) / f64::from(theirs)
            );
        }
    }
    // CPU per call: the median of the clean runs (a run gone bad measures retransmissions, not
    // routing), at every rate both paths ran clean by the majority rule.
    let per_call = |path: Routing, rate: u32, with_trunkline: bool| {
        median(
            runs.iter()
                .filter(|r| r.path == path && r.rate == rate)
                .filter(|r| r.clean(calls_at(rate, plan.seconds)))
                .map(|r| {
                    r.per_call_ms(
                        r.freeswitch_cpu + if with_trunkline { r.trunkline_cpu } else { 0.0 },
                    )
                })
                .collect(),
        )
    };
    let mut differences = Vec::new();
    for &rate in &plan.rates {
        let clean = |path| rate_clean(clean_share(runs, plan, path, rate), false);
        if !(clean(Routing::Trunkline) && clean(Routing::Static)) {
            continue;
        }
        let static_cpu = per_call(Routing::Static, rate, false);
        let node = per_call(Routing::Trunkline, rate, false) - static_cpu;
        let both = per_call(Routing::Trunkline, rate, true) - static_cpu;
        differences.push(node);
        let _ = write!(
            out,
            "at {rate} calls/s: FreeSWITCH CPU per call {static_cpu:.2} ms static; trunkline {node:+.2} ms ({both:+.2} ms with trunkline's own)"
        );
        for path in [Routing::NotOwned, Routing::OwnFile] {
            if plan.paths.contains(&path) && clean(path) {
                let _ = write!(
                    out,
                    "; {} {:+.2} ms",
                    path.name(),
                    per_call(path, rate, false) - static_cpu
                );
            }
        }
        let _ = writeln!(out);
    }
    if !differences.is_empty() {
        let _ = writeln!(
            out,
            "median over those rates: FreeSWITCH CPU per call, trunkline − static {:+.2} ms",
            median(differences)
        );
    }
    out
}

async fn ladder(harness: &Harness) -> Vec<Run> {
    let plan = &harness.plan;
    let mut runs: Vec<Run> = Vec::new();
    let mut unclean_in_a_row = vec![0u32; plan.paths.len()];
    println!(
        "| rate/s | path | calls | ok | failed | 180 p50 ms | 180 p95 ms | 200 p50 ms | 200 p95 ms | FreeSWITCH CPU ms/call | trunkline CPU ms/call | fetches/call | legs recorded | events lost |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut turn = 0;
    for &rate in &plan.rates {
        let calls = calls_at(rate, plan.seconds);
        let climbing: Vec<usize> = (0..plan.paths.len())
            .filter(|&i| unclean_in_a_row[i] < 2)
            .collect();
        if climbing.is_empty() {
            break;
        }
        for _ in 0..plan.rounds {
            let mut order = climbing.clone();
            if turn % 2 == 1 {
                order.reverse();
            }
            turn += 1;
            for &i in &order {
                let run = harness.run(plan.paths[i], rate, calls).await;
                println!("{}", row(&run, calls));
                runs.push(run);
            }
        }
        for &i in &climbing {
            let share = clean_share(&runs, plan, plan.paths[i], rate);
            unclean_in_a_row[i] = if rate_clean(share, false) {
                0
            } else {
                unclean_in_a_row[i] + 1
            };
        }
    }
    runs
}

/// FreeSWITCH's CPU per dialplan lookup of trunkline's context (`xml_locate`, no call), on a
/// node without the dialplan binding and on one with it: what the fetch itself costs the node.
/// The lookup carries no destination, so trunkline answers "not found" and the node falls back
/// to its static file: exactly the cost of a context trunkline does not own.
async fn fetch_cost(harness: &Harness) -> String {
    let plan = &harness.plan;
    let mut per_lookup = Vec::new();
    for routing in [Routing::Static, Routing::Trunkline] {
        let mut node = harness.node(routing).await;
        let pid = node.pid().expect("the node runs");
        let before = (cpu_seconds(pid), cpu_seconds(harness.server.pid()));
        let answer = freeswitch::api_repeated(
            harness.esl_port,
            ESL_PASSWORD,
            "xml_locate dialplan context name trunkline",
            plan.fetches,
        )
        .await
        .expect("xml_locate");
        assert!(answer.contains("trunkline"), "xml_locate: {answer}");
        let after = (cpu_seconds(pid), cpu_seconds(harness.server.pid()));
        node.stop().await;
        let ms = |cpu: f64| cpu * 1000.0 / f64::from(plan.fetches);
        per_lookup.push((ms(after.0 - before.0), ms(after.1 - before.1)));
    }
    let ((without, _), (with, trunkline)) = (per_lookup[0], per_lookup[1]);
    format!(
        "dialplan lookup ({} each): FreeSWITCH CPU {without:.3} ms without the binding, {with:.3} ms through it: the fetch costs the node {:+.3} ms (trunkline's own CPU {trunkline:.3} ms)",
        plan.fetches,
        with - without
    )
}

fn report_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/node-load/report.md")
}

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let plan = Plan::from_env(benchmarking);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let Some(harness) = Harness::start(plan).await else {
            return;
        };
        let plan = &harness.plan;
        println!(
            "node load: rates {:?}, {} s a run, node temp dir on {}, node log level {}",
            plan.rates,
            plan.seconds,
            if plan.tmpfs { "/dev/shm" } else { "disk" },
            plan.loglevel
        );
        let fetches = fetch_cost(&harness).await;
        println!("{fetches}\n");
        let runs = ladder(&harness).await;
        let summary = summary(&runs, plan);
        println!("\n{summary}");
        let summary = format!("{fetches}\n{summary}");
        let mut report = String::new();
        for run in &runs {
            let _ = writeln!(report, "{}", row(run, calls_at(run.rate, plan.seconds)));
        }
        std::fs::create_dir_all(report_path().parent().unwrap()).unwrap();
        std::fs::write(report_path(), format!("{report}\n{summary}")).unwrap();
        if !benchmarking {
            // The short pass: every path connected every call, and the CPU was read.
            for run in &runs {
                let calls = calls_at(run.rate, plan.seconds);
                assert_eq!(
                    (run.calls.placed, run.calls.connected),
                    (calls as usize, calls as usize),
                    "{}: every call placed and connected",
                    run.path.name()
                );
                assert_eq!(
                    run.calls.ringing.len(),
                    calls as usize,
                    "{}: 180s",
                    run.path.name()
                );
                assert!(
                    run.freeswitch_cpu > 0.0,
                    "{}: the node's CPU read",
                    run.path.name()
                );
                // Only the calls in trunkline's context and those behind the binding in a
                // context it does not own make a fetch; `dialplan=XML:<file>` keeps the
                // operator's calls off the binding altogether.
                let fetched = matches!(run.path, Routing::Trunkline | Routing::NotOwned);
                assert_eq!(
                    run.fetches,
                    if fetched { u64::from(calls) } else { 0 },
                    "{}: dialplan fetches",
                    run.path.name()
                );
                // Every call's one leg carries trunkline's tags (the static file is trunkline's
                // own answer): one recorded leg per call, none lost.
                assert_eq!(
                    (run.legs, run.lost),
                    (u64::from(calls), 0),
                    "{}: leg hangups read",
                    run.path.name()
                );
            }
            if runs.iter().any(|r| r.path == Routing::Trunkline) {
                assert!(
                    runs.iter()
                        .filter(|r| r.path == Routing::Trunkline)
                        .all(|r| r.trunkline_cpu > 0.0),
                    "trunkline's CPU read"
                );
            }
        }
    });
}
