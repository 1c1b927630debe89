//! Which carrier answers reach the caller and which fail over to the next carrier, in both failover
//! forms; and what a chain costs in set-up time.

use std::time::Duration;

use serde_json::json;

use crate::support::platform::{
    Options, Platform, WAIT, assert_status, carrier_answering, live_carrier, lock,
};
use crate::support::process::eventually;
use crate::support::sipp::{Answer, Caller};

/// Failover on the carrier's failures, in the platform's failover mode: carrier `a` answers as
/// told (or nothing listens on its port: `None`), carrier `b` connects. A silent carrier gets a
/// two-second `leg_progress_timeout_seconds`.
async fn failover_cases(p: &Platform, cases: &[(&str, Option<Answer>)], expect_failover: bool) {
    // Gateway names are global: each set of cases has its own.
    let tag = if expect_failover { "f" } else { "n" };
    let (b, b_row) = carrier_answering(p, &format!("bravo-{tag}"), Answer::Connect).await;
    for (i, (number, answer)) in cases.iter().enumerate() {
        let gateway = format!("alpha-{tag}{i}");
        let extra = match answer {
            Some(Answer::Silent) => json!({"leg_progress_timeout_seconds": 2}),
            _ => json!({}),
        };
        let (first, first_row) = live_carrier(p, p.addr, &gateway, *answer, extra).await;
        p.route(number, &first_row, 1, json!({})).await;
        p.route(number, &b_row, 2, json!({})).await;
        let before = b.invites().len();
        let callee_answer = match answer {
            Some(Answer::Status(s) | Answer::StatusWithQ850(s, _)) => Some(*s),
            _ => None,
        };
        let expected = if expect_failover {
            200
        } else {
            callee_answer.expect("a callee's answer")
        };
        let outcome = p.call(number, Caller::Expect(expected)).await;
        let what = format!("{number}: first carrier {answer:?}");
        if let Some(first) = &first {
            assert_eq!(
                first.invites().len(),
                1,
                "{what}: the first carrier was tried once"
            );
        }
        assert_status(&outcome, expected, &what);
        let rung = if expect_failover { 1 } else { 0 };
        assert_eq!(
            b.invites().len(),
            before + rung,
            "{what}: INVITEs at the second carrier"
        );
    }
}

const CARRIER_FAILURES: &[(&str, Option<Answer>)] = &[
    ("+4410", Some(Answer::Status(503))),
    ("+4411", Some(Answer::Status(500))),
    ("+4412", Some(Answer::Status(502))),
    ("+4413", Some(Answer::Status(404))),
    ("+4414", None),
    ("+4415", Some(Answer::Status(408))),
    ("+4416", Some(Answer::Status(604))),
    ("+4417", Some(Answer::Status(608))),
    // A Reason header that would turn this 503 into USER_BUSY does not stop the failover.
    ("+4418", Some(Answer::StatusWithQ850(503, 17))),
    ("+4419", Some(Answer::Silent)),
];

const CALLEE_ANSWERS: &[(&str, Option<Answer>)] = &[
    ("+4420", Some(Answer::Status(486))),
    ("+4421", Some(Answer::Status(600))),
    ("+4422", Some(Answer::Status(603))),
    ("+4423", Some(Answer::Status(607))),
    // A Reason header that would turn this busy into UNALLOCATED_NUMBER (a failover cause)
    // does not make it one.
    ("+4424", Some(Answer::StatusWithQ850(486, 1))),
];

#[tokio::test]
async fn by_default_carrier_failures_fail_over_and_the_next_carrier_answers() {
    let _serial = lock().await;
    let Some(p) = Platform::start(Options::default()).await else {
        return;
    };
    failover_cases(&p, CARRIER_FAILURES, true).await;
}

#[tokio::test]
async fn by_default_busy_and_decline_reach_the_caller_and_no_other_carrier_is_rung() {
    let _serial = lock().await;
    let Some(p) = Platform::start(Options::default()).await else {
        return;
    };
    failover_cases(&p, CALLEE_ANSWERS, false).await;
    cancel_while_ringing_rings_no_other_carrier(&p).await;
}

#[tokio::test]
async fn the_exact_form_fails_over_on_the_same_codes_and_chains_three_carriers() {
    let _serial = lock().await;
    let Some(p) = Platform::start(Options {
        failover_mode: "exact",
        ..Options::default()
    })
    .await
    else {
        return;
    };
    failover_cases(&p, CARRIER_FAILURES, true).await;
    failover_cases(&p, CALLEE_ANSWERS, false).await;
    cancel_while_ringing_rings_no_other_carrier(&p).await;
    three_carrier_chain(&p, "+4430").await;
}

#[tokio::test]
async fn by_default_a_three_carrier_chain_503_503_200_connects_through_the_third() {
    let _serial = lock().await;
    let Some(p) = Platform::start(Options::default()).await else {
        return;
    };
    three_carrier_chain(&p, "+4430").await;
}

async fn three_carrier_chain(p: &Platform, number: &str) {
    let (x, x_row) = carrier_answering(p, "xray", Answer::Status(503)).await;
    let (y, y_row) = carrier_answering(p, "yankee", Answer::Status(503)).await;
    let (z, z_row) = carrier_answering(p, "zulu", Answer::Connect).await;
    for (priority, row) in [(1, &x_row), (2, &y_row), (3, &z_row)] {
        p.route(number, row, priority, json!({})).await;
    }
    let outcome = p.call(number, Caller::Expect(200)).await;
    assert_status(&outcome, 200, "503 → 503 → 200");
    for (c, name) in [(&x, "xray"), (&y, "yankee"), (&z, "zulu")] {
        assert_eq!(c.invites().len(), 1, "{name} tried once");
    }
}

/// The caller hangs up while the first carrier rings: the second carrier gets no INVITE.
async fn cancel_while_ringing_rings_no_other_carrier(p: &Platform) {
    let (ringing, ringing_row) = carrier_answering(p, "ringing", Answer::RingUntilCancelled).await;
    let (spare, spare_row) = carrier_answering(p, "spare", Answer::Connect).await;
    p.route("+4440", &ringing_row, 1, json!({})).await;
    p.route("+4440", &spare_row, 2, json!({})).await;
    let outcome = p.call("+4440123", Caller::CancelWhileRinging).await;
    assert_status(&outcome, 487, "cancelled while ringing");
    assert_eq!(ringing.invites().len(), 1);
    // The CANCEL travels on to the carrier and the caller's channel ends: a failover leg can
    // only start from that channel, so once the node has none left, none can follow.
    eventually("every channel on the node ended", WAIT, || async {
        p.api("show channels count")
            .await
            .trim()
            .starts_with("0 total")
    })
    .await;
    assert_eq!(spare.invites().len(), 0, "the second carrier got no INVITE");
}

/// Call set-up time (the caller's INVITE to its 200) through a three-carrier chain, in both
/// failover forms, for a chain whose failures have causes of their own (502, 404) and one whose
/// failures come back to trunkline in both (503, 503). Printed for BENCHMARKS.md
/// (`cargo test --test interop setup_time -- --nocapture`), never asserted.
#[tokio::test]
async fn setup_time_of_a_three_carrier_chain_in_both_failover_forms() {
    let _serial = lock().await;
    const CALLS: usize = 15;
    for mode in ["default", "exact"] {
        let Some(p) = Platform::start(Options {
            failover_mode: mode,
            ..Options::default()
        })
        .await
        else {
            return;
        };
        let (_z, last) = carrier_answering(&p, "zulu", Answer::Connect).await;
        for (number, first, second) in [("+4450", 502, 404), ("+4451", 503, 503)] {
            let (_x, x) = carrier_answering(&p, &format!("x{first}"), Answer::Status(first)).await;
            let (_y, y) =
                carrier_answering(&p, &format!("y{second}"), Answer::Status(second)).await;
            for (priority, row) in [(1, &x), (2, &y), (3, &last)] {
                p.route(number, row, priority, json!({})).await;
            }
            let mut took = Vec::new();
            for _ in 0..CALLS {
                let outcome = p.call(number, Caller::Expect(200)).await;
                assert_status(&outcome, 200, "the chain connects");
                took.push(outcome.setup.expect("timed"));
            }
            took.sort();
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            eprintln!(
                "{mode} form, {first} → {second} → 200: set-up over {CALLS} calls: min {:.1} ms, p50 {:.1} ms, max {:.1} ms",
                ms(took[0]),
                ms(took[CALLS / 2]),
                ms(took[CALLS - 1])
            );
        }
    }
}
