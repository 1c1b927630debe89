//! The admin REST API over real HTTP, on every database backend (SQLite always, PostgreSQL when
//! `TEST_DATABASE_URL` is set): round trips, pagination, the archive rules, the self-service
//! gate, the cross-tenant matrix, authentication and scopes, and hostile input refused with 422
//! naming the field while the database stays exactly as it was.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::app::{TestApp, on_every_backend};
use trunkline::model::Scope;
use uuid::Uuid;

fn carrier_body(name: &str, gateway: &str) -> Value {
    json!({
        "name": name,
        "gateway_name": gateway,
        "type": "register_trunk",
        "direction": "bidirectional",
        "remote_host": "sip.carrier.example",
        "remote_port": 5080,
        "transport": "tcp",
        "register": true,
        "auth_username": "acct42",
        "auth_password": "s3cret-PASS-9",
        "realm": "sip.carrier.example",
        "from_user": "acct42",
        "from_domain": "carrier.example",
        "caller_id_in_from": true,
        "ping_seconds": 30,
        "inbound_ips": ["203.0.113.10/32", "2001:db8::/64"],
        "strip_prefix": "+",
        "add_prefix": "99",
        "add_suffix": "",
        "tech_headers": {"X-Account": "42"},
        "attestation_header": "X-Attestation",
        "failover_codes": ["503", "6xx"],
        "leg_progress_timeout_seconds": 8
    })
}

async fn platform_carrier(app: &TestApp, gateway: &str) -> Uuid {
    let body = app
        .create(
            "/api/v1/carriers",
            &app.admin,
            json!({"name": gateway, "gateway_name": gateway, "remote_host": "sip.example.net"}),
        )
        .await;
    Uuid::parse_str(body["id"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn every_resource_round_trips_through_the_api() {
    on_every_backend(|app| async move {
        let admin = app.admin.clone();
        // Tenants.
        let tenant = app.tenant("Acme", Some("acme"), true).await;
        let got = app.get(&format!("/api/v1/tenants/{tenant}"), &admin).await;
        assert_eq!(got.status, StatusCode::OK);
        assert_eq!(got.body["name"], "Acme");
        assert_eq!(got.body["context"], "acme");
        assert_eq!(got.body["features"], json!(["self_service_carriers"]));
        let patched = app
            .patch(&format!("/api/v1/tenants/{tenant}"), &admin, json!({"name": "Acme Ltd", "context": null}))
            .await;
        assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
        assert_eq!(patched.body["name"], "Acme Ltd");
        assert_eq!(patched.body["context"], Value::Null);

        // Carriers: every field written comes back, the password only as has_password.
        let mut body = carrier_body("Carrier A", "carrier-a");
        body["tenant_id"] = json!(tenant);
        let created = app.create("/api/v1/carriers", &admin, body.clone()).await;
        let carrier = Uuid::parse_str(created["id"].as_str().unwrap()).unwrap();
        let got = app.get(&format!("/api/v1/carriers/{carrier}"), &admin).await;
        assert_eq!(got.status, StatusCode::OK);
        for (field, value) in body.as_object().unwrap() {
            if field == "auth_password" {
                assert!(got.body.get("auth_password").is_none());
                assert_eq!(got.body["has_password"], true);
            } else {
                assert_eq!(&got.body[field], value, "carrier field {field}");
            }
        }
        assert_eq!(got.body["origin"], "tenant");
        assert_eq!(got.body["status"], "active");
        assert_eq!(got.body["archived_at"], Value::Null);
        // PATCH is RFC 7396 at every depth: a header is added beside the others, and `null`
        // removes just the one it names.
        let patched = app
            .patch(&format!("/api/v1/carriers/{carrier}"), &admin, json!({"remote_port": 5090, "tech_headers": {"X-Tier": "gold"}}))
            .await;
        assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
        assert_eq!(patched.body["remote_port"], 5090);
        assert_eq!(patched.body["tech_headers"], json!({"X-Account": "42", "X-Tier": "gold"}));
        assert_eq!(patched.body["has_password"], true, "a PATCH without the password keeps it");
        let patched = app
            .patch(&format!("/api/v1/carriers/{carrier}"), &admin, json!({"tech_headers": {"X-Account": null}}))
            .await;
        assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
        assert_eq!(patched.body["tech_headers"], json!({"X-Tier": "gold"}));
        assert_eq!(patched.body["remote_port"], 5090, "the rest is kept");

        // A carrier without a gateway name gets one derived from its name.
        let derived = app
            .create("/api/v1/carriers", &admin, json!({"name": "Big Telco", "remote_host": "sip.big.example"}))
            .await;
        let gateway = derived["gateway_name"].as_str().unwrap();
        assert!(gateway.starts_with("big-telco"), "{gateway}");
        assert_eq!(derived["origin"], "platform");

        // Routes.
        let route = app
            .create(
                "/api/v1/outbound-routes",
                &admin,
                json!({"tenant_id": tenant, "name": "UK", "match_type": "prefix", "prefix": "+44",
                       "carrier_id": carrier, "priority": 10, "strip_prefix": "+44", "add_prefix": "0"}),
            )
            .await;
        let route_id = route["id"].as_str().unwrap().to_string();
        assert_eq!(route["enabled"], true);
        let regex = app
            .create(
                "/api/v1/outbound-routes",
                &admin,
                json!({"tenant_id": tenant, "name": "US", "match_type": "regex", "regex": "^1[2-9][0-9]{9}$",
                       "carrier_id": carrier}),
            )
            .await;
        assert_eq!(regex["regex"], "^1[2-9][0-9]{9}$");
        let listed = app
            .get(&format!("/api/v1/outbound-routes?match_type=regex&carrier_id={carrier}"), &admin)
            .await;
        assert_eq!(listed.status, StatusCode::OK);
        assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);
        assert_eq!(listed.body["items"][0]["name"], "US");
        let patched = app
            .patch(&format!("/api/v1/outbound-routes/{route_id}"), &admin, json!({"priority": 5}))
            .await;
        assert_eq!(patched.body["priority"], 5);
        assert_eq!(patched.body["prefix"], "+44");
        let deleted = app.delete(&format!("/api/v1/outbound-routes/{route_id}"), &admin).await;
        assert_eq!(deleted.status, StatusCode::NO_CONTENT);
        let gone = app.get(&format!("/api/v1/outbound-routes/{route_id}"), &admin).await;
        assert_eq!(gone.status, StatusCode::NOT_FOUND);

        // Phone numbers.
        let number = app
            .create(
                "/api/v1/phone-numbers",
                &admin,
                json!({"tenant_id": tenant, "number": "+442071234567", "carrier_id": carrier,
                       "capabilities": ["voice", "sms"]}),
            )
            .await;
        let number_id = number["id"].as_str().unwrap().to_string();
        assert_eq!(number["capabilities"], json!(["voice", "sms"]));
        let listed = app.get(&format!("/api/v1/phone-numbers?carrier_id={carrier}"), &admin).await;
        assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);
        let patched = app
            .patch(&format!("/api/v1/phone-numbers/{number_id}"), &admin, json!({"capabilities": ["fax"], "carrier_id": null}))
            .await;
        assert_eq!(patched.body["capabilities"], json!(["fax"]));
        assert_eq!(patched.body["carrier_id"], Value::Null);
        let deleted = app.delete(&format!("/api/v1/phone-numbers/{number_id}"), &admin).await;
        assert_eq!(deleted.status, StatusCode::NO_CONTENT);
        let gone = app.get(&format!("/api/v1/phone-numbers/{number_id}"), &admin).await;
        assert_eq!(gone.status, StatusCode::NOT_FOUND);
    })
    .await;
}

#[tokio::test]
async fn pagination_is_stable_under_concurrent_inserts() {
    on_every_backend(|app| async move {
        let admin = app.admin.clone();
        let mut originals = Vec::new();
        for i in 0..25 {
            originals.push(app.tenant(&format!("Tenant {i:02}"), None, false).await);
        }
        let mut seen: Vec<Uuid> = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/v1/tenants?limit=10&cursor={c}"),
                None => "/api/v1/tenants?limit=10".to_string(),
            };
            let page = app.get(&path, &admin).await;
            assert_eq!(page.status, StatusCode::OK, "{}", page.text);
            for item in page.body["items"].as_array().unwrap() {
                seen.push(Uuid::parse_str(item["id"].as_str().unwrap()).unwrap());
            }
            pages += 1;
            // Another client inserts while we page.
            let (late_a, late_b) = (format!("Late {pages}a"), format!("Late {pages}b"));
            let (a, b) = tokio::join!(
                app.tenant(&late_a, None, false),
                app.tenant(&late_b, None, false)
            );
            assert_ne!(a, b);
            match page.body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
            assert!(pages < 20, "pagination does not end");
        }
        let mut unique = seen.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), seen.len(), "an item appeared on two pages");
        for id in &originals {
            assert!(seen.contains(id), "tenant {id} was skipped");
        }
        let bad = app.get("/api/v1/tenants?cursor=not-a-cursor", &admin).await;
        assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(bad.error_fields(), ["cursor"]);
    })
    .await;
}

#[tokio::test]
async fn archiving_or_disabling_a_carrier_that_enabled_routes_use_is_refused_naming_them() {
    on_every_backend(|app| async move {
        let admin = app.admin.clone();
        let carrier = platform_carrier(&app, "busy-gw").await;
        let route = app
            .create(
                "/api/v1/outbound-routes",
                &admin,
                json!({"name": "Everything", "prefix": "all", "carrier_id": carrier}),
            )
            .await;
        let route_id = route["id"].as_str().unwrap();

        let refused = app
            .delete(&format!("/api/v1/carriers/{carrier}"), &admin)
            .await;
        assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.text);
        assert!(refused.text.contains(route_id) && refused.text.contains("Everything"));
        let refused = app
            .patch(
                &format!("/api/v1/carriers/{carrier}"),
                &admin,
                json!({"status": "disabled"}),
            )
            .await;
        assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.text);
        let still = app
            .get(&format!("/api/v1/carriers/{carrier}"), &admin)
            .await;
        assert_eq!(still.body["status"], "active");

        // Once the route is disabled the carrier can be archived; the row stays.
        let disabled = app
            .patch(
                &format!("/api/v1/outbound-routes/{route_id}"),
                &admin,
                json!({"enabled": false}),
            )
            .await;
        assert_eq!(disabled.status, StatusCode::OK);
        let archived = app
            .delete(&format!("/api/v1/carriers/{carrier}"), &admin)
            .await;
        assert_eq!(archived.status, StatusCode::OK, "{}", archived.text);
        assert_eq!(archived.body["status"], "archived");
        assert!(archived.body["archived_at"].is_string());
        let listed = app.get("/api/v1/carriers", &admin).await;
        assert!(
            listed.body["items"].as_array().unwrap().is_empty(),
            "archived carriers are not listed by default"
        );
        let listed = app.get("/api/v1/carriers?status=archived", &admin).await;
        assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);
        // An archived carrier cannot be routed to again.
        let refused = app
            .patch(
                &format!("/api/v1/outbound-routes/{route_id}"),
                &admin,
                json!({"enabled": true}),
            )
            .await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            refused.text
        );
        assert_eq!(refused.error_fields(), ["carrier_id"]);
    })
    .await;
}

#[tokio::test]
async fn tenants_create_carriers_and_routes_only_with_the_feature_and_the_write_scope() {
    on_every_backend(|app| async move {
        let without = app.tenant("No self service", None, false).await;
        let with = app.tenant("Self service", None, true).await;
        let all = Scope::ALL;
        let read_only = [Scope::CarriersRead, Scope::OutboundRoutesRead];
        let body = json!({"name": "Own", "remote_host": "sip.own.example"});

        let token = app.tenant_token(without, all).await;
        let r = app.post("/api/v1/carriers", &token, body.clone()).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        let token = app.tenant_token(with, &read_only).await;
        let r = app.post("/api/v1/carriers", &token, body.clone()).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);

        let token = app.tenant_token(with, all).await;
        let own = app.create("/api/v1/carriers", &token, body.clone()).await;
        assert_eq!(own["tenant_id"], json!(with));
        assert_eq!(own["origin"], "tenant");
        // A tenant route may use its own carrier or a platform carrier...
        let platform = platform_carrier(&app, "platform-gw").await;
        for carrier in [own["id"].clone(), json!(platform)] {
            app.create(
                "/api/v1/outbound-routes",
                &token,
                json!({"name": "r", "prefix": "+1", "carrier_id": carrier}),
            )
            .await;
        }
        // ...never another tenant's, and it cannot write a platform route or carrier.
        let other = app.tenant("Other", None, true).await;
        let other_token = app.tenant_token(other, all).await;
        let foreign = app
            .create("/api/v1/carriers", &other_token, body.clone())
            .await;
        let r = app
            .post(
                "/api/v1/outbound-routes",
                &token,
                json!({"name": "r", "prefix": "+1", "carrier_id": foreign["id"]}),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        assert_eq!(r.error_fields(), ["carrier_id"]);
        let r = app
            .patch(
                &format!("/api/v1/carriers/{platform}"),
                &token,
                json!({"remote_port": 5070}),
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        let r = app
            .post("/api/v1/tenants", &token, json!({"name": "Sneaky"}))
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    })
    .await;
}

#[tokio::test]
async fn another_tenants_resources_answer_404_on_every_endpoint() {
    on_every_backend(|app| async move {
        let admin = app.admin.clone();
        let a = app.tenant("A", Some("tenant_a"), true).await;
        let b = app.tenant("B", None, true).await;
        let a_token = app.tenant_token(a, Scope::ALL).await;
        let b_token = app.tenant_token(b, Scope::ALL).await;
        let carrier = app
            .create(
                "/api/v1/carriers",
                &a_token,
                json!({"name": "A gw", "remote_host": "sip.a.example"}),
            )
            .await["id"]
            .clone();
        let route = app
            .create(
                "/api/v1/outbound-routes",
                &a_token,
                json!({"name": "A r", "prefix": "+1", "carrier_id": carrier}),
            )
            .await["id"]
            .clone();
        let number = app
            .create(
                "/api/v1/phone-numbers",
                &a_token,
                json!({"number": "+15550001111", "capabilities": ["voice"]}),
            )
            .await["id"]
            .clone();
        let (carrier, route, number) = (
            carrier.as_str().unwrap().to_string(),
            route.as_str().unwrap().to_string(),
            number.as_str().unwrap().to_string(),
        );
        let cases: Vec<(reqwest::Method, String, Option<Value>)> = vec![
            (
                reqwest::Method::GET,
                format!("/api/v1/carriers/{carrier}"),
                None,
            ),
            (
                reqwest::Method::PATCH,
                format!("/api/v1/carriers/{carrier}"),
                Some(json!({"name": "x"})),
            ),
            (
                reqwest::Method::DELETE,
                format!("/api/v1/carriers/{carrier}"),
                None,
            ),
            (
                reqwest::Method::GET,
                format!("/api/v1/outbound-routes/{route}"),
                None,
            ),
            (
                reqwest::Method::PATCH,
                format!("/api/v1/outbound-routes/{route}"),
                Some(json!({"name": "x"})),
            ),
            (
                reqwest::Method::DELETE,
                format!("/api/v1/outbound-routes/{route}"),
                None,
            ),
            (
                reqwest::Method::GET,
                format!("/api/v1/phone-numbers/{number}"),
                None,
            ),
            (
                reqwest::Method::PATCH,
                format!("/api/v1/phone-numbers/{number}"),
                Some(json!({"capabilities": []})),
            ),
            (
                reqwest::Method::DELETE,
                format!("/api/v1/phone-numbers/{number}"),
                None,
            ),
            (reqwest::Method::GET, format!("/api/v1/tenants/{a}"), None),
            (
                reqwest::Method::PATCH,
                format!("/api/v1/tenants/{a}"),
                Some(json!({"name": "x"})),
            ),
            (
                reqwest::Method::GET,
                format!("/api/v1/carriers?tenant_id={a}"),
                None,
            ),
            (
                reqwest::Method::GET,
                format!("/api/v1/outbound-routes?tenant_id={a}"),
                None,
            ),
            (
                reqwest::Method::GET,
                format!("/api/v1/phone-numbers?tenant_id={a}"),
                None,
            ),
            (
                reqwest::Method::GET,
                format!("/api/v1/route-preview?destination=%2B15551234567&tenant_id={a}"),
                None,
            ),
        ];
        let before = app.store.load_dataset().await.unwrap();
        for (method, path, body) in &cases {
            let r = app
                .send(method.clone(), path, Some(&b_token), body.as_ref())
                .await;
            assert_eq!(
                r.status,
                StatusCode::NOT_FOUND,
                "{method} {path}: {}",
                r.text
            );
            assert!(!r.text.contains("A gw") && !r.text.contains("sip.a.example"));
        }
        // Forcing another tenant's carrier in route preview does not reveal it either.
        let r = app
            .get(
                &format!("/api/v1/route-preview?destination=%2B15551234567&carrier_id={carrier}"),
                &b_token,
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        assert_eq!(r.error_fields(), ["carrier_id"]);
        // B's lists do not contain A's rows.
        for path in [
            "/api/v1/carriers",
            "/api/v1/outbound-routes",
            "/api/v1/phone-numbers",
            "/api/v1/tenants",
        ] {
            let r = app.get(path, &b_token).await;
            assert_eq!(r.status, StatusCode::OK);
            assert!(
                !r.text.contains(&carrier)
                    && !r.text.contains(&route)
                    && !r.text.contains(&number)
                    && !r.text.contains(&a.to_string()),
                "{path}: {}",
                r.text
            );
        }
        assert_eq!(
            app.store.load_dataset().await.unwrap().version,
            before.version,
            "nothing changed"
        );
        // The platform admin still sees everything.
        assert_eq!(
            app.get(&format!("/api/v1/carriers/{carrier}"), &admin)
                .await
                .status,
            StatusCode::OK
        );
    })
    .await;
}

#[tokio::test]
async fn missing_bad_or_revoked_tokens_answer_401_and_missing_scopes_403() {
    on_every_backend(|app| async move {
        let r = app
            .send(reqwest::Method::GET, "/api/v1/carriers", None, None)
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.body["errors"][0]["field"], Value::Null);
        let bogus = format!("tl_{}", "0".repeat(64));
        for token in ["nonsense", bogus.as_str()] {
            assert_eq!(
                app.get("/api/v1/carriers", token).await.status,
                StatusCode::UNAUTHORIZED
            );
        }
        let tenant = app.tenant("T", None, true).await;
        let token = app.tenant_token(tenant, &[Scope::CarriersRead]).await;
        assert_eq!(
            app.get("/api/v1/carriers", &token).await.status,
            StatusCode::OK
        );
        assert_eq!(
            app.get("/api/v1/outbound-routes", &token).await.status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            app.get("/api/v1/phone-numbers", &token).await.status,
            StatusCode::FORBIDDEN
        );
        let found = app
            .store
            .find_token_by_hash(&trunkline::access::hash_token(&token))
            .await
            .unwrap()
            .unwrap();
        app.store.revoke_token(found.id).await.unwrap();
        assert_eq!(
            app.get("/api/v1/carriers", &token).await.status,
            StatusCode::UNAUTHORIZED
        );
    })
    .await;
}

/// `(path, body, field)`: each body is valid except for one hostile value in `field`.
/// An error names `field` itself or an element or member of it (`inbound_ips[0]`).
fn names_field(reported: &str, field: &str) -> bool {
    reported == field
        || reported
            .strip_prefix(field)
            .is_some_and(|rest| rest.starts_with('[') || rest.starts_with('.'))
}

fn hostile_cases(carrier: &str, tenant: Uuid) -> Vec<(&'static str, Value, &'static str)> {
    let carrier_with = |field: &str, value: Value| {
        let mut body = json!({"name": "Hostile", "remote_host": "sip.ok.example"});
        body[field] = value;
        body
    };
    let route_with = |field: &str, value: Value| {
        let mut body = json!({"name": "Hostile", "prefix": "+1", "carrier_id": carrier});
        body[field] = value;
        body
    };
    vec![
        (
            "/api/v1/carriers",
            carrier_with("gateway_name", json!("${system id}")),
            "gateway_name",
        ),
        (
            "/api/v1/carriers",
            carrier_with("gateway_name", json!("a|b")),
            "gateway_name",
        ),
        (
            "/api/v1/carriers",
            carrier_with("remote_host", json!("x\r\nY: z")),
            "remote_host",
        ),
        (
            "/api/v1/carriers",
            carrier_with("remote_host", json!("evil.example;transport=tcp")),
            "remote_host",
        ),
        (
            "/api/v1/carriers",
            carrier_with("remote_port", json!(70000)),
            "remote_port",
        ),
        (
            "/api/v1/carriers",
            carrier_with("profile", json!("<external>")),
            "profile",
        ),
        (
            "/api/v1/carriers",
            carrier_with("auth_username", json!("a@b")),
            "auth_username",
        ),
        (
            "/api/v1/carriers",
            carrier_with("auth_password", json!("${system id}")),
            "auth_password",
        ),
        (
            "/api/v1/carriers",
            carrier_with("from_domain", json!("a,b")),
            "from_domain",
        ),
        (
            "/api/v1/carriers",
            carrier_with("inbound_ips", json!(["10.0.0.0/33"])),
            "inbound_ips",
        ),
        (
            "/api/v1/carriers",
            carrier_with("inbound_ips", json!(["0.0.0.0/0"])),
            "inbound_ips",
        ),
        (
            "/api/v1/carriers",
            carrier_with("add_prefix", json!("1|sofia/gateway/x/")),
            "add_prefix",
        ),
        (
            "/api/v1/carriers",
            carrier_with("tech_headers", json!({"X-Ok": "x\r\nVia: evil"})),
            "tech_headers",
        ),
        (
            "/api/v1/carriers",
            carrier_with("tech_headers", json!({"X-A,b": "1"})),
            "tech_headers",
        ),
        (
            "/api/v1/carriers",
            carrier_with("tech_headers", json!({"X-Ok": "${system id}"})),
            "tech_headers",
        ),
        (
            "/api/v1/carriers",
            carrier_with("attestation_header", json!("X-Att]")),
            "attestation_header",
        ),
        (
            "/api/v1/carriers",
            carrier_with("failover_codes", json!(["486,api_on_answer=system"])),
            "failover_codes",
        ),
        (
            "/api/v1/carriers",
            carrier_with("ping_seconds", json!(2)),
            "ping_seconds",
        ),
        (
            "/api/v1/carriers",
            carrier_with("colour", json!("red")),
            "colour",
        ),
        (
            "/api/v1/outbound-routes",
            route_with("prefix", json!("1@evil.example")),
            "prefix",
        ),
        (
            "/api/v1/outbound-routes",
            route_with("prefix", json!("<")),
            "prefix",
        ),
        (
            "/api/v1/outbound-routes",
            route_with("add_prefix", json!("[x]")),
            "add_prefix",
        ),
        (
            "/api/v1/outbound-routes",
            route_with("name", json!("")),
            "name",
        ),
        (
            "/api/v1/outbound-routes",
            json!({"name": "r", "match_type": "regex", "regex": "^(a|b)$", "carrier_id": carrier}),
            "regex",
        ),
        (
            "/api/v1/outbound-routes",
            json!({"name": "r", "match_type": "regex", "regex": "[0-9]{1000}{1000}", "carrier_id": carrier}),
            "regex",
        ),
        (
            "/api/v1/phone-numbers",
            json!({"tenant_id": tenant, "number": "+1${x}"}),
            "number",
        ),
        (
            "/api/v1/phone-numbers",
            json!({"tenant_id": tenant, "number": "15551234567"}),
            "number",
        ),
        (
            "/api/v1/phone-numbers",
            json!({"tenant_id": tenant, "number": "+15551234567", "capabilities": ["telepathy"]}),
            "capabilities",
        ),
        (
            "/api/v1/tenants",
            json!({"name": "T", "context": "a b"}),
            "context",
        ),
        (
            "/api/v1/tenants",
            json!({"name": "T", "context": "trunkline"}),
            "context",
        ),
        (
            "/api/v1/tenants",
            json!({"name": "T", "features": ["root"]}),
            "features",
        ),
    ]
}

#[tokio::test]
async fn hostile_values_are_refused_with_422_naming_the_field_and_change_nothing() {
    on_every_backend(|app| async move {
        let admin = app.admin.clone();
        let tenant = app.tenant("T", Some("tctx"), true).await;
        let carrier = platform_carrier(&app, "good-gw").await.to_string();
        let before = app.store.load_dataset().await.unwrap();
        let numbers_before = app.get("/api/v1/phone-numbers", &admin).await.body;
        for (path, body, field) in hostile_cases(&carrier, tenant) {
            let r = app.post(path, &admin, body.clone()).await;
            assert_eq!(
                r.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{path} {body}: {}",
                r.text
            );
            assert!(
                r.error_fields().iter().any(|f| names_field(f, field)),
                "{path} {body}: expected {field}, got {}",
                r.text
            );
        }
        // The same values through PATCH.
        let r = app
            .patch(
                &format!("/api/v1/carriers/{carrier}"),
                &admin,
                json!({"remote_host": "x\r\nY: z"}),
            )
            .await;
        assert_eq!(r.error_fields(), ["remote_host"], "{}", r.text);
        let after = app.store.load_dataset().await.unwrap();
        assert_eq!(after.version, before.version);
        assert_eq!(after.carriers, before.carriers);
        assert_eq!(after.routes, before.routes);
        assert_eq!(after.tenants, before.tenants);
        assert_eq!(
            app.get("/api/v1/phone-numbers", &admin).await.body,
            numbers_before
        );

        // Duplicates are 409 naming the field.
        let r = app
            .post(
                "/api/v1/carriers",
                &admin,
                json!({"name": "Again", "gateway_name": "good-gw", "remote_host": "h.example"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
        assert_eq!(r.error_fields(), ["gateway_name"]);
        let r = app
            .post(
                "/api/v1/tenants",
                &admin,
                json!({"name": "U", "context": "tctx"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
        assert_eq!(r.error_fields(), ["context"]);
        assert_eq!(
            app.store.load_dataset().await.unwrap().version,
            before.version
        );
    })
    .await;
}

#[tokio::test]
async fn health_readiness_metrics_and_the_openapi_document_are_served() {
    on_every_backend(|app| async move {
        let get = |path: &'static str| app.send(reqwest::Method::GET, path, None, None);
        assert_eq!(get("/healthz").await.status, StatusCode::OK);
        assert_eq!(get("/readyz").await.status, StatusCode::OK);
        // The counter moves by what this test did (the recorder is shared by every test of
        // the binary, so other tests can only add to it).
        let acl_fetches = || async {
            support::app::metric_value(
                &app.metrics().await,
                "trunkline_xmlcurl_requests_total",
                &["section=\"acl.conf\"", "outcome=\"document\""],
            )
        };
        let before = acl_fetches().await;
        for _ in 0..3 {
            let (status, _) = app.fetch(support::app::config_body("acl.conf", None)).await;
            assert_eq!(status, StatusCode::OK);
        }
        let after = acl_fetches().await;
        assert!(
            after >= before + 3.0,
            "acl.conf fetches counted: {before} → {after}"
        );
        let doc = get("/api/openapi.json").await;
        assert_eq!(doc.status, StatusCode::OK);
        for path in [
            "/api/v1/carriers",
            "/api/v1/carriers/{id}",
            "/api/v1/outbound-routes",
            "/api/v1/outbound-routes/{id}",
            "/api/v1/phone-numbers",
            "/api/v1/phone-numbers/{id}",
            "/api/v1/tenants",
            "/api/v1/tenants/{id}",
            "/api/v1/route-preview",
        ] {
            assert!(
                doc.body["paths"].get(path).is_some(),
                "openapi lacks {path}"
            );
        }
        assert_eq!(
            doc.body["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        let unknown = get("/api/v1/nothing-here").await;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND);
        assert!(unknown.body["errors"].is_array());
    })
    .await;
}

/// The property names an OpenAPI schema describes, through `allOf` and `$ref`.
fn documented(doc: &Value, schema: &Value) -> Vec<String> {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap();
        return documented(doc, &doc["components"]["schemas"][name]);
    }
    let mut names: Vec<String> = schema["properties"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    for part in schema["allOf"].as_array().into_iter().flatten() {
        names.extend(documented(doc, part));
    }
    names
}

#[tokio::test]
async fn the_openapi_document_describes_every_field_a_carrier_or_a_route_is_written_and_shown_with()
{
    on_every_backend(|app| async move {
        let carrier = app
            .create(
                "/api/v1/carriers",
                &app.admin,
                carrier_body("Doc", "doc-gw"),
            )
            .await;
        let route = app
            .create(
                "/api/v1/outbound-routes",
                &app.admin,
                json!({"name": "UK", "prefix": "+44", "carrier_id": carrier["id"]}),
            )
            .await;
        let doc = app
            .send(reqwest::Method::GET, "/api/openapi.json", None, None)
            .await
            .body;
        let schema = |name: &str| documented(&doc, &doc["components"]["schemas"][name]);
        for (written, shown, body, view) in [
            (
                carrier_body("Doc", "doc-gw"),
                &carrier,
                "CarrierBody",
                "CarrierView",
            ),
            (
                json!({"name": "UK", "prefix": "+44"}),
                &route,
                "RouteBody",
                "RouteView",
            ),
        ] {
            let (body, view) = (schema(body), schema(view));
            for field in written.as_object().unwrap().keys() {
                assert!(
                    body.contains(field),
                    "the request schema lacks {field}: {body:?}"
                );
            }
            for field in shown.as_object().unwrap().keys() {
                assert!(
                    view.contains(field),
                    "the response schema lacks {field}: {view:?}"
                );
            }
        }
    })
    .await;
}

#[tokio::test]
async fn routing_criteria_round_trip_and_impossible_ones_are_refused_naming_the_field() {
    on_every_backend(|app| async move {
        let admin = app.admin.clone();
        let carrier = app
            .create(
                "/api/v1/carriers",
                &admin,
                json!({"name": "Priced", "gateway_name": "priced", "remote_host": "sip.example.net",
                       "cost": {"rate": "0.0125", "currency": "USD"}}),
            )
            .await;
        assert_eq!(carrier["cost"], json!({"rate": "0.0125", "currency": "USD"}));
        let carrier_id = carrier["id"].as_str().unwrap().to_string();
        let tenant = app.tenant("Capped", None, false).await;
        let capped = app
            .patch(
                &format!("/api/v1/tenants/{tenant}"),
                &admin,
                json!({"max_cost": {"rate": "0.05"}}),
            )
            .await;
        assert_eq!(capped.status, StatusCode::OK, "{}", capped.text);
        assert_eq!(capped.body["max_cost"], json!({"rate": "0.05", "currency": "USD"}));

        let schedule = json!({"time_zone": "Europe/Berlin", "windows": [
            {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00", "end": "18:00"},
            {"days": ["sat"], "start": "22:00", "end": "24:00"}]});
        let criteria = json!({"schedule": schedule, "cost": {"rate": "0.000001", "currency": "USD"},
            "weight": 70, "caller_prefix": "+4930", "caller_regex": "^49(30|40)[0-9]+$"});
        let mut body = json!({"name": "Berlin office hours", "prefix": "+49", "carrier_id": carrier_id});
        body.as_object_mut()
            .unwrap()
            .extend(criteria.as_object().unwrap().clone());
        let created = app.create("/api/v1/outbound-routes", &admin, body).await;
        let id = created["id"].as_str().unwrap().to_string();
        for (k, v) in criteria.as_object().unwrap() {
            assert_eq!(&created[k], v, "{k}");
        }
        let fetched = app.get(&format!("/api/v1/outbound-routes/{id}"), &admin).await;
        assert_eq!(fetched.body, created);
        let listed = app.get("/api/v1/outbound-routes", &admin).await;
        assert_eq!(listed.body["items"][0]["schedule"], schedule, "{}", listed.text);
        // A merge patch changes one criterion and clears another; the rest stays.
        let patched = app
            .patch(
                &format!("/api/v1/outbound-routes/{id}"),
                &admin,
                json!({"weight": 0, "schedule": null}),
            )
            .await;
        assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
        assert_eq!(patched.body["weight"], 0);
        assert!(patched.body["schedule"].is_null());
        assert_eq!(patched.body["caller_regex"], criteria["caller_regex"]);
        assert_eq!(patched.body["cost"], criteria["cost"]);

        let bad_window = json!({"time_zone": "UTC", "windows": [
            {"days": ["mon"], "start": "08:00", "end": "09:00"},
            {"days": ["mon"], "start": "10:00", "end": "10:00"}]});
        let cases = [
            (json!({"schedule": {"time_zone": "Mars/Olympus", "windows": []}}), "schedule.time_zone"),
            (json!({"schedule": bad_window}), "schedule.windows[1].end"),
            (json!({"schedule": {"time_zone": "UTC", "windows": [{"days": ["someday"], "start": "08:00", "end": "09:00"}]}}), "schedule.windows[0].days[0]"),
            (json!({"cost": {"rate": "0.01", "currency": "EUR"}}), "cost.currency"),
            (json!({"cost": {"rate": "0.0000001"}}), "cost.rate"),
            (json!({"cost": {"rate": "-1"}}), "cost.rate"),
            (json!({"weight": 10001}), "weight"),
            (json!({"weight": -1}), "weight"),
            (json!({"caller_prefix": "49*"}), "caller_prefix"),
            (json!({"caller_regex": "(?i)a"}), "caller_regex"),
        ];
        for (change, field) in cases {
            let mut body = json!({"name": "bad", "prefix": "+49", "carrier_id": carrier_id});
            body.as_object_mut()
                .unwrap()
                .extend(change.as_object().unwrap().clone());
            let r = app.post("/api/v1/outbound-routes", &admin, body).await;
            assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {}", r.text);
            assert_eq!(r.error_fields(), [field], "{}", r.text);
        }
        let r = app
            .patch(
                &format!("/api/v1/carriers/{carrier_id}"),
                &admin,
                json!({"cost": {"rate": "1", "currency": "GBP"}}),
            )
            .await;
        assert_eq!((r.status, r.error_fields()), (StatusCode::UNPROCESSABLE_ENTITY, vec!["cost.currency".to_string()]));
        let r = app
            .patch(
                &format!("/api/v1/tenants/{tenant}"),
                &admin,
                json!({"max_cost": {"rate": "lots"}}),
            )
            .await;
        assert_eq!((r.status, r.error_fields()), (StatusCode::UNPROCESSABLE_ENTITY, vec!["max_cost.rate".to_string()]));
        // Nothing refused was stored.
        let unchanged = app.get(&format!("/api/v1/outbound-routes/{id}"), &admin).await;
        assert_eq!(unchanged.body, patched.body);
        let listed = app.get("/api/v1/outbound-routes", &admin).await;
        assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn a_tls_carrier_needs_a_profile_with_tls_and_is_refused_on_one_without() {
    // The built-in `external` profile, and `secure`: the same with tls=true.
    let dir = tempfile::tempdir().unwrap();
    let exported = trunkline::publish::export_templates(dir.path()).unwrap();
    assert!(!exported.is_empty());
    let external = std::fs::read_to_string(dir.path().join("sofia/external.xml")).unwrap();
    std::fs::write(
        dir.path().join("sofia/secure.xml"),
        external.replace(
            "<settings>",
            "<settings>\n  <param name=\"tls\" value=\"true\"/>",
        ),
    )
    .unwrap();
    let mut settings = support::app::test_settings();
    settings.templates = trunkline::publish::TemplateSource::Directory(dir.path().to_path_buf());
    let (label, store) = support::db::backends().await.remove(0);
    let app = TestApp::start_with(&label, store, settings).await;
    let tls = |gateway: &str, profile: &str| {
        json!({"name": gateway, "gateway_name": gateway, "remote_host": "sip.tls.example",
               "transport": "tls", "profile": profile})
    };

    let refused = app
        .post("/api/v1/carriers", &app.admin, tls("plain", "external"))
        .await;
    refused.assert_refused_on("transport");
    assert!(refused.text.contains("tls=true"), "{}", refused.text);
    let listed = app.get("/api/v1/carriers", &app.admin).await;
    assert_eq!(
        listed.body["items"].as_array().map(Vec::len),
        Some(0),
        "{}",
        listed.text
    );

    let secure = app
        .create("/api/v1/carriers", &app.admin, tls("secure-gw", "secure"))
        .await;
    let moved = app
        .patch(
            &format!("/api/v1/carriers/{}", secure["id"].as_str().unwrap()),
            &app.admin,
            json!({"profile": "external"}),
        )
        .await;
    moved.assert_refused_on("transport");
    let (_, sofia) = app
        .fetch(support::app::config_body("sofia.conf", None))
        .await;
    assert!(sofia.contains("<gateway name=\"secure-gw\">"), "{sofia}");
}

#[tokio::test]
async fn caller_id_settings_are_validated_and_number_writes_reach_the_very_next_fetch() {
    on_every_backend(|app| async move {
        let admin = app.admin.clone();
        // Refused, naming the field, and nothing stored.
        let refused = app
            .post(
                "/api/v1/tenants",
                &admin,
                json!({"name": "Acme", "caller_id_policy": {"foreign": "replace"}}),
            )
            .await;
        refused.assert_refused_on("caller_id_policy.default_number");
        for (policy, field) in [
            (json!({"allow": "mine"}), "caller_id_policy.allow"),
            (
                json!({"default_number": "${x}"}),
                "caller_id_policy.default_number",
            ),
            (json!({"extra": 1}), "caller_id_policy.extra"),
            (
                json!({"default_name": "Evil\" <sip:x@evil>"}),
                "caller_id_policy.default_name",
            ),
            (
                json!({"default_name": "${system id}"}),
                "caller_id_policy.default_name",
            ),
            (
                json!({"default_name": "n".repeat(49)}),
                "caller_id_policy.default_name",
            ),
            (
                json!({"default_name": "Front\r\nX-Evil: 1"}),
                "caller_id_policy.default_name",
            ),
        ] {
            app.post(
                "/api/v1/tenants",
                &admin,
                json!({"name": "Acme", "caller_id_policy": policy}),
            )
            .await
            .assert_refused_on(field);
        }
        for (format, field) in [
            (json!({"format": "national"}), "caller_id.country_code"),
            (json!({"privacy": true}), "caller_id.privacy"),
            (
                json!({"format": "national", "country_code": "0"}),
                "caller_id.country_code",
            ),
            (
                json!({"national_prefix": "0|1"}),
                "caller_id.national_prefix",
            ),
            (json!({"name": "strip"}), "caller_id.name"),
        ] {
            app.post(
                "/api/v1/carriers",
                &admin,
                json!({"name": "A", "remote_host": "sip.a.example", "caller_id": format}),
            )
            .await
            .assert_refused_on(field);
        }
        assert!(
            app.store.load_dataset().await.unwrap().tenants.is_empty(),
            "nothing stored"
        );

        // A tenant allowing only its own numbers, a carrier with an attestation header.
        let tenant = app
            .create(
                "/api/v1/tenants",
                &admin,
                json!({"name": "Acme", "caller_id_policy": {"allow": "own_numbers"}}),
            )
            .await;
        assert_eq!(
            tenant["caller_id_policy"],
            json!({"allow": "own_numbers", "foreign": "refuse", "default_number": null, "default_name": null})
        );
        let tenant_id = Uuid::parse_str(tenant["id"].as_str().unwrap()).unwrap();
        app.platform_carrier("alpha", json!({"attestation_header": "X-Attestation"}))
            .await;
        let alpha = app.store.load_dataset().await.unwrap().carriers[0].id;
        app.create(
            "/api/v1/outbound-routes",
            &admin,
            json!({"name": "All", "prefix": "all", "carrier_id": alpha}),
        )
        .await;
        let fetch = |caller: &'static str| {
            support::app::dialplan_body(&[
                ("Caller-Caller-ID-Number", Some(caller)),
                (
                    "variable_trunkline_tenant_id",
                    Some(tenant["id"].as_str().unwrap()),
                ),
                ("variable_trunkline_attestation", None),
            ])
        };
        // Not its number yet: refused.
        let (_, xml) = app.fetch(fetch("+14155550100")).await;
        assert!(xml.contains("CALL_REJECTED"), "{xml}");
        // The number written: the very next fetch keeps it, with attestation A.
        let number = app
            .create(
                "/api/v1/phone-numbers",
                &admin,
                json!({"tenant_id": tenant_id, "number": "+14155550100"}),
            )
            .await;
        let (_, xml) = app.fetch(fetch("+14155550100")).await;
        let legs = support::app::bridges(&xml);
        assert_eq!(legs.len(), 1, "{xml}");
        assert!(
            legs[0].contains("origination_caller_id_number=+14155550100")
                && legs[0].contains("sip_h_X-Attestation=A"),
            "{legs:?}"
        );
        // SMS only: no longer a caller ID it may present.
        let reply = app
            .patch(
                &format!("/api/v1/phone-numbers/{}", number["id"].as_str().unwrap()),
                &admin,
                json!({"capabilities": ["sms"]}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        let (_, xml) = app.fetch(fetch("+14155550100")).await;
        assert!(xml.contains("CALL_REJECTED"), "{xml}");
    })
    .await;
}

#[tokio::test]
async fn metrics_answer_a_platform_token_only_and_the_scrape_token_reads_nothing_else() {
    on_every_backend(|app| async move {
        // Arrange: a carrier whose gateway name /metrics would carry, and every kind of caller.
        let tenant = app.tenant("Acme", None, true).await;
        let scrape = support::app::create_token(
            &app.store,
            trunkline::model::Role::Admin,
            None,
            &[Scope::MetricsRead],
        )
        .await;
        let tenant_token = app.tenant_token(tenant, Scope::ALL).await;
        // One fetch, so that the scrape has a series to show.
        let (status, _) = app
            .fetch(
                "section=configuration&tag_name=configuration&key_name=name&key_value=acl.conf"
                    .into(),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let get = |token: Option<String>| {
            let app = &app;
            async move {
                let mut request = app.client.get(format!("{}/metrics", app.base));
                if let Some(token) = token {
                    request = request.header("authorization", format!("Bearer {token}"));
                }
                request.send().await.unwrap()
            }
        };

        // Act + Assert: anonymous is 401 with the Bearer challenge, a tenant's token 403
        // whatever its scopes, and the scrape token (as Prometheus sends it) reads the figures.
        let anonymous = get(None).await;
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
        assert!(!anonymous.text().await.unwrap().contains("trunkline_"));
        assert_eq!(
            get(Some(tenant_token)).await.status(),
            StatusCode::FORBIDDEN
        );
        let scraped = get(Some(scrape.clone())).await;
        assert_eq!(scraped.status(), StatusCode::OK);
        assert!(
            scraped
                .text()
                .await
                .unwrap()
                .contains("trunkline_xmlcurl_requests_total")
        );
        // The scrape token is good for nothing else.
        let carriers = app.get("/api/v1/carriers", &scrape).await;
        assert_eq!(carriers.status, StatusCode::FORBIDDEN, "{}", carriers.text);
    })
    .await;
}
