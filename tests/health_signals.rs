//! Health signals reach a real HTTP webhook: a breaker opening and closing and a gateway going
//! down and up are each POSTed as JSON, retried when the receiver fails, and never wait on it.

mod support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use chrono::Utc;
use serde_json::Value;
use support::process::eventually_ok;
use tokio::sync::watch;
use trunkline::model::{Attempt, FailoverCodes};
use trunkline::quality::health::BreakerSettings;
use trunkline::quality::signals::{WebhookSettings, spawn_webhook};
use trunkline::quality::{Quality, QualitySettings};
use uuid::Uuid;

#[derive(Clone, Default)]
struct Receiver {
    /// Every body received, in order, with the status answered.
    seen: Arc<Mutex<Vec<(Value, u16)>>>,
    /// Answer 500 to this many requests first.
    fail_first: Arc<Mutex<usize>>,
}

async fn hook(State(r): State<Receiver>, Json(body): Json<Value>) -> StatusCode {
    let status = {
        let mut fail = r.fail_first.lock().unwrap();
        if *fail > 0 {
            *fail -= 1;
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::NO_CONTENT
        }
    };
    r.seen.lock().unwrap().push((body, status.as_u16()));
    status
}

async fn receiver(fail_first: usize) -> (Receiver, String) {
    let r = Receiver {
        fail_first: Arc::new(Mutex::new(fail_first)),
        ..Receiver::default()
    };
    let app = axum::Router::new()
        .route("/hook", post(hook))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (r, url)
}

fn attempt(carrier: Uuid, status: Option<u16>) -> Attempt {
    let now = Utc::now();
    Attempt {
        id: Uuid::now_v7(),
        call_id: Uuid::now_v7(),
        leg_id: Uuid::now_v7(),
        switch_id: None,
        tenant_id: None,
        route_id: None,
        carrier_id: carrier,
        gateway: "alpha".into(),
        number: "15551234567".into(),
        attempt: 1,
        sip_status: status,
        cause: "NORMAL_TEMPORARY_FAILURE".into(),
        q850: Some(41),
        started_at: now,
        progress_at: None,
        answered_at: (status == Some(200)).then_some(now),
        ended_at: now,
        billable_seconds: 0,
        hangup_by: None,
    }
}

async fn bodies_seen(r: &Receiver, n: usize) -> Vec<(Value, u16)> {
    eventually_ok(
        &format!("{n} bodies at the webhook"),
        Duration::from_secs(10),
        || {
            let seen = r.seen.lock().unwrap().clone();
            std::future::ready(match seen.len() >= n {
                true => Ok(seen),
                false => Err(format!("{seen:?}")),
            })
        },
    )
    .await
}

#[tokio::test]
async fn breaker_and_gateway_changes_are_posted_and_a_failing_receiver_is_retried() {
    // The receiver fails the first two tries: the first signal arrives on the third.
    let (r, url) = receiver(2).await;
    let (_stop_tx, stop) = watch::channel(false);
    let settings = WebhookSettings {
        backoff: Duration::from_millis(20),
        ..WebhookSettings::new(url)
    };
    let (signals, _task) = spawn_webhook(settings, stop);
    let quality = Quality::new(
        QualitySettings {
            breaker: BreakerSettings {
                failures: 3,
                ..BreakerSettings::default()
            },
            ..QualitySettings::default()
        },
        signals,
    );
    let carrier = Uuid::now_v7();
    let codes = FailoverCodes::platform_default();
    for _ in 0..3 {
        quality.observe(&attempt(carrier, Some(503)), &codes, "Alpha Telecom");
    }
    quality.observe(&attempt(carrier, Some(200)), &codes, "Alpha Telecom");
    let switch = Uuid::now_v7();
    let down = |gateways: &[&str]| {
        Some(
            gateways
                .iter()
                .map(|g| g.to_string())
                .collect::<HashSet<_>>(),
        )
    };
    quality.node_gateways(switch, "fs1", Some("core-1"), down(&[]));
    quality.node_gateways(switch, "fs1", Some("core-1"), down(&["bravo"]));
    // The same report again is no change; a lost connection is no gateway event.
    quality.node_gateways(switch, "fs1", Some("core-1"), down(&["bravo"]));
    quality.node_gateways(switch, "fs1", None, None);
    quality.node_gateways(switch, "fs1", Some("core-2"), down(&[]));

    let seen = bodies_seen(&r, 2 + 4).await;
    let delivered: Vec<&Value> = seen
        .iter()
        .filter(|(_, status)| *status < 300)
        .map(|(body, _)| body)
        .collect();
    let kinds: Vec<&str> = delivered
        .iter()
        .map(|b| b["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "breaker_opened",
            "breaker_closed",
            "gateway_down",
            "gateway_up"
        ],
        "{seen:?}"
    );
    assert_eq!(seen[0].1, 500);
    assert_eq!(seen[1].1, 500);
    assert_eq!(seen[0].0, seen[2].0, "the same signal, retried");
    let opened = delivered[0];
    assert_eq!(opened["carrier_id"], carrier.to_string());
    assert_eq!(opened["carrier"], "Alpha Telecom");
    assert_eq!(opened["detail"], "3 consecutive carrier failures");
    let down = delivered[2];
    assert_eq!(
        (down["gateway"].as_str(), down["switch"].as_str()),
        (Some("bravo"), Some("fs1"))
    );
    // Nothing more was sent: a last signal, raised after all of them, is the next to arrive
    // (one queue, delivered in order).
    let charlie_down = HashSet::from(["charlie".to_string()]);
    quality.node_gateways(switch, "fs1", Some("core-2"), Some(charlie_down));
    let seen = bodies_seen(&r, 6 + 1).await;
    assert_eq!(seen.len(), 6 + 1, "{seen:?}");
    assert_eq!(seen[6].0["gateway"], "charlie", "{seen:?}");
}

#[tokio::test]
async fn a_webhook_that_never_answers_never_holds_up_the_observer() {
    // It accepts connections and never answers: were observing to wait on it, this test
    // would hang (and the bound below fail it) instead of finishing at once.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = silent.accept().await {
            held.push(conn);
        }
    });
    let (_stop_tx, stop) = watch::channel(false);
    let (signals, _task) = spawn_webhook(
        WebhookSettings::new(format!("http://127.0.0.1:{port}/hook")),
        stop,
    );
    let quality = Quality::new(
        QualitySettings {
            breaker: BreakerSettings {
                failures: 1,
                ..BreakerSettings::default()
            },
            ..QualitySettings::default()
        },
        signals,
    );
    let codes = FailoverCodes::platform_default();
    let observed = tokio::task::spawn_blocking(move || {
        for _ in 0..2000 {
            // Each new carrier's first failure opens its breaker: 2,000 signals for a queue
            // of 1,024 and a receiver that takes none.
            quality.observe(&attempt(Uuid::now_v7(), Some(503)), &codes, "x");
        }
        quality.carriers().len()
    });
    let carriers = tokio::time::timeout(Duration::from_secs(30), observed)
        .await
        .expect("observing never waits on the webhook")
        .unwrap();
    assert_eq!(carriers, 2000);
}

#[tokio::test]
async fn a_receiver_that_redirects_is_a_failed_try_and_the_redirect_target_hears_nothing() {
    // Arrange: the configured receiver answers every POST with 307 to a second receiver.
    let (elsewhere, elsewhere_url) = receiver(0).await;
    let redirects = Arc::new(Mutex::new(0usize));
    let counted = redirects.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move || {
            let counted = counted.clone();
            let to = elsewhere_url.clone();
            async move {
                *counted.lock().unwrap() += 1;
                (
                    StatusCode::TEMPORARY_REDIRECT,
                    [(axum::http::header::LOCATION, to)],
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let (_stop_tx, stop) = watch::channel(false);
    let settings = WebhookSettings {
        tries: 3,
        backoff: Duration::from_millis(10),
        ..WebhookSettings::new(url)
    };
    let (signals, task) = spawn_webhook(settings, stop);

    // Act: one signal; then close the queue, so the sender ends once it has given up on it.
    signals.send(trunkline::quality::signals::Signal {
        kind: trunkline::quality::signals::SignalKind::GatewayDown,
        carrier_id: None,
        carrier: None,
        gateway: "bravo".into(),
        switch: Some("fs1".into()),
        detail: None,
        at: Utc::now(),
    });
    drop(signals);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the sender gives up after its tries")
        .unwrap();

    // Assert: every try reached the redirecting receiver, none went where it pointed.
    assert_eq!(*redirects.lock().unwrap(), 3);
    assert!(elsewhere.seen.lock().unwrap().is_empty());
}
