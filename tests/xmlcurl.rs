//! `POST /freeswitch/xml` over real HTTP with the form bodies FreeSWITCH sends, against data
//! written through the API into a real SQLite file: whole documents as snapshots (each also
//! parses and passes the safety checks), hostile callers and stored values, route explain
//! agreeing with the fetch, and the endpoint's own access controls.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::app::{TestApp, call, config_body, dialplan_body, test_settings};
use trunkline::dialstring::parse_bridge_data;
use trunkline::fsxml::testdata::{SAMPLE_DIALPLAN_FETCH, assert_document_is_safe};
use uuid::Uuid;

/// The platform and tenants every test here starts from.
struct World {
    app: TestApp,
    acme: Uuid,
    beta: Uuid,
    exacto: Uuid,
    gateway_ids: Vec<(String, Uuid)>,
    other_tenants_carrier: Uuid,
}

impl World {
    fn carrier(&self, gateway: &str) -> Uuid {
        self.gateway_ids
            .iter()
            .find(|(g, _)| g == gateway)
            .unwrap()
            .1
    }

    /// The document with every carrier, route and tenant id of the world written as its name
    /// (`{carriers:alpha}`), so a snapshot does not change with the ids a run draws. An id the
    /// world does not name is left as it is and shows in the diff.
    async fn with_ids_named(&self, xml: &str) -> String {
        let mut out = xml.to_string();
        for (collection, field) in [
            ("carriers", "gateway_name"),
            ("outbound-routes", "name"),
            ("tenants", "name"),
        ] {
            let page = self
                .app
                .get(&format!("/api/v1/{collection}?limit=500"), &self.app.admin)
                .await
                .body;
            for row in page["items"].as_array().unwrap() {
                let id = Uuid::parse_str(row["id"].as_str().unwrap()).unwrap();
                let name = format!("{{{collection}:{}}}", row[field].as_str().unwrap());
                out = out
                    .replace(&id.hyphenated().to_string(), &name)
                    .replace(&id.simple().to_string(), &name);
            }
        }
        out
    }

    /// Fetches, checks the document is safe, and returns it.
    async fn fetch(&self, body: String) -> String {
        let (status, xml) = self.app.fetch(body).await;
        assert_eq!(status, StatusCode::OK);
        assert_document_is_safe(&xml);
        xml
    }
}

async fn world() -> World {
    let (_, store) = support::db::backends()
        .await
        .into_iter()
        .next()
        .expect("sqlite backend");
    world_on(TestApp::start("sqlite", store).await).await
}

async fn world_on(app: TestApp) -> World {
    let admin = app.admin.clone();
    let mut gateway_ids = Vec::new();
    let platform_carriers = [
        json!({"name": "Alpha", "gateway_name": "alpha", "remote_host": "sip.alpha.example",
               "strip_prefix": "+", "add_prefix": "99", "tech_headers": {"X-Account": "42"},
               "leg_progress_timeout_seconds": 8, "inbound_ips": ["203.0.113.10/32"]}),
        json!({"name": "Bravo", "gateway_name": "bravo", "remote_host": "sip.bravo.example",
               "remote_port": 5080, "strip_prefix": "+", "failover_codes": ["404", "503"],
               "inbound_ips": ["198.51.100.0/24", "203.0.113.10/32"]}),
        json!({"name": "Charlie", "gateway_name": "charlie", "type": "register_trunk",
               "remote_host": "sip.charlie.example", "transport": "tcp", "register": true,
               "auth_username": "acct7", "auth_password": "pw-charlie", "realm": "charlie.example",
               "strip_prefix": "+", "add_prefix": "00", "tech_headers": {"X-Tech-Prefix": "7788"},
               "attestation_header": "X-Attestation", "ping_seconds": 30}),
        json!({"name": "Delta", "gateway_name": "delta", "remote_host": "192.0.2.44"}),
        json!({"name": "Echo", "gateway_name": "echo", "remote_host": "sip.echo.example"}),
        json!({"name": "Inbound only", "gateway_name": "inbound-only", "direction": "inbound",
               "remote_host": "sip.in.example", "inbound_ips": ["192.0.2.99/32"]}),
    ];
    for body in platform_carriers {
        let c = app.create("/api/v1/carriers", &admin, body).await;
        gateway_ids.push((
            c["gateway_name"].as_str().unwrap().to_string(),
            Uuid::parse_str(c["id"].as_str().unwrap()).unwrap(),
        ));
    }
    let platform_ids = gateway_ids.clone();
    let id = |g: &str| platform_ids.iter().find(|(n, _)| n == g).unwrap().1;
    let platform_routes = [
        json!({"name": "NANP 1", "prefix": "+1", "carrier_id": id("alpha"), "priority": 1}),
        json!({"name": "NANP 2", "prefix": "+1", "carrier_id": id("bravo"), "priority": 2}),
        json!({"name": "NANP 3", "prefix": "+1", "carrier_id": id("charlie"), "priority": 3}),
        json!({"name": "France", "prefix": "+33", "carrier_id": id("delta"), "priority": 1}),
        json!({"name": "Berlin regex", "match_type": "regex", "regex": "^4930[0-9]+$", "carrier_id": id("echo"), "priority": 5}),
        json!({"name": "Germany", "prefix": "+49", "carrier_id": id("delta"), "priority": 5}),
        json!({"name": "Inbound carrier", "prefix": "+61", "carrier_id": id("inbound-only"), "priority": 1}),
    ];
    for body in platform_routes {
        app.create("/api/v1/outbound-routes", &admin, body).await;
    }
    let acme = app.tenant("Acme", Some("acme"), true).await;
    let own = app
        .create(
            "/api/v1/carriers",
            &admin,
            json!({"tenant_id": acme, "name": "Acme UK", "gateway_name": "acme-uk",
                   "remote_host": "sip.uk.example", "strip_prefix": "+44", "add_prefix": "0",
                   "inbound_ips": ["192.0.2.10/32"]}),
        )
        .await;
    let acme_uk = Uuid::parse_str(own["id"].as_str().unwrap()).unwrap();
    gateway_ids.push(("acme-uk".into(), acme_uk));
    app.create(
        "/api/v1/outbound-routes",
        &admin,
        json!({"tenant_id": acme, "name": "UK own", "prefix": "+44", "carrier_id": acme_uk, "priority": 1}),
    )
    .await;
    // Acme's own route for +33 overrides the platform's France route.
    app.create(
        "/api/v1/outbound-routes",
        &admin,
        json!({"tenant_id": acme, "name": "France via Echo", "prefix": "+33", "carrier_id": id("echo"), "priority": 1}),
    )
    .await;
    let beta = app.tenant("Beta", Some("beta"), false).await;
    let exacto = app.tenant("Exacto", Some("exacto"), false).await;
    let r = app
        .patch(
            &format!("/api/v1/tenants/{exacto}"),
            &admin,
            json!({"failover_mode": "exact"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let other = app.tenant("Other", None, true).await;
    let foreign = app
        .create(
            "/api/v1/carriers",
            &admin,
            json!({"tenant_id": other, "name": "Other gw", "gateway_name": "other-gw", "remote_host": "sip.other.example"}),
        )
        .await;
    World {
        app,
        acme,
        beta,
        exacto,
        gateway_ids,
        other_tenants_carrier: Uuid::parse_str(foreign["id"].as_str().unwrap()).unwrap(),
    }
}

/// The gateways of every bridge in a dialplan document, in order.
fn bridged_gateways(xml: &str) -> Vec<String> {
    assert_document_is_safe(xml)
        .into_iter()
        .filter(|(app, _)| app == "bridge")
        .map(|(_, data)| {
            parse_bridge_data(&data)
                .expect("strict grammar")
                .gateway
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn dialplan_documents_for_each_routing_case_match_their_snapshots() {
    let w = world().await;
    let cases: Vec<(&str, String)> = vec![
        ("single_carrier", call("trunkline", "+33142685300", None)),
        (
            "three_carrier_failover_with_prefixes_and_headers",
            dialplan_body(&[
                ("variable_trunkline_tenant_id", None),
                ("variable_trunkline_attestation", Some("A")),
            ]),
        ),
        (
            "tenant_routes_override_platform_defaults",
            call("acme", "+33142685300", Some(w.acme)),
        ),
        (
            "tenant_own_prefix_route",
            call("acme", "+442071234567", None),
        ),
        (
            "platform_defaults_when_the_tenant_has_none",
            call("beta", "+15551234567", None),
        ),
        (
            "forced_carrier_valid",
            dialplan_body(&[
                ("Hunt-Context", Some("acme")),
                ("variable_trunkline_tenant_id", Some(&w.acme.to_string())),
                ("variable_trunkline_attestation", None),
                (
                    "variable_trunkline_carrier_id",
                    Some(&w.carrier("charlie").to_string()),
                ),
            ]),
        ),
        (
            "forced_carrier_of_another_tenant_is_ignored",
            dialplan_body(&[
                ("Hunt-Context", Some("acme")),
                ("variable_trunkline_tenant_id", Some(&w.acme.to_string())),
                ("variable_trunkline_attestation", None),
                (
                    "variable_trunkline_carrier_id",
                    Some(&w.other_tenants_carrier.to_string()),
                ),
            ]),
        ),
        (
            "regex_and_prefix_at_equal_priority",
            call("trunkline", "+493012345678", None),
        ),
        ("no_route", call("trunkline", "+999123", None)),
        ("no_usable_carrier", call("trunkline", "+61212345678", None)),
        (
            "invalid_destination",
            call("trunkline", "1@evil.example", None),
        ),
        ("unknown_context", call("default", "+15551234567", None)),
        ("exact_first_fetch", call("exacto", "+15551234567", None)),
        (
            "exact_after_sip_503_tries_the_next_leg",
            dialplan_body(&[
                ("Hunt-Context", Some("exacto")),
                ("variable_trunkline_tenant_id", None),
                ("variable_trunkline_attestation", None),
                ("variable_trunkline_attempt", Some("1")),
                (
                    "variable_last_bridge_proto_specific_hangup_cause",
                    Some("sip:503"),
                ),
                (
                    "variable_originate_disposition",
                    Some("NORMAL_TEMPORARY_FAILURE"),
                ),
            ]),
        ),
        (
            "exact_after_sip_486_stops",
            dialplan_body(&[
                ("Hunt-Context", Some("exacto")),
                ("variable_trunkline_tenant_id", None),
                ("variable_trunkline_attestation", None),
                ("variable_trunkline_attempt", Some("1")),
                (
                    "variable_last_bridge_proto_specific_hangup_cause",
                    Some("sip:486"),
                ),
                ("variable_originate_disposition", Some("USER_BUSY")),
            ]),
        ),
    ];
    for (name, body) in cases {
        let xml = w.fetch(body).await;
        insta::assert_snapshot!(name, w.with_ids_named(&xml).await);
    }
}

#[tokio::test]
async fn the_routing_cases_pick_the_expected_carriers_in_order() {
    let w = world().await;
    let gateways = |xml: String| bridged_gateways(&xml);
    assert_eq!(
        gateways(w.fetch(call("trunkline", "+15551234567", None)).await),
        ["alpha", "bravo", "charlie"]
    );
    assert_eq!(
        gateways(w.fetch(call("acme", "+33142685300", None)).await),
        ["echo"],
        "tenant route wins"
    );
    assert_eq!(
        gateways(w.fetch(call("beta", "+33142685300", None)).await),
        ["delta"],
        "platform default"
    );
    assert_eq!(
        gateways(w.fetch(call("trunkline", "+493012345678", None)).await),
        ["delta", "echo"],
        "prefix before regex"
    );
    assert_eq!(
        gateways(w.fetch(call("trunkline", "+491711234567", None)).await),
        ["delta"]
    );
    assert!(
        gateways(w.fetch(call("trunkline", "+61212345678", None)).await).is_empty(),
        "inbound-only carrier skipped"
    );
    // The realistic fixture (≈160 fields) for tenant Acme, attestation A: Acme has no +1 route,
    // so the platform defaults apply and Charlie carries the attestation header.
    let fixture =
        SAMPLE_DIALPLAN_FETCH.replace("7d6f1c2e-3b4a-4c5d-8e9f-0a1b2c3d4e5f", &w.acme.to_string());
    let xml = w.fetch(fixture).await;
    assert_eq!(bridged_gateways(&xml), ["alpha", "bravo", "charlie"]);
    assert!(
        xml.contains(
            "sip_h_X-Tech-Prefix=7788,sip_h_X-Attestation=A,origination_caller_id_name=Front Desk]sofia/gateway/charlie/0015551234567"
        ),
        "{xml}"
    );
    assert!(xml.contains("sofia/gateway/alpha/9915551234567"), "{xml}");
    assert!(xml.contains(r#"<context name="trunkline">"#));
}

#[tokio::test]
async fn configuration_documents_match_their_snapshots() {
    let w = world().await;
    for (name, body) in [
        ("sofia_conf_full", config_body("sofia.conf", None)),
        (
            "sofia_conf_profile_external",
            config_body("sofia.conf", Some("external")),
        ),
        (
            "sofia_conf_unknown_profile",
            config_body("sofia.conf", Some("internal")),
        ),
        ("acl_conf", config_body("acl.conf", None)),
        ("other_configuration_file", config_body("switch.conf", None)),
        (
            "directory_section",
            "section=directory&tag_name=domain&key_name=name&key_value=example.com".into(),
        ),
        ("malformed_body", "%%%&&&=".into()),
    ] {
        let (status, xml) = w.app.fetch(body).await;
        assert_eq!(status, StatusCode::OK);
        assert_document_is_safe(&xml);
        insta::assert_snapshot!(name, xml);
    }
}

#[tokio::test]
async fn hostile_destinations_and_caller_ids_never_change_document_structure() {
    let w = world().await;
    let known: Vec<String> = w.gateway_ids.iter().map(|(g, _)| g.clone()).collect();
    let hostile = [
        "123|sofia/gateway/x/1",
        "1@evil.example",
        "${system id}",
        "1,api_on_answer=system",
        "[x]",
        "%7C",
        "+1555\r\nX-Evil: 1",
        "+1555\n",
        "+15551234567 XML default",
        "+1555{a=b}1234",
        "+1555^1234",
        "'+1555'",
        "+15551234567\u{0}",
    ];
    for value in hostile {
        for context in ["trunkline", "acme"] {
            let xml = w.fetch(call(context, value, None)).await;
            assert!(
                bridged_gateways(&xml).is_empty(),
                "{value:?} was bridged:\n{xml}"
            );
            assert!(
                xml.contains("application=\"hangup\"") || xml.contains("application=\"respond\""),
                "{value:?} not refused:\n{xml}"
            );
        }
        // As a caller ID with a valid destination: it never reaches a leg as written. A call
        // without a tenant has no number to replace it with, so it is refused (CALL_REJECTED).
        let body = dialplan_body(&[
            ("Caller-Caller-ID-Number", Some(value)),
            ("Hunt-Caller-ID-Number", Some(value)),
            ("variable_trunkline_tenant_id", None),
        ]);
        let xml = w.fetch(body).await;
        assert!(bridged_gateways(&xml).is_empty(), "{value:?}:\n{xml}");
        assert!(xml.contains("CALL_REJECTED"), "{value:?}:\n{xml}");
        for fragment in ["system", "evil", "api_on_answer", "X-Evil"] {
            assert!(!xml.contains(fragment), "{value:?} leaked into:\n{xml}");
        }
        // As a tenant id, a forced carrier and an attestation level: refused or ignored.
        for field in [
            "variable_trunkline_tenant_id",
            "variable_trunkline_carrier_id",
            "variable_trunkline_attestation",
        ] {
            let xml = w.fetch(dialplan_body(&[(field, Some(value))])).await;
            assert!(bridged_gateways(&xml).iter().all(|g| known.contains(g)));
            assert!(
                !xml.contains("evil") && !xml.contains("system id"),
                "{field}={value:?}:\n{xml}"
            );
        }
    }
}

#[tokio::test]
async fn hostile_stored_names_never_reach_a_document() {
    let w = world().await;
    let admin = w.app.admin.clone();
    let hostile = "${system id}|sofia/gateway/x/1<b>\"'&";
    let tenant = w
        .app
        .create(
            "/api/v1/tenants",
            &admin,
            json!({"name": hostile, "context": "hostile"}),
        )
        .await;
    let tenant = Uuid::parse_str(tenant["id"].as_str().unwrap()).unwrap();
    let carrier = w
        .app
        .create(
            "/api/v1/carriers",
            &admin,
            json!({"tenant_id": tenant, "name": hostile, "remote_host": "sip.h.example"}),
        )
        .await;
    let gateway = carrier["gateway_name"].as_str().unwrap().to_string();
    assert!(
        gateway
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c)),
        "{gateway}"
    );
    w.app
        .create(
            "/api/v1/outbound-routes",
            &admin,
            json!({"tenant_id": tenant, "name": hostile, "prefix": "+1", "carrier_id": carrier["id"]}),
        )
        .await;
    let dialplan = w.fetch(call("hostile", "+15551234567", None)).await;
    assert_eq!(bridged_gateways(&dialplan), std::slice::from_ref(&gateway));
    for xml in [
        dialplan,
        w.fetch(config_body("sofia.conf", None)).await,
        w.fetch(config_body("acl.conf", None)).await,
    ] {
        assert!(!xml.contains("system id") && !xml.contains("<b>"), "{xml}");
    }
}

#[tokio::test]
async fn route_explain_and_the_dialplan_fetch_give_the_same_answer() {
    let w = world().await;
    let admin = w.app.admin.clone();
    let cases: Vec<(Option<Uuid>, &str, Option<Uuid>)> = vec![
        (None, "+15551234567", None),
        (Some(w.acme), "+33142685300", None),
        (Some(w.acme), "+442071234567", None),
        (Some(w.beta), "+15551234567", None),
        (Some(w.exacto), "+15551234567", None),
        (Some(w.acme), "+15551234567", Some(w.carrier("delta"))),
        (None, "+999123", None),
        (None, "+61212345678", None),
        (None, "+493012345678", None),
    ];
    for (tenant, destination, forced) in cases {
        // The caller ID and name of the fetch fixture, which the preview must present too.
        let mut query = format!(
            "/api/v1/route-preview?destination={}&caller=%2B14155550100&caller_name=Front%20Desk",
            support::app::fs_encode(destination)
        );
        if let Some(t) = tenant {
            query.push_str(&format!("&tenant_id={t}"));
        }
        if let Some(c) = forced {
            query.push_str(&format!("&carrier_id={c}"));
        }
        let preview = w.app.get(&query, &admin).await;
        assert_eq!(preview.status, StatusCode::OK, "{query}: {}", preview.text);
        let context = preview.body["context"].as_str().unwrap().to_string();
        let tenant_str = tenant.map(|t| t.to_string());
        let forced_str = forced.map(|c| c.to_string());
        let fetched = w
            .fetch(dialplan_body(&[
                ("Caller-Context", Some(&context)),
                ("Hunt-Context", Some(&context)),
                ("Caller-Destination-Number", Some(destination)),
                ("Hunt-Destination-Number", Some(destination)),
                ("variable_trunkline_tenant_id", tenant_str.as_deref()),
                ("variable_trunkline_carrier_id", forced_str.as_deref()),
                ("variable_trunkline_attestation", None),
            ]))
            .await;
        assert_eq!(preview.body["xml"].as_str().unwrap(), fetched, "{query}");
        let explained: Vec<String> = preview.body["legs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                parse_bridge_data(l["dial_string"].as_str().unwrap())
                    .unwrap()
                    .gateway
                    .to_string()
            })
            .collect();
        let mode = preview.body["failover_mode"].as_str().unwrap();
        if mode == "default" {
            assert_eq!(explained, bridged_gateways(&fetched), "{query}");
        } else {
            // The exact form bridges one leg per fetch: the first explained leg.
            assert_eq!(bridged_gateways(&fetched), explained[..1], "{query}");
        }
    }
    // The failover section names the causes FreeSWITCH moves on by itself, the shared ones that
    // come back to trunkline, and the codes on both sides of each (503 and 400 are both
    // NORMAL_TEMPORARY_FAILURE); a callee's busy is in neither list.
    let preview = w
        .app
        .get("/api/v1/route-preview?destination=%2B15551234567", &admin)
        .await;
    let first = &preview.body["legs"][0];
    assert_eq!(first["leg"]["gateway_name"], "alpha");
    let names = |list: &Value| -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect()
    };
    let continued = names(&first["continue_on_fail"]);
    let returned = names(&first["transfer_on_fail"]);
    for cause in ["UNALLOCATED_NUMBER", "GATEWAY_DOWN", "PROGRESS_TIMEOUT"] {
        assert!(continued.iter().any(|c| c == cause), "{continued:?}");
    }
    assert!(
        returned.iter().any(|c| c == "NORMAL_TEMPORARY_FAILURE"),
        "{returned:?}"
    );
    for callee in ["USER_BUSY", "UNWANTED"] {
        assert!(
            !continued.iter().chain(&returned).any(|c| c == callee),
            "{callee}"
        );
    }
    let shared = first["collisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["cause"] == "NORMAL_TEMPORARY_FAILURE")
        .expect("NORMAL_TEMPORARY_FAILURE collision");
    assert_eq!(shared["failover_codes"], "500, 503");
    assert_eq!(shared["other_codes"], "400, 481");
    assert!(
        first["failover_handling"]
            .as_str()
            .unwrap()
            .contains("transfer_on_fail")
    );
    let last = preview.body["legs"].as_array().unwrap().last().unwrap();
    assert_eq!(
        last["collisions"],
        json!([]),
        "nothing follows the last leg"
    );
    let considered = preview.body["considered"].as_array().unwrap();
    assert_eq!(considered.len(), 3);
    // A forced carrier that does not exist is ignored and the explanation says why.
    let preview = w
        .app
        .get(
            &format!(
                "/api/v1/route-preview?destination=%2B15551234567&carrier_id={}",
                Uuid::now_v7()
            ),
            &admin,
        )
        .await;
    assert_eq!(
        preview.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        preview.text
    );
    let preview = w
        .app
        .get("/api/v1/route-preview?destination=1%40evil.example", &admin)
        .await;
    assert_eq!(preview.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(preview.error_fields(), ["destination"]);
}

#[tokio::test]
async fn a_committed_write_is_in_the_very_next_fetch() {
    let w = world().await;
    let admin = w.app.admin.clone();
    assert!(bridged_gateways(&w.fetch(call("trunkline", "+81312345678", None)).await).is_empty());
    w.app
        .create(
            "/api/v1/outbound-routes",
            &admin,
            json!({"name": "Japan", "prefix": "+81", "carrier_id": w.carrier("echo")}),
        )
        .await;
    assert_eq!(
        bridged_gateways(&w.fetch(call("trunkline", "+81312345678", None)).await),
        ["echo"]
    );
    let sofia = w.fetch(config_body("sofia.conf", Some("external"))).await;
    assert!(sofia.contains(r#"<gateway name="echo">"#));
    let r = w
        .app
        .patch(
            &format!("/api/v1/carriers/{}", w.carrier("delta")),
            &admin,
            json!({"status": "disabled"}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::CONFLICT,
        "routes still use delta: {}",
        r.text
    );
}

#[tokio::test]
async fn the_endpoint_checks_credentials_and_the_client_allow_list() {
    let mut settings = test_settings();
    settings.xmlcurl_credentials = Some(trunkline::config::BasicCredentials {
        user: "freeswitch".into(),
        password: "pw".into(),
    });
    let (_, store) = support::db::backends().await.into_iter().next().unwrap();
    let app = TestApp::start_with("sqlite", store, settings).await;
    let url = format!("{}/freeswitch/xml", app.base);
    let body = config_body("acl.conf", None);
    let anonymous = app
        .client
        .post(&url)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let wrong = app
        .client
        .post(&url)
        .basic_auth("freeswitch", Some("nope"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let right = app
        .client
        .post(&url)
        .basic_auth("freeswitch", Some("pw"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), StatusCode::OK);
    assert!(right.text().await.unwrap().contains("trunkline_carriers"));

    // The allow-list refuses a client outside it and serves one inside it: a list that
    // refused everyone would fail the second half.
    for (allowed, expected) in [
        ("10.0.0.0/8", StatusCode::FORBIDDEN),
        ("127.0.0.0/8", StatusCode::OK),
    ] {
        let mut settings = test_settings();
        settings.xmlcurl_allow =
            trunkline::model::AllowList::new(vec![trunkline::model::Cidr::parse(allowed).unwrap()]);
        let (_, store) = support::db::backends().await.into_iter().next().unwrap();
        let app = TestApp::start_with("sqlite", store, settings).await;
        let (status, xml) = app.fetch(body.clone()).await;
        assert_eq!(status, expected, "127.0.0.1 with xmlcurl_allow = {allowed}");
        if expected == StatusCode::OK {
            assert!(xml.contains("trunkline_carriers"), "{xml}");
        }
    }
}

#[tokio::test]
async fn an_oversized_body_gets_the_not_found_document() {
    let w = world().await;
    let body = format!(
        "{}&padding={}",
        call("trunkline", "+15551234567", None),
        "x".repeat(600 * 1024)
    );
    let (status, xml) = w.app.fetch(body).await;
    assert_eq!(status, StatusCode::OK);
    assert!(xml.contains(r#"<result status="not found"/>"#), "{xml}");
    let _: Value = json!(null);
}

#[tokio::test]
async fn weighted_scheduled_costed_and_caller_routes_agree_between_explain_and_the_fetch() {
    let w = world().await;
    let admin = w.app.admin.clone();
    // Japan: three platform carriers at equal priority and cost split 60/30/10, a dearer one
    // after them, a route only for Tokyo callers, and one that is never open on a Sunday.
    let route = |name: &str, gw: &str, extra: Value| {
        let mut body = json!({"name": name, "prefix": "+81", "carrier_id": w.carrier(gw),
                              "priority": 1, "cost": {"rate": "0.01", "currency": "USD"}});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    for body in [
        route("JP a", "alpha", json!({"weight": 60})),
        route("JP b", "bravo", json!({"weight": 30})),
        route("JP d", "delta", json!({"weight": 10})),
        route("JP dear", "charlie", json!({"cost": {"rate": "0.2"}})),
        route(
            "JP Tokyo callers",
            "echo",
            json!({"priority": 0, "caller_prefix": "+813"}),
        ),
        route(
            "JP weekdays",
            "echo",
            json!({"priority": 0, "schedule": {"time_zone": "Asia/Tokyo",
                "windows": [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "00:00", "end": "24:00"}]}}),
        ),
    ] {
        w.app.create("/api/v1/outbound-routes", &admin, body).await;
    }
    // A Sunday in Tokyo: the fetch routes at the real clock, so explain is asked for "now"
    // unless that is a Tokyo weekday, when the weekday route joins both the same way.
    let mut first_legs = std::collections::BTreeSet::new();
    for n in 0..12u128 {
        let call_id = Uuid::from_u128(0x0ca1_1000_0000 + n);
        let caller = if n % 4 == 0 {
            "+81312345678"
        } else {
            "+14155550100"
        };
        let query = format!(
            "/api/v1/route-preview?destination=%2B81312345678&caller={}&caller_name=Front%20Desk&call_id={call_id}&max_cost=0.05",
            support::app::fs_encode(caller)
        );
        let preview = w.app.get(&query, &admin).await;
        assert_eq!(preview.status, StatusCode::OK, "{query}: {}", preview.text);
        let call_id = call_id.to_string();
        let fetched = w
            .fetch(dialplan_body(&[
                ("Hunt-Destination-Number", Some("+81312345678")),
                ("Caller-Destination-Number", Some("+81312345678")),
                ("Hunt-Caller-ID-Number", Some(caller)),
                ("Caller-Caller-ID-Number", Some(caller)),
                ("Unique-ID", Some(&call_id)),
                ("variable_trunkline_tenant_id", None),
                ("variable_trunkline_max_cost", Some("0.05")),
            ]))
            .await;
        assert_eq!(preview.body["xml"].as_str().unwrap(), fetched, "{query}");
        let legs = preview.body["legs"].as_array().unwrap();
        let gateways: Vec<&str> = legs
            .iter()
            .map(|l| l["leg"]["gateway_name"].as_str().unwrap())
            .collect();
        assert_eq!(bridged_gateways(&fetched), gateways, "{query}");
        // Every leg names what decided it; the dear carrier is over the ceiling.
        assert!(
            legs.iter().all(|l| l["decided_by"].is_string()),
            "{}",
            preview.text
        );
        assert!(!gateways.contains(&"charlie"), "{gateways:?}");
        let dear = preview.body["considered"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["route_name"] == "JP dear")
            .unwrap();
        assert_eq!(dear["reason"], "over_max_cost", "{dear}");
        let drawn: Vec<&Value> = preview.body["considered"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["weight"].is_number())
            .collect();
        assert_eq!(drawn.len(), 3);
        assert!(drawn.iter().all(|c| c["decided_by"] == "weight"));
        let tokyo_caller = n % 4 == 0;
        let excluded = preview.body["excluded"].as_array().unwrap();
        assert_eq!(
            excluded.iter().any(|x| x["reason"] == "caller_mismatch"),
            !tokyo_caller,
            "{}",
            preview.text
        );
        if tokyo_caller {
            assert_eq!(gateways[0], "echo");
        }
        first_legs.insert(drawn[0]["gateway_name"].as_str().unwrap().to_string());
    }
    assert!(
        first_legs.len() > 1,
        "the draw differs between calls: {first_legs:?}"
    );

    // A schedule decides by the `at` explain is asked for: Sunday vs Monday in Tokyo.
    let at = |t: &str| {
        format!(
            "/api/v1/route-preview?destination=%2B81312345678&at={}",
            support::app::fs_encode(t)
        )
    };
    let sunday = w.app.get(&at("2026-11-22T12:00:00+09:00"), &admin).await;
    assert_eq!(sunday.status, StatusCode::OK, "{}", sunday.text);
    assert!(
        sunday.body["excluded"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["route_name"] == "JP weekdays" && x["reason"] == "outside_schedule")
    );
    let monday = w.app.get(&at("2026-11-23T00:30:00+09:00"), &admin).await;
    assert_eq!(monday.body["legs"][0]["leg"]["gateway_name"], "echo");
    assert_eq!(monday.body["legs"][0]["decided_by"], "priority");
    // A malformed call id is refused naming it (400, as every malformed query parameter); a
    // refused ceiling is ignored with the reason, as in a fetch.
    let bad = w
        .app
        .get(
            "/api/v1/route-preview?destination=%2B81312345678&call_id=nope",
            &admin,
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);
    assert_eq!(bad.error_fields(), ["call_id"]);
    let ignored = w
        .app
        .get(
            "/api/v1/route-preview?destination=%2B81312345678&max_cost=-1",
            &admin,
        )
        .await;
    assert!(
        ignored.body["cost_ceiling"]["request_ignored"]
            .as_str()
            .unwrap()
            .contains("trunkline_max_cost ignored")
    );
}
