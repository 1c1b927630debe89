//! Keeping a FreeSWITCH node's gateways in step over a real Event Socket (TCP), against a fake
//! switch that fetches trunkline's real sofia.conf / acl.conf and obeys sofia's rescan / killgw
//! rules (`support/fake_switch.rs`). Carriers are written through the real API over a real
//! SQLite file; the assertions are on the exact commands the node received and on what it runs.
//! Conditions are awaited with a timeout, never assumed after a sleep. The same scenarios, one
//! pass at a time over an in-memory connection and with nothing to wait for, are in
//! `tests/reconcile.rs`.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use support::app::{TestApp, quick_esl_settings};
use support::fake_switch::FakeSwitch;
use support::process::eventually;
use trunkline::config::Settings;
use trunkline::model::ProfileName;
use trunkline::publish::TemplateSource;
use trunkline::store::Store;
use uuid::Uuid;

const PASSWORD: &str = "ClueCon-test";
const WAIT: Duration = Duration::from_secs(15);

struct Env {
    app: TestApp,
    fake: FakeSwitch,
    switch: Uuid,
}

async fn new_store() -> (String, Store) {
    let fresh = support::db::fresh()
        .await
        .into_iter()
        .next()
        .expect("sqlite");
    (fresh.url, fresh.store)
}

async fn add_switch(store: &Store, fake: &FakeSwitch, password: &str) -> Uuid {
    store
        .create_switch(&fake.as_new_switch(password, true), false)
        .await
        .expect("switch stored")
        .id
}

impl Env {
    /// trunkline with one switch, after its first pass (which reloads the ACL once).
    async fn start() -> Env {
        Env::start_with(quick_esl_settings()).await
    }

    async fn start_with(settings: Settings) -> Env {
        let fake = FakeSwitch::start(PASSWORD).await;
        let (_, store) = new_store().await;
        let switch = add_switch(&store, &fake, PASSWORD).await;
        let env = Env::on_with(fake, store, switch, settings).await;
        env.synced().await;
        env.fake.take_commands();
        env
    }

    async fn on(fake: FakeSwitch, store: Store, switch: Uuid) -> Env {
        Env::on_with(fake, store, switch, quick_esl_settings()).await
    }

    async fn on_with(fake: FakeSwitch, store: Store, switch: Uuid, settings: Settings) -> Env {
        let app = TestApp::start_with("sqlite", store, settings).await;
        fake.set_trunkline(&app.base);
        Env { app, fake, switch }
    }

    /// What trunkline recorded as applied on the node: gateway → fingerprint.
    async fn applied(&self) -> BTreeMap<String, String> {
        let state = self
            .app
            .store
            .switch_sync_state(self.switch)
            .await
            .expect("sync state");
        state
            .applied
            .gateways
            .into_iter()
            .map(|(g, a)| (g.to_string(), a.fingerprint))
            .collect()
    }

    /// Waits for a converged pass of the current configuration version.
    async fn synced(&self) {
        eventually("a converged pass of the current version", WAIT, || async {
            let Ok(state) = self.app.store.switch_sync_state(self.switch).await else {
                return false;
            };
            let Ok(version) = self.app.store.config_version().await else {
                return false;
            };
            let view = self.switch_view().await;
            state.applied.acl.is_some()
                && view["synced_version"] == version
                && view["pending_operations"] == 0
        })
        .await;
    }

    /// Waits for a converged pass that finished after `before` (a `last_sync_at` seen earlier),
    /// and then for the current version.
    async fn pass_after(&self, before: &Value) {
        assert!(before.is_string(), "a pass before: {before}");
        eventually("a pass finished after the event", WAIT, || async {
            let now = self.switch_view().await["last_sync_at"].clone();
            now.is_string() && now != *before
        })
        .await;
        self.synced().await;
    }

    async fn switch_view(&self) -> Value {
        self.app.switch_view(self.switch).await
    }

    async fn carrier(&self, gateway: &str, extra: Value) -> Uuid {
        self.app.platform_carrier(gateway, extra).await
    }

    async fn patch(&self, carrier: Uuid, body: Value) {
        self.app.patch_carrier(carrier, body).await
    }

    /// The commands that change the node (rescan, killgw, reloadacl), in order.
    fn mutations(&self) -> Vec<String> {
        self.fake
            .take_commands()
            .into_iter()
            .filter(|c| c.starts_with("api sofia profile") || c == "api reloadacl")
            .collect()
    }

    async fn runs_port(&self, gateway: &str, port: u16) {
        let want = format!("sip.{gateway}.example:{port}");
        eventually(&format!("{gateway} running on {want}"), WAIT, || async {
            self.fake
                .gateway(gateway)
                .is_some_and(|g| g.param("proxy") == Some(want.as_str()))
        })
        .await;
    }
}

#[tokio::test]
async fn a_new_carrier_is_one_rescan_and_the_gateway_appears() {
    let env = Env::start().await;
    env.carrier("alpha", json!({})).await;
    env.runs_port("alpha", 5060).await;
    env.synced().await;
    assert_eq!(env.mutations(), ["api sofia profile external rescan"]);
    assert!(env.applied().await.contains_key("alpha"));
}

#[tokio::test]
async fn changed_params_are_killgw_then_rescan_and_the_node_runs_the_new_ones() {
    let env = Env::start().await;
    let alpha = env.carrier("alpha", json!({})).await;
    env.runs_port("alpha", 5060).await;
    env.synced().await;
    env.fake.take_commands();

    env.patch(alpha, json!({"remote_port": 5080})).await;
    env.runs_port("alpha", 5080).await;
    env.synced().await;
    assert_eq!(
        env.mutations(),
        [
            "api sofia profile external killgw alpha",
            "api sofia profile external rescan"
        ]
    );
}

#[tokio::test]
async fn an_archived_carrier_is_killed_and_others_are_untouched() {
    let env = Env::start().await;
    let alpha = env.carrier("alpha", json!({})).await;
    env.carrier("bravo", json!({})).await;
    env.runs_port("alpha", 5060).await;
    env.runs_port("bravo", 5060).await;
    env.synced().await;
    env.fake.take_commands();

    let reply = env
        .app
        .delete(&format!("/api/v1/carriers/{alpha}"), &env.app.admin)
        .await;
    assert!(reply.status.is_success(), "{}", reply.text);
    eventually("alpha gone", WAIT, || async {
        env.fake.gateway("alpha").is_none()
    })
    .await;
    eventually("alpha forgotten", WAIT, || async {
        !env.applied().await.contains_key("alpha")
    })
    .await;
    env.synced().await;
    assert_eq!(env.mutations(), ["api sofia profile external killgw alpha"]);
    assert!(env.fake.gateway("bravo").is_some());
}

#[tokio::test]
async fn an_inbound_ip_change_is_one_reloadacl() {
    let env = Env::start().await;
    let alpha = env.carrier("alpha", json!({})).await;
    env.runs_port("alpha", 5060).await;
    env.synced().await;
    env.fake.take_commands();
    let fetches = env.fake.acl_fetches();

    env.patch(alpha, json!({"inbound_ips": ["203.0.113.7/32"]}))
        .await;
    eventually("acl.conf fetched", WAIT, || async {
        env.fake.acl_fetches() > fetches
    })
    .await;
    env.synced().await;
    assert_eq!(env.mutations(), ["api reloadacl"]);
}

#[tokio::test]
async fn a_change_freeswitch_does_not_see_sends_nothing() {
    let env = Env::start().await;
    let alpha = env.carrier("alpha", json!({})).await;
    env.runs_port("alpha", 5060).await;
    env.synced().await;
    env.fake.take_commands();
    let before = env.app.store.config_version().await.unwrap();

    env.patch(
        alpha,
        json!({"add_prefix": "99", "leg_progress_timeout_seconds": 9}),
    )
    .await;
    eventually("the change published", WAIT, || async {
        env.app.store.config_version().await.unwrap() > before
    })
    .await;
    // A full pass after the change: the node was read and left alone.
    eventually("a pass after the change", WAIT, || async {
        env.fake
            .commands()
            .iter()
            .any(|c| c == "api sofia xmlstatus gateway")
    })
    .await;
    env.synced().await;
    assert!(env.mutations().is_empty());
}

#[tokio::test]
async fn a_burst_of_fifty_changes_coalesces_into_few_commands() {
    // Each pass waits one debounce after the first change it sees, so the number of rescans is
    // at most the number of debounce windows the burst spans, plus one. A 1 s window keeps
    // that small however slowly a loaded machine serves the fifty API writes.
    let mut settings = quick_esl_settings();
    settings.esl.debounce = Duration::from_secs(1);
    let env = Env::start_with(settings).await;
    for i in 0..50 {
        env.carrier(&format!("gw-{i:02}"), json!({})).await;
    }
    eventually("all fifty running", WAIT, || async {
        env.fake.running().len() == 50
    })
    .await;
    env.synced().await;
    let commands = env.mutations();
    assert!(!commands.is_empty() && commands.len() <= 5, "{commands:?}");
    assert!(
        commands
            .iter()
            .all(|c| c == "api sofia profile external rescan"),
        "{commands:?}"
    );
}

#[tokio::test]
async fn after_a_reconnect_unchanged_gateways_are_not_killed() {
    let env = Env::start().await;
    env.carrier("alpha", json!({"register": true, "type": "register_trunk", "auth_username": "acct", "auth_password": "pw-1"})).await;
    env.carrier("bravo", json!({})).await;
    eventually("both running", WAIT, || async {
        env.fake.running().len() == 2
    })
    .await;
    env.synced().await;
    let uuid = env.fake.core_uuid();
    env.fake.take_commands();
    let before = env.switch_view().await["last_sync_at"].clone();

    env.fake.drop_connections();
    // Not "xmlstatus received": the live state from before the drop would already satisfy a
    // wait for a synced view, and a killgw after it would go unseen. A pass that finished
    // after the reconnect moves last_sync_at.
    env.pass_after(&before).await;
    assert!(
        env.fake
            .commands()
            .iter()
            .any(|c| c == "api sofia xmlstatus gateway"),
        "the reconnect re-read what runs"
    );
    assert!(env.mutations().is_empty(), "{:?}", env.mutations());
    assert_eq!(env.fake.core_uuid(), uuid);
}

#[tokio::test]
async fn a_freeswitch_restart_loading_trunklines_sofia_conf_needs_no_killgw() {
    let env = Env::start().await;
    env.carrier("alpha", json!({})).await;
    env.carrier("bravo", json!({})).await;
    eventually("both running", WAIT, || async {
        env.fake.running().len() == 2
    })
    .await;
    env.synced().await;
    env.fake.take_commands();
    let before = env.switch_view().await["last_sync_at"].clone();

    env.fake.restart().await;
    let uuid = env.fake.core_uuid();
    eventually("the new Core-UUID seen", WAIT, || async {
        env.switch_view().await["core_uuid"] == uuid.as_str()
    })
    .await;
    env.pass_after(&before).await;
    assert!(env.mutations().is_empty(), "{:?}", env.mutations());
}

#[tokio::test]
async fn changes_committed_while_the_node_is_down_are_applied_when_it_returns() {
    let env = Env::start().await;
    let alpha = env.carrier("alpha", json!({})).await;
    env.runs_port("alpha", 5060).await;
    env.synced().await;

    env.fake.down();
    eventually("seen down", WAIT, || async {
        env.switch_view().await["connection"] != "connected"
    })
    .await;
    env.patch(alpha, json!({"remote_port": 5070})).await;
    for i in 0..100 {
        env.carrier(&format!("late-{i:03}"), json!({})).await;
    }
    env.fake.take_commands();
    env.fake.up();

    env.runs_port("alpha", 5070).await;
    eventually("all 101 running", WAIT, || async {
        env.fake.running().len() == 101
    })
    .await;
    env.synced().await;
    let commands = env.mutations();
    assert_eq!(
        commands[0], "api sofia profile external killgw alpha",
        "{commands:?}"
    );
    assert!(commands.len() <= 3, "{commands:?}");
}

#[tokio::test]
async fn a_connection_dropped_in_the_middle_of_a_command_still_converges() {
    let env = Env::start().await;
    env.fake.drop_after("sofia profile external rescan");
    env.carrier("alpha", json!({})).await;
    env.runs_port("alpha", 5060).await;
    env.synced().await;
    assert!(env.applied().await.contains_key("alpha"));
}

#[tokio::test]
async fn a_trunkline_restart_resumes_pending_work() {
    let fake = FakeSwitch::start(PASSWORD).await;
    let (url, store) = new_store().await;
    let switch = add_switch(&store, &fake, PASSWORD).await;
    let env = Env::on(fake.clone(), store, switch).await;
    env.synced().await;
    let alpha = env.carrier("alpha", json!({})).await;
    env.runs_port("alpha", 5060).await;
    env.synced().await;

    // The node goes away, a change is committed, trunkline stops before it could act.
    fake.down();
    env.patch(alpha, json!({"remote_port": 5090})).await;
    let old_store = env.app.store.clone();
    drop(env);
    // Stopped means its supervisor has let go of the switch: only then may the node return,
    // or the stopping instance could still act on it.
    eventually("the stopped instance released the switch", WAIT, || async {
        old_store
            .take_switch_lease(switch, "test-probe", Duration::from_secs(1))
            .await
            .unwrap_or(false)
    })
    .await;
    old_store
        .release_switch_lease(switch, "test-probe")
        .await
        .unwrap();
    fake.up();
    fake.take_commands();

    let store = Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let env = Env::on(fake, store, switch).await;
    env.runs_port("alpha", 5090).await;
    env.synced().await;
    // The restarted instance replaces alpha. On a slow machine a pass can find the killed
    // gateway not yet reaped when it verifies, and repeat the pair: that is the retry, never
    // another command or another gateway.
    let commands = env.mutations();
    let pair = [
        "api sofia profile external killgw alpha",
        "api sofia profile external rescan",
    ];
    assert_eq!(commands[..2], pair, "{commands:?}");
    assert!(commands.chunks(2).all(|c| c == pair), "{commands:?}");
}

#[tokio::test]
async fn a_wrong_password_is_reported_and_not_hammered() {
    let fake = FakeSwitch::start(PASSWORD).await;
    let (_, store) = new_store().await;
    let switch = add_switch(&store, &fake, "wrong-password").await;
    let env = Env::on(fake, store, switch).await;
    eventually("auth_failed shown", WAIT, || async {
        env.switch_view().await["connection"] == "auth_failed"
    })
    .await;
    assert_eq!(env.fake.auth_attempts(), 1);
    let view = env.switch_view().await;
    assert!(!view.to_string().contains("wrong-password"), "{view}");
    assert_eq!(view["has_password"], true);
}

#[tokio::test]
async fn two_instances_on_one_database_only_the_lease_holder_acts() {
    // On PostgreSQL too (CI): that is where several instances share one database.
    for fresh in support::db::fresh().await {
        let label = fresh.label;
        let fake = FakeSwitch::start(PASSWORD).await;
        let switch = add_switch(&fresh.store, &fake, PASSWORD).await;
        let first = Env::on(fake.clone(), fresh.store, switch).await;
        first.synced().await;
        let second_store = Store::connect(&fresh.url).await.unwrap();
        let second = Env::on(fake.clone(), second_store, switch).await;
        eventually(
            &format!("{label}: the second instance stands by"),
            WAIT,
            || async { second.switch_view().await["connection"] == "standby" },
        )
        .await;
        assert_eq!(
            fake.auth_attempts(),
            1,
            "{label}: only the holder connected"
        );

        // The holder stops: the other takes over and acts.
        drop(first);
        eventually(
            &format!("{label}: the second instance took over"),
            WAIT,
            || async { second.switch_view().await["connection"] == "connected" },
        )
        .await;
        second.carrier("alpha", json!({})).await;
        second.runs_port("alpha", 5060).await;
    }
}

#[tokio::test]
async fn a_carriers_status_shows_its_gateway_on_every_switch() {
    let env = Env::start().await;
    let alpha = env.carrier("alpha", json!({})).await;
    env.runs_port("alpha", 5060).await;
    env.synced().await;
    let path = format!("/api/v1/carriers/{alpha}/status");
    eventually("the live state shows alpha", WAIT, || async {
        env.app.get(&path, &env.app.admin).await.body["switches"][0]["exists"] == true
    })
    .await;
    let status = env.app.get(&path, &env.app.admin).await.body;
    let on_fs1 = &status["switches"][0];
    assert_eq!(status["gateway_name"], "alpha");
    assert_eq!(on_fs1["switch"], "fs1");
    assert_eq!(on_fs1["connection"], "connected");
    // An IP-authenticated trunk (register=false) is NOREG and UP at once (FREESWITCH.md §2.2).
    assert_eq!(
        (on_fs1["state"].as_str(), on_fs1["status"].as_str()),
        (Some("NOREG"), Some("UP"))
    );
    assert_eq!(on_fs1["last_reconcile"]["result"], "ok");

    // Tenants read platform carriers' status; another tenant's carrier stays invisible.
    let owner = env.app.tenant("Owner", None, true).await;
    let other = env.app.tenant("Other", None, true).await;
    let token = env
        .app
        .tenant_token(other, trunkline::model::Scope::ALL)
        .await;
    assert_eq!(
        env.app.get(&path, &token).await.status,
        reqwest::StatusCode::OK
    );
    let owned = env.carrier("owned", json!({"tenant_id": owner})).await;
    let owned_path = format!("/api/v1/carriers/{owned}/status");
    assert_eq!(
        env.app.get(&owned_path, &token).await.status,
        reqwest::StatusCode::NOT_FOUND
    );
}

/// The metrics count this test's own work: the switch gets a name no other test uses (a rename
/// restarts its supervisor, so every label carries the new name), and every `xmlstatus` the
/// node received, the named checks of the verification included, is one count.
#[tokio::test]
async fn metrics_count_every_command_the_node_received() {
    let env = Env::start().await;
    let renamed = env
        .app
        .patch(
            &format!("/api/v1/switches/{}", env.switch),
            &env.app.admin,
            json!({"name": "fs-metrics"}),
        )
        .await;
    assert_eq!(renamed.status, reqwest::StatusCode::OK, "{}", renamed.text);
    env.synced().await;
    let metrics = || async {
        let text = env.app.metrics().await;
        let of = |name: &str, labels: &[&str]| {
            support::app::metric_value(&text, name, &[&["switch=\"fs-metrics\""], labels].concat())
        };
        (
            of("trunkline_esl_commands_total", &["command=\"xmlstatus\""]),
            of("trunkline_esl_commands_total", &["command=\"rescan\""]),
            of("trunkline_reconcile_total", &["result=\"ok\""]),
        )
    };
    let alpha = env.carrier("alpha", json!({})).await;
    env.runs_port("alpha", 5060).await;
    env.synced().await;
    let (xmlstatus_before, rescans_before, passes_before) = metrics().await;
    env.fake.take_commands();

    // A changed gateway is killed, rescanned and then checked by name.
    env.patch(alpha, json!({"remote_port": 5070})).await;
    env.runs_port("alpha", 5070).await;
    env.synced().await;

    let (xmlstatus, rescans, passes) = metrics().await;
    let received = env.fake.commands();
    let count = |prefix: &str| received.iter().filter(|c| c.starts_with(prefix)).count() as f64;
    assert_eq!(
        xmlstatus - xmlstatus_before,
        count("api sofia xmlstatus gateway"),
        "{received:?}"
    );
    assert!(
        received
            .iter()
            .any(|c| c == "api sofia xmlstatus gateway alpha"),
        "the named check ran: {received:?}"
    );
    assert_eq!(
        rescans - rescans_before,
        count("api sofia profile external rescan")
    );
    assert!(passes > passes_before, "a converged pass counted");
}

#[tokio::test]
async fn switches_are_for_platform_admins_only_and_never_show_their_password() {
    for (label, store) in support::db::backends().await {
        let app = TestApp::start_with(&label, store, quick_esl_settings()).await;
        let admin = app.admin.clone();
        // Disabled: nothing listens on port 1, and no supervisor is started for it.
        let created = app
            .create(
                "/api/v1/switches",
                &admin,
                json!({"name": "fs-a", "esl_host": "127.0.0.1", "esl_port": 1,
                       "esl_password": "Secret-ESL-pw", "enabled": false}),
            )
            .await;
        let id = created["id"].as_str().unwrap().to_string();
        assert_eq!(created["has_password"], true);
        assert_eq!(created["connection"], "disabled");
        assert_eq!(created["profiles"], json!(["external"]));
        let path = format!("/api/v1/switches/{id}");

        let patched = app
            .patch(
                &path,
                &admin,
                json!({"name": "fs-b", "profiles": ["external", "carriers"]}),
            )
            .await;
        assert_eq!(patched.status, reqwest::StatusCode::OK, "{}", patched.text);
        assert_eq!(patched.body["name"], "fs-b");
        let listed = app.get("/api/v1/switches", &admin).await;
        assert_eq!(listed.body.as_array().unwrap().len(), 1);
        for reply in [&patched, &listed, &app.get(&path, &admin).await] {
            assert!(
                !reply.text.contains("Secret-ESL-pw"),
                "{label}: {}",
                reply.text
            );
        }

        for (body, field) in [
            (
                json!({"name": "fs-c", "esl_host": "${system id}", "esl_password": "x1"}),
                "esl_host",
            ),
            (
                json!({"name": "fs c", "esl_host": "127.0.0.1", "esl_password": "x1"}),
                "name",
            ),
            (
                json!({"name": "fs-c", "esl_host": "127.0.0.1", "esl_port": 70000, "esl_password": "x1"}),
                "esl_port",
            ),
            (
                json!({"name": "fs-c", "esl_host": "127.0.0.1", "esl_password": "a b"}),
                "esl_password",
            ),
            (
                json!({"name": "fs-c", "esl_host": "127.0.0.1", "esl_password": "x1", "profiles": ["ex ternal"]}),
                "profiles[0]",
            ),
        ] {
            let reply = app.post("/api/v1/switches", &admin, body).await;
            assert_eq!(
                reply.status,
                reqwest::StatusCode::UNPROCESSABLE_ENTITY,
                "{label}: {}",
                reply.text
            );
            assert!(
                reply.error_fields().iter().any(|f| f == field),
                "{label}: {field}: {}",
                reply.text
            );
        }
        let duplicate = app
            .post(
                "/api/v1/switches",
                &admin,
                json!({"name": "fs-b", "esl_host": "127.0.0.2", "esl_password": "x1"}),
            )
            .await;
        assert_eq!(
            duplicate.status,
            reqwest::StatusCode::CONFLICT,
            "{label}: {}",
            duplicate.text
        );

        // A tenant admin with every scope is refused on every switch endpoint; no token is 401.
        let tenant = app.tenant("T", None, true).await;
        let token = app.tenant_token(tenant, trunkline::model::Scope::ALL).await;
        let body = json!({"name": "fs-t", "esl_host": "127.0.0.1", "esl_password": "x1"});
        let attempts = [
            (reqwest::Method::GET, "/api/v1/switches".to_string(), None),
            (
                reqwest::Method::POST,
                "/api/v1/switches".to_string(),
                Some(body.clone()),
            ),
            (reqwest::Method::GET, path.clone(), None),
            (
                reqwest::Method::PATCH,
                path.clone(),
                Some(json!({"enabled": true})),
            ),
            (reqwest::Method::DELETE, path.clone(), None),
        ];
        for (method, p, body) in &attempts {
            let reply = app
                .send(method.clone(), p, Some(&token), body.as_ref())
                .await;
            assert_eq!(
                reply.status,
                reqwest::StatusCode::FORBIDDEN,
                "{label} {method} {p}"
            );
            let anonymous = app.send(method.clone(), p, None, body.as_ref()).await;
            assert_eq!(
                anonymous.status,
                reqwest::StatusCode::UNAUTHORIZED,
                "{label} {method} {p}"
            );
        }
        assert_eq!(
            app.get(&path, &admin).await.body["name"],
            "fs-b",
            "{label}: unchanged"
        );

        assert_eq!(
            app.delete(&path, &admin).await.status,
            reqwest::StatusCode::NO_CONTENT
        );
        assert_eq!(
            app.get(&path, &admin).await.status,
            reqwest::StatusCode::NOT_FOUND
        );
    }
}

#[tokio::test]
async fn a_carrier_moved_to_another_profile_is_killed_then_rescanned_there() {
    // A second sofia profile: the shipped `external` template served as `carriers` too.
    let templates = support::db::dir_until_exit();
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    std::fs::create_dir_all(templates.join("sofia")).unwrap();
    std::fs::copy(shipped.join("acl.conf.xml"), templates.join("acl.conf.xml")).unwrap();
    for profile in ["external", "carriers"] {
        std::fs::copy(
            shipped.join("sofia/external.xml"),
            templates.join(format!("sofia/{profile}.xml")),
        )
        .unwrap();
    }
    let mut settings = quick_esl_settings();
    settings.templates = TemplateSource::Directory(templates);
    let fake = FakeSwitch::start(PASSWORD).await;
    let (_, store) = new_store().await;
    let mut two_profiles = fake.as_new_switch(PASSWORD, true);
    two_profiles.profiles = vec![
        ProfileName::external(),
        ProfileName::parse("carriers").unwrap(),
    ];
    let switch = store.create_switch(&two_profiles, false).await.unwrap().id;
    let env = Env::on_with(fake, store, switch, settings).await;
    let alpha = env.carrier("alpha", json!({})).await;
    env.runs_port("alpha", 5060).await;
    env.synced().await;
    env.fake.take_commands();

    env.patch(alpha, json!({"profile": "carriers"})).await;
    eventually("alpha running on the carriers profile", WAIT, || async {
        env.fake
            .gateway("alpha")
            .is_some_and(|g| g.profile == "carriers" && !g.deleted)
    })
    .await;
    env.synced().await;

    // Gateway names are global across profiles (FREESWITCH.md §2.2): the old one must go
    // before the new profile's rescan can add it.
    assert_eq!(
        env.mutations(),
        [
            "api sofia profile external killgw alpha",
            "api sofia profile carriers rescan"
        ]
    );
}
