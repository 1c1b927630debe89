//! The tenant's caller-ID policy and each carrier's caller-ID format, as they reach the wire;
//! hostile caller IDs from a real caller.

use serde_json::{Value, json};

use crate::support::platform::{Options, Platform, assert_status, live_carrier, lock};
use crate::support::sipp::{self, Answer, CallOutcome, Caller};

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
