//! The invariants of hostile input, written once and checked by both the `cargo fuzz` targets
//! (`fuzz/fuzz_targets/`, libFuzzer-driven, run by hand) and the `proptest` property tests that
//! run in CI (beside each module). Each function takes raw input, runs the real code path on it
//! and panics when an invariant breaks — a panic is what both drivers report as a failure.
//!
//! Not API: it exists so that the fuzz crate and the tests cannot drift apart. It does no I/O;
//! the snapshot it answers from is built from the shipped templates compiled in.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use chrono::{TimeZone, Utc};
use uuid::Uuid;

use crate::dialstring::{bridge_data, parse_bridge_data};
use crate::esl::client::{ApiCommand, EslError};
use crate::esl::gateway_status::{NamedStatus, parse_gateways, parse_named, proxy_host_port};
use crate::esl::reconcile::{Desired, plan, verify};
use crate::fsxml::acl::AclTemplate;
use crate::fsxml::sofia::ProfileTemplates;
use crate::fsxml::testdata::assert_document_is_safe;
use crate::fsxml::writer::{RenderError, XmlWriter, line_triggers_preprocessor};
use crate::model::Dataset;
use crate::model::fixtures::{carrier, prefix_route, regex_route, tenant};
use crate::model::{Applied, AppliedGateway, CallerName, CallerNumber};
use crate::model::{
    ContextName, DialNumber, FailoverCodes, FailoverMode, GatewayName, HeaderName, HeaderValue,
    ProfileName,
};
use crate::publish::{PublishSettings, Published, Templates};
use crate::quality::health::HealthView;
use crate::routing::{Leg, RoutingSettings};
use crate::xmlcurl::answer::answer;

/// The tenant of [`published`] whose calls bridge (context `acme`, default failover).
pub const TENANT: Uuid = Uuid::from_u128(0x1000);
/// A second tenant (context `exacttel`) in exact failover mode, so both document shapes are
/// reachable.
pub const EXACT_TENANT: Uuid = Uuid::from_u128(0x1001);

/// A small fixed snapshot: two tenants, three platform carriers (one with SIP headers and an
/// attestation header), prefix and regex routes, platform defaults. Built once per process.
pub fn published() -> &'static Published {
    static PUBLISHED: OnceLock<Published> = OnceLock::new();
    PUBLISHED.get_or_init(|| {
        let vars = crate::config::Settings::defaults().template_vars;
        let profiles = ProfileTemplates::load(
            vec![(
                "external".to_string(),
                include_str!("../templates/sofia/external.xml").to_string(),
            )],
            &vars,
        )
        .expect("shipped sofia template loads");
        let acl = AclTemplate::load(include_str!("../templates/acl.conf.xml"))
            .expect("shipped acl template loads");
        let mut alpha = carrier("alpha", 0x2000);
        alpha.tech_headers = BTreeMap::from([(
            HeaderName::parse("X-Account").unwrap(),
            HeaderValue::parse("42").unwrap(),
        )]);
        alpha.attestation_header = Some(HeaderName::parse("X-Attest").unwrap());
        alpha.leg_progress_timeout_seconds = Some(8);
        let mut exact = tenant("exacttel", EXACT_TENANT.as_u128());
        exact.failover_mode = Some(FailoverMode::Exact);
        let dataset = Dataset {
            version: 1,
            tenants: vec![tenant("acme", TENANT.as_u128()), exact],
            carriers: vec![alpha, carrier("bravo", 0x2001), carrier("charlie", 0x2002)],
            routes: vec![
                prefix_route(0x3000, None, "", 9, 0x2002),
                prefix_route(0x3001, None, "1", 1, 0x2000),
                prefix_route(0x3002, Some(TENANT.as_u128()), "44", 1, 0x2001),
                regex_route(
                    0x3003,
                    Some(EXACT_TENANT.as_u128()),
                    "^\\+?1[0-9]{3}",
                    1,
                    0x2000,
                ),
                prefix_route(0x3004, Some(EXACT_TENANT.as_u128()), "", 5, 0x2001),
            ],
            voice_numbers: vec![],
        };
        let settings = PublishSettings {
            default_context: ContextName::parse("trunkline").unwrap(),
            failover_mode: FailoverMode::Default,
            routing: RoutingSettings::default(),
        };
        Published::build(dataset, &Templates { profiles, acl }, &settings)
            .expect("fixture documents render")
    })
}

/// Any form body → the xml_curl answer: never panics, always a document that parses, carries no
/// pre-processor trigger, no control character, no `${` where FreeSWITCH expands, and only
/// bridge data of our own grammar ([`assert_document_is_safe`]).
pub fn xmlcurl_request(body: &[u8]) {
    let now = Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap();
    let reply = answer(published(), &HealthView::default(), body, now);
    let xml = std::str::from_utf8(&reply.xml).expect("documents are UTF-8");
    let actions = assert_document_is_safe(xml);
    if reply.outcome == crate::xmlcurl::answer::Outcome::Bridge {
        assert!(
            actions.iter().any(|(app, _)| app == "bridge"),
            "a bridge answer without a bridge action:\n{xml}"
        );
    }
}

/// Arbitrary bytes → legs built only from what the newtype parsers accept (fields separated by
/// `\n`: gateway, number, progress timeout, caller number, identity, caller name, then header
/// name/value pairs) → `bridge_data` →
/// `parse_bridge_data` gives back exactly those pieces.
pub fn dialstring(input: &[u8]) {
    let text = String::from_utf8_lossy(input);
    let mut fields = text.split('\n');
    let gateway = fields
        .next()
        .and_then(|g| GatewayName::parse(g).ok())
        .unwrap_or_else(|| GatewayName::parse("alpha").unwrap());
    let number = fields
        .next()
        .and_then(|n| DialNumber::parse(n).ok())
        .unwrap_or_else(|| DialNumber::parse("15551234567").unwrap());
    let progress_timeout_seconds = fields.next().and_then(|t| t.parse::<u32>().ok());
    let caller_id = fields.next().and_then(|c| CallerNumber::parse(c).ok());
    let identity = fields.next().map_or(0, str::len) % 3;
    let caller_name = fields.next().and_then(|n| CallerName::parse(n).ok());
    let mut headers = Vec::new();
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        if let (Ok(name), Ok(value)) = (HeaderName::parse(name), HeaderValue::parse(value)) {
            headers.push((name, value));
        }
    }
    let leg = Leg {
        carrier_id: Uuid::nil(),
        gateway_name: gateway,
        number,
        headers,
        progress_timeout_seconds,
        failover_codes: FailoverCodes::platform_default(),
        route_id: (identity > 0).then(Uuid::now_v7),
        tenant_id: (identity > 1).then(Uuid::now_v7),
        caller_id,
        caller_name,
        asserted_identity: identity > 0,
        privacy: identity > 1,
    };
    let attempt = 1 + progress_timeout_seconds.unwrap_or(0) as usize % 9;
    let data = bridge_data(&leg, attempt);
    let parsed = parse_bridge_data(&data)
        .unwrap_or_else(|| panic!("our own dial string is outside the grammar: {data:?}"));
    assert_eq!(
        (parsed.carrier_id, parsed.attempt as usize),
        (leg.carrier_id, attempt)
    );
    assert_eq!(
        (parsed.route_id, parsed.tenant_id),
        (leg.route_id, leg.tenant_id)
    );
    assert_eq!(parsed.gateway, leg.gateway_name);
    assert_eq!(parsed.number, leg.number);
    assert_eq!(parsed.headers, leg.headers);
    assert_eq!(
        parsed.progress_timeout_seconds,
        leg.progress_timeout_seconds
    );
    assert_eq!(parsed.caller_id, leg.caller_id);
    assert_eq!(parsed.caller_name, Some(leg.caller_name.clone()));
    assert_eq!(
        (parsed.asserted_identity, parsed.privacy),
        (leg.asserted_identity, leg.privacy)
    );
}

/// Any attribute text through the writer: refused only for a control character; otherwise the
/// document parses, has no pre-processor trigger and gives the text back unchanged.
pub fn xml_writer(value: &str) {
    let mut w = XmlWriter::new();
    w.open("document", &[("type", "freeswitch/xml")])
        .empty("param", &[("name", "x"), ("value", value)])
        .close();
    let xml = match w.finish() {
        Err(RenderError::ControlCharacter { .. }) => {
            assert!(
                value.chars().any(char::is_control),
                "refused without a control character: {value:?}"
            );
            return;
        }
        Err(e) => panic!("unexpected error {e} for {value:?}"),
        Ok(xml) => xml,
    };
    assert!(!xml.lines().any(line_triggers_preprocessor), "{xml}");
    assert_document_is_safe(&xml);
    let mut reader = quick_xml::Reader::from_str(&xml);
    let back = loop {
        match reader.read_event().expect("writer output parses") {
            quick_xml::events::Event::Empty(e) => {
                let attr = e
                    .attributes()
                    .filter_map(Result::ok)
                    .find(|a| AsRef::<str>::as_ref(&a.key) == "value")
                    .expect("the value attribute");
                break attr
                    .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                    .expect("attribute decodes")
                    .into_owned();
            }
            quick_xml::events::Event::Eof => panic!("no element in {xml}"),
            _ => {}
        }
    };
    assert_eq!(back, value);
}

/// Any Event Socket api output (split at the first NUL into a `sofia xmlstatus gateway` list
/// answer and a named answer) through everything trunkline does with it: the command checks,
/// both status parsers, the reconcile planner and its verification. Never panics; error texts
/// stay bounded (they are logged and shown in the API).
pub fn esl_reply(input: &[u8]) {
    let text = String::from_utf8_lossy(input);
    let (list, named) = text.split_once('\0').unwrap_or((&text, &text));
    let profile = ProfileName::external();
    let gateway = GatewayName::parse("alpha").unwrap();
    for command in [
        ApiCommand::Status,
        ApiCommand::CoreUuid,
        ApiCommand::Rescan(profile.clone()),
        ApiCommand::KillGw(profile.clone(), gateway.clone()),
        ApiCommand::ReloadAcl,
        ApiCommand::GatewayList,
        ApiCommand::Gateway(gateway),
    ] {
        match command.check(list) {
            Ok(()) => {}
            Err(EslError::Failed { output, .. }) => assert!(output.chars().count() <= 200),
            Err(other) => panic!("check gave {other:?}"),
        }
    }
    let running = parse_gateways(list);
    for g in &running {
        assert!(!g.name.is_empty(), "a gateway without a name: {g:?}");
        assert!(g.ping_time_ms.is_none_or(f64::is_finite));
        let _ = proxy_host_port(&g.proxy);
    }
    let status = parse_named(named);
    if let NamedStatus::Unreadable(excerpt) = &status {
        assert!(excerpt.chars().count() <= 200);
    }
    let desired = Desired::from_published(published(), std::slice::from_ref(&profile));
    // Nothing applied yet, and everything applied plus a retired gateway: every change kind.
    let everything = Applied {
        gateways: desired
            .gateways
            .keys()
            .cloned()
            .chain([GatewayName::parse("retired").unwrap()])
            .map(|name| {
                let entry = AppliedGateway {
                    name: name.clone(),
                    profile: profile.clone(),
                    fingerprint: "old".into(),
                };
                (name, entry)
            })
            .collect(),
        acl: None,
    };
    for applied in [Applied::default(), everything] {
        let plan = plan(&desired, &running, &applied);
        let named: HashMap<GatewayName, NamedStatus> = plan
            .named_checks()
            .into_iter()
            .map(|g| (g, status.clone()))
            .collect();
        let verdict = verify(&plan, &desired, &running, &named);
        assert_eq!(
            verdict.confirmed.len() + verdict.gone.len() + verdict.failures.len(),
            plan.changes.len(),
            "every planned change gets one verdict"
        );
    }
}
