//! A running trunkline on a real socket, over a real database, with HTTP helpers: what the
//! API and xml_curl integration tests drive.

#![allow(dead_code)]

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tokio::sync::oneshot;
use trunkline::access::generate_token;
use trunkline::app::Application;
use trunkline::config::Settings;
use trunkline::fsxml::testdata::SAMPLE_DIALPLAN_FETCH;
use trunkline::model::{NewApiToken, Role, Scope};
use trunkline::store::Store;
use uuid::Uuid;

pub struct TestApp {
    pub label: String,
    pub base: String,
    pub store: Store,
    pub client: reqwest::Client,
    /// A platform admin token.
    pub admin: String,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A response: status and JSON body (`Value::Null` when the body is not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub text: String,
}

impl Reply {
    /// The `field` of every error in an error body.
    pub fn error_fields(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .filter_map(|e| e["field"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Fails the test unless this is a 422 naming exactly `field`.
    #[track_caller]
    pub fn assert_refused_on(&self, field: &str) {
        assert_eq!(
            self.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            self.text
        );
        assert_eq!(self.error_fields(), [field], "{}", self.text);
    }

    /// Refused as VoIPBIN refuses a bad request (`/v1.0`): 400, naming `field`.
    pub fn assert_voipbin_refused_on(&self, field: &str) {
        assert_eq!(self.status, StatusCode::BAD_REQUEST, "{}", self.text);
        assert_eq!(self.error_fields(), [field], "{}", self.text);
    }

    pub fn id(&self) -> Uuid {
        Uuid::parse_str(
            self.body["id"]
                .as_str()
                .unwrap_or_else(|| panic!("no id in {self:?}")),
        )
        .unwrap()
    }
}

pub fn test_settings() -> Settings {
    let mut settings = Settings::defaults();
    settings.listen = "127.0.0.1:0".parse().unwrap();
    settings
}

/// [`test_settings`] with the Event Socket timings short enough for a test against the fake
/// switch: quick debounce, reconnects and liveness, a short lease.
pub fn quick_esl_settings() -> Settings {
    let mut settings = test_settings();
    settings.esl.debounce = Duration::from_millis(100);
    settings.esl.backoff_min = Duration::from_millis(50);
    settings.esl.backoff_max = Duration::from_millis(400);
    settings.esl.liveness_every = Duration::from_secs(1);
    settings.esl.connect_timeout = Duration::from_secs(2);
    settings.esl.command_timeout = Duration::from_secs(5);
    settings.esl.lease_ttl = Duration::from_secs(3);
    settings
}

impl TestApp {
    pub async fn start(label: &str, store: Store) -> TestApp {
        Self::start_with(label, store, test_settings()).await
    }

    pub async fn start_with(label: &str, store: Store, settings: Settings) -> TestApp {
        let app = Application::with_store(settings, store.clone())
            .await
            .expect("app builds");
        let base = format!("http://{}", app.local_addr());
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            app.run(async {
                let _ = rx.await;
            })
            .await
            .expect("serves");
        });
        let admin = create_token(&store, Role::PlatformAdmin, None, Scope::ALL).await;
        TestApp {
            label: label.to_string(),
            base,
            store,
            client: reqwest::Client::new(),
            admin,
            shutdown: Some(tx),
        }
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let text = resp.text().await.expect("body read");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply { status, body, text }
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.send(reqwest::Method::GET, path, Some(token), None)
            .await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.send(reqwest::Method::POST, path, Some(token), Some(&body))
            .await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Reply {
        self.send(reqwest::Method::PATCH, path, Some(token), Some(&body))
            .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Reply {
        self.send(reqwest::Method::DELETE, path, Some(token), None)
            .await
    }

    /// POST a created resource and return it, failing the test on anything but 201.
    pub async fn create(&self, path: &str, token: &str, body: Value) -> Value {
        let reply = self.post(path, token, body).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{path}: {}", reply.text);
        reply.body
    }

    /// A tenant created by the platform admin.
    /// A platform carrier named after its gateway, at `sip.<gateway>.example`, with `extra`
    /// fields; its id.
    pub async fn platform_carrier(&self, gateway: &str, extra: Value) -> Uuid {
        let mut body = serde_json::json!({"name": gateway, "gateway_name": gateway, "remote_host": format!("sip.{gateway}.example")});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().cloned().unwrap_or_default());
        let created = self.create("/api/v1/carriers", &self.admin, body).await;
        Uuid::parse_str(created["id"].as_str().unwrap()).unwrap()
    }

    /// A merge patch to a carrier, as the platform admin; fails the test unless it succeeds.
    pub async fn patch_carrier(&self, carrier: Uuid, body: Value) {
        let reply = self
            .patch(&format!("/api/v1/carriers/{carrier}"), &self.admin, body)
            .await;
        assert!(reply.status.is_success(), "{}", reply.text);
    }

    pub async fn tenant(&self, name: &str, context: Option<&str>, self_service: bool) -> Uuid {
        let features: Vec<&str> = if self_service {
            vec!["self_service_carriers"]
        } else {
            vec![]
        };
        let body = self
            .create(
                "/api/v1/tenants",
                &self.admin,
                serde_json::json!({"name": name, "context": context, "features": features}),
            )
            .await;
        Uuid::parse_str(body["id"].as_str().unwrap()).unwrap()
    }

    /// A platform carrier `alpha` and a platform route sending every `+1` call to it: the
    /// smallest configuration a call bridges on. Returns the carrier as created.
    pub async fn route_plus_one_to_alpha(&self) -> Value {
        let alpha = self
            .create(
                "/api/v1/carriers",
                &self.admin,
                serde_json::json!({"name": "Alpha", "gateway_name": "alpha", "remote_host": "sip.alpha.example"}),
            )
            .await;
        self.create(
            "/api/v1/outbound-routes",
            &self.admin,
            serde_json::json!({"name": "All", "prefix": "+1", "carrier_id": alpha["id"], "priority": 1}),
        )
        .await;
        alpha
    }

    /// A tenant admin token with the given scopes.
    /// `GET /api/v1/switches/<id>` as a platform admin sees it.
    pub async fn switch_view(&self, id: Uuid) -> Value {
        self.get(&format!("/api/v1/switches/{id}"), &self.admin)
            .await
            .body
    }

    /// This app's `/metrics` text.
    pub async fn metrics(&self) -> String {
        metrics_text(&self.client, &self.base, &self.admin).await
    }

    pub async fn tenant_token(&self, tenant: Uuid, scopes: &[Scope]) -> String {
        create_token(&self.store, Role::Admin, Some(tenant), scopes).await
    }

    /// The xml_curl endpoint's answer to a form body, as FreeSWITCH posts it.
    pub async fn fetch(&self, body: String) -> (StatusCode, String) {
        let resp = self
            .client
            .post(format!("{}/freeswitch/xml", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("user-agent", "freeswitch-xml/1.0")
            .body(body)
            .send()
            .await
            .expect("fetch sent");
        let status = resp.status();
        (status, resp.text().await.expect("fetch body"))
    }
}

/// Runs `test` against a fresh app on every backend.
pub async fn on_every_backend<F, Fut>(test: F)
where
    F: Fn(TestApp) -> Fut,
    Fut: Future<Output = ()>,
{
    for (label, store) in super::db::backends().await {
        eprintln!("backend: {label}");
        test(TestApp::start(&label, store).await).await;
    }
}

pub async fn create_token(
    store: &Store,
    role: Role,
    tenant: Option<Uuid>,
    scopes: &[Scope],
) -> String {
    let generated = generate_token();
    store
        .create_token(&NewApiToken {
            token_hash: generated.hash,
            tenant_id: tenant,
            role,
            scopes: scopes.to_vec(),
        })
        .await
        .expect("token stored");
    generated.secret
}

/// The data of every `bridge` action of a dialplan document that passes
/// `assert_document_is_safe`, in order.
pub fn bridges(xml: &str) -> Vec<String> {
    trunkline::fsxml::testdata::assert_document_is_safe(xml)
        .into_iter()
        .filter(|(app, _)| app == "bridge")
        .map(|(_, data)| data)
        .collect()
}

/// Percent-encodes a value as FreeSWITCH's `switch_url_encode` does for the form body: every
/// byte outside the unreserved set, so `+` arrives as `%2B` and a space as `%20`.
pub fn fs_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The realistic dialplan fetch fixture with some fields replaced (`Some`), removed (`None`) or
/// appended (names not in the fixture).
pub fn dialplan_body(changes: &[(&str, Option<&str>)]) -> String {
    let mut pairs: Vec<(String, String)> = SAMPLE_DIALPLAN_FETCH
        .split('&')
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), v.to_string())
        })
        .collect();
    for (name, value) in changes {
        match (pairs.iter().position(|(k, _)| k == name), value) {
            (Some(i), Some(v)) => pairs[i].1 = fs_encode(v),
            (Some(i), None) => {
                pairs.remove(i);
            }
            (None, Some(v)) => pairs.push((name.to_string(), fs_encode(v))),
            (None, None) => {}
        }
    }
    pairs
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// A dialplan fetch for `destination` in `context`, for `tenant` (or none).
pub fn call(context: &str, destination: &str, tenant: Option<Uuid>) -> String {
    let tenant = tenant.map(|t| t.to_string());
    dialplan_body(&[
        ("Caller-Context", Some(context)),
        ("Hunt-Context", Some(context)),
        ("Caller-Destination-Number", Some(destination)),
        ("Hunt-Destination-Number", Some(destination)),
        ("variable_trunkline_tenant_id", tenant.as_deref()),
        ("variable_trunkline_attestation", None),
    ])
}

/// A configuration fetch for `file` (`sofia.conf`, `acl.conf`), optionally for one profile.
pub fn config_body(file: &str, profile: Option<&str>) -> String {
    let mut body = format!(
        "hostname=fs1&section=configuration&tag_name=configuration&key_name=name&key_value={file}&Event-Name=REQUEST_PARAMS&Core-UUID=d2c6a4f0-9b1e-4e3d-8c7b-6a5f4e3d2c1b&FreeSWITCH-Hostname=fs1"
    );
    if let Some(p) = profile {
        body.push_str(&format!("&profile={}", fs_encode(p)));
    }
    body
}

/// Whether a switch of `GET /api/v1/switches` is converged: connected, nothing pending, and a
/// configuration version synced.
pub fn switch_synced(switch: &Value) -> bool {
    switch["connection"] == "connected"
        && switch["pending_operations"] == 0
        && switch["synced_version"].is_u64()
}

/// The `/metrics` text of the trunkline at `base` (`http://host:port`), read as Prometheus
/// reads it: with a platform token as the bearer.
pub async fn metrics_text(client: &reqwest::Client, base: &str, token: &str) -> String {
    client
        .get(format!("{base}/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .expect("/metrics")
        .text()
        .await
        .expect("/metrics body")
}

/// The value of a Prometheus series in `/metrics` text: the sum of the series of `name` whose
/// labels include every one of `labels` (0 when there is none). An unlabelled series
/// (`name value`) counts when no label is asked for.
pub fn metric_value(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| match l.strip_prefix(name) {
            Some(rest) if rest.starts_with('{') => labels.iter().all(|label| rest.contains(label)),
            Some(rest) => rest.starts_with(' ') && labels.is_empty(),
            None => false,
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
