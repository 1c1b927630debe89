//! Issue 6 point 3, the tenant isolation matrix: every endpoint × every method × every kind of
//! caller, asserting the exact status the rules in `src/api/auth.rs` and `src/api/error.rs`
//! give, on every backend; and no response or log line reveals another tenant's data or a
//! secret. Its own test binary, because it installs a process-wide tracing subscriber that
//! captures every event (as `tests/secrets.rs` does).
//!
//! The rules the table encodes, quoted:
//! - "`Unauthorized` (missing, malformed, unknown or revoked token) | 401" (error.rs);
//! - "`Forbidden` (missing scope, missing tenant feature, platform-managed resource) | 403";
//! - "Another tenant's resources answer 404, never 403: their existence is not revealed"
//!   (auth.rs);
//! - a write whose body names another tenant as owner is a 422 on `tenant_id` ("a tenant admin
//!   writes only its own tenant", carriers.rs `owner_for_write`);
//! - tenants and switches are the platform's: a tenant admin reads only its own tenant (no
//!   scope needed, tenants.rs `get_tenant`) and gets 403 on every other tenant or switch
//!   operation it is allowed to know about ("only a platform admin may do this").

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use support::app::TestApp;
use trunkline::access::hash_token;
use trunkline::model::Scope;
use uuid::Uuid;

/// The callers, in the column order of the table.
const PRINCIPALS: [&str; 7] = [
    "no token",
    "malformed token",
    "revoked token",
    "another tenant's admin",
    "own admin without the scope",
    "own admin with the scope",
    "platform admin",
];

/// `(method, path, body, expected status per principal)`. Paths name tenant A's resources:
/// `{tenant}`, `{carrier}`, `{route}`, `{number}`, `{switch}`; `{fresh_*}` is a new resource
/// of that kind made for the one cell (DELETE must find it there). Bodies are valid as they are
/// and name tenant A as the owner.
type Row = (Method, &'static str, Option<&'static str>, [u16; 7]);

fn table() -> Vec<Row> {
    use Method as M;
    vec![
        (
            M::GET,
            "/api/v1/tenants",
            None,
            [401, 401, 401, 200, 200, 200, 200],
        ),
        (
            M::POST,
            "/api/v1/tenants",
            Some("tenant"),
            [401, 401, 401, 403, 403, 403, 201],
        ),
        (
            M::GET,
            "/api/v1/tenants/{tenant}",
            None,
            [401, 401, 401, 404, 200, 200, 200],
        ),
        (
            M::PATCH,
            "/api/v1/tenants/{tenant}",
            Some("tenant_patch"),
            [401, 401, 401, 404, 403, 403, 200],
        ),
        (
            M::GET,
            "/api/v1/carriers",
            None,
            [401, 401, 401, 200, 403, 200, 200],
        ),
        (
            M::POST,
            "/api/v1/carriers",
            Some("carrier"),
            [401, 401, 401, 422, 403, 201, 201],
        ),
        (
            M::GET,
            "/api/v1/carriers/{carrier}",
            None,
            [401, 401, 401, 404, 403, 200, 200],
        ),
        (
            M::PATCH,
            "/api/v1/carriers/{carrier}",
            Some("name_patch"),
            [401, 401, 401, 404, 403, 200, 200],
        ),
        (
            M::DELETE,
            "/api/v1/carriers/{fresh_carrier}",
            None,
            [401, 401, 401, 404, 403, 200, 200],
        ),
        (
            M::GET,
            "/api/v1/carriers/{carrier}/status",
            None,
            [401, 401, 401, 404, 403, 200, 200],
        ),
        (
            M::GET,
            "/api/v1/outbound-routes",
            None,
            [401, 401, 401, 200, 403, 200, 200],
        ),
        (
            M::POST,
            "/api/v1/outbound-routes",
            Some("route"),
            [401, 401, 401, 422, 403, 201, 201],
        ),
        (
            M::GET,
            "/api/v1/outbound-routes/{route}",
            None,
            [401, 401, 401, 404, 403, 200, 200],
        ),
        (
            M::PATCH,
            "/api/v1/outbound-routes/{route}",
            Some("name_patch"),
            [401, 401, 401, 404, 403, 200, 200],
        ),
        (
            M::DELETE,
            "/api/v1/outbound-routes/{fresh_route}",
            None,
            [401, 401, 401, 404, 403, 204, 204],
        ),
        (
            M::GET,
            "/api/v1/phone-numbers",
            None,
            [401, 401, 401, 200, 403, 200, 200],
        ),
        (
            M::POST,
            "/api/v1/phone-numbers",
            Some("number"),
            [401, 401, 401, 422, 403, 201, 201],
        ),
        (
            M::GET,
            "/api/v1/phone-numbers/{number}",
            None,
            [401, 401, 401, 404, 403, 200, 200],
        ),
        (
            M::PATCH,
            "/api/v1/phone-numbers/{number}",
            Some("number_patch"),
            [401, 401, 401, 404, 403, 200, 200],
        ),
        (
            M::DELETE,
            "/api/v1/phone-numbers/{fresh_number}",
            None,
            [401, 401, 401, 404, 403, 204, 204],
        ),
        (
            M::GET,
            "/api/v1/route-preview?destination=%2B15551234567&tenant_id={tenant}",
            None,
            [401, 401, 401, 404, 403, 200, 200],
        ),
        (
            M::GET,
            "/api/v1/switches",
            None,
            [401, 401, 401, 403, 403, 403, 200],
        ),
        (
            M::POST,
            "/api/v1/switches",
            Some("switch"),
            [401, 401, 401, 403, 403, 403, 201],
        ),
        (
            M::GET,
            "/api/v1/switches/{switch}",
            None,
            [401, 401, 401, 403, 403, 403, 200],
        ),
        (
            M::PATCH,
            "/api/v1/switches/{switch}",
            Some("switch_patch"),
            [401, 401, 401, 403, 403, 403, 200],
        ),
        (
            M::DELETE,
            "/api/v1/switches/{fresh_switch}",
            None,
            [401, 401, 401, 403, 403, 403, 204],
        ),
    ]
}

/// The scope a row's operation needs, for the "own admin without the scope" column: that
/// token holds every scope but this one.
fn scope_of(method: &Method, path: &str) -> Option<Scope> {
    let write = *method != Method::GET;
    let resource = path
        .trim_start_matches("/api/v1/")
        .split(['/', '?'])
        .next()?;
    Some(match (resource, write) {
        ("carriers", false) => Scope::CarriersRead,
        ("carriers", true) => Scope::CarriersWrite,
        ("outbound-routes" | "route-preview", false) => Scope::OutboundRoutesRead,
        ("outbound-routes", true) => Scope::OutboundRoutesWrite,
        ("phone-numbers", false) => Scope::PhoneNumbersRead,
        ("phone-numbers", true) => Scope::PhoneNumbersWrite,
        _ => return None,
    })
}

const A_NAME: &str = "Tenant Alpha Confidential";
const A_CARRIER: &str = "Alpha Secret Trunk";
const A_HOST: &str = "sip.alpha-secret.example";
const AUTH_PASSWORD: &str = "Alpha-Auth-Pw-9f3k";
const ESL_PASSWORD: &str = "Esl-Pw-Q7z2x";

/// Tenant A's resources, the tokens, and a counter for unique values.
struct Fixture {
    tenant: Uuid,
    carrier: Uuid,
    route: Uuid,
    number: Uuid,
    switch: Uuid,
    /// Everything of A's that another tenant must never see.
    a_secrets: Vec<String>,
    /// Secrets nobody may see in a response or a log: passwords and every token.
    secrets: Vec<String>,
    counter: u32,
}

fn id(v: &Value) -> Uuid {
    Uuid::parse_str(v["id"].as_str().unwrap()).unwrap()
}

impl Fixture {
    fn body(&mut self, kind: &str) -> Value {
        self.counter += 1;
        let n = self.counter;
        match kind {
            "tenant" => json!({"name": format!("New tenant {n}")}),
            "tenant_patch" => json!({"name": A_NAME}),
            "carrier" => json!({"tenant_id": self.tenant, "name": A_CARRIER, "remote_host": A_HOST,
                                "auth_username": "alpha", "auth_password": AUTH_PASSWORD}),
            "name_patch" => json!({"name": format!("{A_CARRIER} {n}")}),
            "route" => json!({"tenant_id": self.tenant, "name": "Alpha route", "prefix": "+1",
                              "carrier_id": self.carrier}),
            "number" => json!({"tenant_id": self.tenant, "number": format!("+1666{n:07}")}),
            "number_patch" => json!({"capabilities": ["voice", "sms"]}),
            "switch" => json!({"name": format!("iso-sw-{n}"), "esl_host": "127.0.0.1",
                               "esl_password": ESL_PASSWORD, "enabled": false}),
            "switch_patch" => json!({"enabled": false}),
            other => panic!("no body {other}"),
        }
    }

    /// A new resource of `kind` made by the platform admin, for one DELETE cell.
    async fn fresh(&mut self, app: &TestApp, kind: &str) -> Uuid {
        let (path, body) = match kind {
            "fresh_carrier" => ("/api/v1/carriers", self.body("carrier")),
            "fresh_route" => ("/api/v1/outbound-routes", self.body("route")),
            "fresh_number" => ("/api/v1/phone-numbers", self.body("number")),
            "fresh_switch" => ("/api/v1/switches", self.body("switch")),
            other => panic!("no fresh {other}"),
        };
        id(&app.create(path, &app.admin, body).await)
    }

    async fn path(&mut self, app: &TestApp, template: &str) -> String {
        let mut path = template
            .replace("{tenant}", &self.tenant.to_string())
            .replace("{carrier}", &self.carrier.to_string())
            .replace("{route}", &self.route.to_string())
            .replace("{number}", &self.number.to_string())
            .replace("{switch}", &self.switch.to_string());
        for kind in [
            "fresh_carrier",
            "fresh_route",
            "fresh_number",
            "fresh_switch",
        ] {
            let placeholder = format!("{{{kind}}}");
            if path.contains(&placeholder) {
                let fresh = self.fresh(app, kind).await;
                path = path.replace(&placeholder, &fresh.to_string());
            }
        }
        path
    }
}

#[tokio::test]
async fn every_endpoint_method_and_caller_gets_exactly_the_documented_status_and_nothing_leaks() {
    let captured = support::logs::capture_all();
    let mut mismatches = Vec::new();
    let mut leaks = Vec::new();
    let mut all_secrets = Vec::new();
    let rows = table();

    for (label, store) in support::db::backends().await {
        // Arrange: tenant A with a carrier, route, number; tenant B; a switch; the tokens.
        let app = TestApp::start(&label, store).await;
        let admin = app.admin.clone();
        let a = app.tenant(A_NAME, Some("alpha"), true).await;
        let b = app.tenant("Tenant Bravo", Some("bravo"), true).await;
        let a_token = app.tenant_token(a, Scope::ALL).await;
        let b_token = app.tenant_token(b, Scope::ALL).await;
        let revoked = app.tenant_token(a, Scope::ALL).await;
        let found = app
            .store
            .find_token_by_hash(&hash_token(&revoked))
            .await
            .unwrap()
            .unwrap();
        app.store.revoke_token(found.id).await.unwrap();
        let mut f = Fixture {
            tenant: a,
            carrier: Uuid::nil(),
            route: Uuid::nil(),
            number: Uuid::nil(),
            switch: Uuid::nil(),
            a_secrets: vec![],
            secrets: vec![],
            counter: 0,
        };
        let carrier = app
            .create("/api/v1/carriers", &a_token, f.body("carrier"))
            .await;
        f.carrier = id(&carrier);
        f.route = id(&app
            .create("/api/v1/outbound-routes", &a_token, f.body("route"))
            .await);
        f.number = id(&app
            .create("/api/v1/phone-numbers", &a_token, f.body("number"))
            .await);
        f.switch = id(&app
            .create("/api/v1/switches", &admin, f.body("switch"))
            .await);
        f.a_secrets = vec![
            a.to_string(),
            A_NAME.to_string(),
            A_CARRIER.to_string(),
            A_HOST.to_string(),
            f.carrier.to_string(),
            f.route.to_string(),
            f.number.to_string(),
            carrier["gateway_name"].as_str().unwrap().to_string(),
        ];
        f.secrets = vec![
            AUTH_PASSWORD.to_string(),
            ESL_PASSWORD.to_string(),
            admin.clone(),
            a_token.clone(),
            b_token.clone(),
            revoked.clone(),
        ];

        // Act and Assert: every row × every principal.
        let mut cells = 0;
        for (method, template, body_kind, expected) in &rows {
            for (column, principal) in PRINCIPALS.iter().enumerate() {
                let token = match column {
                    0 => None,
                    1 => Some(format!("tl_{}", "z".repeat(64))),
                    2 => Some(revoked.clone()),
                    3 => Some(b_token.clone()),
                    4 => {
                        let scopes: Vec<Scope> = Scope::ALL
                            .iter()
                            .copied()
                            .filter(|s| Some(*s) != scope_of(method, template))
                            .collect();
                        Some(app.tenant_token(a, &scopes).await)
                    }
                    5 => Some(a_token.clone()),
                    _ => Some(admin.clone()),
                };
                if let Some(t) = &token {
                    f.secrets.push(t.clone());
                }
                let path = f.path(&app, template).await;
                let body = body_kind.map(|k| f.body(k));
                let r = app
                    .send(method.clone(), &path, token.as_deref(), body.as_ref())
                    .await;
                cells += 1;
                let cell = format!("[{label}] {method} {template} as {principal}");
                if r.status.as_u16() != expected[column] {
                    mismatches.push(format!(
                        "{cell}: expected {}, got {}: {}",
                        expected[column], r.status, r.text
                    ));
                }
                if expected[column] == 422 && r.error_fields() != ["tenant_id"] {
                    mismatches.push(format!("{cell}: 422 must name tenant_id: {}", r.text));
                }
                if column == 3 {
                    for s in &f.a_secrets {
                        if r.text.contains(s.as_str()) {
                            leaks.push(format!("{cell}: reveals tenant A's {s:?}: {}", r.text));
                        }
                    }
                }
                for s in &f.secrets {
                    if r.text.contains(s.as_str()) {
                        leaks.push(format!("{cell}: a response carries a secret"));
                    }
                }
            }
        }
        println!(
            "isolation matrix ({label}): {} endpoint-methods × {} principals = {cells} cells checked",
            rows.len(),
            PRINCIPALS.len()
        );
        assert!(cells >= 26 * 7, "{cells} cells");
        all_secrets.extend(f.secrets);
    }

    let logs = captured.text();
    assert!(logs.contains("carrier created"), "the capture works");
    for s in &all_secrets {
        if logs.contains(s.as_str()) {
            leaks.push(format!(
                "a log line carries a secret ({} characters)",
                s.len()
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} cells differ from the documented rules:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    assert!(leaks.is_empty(), "{}", leaks.join("\n"));
}
