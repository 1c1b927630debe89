//! Issue 6 point 1, the injection corpus: every hostile input of [`support::hostile::corpus`]
//! against every tenant-writable string field of every resource (POST and PATCH), every
//! route-preview query parameter and every caller-controlled field of the xml_curl request.
//!
//! For an API write the outcome must be one of two: refused (422 naming the field, or 400
//! naming the query parameter for a malformed route-preview query, as `src/api/error.rs`
//! documents) with the database unchanged; or stored, and then every document that can carry
//! the value — dialplan (a call that uses the carrier or route), sofia.conf (whole and
//! `profile=external`), acl.conf and the route explain `xml` — still passes
//! `assert_document_is_safe` and holds only what trunkline generates: bridges to gateways it
//! created in the strict dial-string grammar, `set` of its own variables, gateway params in
//! their newtype grammar. For an xml_curl field the answer is 200 with a document that passes
//! the same checks and bridges only to carriers trunkline chose for the valid inputs.
//!
//! Every failure is collected and reported; the counts are printed at the end.

mod support;

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::app::{Reply, TestApp, config_body, dialplan_body, fs_encode};
use support::hostile::{Hostile, check_acl, check_dialplan, check_sofia, corpus, names_field};
use trunkline::model::Dataset;
use trunkline::model::Switch;
use trunkline::model::{PhoneNumber, Scope};
use trunkline::store::{PageRequest, PhoneNumberFilter, TenantScope};
use uuid::Uuid;

/// The resources the API writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resource {
    Tenant,
    Carrier,
    Route,
    RegexRoute,
    PhoneNumber,
    Switch,
}

/// One writable string field: where it sits in the body (dots, numeric segments index arrays;
/// `tech_headers#key` is a header name), the field an error must name, and a valid value the
/// hostile payloads are embedded in.
struct Field {
    resource: Resource,
    path: &'static str,
    reported: &'static str,
    valid: String,
}

/// The base resources every case starts from, and what a valid call bridges to.
struct World {
    app: TestApp,
    /// The tenant whose carrier and routes the dialplan cases use (self-service).
    tenant: Uuid,
    tenant_token: String,
    /// A tenant in the exact failover form, on platform routes.
    exact: Uuid,
    /// The tenant PATCH cases change.
    patched_tenant: Uuid,
    carrier: Uuid,
    route: Uuid,
    regex_route: Uuid,
    number: Uuid,
    switch: Uuid,
    /// Every gateway trunkline created in this world.
    gateways: BTreeSet<String>,
    /// What a valid call of `tenant` bridges to (with and without the forced carrier).
    tenant_gateways: BTreeSet<String>,
    /// What a valid call of `exact` bridges to over its attempts.
    exact_gateways: BTreeSet<String>,
    counter: u32,
}

const DESTINATION: &str = "+15551234567";
const CALL_ID: &str = "5b7c2d1e-8f3a-4b6c-9d0e-1f2a3b4c5d6e";

fn schedule() -> Value {
    json!({"time_zone": "UTC", "windows": [
        {"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "00:00", "end": "24:00"}
    ]})
}

fn carrier_body(tenant: Uuid) -> Value {
    json!({
        "tenant_id": tenant, "name": "Inj carrier", "type": "sip_trunk", "direction": "outbound",
        "status": "active", "remote_host": "sip.ok.example", "transport": "udp",
        "profile": "external", "auth_username": "acct42", "auth_password": "pw-ok-1",
        "realm": "sip.ok.example", "from_user": "acct42", "from_domain": "ok.example",
        "inbound_ips": ["192.0.2.10/32"], "strip_prefix": "+", "add_prefix": "99",
        "add_suffix": "", "tech_headers": {"X-Account": "42"},
        "attestation_header": "X-Attestation", "failover_codes": ["503"],
        "cost": {"rate": "0.01", "currency": "USD"}
    })
}

impl World {
    async fn build(app: TestApp) -> World {
        let admin = app.admin.clone();
        let mut gateways = BTreeSet::new();
        let mut platform = Vec::new();
        for (gw, priority) in [("inj-p1", 1), ("inj-p2", 2)] {
            let c = app
                .create(
                    "/api/v1/carriers",
                    &admin,
                    json!({"name": gw, "gateway_name": gw, "remote_host": "sip.platform.example"}),
                )
                .await;
            gateways.insert(gw.to_string());
            app.create(
                "/api/v1/outbound-routes",
                &admin,
                json!({"name": gw, "prefix": "+1", "carrier_id": c["id"], "priority": priority}),
            )
            .await;
            platform.push(c["id"].clone());
        }
        let tenant = app.tenant("Inj", Some("inj"), true).await;
        let tenant_token = app.tenant_token(tenant, Scope::ALL).await;
        let mut body = carrier_body(tenant);
        body["gateway_name"] = json!("inj-c");
        let carrier = app.create("/api/v1/carriers", &tenant_token, body).await;
        gateways.insert("inj-c".into());
        let carrier = Uuid::parse_str(carrier["id"].as_str().unwrap()).unwrap();
        let route = app
            .create(
                "/api/v1/outbound-routes",
                &tenant_token,
                json!({"name": "Inj +1", "prefix": "+1", "carrier_id": carrier, "priority": 1}),
            )
            .await;
        let regex_route = app
            .create(
                "/api/v1/outbound-routes",
                &tenant_token,
                json!({"name": "Inj regex", "match_type": "regex", "regex": "^1555[0-9]+$",
                       "carrier_id": carrier, "priority": 2}),
            )
            .await;
        let number = app
            .create(
                "/api/v1/phone-numbers",
                &tenant_token,
                json!({"number": "+15550001111", "carrier_id": carrier}),
            )
            .await;
        let exact = app.tenant("Inj exact", Some("injx"), false).await;
        let r = app
            .patch(
                &format!("/api/v1/tenants/{exact}"),
                &admin,
                json!({"failover_mode": "exact"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let patched_tenant = app.tenant("Inj patched", Some("injpatch"), false).await;
        let switch = app
            .create(
                "/api/v1/switches",
                &admin,
                json!({"name": "inj-sw", "esl_host": "127.0.0.1", "esl_password": "ClueCon-x",
                       "enabled": false}),
            )
            .await;
        let id = |v: &Value| Uuid::parse_str(v["id"].as_str().unwrap()).unwrap();
        let mut world = World {
            tenant,
            tenant_token,
            exact,
            patched_tenant,
            carrier,
            route: id(&route),
            regex_route: id(&regex_route),
            number: id(&number),
            switch: id(&switch),
            gateways,
            tenant_gateways: BTreeSet::new(),
            exact_gateways: BTreeSet::new(),
            counter: 0,
            app,
        };
        // What valid inputs bridge to: the allow-list for the xml_curl cases.
        for body in [
            world.tenant_call(&[]),
            world.tenant_call(&[forced(carrier)]),
        ] {
            let (_, xml) = world.app.fetch(body).await;
            let bridged = check_dialplan(&xml, &world.gateways).unwrap();
            assert!(!bridged.is_empty(), "{xml}");
            world.tenant_gateways.extend(bridged);
        }
        for attempt in [None, Some("1")] {
            let mut changes = vec![];
            if let Some(a) = attempt {
                changes.push(("variable_trunkline_attempt", Some(a)));
                changes.push((
                    "variable_last_bridge_proto_specific_hangup_cause",
                    Some("sip:503"),
                ));
                changes.push((
                    "variable_originate_disposition",
                    Some("NORMAL_TEMPORARY_FAILURE"),
                ));
            }
            let (_, xml) = world.app.fetch(world.exact_call(&changes)).await;
            let bridged = check_dialplan(&xml, &world.gateways).unwrap();
            assert_eq!(bridged.len(), 1, "{xml}");
            world.exact_gateways.extend(bridged);
        }
        assert_eq!(world.exact_gateways.len(), 2, "both platform legs");
        world
    }

    fn tenant_call(&self, changes: &[(&str, Option<String>)]) -> String {
        let tenant = self.tenant.to_string();
        let mut all: Vec<(&str, Option<&str>)> = vec![
            ("Caller-Context", Some("inj")),
            ("Hunt-Context", Some("inj")),
            ("variable_trunkline_tenant_id", Some(tenant.as_str())),
        ];
        // Later changes win: `dialplan_body` applies them in order.
        all.extend(changes.iter().map(|(k, v)| (*k, v.as_deref())));
        dialplan_body(&all)
    }

    fn exact_call(&self, changes: &[(&str, Option<&str>)]) -> String {
        let tenant = self.exact.to_string();
        let mut all: Vec<(&str, Option<&str>)> = vec![
            ("Caller-Context", Some("injx")),
            ("Hunt-Context", Some("injx")),
            ("variable_trunkline_tenant_id", Some(tenant.as_str())),
        ];
        all.extend_from_slice(changes);
        dialplan_body(&all)
    }

    fn collection(resource: Resource) -> &'static str {
        match resource {
            Resource::Tenant => "/api/v1/tenants",
            Resource::Carrier => "/api/v1/carriers",
            Resource::Route | Resource::RegexRoute => "/api/v1/outbound-routes",
            Resource::PhoneNumber => "/api/v1/phone-numbers",
            Resource::Switch => "/api/v1/switches",
        }
    }

    /// Tenants and switches are the platform's; the rest is written by the tenant itself.
    fn token(&self, resource: Resource) -> &str {
        match resource {
            Resource::Tenant | Resource::Switch => &self.app.admin,
            _ => &self.tenant_token,
        }
    }

    fn patch_target(&self, resource: Resource) -> String {
        let id = match resource {
            Resource::Tenant => self.patched_tenant,
            Resource::Carrier => self.carrier,
            Resource::Route => self.route,
            Resource::RegexRoute => self.regex_route,
            Resource::PhoneNumber => self.number,
            Resource::Switch => self.switch,
        };
        format!("{}/{id}", Self::collection(resource))
    }

    /// A POST body that succeeds as it is (unique values numbered).
    fn post_body(&mut self, resource: Resource) -> Value {
        self.counter += 1;
        let n = self.counter;
        match resource {
            Resource::Tenant => json!({
                "name": "Inj tenant", "features": ["self_service_carriers"],
                "failover_mode": "default", "max_cost": {"rate": "1", "currency": "USD"}
            }),
            Resource::Carrier => carrier_body(self.tenant),
            Resource::Route => json!({
                "tenant_id": self.tenant, "name": "Inj route", "match_type": "prefix",
                "prefix": "+1", "carrier_id": self.carrier, "priority": 50,
                "strip_prefix": "+", "add_prefix": "", "schedule": schedule(),
                "cost": {"rate": "0.01", "currency": "USD"}, "weight": 10,
                "caller_prefix": "1", "caller_regex": "^1[0-9]+$"
            }),
            Resource::RegexRoute => json!({
                "tenant_id": self.tenant, "name": "Inj regex route", "match_type": "regex",
                "regex": "^1555[0-9]+$", "carrier_id": self.carrier, "priority": 60
            }),
            Resource::PhoneNumber => json!({
                "tenant_id": self.tenant, "number": format!("+1444{n:07}"),
                "carrier_id": self.carrier, "capabilities": ["voice"]
            }),
            Resource::Switch => json!({
                "name": format!("inj-sw-{n}"), "esl_host": "127.0.0.1", "esl_port": 8021,
                "esl_password": "ClueCon-x", "enabled": false, "profiles": ["external"]
            }),
        }
    }

    fn fields(&self) -> Vec<Field> {
        let t = self.tenant.to_string();
        let c = self.carrier.to_string();
        let f = |resource, path, reported, valid: &str| Field {
            resource,
            path,
            reported,
            valid: valid.to_string(),
        };
        use Resource::*;
        vec![
            f(Tenant, "name", "name", "Inj tenant"),
            f(Tenant, "context", "context", "injctx"),
            f(Tenant, "features.0", "features", "self_service_carriers"),
            f(Tenant, "failover_mode", "failover_mode", "default"),
            f(Tenant, "max_cost.rate", "max_cost", "1"),
            f(Tenant, "max_cost.currency", "max_cost", "USD"),
            f(Carrier, "tenant_id", "tenant_id", &t),
            f(Carrier, "name", "name", "Inj carrier"),
            f(Carrier, "gateway_name", "gateway_name", "inj-gw"),
            f(Carrier, "type", "type", "sip_trunk"),
            f(Carrier, "direction", "direction", "outbound"),
            f(Carrier, "status", "status", "active"),
            f(Carrier, "remote_host", "remote_host", "sip.ok.example"),
            f(Carrier, "transport", "transport", "udp"),
            f(Carrier, "profile", "profile", "external"),
            f(Carrier, "auth_username", "auth_username", "acct42"),
            f(Carrier, "auth_password", "auth_password", "pw-ok-1"),
            f(Carrier, "realm", "realm", "sip.ok.example"),
            f(Carrier, "from_user", "from_user", "acct42"),
            f(Carrier, "from_domain", "from_domain", "ok.example"),
            f(Carrier, "inbound_ips.0", "inbound_ips", "192.0.2.10/32"),
            f(Carrier, "strip_prefix", "strip_prefix", "+"),
            f(Carrier, "add_prefix", "add_prefix", "99"),
            f(Carrier, "add_suffix", "add_suffix", ""),
            f(Carrier, "tech_headers#key", "tech_headers", "X-Account"),
            f(Carrier, "tech_headers.X-Account", "tech_headers", "42"),
            f(
                Carrier,
                "attestation_header",
                "attestation_header",
                "X-Attestation",
            ),
            f(Carrier, "failover_codes.0", "failover_codes", "503"),
            f(Carrier, "cost.rate", "cost", "0.01"),
            f(Carrier, "cost.currency", "cost", "USD"),
            f(Route, "tenant_id", "tenant_id", &t),
            f(Route, "name", "name", "Inj route"),
            f(Route, "match_type", "match_type", "prefix"),
            f(Route, "prefix", "prefix", "+1"),
            f(Route, "carrier_id", "carrier_id", &c),
            f(Route, "strip_prefix", "strip_prefix", "+"),
            f(Route, "add_prefix", "add_prefix", ""),
            f(Route, "schedule.time_zone", "schedule", "UTC"),
            f(Route, "schedule.windows.0.days.0", "schedule", "mon"),
            f(Route, "schedule.windows.0.start", "schedule", "00:00"),
            f(Route, "schedule.windows.0.end", "schedule", "24:00"),
            f(Route, "cost.rate", "cost", "0.01"),
            f(Route, "cost.currency", "cost", "USD"),
            f(Route, "caller_prefix", "caller_prefix", "1"),
            f(Route, "caller_regex", "caller_regex", "^1[0-9]+$"),
            f(RegexRoute, "regex", "regex", "^1555[0-9]+$"),
            f(PhoneNumber, "tenant_id", "tenant_id", &t),
            f(PhoneNumber, "number", "number", "+15550002222"),
            f(PhoneNumber, "carrier_id", "carrier_id", &c),
            f(PhoneNumber, "capabilities.0", "capabilities", "voice"),
            f(Switch, "name", "name", "injsw"),
            f(Switch, "esl_host", "esl_host", "127.0.0.1"),
            f(Switch, "esl_password", "esl_password", "ClueCon-x"),
            f(Switch, "profiles.0", "profiles", "external"),
        ]
    }
}

fn forced(carrier: Uuid) -> (&'static str, Option<String>) {
    ("variable_trunkline_carrier_id", Some(carrier.to_string()))
}

/// Sets the string at `path` (see [`Field`]).
fn set_at(body: &mut Value, path: &str, value: &str) {
    if path == "tech_headers#key" {
        body["tech_headers"] = json!({ value: "42" });
        return;
    }
    let mut cur = body;
    for seg in path.split('.') {
        cur = match seg.parse::<usize>() {
            Ok(i) => &mut cur[i],
            Err(_) => &mut cur[seg],
        };
    }
    *cur = Value::String(value.to_string());
}

/// The top-level member a path is in: what a merge PATCH replaces.
fn top(path: &str) -> &str {
    path.split(['.', '#']).next().unwrap_or(path)
}

/// Whether a refusal repeats the hostile text (error details must never echo the value). Short
/// payloads and the pre-processor keyword (which the rule text itself names) are not telling.
fn echoes(text: &str, payload: &str) -> bool {
    payload.len() >= 6
        && !payload.eq_ignore_ascii_case("x-pre-process")
        && (text.contains(payload) || text.contains(&json!(payload).to_string()))
}

/// What the database holds, for the "unchanged" check.
#[derive(Debug, PartialEq)]
struct State {
    dataset: Dataset,
    numbers: Vec<PhoneNumber>,
    switches: Vec<Switch>,
}

async fn numbers(app: &TestApp) -> Vec<PhoneNumber> {
    let filter = PhoneNumberFilter {
        scope: TenantScope::All,
        carrier_id: None,
    };
    let page = PageRequest {
        limit: 1000,
        after: None,
    };
    app.store
        .list_phone_numbers(&filter, &page)
        .await
        .unwrap()
        .items
}

async fn state(app: &TestApp) -> State {
    State {
        dataset: app.store.load_dataset().await.unwrap(),
        numbers: numbers(app).await,
        switches: app.store.list_switches().await.unwrap(),
    }
}

#[derive(Default)]
struct Tally {
    cases: usize,
    refused: usize,
    stored: usize,
    failures: Vec<String>,
}

impl Tally {
    fn fail(&mut self, what: String) {
        self.failures.push(what);
    }
}

/// Every document that can carry a stored value, checked against the strict grammar.
/// `forced_carriers` are carriers the dialplan and explain are asked to use, one call each.
async fn check_documents(w: &World, forced_carriers: &[Uuid]) -> Result<(), String> {
    let mut calls = vec![w.tenant_call(&[]), w.exact_call(&[])];
    for c in forced_carriers {
        calls.push(w.tenant_call(&[forced(*c)]));
    }
    for body in calls {
        let (status, xml) = w.app.fetch(body).await;
        if status != StatusCode::OK {
            return Err(format!("dialplan fetch answered {status}"));
        }
        check_dialplan(&xml, &w.gateways).map_err(|e| format!("dialplan: {e}\n{xml}"))?;
    }
    for profile in [None, Some("external")] {
        let (status, xml) = w.app.fetch(config_body("sofia.conf", profile)).await;
        if status != StatusCode::OK {
            return Err(format!("sofia.conf fetch answered {status}"));
        }
        check_sofia(&xml, &w.gateways).map_err(|e| format!("sofia.conf: {e}"))?;
    }
    let (status, xml) = w.app.fetch(config_body("acl.conf", None)).await;
    if status != StatusCode::OK {
        return Err(format!("acl.conf fetch answered {status}"));
    }
    check_acl(&xml).map_err(|e| format!("acl.conf: {e}"))?;
    let base = format!(
        "/api/v1/route-preview?destination={}",
        fs_encode(DESTINATION)
    );
    let mut previews = vec![base.clone()];
    previews.extend(
        forced_carriers
            .iter()
            .map(|c| format!("{base}&carrier_id={c}")),
    );
    for path in previews {
        let r = w.app.get(&path, &w.tenant_token).await;
        if r.status != StatusCode::OK {
            return Err(format!("route preview answered {}: {}", r.status, r.text));
        }
        let xml = r.body["xml"].as_str().unwrap_or_default();
        check_dialplan(xml, &w.gateways).map_err(|e| format!("explain xml: {e}\n{xml}"))?;
    }
    Ok(())
}

/// One hostile value in one field through POST or PATCH.
async fn api_case(
    w: &mut World,
    t: &mut Tally,
    expected: &mut State,
    field: &Field,
    method: Method,
    hostile: &Hostile,
    pending: &mut Vec<(Uuid, String)>,
) {
    let value = hostile.apply(&field.valid);
    let mut body = w.post_body(field.resource);
    set_at(&mut body, field.path, &value);
    let path = if method == Method::POST {
        World::collection(field.resource).to_string()
    } else {
        body = json!({ top(field.path): body[top(field.path)].clone() });
        w.patch_target(field.resource)
    };
    let what = || {
        format!(
            "{method} {} {} = {}",
            World::collection(field.resource),
            field.path,
            hostile.describe(&field.valid)
        )
    };
    let token = w.token(field.resource).to_string();
    let r: Reply = w
        .app
        .send(method.clone(), &path, Some(&token), Some(&body))
        .await;
    t.cases += 1;
    match r.status {
        StatusCode::UNPROCESSABLE_ENTITY => {
            t.refused += 1;
            let fields = r.error_fields();
            if fields.is_empty() || !fields.iter().all(|f| names_field(f, field.reported)) {
                t.fail(format!(
                    "{}: 422 names {fields:?}, not {}",
                    what(),
                    field.reported
                ));
            }
            if echoes(&r.text, &hostile.payload) {
                t.fail(format!(
                    "{}: the refusal echoes the value: {}",
                    what(),
                    r.text
                ));
            }
            // Unchanged: the config version always; the tables the version does not cover for
            // their own resource; everything periodically.
            let version = w.app.store.config_version().await.unwrap();
            if version != expected.dataset.version {
                t.fail(format!("{}: refused but the config version moved", what()));
            }
            let full = t.refused.is_multiple_of(64);
            let changed = match field.resource {
                _ if full => state(&w.app).await != *expected,
                Resource::PhoneNumber => numbers(&w.app).await != expected.numbers,
                Resource::Switch => w.app.store.list_switches().await.unwrap() != expected.switches,
                _ => false,
            };
            if changed {
                t.fail(format!("{}: refused but the database changed", what()));
                *expected = state(&w.app).await;
            }
        }
        StatusCode::OK | StatusCode::CREATED => {
            t.stored += 1;
            let created = (r.status == StatusCode::CREATED).then(|| r.id());
            if let Some(gw) = r.body["gateway_name"].as_str() {
                w.gateways.insert(gw.to_string());
            }
            match created {
                // Created resources are checked together at the end of the field's batch
                // (their values all sit in the documents at once), then removed.
                Some(id) => pending.push((id, what())),
                // An update replaces the previous one: check now.
                None => {
                    let forced: Vec<Uuid> = match field.resource {
                        Resource::Carrier => vec![w.carrier],
                        _ => vec![],
                    };
                    if let Err(e) = check_documents(w, &forced).await {
                        t.fail(format!("{}: stored, and then {e}", what()));
                    }
                }
            }
            *expected = state(&w.app).await;
        }
        other => t.fail(format!("{}: answered {other}: {}", what(), r.text)),
    }
}

/// Checks the documents holding every value a field's POST batch stored, then removes those
/// resources again so the documents stay small (tenants cannot be deleted; carriers are
/// archived, which takes them out of every document).
async fn finish_batch(
    w: &mut World,
    t: &mut Tally,
    expected: &mut State,
    field: &Field,
    pending: &mut Vec<(Uuid, String)>,
) {
    if pending.is_empty() {
        return;
    }
    let forced: Vec<Uuid> = match field.resource {
        Resource::Carrier => pending.iter().map(|(id, _)| *id).collect(),
        _ => vec![],
    };
    if let Err(e) = check_documents(w, &forced).await {
        let cases: Vec<&str> = pending.iter().map(|(_, what)| what.as_str()).collect();
        t.fail(format!("stored {cases:?}, and then {e}"));
    }
    if field.resource != Resource::Tenant {
        let token = w.token(field.resource).to_string();
        for (id, what) in pending.iter() {
            let path = format!("{}/{id}", World::collection(field.resource));
            let r = w.app.delete(&path, &token).await;
            assert!(r.status.is_success(), "{what}: cleanup {}", r.text);
        }
    }
    pending.clear();
    *expected = state(&w.app).await;
}

/// One hostile value in one route-preview query parameter.
async fn preview_case(w: &World, t: &mut Tally, param: &str, valid: &str, hostile: &Hostile) {
    let mut params = vec![
        ("destination", DESTINATION.to_string()),
        ("caller", "+14155550100".to_string()),
        ("attestation", "A".to_string()),
        ("max_cost", "1".to_string()),
        ("at", "2026-01-05T12:00:00Z".to_string()),
        ("call_id", CALL_ID.to_string()),
        ("tenant_id", w.tenant.to_string()),
        ("carrier_id", w.carrier.to_string()),
    ];
    for (k, v) in &mut params {
        if *k == param {
            *v = hostile.apply(valid);
        }
    }
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", fs_encode(v)))
        .collect();
    let path = format!("/api/v1/route-preview?{}", query.join("&"));
    let what = || format!("route-preview {param} = {}", hostile.describe(valid));
    let r = w.app.get(&path, &w.tenant_token).await;
    t.cases += 1;
    match r.status {
        StatusCode::UNPROCESSABLE_ENTITY | StatusCode::BAD_REQUEST => {
            t.refused += 1;
            let fields = r.error_fields();
            if fields.is_empty() || !fields.iter().all(|f| names_field(f, param)) {
                t.fail(format!("{}: {} names {fields:?}", what(), r.status));
            }
        }
        // A query so long that the head passes the 16 KiB head buffer (`serve::MAX_HEAD_BYTES`)
        // is refused before any handler reads it: nothing to name, nothing done.
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            if path.len() > trunkline::serve::MAX_HEAD_BYTES =>
        {
            t.refused += 1;
        }
        StatusCode::OK => {
            t.stored += 1;
            let xml = r.body["xml"].as_str().unwrap_or_default();
            match check_dialplan(xml, &w.gateways) {
                Ok(bridged) if bridged.iter().all(|g| w.tenant_gateways.contains(g)) => {}
                Ok(bridged) => t.fail(format!("{}: bridges {bridged:?}", what())),
                Err(e) => t.fail(format!("{}: {e}\n{xml}", what())),
            }
        }
        other => t.fail(format!("{}: answered {other}: {}", what(), r.text)),
    }
}

/// A caller-controlled field of the xml_curl request: the form fields it is posted in, its
/// valid value, and whether it belongs to a follow-up fetch of the exact failover form.
struct FetchField {
    names: &'static [&'static str],
    valid: String,
    exact: bool,
}

fn fetch_fields(w: &World) -> Vec<FetchField> {
    let f = |names, valid: &str, exact| FetchField {
        names,
        valid: valid.to_string(),
        exact,
    };
    vec![
        f(
            &["Caller-Destination-Number", "Hunt-Destination-Number"],
            DESTINATION,
            false,
        ),
        f(
            &["Caller-Caller-ID-Number", "Hunt-Caller-ID-Number"],
            "+14155550100",
            false,
        ),
        f(
            &["Caller-Caller-ID-Name", "Hunt-Caller-ID-Name"],
            "Front Desk",
            false,
        ),
        f(&["Caller-Context", "Hunt-Context"], "inj", false),
        f(&["Unique-ID"], CALL_ID, false),
        f(
            &["variable_trunkline_tenant_id"],
            &w.tenant.to_string(),
            false,
        ),
        f(
            &["variable_trunkline_carrier_id"],
            &w.carrier.to_string(),
            false,
        ),
        f(&["variable_trunkline_attestation"], "A", false),
        f(&["variable_trunkline_max_cost"], "1", false),
        f(&["variable_trunkline_attempt"], "1", true),
        f(
            &["variable_last_bridge_proto_specific_hangup_cause"],
            "sip:503",
            true,
        ),
        f(
            &["variable_originate_disposition"],
            "NORMAL_TEMPORARY_FAILURE",
            true,
        ),
        // `profile` of a sofia.conf fetch: handled apart.
        f(&["profile"], "external", false),
    ]
}

async fn fetch_case(w: &World, t: &mut Tally, field: &FetchField, hostile: &Hostile) {
    let value = hostile.apply(&field.valid);
    let what = || {
        format!(
            "xml_curl {} = {}",
            field.names[0],
            hostile.describe(&field.valid)
        )
    };
    t.cases += 1;
    if field.names == ["profile"] {
        let (status, xml) = w.app.fetch(config_body("sofia.conf", Some(&value))).await;
        match (status, check_sofia(&xml, &w.gateways)) {
            (StatusCode::OK, Ok(_)) => t.stored += 1,
            (status, result) => t.fail(format!("{}: {status} {result:?}", what())),
        }
        return;
    }
    let body = if field.exact {
        let mut changes: Vec<(&str, Option<&str>)> = vec![
            ("variable_trunkline_attempt", Some("1")),
            (
                "variable_last_bridge_proto_specific_hangup_cause",
                Some("sip:503"),
            ),
            (
                "variable_originate_disposition",
                Some("NORMAL_TEMPORARY_FAILURE"),
            ),
        ];
        changes.extend(field.names.iter().map(|n| (*n, Some(value.as_str()))));
        w.exact_call(&changes)
    } else {
        let changes: Vec<(&str, Option<String>)> = field
            .names
            .iter()
            .map(|n| (*n, Some(value.clone())))
            .collect();
        w.tenant_call(&changes)
    };
    let allowed = if field.exact {
        &w.exact_gateways
    } else {
        &w.tenant_gateways
    };
    let (status, xml) = w.app.fetch(body).await;
    if status != StatusCode::OK {
        t.fail(format!("{}: answered {status}", what()));
        return;
    }
    match check_dialplan(&xml, &w.gateways) {
        Ok(bridged) if bridged.is_empty() => t.refused += 1,
        Ok(bridged) if bridged.iter().all(|g| allowed.contains(g)) => {
            t.stored += 1;
            for marker in ["evil", "system", "X-Evil", "api_on_answer"] {
                if xml.contains(marker) {
                    t.fail(format!("{}: {marker} reached the document\n{xml}", what()));
                }
            }
        }
        Ok(bridged) => t.fail(format!("{}: bridges {bridged:?}", what())),
        Err(e) => t.fail(format!("{}: {e}\n{xml}", what())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_input_in_every_field_is_refused_or_stored_and_rendered_safely() {
    // Arrange
    let inputs = corpus();
    assert!(inputs.len() >= 200, "{} inputs", inputs.len());
    let mut all_failures = Vec::new();
    for (label, store) in support::db::backends().await {
        let mut w = World::build(TestApp::start(&label, store).await).await;
        // The full product (every input in every field) takes minutes in a debug build,
        // mostly the stored cases (each write rebuilds the published snapshot, each check
        // fetches every document): it ran once with 0 failures and runs again with
        // `TRUNKLINE_FULL_CORPUS=1`. By default each field takes every `stride`-th input,
        // offset by the field's index, so every input still meets a share of the fields and
        // every field a share of every kind of input. PostgreSQL takes a sparser sample (a
        // network round trip per statement; the same code paths).
        let full = std::env::var_os("TRUNKLINE_FULL_CORPUS").is_some();
        let stride = match (full, label.as_str()) {
            (true, _) => 1,
            (false, "sqlite") => 8,
            (false, _) => 24,
        };
        let picks = |field: usize| {
            inputs
                .iter()
                .enumerate()
                .filter(move |(i, _)| (i + field).is_multiple_of(stride))
                .map(|(_, h)| h)
        };
        let api_fields = w.fields();
        let fetch = fetch_fields(&w);
        let previews = [
            ("destination", DESTINATION.to_string()),
            ("caller", "+14155550100".to_string()),
            ("attestation", "A".to_string()),
            ("max_cost", "1".to_string()),
            ("at", "2026-01-05T12:00:00Z".to_string()),
            ("call_id", CALL_ID.to_string()),
            ("tenant_id", w.tenant.to_string()),
            ("carrier_id", w.carrier.to_string()),
        ];
        let mut t = Tally::default();
        let mut expected = state(&w.app).await;
        let mut index = 0;
        let mut planned = 0;

        // Act
        for field in &fetch {
            for hostile in picks(index) {
                planned += 1;
                fetch_case(&w, &mut t, field, hostile).await;
            }
            index += 1;
        }
        for (param, valid) in &previews {
            for hostile in picks(index) {
                planned += 1;
                preview_case(&w, &mut t, param, valid, hostile).await;
            }
            index += 1;
        }
        for field in &api_fields {
            for method in [Method::POST, Method::PATCH] {
                let mut pending = Vec::new();
                for hostile in picks(index) {
                    planned += 1;
                    api_case(
                        &mut w,
                        &mut t,
                        &mut expected,
                        field,
                        method.clone(),
                        hostile,
                        &mut pending,
                    )
                    .await;
                }
                finish_batch(&mut w, &mut t, &mut expected, field, &mut pending).await;
                index += 1;
            }
        }
        if state(&w.app).await != expected {
            t.fail("the database differs from what the stored cases left".into());
        }

        // Assert
        let sample = if stride == 1 {
            String::new()
        } else {
            format!(", each field taking 1 input in {stride}")
        };
        println!(
            "injection corpus ({label}): {} inputs × {index} fields{sample} = {} cases; refused {}, stored-and-safe {}, failures {}",
            inputs.len(),
            t.cases,
            t.refused,
            t.stored,
            t.failures.len()
        );
        assert_eq!(t.cases, planned);
        // Every field took at least one input in `stride`.
        assert!(t.cases >= index * (inputs.len() / stride));
        all_failures.extend(t.failures.into_iter().map(|f| format!("[{label}] {f}")));
    }
    for f in all_failures.iter().take(100) {
        eprintln!("FAILURE {f}\n");
    }
    assert!(
        all_failures.is_empty(),
        "{} failures (first 100 above)",
        all_failures.len()
    );
}
