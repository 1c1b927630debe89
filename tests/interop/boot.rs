//! The node boots on what trunkline serves it, and falls back to its static dialplan while
//! trunkline is stopped.

use serde_json::json;

use crate::support::freeswitch::free_port;
use crate::support::platform::{
    Options, Platform, WAIT, alpha_takes_plus_one, assert_status, carrier_answering, lock,
};
use crate::support::process::{Server, eventually};
use crate::support::sipp::{Answer, Caller};

#[tokio::test]
async fn the_node_boots_on_trunklines_sofia_conf_with_one_gateway_per_active_carrier() {
    let _serial = lock().await;
    let Some(p) = Platform::start(Options::default()).await else {
        return;
    };
    // Arrange: two active carriers, one disabled.
    let (_alpha, _) = carrier_answering(&p, "alpha", Answer::Connect).await;
    let (_bravo, _) = carrier_answering(&p, "bravo", Answer::Connect).await;
    let charlie_port = free_port();
    let charlie = p
        .carrier(
            "charlie",
            charlie_port,
            json!({"inbound_ips": ["192.0.2.7/32"]}),
        )
        .await;
    p.gateway_live("charlie", &format!("sip:127.0.0.1:{charlie_port}"))
        .await;
    eventually("an active carrier's address admitted", WAIT, || async {
        p.api("acl 192.0.2.7 trunkline_carriers").await == "true"
    })
    .await;
    p.patch_on(p.addr, "carriers", &charlie, json!({"status": "disabled"}))
        .await;
    p.gateway_gone("charlie").await;
    p.synced().await;

    // Act: restart the node, so that it loads everything from trunkline at boot.
    let mut p = p;
    let build = p.build.clone();
    p.node.restart(&build).await;
    p.profiles_running().await;

    // Assert
    let status = p.api("sofia status").await;
    for gateway in ["alpha", "bravo"] {
        assert!(
            status
                .lines()
                .any(|l| l.contains(&format!("external::{gateway}")) && l.contains("gateway")),
            "{status}"
        );
    }
    assert!(!status.contains("charlie"), "{status}");
    let gateways = status.lines().filter(|l| l.contains("gateway")).count();
    assert_eq!(gateways, 2, "{status}");
    // acl.conf came from trunkline: its carriers list is there (and with it the charlie
    // address only while charlie was active).
    let acl = p.api("acl 192.0.2.7 trunkline_carriers").await;
    assert_eq!(
        acl.trim(),
        "false",
        "a disabled carrier's address is not admitted"
    );
    let esl_list = p.api("acl 127.0.0.1 trunkline_esl").await;
    assert_eq!(esl_list.trim(), "true", "the template's own list is served");
    // The RTP timeouts come from media.vars.xml, and sofia warns of no deprecated param.
    assert_eq!(p.api("global_getvar media_timeout").await.trim(), "300000");
    assert_eq!(
        p.api("global_getvar media_hold_timeout").await.trim(),
        "1800000"
    );
    let log = p.node.log();
    assert!(
        !log.contains("deprecated"),
        "{}",
        log.lines()
            .filter(|l| l.contains("deprecated"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test]
async fn while_trunkline_is_stopped_calls_are_refused_by_the_static_fallback_and_route_again_after()
{
    let _serial = lock().await;
    let Some(mut p) = Platform::start(Options::default()).await else {
        return;
    };
    let (alpha, _) = alpha_takes_plus_one(&p, "before").await;

    // Act: stop trunkline.
    p.server.terminate();
    p.server.exited(WAIT).await;
    let refused = p.call("+15551234567", Caller::Expect(503)).await;

    // Assert: the static fallback refused it; nothing went to a carrier.
    assert_status(&refused, 503, "trunkline stopped");
    assert_eq!(
        alpha.invites().len(),
        1,
        "no INVITE while trunkline was stopped"
    );

    // trunkline back on the same address: calls route again, the node untouched.
    p.server = Server::start_at(p.dir.path(), &p.templates, &p.config, p.addr).await;
    assert_status(
        &p.call("+15551234567", Caller::Expect(200)).await,
        200,
        "after",
    );
    assert_eq!(alpha.invites().len(), 2);
}
