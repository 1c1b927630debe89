//! The interop suite's platform (`tests/interop/`): a `trunkline serve` on a real port and
//! SQLite file (or two on PostgreSQL), a FreeSWITCH 1.10 node configured from
//! `freeswitch-conf/` as its README tells an operator (only ports and credentials substituted),
//! carriers as sipp UAS processes and callers as sipp UAC through the caller-facing profile of
//! `templates/examples/callers.xml`.
//!
//! Where the node comes from and what happens without one: [`super::freeswitch`]. The tests
//! take one lock ([`lock`]), so one node runs at a time (they are CPU-bound on a small machine),
//! and every wait is bounded.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use trunkline::model::{Role, Scope};
use trunkline::store::Store;

use super::app::create_token;
use super::freeswitch::{self, Build, Node, NodeSpec, free_port, templates_with_callers};
use super::process::{Server, eventually, eventually_ok};
use super::sipp::{self, Answer, CallOutcome, Caller, Carrier};

pub const WAIT: Duration = Duration::from_secs(30);
pub const XMLCURL_USER: &str = "freeswitch";
pub const XMLCURL_PASSWORD: &str = "interop-xmlcurl-secret";
pub const ESL_PASSWORD: &str = "interop-esl-secret";
pub const CALLER_ID: &str = "+15550001111";

/// One node at a time (tokio's lock: it is held across awaits, and a failed test releases it).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How a platform is set up.
#[derive(Debug, Clone)]
pub struct Options {
    pub failover_mode: &'static str,
    pub esl_debounce_ms: u64,
    /// A PostgreSQL database shared by two instances, both bindings on the node (the second
    /// instance's as the fallback); `None`: one instance on a SQLite file.
    pub postgres: Option<String>,
    /// The node as a `[[switches]]` entry of the configuration file (else: none is declared,
    /// and a test registers it through the API).
    pub switch_in_config: bool,
    /// More of the configuration file (tables go last: after the `[[switches]]` entry).
    pub extra_config: &'static str,
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
pub fn switch_entry(esl_port: u16) -> String {
    format!(
        "\n[[switches]]\nname = \"fs1\"\nesl_host = \"127.0.0.1\"\nesl_port = {esl_port}\nesl_password = \"{ESL_PASSWORD}\"\nprofiles = [\"external\"]\n"
    )
}

/// The drop-in's bindings, then each again pointing at the second instance: mod_xml_curl asks
/// a section's bindings in order and takes the first answer, so the second instance answers
/// only when the first does not (README: several instances).
pub fn bindings_with_fallback(first: &str, second: &str, credentials: &str) -> String {
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
pub struct Platform {
    pub build: Build,
    pub server: Server,
    /// The second instance, with [`Options::postgres`].
    pub second: Option<(Server, SocketAddr)>,
    pub node: Node,
    pub token: String,
    pub client: reqwest::Client,
    pub addr: SocketAddr,
    pub templates: PathBuf,
    pub config: String,
    /// The caller-facing profiles: into trunkline's context (`callers`) and into the
    /// operator's dialplan (`operator`).
    pub caller_profile_port: u16,
    pub operator_profile_port: u16,
    /// Dropped last: the node and the instances above write into it until they are gone.
    pub dir: tempfile::TempDir,
}

/// The operator's own dialplan of `freeswitch-conf/README.md` step 7: a condition that admits
/// only a plain number, the trunkline variables set first (here from the caller's `X-Tenant`,
/// `X-Carrier` and `X-Attest` headers, each checked by a condition), then a transfer into
/// trunkline's context.
pub const OPERATOR_DIALPLAN: &str = r#"<include>
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
    pub async fn start(options: Options) -> Option<Platform> {
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
    pub async fn start_two_instances(switch_in_config: bool) -> Option<Platform> {
        let fresh = super::db::postgres_fresh().await?;
        drop(fresh.store);
        Platform::start(Options {
            postgres: Some(fresh.url),
            switch_in_config,
            ..Options::default()
        })
        .await
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub async fn profiles_running(&self) {
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

    pub async fn api(&self, command: &str) -> String {
        self.node
            .api(command)
            .await
            .unwrap_or_else(|e| panic!("api {command}: {e}\n{}", self.node.log()))
    }

    pub async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.send_to(self.addr, method, path, body).await
    }

    /// [`Platform::send`] to a given instance.
    pub async fn send_to(
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
    pub async fn voipbin(
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
    pub async fn carrier(&self, gateway: &str, port: u16, extra: Value) -> Value {
        self.carrier_on(self.addr, gateway, port, extra).await
    }

    /// [`Platform::carrier`] through a given instance.
    pub async fn carrier_on(
        &self,
        addr: SocketAddr,
        gateway: &str,
        port: u16,
        extra: Value,
    ) -> Value {
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
    pub async fn patch_on(
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

    pub async fn route(&self, prefix: &str, carrier: &Value, priority: u32, extra: Value) -> Value {
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
    pub async fn gateway_live(&self, name: &str, proxy: &str) -> String {
        let wanted = format!("<proxy>{proxy}</proxy>");
        eventually_ok(&format!("gateway {name} with {proxy}"), WAIT, || async {
            let status = self.api(&format!("sofia xmlstatus gateway {name}")).await;
            if status.contains(&wanted) {
                Ok(status)
            } else {
                Err(status)
            }
        })
        .await
    }

    pub async fn gateway_gone(&self, name: &str) {
        eventually(&format!("gateway {name} gone"), WAIT, || async {
            !self
                .api(&format!("sofia xmlstatus gateway {name}"))
                .await
                .contains("<gateway>")
        })
        .await;
    }

    /// trunkline's `/metrics` text.
    pub async fn metrics(&self) -> String {
        super::app::metrics_text(&self.client, &format!("http://{}", self.addr), &self.token).await
    }

    /// Waits until trunkline says the node is converged on the current configuration.
    pub async fn synced(&self) {
        eventually("the node synced by trunkline", WAIT, || async {
            let switches = self
                .send(reqwest::Method::GET, "/api/v1/switches", None)
                .await;
            super::app::switch_synced(&switches.as_array().unwrap()[0])
        })
        .await;
    }

    /// A call from the caller-facing profile straight into trunkline's context.
    pub async fn call(&self, number: &str, caller: Caller) -> CallOutcome {
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
    pub async fn operator_call_connects(&self, number: &str, header: (&str, &str), what: &str) {
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
pub fn assert_status(outcome: &CallOutcome, expected: u16, what: &str) {
    assert_eq!(
        outcome.status,
        Some(expected),
        "{what}: caller's final status\n{}",
        outcome.trace
    );
}

/// `/api/v1/<collection>/<id of row>`.
pub fn path(collection: &str, row: &Value) -> String {
    format!(
        "/api/v1/{collection}/{}",
        row["id"].as_str().expect("an id")
    )
}

/// The user part of a Request-URI (`sip:99155@127.0.0.1:5091` → `99155`).
pub fn uri_user(uri: &str) -> &str {
    uri.strip_prefix("sip:")
        .and_then(|u| u.split('@').next())
        .unwrap_or_default()
}

/// A sipp carrier answering as told, and its gateway on trunkline, live on the node.
pub async fn carrier_answering(p: &Platform, gateway: &str, answer: Answer) -> (Carrier, Value) {
    let (carrier, row) = live_carrier(p, p.addr, gateway, Some(answer), json!({})).await;
    (carrier.expect("a sipp carrier"), row)
}

/// A carrier created through instance `addr` with `extra` fields: a sipp carrier answering as
/// told (`None`: a port nothing listens on, so ICMP port unreachable), its gateway live on the
/// node.
pub async fn live_carrier(
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
pub async fn alpha_takes_plus_one(p: &Platform, what: &str) -> (Carrier, Value) {
    let (alpha, alpha_row) = carrier_answering(p, "alpha", Answer::Connect).await;
    p.route("+1", &alpha_row, 1, json!({})).await;
    assert_status(
        &p.call("+15551234567", Caller::Expect(200)).await,
        200,
        what,
    );
    (alpha, alpha_row)
}

pub async fn lock() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}
