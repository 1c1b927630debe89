//! What a route does to the wire: number formatting, tech headers, attestation, forced carriers and
//! tenant routes; and dialled numbers no carrier may see.

use serde_json::json;

use crate::support::platform::{
    CALLER_ID, Options, Platform, assert_status, carrier_answering, live_carrier, lock, uri_user,
};
use crate::support::sipp::{Answer, Caller};

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
