//! Learning from every call: a failing carrier's breaker opens, half-opens and closes, every leg is
//! an attempt record, and a gateway the node reports DOWN goes later.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::platform::{
    Options, Platform, WAIT, assert_status, carrier_answering, live_carrier, lock, path, uri_user,
};
use crate::support::process::eventually;
use crate::support::sipp::{Answer, Caller, Carrier};

/// The median of some set-up times.
fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

/// What trunkline recorded of one carrier's legs, oldest first: every page of
/// `GET /api/v1/attempts?carrier_id=…`.
async fn attempts_of(p: &Platform, carrier: &Value) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = p
            .send(
                reqwest::Method::GET,
                &format!(
                    "/api/v1/attempts?carrier_id={}&limit=100{cursor}",
                    carrier["id"].as_str().unwrap()
                ),
                None,
            )
            .await;
        all.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return all,
        }
    }
}

async fn stats_of(p: &Platform, carrier: &Value) -> Value {
    p.send(
        reqwest::Method::GET,
        &format!("{}/stats", path("carriers", carrier)),
        None,
    )
    .await
}

/// The statuses of a carrier's recorded legs, in order, beside what its sipp answered.
fn statuses(attempts: &[Value]) -> Vec<u64> {
    attempts
        .iter()
        .map(|a| a["sip_status"].as_u64().unwrap_or(0))
        .collect()
}

#[tokio::test]
async fn a_carrier_answering_503_is_moved_after_five_calls_tried_again_and_restored_and_every_leg_is_recorded()
 {
    let _serial = lock().await;
    // The default breaker (five carrier failures in a row), a short open time and every
    // second fetch a trial once half-open, so the test sees the whole cycle in seconds.
    let Some(p) = Platform::start(Options {
        extra_config: "\n[breaker]\nopen_seconds = 6\nhalf_open_one_in = 2\n",
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let (alpha, alpha_row) = carrier_answering(&p, "alpha", Answer::Status(503)).await;
    let (bravo, bravo_row) = carrier_answering(&p, "bravo", Answer::Connect).await;
    p.route("+1", &alpha_row, 1, json!({})).await;
    p.route("+1", &bravo_row, 2, json!({})).await;
    // charlie pings a port nothing listens on: the node marks its gateway DOWN within seconds
    // (checked at the end, on +44, where it comes before bravo).
    let (_, charlie_row) =
        live_carrier(&p, p.addr, "charlie", None, json!({"ping_seconds": 5})).await;
    p.route("+44", &charlie_row, 1, json!({})).await;
    p.route("+44", &bravo_row, 2, json!({})).await;
    p.synced().await;

    // Five calls try alpha first, which answers 503, then bravo, which connects.
    let mut first_alpha = Vec::new();
    for i in 0..5 {
        let outcome = p.call("+15551234567", Caller::Expect(200)).await;
        assert_status(&outcome, 200, &format!("call {i} through alpha's 503"));
        first_alpha.push(outcome.setup.unwrap());
        assert_eq!(alpha.invites().len(), i + 1, "call {i} tried alpha");
    }
    eventually("alpha's breaker open", WAIT, || async {
        stats_of(&p, &alpha_row).await["breaker"]["state"] == "open"
    })
    .await;
    let stats = stats_of(&p, &alpha_row).await;
    assert_eq!(
        stats["breaker"]["reason"],
        json!({"rule": "consecutive_failures", "failures": 5}),
        "{stats}"
    );
    // Explain shows the move and why.
    let preview = p
        .send(
            reqwest::Method::GET,
            "/api/v1/route-preview?destination=%2B15551234567",
            None,
        )
        .await;
    let legs = preview["legs"].as_array().unwrap();
    assert_eq!(legs[0]["leg"]["gateway_name"], "bravo", "{preview}");
    assert_eq!(legs[1]["leg"]["gateway_name"], "alpha", "{preview}");
    assert_eq!(legs[1]["configured_position"], 1, "{preview}");
    assert!(legs[1]["health"]["breaker_open"].is_object(), "{preview}");

    // While it is open, calls go to bravo first and alpha hears nothing: quicker set-up.
    let bravo_before = bravo.invites().len();
    let mut bravo_first = Vec::new();
    for i in 0..3 {
        let outcome = p.call("+15551234567", Caller::Expect(200)).await;
        assert_status(
            &outcome,
            200,
            &format!("call {i} with alpha's breaker open"),
        );
        bravo_first.push(outcome.setup.unwrap());
    }
    assert_eq!(alpha.invites().len(), 5, "alpha is not rung while open");
    assert_eq!(bravo.invites().len(), bravo_before + 3);
    assert!(
        median(&bravo_first) < median(&first_alpha),
        "set-up without alpha's 503 {bravo_first:?}, with it {first_alpha:?}"
    );

    // alpha recovers. Once half-open, one fetch in two tries it first; its answer closes
    // the breaker, and from then on every call goes to alpha first again.
    let alpha_invites = alpha.invites();
    drop(alpha);
    let restored = Carrier::start_on(p.dir(), "alpha-restored", Answer::Connect, {
        let proxy = alpha_row["remote_port"].as_u64().unwrap();
        u16::try_from(proxy).unwrap()
    });
    restored.listening().await;
    eventually("alpha's breaker half-open", WAIT, || async {
        stats_of(&p, &alpha_row).await["breaker"]["state"] == "half_open"
    })
    .await;
    let mut calls = 0;
    while restored.invites().is_empty() {
        calls += 1;
        assert!(calls <= 4, "half-open alpha tried within four calls");
        let outcome = p.call("+15551234567", Caller::Expect(200)).await;
        assert_status(&outcome, 200, "a call while alpha is half-open");
    }
    eventually("alpha's breaker closed", WAIT, || async {
        stats_of(&p, &alpha_row).await["breaker"]["state"] == "closed"
    })
    .await;
    let (alpha_before, bravo_before) = (restored.invites().len(), bravo.invites().len());
    for i in 0..2 {
        let outcome = p.call("+15551234567", Caller::Expect(200)).await;
        assert_status(&outcome, 200, &format!("call {i} after alpha is restored"));
    }
    assert_eq!(
        restored.invites().len(),
        alpha_before + 2,
        "alpha first again"
    );
    assert_eq!(bravo.invites().len(), bravo_before);

    // Every leg on the wire is one attempt record, with the status the carrier sent.
    let alpha_legs = 5 + restored.invites().len();
    let bravo_legs = bravo.invites().len();
    eventually("every leg recorded", WAIT, || async {
        attempts_of(&p, &alpha_row).await.len() == alpha_legs
            && attempts_of(&p, &bravo_row).await.len() == bravo_legs
    })
    .await;
    let alpha_attempts = attempts_of(&p, &alpha_row).await;
    let mut expected = vec![503; 5];
    expected.extend(vec![200; restored.invites().len()]);
    assert_eq!(statuses(&alpha_attempts), expected);
    assert_eq!(
        statuses(&attempts_of(&p, &bravo_row).await),
        vec![200; bravo_legs]
    );
    for (attempt, invite) in alpha_attempts[..5].iter().zip(&alpha_invites) {
        let request_uri = invite.start_line.split(' ').nth(1).unwrap();
        assert_eq!(attempt["number"], uri_user(request_uri), "{attempt}");
        assert_eq!(attempt["gateway"], "alpha", "{attempt}");
        assert_eq!(attempt["attempt"], 1, "{attempt}");
        assert_eq!(attempt["cause"], "NORMAL_TEMPORARY_FAILURE", "{attempt}");
        assert_eq!(attempt["hangup_by"], "carrier", "{attempt}");
        assert_eq!(attempt["failed_over"], true, "{attempt}");
        // The whole call: alpha's 503, then bravo's answer.
        let call = p
            .send(
                reqwest::Method::GET,
                &format!(
                    "/api/v1/calls/{}/attempts",
                    attempt["call_id"].as_str().unwrap()
                ),
                None,
            )
            .await;
        let legs = call["attempts"].as_array().unwrap();
        let gateways: Vec<&str> = legs
            .iter()
            .map(|l| l["gateway"].as_str().unwrap())
            .collect();
        assert_eq!(gateways, ["alpha", "bravo"], "{call}");
        assert_eq!(legs[1]["attempt"], 2, "{call}");
        assert_eq!(legs[1]["failed_over"], false, "{call}");
        assert!(legs[1]["pdd_ms"].as_u64().is_some(), "{call}");
    }

    // The figures are the traffic sent.
    let stats = stats_of(&p, &alpha_row).await;
    let five = &stats["windows"]["5m"];
    assert_eq!(five["attempts"], alpha_legs, "{stats}");
    assert_eq!(five["answered"], alpha_legs - 5, "{stats}");
    assert_eq!(
        five["statuses"],
        json!({"503": 5, "200": alpha_legs - 5}),
        "{stats}"
    );
    let stats = stats_of(&p, &bravo_row).await;
    assert_eq!(stats["windows"]["5m"]["answered"], bravo_legs, "{stats}");
    assert_eq!(stats["windows"]["5m"]["asr"], 1.0, "{stats}");
    let metrics = p.metrics().await;
    assert!(
        metrics.contains("trunkline_health_signals_total{kind=\"breaker_opened\"} 1"),
        "{metrics}"
    );

    // The gateway the node reports DOWN goes after bravo in the document the node fetches
    // (its Core-UUID names the node), and in route-preview for that node.
    eventually("charlie's gateway DOWN on the node", WAIT, || async {
        let status = p
            .send(
                reqwest::Method::GET,
                &format!("{}/status", path("carriers", &charlie_row)),
                None,
            )
            .await;
        status["switches"][0]["status"] == "DOWN"
    })
    .await;
    let moved = |metrics: &str| {
        crate::support::app::metric_value(metrics, "trunkline_xmlcurl_health_moved_total", &[])
    };
    let before = moved(&p.metrics().await);
    let bravo_before = bravo.invites().len();
    assert_status(
        &p.call("+442071234567", Caller::Expect(200)).await,
        200,
        "+44 with charlie's gateway DOWN",
    );
    assert_eq!(bravo.invites().len(), bravo_before + 1);
    let metrics = p.metrics().await;
    assert_eq!(
        moved(&metrics),
        before + 1.0,
        "the fetch moved charlie: {metrics}"
    );
    assert!(
        metrics.contains("trunkline_health_signals_total{kind=\"gateway_down\"} 1"),
        "{metrics}"
    );
    let switches = p.send(reqwest::Method::GET, "/api/v1/switches", None).await;
    let preview = p
        .send(
            reqwest::Method::GET,
            &format!(
                "/api/v1/route-preview?destination=%2B442071234567&switch_id={}",
                switches[0]["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(
        preview["legs"][0]["leg"]["gateway_name"], "bravo",
        "{preview}"
    );
    assert_eq!(preview["legs"][1]["health"], "gateway_down", "{preview}");
    assert!(
        metrics.contains(&format!(
            "trunkline_carrier_attempts{{carrier=\"alpha\",window=\"5m\"}} {alpha_legs}"
        )),
        "{metrics}"
    );
}
