//! VoIPBIN's Provider and Route API (`/v1.0`) over real HTTP, on every database backend: the
//! requests of VoIPBIN's documentation replayed as its clients send them (`?token=`), the
//! documented response shapes, VoIPBIN's paging, the same carriers and routes as `/api/v1`
//! (a provider becomes a gateway in sofia.conf, a route bridges a call), tenant isolation,
//! errors naming VoIPBIN's fields with its status codes, a query-string token or access key
//! that reaches no log line, the `vn` client's requests (`?accesskey=`), and every answer
//! checked against VoIPBIN's published schemas.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::app::{Reply, TestApp, bridges, call, config_body, on_every_backend};
use trunkline::model::Scope;
use uuid::Uuid;

const PLATFORM: &str = "00000000-0000-0000-0000-000000000001";
const NOT_YET: &str = "9999-01-01 00:00:00.000000";

/// A request as a VoIPBIN client sends it: the token in the query string, no header.
async fn voipbin(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Reply {
    voipbin_as(app, method, path, "token", token, body).await
}

/// A request with its credential in the query parameter `param` (`token` or `accesskey`).
async fn voipbin_as(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    param: &str,
    credential: &str,
    body: Option<Value>,
) -> Reply {
    let separator = if path.contains('?') { '&' } else { '?' };
    let mut request = app.client.request(
        method,
        format!("{}{path}{separator}{param}={credential}", app.base),
    );
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request sent");
    let status = response.status();
    let text = response.text().await.expect("body read");
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply { status, body, text }
}

async fn get(app: &TestApp, path: &str, token: &str) -> Reply {
    voipbin(app, reqwest::Method::GET, path, token, None).await
}

async fn post(app: &TestApp, path: &str, token: &str, body: Value) -> Reply {
    voipbin(app, reqwest::Method::POST, path, token, Some(body)).await
}

async fn put(app: &TestApp, path: &str, token: &str, body: Value) -> Reply {
    voipbin(app, reqwest::Method::PUT, path, token, Some(body)).await
}

async fn delete(app: &TestApp, path: &str, token: &str) -> Reply {
    voipbin(app, reqwest::Method::DELETE, path, token, None).await
}

/// The body of VoIPBIN's "create a new provider" example.
fn telnyx() -> Value {
    json!({
        "type": "sip",
        "hostname": "sip.telnyx.com",
        "tech_prefix": "",
        "tech_postfix": "",
        "tech_headers": {},
        "name": "telnyx basic",
        "detail": "telnyx basic"
    })
}

/// Fails the test unless `reply` is a 200 whose body has exactly `keys`.
#[track_caller]
fn assert_shape(reply: &Reply, keys: &[&str]) {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let mut found: Vec<&str> = reply
        .body
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {}", reply.text))
        .keys()
        .map(String::as_str)
        .collect();
    found.sort_unstable();
    let mut keys = keys.to_vec();
    keys.sort_unstable();
    assert_eq!(found, keys, "{}", reply.text);
}

const PROVIDER_KEYS: &[&str] = &[
    "id",
    "name",
    "detail",
    "type",
    "hostname",
    "tech_prefix",
    "tech_postfix",
    "tech_headers",
    "tm_create",
    "tm_update",
    "tm_delete",
];

const ROUTE_KEYS: &[&str] = &[
    "id",
    "customer_id",
    "name",
    "detail",
    "provider_id",
    "priority",
    "target",
    "tm_create",
    "tm_update",
    "tm_delete",
];

/// Fails the test unless `value` is a VoIPBIN timestamp (`2022-10-22 16:16:16.874761`).
#[track_caller]
fn assert_time(value: &Value) {
    let text = value.as_str().unwrap_or_else(|| panic!("{value}"));
    assert!(
        chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.6f").is_ok()
            && text.len() == 26,
        "{text}"
    );
}

/// Fails the test unless the dialplan document bridges one leg, to `leg` (after its `[…]`
/// leg variables).
#[track_caller]
fn assert_bridges_to(xml: &str, leg: &str) {
    let found = bridges(xml);
    assert_eq!(found.len(), 1, "{xml}");
    assert!(found[0].ends_with(&format!("]{leg}")), "{found:?}");
}

fn id_of(reply: &Reply) -> String {
    reply.body["id"].as_str().expect("an id").to_string()
}

#[tokio::test]
async fn the_documented_provider_requests_give_the_documented_shapes() {
    on_every_backend(|app| async move {
        let admin = app.admin.clone();
        // Create.
        let created = post(&app, "/v1.0/providers", &admin, telnyx()).await;
        assert_shape(&created, PROVIDER_KEYS);
        let id = id_of(&created);
        let body = &created.body;
        assert_eq!(body["type"], "sip");
        assert_eq!(body["hostname"], "sip.telnyx.com");
        assert_eq!(body["name"], "telnyx basic");
        assert_eq!(body["detail"], "telnyx basic");
        assert_eq!(body["tech_headers"], json!({}));
        assert_time(&body["tm_create"]);
        assert_eq!(body["tm_update"], NOT_YET);
        assert_eq!(body["tm_delete"], NOT_YET);
        // It is a platform carrier, and a gateway in sofia.conf.
        let carrier = app.get(&format!("/api/v1/carriers/{id}"), &admin).await;
        assert_eq!(carrier.body["tenant_id"], Value::Null);
        assert_eq!(carrier.body["remote_port"], 5060);
        let gateway = carrier.body["gateway_name"].as_str().unwrap().to_string();
        let (_, sofia) = app.fetch(config_body("sofia.conf", None)).await;
        assert!(
            sofia.contains(&format!("<gateway name=\"{gateway}\">")),
            "{sofia}"
        );
        // Get, and list.
        let got = get(&app, &format!("/v1.0/providers/{id}"), &admin).await;
        assert_shape(&got, PROVIDER_KEYS);
        assert_eq!(got.body, created.body);
        let listed = get(&app, "/v1.0/providers", &admin).await;
        assert_shape(&listed, &["result", "next_page_token"]);
        assert_eq!(listed.body["result"], json!([created.body]));
        assert_eq!(listed.body["next_page_token"], created.body["tm_create"]);

        // Update (PUT): VoIPBIN's fields replaced, the others kept (one VoIPBIN has no field
        // for is set through /api/v1 first).
        app.patch_carrier(Uuid::parse_str(&id).unwrap(), json!({"ping_seconds": 30}))
            .await;
        let updated = put(
            &app,
            &format!("/v1.0/providers/{id}"),
            &admin,
            json!({"type": "sip", "hostname": "sip.telnyx.com:5080", "tech_prefix": "99",
                   "tech_postfix": "#", "tech_headers": {"X-Account": "42"},
                   "name": "telnyx premium", "detail": "the better one"}),
        )
        .await;
        assert_shape(&updated, PROVIDER_KEYS);
        assert_eq!(updated.body["hostname"], "sip.telnyx.com:5080");
        assert_eq!(updated.body["tech_prefix"], "99");
        assert_eq!(updated.body["tech_postfix"], "#");
        assert_eq!(updated.body["tech_headers"], json!({"X-Account": "42"}));
        assert_eq!(updated.body["name"], "telnyx premium");
        assert_eq!(updated.body["tm_create"], created.body["tm_create"]);
        assert_time(&updated.body["tm_update"]);
        assert_ne!(updated.body["tm_update"], NOT_YET);
        let carrier = app.get(&format!("/api/v1/carriers/{id}"), &admin).await;
        assert_eq!(carrier.body["remote_host"], "sip.telnyx.com");
        assert_eq!(carrier.body["remote_port"], 5080);
        assert_eq!(carrier.body["add_prefix"], "99");
        assert_eq!(carrier.body["add_suffix"], "#");
        assert_eq!(carrier.body["detail"], "the better one");
        assert_eq!(carrier.body["ping_seconds"], 30, "kept through the PUT");
        assert_eq!(carrier.body["gateway_name"], gateway.as_str());

        // Delete: the object with tm_delete set, gone from the list, still readable by id.
        let deleted = delete(&app, &format!("/v1.0/providers/{id}"), &admin).await;
        assert_shape(&deleted, PROVIDER_KEYS);
        assert_time(&deleted.body["tm_delete"]);
        assert_ne!(deleted.body["tm_delete"], NOT_YET);
        let listed = get(&app, "/v1.0/providers", &admin).await;
        assert_eq!(listed.body, json!({"result": [], "next_page_token": ""}));
        let got = get(&app, &format!("/v1.0/providers/{id}"), &admin).await;
        assert_eq!(got.body["tm_delete"], deleted.body["tm_delete"]);
        let (_, sofia) = app.fetch(config_body("sofia.conf", None)).await;
        assert!(!sofia.contains(&gateway), "archived: {sofia}");
    })
    .await;
}

#[tokio::test]
async fn the_documented_route_requests_give_the_documented_shapes_and_route_calls() {
    on_every_backend(|app| async move {
        let admin = app.admin.clone();
        let provider = id_of(&post(&app, "/v1.0/providers", &admin, telnyx()).await);
        let gateway = app
            .get(&format!("/api/v1/carriers/{provider}"), &admin)
            .await
            .body["gateway_name"]
            .as_str()
            .unwrap()
            .to_string();

        // Create, as VoIPBIN's example: the platform's default route for +82.
        let created = post(
            &app,
            "/v1.0/routes",
            &admin,
            json!({"customer_id": PLATFORM, "name": "", "detail": "", "provider_id": provider,
                   "priority": 1, "target": "+82"}),
        )
        .await;
        assert_shape(&created, ROUTE_KEYS);
        let id = id_of(&created);
        assert_eq!(created.body["customer_id"], PLATFORM);
        assert_eq!(created.body["provider_id"], provider.as_str());
        assert_eq!(created.body["priority"], 1);
        assert_eq!(created.body["target"], "+82");
        assert_eq!(
            created.body["name"], "route to +82",
            "an empty name is derived"
        );
        assert_time(&created.body["tm_create"]);
        assert_eq!(created.body["tm_update"], NOT_YET);
        assert_eq!(created.body["tm_delete"], NOT_YET);
        // It routes a call.
        let (_, xml) = app.fetch(call("trunkline", "+821012345678", None)).await;
        assert_bridges_to(&xml, &format!("sofia/gateway/{gateway}/+821012345678"));

        // Get, and list with customer_id.
        let got = get(&app, &format!("/v1.0/routes/{id}"), &admin).await;
        assert_eq!(got.body, created.body);
        let listed = get(
            &app,
            &format!("/v1.0/routes?customer_id={PLATFORM}"),
            &admin,
        )
        .await;
        assert_shape(&listed, &["result", "next_page_token"]);
        assert_eq!(listed.body["result"], json!([created.body]));
        assert_eq!(listed.body["next_page_token"], created.body["tm_create"]);
        let other = Uuid::now_v7();
        let listed = get(&app, &format!("/v1.0/routes?customer_id={other}"), &admin).await;
        assert_eq!(listed.body["result"], json!([]), "{}", listed.text);

        // A setting VoIPBIN has no field for, set through /api/v1, survives a PUT.
        let patched = app
            .patch(
                &format!("/api/v1/outbound-routes/{id}"),
                &admin,
                json!({"strip_prefix": "+", "add_prefix": "00"}),
            )
            .await;
        assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
        let updated = put(
            &app,
            &format!("/v1.0/routes/{id}"),
            &admin,
            json!({"name": "everything", "detail": "default", "provider_id": provider,
                   "priority": 2, "target": "all"}),
        )
        .await;
        assert_shape(&updated, ROUTE_KEYS);
        assert_eq!(updated.body["target"], "all");
        assert_eq!(updated.body["priority"], 2);
        assert_eq!(updated.body["customer_id"], PLATFORM);
        assert_ne!(updated.body["tm_update"], NOT_YET);
        let route = app
            .get(&format!("/api/v1/outbound-routes/{id}"), &admin)
            .await;
        assert_eq!(route.body["prefix"], "");
        assert_eq!(route.body["add_prefix"], "00");
        assert_eq!(route.body["detail"], "default");
        let (_, xml) = app.fetch(call("trunkline", "+15551234567", None)).await;
        assert_bridges_to(&xml, &format!("sofia/gateway/{gateway}/0015551234567"));

        // Delete: the route as it was, tm_delete set; gone from lists and by id.
        let deleted = delete(&app, &format!("/v1.0/routes/{id}"), &admin).await;
        assert_shape(&deleted, ROUTE_KEYS);
        assert_ne!(deleted.body["tm_delete"], NOT_YET);
        assert_time(&deleted.body["tm_delete"]);
        let listed = get(&app, "/v1.0/routes", &admin).await;
        assert_eq!(listed.body, json!({"result": [], "next_page_token": ""}));
        let got = get(&app, &format!("/v1.0/routes/{id}"), &admin).await;
        assert_eq!(got.status, StatusCode::NOT_FOUND);
        // The provider, no longer used, can go too.
        let gone = delete(&app, &format!("/v1.0/providers/{provider}"), &admin).await;
        assert_eq!(gone.status, StatusCode::OK, "{}", gone.text);
    })
    .await;
}

#[tokio::test]
async fn lists_page_newest_first_by_the_documented_token() {
    on_every_backend(|app| async move {
        let admin = app.admin.clone();
        let mut ids = Vec::new();
        for name in ["one", "two", "three"] {
            let mut body = telnyx();
            body["name"] = json!(name);
            ids.push(id_of(&post(&app, "/v1.0/providers", &admin, body).await));
        }
        let first = get(&app, "/v1.0/providers?page_size=2", &admin).await;
        let names = |reply: &Reply| -> Vec<String> {
            reply.body["result"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["name"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(names(&first), ["three", "two"], "{}", first.text);
        assert_eq!(
            first.body["next_page_token"],
            first.body["result"][1]["tm_create"]
        );
        let token = first.body["next_page_token"].as_str().unwrap().to_string();
        let second = get(
            &app,
            &format!("/v1.0/providers?page_size=2&page_token={token}"),
            &admin,
        )
        .await;
        assert_eq!(names(&second), ["one"], "{}", second.text);
        let token = second.body["next_page_token"].as_str().unwrap().to_string();
        let third = get(
            &app,
            &format!("/v1.0/providers?page_size=2&page_token={token}"),
            &admin,
        )
        .await;
        assert_eq!(third.body, json!({"result": [], "next_page_token": ""}));

        for query in ["page_size=0", "page_size=501", "page_token=yesterday"] {
            let refused = get(&app, &format!("/v1.0/providers?{query}"), &admin).await;
            let field = query.split('=').next().unwrap();
            refused.assert_voipbin_refused_on(field);
        }
    })
    .await;
}

#[tokio::test]
async fn refusals_name_voipbins_fields_and_change_nothing() {
    on_every_backend(|app| async move {
        let admin = app.admin.clone();
        let provider = id_of(&post(&app, "/v1.0/providers", &admin, telnyx()).await);
        let before = app.store.load_dataset().await.unwrap().version;
        let with = |field: &str, value: Value| {
            let mut body = telnyx();
            body[field] = value;
            body
        };
        for (body, field) in [
            (with("hostname", json!("")), "hostname"),
            (
                with("hostname", json!("sip.telnyx.com;transport=tcp")),
                "hostname",
            ),
            (with("hostname", json!("sip.telnyx.com:99999")), "hostname"),
            (with("hostname", json!("sip.telnyx.com:x")), "hostname"),
            (with("tech_prefix", json!("${system id}")), "tech_prefix"),
            (with("tech_postfix", json!("@provider.com")), "tech_postfix"),
            (
                with("tech_postfix", json!("1|sofia/gateway/x/1")),
                "tech_postfix",
            ),
            (with("type", json!("iax")), "type"),
            (with("name", json!("")), "name"),
            (with("detail", json!("a\u{0}b")), "detail"),
            (
                with("tech_headers", json!({"X-A": "1\r\nX-Injected: 2"})),
                "tech_headers.X-A",
            ),
            (
                with("tm_create", json!("2022-10-22 16:16:16.874761")),
                "tm_create",
            ),
        ] {
            let refused = post(&app, "/v1.0/providers", &admin, body.clone()).await;
            refused.assert_voipbin_refused_on(field);
            assert!(!refused.text.contains("system id"), "{}", refused.text);
            let refused = put(&app, &format!("/v1.0/providers/{provider}"), &admin, body).await;
            refused.assert_voipbin_refused_on(field);
        }
        let route = |field: &str, value: Value| {
            let mut body = json!({"customer_id": PLATFORM, "provider_id": provider,
                                  "priority": 1, "target": "+82"});
            body[field] = value;
            body
        };
        for (body, field) in [
            (route("target", json!("+82x")), "target"),
            (route("target", json!("")), "target"),
            (route("provider_id", json!(Uuid::now_v7())), "provider_id"),
            (route("provider_id", Value::Null), "provider_id"),
            (route("provider_id", json!("not-a-uuid")), "provider_id"),
            (route("priority", json!(10_000_000)), "priority"),
            (route("customer_id", json!(Uuid::now_v7())), "customer_id"),
            (route("customer_id", Value::Null), "customer_id"),
        ] {
            post(&app, "/v1.0/routes", &admin, body)
                .await
                .assert_voipbin_refused_on(field);
        }
        assert_eq!(app.store.load_dataset().await.unwrap().version, before);
        // Only the documented parameters and the token: `?token=` is VoIPBIN's, /api/v1
        // takes bearer tokens only.
        let unknown = get(&app, "/v1.0/routes?tenant_id=x", &admin).await;
        assert_eq!(unknown.status, StatusCode::BAD_REQUEST, "{}", unknown.text);
        assert_eq!(unknown.error_fields(), ["tenant_id"]);
        let v1 = app
            .send(
                reqwest::Method::GET,
                &format!("/api/v1/carriers?token={admin}"),
                None,
                None,
            )
            .await;
        assert_eq!(v1.status, StatusCode::UNAUTHORIZED, "{}", v1.text);
        // A bearer header works on /v1.0 too.
        let header = app.get("/v1.0/providers", &admin).await;
        assert_eq!(header.status, StatusCode::OK, "{}", header.text);
        let openapi = app
            .send(reqwest::Method::GET, "/api/openapi.json", None, None)
            .await;
        for path in [
            "/v1.0/providers",
            "/v1.0/providers/{id}",
            "/v1.0/routes",
            "/v1.0/routes/{id}",
        ] {
            assert!(
                openapi.body["paths"].get(path).is_some(),
                "openapi lacks {path}"
            );
        }
        assert_eq!(
            openapi.body["components"]["securitySchemes"]["token"],
            json!({"type": "apiKey", "in": "query", "name": "token"})
        );
        assert_eq!(
            openapi.body["components"]["securitySchemes"]["accesskey"],
            json!({"type": "apiKey", "in": "query", "name": "accesskey"})
        );
    })
    .await;
}

#[tokio::test]
async fn a_tenants_token_sees_and_changes_only_its_own_routes_and_the_platforms_providers() {
    on_every_backend(|app| async move {
        let admin = app.admin.clone();
        let (mine, theirs) = (
            app.tenant("Mine", None, true).await,
            app.tenant("Theirs", None, true).await,
        );
        let token = app
            .tenant_token(
                mine,
                &[
                    Scope::CarriersRead,
                    Scope::CarriersWrite,
                    Scope::OutboundRoutesRead,
                    Scope::OutboundRoutesWrite,
                ],
            )
            .await;
        let provider = id_of(&post(&app, "/v1.0/providers", &admin, telnyx()).await);
        // Their own carrier (through /api/v1) is not a provider, and not mine to use.
        let their_carrier = app
            .create(
                "/api/v1/carriers",
                &admin,
                json!({"tenant_id": theirs, "name": "Theirs", "remote_host": "sip.theirs.example"}),
            )
            .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let their_route = id_of(
            &post(
                &app,
                "/v1.0/routes",
                &admin,
                json!({"customer_id": theirs, "provider_id": provider, "priority": 1, "target": "+44"}),
            )
            .await,
        );
        let platform_route = id_of(
            &post(
                &app,
                "/v1.0/routes",
                &admin,
                json!({"customer_id": PLATFORM, "provider_id": provider, "priority": 1, "target": "all"}),
            )
            .await,
        );

        // Providers: the platform's, read-only.
        let listed = get(&app, "/v1.0/providers", &token).await;
        assert_eq!(listed.body["result"].as_array().unwrap().len(), 1, "{}", listed.text);
        assert_eq!(listed.body["result"][0]["id"], provider.as_str());
        for path in [
            format!("/v1.0/providers/{their_carrier}"),
            format!("/v1.0/routes/{their_route}"),
            format!("/v1.0/routes/{platform_route}"),
        ] {
            assert_eq!(get(&app, &path, &token).await.status, StatusCode::NOT_FOUND, "{path}");
            assert_eq!(
                delete(&app, &path, &token).await.status,
                StatusCode::NOT_FOUND,
                "{path}"
            );
        }
        assert_eq!(
            post(&app, "/v1.0/providers", &token, telnyx()).await.status,
            StatusCode::FORBIDDEN
        );
        let path = format!("/v1.0/providers/{provider}");
        assert_eq!(put(&app, &path, &token, telnyx()).await.status, StatusCode::FORBIDDEN);
        assert_eq!(delete(&app, &path, &token).await.status, StatusCode::FORBIDDEN);

        // Routes: my own only.
        let created = post(
            &app,
            "/v1.0/routes",
            &token,
            json!({"provider_id": provider, "priority": 1, "target": "+1"}),
        )
        .await;
        assert_shape(&created, ROUTE_KEYS);
        assert_eq!(created.body["customer_id"], mine.to_string());
        let listed = get(&app, "/v1.0/routes", &token).await;
        assert_eq!(listed.body["result"], json!([created.body]));
        let listed = get(&app, &format!("/v1.0/routes?customer_id={mine}"), &token).await;
        assert_eq!(listed.body["result"], json!([created.body]));
        for customer in [theirs.to_string(), PLATFORM.to_string()] {
            let listed = get(&app, &format!("/v1.0/routes?customer_id={customer}"), &token).await;
            assert_eq!(listed.status, StatusCode::NOT_FOUND, "{customer}: {}", listed.text);
            post(
                &app,
                "/v1.0/routes",
                &token,
                json!({"customer_id": customer, "provider_id": provider, "priority": 1, "target": "+1"}),
            )
            .await
            .assert_voipbin_refused_on("customer_id");
        }
        let mine_path = format!("/v1.0/routes/{}", id_of(&created));
        put(
            &app,
            &mine_path,
            &token,
            json!({"customer_id": theirs, "provider_id": provider, "priority": 1, "target": "+1"}),
        )
        .await
        .assert_voipbin_refused_on("customer_id");
        put(
            &app,
            &mine_path,
            &token,
            json!({"provider_id": their_carrier, "priority": 1, "target": "+1"}),
        )
        .await
        .assert_voipbin_refused_on("provider_id");
        assert_eq!(
            put(
                &app,
                &format!("/v1.0/routes/{their_route}"),
                &token,
                json!({"provider_id": provider, "priority": 1, "target": "+1"}),
            )
            .await
            .status,
            StatusCode::NOT_FOUND
        );
        // Theirs are untouched.
        let theirs_now = get(&app, &format!("/v1.0/routes/{their_route}"), &admin).await;
        assert_eq!(theirs_now.body["target"], "+44");
        assert_eq!(theirs_now.body["tm_update"], NOT_YET);
    })
    .await;
}

#[tokio::test]
async fn a_token_or_access_key_from_the_query_string_reaches_no_log_line_error_or_metric() {
    let captured = support::logs::capture_all();
    for (label, store) in support::db::backends().await {
        let app = TestApp::start(&label, store).await;
        let admin = app.admin.clone();
        let mut answers = Vec::new();
        answers.push(post(&app, "/v1.0/providers", &admin, telnyx()).await.text);
        answers.push(get(&app, "/v1.0/providers?page_size=1", &admin).await.text);
        answers.push(get(&app, "/v1.0/providers?page_size=0", &admin).await.text);
        answers.push(get(&app, "/v1.0/providers?bogus=1", &admin).await.text);
        answers.push(get(&app, "/v1.0/routes/not-a-uuid", &admin).await.text);
        let mut body = telnyx();
        body["hostname"] = json!("");
        answers.push(post(&app, "/v1.0/providers", &admin, body).await.text);
        // A token that is not one (a revoked or mistyped secret) is refused without an echo.
        let wrong = format!("tl_{}", "0".repeat(64));
        let refused = get(&app, "/v1.0/providers", &wrong).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
        answers.push(refused.text);
        // The same through `?accesskey=`, as the `vn` client sends it, and with two
        // different credentials.
        let created = vn(
            &app,
            reqwest::Method::POST,
            "/v1.0/providers",
            &admin,
            Some(telnyx()),
        );
        answers.push(created.await.text);
        for path in ["/v1.0/providers?page_size=0", "/v1.0/routes/not-a-uuid"] {
            answers.push(
                vn(&app, reqwest::Method::GET, path, &admin, None)
                    .await
                    .text,
            );
        }
        let refused = vn(&app, reqwest::Method::GET, "/v1.0/providers", &wrong, None).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
        answers.push(refused.text);
        let path = format!("/v1.0/providers?token={admin}");
        let refused = vn(&app, reqwest::Method::GET, &path, &wrong, None).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
        answers.push(refused.text);
        answers.push(app.metrics().await);
        for answer in &answers {
            assert!(!answer.contains(&admin[3..]), "{answer}");
            assert!(!answer.contains(&wrong[3..]), "{answer}");
        }
        let log = captured.text();
        assert!(
            log.contains("/v1.0/providers"),
            "requests were traced: {log}"
        );
        assert!(!log.contains(&admin[3..]), "{log}");
        assert!(!log.contains(&wrong[3..]), "{log}");
    }
}

/// VoIPBIN's published description of providers, routes and their list envelope: a subset of
/// voipbin/monorepo `bin-openapi-manager/openapi/openapi.yaml` (the file names the commit).
const OPENAPI_SUBSET: &str = include_str!("support/testdata/voipbin-openapi-subset.json");

/// Where `value` breaks `schema`, as JSON paths with the rule broken; empty when it conforms.
/// The subset of OpenAPI 3.0 these schemas use: `$ref`, `allOf`, `type`, `nullable`,
/// `required`, `properties`, `additionalProperties`, `items`, `enum` and `format: uuid`.
/// `format: date-time` is not checked: VoIPBIN's own answers write `2022-10-22
/// 16:16:16.874761` there (its Go models declare those fields plain strings, `x-go-type`).
fn schema_violations(root: &Value, schema: &Value, value: &Value, at: &str) -> Vec<String> {
    let mut found = Vec::new();
    if let Some(reference) = schema["$ref"].as_str() {
        let pointer = reference.trim_start_matches('#');
        let target = root
            .pointer(pointer)
            .unwrap_or_else(|| panic!("{reference} is not in the subset"));
        found.extend(schema_violations(root, target, value, at));
    }
    for part in schema["allOf"].as_array().into_iter().flatten() {
        found.extend(schema_violations(root, part, value, at));
    }
    if value.is_null() && schema["nullable"] == true {
        return found;
    }
    if let Some(kind) = schema["type"].as_str() {
        let conforms = match kind {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            other => panic!("type {other} is not in the checked subset"),
        };
        if !conforms {
            found.push(format!("{at}: not {kind}: {value}"));
            return found;
        }
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        found.push(format!("{at}: {value} is not one of {allowed:?}"));
    }
    if schema["format"] == "uuid"
        && let Some(text) = value.as_str()
        && Uuid::parse_str(text).is_err()
    {
        found.push(format!("{at}: not a uuid: {text}"));
    }
    if let Some(object) = value.as_object() {
        for name in schema["required"].as_array().into_iter().flatten() {
            let name = name.as_str().unwrap();
            if !object.contains_key(name) {
                found.push(format!("{at}.{name}: required, missing"));
            }
        }
        for (name, field) in object {
            let path = format!("{at}.{name}");
            match schema["properties"].get(name) {
                Some(declared) => found.extend(schema_violations(root, declared, field, &path)),
                None if schema["additionalProperties"].is_object() => found.extend(
                    schema_violations(root, &schema["additionalProperties"], field, &path),
                ),
                None => {}
            }
        }
    }
    if let (Some(items), Some(schema)) = (value.as_array(), schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            found.extend(schema_violations(root, schema, item, &format!("{at}[{i}]")));
        }
    }
    found
}

/// Fails the test unless `reply` is a 200 whose body conforms to `schema` (a JSON pointer into
/// the subset), and names every field trunkline writes that VoIPBIN does not declare.
#[track_caller]
fn assert_conforms(root: &Value, pointer: &str, reply: &Reply) {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let schema = root.pointer(pointer).expect("schema in the subset");
    let broken = schema_violations(root, schema, &reply.body, "$");
    assert!(broken.is_empty(), "{pointer}: {broken:#?}\n{}", reply.text);
}

#[test]
fn the_schema_check_refuses_what_voipbins_description_does_not_allow() {
    let root: Value = serde_json::from_str(OPENAPI_SUBSET).unwrap();
    let provider = &root["components"]["schemas"]["RouteManagerProvider"];
    let fine = json!({"id": PLATFORM, "type": "sip", "tech_headers": {"X-A": "1"},
                      "metadata": null, "tm_create": "2022-10-22 16:16:16.874761"});
    assert_eq!(
        schema_violations(&root, provider, &fine, "$"),
        Vec::<String>::new()
    );
    for wrong in [
        json!({"id": "not-a-uuid"}),
        json!({"type": "iax"}),
        json!({"tech_headers": {"X-A": 1}}),
        json!({"hostname": null}),
        json!([]),
    ] {
        assert_eq!(
            schema_violations(&root, provider, &wrong, "$").len(),
            1,
            "{wrong}"
        );
    }
    let list = &root["x-responses"]["GET /routes 200"];
    let wrong = json!({"result": [{"priority": "1"}], "next_page_token": 7});
    assert_eq!(schema_violations(&root, list, &wrong, "$").len(), 2);
}

#[tokio::test]
async fn every_v1_0_answer_conforms_to_voipbins_published_schemas() {
    let root: Value = serde_json::from_str(OPENAPI_SUBSET).unwrap();
    let root = &root;
    on_every_backend(|app| async move {
        let admin = app.admin.clone();
        let provider_schema = "/components/schemas/RouteManagerProvider";
        let route_schema = "/components/schemas/RouteManagerRoute";
        let mut headers = telnyx();
        headers["tech_headers"] = json!({"X-Account": "42"});
        headers["hostname"] = json!("sip.example.net:5080");
        for body in [telnyx(), headers] {
            let created = post(&app, "/v1.0/providers", &admin, body).await;
            assert_conforms(root, provider_schema, &created);
        }
        let created = post(&app, "/v1.0/providers", &admin, telnyx()).await;
        let provider = id_of(&created);
        let path = format!("/v1.0/providers/{provider}");
        assert_conforms(root, provider_schema, &get(&app, &path, &admin).await);
        let updated = put(&app, &path, &admin, telnyx()).await;
        assert_conforms(root, provider_schema, &updated);
        for query in [
            "",
            "?page_size=1",
            "?page_size=2&page_token=2999-01-01 00:00:00.000000",
        ] {
            let listed = get(&app, &format!("/v1.0/providers{query}"), &admin).await;
            assert_conforms(root, "/x-responses/GET ~1providers 200", &listed);
        }

        let route = json!({"customer_id": PLATFORM, "name": "", "detail": "",
                           "provider_id": provider, "priority": 1, "target": "+82"});
        let created = post(&app, "/v1.0/routes", &admin, route.clone()).await;
        assert_conforms(root, route_schema, &created);
        let path = format!("/v1.0/routes/{}", id_of(&created));
        assert_conforms(root, route_schema, &get(&app, &path, &admin).await);
        assert_conforms(root, route_schema, &put(&app, &path, &admin, route).await);
        for query in ["", "?page_size=1", &format!("?customer_id={PLATFORM}")] {
            let listed = get(&app, &format!("/v1.0/routes{query}"), &admin).await;
            assert_conforms(root, "/x-responses/GET ~1routes 200", &listed);
            assert!(!listed.body["result"].as_array().unwrap().is_empty());
        }
        assert_conforms(root, route_schema, &delete(&app, &path, &admin).await);
        let path = format!("/v1.0/providers/{provider}");
        assert_conforms(root, provider_schema, &delete(&app, &path, &admin).await);
        let empty = get(&app, "/v1.0/routes", &admin).await;
        assert_conforms(root, "/x-responses/GET ~1routes 200", &empty);
    })
    .await;
}

/// A request as the `vn` client (voipbin/cli) sends it: `accessKeyTransport` adds
/// `?accesskey=` to every request, JSON bodies, `Accept: application/json`.
async fn vn(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> Reply {
    voipbin_as(app, method, path, "accesskey", key, body).await
}

#[tokio::test]
async fn the_vn_clients_provider_and_route_requests_with_an_access_key_behave_as_against_voipbin() {
    use reqwest::Method;
    on_every_backend(|app| async move {
        let admin = app.admin.clone();
        let mine = app.tenant("Mine", None, true).await;
        let key = app
            .tenant_token(
                mine,
                &[
                    Scope::CarriersRead,
                    Scope::OutboundRoutesRead,
                    Scope::OutboundRoutesWrite,
                ],
            )
            .await;

        // vn providers create --name telnyx --hostname sip.telnyx.com (the platform's key).
        let created = vn(
            &app,
            Method::POST,
            "/v1.0/providers",
            &admin,
            Some(
                json!({"name": "telnyx", "hostname": "sip.telnyx.com", "detail": "",
                        "tech_prefix": "", "tech_postfix": "", "type": "sip",
                        "tech_headers": {}}),
            ),
        )
        .await;
        assert_shape(&created, PROVIDER_KEYS);
        let provider = id_of(&created);
        let path = format!("/v1.0/providers/{provider}");
        // vn providers list [--page-size 10], vn providers get <id>.
        for query in ["", "?page_size=10"] {
            let listed = vn(
                &app,
                Method::GET,
                &format!("/v1.0/providers{query}"),
                &key,
                None,
            )
            .await;
            assert_shape(&listed, &["result", "next_page_token"]);
            assert_eq!(listed.body["result"][0], created.body);
        }
        let got = vn(&app, Method::GET, &path, &key, None).await;
        assert_eq!(got.body, created.body);
        // vn providers update <id> --name … --hostname … --detail … --type sip.
        let updated = vn(
            &app,
            Method::PUT,
            &path,
            &admin,
            Some(
                json!({"name": "telnyx b", "hostname": "sip2.telnyx.com", "detail": "backup",
                        "type": "sip"}),
            ),
        )
        .await;
        assert_shape(&updated, PROVIDER_KEYS);
        assert_eq!(updated.body["hostname"], "sip2.telnyx.com");
        // `vn providers update <id> --name …` alone sends only `name`; VoIPBIN's description
        // requires hostname (and the other fields) in a PUT and declares 400, and VoIPBIN
        // itself would blank the hostname: refused, naming it, and nothing changes.
        let partial = vn(
            &app,
            Method::PUT,
            &path,
            &admin,
            Some(json!({"name": "renamed"})),
        )
        .await;
        partial.assert_voipbin_refused_on("hostname");
        let got = vn(&app, Method::GET, &path, &key, None).await;
        assert_eq!(got.body, updated.body);

        // vn routes create --name … --target +82 --provider-id <id> --priority 1: an unset
        // --customer-id is sent as "", the key's own customer.
        let created = vn(
            &app,
            Method::POST,
            "/v1.0/routes",
            &key,
            Some(json!({"name": "korea", "detail": "", "target": "+82",
                        "provider_id": provider, "priority": 1, "customer_id": ""})),
        )
        .await;
        assert_shape(&created, ROUTE_KEYS);
        assert_eq!(created.body["customer_id"], mine.to_string());
        let route = format!("/v1.0/routes/{}", id_of(&created));
        // vn routes list [--page-size 10] [--customer-id <id>], vn routes get <id>.
        for query in [
            String::new(),
            "?page_size=10".into(),
            format!("?customer_id={mine}"),
        ] {
            let listed = vn(
                &app,
                Method::GET,
                &format!("/v1.0/routes{query}"),
                &key,
                None,
            )
            .await;
            assert_shape(&listed, &["result", "next_page_token"]);
            assert_eq!(listed.body["result"], json!([created.body]), "{query}");
        }
        assert_eq!(
            vn(&app, Method::GET, &route, &key, None).await.body,
            created.body
        );
        // vn routes update <id> --name … --detail … --target … --provider-id … --priority 2.
        let updated = vn(
            &app,
            Method::PUT,
            &route,
            &key,
            Some(json!({"name": "korea b", "detail": "x", "target": "+8210",
                        "provider_id": provider, "priority": 2})),
        )
        .await;
        assert_shape(&updated, ROUTE_KEYS);
        assert_eq!(updated.body["target"], "+8210");
        assert_eq!(updated.body["priority"], 2);

        // vn routes delete <id>, vn providers delete <id>: 200 and the object.
        let deleted = vn(&app, Method::DELETE, &route, &key, None).await;
        assert_shape(&deleted, ROUTE_KEYS);
        assert_ne!(deleted.body["tm_delete"], NOT_YET);
        let deleted = vn(&app, Method::DELETE, &path, &admin, None).await;
        assert_shape(&deleted, PROVIDER_KEYS);
        let listed = vn(&app, Method::GET, "/v1.0/providers", &key, None).await;
        assert_eq!(listed.body, json!({"result": [], "next_page_token": ""}));

        // A wrong access key, as a wrong token: VoIPBIN's 401, nothing echoed.
        let wrong = format!("tl_{}", "1".repeat(64));
        let refused = vn(&app, Method::GET, "/v1.0/providers", &wrong, None).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            refused.body,
            json!({"errors": [{"field": null, "detail": "missing, invalid or revoked bearer token"}]})
        );
    })
    .await;
}

#[tokio::test]
async fn a_request_carrying_two_different_credentials_is_refused_and_the_same_one_twice_is_not() {
    on_every_backend(|app| async move {
        let admin = app.admin.clone();
        let other = app
            .tenant_token(app.tenant("Mine", None, true).await, &[Scope::CarriersRead])
            .await;
        let url = |query: &str| format!("{}/v1.0/providers?{query}", app.base);
        for (query, bearer) in [
            (format!("token={admin}&accesskey={other}"), None),
            (format!("accesskey={admin}&token={other}"), None),
            (format!("accesskey={admin}&accesskey={other}"), None),
            (format!("accesskey={admin}"), Some(other.as_str())),
            (format!("token={other}"), Some(admin.as_str())),
        ] {
            let mut request = app.client.get(url(&query));
            if let Some(bearer) = bearer {
                request = request.bearer_auth(bearer);
            }
            let response = request.send().await.unwrap();
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{query} {bearer:?}"
            );
            let text = response.text().await.unwrap();
            assert!(
                text.contains("missing, invalid or revoked bearer token"),
                "{text}"
            );
            assert!(
                !text.contains(&admin[3..]) && !text.contains(&other[3..]),
                "{text}"
            );
        }
        for (query, bearer) in [
            (format!("token={admin}&accesskey={admin}"), None),
            (format!("accesskey={admin}"), Some(admin.as_str())),
        ] {
            let mut request = app.client.get(url(&query));
            if let Some(bearer) = bearer {
                request = request.bearer_auth(bearer);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{query} {bearer:?}");
        }
    })
    .await;
}
