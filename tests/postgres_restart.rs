//! PostgreSQL stopped and started again under a running trunkline: while it is down the xml_curl
//! endpoint keeps bridging calls from the last snapshot, `/readyz` and the
//! `trunkline_snapshot_stale` metric say so, and the API answers 503 in its JSON error shape;
//! once it is back trunkline reconnects by itself — the API writes again and the NOTIFY change
//! feed delivers another instance's write.
//!
//! This stops the whole test server, so it is the only test in this binary (cargo runs test
//! binaries one after another; tests inside one binary run in parallel). It needs
//! `TEST_DATABASE_URL`, `TEST_PG_CTL` and `TEST_PG_DATA` (`.ci/run` exports all three) and is
//! skipped with a notice otherwise.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use support::app::{TestApp, bridges, call, test_settings};
use support::process::eventually;
use trunkline::store::Store;

const WAIT: Duration = Duration::from_secs(60);
/// "Within seconds": the stale snapshot is retried every 2 s (`app.rs`).
const PROMPTLY: Duration = Duration::from_secs(10);

/// Runs `pg_ctl <args>` on the test server, as the `postgres` user when we are root (the
/// server refuses to run as root); whether it succeeded.
fn pg_ctl_ok(pg_ctl: &str, data: &str, args: &str) -> bool {
    let command = format!("'{pg_ctl}' -D '{data}' {args}");
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n");
    let status = if root {
        Command::new("su")
            .args(["postgres", "-c", &command])
            .status()
    } else {
        Command::new("sh").args(["-c", &command]).status()
    };
    status.is_ok_and(|s| s.success())
}

/// The stopped server, started again at the latest when this is dropped: a failing assertion
/// must not leave it down for the test binaries that run after this one.
struct Stopped {
    pg_ctl: String,
    data: String,
    running: bool,
}

impl Stopped {
    fn stop(pg_ctl: String, data: String) -> Stopped {
        assert!(
            pg_ctl_ok(&pg_ctl, &data, "-m fast -w stop"),
            "pg_ctl stop failed"
        );
        Stopped {
            pg_ctl,
            data,
            running: false,
        }
    }

    fn start(&mut self) {
        if !self.running {
            let log = format!("-l '{}/restart.log' -w start", self.data);
            self.running = pg_ctl_ok(&self.pg_ctl, &self.data, &log);
            assert!(self.running, "pg_ctl start failed");
        }
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        if !self.running {
            let log = format!("-l '{}/restart.log' -w start", self.data);
            // No assertion here: a panic while unwinding would abort.
            pg_ctl_ok(&self.pg_ctl, &self.data, &log);
        }
    }
}

#[tokio::test]
async fn postgres_stopped_keeps_calls_bridging_and_restarted_is_reconnected_by_itself() {
    let (Ok(pg), Ok(data)) = (std::env::var("TEST_PG_CTL"), std::env::var("TEST_PG_DATA")) else {
        assert!(
            !support::db::in_ci(),
            "CI=true but TEST_PG_CTL / TEST_PG_DATA are not set: the restart test cannot run"
        );
        eprintln!(
            "notice: TEST_PG_CTL / TEST_PG_DATA not set; the PostgreSQL restart test is skipped"
        );
        return;
    };
    let Some(fresh) = support::db::postgres_fresh().await else {
        return;
    };
    // Arrange: a route that bridges, and a safety-net timer that notices the outage within the
    // wait but is far longer than "within seconds".
    let mut settings = test_settings();
    settings.snapshot_refresh = Duration::from_secs(30);
    let app = TestApp::start_with("postgres", fresh.store, settings).await;
    app.route_plus_one_to_alpha().await;
    let fetch = call("trunkline", "+15551234567", None);
    let (_, before) = app.fetch(fetch.clone()).await;
    assert_eq!(bridges(&before).len(), 1, "{before}");
    let metric = |value: &'static str| {
        let app = &app;
        async move {
            let text = app.get("/metrics", &app.admin).await.text;
            text.lines()
                .any(|l| l == format!("trunkline_snapshot_stale {value}"))
        }
    };

    // A scraper reads /metrics before the outage, as Prometheus does every few seconds: while
    // the database is away its token is taken on the strength of that verification.
    assert!(metric("0").await, "a fresh snapshot before the outage");

    // Act 1: the database goes away.
    let mut server = Stopped::stop(pg, data);
    eventually("the snapshot to be marked stale", WAIT, || metric("1")).await;
    let ready = app
        .client
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .unwrap();
    let ready = (ready.status(), ready.text().await.unwrap());
    let (status, during) = app.fetch(fetch.clone()).await;
    let write = app
        .post(
            "/api/v1/carriers",
            &app.admin,
            json!({"name": "Bravo", "gateway_name": "bravo", "remote_host": "sip.bravo.example"}),
        )
        .await;

    // Assert 1: answering from the snapshot, and saying so.
    assert_eq!(ready.0, 503, "{}", ready.1);
    assert_eq!(ready.1, "database unreachable\n");
    assert_eq!(status, 200);
    assert_eq!(bridges(&during), bridges(&before));
    assert_eq!(write.status, 503, "{}", write.text);
    assert_eq!(
        write.body["errors"][0]["detail"],
        "the database is unavailable; try again"
    );

    // Act 2 / Assert 2: back, without a restart of trunkline. Ready within seconds, before
    // any write could have rebuilt the snapshot and long before the safety-net timer.
    server.start();
    eventually(
        "/readyz ready within seconds of the database",
        PROMPTLY,
        || async {
            let ready = app.client.get(format!("{}/readyz", app.base)).send().await;
            ready.is_ok_and(|r| r.status() == 200) && metric("0").await
        },
    )
    .await;
    eventually("the API to write again", WAIT, || async {
        app.post(
            "/api/v1/carriers",
            &app.admin,
            json!({"name": "Bravo", "gateway_name": "bravo", "remote_host": "sip.bravo.example"}),
        )
        .await
        .status
            == 201
    })
    .await;
    eventually("/readyz to be ready and the metric fresh", WAIT, || async {
        let ready = app.client.get(format!("{}/readyz", app.base)).send().await;
        ready.is_ok_and(|r| r.status() == 200) && metric("0").await
    })
    .await;
    // Another instance's write reaches this one through the re-established LISTEN: the change
    // feed (which only NOTIFY and this instance's own writes raise) passes its version, and a
    // call to the new route bridges to the other instance's carrier.
    let other = TestApp::start("postgres", Store::connect(&fresh.url).await.unwrap()).await;
    let mut feed = app.store.subscribe();
    let charlie = other
        .create(
            "/api/v1/carriers",
            &other.admin,
            json!({"name": "Charlie", "gateway_name": "charlie", "remote_host": "sip.charlie.example"}),
        )
        .await;
    other
        .create(
            "/api/v1/outbound-routes",
            &other.admin,
            json!({"name": "UK", "prefix": "+44", "carrier_id": charlie["id"], "priority": 1}),
        )
        .await;
    let version = other.store.config_version().await.unwrap();
    tokio::time::timeout(WAIT, feed.wait_for(|v| *v >= version))
        .await
        .expect("NOTIFY delivered after the restart")
        .unwrap();
    let uk = call("trunkline", "+442071234567", None);
    eventually(
        "the other instance's route in this snapshot",
        WAIT,
        || async {
            let (_, xml) = app.fetch(uk.clone()).await;
            bridges(&xml)
                .iter()
                .any(|b| b.contains("sofia/gateway/charlie/"))
        },
    )
    .await;
}
