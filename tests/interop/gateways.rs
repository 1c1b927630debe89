//! Carriers become gateways on the node: created through either API, changed parameter by
//! parameter, while the node is down, and a hundred at once.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::freeswitch::free_port;
use crate::support::platform::{
    Options, Platform, WAIT, alpha_takes_plus_one, assert_status, carrier_answering, lock, path,
    uri_user,
};
use crate::support::process::{eventually, eventually_ok};
use crate::support::sipp::{Answer, Caller, Carrier};

#[tokio::test]
async fn a_voipbin_provider_becomes_a_gateway_and_a_voipbin_route_routes_a_real_call() {
    let _serial = lock().await;
    let Some(p) = Platform::start(Options::default()).await else {
        return;
    };
    // Arrange: a provider and a platform route created as a VoIPBIN client creates them.
    let telnyx = Carrier::start(p.dir(), "telnyx", Answer::Connect);
    let (status, provider) = p
        .voipbin(
            reqwest::Method::POST,
            "/v1.0/providers",
            json!({"type": "sip", "hostname": format!("127.0.0.1:{}", telnyx.port),
                   "tech_prefix": "99", "tech_postfix": "", "tech_headers": {"X-Account": "42"},
                   "name": "telnyx basic", "detail": "created through /v1.0"}),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{provider}");
    let carrier = p
        .send(reqwest::Method::GET, &path("carriers", &provider), None)
        .await;
    let gateway = carrier["gateway_name"].as_str().unwrap();
    p.gateway_live(gateway, &format!("sip:127.0.0.1:{}", telnyx.port))
        .await;
    let (status, route) = p
        .voipbin(
            reqwest::Method::POST,
            "/v1.0/routes",
            json!({"customer_id": "00000000-0000-0000-0000-000000000001", "name": "korea",
                   "detail": "", "provider_id": provider["id"], "priority": 1, "target": "+82"}),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{route}");

    // Act
    let outcome = p.call("821012345678", Caller::Expect(200)).await;

    // Assert: the carrier got the call with the provider's prefix and header.
    assert_status(&outcome, 200, "a call through the VoIPBIN route");
    let invites = telnyx.invites();
    assert_eq!(invites.len(), 1, "{invites:?}");
    assert_eq!(uri_user(invites[0].request_uri()), "99821012345678");
    assert_eq!(invites[0].header("X-Account"), "42");
}

#[tokio::test]
async fn a_postfix_with_a_domain_sends_the_invite_to_that_domain_not_to_the_gateway() {
    let _serial = lock().await;
    let Some(p) = Platform::start(Options::default()).await else {
        return;
    };
    // Arrange: gateway alpha's proxy is carrier alpha; bravo is another host.
    let (alpha, alpha_row) = carrier_answering(&p, "alpha", Answer::Connect).await;
    let bravo = Carrier::start(p.dir(), "bravo", Answer::Connect);
    bravo.listening().await;

    // Act: the leg VoIPBIN's `tech_postfix: "@provider.com"` would make.
    let leg = format!("sofia/gateway/alpha/15551234567@127.0.0.1:{}", bravo.port);
    let originated = p.api(&format!("originate {leg} &park")).await;
    p.api("hupall").await;

    // Assert: the INVITE went to the domain, with it as the Request-URI's host, and the
    // gateway's own host saw nothing. So trunkline refuses such a postfix.
    assert!(alpha.invites().is_empty(), "{:?}", alpha.invites());
    let invites = bravo.invites();
    assert_eq!(invites.len(), 1, "{originated}\n{}", p.node.log());
    assert_eq!(
        invites[0].request_uri(),
        format!("sip:15551234567@127.0.0.1:{}", bravo.port)
    );
    assert!(
        originated.starts_with("+OK"),
        "{originated}\n{}",
        p.node.log()
    );
    let (status, refused) = p
        .voipbin(
            reqwest::Method::PUT,
            &format!("/v1.0/providers/{}", alpha_row["id"].as_str().unwrap()),
            json!({"hostname": format!("127.0.0.1:{}", alpha.port), "name": "alpha",
                   "tech_postfix": format!("@127.0.0.1:{}", bravo.port)}),
        )
        .await;
    // VoIPBIN declares 400 for a bad request on /v1.0 (issue 41).
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(refused["errors"][0]["field"], "tech_postfix");
}

/// Applies `change` to a carrier and measures until the node runs a gateway whose
/// `sofia xmlstatus` holds every one of `expect`.
async fn change_until_live(
    p: &Platform,
    carrier: &Value,
    change: Value,
    expect: &[String],
) -> Duration {
    let started = Instant::now();
    p.send(
        reqwest::Method::PATCH,
        &path("carriers", carrier),
        Some(change.clone()),
    )
    .await;
    let name = carrier["gateway_name"].as_str().unwrap();
    eventually_ok(&format!("{change}: {expect:?}"), WAIT, || async {
        let status = p.api(&format!("sofia xmlstatus gateway {name}")).await;
        match expect.iter().all(|e| status.contains(e.as_str())) {
            true => Ok(()),
            false => Err(status),
        }
    })
    .await;
    started.elapsed()
}

#[tokio::test]
async fn every_gateway_parameter_change_goes_live_on_the_node_and_is_verified() {
    let _serial = lock().await;
    let Some(p) = Platform::start(Options::default()).await else {
        return;
    };
    let el = |name: &str, value: &str| format!("<{name}>{value}</{name}>");
    let started = Instant::now();
    let (carrier, row) = carrier_answering(&p, "alpha", Answer::Connect).await;
    let mut timings = vec![("create (the node's first)", started.elapsed())];
    let started = Instant::now();
    let (_bravo, _) = carrier_answering(&p, "bravo", Answer::Connect).await;
    timings.push(("create", started.elapsed()));
    let other = free_port();
    let changes: Vec<(&str, Value, Vec<String>)> = vec![
        (
            "port",
            json!({"remote_port": other}),
            vec![el("proxy", &format!("sip:127.0.0.1:{other}"))],
        ),
        (
            "host",
            json!({"remote_host": "127.0.0.2", "remote_port": carrier.port}),
            vec![el("proxy", &format!("sip:127.0.0.2:{}", carrier.port))],
        ),
        (
            "transport",
            json!({"remote_host": "127.0.0.1", "transport": "tcp"}),
            vec!["transport=tcp".into()],
        ),
        (
            "auth",
            json!({"transport": "udp", "auth_username": "acct7", "auth_password": "s3cret-pw", "realm": "sip.carrier.example"}),
            vec![el("username", "acct7"), el("realm", "sip.carrier.example")],
        ),
        (
            "from",
            json!({"from_user": "trunk42", "from_domain": "from.carrier.example"}),
            vec!["trunk42@from.carrier.example".into()],
        ),
    ];
    for (what, change, expect) in changes {
        timings.push((what, change_until_live(&p, &row, change, &expect).await));
    }
    // A registering gateway leaves NOREG; which state comes next depends on the carrier's
    // answer to REGISTER (sipp's carrier does not answer one), so any other state counts.
    let started = Instant::now();
    p.patch_on(p.addr, "carriers", &row, json!({"register": true}))
        .await;
    eventually("the gateway registering", WAIT, || async {
        let status = p.api("sofia xmlstatus gateway alpha").await;
        status.contains("<state>") && !status.contains(&el("state", "NOREG"))
    })
    .await;
    timings.push(("register", started.elapsed()));
    p.synced().await;
    let started = Instant::now();
    p.patch_on(p.addr, "carriers", &row, json!({"status": "disabled"}))
        .await;
    p.gateway_gone("alpha").await;
    timings.push(("disable", started.elapsed()));
    p.patch_on(p.addr, "carriers", &row, json!({"status": "active"}))
        .await;
    p.gateway_live("alpha", &format!("sip:127.0.0.1:{}", carrier.port))
        .await;
    let started = Instant::now();
    p.send(reqwest::Method::DELETE, &path("carriers", &row), None)
        .await;
    p.gateway_gone("alpha").await;
    timings.push(("archive", started.elapsed()));
    p.synced().await;
    for (what, took) in &timings {
        eprintln!(
            "carrier {what} → live on the node: {:.0} ms",
            took.as_secs_f64() * 1000.0
        );
    }
}

/// p50 and p99 of a carrier's port change until the node runs the new gateway, over 20
/// changes, with the default debounce (500 ms) and none. Figures are printed for
/// BENCHMARKS.md (`cargo test --test interop change_latency -- --nocapture`), never asserted.
#[tokio::test]
async fn change_latency_carrier_port_to_live_gateway() {
    let _serial = lock().await;
    for debounce in [500, 0] {
        let Some(p) = Platform::start(Options {
            esl_debounce_ms: debounce,
            ..Options::default()
        })
        .await
        else {
            return;
        };
        let (_carrier, row) = carrier_answering(&p, "alpha", Answer::Connect).await;
        let mut took = Vec::new();
        for _ in 0..20 {
            let port = free_port();
            let expect = [format!("<proxy>sip:127.0.0.1:{port}</proxy>")];
            took.push(change_until_live(&p, &row, json!({"remote_port": port}), &expect).await);
        }
        took.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        eprintln!(
            "esl_debounce_ms = {debounce}: carrier change → live gateway over {} changes: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            took.len(),
            ms(took[took.len() / 2]),
            ms(took[(took.len() * 99).div_ceil(100) - 1]),
            ms(took[took.len() - 1])
        );
    }
}

#[tokio::test]
async fn changes_made_while_the_node_is_down_converge_when_it_returns_and_a_wrong_password_applies_nothing()
 {
    let _serial = lock().await;
    let Some(mut p) = Platform::start(Options::default()).await else {
        return;
    };
    let (_alpha, alpha_row) = carrier_answering(&p, "alpha", Answer::Connect).await;
    p.synced().await;

    // Act: the node goes down; a carrier changes and another is created meanwhile.
    p.node.stop().await;
    let moved = free_port();
    p.patch_on(
        p.addr,
        "carriers",
        &alpha_row,
        json!({"remote_port": moved}),
    )
    .await;
    let late = p.carrier("late", free_port(), json!({})).await;
    eventually("trunkline sees the node down", WAIT, || async {
        let switches = p.send(reqwest::Method::GET, "/api/v1/switches", None).await;
        switches[0]["connection"] != "connected"
    })
    .await;
    let build = p.build.clone();
    p.node.restart(&build).await;

    // Assert: the node runs both, and trunkline has verified it.
    p.gateway_live("alpha", &format!("sip:127.0.0.1:{moved}"))
        .await;
    p.gateway_live("late", &format!("sip:127.0.0.1:{}", late["remote_port"]))
        .await;
    p.synced().await;

    // A second switch entry with a wrong Event Socket password: auth_failed, nothing applied.
    let wrong = p
        .send(
            reqwest::Method::POST,
            "/api/v1/switches",
            Some(json!({
                "name": "fs1-wrong-password",
                "esl_host": "127.0.0.1",
                "esl_port": p.node.spec.esl_port,
                "esl_password": "not-the-password",
                "profiles": ["external"],
            })),
        )
        .await;
    eventually("the wrong password reported", WAIT, || async {
        let view = p
            .send(reqwest::Method::GET, &path("switches", &wrong), None)
            .await;
        view["connection"] == "auth_failed" && view["synced_version"].is_null()
    })
    .await;
}

#[tokio::test]
async fn a_burst_of_100_carriers_goes_live_without_restarting_untouched_gateways() {
    let _serial = lock().await;
    let Some(p) = Platform::start(Options::default()).await else {
        return;
    };
    // Arrange: a call through alpha, so its gateway counts one outbound call; a restarted
    // gateway would count none.
    let (_alpha, _) = alpha_takes_plus_one(&p, "alpha").await;
    let calls_out = |status: &str| {
        status
            .split("<calls-out>")
            .nth(1)
            .and_then(|s| s.split('<').next())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(
        calls_out(&p.api("sofia xmlstatus gateway alpha").await),
        "1"
    );

    // Act: 100 carriers created as fast as the API takes them, eight at a time.
    let started = Instant::now();
    let mut creates = tokio::task::JoinSet::new();
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(8));
    for i in 0..100u16 {
        let (client, base, token, gate) = (
            p.client.clone(),
            format!("http://{}/api/v1/carriers", p.addr),
            p.token.clone(),
            gate.clone(),
        );
        creates.spawn(async move {
            let _permit = gate.acquire().await.unwrap();
            let name = format!("burst{i:03}");
            let response = client
                .post(base)
                .bearer_auth(token)
                .json(&json!({"name": name, "gateway_name": name, "remote_host": "127.0.0.1", "remote_port": 20_000 + i}))
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success(), "{name}: {}", response.status());
        });
    }
    while let Some(done) = creates.join_next().await {
        done.unwrap();
    }

    // Assert: all live, alpha untouched.
    eventually("100 burst gateways live", WAIT * 2, || async {
        let status = p.api("sofia status").await;
        status.matches("external::burst").count() == 100
    })
    .await;
    eprintln!(
        "100 carriers created → all live on the node: {:.0} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    p.synced().await;
    assert_eq!(
        calls_out(&p.api("sofia xmlstatus gateway alpha").await),
        "1",
        "alpha was not restarted"
    );
}
