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

/// The From display name of an INVITE the carrier received: `Some(name)` for `"name" <sip:…>`,
/// `None` for a bare `<sip:…>`.
fn display_name(from: &str) -> Option<&str> {
    let quoted = from.strip_prefix('"')?;
    let (name, rest) = quoted.split_once('"')?;
    assert!(
        rest.starts_with(" <sip:"),
        "a From beyond name-addr: {from:?}"
    );
    Some(name)
}

#[tokio::test]
async fn each_carrier_gets_the_caller_name_its_policy_says_and_never_a_hostile_one() {
    let _serial = lock().await;
    let Some(p) = Platform::start(Options::default()).await else {
        return;
    };
    // Arrange: one carrier per name policy, each on its own prefix; tenant "named" has a
    // default name, tenant "plain" none.
    let mut carriers = Vec::new();
    for (gateway, prefix, policy) in [
        ("alpha", "+1555", "pass"),
        ("bravo", "+1666", "replace"),
        ("charlie", "+1777", "none"),
    ] {
        let (carrier, row) = live_carrier(
            &p,
            p.addr,
            gateway,
            Some(Answer::Connect),
            json!({"caller_id": {"name": policy}}),
        )
        .await;
        assert_eq!(row["caller_id"]["name"], policy, "{row}");
        p.route(prefix, &row, 1, json!({})).await;
        carriers.push(carrier.unwrap());
    }
    let [alpha, bravo, charlie] = &carriers[..] else {
        unreachable!()
    };
    let named = p
        .send(
            reqwest::Method::POST,
            "/api/v1/tenants",
            Some(json!({"name": "Named", "caller_id_policy": {"default_name": "Acme Sales"}})),
        )
        .await;
    assert_eq!(named["caller_id_policy"]["default_name"], "Acme Sales");
    let plain = p
        .send(
            reqwest::Method::POST,
            "/api/v1/tenants",
            Some(json!({"name": "Plain"})),
        )
        .await;
    let call = |tenant: &Value, destination: &'static str, display: String| {
        let tenant = tenant["id"].as_str().unwrap().to_string();
        let dir = p.dir().to_path_buf();
        let port = p.operator_profile_port;
        async move {
            sipp::call_named(
                &dir,
                port,
                destination,
                &display,
                "+15550001111",
                &[("X-Tenant", tenant)],
                Caller::Expect(200),
            )
            .await
        }
    };
    // The From of the carrier's last INVITE, after checking that the Remote-Party-ID this
    // gateway also sends (sofia_glue.c, `sip_cid_type` rpid by default) names the same.
    let last_from = |carrier: &sipp::Carrier, count: usize| {
        let invites = carrier.invites();
        assert_eq!(invites.len(), count, "{invites:#?}");
        let invite = invites.last().unwrap();
        let from = invite.header("From");
        let rpid = invite.header("Remote-Party-ID");
        let rpid_name = rpid
            .strip_prefix('"')
            .and_then(|r| r.split_once('"'))
            .map(|(name, _)| name);
        assert_eq!(rpid_name, display_name(&from), "{rpid} / {from}");
        assert!(!rpid.contains("_undef_"), "{rpid}");
        from
    };

    // A plain name: passed by alpha as it is, replaced by bravo, dropped by charlie.
    let front_desk = || "\"Front Desk\" ".to_string();
    assert_status(
        &call(&named, "+15551234567", front_desk()).await,
        200,
        "pass",
    );
    let from = last_from(alpha, 1);
    assert_eq!(display_name(&from), Some("Front Desk"), "{from}");
    assert_status(
        &call(&named, "+16661234567", front_desk()).await,
        200,
        "replace",
    );
    let from = last_from(bravo, 1);
    assert_eq!(display_name(&from), Some("Acme Sales"), "{from}");
    assert_status(
        &call(&named, "+17771234567", front_desk()).await,
        200,
        "none",
    );
    let from = last_from(charlie, 1);
    assert_eq!(display_name(&from), None, "{from}");
    // Replace without a tenant name: none.
    assert_status(
        &call(&plain, "+16661234567", front_desk()).await,
        200,
        "replace",
    );
    let from = last_from(bravo, 2);
    assert_eq!(display_name(&from), None, "{from}");

    // Hostile names from a SIP caller: quotes and angle brackets, `${…}`, 300 characters, CR
    // LF percent-encoded (sofia URL-decodes the display name) and raw. Each either never
    // reaches a carrier, or reaches alpha (`pass`) with the tenant's name, or with none.
    let hostile = [
        r#""Evil\" <sip:x@evil.example>" "#.to_string(),
        r#""Evil%22 <sip:x@evil.example>" "#.to_string(),
        "\"${system id}\" ".to_string(),
        format!("\"{}\" ", "A".repeat(300)),
        "\"Alice%0D%0AX-Evil: 1\" ".to_string(),
        "\"Alice\r\nX-Evil: 1\" ".to_string(),
    ];
    let mut alpha_invites = 1;
    for display in &hostile {
        for (tenant, expected) in [(&named, Some("Acme Sales")), (&plain, None)] {
            let outcome = call(tenant, "+15551234567", display.clone()).await;
            eprintln!(
                "hostile caller name {display:?}: caller got {:?}",
                outcome.status
            );
            if outcome.status != Some(200) {
                assert!(
                    matches!(outcome.status, Some(400..=499)),
                    "{display:?}: {}",
                    outcome.trace
                );
                last_from(alpha, alpha_invites);
                continue;
            }
            alpha_invites += 1;
            let invite = alpha.invites().last().cloned().unwrap();
            let from = last_from(alpha, alpha_invites);
            eprintln!("  carrier alpha received From: {from}");
            assert_eq!(display_name(&from), expected, "{display:?}: {from}");
            assert_eq!(invite.header("X-Evil"), "", "{invite:?}");
            for (name, value) in &invite.headers {
                for word in ["evil", "system", "AAAAAAAA", "%0D", "${"] {
                    assert!(
                        !value
                            .to_ascii_lowercase()
                            .contains(&word.to_ascii_lowercase()),
                        "{display:?} reached {name}: {value}"
                    );
                }
            }
        }
    }
    assert!(alpha_invites > 1, "some hostile call reached alpha");
    // Route preview says the same as the wire.
    let preview = p
        .send(
            reqwest::Method::GET,
            &format!(
                "/api/v1/route-preview?destination=%2B15551234567&caller=%2B15550001111&caller_name=%24%7Bsystem%20id%7D&tenant_id={}",
                named["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(
        preview["caller_id"]["name"]["presented_invalid"], true,
        "{preview}"
    );
    assert_eq!(
        preview["legs"][0]["leg"]["caller_name"], "Acme Sales",
        "{preview}"
    );
    assert!(
        preview["legs"][0]["dial_string"]
            .as_str()
            .unwrap()
            .contains(",origination_caller_id_name=Acme Sales]"),
        "{preview}"
    );
    // Nothing reached the other carriers.
    last_from(bravo, 2);
    last_from(charlie, 1);
}
