//! Time from a committed carrier change to the first command on the Event Socket wire (issue 4):
//! trunkline in-process on a SQLite file with one switch, the faithful Event Socket peer of the
//! tests (`tests/support/fake_switch.rs`, which fetches trunkline's real sofia.conf on rescan),
//! and carriers created through the real API. Timed from the moment the API answers 201 (the
//! change is committed and published) to the moment the node has received the `rescan`.
//! Measured with the default debounce (500 ms, which coalesces bursts) and with none.
//!
//! `cargo bench --bench esl_latency`; under `cargo test` a short pass (3 changes).

#[allow(dead_code)]
mod common;
#[allow(dead_code)]
#[path = "../tests/support/fake_switch.rs"]
mod fake_switch;

use std::time::{Duration, Instant};

use fake_switch::FakeSwitch;
use trunkline::app::Application;
use trunkline::config::Settings;
use trunkline::model::{Host, Password, ProfileName};
use trunkline::model::{NewSwitch, SwitchName};
use trunkline::store::Store;

const PASSWORD: &str = "ClueCon-bench";

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    Instant::now()
}

async fn measure(debounce: Duration, changes: usize) -> Vec<Duration> {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("esl.db").display()))
        .await
        .expect("database");
    store.migrate().await.expect("migrate");
    let fake = FakeSwitch::start(PASSWORD).await;
    store
        .create_switch(
            &NewSwitch {
                name: SwitchName::parse("fs1").unwrap(),
                esl_host: Host::parse("127.0.0.1").unwrap(),
                esl_port: fake.addr.port(),
                esl_password: Password::parse(PASSWORD).unwrap(),
                enabled: true,
                profiles: vec![ProfileName::external()],
            },
            false,
        )
        .await
        .expect("switch");
    let token = common::platform_admin_token(&store).await;
    let mut settings = Settings::defaults();
    settings.listen = "127.0.0.1:0".parse().unwrap();
    settings.esl.debounce = debounce;
    let app = Application::with_store(settings, store)
        .await
        .expect("trunkline");
    let base = format!("http://{}", app.local_addr());
    fake.set_trunkline(&base);
    tokio::spawn(app.run(std::future::pending()));
    // The first pass reloads the ACL once; start measuring after it.
    wait_for("the first pass", || fake.acl_fetches() > 0).await;
    tokio::time::sleep(debounce + Duration::from_millis(200)).await;
    fake.take_commands();

    let client = reqwest::Client::new();
    let mut latencies = Vec::with_capacity(changes);
    for i in 0..changes {
        let gateway = format!("gw-{i}");
        let reply = client
            .post(format!("{base}/api/v1/carriers"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"name": gateway, "gateway_name": gateway, "remote_host": "sip.example.net"}))
            .send()
            .await
            .expect("create");
        assert_eq!(reply.status(), reqwest::StatusCode::CREATED);
        let committed = Instant::now();
        let on_wire = wait_for("the rescan", || {
            fake.commands().iter().any(|c| c.ends_with("rescan"))
        })
        .await;
        latencies.push(on_wire - committed);
        wait_for("the gateway running", || fake.gateway(&gateway).is_some()).await;
        // Let the verifying pass finish before the next change.
        tokio::time::sleep(debounce + Duration::from_millis(200)).await;
        fake.take_commands();
    }
    latencies.sort();
    latencies
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let changes = if common::benchmarking() { 20 } else { 3 };
    println!("| debounce | changes | p50 ms | max ms |");
    println!("|---|---|---|---|");
    for debounce in [Duration::from_millis(500), Duration::ZERO] {
        let l = measure(debounce, changes).await;
        println!(
            "| {} ms | {} | {:.1} | {:.1} |",
            debounce.as_millis(),
            l.len(),
            l[l.len() / 2].as_secs_f64() * 1000.0,
            l[l.len() - 1].as_secs_f64() * 1000.0
        );
    }
}
