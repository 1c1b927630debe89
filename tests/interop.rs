//! The real-FreeSWITCH interop suite: every test starts the `trunkline serve` binary on a real
//! port and SQLite file, a FreeSWITCH 1.10 node configured from `freeswitch-conf/` as its
//! README tells an operator (only ports and credentials substituted), carriers as sipp UAS
//! processes and callers as sipp UAC through the caller-facing profile of
//! `templates/examples/callers.xml`, then asserts on what reached the wire.
//!
//! Where the node comes from and what happens without one: `support/freeswitch.rs`. The tests
//! take one lock, so one node runs at a time (they are CPU-bound on a small machine), and every
//! wait is bounded.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::app::create_token;
use support::freeswitch::{self, Build, Node, NodeSpec, free_port, templates_with_callers};
use support::process::{Server, eventually};
use support::sipp::{self, Answer, CallOutcome, Caller, Carrier};
use trunkline::model::{Role, Scope};
use trunkline::store::Store;

const WAIT: Duration = Duration::from_secs(30);
const XMLCURL_USER: &str = "freeswitch";
const XMLCURL_PASSWORD: &str = "interop-xmlcurl-secret";
const ESL_PASSWORD: &str = "interop-esl-secret";
const CALLER_ID: &str = "+15550001111";

/// One node at a time (tokio's lock: it is held across awaits, and a failed test releases it).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How a platform is set up.
#[derive(Debug, Clone)]
struct Options {
    failover_mode: &'static str,
    esl_debounce_ms: u64,
    /// A PostgreSQL database shared by two instances, both bindings on the node (the second
    /// instance's as the fallback); `None`: one instance on a SQLite file.
    postgres: Option<String>,
    /// The node as a `[[switches]]` entry of the configuration file (else: none is declared,
    /// and a test registers it through the API).
    switch_in_config: bool,
    /// More of the configuration file (tables go last: after the `[[switches]]` entry).
    extra_config: &'static str,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            failover_mode: "default",
            esl_debounce_ms: 500,
            postgres: None,
            switch_in_config: true,
            extra_config: "",
        }
    }
}

/// The node as trunkline's configuration file declares it.
fn switch_entry(esl_port: u16) -> String {
    format!(
        "\n[[switches]]\nname = \"fs1\"\nesl_host = \"127.0.0.1\"\nesl_port = {esl_port}\nesl_password = \"{ESL_PASSWORD}\"\nprofiles = [\"external\"]\n"
    )
}

/// The drop-in's bindings, then each again pointing at the second instance: mod_xml_curl asks
/// a section's bindings in order and takes the first answer, so the second instance answers
/// only when the first does not (README: several instances).
fn bindings_with_fallback(first: &str, second: &str, credentials: &str) -> String {
    let drop_in = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("freeswitch-conf/autoload_configs/xml_curl.conf.xml"),
    )
    .unwrap()
    .replace("freeswitch:change-this-xmlcurl-password", credentials);
    let start = drop_in.find("<bindings>").unwrap() + "<bindings>".len();
    let end = drop_in.find("</bindings>").unwrap();
    let bindings = &drop_in[start..end];
    let fallback = bindings
        .replace("http://127.0.0.1:8080/freeswitch/xml", second)
        .replace("<binding name=\"trunkline_", "<binding name=\"fallback_");
    format!(
        "{}{}{fallback}{}",
        &drop_in[..start],
        bindings.replace("http://127.0.0.1:8080/freeswitch/xml", first),
        &drop_in[end..]
    )
}

/// trunkline, its database and templates, and a FreeSWITCH node wired to it.
struct Platform {
    build: Build,
    dir: tempfile::TempDir,
    server: Server,
    /// The second instance, with [`Options::postgres`].
    second: Option<(Server, SocketAddr)>,
    node: Node,
    token: String,
    client: reqwest::Client,
    addr: SocketAddr,
    templates: PathBuf,
    config: String,
    /// The caller-facing profiles: into trunkline's context (`callers`) and into the
    /// operator's dialplan (`operator`).
    caller_profile_port: u16,
    operator_profile_port: u16,
}

/// The operator's own dialplan of `freeswitch-conf/README.md` step 7: a condition that admits
/// only a plain number, the trunkline variables set first (here from the caller's `X-Tenant`,
/// `X-Carrier` and `X-Attest` headers, each checked by a condition), then a transfer into
/// trunkline's context.
const OPERATOR_DIALPLAN: &str = r#"<include>
  <context name="operator_in">
    <extension name="trunkline_variables" continue="true">
      <condition field="${sip_h_X-Tenant}" expression="^([0-9a-f-]{36})$" break="never">
        <action application="set" data="trunkline_tenant_id=$1"/>
      </condition>
      <condition field="${sip_h_X-Carrier}" expression="^([0-9a-f-]{36})$" break="never">
        <action application="set" data="trunkline_carrier_id=$1"/>
      </condition>
      <condition field="${sip_h_X-Attest}" expression="^([ABC])$" break="never">
        <action application="set" data="trunkline_attestation=$1"/>
      </condition>
    </extension>
    <extension name="to_trunkline">
      <condition field="destination_number" expression="^(\+?[0-9*#]{1,32})$">
        <action application="transfer" data="$1 XML trunkline"/>
      </condition>
    </extension>
  </context>
</include>
"#;

impl Platform {
    /// Starts trunkline with `carriers` created by `arrange` before the node boots, then the
    /// node; `None` when this machine has no FreeSWITCH (outside CI).
    async fn start(options: Options) -> Option<Platform> {
        let build = freeswitch::build()?;
        let dir = tempfile::tempdir().unwrap();
        let url = options
            .postgres
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("trunkline.db").display()));
        let store = Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        let token = create_token(&store, Role::PlatformAdmin, None, Scope::ALL).await;
        drop(store);

        let (carrier_profile_port, caller_profile_port, operator_profile_port) =
            (free_port(), free_port(), free_port());
        let esl_port = free_port();
        let config = format!(
            r#"database_url = {url:?}
xmlcurl_user = "{XMLCURL_USER}"
xmlcurl_password = "{XMLCURL_PASSWORD}"
failover_mode = "{}"
esl_debounce_ms = {}

[template_vars]
sip_ip = "127.0.0.1"
rtp_ip = "127.0.0.1"
ext_sip_ip = "127.0.0.1"
ext_rtp_ip = "127.0.0.1"
sip_port = "{carrier_profile_port}"
caller_sip_port = "{caller_profile_port}"
operator_sip_port = "{operator_profile_port}"
operator_context = "operator_in"
{}{}"#,
            options.failover_mode,
            options.esl_debounce_ms,
            if options.switch_in_config {
                switch_entry(esl_port)
            } else {
                String::new()
            },
            options.extra_config,
        );
        let templates = templates_with_callers(dir.path());
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap();
        let server = Server::start_at(dir.path(), &templates, &config, addr).await;
        let credentials = format!("{XMLCURL_USER}:{XMLCURL_PASSWORD}");
        let mut own_files = vec![("dialplan/operator_in.xml".into(), OPERATOR_DIALPLAN.into())];
        let second = match options.postgres {
            None => None,
            Some(_) => {
                let second_dir = dir.path().join("second");
                std::fs::create_dir_all(&second_dir).unwrap();
                let second_addr = std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .unwrap();
                let second = Server::start_at(&second_dir, &templates, &config, second_addr).await;
                own_files.push((
                    "autoload_configs/xml_curl.conf.xml".into(),
                    bindings_with_fallback(
                        &format!("http://{addr}/freeswitch/xml"),
                        &format!("http://{second_addr}/freeswitch/xml"),
                        &credentials,
                    ),
                ));
                Some((second, second_addr))
            }
        };
        let node_dir = dir.path().join("node");
        let node = Node::start(
            &build,
            &node_dir,
            NodeSpec {
                xmlcurl_url: format!("http://{addr}/freeswitch/xml"),
                xmlcurl_credentials: credentials,
                esl_port,
                esl_password: ESL_PASSWORD.into(),
                rtp_start: 20_000 + (esl_port % 400) * 100,
                own_files,
            },
        )
        .await;
        let platform = Platform {
            build,
            dir,
            server,
            second,
            node,
            token,
            client: reqwest::Client::new(),
            addr,
            templates,
            config,
            caller_profile_port,
            operator_profile_port,
        };
        platform.profiles_running().await;
        Some(platform)
    }

    /// Two instances on a fresh PostgreSQL database (`None`, after a notice, without
    /// `TEST_DATABASE_URL` outside CI), with or without the node in their configuration file.
    async fn start_two_instances(switch_in_config: bool) -> Option<Platform> {
        let fresh = support::db::postgres_fresh().await?;
        drop(fresh.store);
        Platform::start(Options {
            postgres: Some(fresh.url),
            switch_in_config,
            ..Options::default()
        })
        .await
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    async fn profiles_running(&self) {
        eventually("every template profile RUNNING", WAIT, || async {
            let status = self.api("sofia status").await;
            ["external", "callers", "operator"].iter().all(|p| {
                status
                    .lines()
                    .any(|l| l.contains(p) && l.contains("profile") && l.contains("RUNNING"))
            })
        })
        .await;
    }

    async fn api(&self, command: &str) -> String {
        self.node
            .api(command)
            .await
            .unwrap_or_else(|e| panic!("api {command}: {e}\n{}", self.node.log()))
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.send_to(self.addr, method, path, body).await
    }

    /// [`Platform::send`] to a given instance.
    async fn send_to(
        &self,
        addr: SocketAddr,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let mut request = self
            .client
            .request(method.clone(), format!("http://{addr}{path}"))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// A request to VoIPBIN's API as its clients send it (`?token=`, no header): status and
    /// body.
    async fn voipbin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> (reqwest::StatusCode, Value) {
        let response = self
            .client
            .request(
                method,
                format!("http://{}{path}?token={}", self.addr, self.token),
            )
            .json(&body)
            .send()
            .await
            .expect("request sent");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A platform carrier on a local port (a sipp carrier's, or nothing's), named after its
    /// gateway; `extra` fields are merged in.
    async fn carrier(&self, gateway: &str, port: u16, extra: Value) -> Value {
        self.carrier_on(self.addr, gateway, port, extra).await
    }

    /// [`Platform::carrier`] through a given instance.
    async fn carrier_on(&self, addr: SocketAddr, gateway: &str, port: u16, extra: Value) -> Value {
        let mut body = json!({
            "name": gateway,
            "gateway_name": gateway,
            "remote_host": "127.0.0.1",
            "remote_port": port,
        });
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        self.send_to(addr, reqwest::Method::POST, "/api/v1/carriers", Some(body))
            .await
    }

    /// PATCH of a row of `collection` (`carriers`, `switches`) through a given instance.
    async fn patch_on(
        &self,
        addr: SocketAddr,
        collection: &str,
        row: &Value,
        body: Value,
    ) -> Value {
        self.send_to(
            addr,
            reqwest::Method::PATCH,
            &path(collection, row),
            Some(body),
        )
        .await
    }

    async fn route(&self, prefix: &str, carrier: &Value, priority: u32, extra: Value) -> Value {
        let mut body = json!({
            "name": format!("{prefix} via {}", carrier["gateway_name"]),
            "prefix": prefix,
            "carrier_id": carrier["id"],
            "priority": priority,
        });
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        self.send(reqwest::Method::POST, "/api/v1/outbound-routes", Some(body))
            .await
    }

    /// `sofia xmlstatus gateway <name>` once the gateway runs with `proxy` (e.g.
    /// `sip:127.0.0.1:5091`), or a test failure.
    async fn gateway_live(&self, name: &str, proxy: &str) -> String {
        let mut last = String::new();
        let wanted = format!("<proxy>{proxy}</proxy>");
        let found = tokio::time::timeout(WAIT, async {
            loop {
                last = self.api(&format!("sofia xmlstatus gateway {name}")).await;
                if last.contains(&wanted) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(found.is_ok(), "gateway {name} with {proxy}: {last}");
        last
    }

    async fn gateway_gone(&self, name: &str) {
        eventually(&format!("gateway {name} gone"), WAIT, || async {
            !self
                .api(&format!("sofia xmlstatus gateway {name}"))
                .await
                .contains("<gateway>")
        })
        .await;
    }

    /// trunkline's `/metrics` text.
    async fn metrics(&self) -> String {
        support::app::metrics_text(&self.client, &format!("http://{}", self.addr)).await
    }

    /// Waits until trunkline says the node is converged on the current configuration.
    async fn synced(&self) {
        eventually("the node synced by trunkline", WAIT, || async {
            let switches = self
                .send(reqwest::Method::GET, "/api/v1/switches", None)
                .await;
            support::app::switch_synced(&switches.as_array().unwrap()[0])
        })
        .await;
    }

    /// A call from the caller-facing profile straight into trunkline's context.
    async fn call(&self, number: &str, caller: Caller) -> CallOutcome {
        sipp::call(
            self.dir(),
            self.caller_profile_port,
            number,
            CALLER_ID,
            &[],
            caller,
        )
        .await
    }

    /// A call to `number` through the operator's dialplan, which sets the trunkline variable
    /// named by `header` (`X-Tenant`, `X-Carrier`, `X-Attest`) before transferring to
    /// trunkline; the test fails unless the caller is connected.
    async fn operator_call_connects(&self, number: &str, header: (&str, &str), what: &str) {
        let outcome = sipp::call(
            self.dir(),
            self.operator_profile_port,
            number,
            CALLER_ID,
            &[(header.0, header.1.to_string())],
            Caller::Expect(200),
        )
        .await;
        assert_status(&outcome, 200, what);
    }
}

/// Asserts the caller's final status, with the traces and the node's log on failure.
#[track_caller]
fn assert_status(outcome: &CallOutcome, expected: u16, what: &str) {
    assert_eq!(
        outcome.status,
        Some(expected),
        "{what}: caller's final status\n{}",
        outcome.trace
    );
}

/// `/api/v1/<collection>/<id of row>`.
fn path(collection: &str, row: &Value) -> String {
    format!(
        "/api/v1/{collection}/{}",
        row["id"].as_str().expect("an id")
    )
}

/// The user part of a Request-URI (`sip:99155@127.0.0.1:5091` → `99155`).
fn uri_user(uri: &str) -> &str {
    uri.strip_prefix("sip:")
        .and_then(|u| u.split('@').next())
        .unwrap_or_default()
}

/// A sipp carrier answering as told, and its gateway on trunkline, live on the node.
async fn carrier_answering(p: &Platform, gateway: &str, answer: Answer) -> (Carrier, Value) {
    let (carrier, row) = live_carrier(p, p.addr, gateway, Some(answer), json!({})).await;
    (carrier.expect("a sipp carrier"), row)
}

/// A carrier created through instance `addr` with `extra` fields: a sipp carrier answering as
/// told (`None`: a port nothing listens on, so ICMP port unreachable), its gateway live on the
/// node.
async fn live_carrier(
    p: &Platform,
    addr: SocketAddr,
    gateway: &str,
    answer: Option<Answer>,
    extra: Value,
) -> (Option<Carrier>, Value) {
    let carrier = answer.map(|a| Carrier::start(p.dir(), gateway, a));
    let port = carrier.as_ref().map_or_else(free_port, |c| c.port);
    let row = p.carrier_on(addr, gateway, port, extra).await;
    p.gateway_live(gateway, &format!("sip:127.0.0.1:{port}"))
        .await;
    (carrier, row)
}

/// Carrier alpha (answering) on a `+1` route, and one call through it that connects.
async fn alpha_takes_plus_one(p: &Platform, what: &str) -> (Carrier, Value) {
    let (alpha, alpha_row) = carrier_answering(p, "alpha", Answer::Connect).await;
    p.route("+1", &alpha_row, 1, json!({})).await;
    assert_status(
        &p.call("+15551234567", Caller::Expect(200)).await,
        200,
        what,
    );
    (alpha, alpha_row)
}

async fn lock() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

#[tokio::test]
async fn the_node_boots_on_trunklines_sofia_conf_with_one_gateway_per_active_carrier() {
    let _serial = lock().await;
    let Some(p) = Platform::start(Options::default()).await else {
        return;
    };
    // Arrange: two active carriers, one disabled.
    let (_alpha, _) = carrier_answering(&p, "alpha", Answer::Connect).await;
    let (_bravo, _) = carrier_answering(&p, "bravo", Answer::Connect).await;
    let charlie_port = free_port();
    let charlie = p
        .carrier(
            "charlie",
            charlie_port,
            json!({"inbound_ips": ["192.0.2.7/32"]}),
        )
        .await;
    p.gateway_live("charlie", &format!("sip:127.0.0.1:{charlie_port}"))
        .await;
    eventually("an active carrier's address admitted", WAIT, || async {
        p.api("acl 192.0.2.7 trunkline_carriers").await == "true"
    })
    .await;
    p.patch_on(p.addr, "carriers", &charlie, json!({"status": "disabled"}))
        .await;
    p.gateway_gone("charlie").await;
    p.synced().await;

    // Act: restart the node, so that it loads everything from trunkline at boot.
    let mut p = p;
    let build = p.build.clone();
    p.node.restart(&build).await;
    p.profiles_running().await;

    // Assert
    let status = p.api("sofia status").await;
    for gateway in ["alpha", "bravo"] {
        assert!(
            status
                .lines()
                .any(|l| l.contains(&format!("external::{gateway}")) && l.contains("gateway")),
            "{status}"
        );
    }
    assert!(!status.contains("charlie"), "{status}");
    let gateways = status.lines().filter(|l| l.contains("gateway")).count();
    assert_eq!(gateways, 2, "{status}");
    // acl.conf came from trunkline: its carriers list is there (and with it the charlie
    // address only while charlie was active).
    let acl = p.api("acl 192.0.2.7 trunkline_carriers").await;
    assert_eq!(
        acl.trim(),
        "false",
        "a disabled carrier's address is not admitted"
    );
    let esl_list = p.api("acl 127.0.0.1 trunkline_esl").await;
    assert_eq!(esl_list.trim(), "true", "the template's own list is served");
    // The RTP timeouts come from media.vars.xml, and sofia warns of no deprecated param.
    assert_eq!(p.api("global_getvar media_timeout").await.trim(), "300000");
    assert_eq!(
        p.api("global_getvar media_hold_timeout").await.trim(),
        "1800000"
    );
    let log = p.node.log();
    assert!(
        !log.contains("deprecated"),
        "{}",
        log.lines()
            .filter(|l| l.contains("deprecated"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test]
async fn a_voipbin_provider_becomes_a_gateway_and_a_voipbin_route_routes_a_real_call() {
    let _serial = lock().await;
    let Some(p) = Platform::start(Options::default()).await else {
        return;
    };
    // Arrange: a provider and a platform route created as a VoIPBIN client creates them.
    let telnyx = Carrier::start(p.dir(), "telnyx", Answer::Connect);
    let (status, provider) = p
        .voipbin(
            reqwest::Method::POST,
            "/v1.0/providers",
            json!({"type": "sip", "hostname": format!("127.0.0.1:{}", telnyx.port),
                   "tech_prefix": "99", "tech_postfix": "", "tech_headers": {"X-Account": "42"},
                   "name": "telnyx basic", "detail": "created through /v1.0"}),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{provider}");
    let carrier = p
        .send(reqwest::Method::GET, &path("carriers", &provider), None)
        .await;
    let gateway = carrier["gateway_name"].as_str().unwrap();
    p.gateway_live(gateway, &format!("sip:127.0.0.1:{}", telnyx.port))
        .await;
    let (status, route) = p
        .voipbin(
            reqwest::Method::POST,
            "/v1.0/routes",
            json!({"customer_id": "00000000-0000-0000-0000-000000000001", "name": "korea",
                   "detail": "", "provider_id": provider["id"], "priority": 1, "target": "+82"}),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{route}");

    // Act
    let outcome = p.call("821012345678", Caller::Expect(200)).await;

    // Assert: the carrier got the call with the provider's prefix and header.
    assert_status(&outcome, 200, "a call through the VoIPBIN route");
    let invites = telnyx.invites();
    assert_eq!(invites.len(), 1, "{invites:?}");
    assert_eq!(uri_user(invites[0].request_uri()), "99821012345678");
    assert_eq!(invites[0].header("X-Account"), "42");
}

#[tokio::test]
async fn a_postfix_with_a_domain_sends_the_invite_to_that_domain_not_to_the_gateway() {
    let _serial = lock().await;
    let Some(p) = Platform::start(Options::default()).await else {
        return;
    };
    // Arrange: gateway alpha's proxy is carrier alpha; bravo is another host.
    let (alpha, alpha_row) = carrier_answering(&p, "alpha", Answer::Connect).await;
    let bravo = Carrier::start(p.dir(), "bravo", Answer::Connect);
    bravo.listening().await;

    // Act: the leg VoIPBIN's `tech_postfix: "@provider.com"` would make.
    let leg = format!("sofia/gateway/alpha/15551234567@127.0.0.1:{}", bravo.port);
    let originated = p.api(&format!("originate {leg} &park")).await;
    p.api("hupall").await;

    // Assert: the INVITE went to the domain, with it as the Request-URI's host, and the
    // gateway's own host saw nothing. So trunkline refuses such a postfix.
    assert!(alpha.invites().is_empty(), "{:?}", alpha.invites());
    let invites = bravo.invites();
    assert_eq!(invites.len(), 1, "{originated}\n{}", p.node.log());
    assert_eq!(
        invites[0].request_uri(),
        format!("sip:15551234567@127.0.0.1:{}", bravo.port)
    );
    assert!(
        originated.starts_with("+OK"),
        "{originated}\n{}",
        p.node.log()
    );
    let (status, refused) = p
        .voipbin(
            reqwest::Method::PUT,
            &format!("/v1.0/providers/{}", alpha_row["id"].as_str().unwrap()),
            json!({"hostname": format!("127.0.0.1:{}", alpha.port), "name": "alpha",
                   "tech_postfix": format!("@127.0.0.1:{}", bravo.port)}),
        )
        .await;
    assert_eq!(
        status,
        reqwest::StatusCode::UNPROCESSABLE_ENTITY,
        "{refused}"
    );
    assert_eq!(refused["errors"][0]["field"], "tech_postfix");
}

/// Failover on the carrier's failures, in the platform's failover mode: carrier `a` answers as
/// told (or nothing listens on its port: `None`), carrier `b` connects. A silent carrier gets a
/// two-second `leg_progress_timeout_seconds`.
async fn failover_cases(p: &Platform, cases: &[(&str, Option<Answer>)], expect_failover: bool) {
    // Gateway names are global: each set of cases has its own.
    let tag = if expect_failover { "f" } else { "n" };
    let (b, b_row) = carrier_answering(p, &format!("bravo-{tag}"), Answer::Connect).await;
    for (i, (number, answer)) in cases.iter().enumerate() {
        let gateway = format!("alpha-{tag}{i}");
        let extra = match answer {
            Some(Answer::Silent) => json!({"leg_progress_timeout_seconds": 2}),
            _ => json!({}),
        };
        let (first, first_row) = live_carrier(p, p.addr, &gateway, *answer, extra).await;
        p.route(number, &first_row, 1, json!({})).await;
        p.route(number, &b_row, 2, json!({})).await;
        let before = b.invites().len();
        let callee_answer = match answer {
            Some(Answer::Status(s) | Answer::StatusWithQ850(s, _)) => Some(*s),
            _ => None,
        };
        let expected = if expect_failover {
            200
        } else {
            callee_answer.expect("a callee's answer")
        };
        let outcome = p.call(number, Caller::Expect(expected)).await;
        let what = format!("{number}: first carrier {answer:?}");
        if let Some(first) = &first {
            assert_eq!(
                first.invites().len(),
                1,
                "{what}: the first carrier was tried once"
            );
        }
        assert_status(&outcome, expected, &what);
        let rung = if expect_failover { 1 } else { 0 };
        assert_eq!(
            b.invites().len(),
            before + rung,
            "{what}: INVITEs at the second carrier"
        );
    }
}

const CARRIER_FAILURES: &[(&str, Option<Answer>)] = &[
    ("+4410", Some(Answer::Status(503))),
    ("+4411", Some(Answer::Status(500))),
    ("+4412", Some(Answer::Status(502))),
    ("+4413", Some(Answer::Status(404))),
    ("+4414", None),
    ("+4415", Some(Answer::Status(408))),
    ("+4416", Some(Answer::Status(604))),
    ("+4417", Some(Answer::Status(608))),
    // A Reason header that would turn this 503 into USER_BUSY does not stop the failover.
    ("+4418", Some(Answer::StatusWithQ850(503, 17))),
    ("+4419", Some(Answer::Silent)),
];

const CALLEE_ANSWERS: &[(&str, Option<Answer>)] = &[
    ("+4420", Some(Answer::Status(486))),
    ("+4421", Some(Answer::Status(600))),
    ("+4422", Some(Answer::Status(603))),
    ("+4423", Some(Answer::Status(607))),
    // A Reason header that would turn this busy into UNALLOCATED_NUMBER (a failover cause)
    // does not make it one.
    ("+4424", Some(Answer::StatusWithQ850(486, 1))),
];

#[tokio::test]
async fn by_default_carrier_failures_fail_over_and_the_next_carrier_answers() {
    let _serial = lock().await;
    let Some(p) = Platform::start(Options::default()).await else {
        return;
    };
    failover_cases(&p, CARRIER_FAILURES, true).await;
}

#[tokio::test]
async fn by_default_busy_and_decline_reach_the_caller_and_no_other_carrier_is_rung() {
    let _serial = lock().await;
    let Some(p) = Platform::start(Options::default()).await else {
        return;
    };
    failover_cases(&p, CALLEE_ANSWERS, false).await;
    cancel_while_ringing_rings_no_other_carrier(&p).await;
}

#[tokio::test]
async fn the_exact_form_fails_over_on_the_same_codes_and_chains_three_carriers() {
    let _serial = lock().await;
    let Some(p) = Platform::start(Options {
        failover_mode: "exact",
        ..Options::default()
    })
    .await
    else {
        return;
    };
    failover_cases(&p, CARRIER_FAILURES, true).await;
    failover_cases(&p, CALLEE_ANSWERS, false).await;
    cancel_while_ringing_rings_no_other_carrier(&p).await;
    three_carrier_chain(&p, "+4430").await;
}

#[tokio::test]
async fn by_default_a_three_carrier_chain_503_503_200_connects_through_the_third() {
    let _serial = lock().await;
    let Some(p) = Platform::start(Options::default()).await else {
        return;
    };
    three_carrier_chain(&p, "+4430").await;
}

async fn three_carrier_chain(p: &Platform, number: &str) {
    let (x, x_row) = carrier_answering(p, "xray", Answer::Status(503)).await;
    let (y, y_row) = carrier_answering(p, "yankee", Answer::Status(503)).await;
    let (z, z_row) = carrier_answering(p, "zulu", Answer::Connect).await;
    for (priority, row) in [(1, &x_row), (2, &y_row), (3, &z_row)] {
        p.route(number, row, priority, json!({})).await;
    }
    let outcome = p.call(number, Caller::Expect(200)).await;
    assert_status(&outcome, 200, "503 → 503 → 200");
    for (c, name) in [(&x, "xray"), (&y, "yankee"), (&z, "zulu")] {
        assert_eq!(c.invites().len(), 1, "{name} tried once");
    }
}

/// The caller hangs up while the first carrier rings: the second carrier gets no INVITE.
async fn cancel_while_ringing_rings_no_other_carrier(p: &Platform) {
    let (ringing, ringing_row) = carrier_answering(p, "ringing", Answer::RingUntilCancelled).await;
    let (spare, spare_row) = carrier_answering(p, "spare", Answer::Connect).await;
    p.route("+4440", &ringing_row, 1, json!({})).await;
    p.route("+4440", &spare_row, 2, json!({})).await;
    let outcome = p.call("+4440123", Caller::CancelWhileRinging).await;
    assert_status(&outcome, 487, "cancelled while ringing");
    assert_eq!(ringing.invites().len(), 1);
    // The CANCEL travels on to the carrier; give a wrong failover time to show up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(spare.invites().len(), 0, "the second carrier got no INVITE");
}

#[tokio::test]
async fn number_formatting_headers_attestation_forced_carrier_and_tenant_routes_reach_the_wire() {
    let _serial = lock().await;
    let Some(p) = Platform::start(Options::default()).await else {
        return;
    };
    // Arrange: alpha (503) with a tech prefix, a header and an attestation header; bravo
    // (connects) with its own formatting; a route that strips +44 and adds 0044.
    let (alpha, alpha_row) = live_carrier(
        &p,
        p.addr,
        "alpha",
        Some(Answer::Status(503)),
        json!({"add_prefix": "99", "tech_headers": {"X-Account": "42"}, "attestation_header": "X-Attestation", "caller_id_in_from": true}),
    )
    .await;
    let (bravo, bravo_row) = live_carrier(
        &p,
        p.addr,
        "bravo",
        Some(Answer::Connect),
        json!({"strip_prefix": "0044", "add_prefix": "+44"}),
    )
    .await;
    let (alpha, bravo) = (alpha.unwrap(), bravo.unwrap());
    p.route(
        "+44",
        &alpha_row,
        1,
        json!({"strip_prefix": "+44", "add_prefix": "0044"}),
    )
    .await;
    p.route(
        "+44",
        &bravo_row,
        2,
        json!({"strip_prefix": "+44", "add_prefix": "0044"}),
    )
    .await;

    // Act: a call with attestation A through the operator's dialplan.
    p.operator_call_connects(
        "+442071234567",
        ("X-Attest", "A"),
        "alpha 503, bravo answers",
    )
    .await;

    // Assert
    let a = &alpha.invites()[0];
    // The route turns +442071234567 into 00442071234567, then alpha adds its tech prefix.
    assert_eq!(uri_user(a.request_uri()), "9900442071234567", "{a:?}");
    assert_eq!(a.header("X-Account"), "42");
    assert_eq!(a.header("X-Attestation"), "A");
    assert!(
        a.header("From").contains(&format!("<sip:{CALLER_ID}@")),
        "caller_id_in_from: {a:?}"
    );
    assert_eq!(
        a.header("X-Caller-Secret"),
        "",
        "the caller's own headers stay behind"
    );
    let b = &bravo.invites()[0];
    assert_eq!(uri_user(b.request_uri()), "+442071234567", "{b:?}");
    assert!(
        !b.header("From").contains(&format!("<sip:{CALLER_ID}@")),
        "{b:?}"
    );
    assert_eq!(
        b.header("X-Account"),
        "",
        "alpha's header on alpha's leg only"
    );
    assert_eq!(
        b.header("X-Attestation"),
        "",
        "bravo has no attestation header"
    );

    // A forced carrier goes first, then prefix routing: charlie (503) forced, then alpha, bravo.
    let (charlie, charlie_row) = carrier_answering(&p, "charlie", Answer::Status(503)).await;
    p.operator_call_connects(
        "+442071234567",
        ("X-Carrier", charlie_row["id"].as_str().unwrap()),
        "forced charlie 503, then the routes",
    )
    .await;
    assert_eq!(charlie.invites().len(), 1);
    assert_eq!(alpha.invites().len(), 2);
    assert_eq!(bravo.invites().len(), 2);

    // A tenant's own route wins over the platform defaults in the tenant's calls.
    let tenant = p
        .send(
            reqwest::Method::POST,
            "/api/v1/tenants",
            Some(json!({"name": "Acme"})),
        )
        .await;
    let (delta, delta_row) = carrier_answering(&p, "delta", Answer::Connect).await;
    p.route("+44", &delta_row, 1, json!({"tenant_id": tenant["id"]}))
        .await;
    p.operator_call_connects(
        "+442071234567",
        ("X-Tenant", tenant["id"].as_str().unwrap()),
        "tenant route",
    )
    .await;
    assert_eq!(delta.invites().len(), 1);
    assert_eq!(alpha.invites().len(), 2, "the platform route was not used");
}

/// A call through the operator's dialplan as tenant `tenant`, presenting `caller_id` (raw in
/// the From user part: percent-encode what SIP does not allow), ending with `status`.
async fn tenant_call(p: &Platform, tenant: &Value, caller_id: &str, status: u16) -> CallOutcome {
    let outcome = sipp::call(
        p.dir(),
        p.operator_profile_port,
        "+15551234567",
        caller_id,
        &[("X-Tenant", tenant["id"].as_str().unwrap().to_string())],
        Caller::Expect(status),
    )
    .await;
    assert_status(&outcome, status, caller_id);
    outcome
}

/// The user part of a header's SIP URI (`"x" <sip:15550001111@host>;tag=1` → `15550001111`).
fn header_user(value: &str) -> &str {
    value
        .split("sip:")
        .nth(1)
        .and_then(|rest| rest.split('@').next())
        .unwrap_or_default()
}

#[tokio::test]
async fn caller_id_policy_attestation_and_each_carriers_format_reach_the_wire() {
    let _serial = lock().await;
    let Some(p) = Platform::start(Options::default()).await else {
        return;
    };
    // Arrange: alpha takes the caller ID in From, without `+`, asserted, with an attestation
    // header; tenant "own" may present only its numbers, tenant "any" any valid number.
    let (alpha, alpha_row) = live_carrier(
        &p,
        p.addr,
        "alpha",
        Some(Answer::Connect),
        json!({"caller_id_in_from": true, "attestation_header": "X-Attestation",
               "caller_id": {"format": "e164_without_plus", "asserted_identity": true}}),
    )
    .await;
    let alpha = alpha.unwrap();
    p.route("+1", &alpha_row, 1, json!({})).await;
    let own = p
        .send(
            reqwest::Method::POST,
            "/api/v1/tenants",
            Some(json!({"name": "Own", "caller_id_policy": {"allow": "own_numbers"}})),
        )
        .await;
    let any = p
        .send(
            reqwest::Method::POST,
            "/api/v1/tenants",
            Some(json!({"name": "Any"})),
        )
        .await;
    for number in ["+15550001111", "+15550002222"] {
        p.send(
            reqwest::Method::POST,
            "/api/v1/phone-numbers",
            Some(json!({"tenant_id": own["id"], "number": number})),
        )
        .await;
    }
    let last_invite = |count: usize| {
        let invites = alpha.invites();
        assert_eq!(invites.len(), count, "{invites:#?}");
        invites.last().cloned().unwrap()
    };

    // Own number: kept, formatted, asserted, attestation A.
    tenant_call(&p, &own, "+15550001111", 200).await;
    let invite = last_invite(1);
    assert_eq!(
        header_user(&invite.header("From")),
        "15550001111",
        "{invite:?}"
    );
    assert_eq!(
        header_user(&invite.header("P-Asserted-Identity")),
        "15550001111",
        "{invite:?}"
    );
    assert_eq!(invite.header("Privacy"), "none");
    assert_eq!(invite.header("X-Attestation"), "A");

    // A foreign number under own_numbers and `refuse`: CALL_REJECTED, which FreeSWITCH
    // answers 603 Decline; no carrier rung.
    tenant_call(&p, &own, "+15559990000", 603).await;
    last_invite(1);

    // The same after switching to `replace`: the default number, attestation A; explain says
    // the same as the wire.
    p.patch_on(
        p.addr,
        "tenants",
        &own,
        json!({"caller_id_policy": {"allow": "own_numbers", "foreign": "replace",
                                    "default_number": "+15550002222"}}),
    )
    .await;
    tenant_call(&p, &own, "+15559990000", 200).await;
    let invite = last_invite(2);
    assert_eq!(
        header_user(&invite.header("From")),
        "15550002222",
        "{invite:?}"
    );
    assert_eq!(
        header_user(&invite.header("P-Asserted-Identity")),
        "15550002222"
    );
    assert_eq!(invite.header("X-Attestation"), "A");
    let preview = p
        .send(
            reqwest::Method::GET,
            &format!(
                "/api/v1/route-preview?destination=%2B15551234567&caller=%2B15559990000&tenant_id={}",
                own["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(preview["caller_id"]["outcome"], "replaced", "{preview}");
    assert_eq!(preview["caller_id"]["sent"], "+15550002222");
    assert_eq!(preview["caller_id"]["attestation"], "A");
    assert_eq!(preview["legs"][0]["leg"]["caller_id"], "15550002222");

    // Tenant "any": a number not its own goes out, attestation B.
    tenant_call(&p, &any, "+15559990000", 200).await;
    let invite = last_invite(3);
    assert_eq!(header_user(&invite.header("From")), "15559990000");
    assert_eq!(invite.header("X-Attestation"), "B");
    // No tenant at all: C.
    assert_status(
        &p.call("+15551234567", Caller::Expect(200)).await,
        200,
        "a call without a tenant",
    );
    assert_eq!(last_invite(4).header("X-Attestation"), "C");

    // National format and Privacy: id on the same carrier.
    p.patch_on(
        p.addr,
        "carriers",
        &alpha_row,
        json!({"caller_id": {"format": "national", "country_code": "1",
                             "asserted_identity": true, "privacy": true}}),
    )
    .await;
    p.synced().await;
    tenant_call(&p, &own, "+15550001111", 200).await;
    let invite = last_invite(5);
    assert_eq!(
        header_user(&invite.header("P-Asserted-Identity")),
        "5550001111",
        "{invite:?}"
    );
    assert_eq!(invite.header("Privacy"), "id", "{invite:?}");

    // Hostile caller IDs from a real caller: never on a leg as written. Each call is refused
    // (by FreeSWITCH's parser, or by trunkline: tenant "any" has no number to replace them
    // with), or reaches alpha with a plain number: sofia cuts `1555;666` to `1555`, and
    // tenant "own" replaces whatever is not its own by its default number.
    let long = "1".repeat(300);
    let hostile = [
        "%24%7Bsystem%20id%7D",
        "%22quoted%22",
        "1555%3B666",
        "%3C1555",
        "1555%20666",
        long.as_str(),
    ];
    let mut invites = 5;
    for value in hostile {
        for (tenant, expected) in [(&any, None), (&own, Some("5550002222"))] {
            let outcome = sipp::call(
                p.dir(),
                p.operator_profile_port,
                "+15551234567",
                value,
                &[("X-Tenant", tenant["id"].as_str().unwrap().to_string())],
                Caller::Expect(200),
            )
            .await;
            if outcome.status != Some(200) {
                assert!(
                    matches!(outcome.status, Some(400..=699)),
                    "{value}: {}",
                    outcome.trace
                );
                last_invite(invites);
                continue;
            }
            invites += 1;
            let invite = last_invite(invites);
            for header in ["From", "P-Asserted-Identity"] {
                let user = header_user(&invite.header(header)).to_string();
                assert!(
                    !user.is_empty()
                        && user.len() <= 20
                        && user.bytes().all(|b| b.is_ascii_digit()),
                    "{value}: {header} {user:?}"
                );
                if let Some(default) = expected {
                    assert_eq!(user, default, "{value}: {header}");
                }
            }
        }
    }
    assert!(invites > 5 + hostile.len(), "tenant own replaced them all");

    // A withheld number goes on as it is where any caller ID is allowed, and is replaced
    // where only the tenant's own are.
    tenant_call(&p, &any, "anonymous", 200).await;
    invites += 1;
    let invite = last_invite(invites);
    assert_eq!(
        header_user(&invite.header("From")),
        "anonymous",
        "{invite:?}"
    );
    tenant_call(&p, &own, "anonymous", 200).await;
    invites += 1;
    let invite = last_invite(invites);
    assert_eq!(
        header_user(&invite.header("P-Asserted-Identity")),
        "5550002222"
    );
}

#[tokio::test]
async fn hostile_dialled_numbers_from_a_real_caller_are_refused_and_reach_no_carrier() {
    let _serial = lock().await;
    let Some(p) = Platform::start(Options::default()).await else {
        return;
    };
    let (alpha, alpha_row) = carrier_answering(&p, "alpha", Answer::Connect).await;
    p.route("all", &alpha_row, 1, json!({})).await;
    let long = "1".repeat(200);
    // As a SIP caller can send them: raw where the user part allows it, percent-encoded
    // otherwise (sofia decodes them, FREESWITCH.md §6.2).
    let hostile = [
        "1555%7C2666",                           // |
        "%24%7Bsystem%20id%7D",                  // ${system id}
        "1555%40evil.example",                   // @
        "1555;transport=tcp",                    // ;
        "1555%20666",                            // space
        "%5Bapi_on_answer=system%20id%5D1555",   // [ … ]
        "1555%2Csofia%2Fgateway%2Falpha%2F1666", // , and a second leg
        long.as_str(),                           // 200 digits
    ];
    for number in hostile {
        let outcome = p.call(number, Caller::Expect(484)).await;
        let status = outcome
            .status
            .unwrap_or_else(|| panic!("{number}: no final status\n{}", outcome.trace));
        assert!((400..700).contains(&status), "{number}: {status}");
        assert_eq!(
            alpha.invites().len(),
            0,
            "{number}: no INVITE reached a carrier"
        );
    }
    assert!(
        p.api("status").await.contains("UP"),
        "the node keeps running"
    );
    // And a plain number still goes through.
    let outcome = p.call("+15551234567", Caller::Expect(200)).await;
    assert_status(&outcome, 200, "a plain number");
}

#[tokio::test]
async fn while_trunkline_is_stopped_calls_are_refused_by_the_static_fallback_and_route_again_after()
{
    let _serial = lock().await;
    let Some(mut p) = Platform::start(Options::default()).await else {
        return;
    };
    let (alpha, _) = alpha_takes_plus_one(&p, "before").await;

    // Act: stop trunkline.
    p.server.terminate();
    p.server.exited(WAIT).await;
    let refused = p.call("+15551234567", Caller::Expect(503)).await;

    // Assert: the static fallback refused it; nothing went to a carrier.
    assert_status(&refused, 503, "trunkline stopped");
    assert_eq!(
        alpha.invites().len(),
        1,
        "no INVITE while trunkline was stopped"
    );

    // trunkline back on the same address: calls route again, the node untouched.
    p.server = Server::start_at(p.dir.path(), &p.templates, &p.config, p.addr).await;
    assert_status(
        &p.call("+15551234567", Caller::Expect(200)).await,
        200,
        "after",
    );
    assert_eq!(alpha.invites().len(), 2);
}

/// Applies `change` to a carrier and measures until the node runs a gateway whose
/// `sofia xmlstatus` holds every one of `expect`.
async fn change_until_live(
    p: &Platform,
    carrier: &Value,
    change: Value,
    expect: &[String],
) -> Duration {
    let started = Instant::now();
    p.send(
        reqwest::Method::PATCH,
        &path("carriers", carrier),
        Some(change.clone()),
    )
    .await;
    let name = carrier["gateway_name"].as_str().unwrap();
    let mut last = String::new();
    let live = tokio::time::timeout(WAIT, async {
        loop {
            last = p.api(&format!("sofia xmlstatus gateway {name}")).await;
            if expect.iter().all(|e| last.contains(e.as_str())) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(live.is_ok(), "{change}: expected {expect:?} in\n{last}");
    started.elapsed()
}

#[tokio::test]
async fn every_gateway_parameter_change_goes_live_on_the_node_and_is_verified() {
    let _serial = lock().await;
    let Some(p) = Platform::start(Options::default()).await else {
        return;
    };
    let el = |name: &str, value: &str| format!("<{name}>{value}</{name}>");
    let started = Instant::now();
    let (carrier, row) = carrier_answering(&p, "alpha", Answer::Connect).await;
    let mut timings = vec![("create (the node's first)", started.elapsed())];
    let started = Instant::now();
    let (_bravo, _) = carrier_answering(&p, "bravo", Answer::Connect).await;
    timings.push(("create", started.elapsed()));
    let other = free_port();
    let changes: Vec<(&str, Value, Vec<String>)> = vec![
        (
            "port",
            json!({"remote_port": other}),
            vec![el("proxy", &format!("sip:127.0.0.1:{other}"))],
        ),
        (
            "host",
            json!({"remote_host": "127.0.0.2", "remote_port": carrier.port}),
            vec![el("proxy", &format!("sip:127.0.0.2:{}", carrier.port))],
        ),
        (
            "transport",
            json!({"remote_host": "127.0.0.1", "transport": "tcp"}),
            vec!["transport=tcp".into()],
        ),
        (
            "auth",
            json!({"transport": "udp", "auth_username": "acct7", "auth_password": "s3cret-pw", "realm": "sip.carrier.example"}),
            vec![el("username", "acct7"), el("realm", "sip.carrier.example")],
        ),
        (
            "from",
            json!({"from_user": "trunk42", "from_domain": "from.carrier.example"}),
            vec!["trunk42@from.carrier.example".into()],
        ),
    ];
    for (what, change, expect) in changes {
        timings.push((what, change_until_live(&p, &row, change, &expect).await));
    }
    // A registering gateway leaves NOREG; which state comes next depends on the carrier's
    // answer to REGISTER (sipp's carrier does not answer one), so any other state counts.
    let started = Instant::now();
    p.patch_on(p.addr, "carriers", &row, json!({"register": true}))
        .await;
    eventually("the gateway registering", WAIT, || async {
        let status = p.api("sofia xmlstatus gateway alpha").await;
        status.contains("<state>") && !status.contains(&el("state", "NOREG"))
    })
    .await;
    timings.push(("register", started.elapsed()));
    p.synced().await;
    let started = Instant::now();
    p.patch_on(p.addr, "carriers", &row, json!({"status": "disabled"}))
        .await;
    p.gateway_gone("alpha").await;
    timings.push(("disable", started.elapsed()));
    p.patch_on(p.addr, "carriers", &row, json!({"status": "active"}))
        .await;
    p.gateway_live("alpha", &format!("sip:127.0.0.1:{}", carrier.port))
        .await;
    let started = Instant::now();
    p.send(reqwest::Method::DELETE, &path("carriers", &row), None)
        .await;
    p.gateway_gone("alpha").await;
    timings.push(("archive", started.elapsed()));
    p.synced().await;
    for (what, took) in &timings {
        eprintln!(
            "carrier {what} → live on the node: {:.0} ms",
            took.as_secs_f64() * 1000.0
        );
    }
}

/// p50 and p99 of a carrier's port change until the node runs the new gateway, over 20
/// changes, with the default debounce (500 ms) and none. Figures are printed for
/// BENCHMARKS.md (`cargo test --test interop change_latency -- --nocapture`), never asserted.
#[tokio::test]
async fn change_latency_carrier_port_to_live_gateway() {
    let _serial = lock().await;
    for debounce in [500, 0] {
        let Some(p) = Platform::start(Options {
            esl_debounce_ms: debounce,
            ..Options::default()
        })
        .await
        else {
            return;
        };
        let (_carrier, row) = carrier_answering(&p, "alpha", Answer::Connect).await;
        let mut took = Vec::new();
        for _ in 0..20 {
            let port = free_port();
            let expect = [format!("<proxy>sip:127.0.0.1:{port}</proxy>")];
            took.push(change_until_live(&p, &row, json!({"remote_port": port}), &expect).await);
        }
        took.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        eprintln!(
            "esl_debounce_ms = {debounce}: carrier change → live gateway over {} changes: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            took.len(),
            ms(took[took.len() / 2]),
            ms(took[(took.len() * 99).div_ceil(100) - 1]),
            ms(took[took.len() - 1])
        );
    }
}

#[tokio::test]
async fn changes_made_while_the_node_is_down_converge_when_it_returns_and_a_wrong_password_applies_nothing()
 {
    let _serial = lock().await;
    let Some(mut p) = Platform::start(Options::default()).await else {
        return;
    };
    let (_alpha, alpha_row) = carrier_answering(&p, "alpha", Answer::Connect).await;
    p.synced().await;

    // Act: the node goes down; a carrier changes and another is created meanwhile.
    p.node.stop().await;
    let moved = free_port();
    p.patch_on(
        p.addr,
        "carriers",
        &alpha_row,
        json!({"remote_port": moved}),
    )
    .await;
    let late = p.carrier("late", free_port(), json!({})).await;
    eventually("trunkline sees the node down", WAIT, || async {
        let switches = p.send(reqwest::Method::GET, "/api/v1/switches", None).await;
        switches[0]["connection"] != "connected"
    })
    .await;
    let build = p.build.clone();
    p.node.restart(&build).await;

    // Assert: the node runs both, and trunkline has verified it.
    p.gateway_live("alpha", &format!("sip:127.0.0.1:{moved}"))
        .await;
    p.gateway_live("late", &format!("sip:127.0.0.1:{}", late["remote_port"]))
        .await;
    p.synced().await;

    // A second switch entry with a wrong Event Socket password: auth_failed, nothing applied.
    let wrong = p
        .send(
            reqwest::Method::POST,
            "/api/v1/switches",
            Some(json!({
                "name": "fs1-wrong-password",
                "esl_host": "127.0.0.1",
                "esl_port": p.node.spec.esl_port,
                "esl_password": "not-the-password",
                "profiles": ["external"],
            })),
        )
        .await;
    eventually("the wrong password reported", WAIT, || async {
        let view = p
            .send(reqwest::Method::GET, &path("switches", &wrong), None)
            .await;
        view["connection"] == "auth_failed" && view["synced_version"].is_null()
    })
    .await;
}

#[tokio::test]
async fn a_burst_of_100_carriers_goes_live_without_restarting_untouched_gateways() {
    let _serial = lock().await;
    let Some(p) = Platform::start(Options::default()).await else {
        return;
    };
    // Arrange: a call through alpha, so its gateway counts one outbound call; a restarted
    // gateway would count none.
    let (_alpha, _) = alpha_takes_plus_one(&p, "alpha").await;
    let calls_out = |status: &str| {
        status
            .split("<calls-out>")
            .nth(1)
            .and_then(|s| s.split('<').next())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(
        calls_out(&p.api("sofia xmlstatus gateway alpha").await),
        "1"
    );

    // Act: 100 carriers created as fast as the API takes them, eight at a time.
    let started = Instant::now();
    let mut creates = tokio::task::JoinSet::new();
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(8));
    for i in 0..100u16 {
        let (client, base, token, gate) = (
            p.client.clone(),
            format!("http://{}/api/v1/carriers", p.addr),
            p.token.clone(),
            gate.clone(),
        );
        creates.spawn(async move {
            let _permit = gate.acquire().await.unwrap();
            let name = format!("burst{i:03}");
            let response = client
                .post(base)
                .bearer_auth(token)
                .json(&json!({"name": name, "gateway_name": name, "remote_host": "127.0.0.1", "remote_port": 20_000 + i}))
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success(), "{name}: {}", response.status());
        });
    }
    while let Some(done) = creates.join_next().await {
        done.unwrap();
    }

    // Assert: all live, alpha untouched.
    eventually("100 burst gateways live", WAIT * 2, || async {
        let status = p.api("sofia status").await;
        status.matches("external::burst").count() == 100
    })
    .await;
    eprintln!(
        "100 carriers created → all live on the node: {:.0} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    p.synced().await;
    assert_eq!(
        calls_out(&p.api("sofia xmlstatus gateway alpha").await),
        "1",
        "alpha was not restarted"
    );
}

#[tokio::test]
async fn with_two_instances_on_postgresql_the_second_routes_and_takes_the_node_over_when_the_first_stops()
 {
    let _serial = lock().await;
    let Some(mut p) = Platform::start_two_instances(true).await else {
        return;
    };
    let (alpha, alpha_row) = alpha_takes_plus_one(&p, "through the first").await;
    let second = p.second.as_ref().unwrap().1;
    let connection = |view: &Value| view.as_array().unwrap()[0]["connection"].clone();
    let view = p
        .send_to(second, reqwest::Method::GET, "/api/v1/switches", None)
        .await;
    assert_eq!(
        connection(&view),
        "standby",
        "the first instance holds the node's lease"
    );

    // Act: the first instance stops.
    p.server.terminate();
    p.server.exited(WAIT).await;
    let stopped = Instant::now();

    // Assert: calls still route (through the fallback binding), the lease moves, and a change
    // made through the second instance reaches the node.
    assert_status(
        &p.call("+15551234567", Caller::Expect(200)).await,
        200,
        "through the second",
    );
    assert_eq!(alpha.invites().len(), 2);
    eventually(
        "the second instance drives the node",
        Duration::from_secs(90),
        || async {
            let view = p
                .send_to(second, reqwest::Method::GET, "/api/v1/switches", None)
                .await;
            connection(&view) == "connected"
        },
    )
    .await;
    eprintln!(
        "first instance stopped → the second holds the node's lease: {:.1} s",
        stopped.elapsed().as_secs_f64()
    );
    // The hand-over restarted no gateway: after the new holder's first verified pass, alpha
    // still counts both calls.
    eventually("the second instance synced the node", WAIT, || async {
        let view = p
            .send_to(second, reqwest::Method::GET, "/api/v1/switches", None)
            .await;
        view[0]["synced_version"].is_u64() && view[0]["pending_operations"] == 0
    })
    .await;
    let status = p.api("sofia xmlstatus gateway alpha").await;
    assert!(status.contains("<calls-out>2</calls-out>"), "{status}");
    let moved = free_port();
    p.patch_on(
        second,
        "carriers",
        &alpha_row,
        json!({"remote_port": moved}),
    )
    .await;
    p.gateway_live("alpha", &format!("sip:127.0.0.1:{moved}"))
        .await;
}

/// Call set-up time (the caller's INVITE to its 200) through a three-carrier chain, in both
/// failover forms, for a chain whose failures have causes of their own (502, 404) and one whose
/// failures come back to trunkline in both (503, 503). Printed for BENCHMARKS.md
/// (`cargo test --test interop setup_time -- --nocapture`), never asserted.
#[tokio::test]
async fn setup_time_of_a_three_carrier_chain_in_both_failover_forms() {
    let _serial = lock().await;
    const CALLS: usize = 15;
    for mode in ["default", "exact"] {
        let Some(p) = Platform::start(Options {
            failover_mode: mode,
            ..Options::default()
        })
        .await
        else {
            return;
        };
        let (_z, last) = carrier_answering(&p, "zulu", Answer::Connect).await;
        for (number, first, second) in [("+4450", 502, 404), ("+4451", 503, 503)] {
            let (_x, x) = carrier_answering(&p, &format!("x{first}"), Answer::Status(first)).await;
            let (_y, y) =
                carrier_answering(&p, &format!("y{second}"), Answer::Status(second)).await;
            for (priority, row) in [(1, &x), (2, &y), (3, &last)] {
                p.route(number, row, priority, json!({})).await;
            }
            let mut took = Vec::new();
            for _ in 0..CALLS {
                let outcome = p.call(number, Caller::Expect(200)).await;
                assert_status(&outcome, 200, "the chain connects");
                took.push(outcome.setup.expect("timed"));
            }
            took.sort();
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            eprintln!(
                "{mode} form, {first} → {second} → 200: set-up over {CALLS} calls: min {:.1} ms, p50 {:.1} ms, max {:.1} ms",
                ms(took[0]),
                ms(took[CALLS / 2]),
                ms(took[CALLS - 1])
            );
        }
    }
}

/// What an instance reports for the one switch (`Null` when it has none).
async fn switch_view(p: &Platform, addr: SocketAddr) -> Value {
    let view = p
        .send_to(addr, reqwest::Method::GET, "/api/v1/switches", None)
        .await;
    view[0].clone()
}

/// The connection state an instance reports for the one switch (or `"none"`).
async fn connection_on(p: &Platform, addr: SocketAddr) -> String {
    switch_view(p, addr).await["connection"]
        .as_str()
        .unwrap_or("none")
        .to_string()
}

/// The instance that drives the node once one does.
async fn eventually_holder(p: &Platform, instances: [SocketAddr; 2]) -> SocketAddr {
    for _ in 0..300 {
        for addr in instances {
            if connection_on(p, addr).await == "connected" {
                return addr;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no instance drives the node");
}

#[tokio::test]
async fn two_instances_see_a_new_switch_at_once_and_a_killed_holders_node_is_taken_over_within_the_lease()
 {
    let _serial = lock().await;
    let Some(mut p) = Platform::start_two_instances(false).await else {
        return;
    };
    let (first, second) = (p.addr, p.second.as_ref().unwrap().1);

    // A switch registered through the first instance: connected there, standby on the other,
    // both within a second.
    let registered = Instant::now();
    let switch = p
        .send_to(
            first,
            reqwest::Method::POST,
            "/api/v1/switches",
            Some(json!({
                "name": "fs1",
                "esl_host": "127.0.0.1",
                "esl_port": p.node.spec.esl_port,
                "esl_password": ESL_PASSWORD,
                "profiles": ["external"],
            })),
        )
        .await;
    eventually(
        "connected on one instance, standby on the other",
        Duration::from_secs(1),
        || async {
            let states = [
                connection_on(&p, first).await,
                connection_on(&p, second).await,
            ];
            states.contains(&"connected".to_string()) && states.contains(&"standby".to_string())
        },
    )
    .await;
    eprintln!(
        "switch registered → connected on one instance and standby on the other: {:.0} ms",
        registered.elapsed().as_secs_f64() * 1000.0
    );
    let holder = eventually_holder(&p, [first, second]).await;
    let standby = if holder == first { second } else { first };
    // Both instances show the same state of the node: who holds it and what it was synced to.
    eventually(
        "the same view of the node on both instances",
        WAIT,
        || async {
            let (h, s) = (
                switch_view(&p, holder).await,
                switch_view(&p, standby).await,
            );
            h["synced_version"].is_u64()
                && h["synced_version"] == s["synced_version"]
                && h["lease_holder"] == s["lease_holder"]
                && h["held_here"] == true
                && s["held_here"] == false
        },
    )
    .await;

    // A disable through the standby stops the pushes at once: a carrier created right after
    // it never reaches the node.
    p.patch_on(standby, "switches", &switch, json!({"enabled": false}))
        .await;
    let unpushed = p
        .carrier_on(standby, "unpushed", free_port(), json!({}))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = p.api("sofia status").await;
    assert!(
        !status.contains("unpushed"),
        "pushed after the disable: {status}"
    );
    p.send_to(
        standby,
        reqwest::Method::DELETE,
        &path("carriers", &unpushed),
        None,
    )
    .await;
    p.patch_on(standby, "switches", &switch, json!({"enabled": true}))
        .await;
    let holder = eventually_holder(&p, [first, second]).await;
    let (_alpha, alpha_row) =
        live_carrier(&p, holder, "alpha", Some(Answer::Connect), json!({})).await;

    // SIGKILL of the holder: the other takes the node over and applies a change made meanwhile.
    let survivor = if holder == first { second } else { first };
    let moved = free_port();
    let killed = Instant::now();
    if holder == first {
        p.server.kill();
    } else {
        p.second.as_mut().unwrap().0.kill();
    }
    p.patch_on(
        survivor,
        "carriers",
        &alpha_row,
        json!({"remote_port": moved}),
    )
    .await;
    p.gateway_live("alpha", &format!("sip:127.0.0.1:{moved}"))
        .await;
    eprintln!(
        "holder killed (SIGKILL) → a change made meanwhile live on the node through the other instance: {:.1} s (lease 4 s)",
        killed.elapsed().as_secs_f64()
    );
    assert_eq!(connection_on(&p, survivor).await, "connected");
}

/// The median of some set-up times.
fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

/// What trunkline recorded of one carrier's legs, oldest first: every page of
/// `GET /api/v1/attempts?carrier_id=…`.
async fn attempts_of(p: &Platform, carrier: &Value) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = p
            .send(
                reqwest::Method::GET,
                &format!(
                    "/api/v1/attempts?carrier_id={}&limit=100{cursor}",
                    carrier["id"].as_str().unwrap()
                ),
                None,
            )
            .await;
        all.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return all,
        }
    }
}

async fn stats_of(p: &Platform, carrier: &Value) -> Value {
    p.send(
        reqwest::Method::GET,
        &format!("{}/stats", path("carriers", carrier)),
        None,
    )
    .await
}

/// The statuses of a carrier's recorded legs, in order, beside what its sipp answered.
fn statuses(attempts: &[Value]) -> Vec<u64> {
    attempts
        .iter()
        .map(|a| a["sip_status"].as_u64().unwrap_or(0))
        .collect()
}

#[tokio::test]
async fn a_carrier_answering_503_is_moved_after_five_calls_tried_again_and_restored_and_every_leg_is_recorded()
 {
    let _serial = lock().await;
    // The default breaker (five carrier failures in a row), a short open time and every
    // second fetch a trial once half-open, so the test sees the whole cycle in seconds.
    let Some(p) = Platform::start(Options {
        extra_config: "\n[breaker]\nopen_seconds = 6\nhalf_open_one_in = 2\n",
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let (alpha, alpha_row) = carrier_answering(&p, "alpha", Answer::Status(503)).await;
    let (bravo, bravo_row) = carrier_answering(&p, "bravo", Answer::Connect).await;
    p.route("+1", &alpha_row, 1, json!({})).await;
    p.route("+1", &bravo_row, 2, json!({})).await;
    // charlie pings a port nothing listens on: the node marks its gateway DOWN within seconds
    // (checked at the end, on +44, where it comes before bravo).
    let (_, charlie_row) =
        live_carrier(&p, p.addr, "charlie", None, json!({"ping_seconds": 5})).await;
    p.route("+44", &charlie_row, 1, json!({})).await;
    p.route("+44", &bravo_row, 2, json!({})).await;
    p.synced().await;

    // Five calls try alpha first, which answers 503, then bravo, which connects.
    let mut first_alpha = Vec::new();
    for i in 0..5 {
        let outcome = p.call("+15551234567", Caller::Expect(200)).await;
        assert_status(&outcome, 200, &format!("call {i} through alpha's 503"));
        first_alpha.push(outcome.setup.unwrap());
        assert_eq!(alpha.invites().len(), i + 1, "call {i} tried alpha");
    }
    eventually("alpha's breaker open", WAIT, || async {
        stats_of(&p, &alpha_row).await["breaker"]["state"] == "open"
    })
    .await;
    let stats = stats_of(&p, &alpha_row).await;
    assert_eq!(
        stats["breaker"]["reason"],
        json!({"rule": "consecutive_failures", "failures": 5}),
        "{stats}"
    );
    // Explain shows the move and why.
    let preview = p
        .send(
            reqwest::Method::GET,
            "/api/v1/route-preview?destination=%2B15551234567",
            None,
        )
        .await;
    let legs = preview["legs"].as_array().unwrap();
    assert_eq!(legs[0]["leg"]["gateway_name"], "bravo", "{preview}");
    assert_eq!(legs[1]["leg"]["gateway_name"], "alpha", "{preview}");
    assert_eq!(legs[1]["configured_position"], 1, "{preview}");
    assert!(legs[1]["health"]["breaker_open"].is_object(), "{preview}");

    // While it is open, calls go to bravo first and alpha hears nothing: quicker set-up.
    let bravo_before = bravo.invites().len();
    let mut bravo_first = Vec::new();
    for i in 0..3 {
        let outcome = p.call("+15551234567", Caller::Expect(200)).await;
        assert_status(
            &outcome,
            200,
            &format!("call {i} with alpha's breaker open"),
        );
        bravo_first.push(outcome.setup.unwrap());
    }
    assert_eq!(alpha.invites().len(), 5, "alpha is not rung while open");
    assert_eq!(bravo.invites().len(), bravo_before + 3);
    assert!(
        median(&bravo_first) < median(&first_alpha),
        "set-up without alpha's 503 {bravo_first:?}, with it {first_alpha:?}"
    );

    // alpha recovers. Once half-open, one fetch in two tries it first; its answer closes
    // the breaker, and from then on every call goes to alpha first again.
    let alpha_invites = alpha.invites();
    drop(alpha);
    let restored = Carrier::start_on(p.dir(), "alpha-restored", Answer::Connect, {
        let proxy = alpha_row["remote_port"].as_u64().unwrap();
        u16::try_from(proxy).unwrap()
    });
    restored.listening().await;
    eventually("alpha's breaker half-open", WAIT, || async {
        stats_of(&p, &alpha_row).await["breaker"]["state"] == "half_open"
    })
    .await;
    let mut calls = 0;
    while restored.invites().is_empty() {
        calls += 1;
        assert!(calls <= 4, "half-open alpha tried within four calls");
        let outcome = p.call("+15551234567", Caller::Expect(200)).await;
        assert_status(&outcome, 200, "a call while alpha is half-open");
    }
    eventually("alpha's breaker closed", WAIT, || async {
        stats_of(&p, &alpha_row).await["breaker"]["state"] == "closed"
    })
    .await;
    let (alpha_before, bravo_before) = (restored.invites().len(), bravo.invites().len());
    for i in 0..2 {
        let outcome = p.call("+15551234567", Caller::Expect(200)).await;
        assert_status(&outcome, 200, &format!("call {i} after alpha is restored"));
    }
    assert_eq!(
        restored.invites().len(),
        alpha_before + 2,
        "alpha first again"
    );
    assert_eq!(bravo.invites().len(), bravo_before);

    // Every leg on the wire is one attempt record, with the status the carrier sent.
    let alpha_legs = 5 + restored.invites().len();
    let bravo_legs = bravo.invites().len();
    eventually("every leg recorded", WAIT, || async {
        attempts_of(&p, &alpha_row).await.len() == alpha_legs
            && attempts_of(&p, &bravo_row).await.len() == bravo_legs
    })
    .await;
    let alpha_attempts = attempts_of(&p, &alpha_row).await;
    let mut expected = vec![503; 5];
    expected.extend(vec![200; restored.invites().len()]);
    assert_eq!(statuses(&alpha_attempts), expected);
    assert_eq!(
        statuses(&attempts_of(&p, &bravo_row).await),
        vec![200; bravo_legs]
    );
    for (attempt, invite) in alpha_attempts[..5].iter().zip(&alpha_invites) {
        let request_uri = invite.start_line.split(' ').nth(1).unwrap();
        assert_eq!(attempt["number"], uri_user(request_uri), "{attempt}");
        assert_eq!(attempt["gateway"], "alpha", "{attempt}");
        assert_eq!(attempt["attempt"], 1, "{attempt}");
        assert_eq!(attempt["cause"], "NORMAL_TEMPORARY_FAILURE", "{attempt}");
        assert_eq!(attempt["hangup_by"], "carrier", "{attempt}");
        assert_eq!(attempt["failed_over"], true, "{attempt}");
        // The whole call: alpha's 503, then bravo's answer.
        let call = p
            .send(
                reqwest::Method::GET,
                &format!(
                    "/api/v1/calls/{}/attempts",
                    attempt["call_id"].as_str().unwrap()
                ),
                None,
            )
            .await;
        let legs = call["attempts"].as_array().unwrap();
        let gateways: Vec<&str> = legs
            .iter()
            .map(|l| l["gateway"].as_str().unwrap())
            .collect();
        assert_eq!(gateways, ["alpha", "bravo"], "{call}");
        assert_eq!(legs[1]["attempt"], 2, "{call}");
        assert_eq!(legs[1]["failed_over"], false, "{call}");
        assert!(legs[1]["pdd_ms"].as_u64().is_some(), "{call}");
    }

    // The figures are the traffic sent.
    let stats = stats_of(&p, &alpha_row).await;
    let five = &stats["windows"]["5m"];
    assert_eq!(five["attempts"], alpha_legs, "{stats}");
    assert_eq!(five["answered"], alpha_legs - 5, "{stats}");
    assert_eq!(
        five["statuses"],
        json!({"503": 5, "200": alpha_legs - 5}),
        "{stats}"
    );
    let stats = stats_of(&p, &bravo_row).await;
    assert_eq!(stats["windows"]["5m"]["answered"], bravo_legs, "{stats}");
    assert_eq!(stats["windows"]["5m"]["asr"], 1.0, "{stats}");
    let metrics = p.metrics().await;
    assert!(
        metrics.contains("trunkline_health_signals_total{kind=\"breaker_opened\"} 1"),
        "{metrics}"
    );

    // The gateway the node reports DOWN goes after bravo in the document the node fetches
    // (its Core-UUID names the node), and in route-preview for that node.
    eventually("charlie's gateway DOWN on the node", WAIT, || async {
        let status = p
            .send(
                reqwest::Method::GET,
                &format!("{}/status", path("carriers", &charlie_row)),
                None,
            )
            .await;
        status["switches"][0]["status"] == "DOWN"
    })
    .await;
    let moved = |metrics: &str| {
        support::app::metric_value(metrics, "trunkline_xmlcurl_health_moved_total", &[])
    };
    let before = moved(&p.metrics().await);
    let bravo_before = bravo.invites().len();
    assert_status(
        &p.call("+442071234567", Caller::Expect(200)).await,
        200,
        "+44 with charlie's gateway DOWN",
    );
    assert_eq!(bravo.invites().len(), bravo_before + 1);
    let metrics = p.metrics().await;
    assert_eq!(
        moved(&metrics),
        before + 1.0,
        "the fetch moved charlie: {metrics}"
    );
    assert!(
        metrics.contains("trunkline_health_signals_total{kind=\"gateway_down\"} 1"),
        "{metrics}"
    );
    let switches = p.send(reqwest::Method::GET, "/api/v1/switches", None).await;
    let preview = p
        .send(
            reqwest::Method::GET,
            &format!(
                "/api/v1/route-preview?destination=%2B442071234567&switch_id={}",
                switches[0]["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(
        preview["legs"][0]["leg"]["gateway_name"], "bravo",
        "{preview}"
    );
    assert_eq!(preview["legs"][1]["health"], "gateway_down", "{preview}");
    assert!(
        metrics.contains(&format!(
            "trunkline_carrier_attempts{{carrier=\"alpha\",window=\"5m\"}} {alpha_legs}"
        )),
        "{metrics}"
    );
}
