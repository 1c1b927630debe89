//! One reconcile pass at a time, over an in-memory Event Socket connection
//! (`support/fake_switch.rs`, [`MemoryConnection`]) to the same sofia model the TCP tests use:
//! the exact commands a pass sends, in order, and what it records, with nothing to wait for.
//! Carriers are written through the real API over a real SQLite file; the pass reads the
//! snapshot its own publisher builds from that database, as the supervisor's does.
//! `tests/esl.rs` keeps the same scenarios over TCP, with the supervisor's triggers.

mod support;

use std::sync::Arc;

use serde_json::{Value, json};
use support::app::{TestApp, test_settings};
use support::fake_switch::{FakeSwitch, MemoryConnection};
use trunkline::esl::client::{EslConnection, EslError, EslTarget};
use trunkline::esl::live::LiveState;
use trunkline::esl::supervisor::{EslSettings, SyncContext, reconcile_once};
use trunkline::model::Switch;
use trunkline::publish::Publisher;
use uuid::Uuid;

const PASSWORD: &str = "ClueCon-test";
const LIST: &str = "api sofia xmlstatus gateway";
const RESCAN: &str = "api sofia profile external rescan";

/// A node, the API that changes what it should run, and a pass that can be run by hand.
struct Node {
    app: TestApp,
    fake: FakeSwitch,
    ctx: SyncContext,
    switch: Switch,
    conn: MemoryConnection,
}

impl Node {
    /// A node after its first pass (which loads the ACL once).
    async fn start() -> Node {
        let fake = FakeSwitch::start(PASSWORD).await;
        let store = support::db::fresh()
            .await
            .into_iter()
            .next()
            .expect("sqlite")
            .store;
        // Stored disabled, so the application's own supervisor leaves this node to the test; a
        // pass does not look at the flag (the session does, before each pass).
        let switch = store
            .create_switch(&fake.as_new_switch(PASSWORD, false), false)
            .await
            .expect("switch stored");
        let settings = test_settings();
        let publisher = Publisher::start(
            store.clone(),
            &settings.templates,
            &settings.template_vars,
            settings.publish(),
        )
        .await
        .expect("publisher");
        fake.read_config_from(publisher.published());
        let ctx = SyncContext {
            store: store.clone(),
            published: publisher.published(),
            publisher: Arc::new(publisher),
            settings: EslSettings::default(),
            instance: "pass-test".into(),
            live: Arc::new(LiveState::default()),
            // These passes route no call: what they report of the gateways goes nowhere.
            sink: Arc::new(trunkline::esl::feed::Discard),
        };
        let node = Node {
            app: TestApp::start_with("sqlite", store, settings).await,
            conn: fake.connect_in_memory(),
            fake,
            ctx,
            switch,
        };
        let (converged, commands) = node.pass().await;
        assert!(converged, "{commands:?}");
        assert_eq!(commands, [LIST, "api reloadacl", LIST]);
        node
    }

    /// Runs one pass; whether it converged, and every command it sent, in order.
    async fn pass(&self) -> (bool, Vec<String>) {
        self.fake.take_commands();
        let converged = reconcile_once(&self.ctx, &self.switch, &self.conn, "core-1")
            .await
            .expect("a pass");
        (converged, self.fake.take_commands())
    }

    async fn carrier(&self, gateway: &str, extra: Value) -> Uuid {
        self.app.platform_carrier(gateway, extra).await
    }

    async fn patch(&self, carrier: Uuid, body: Value) {
        self.app.patch_carrier(carrier, body).await
    }

    /// Gateway names trunkline recorded as applied on the node.
    async fn applied(&self) -> Vec<String> {
        let state = self.ctx.store.switch_sync_state(self.switch.id).await;
        let gateways = state.expect("sync state").applied.gateways;
        gateways.keys().map(ToString::to_string).collect()
    }

    /// Runs a pass and checks that it replaced `gateway`. killgw only marks the gateway
    /// deleted and the list keeps it (FREESWITCH.md §0.7): the named form is what proves the
    /// new one runs.
    async fn pass_replaces(&self, gateway: &str) {
        let (converged, commands) = self.pass().await;
        assert!(converged, "{commands:?}");
        assert_eq!(
            commands,
            [LIST, &killgw(gateway), RESCAN, LIST, &named(gateway)]
        );
    }

    fn port_of(&self, gateway: &str) -> Option<String> {
        let running = self.fake.gateway(gateway)?;
        running.param("proxy").map(str::to_string)
    }
}

/// A registering trunk: its password is a parameter FreeSWITCH does not show.
fn registering() -> Value {
    json!({"register": true, "type": "register_trunk", "auth_username": "acct", "auth_password": "pw-1"})
}

fn named(gateway: &str) -> String {
    format!("{LIST} {gateway}")
}

fn killgw(gateway: &str) -> String {
    format!("api sofia profile external killgw {gateway}")
}

#[tokio::test]
async fn a_new_carrier_is_read_rescan_read_then_nothing() {
    let node = Node::start().await;
    node.carrier("alpha", json!({})).await;

    let (converged, commands) = node.pass().await;
    assert!(converged);
    assert_eq!(commands, [LIST, RESCAN, LIST]);
    assert_eq!(
        node.port_of("alpha").as_deref(),
        Some("sip.alpha.example:5060")
    );
    assert_eq!(node.applied().await, ["alpha"]);

    let (converged, commands) = node.pass().await;
    assert!(converged);
    assert_eq!(commands, [LIST], "a converged node is only read");
}

#[tokio::test]
async fn changed_params_are_killgw_then_rescan_then_the_named_check() {
    let node = Node::start().await;
    let alpha = node.carrier("alpha", json!({})).await;
    node.carrier("bravo", json!({})).await;
    node.pass().await;

    node.patch(alpha, json!({"remote_port": 5080})).await;
    node.pass_replaces("alpha").await;
    assert_eq!(
        node.port_of("alpha").as_deref(),
        Some("sip.alpha.example:5080")
    );
    assert_eq!(
        node.port_of("bravo").as_deref(),
        Some("sip.bravo.example:5060")
    );
}

#[tokio::test]
async fn a_password_change_freeswitch_cannot_show_still_replaces_the_gateway() {
    let node = Node::start().await;
    let alpha = node.carrier("alpha", registering()).await;
    node.pass().await;

    node.patch(alpha, json!({"auth_password": "pw-2"})).await;
    node.pass_replaces("alpha").await;
    assert_eq!(
        node.fake.gateway("alpha").unwrap().param("password"),
        Some("pw-2")
    );
}

#[tokio::test]
async fn a_change_that_is_not_a_gateway_parameter_only_reads() {
    let node = Node::start().await;
    let alpha = node.carrier("alpha", json!({})).await;
    node.pass().await;

    node.patch(
        alpha,
        json!({"add_prefix": "99", "leg_progress_timeout_seconds": 9}),
    )
    .await;
    assert_eq!(node.pass().await, (true, vec![LIST.to_string()]));
}

#[tokio::test]
async fn an_archived_carrier_is_killed_and_forgotten_once_the_node_hides_it() {
    let node = Node::start().await;
    let alpha = node.carrier("alpha", json!({})).await;
    node.carrier("bravo", json!({})).await;
    node.pass().await;

    let reply = node
        .app
        .delete(&format!("/api/v1/carriers/{alpha}"), &node.app.admin)
        .await;
    assert!(reply.status.is_success(), "{}", reply.text);
    let (converged, commands) = node.pass().await;
    assert!(converged, "{commands:?}");
    assert_eq!(commands, [LIST, &killgw("alpha"), LIST, &named("alpha")]);
    assert!(node.fake.gateway("alpha").is_none());
    assert_eq!(node.applied().await, ["bravo"]);
}

#[tokio::test]
async fn an_inbound_ip_change_is_one_reloadacl() {
    let node = Node::start().await;
    let alpha = node.carrier("alpha", json!({})).await;
    node.pass().await;
    let fetches = node.fake.acl_fetches();

    node.patch(alpha, json!({"inbound_ips": ["203.0.113.7/32"]}))
        .await;
    let (converged, commands) = node.pass().await;
    assert!(converged, "{commands:?}");
    assert_eq!(commands, [LIST, "api reloadacl", LIST]);
    assert_eq!(node.fake.acl_fetches(), fetches + 1);
}

#[tokio::test]
async fn after_a_reconnect_unchanged_gateways_are_only_read() {
    let mut node = Node::start().await;
    node.carrier("alpha", registering()).await;
    node.carrier("bravo", json!({})).await;
    node.pass().await;

    node.fake.drop_connections();
    let gone = reconcile_once(&node.ctx, &node.switch, &node.conn, "core-1").await;
    assert!(
        gone.as_ref().is_err_and(|e| e.is_fatal()),
        "the dropped connection ends the pass: {gone:?}"
    );
    node.conn = node.fake.connect_in_memory();
    assert_eq!(node.pass().await, (true, vec![LIST.to_string()]));
}

#[tokio::test]
async fn a_freeswitch_restart_on_trunklines_sofia_conf_needs_no_command() {
    let mut node = Node::start().await;
    node.carrier("alpha", json!({})).await;
    node.carrier("bravo", json!({})).await;
    node.pass().await;

    node.fake.restart().await;
    node.conn = node.fake.connect_in_memory();
    assert_eq!(node.pass().await, (true, vec![LIST.to_string()]));
    assert_eq!(node.fake.running().len(), 2);
}

#[tokio::test]
async fn a_connection_dropped_after_the_rescan_ran_is_adopted_on_the_next_connection() {
    let mut node = Node::start().await;
    node.fake.drop_after("sofia profile external rescan");
    node.carrier("alpha", json!({})).await;

    let dropped = reconcile_once(&node.ctx, &node.switch, &node.conn, "core-1").await;
    assert!(dropped.is_err_and(|e| e.is_fatal()));
    assert!(node.fake.gateway("alpha").is_some(), "the rescan ran");
    assert!(node.applied().await.is_empty(), "nothing verified yet");

    node.conn = node.fake.connect_in_memory();
    let (converged, commands) = node.pass().await;
    assert!(converged, "{commands:?}");
    assert_eq!(commands, [LIST], "what runs is what is wanted: no killgw");
    assert_eq!(node.applied().await, ["alpha"]);
}

#[tokio::test]
async fn a_command_the_node_refuses_leaves_the_pass_unconverged_and_says_why() {
    let node = Node::start().await;
    node.carrier("alpha", json!({})).await;
    node.fake.remove_profile("external");

    let (converged, commands) = node.pass().await;
    assert!(!converged);
    assert_eq!(commands, [LIST, RESCAN, LIST]);
    let live = node.ctx.live.get(node.switch.id).expect("live view");
    let error = live.last_error.expect("an error");
    assert!(error.contains("Invalid Profile"), "{error}");
    assert!(node.applied().await.is_empty());
}

#[tokio::test]
async fn opening_a_connection_checks_the_password_and_the_node_being_up() {
    let node = Node::start().await;
    let target = |password: &str| EslTarget {
        host: "127.0.0.1".into(),
        port: node.fake.addr.port(),
        password: password.into(),
        connect_timeout: std::time::Duration::from_secs(1),
        command_timeout: std::time::Duration::from_secs(1),
    };
    assert!(matches!(
        MemoryConnection::open(&target("wrong")).await,
        Err(EslError::Auth)
    ));
    node.fake.down();
    assert!(matches!(
        MemoryConnection::open(&target(PASSWORD)).await,
        Err(EslError::Unreachable(_))
    ));
    node.fake.up();
    let conn = MemoryConnection::open(&target(PASSWORD))
        .await
        .expect("the right password on a node that is up");
    let converged = reconcile_once(&node.ctx, &node.switch, &conn, "core-1").await;
    assert!(converged.expect("a pass"));
    assert_eq!(node.fake.auth_attempts(), 2);
}
