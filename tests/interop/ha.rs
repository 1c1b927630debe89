//! Two instances on one PostgreSQL database: the lease on the node, the fallback binding and the
//! take-over when the holder stops or is killed.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::app::config_body;
use crate::support::freeswitch::free_port;
use crate::support::platform::{
    ESL_PASSWORD, Platform, WAIT, XMLCURL_PASSWORD, XMLCURL_USER, alpha_takes_plus_one,
    assert_status, live_carrier, lock, path,
};
use crate::support::process::{eventually, eventually_ok};
use crate::support::sipp::{Answer, Caller};

#[tokio::test]
async fn with_two_instances_on_postgresql_the_second_routes_and_takes_the_node_over_when_the_first_stops()
 {
    let _serial = lock().await;
    let Some(mut p) = Platform::start_two_instances(true).await else {
        return;
    };
    let (alpha, alpha_row) = alpha_takes_plus_one(&p, "through the first").await;
    let second = p.second.as_ref().unwrap().1;
    let connection = |view: &Value| view.as_array().unwrap()[0]["connection"].clone();
    let view = p
        .send_to(second, reqwest::Method::GET, "/api/v1/switches", None)
        .await;
    assert_eq!(
        connection(&view),
        "standby",
        "the first instance holds the node's lease"
    );

    // Act: the first instance stops.
    p.server.terminate();
    p.server.exited(WAIT).await;
    let stopped = Instant::now();

    // Assert: calls still route (through the fallback binding), the lease moves, and a change
    // made through the second instance reaches the node.
    assert_status(
        &p.call("+15551234567", Caller::Expect(200)).await,
        200,
        "through the second",
    );
    assert_eq!(alpha.invites().len(), 2);
    eventually(
        "the second instance drives the node",
        Duration::from_secs(90),
        || async {
            let view = p
                .send_to(second, reqwest::Method::GET, "/api/v1/switches", None)
                .await;
            connection(&view) == "connected"
        },
    )
    .await;
    eprintln!(
        "first instance stopped → the second holds the node's lease: {:.1} s",
        stopped.elapsed().as_secs_f64()
    );
    // The hand-over restarted no gateway: after the new holder's first verified pass, alpha
    // still counts both calls.
    eventually("the second instance synced the node", WAIT, || async {
        let view = p
            .send_to(second, reqwest::Method::GET, "/api/v1/switches", None)
            .await;
        view[0]["synced_version"].is_u64() && view[0]["pending_operations"] == 0
    })
    .await;
    let status = p.api("sofia xmlstatus gateway alpha").await;
    assert!(status.contains("<calls-out>2</calls-out>"), "{status}");
    let moved = free_port();
    p.patch_on(
        second,
        "carriers",
        &alpha_row,
        json!({"remote_port": moved}),
    )
    .await;
    p.gateway_live("alpha", &format!("sip:127.0.0.1:{moved}"))
        .await;
}

/// What an instance reports for the one switch (`Null` when it has none).
async fn switch_view(p: &Platform, addr: SocketAddr) -> Value {
    let view = p
        .send_to(addr, reqwest::Method::GET, "/api/v1/switches", None)
        .await;
    view[0].clone()
}

/// The connection state an instance reports for the one switch (or `"none"`).
async fn connection_on(p: &Platform, addr: SocketAddr) -> String {
    switch_view(p, addr).await["connection"]
        .as_str()
        .unwrap_or("none")
        .to_string()
}

/// Whether an instance has gateway `name` in the `sofia.conf` it serves the node, that is
/// the carrier in its published configuration.
async fn serves_gateway(p: &Platform, addr: SocketAddr, name: &str) -> bool {
    let response = p
        .client
        .post(format!("http://{addr}/freeswitch/xml"))
        .basic_auth(XMLCURL_USER, Some(XMLCURL_PASSWORD))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(config_body("sofia.conf", None))
        .send()
        .await
        .expect("xml_curl answers");
    let xml = response.text().await.unwrap();
    xml.contains(&format!("<gateway name=\"{name}\""))
}

/// The instance that drives the node once one does.
async fn eventually_holder(p: &Platform, instances: [SocketAddr; 2]) -> SocketAddr {
    eventually_ok("an instance driving the node", WAIT, || async {
        let mut states = Vec::new();
        for addr in instances {
            let state = connection_on(p, addr).await;
            if state == "connected" {
                return Ok(addr);
            }
            states.push(format!("{addr}: {state}"));
        }
        Err(states.join(", "))
    })
    .await
}

#[tokio::test]
async fn two_instances_see_a_new_switch_at_once_and_a_killed_holders_node_is_taken_over_within_the_lease()
 {
    let _serial = lock().await;
    let Some(mut p) = Platform::start_two_instances(false).await else {
        return;
    };
    let (first, second) = (p.addr, p.second.as_ref().unwrap().1);

    // A switch registered through the first instance: connected there, standby on the other,
    // both within a second.
    let registered = Instant::now();
    let switch = p
        .send_to(
            first,
            reqwest::Method::POST,
            "/api/v1/switches",
            Some(json!({
                "name": "fs1",
                "esl_host": "127.0.0.1",
                "esl_port": p.node.spec.esl_port,
                "esl_password": ESL_PASSWORD,
                "profiles": ["external"],
            })),
        )
        .await;
    eventually(
        "connected on one instance, standby on the other",
        Duration::from_secs(1),
        || async {
            let states = [
                connection_on(&p, first).await,
                connection_on(&p, second).await,
            ];
            states.contains(&"connected".to_string()) && states.contains(&"standby".to_string())
        },
    )
    .await;
    eprintln!(
        "switch registered → connected on one instance and standby on the other: {:.0} ms",
        registered.elapsed().as_secs_f64() * 1000.0
    );
    let holder = eventually_holder(&p, [first, second]).await;
    let standby = if holder == first { second } else { first };
    // Both instances show the same state of the node: who holds it and what it was synced to.
    eventually(
        "the same view of the node on both instances",
        WAIT,
        || async {
            let (h, s) = (
                switch_view(&p, holder).await,
                switch_view(&p, standby).await,
            );
            h["synced_version"].is_u64()
                && h["synced_version"] == s["synced_version"]
                && h["lease_holder"] == s["lease_holder"]
                && h["held_here"] == true
                && s["held_here"] == false
        },
    )
    .await;

    // A disable through the standby stops the pushes at once: a carrier created right after
    // it never reaches the node.
    p.patch_on(standby, "switches", &switch, json!({"enabled": false}))
        .await;
    let unpushed = p
        .carrier_on(standby, "unpushed", free_port(), json!({}))
        .await;
    // The point a push would come: the holder has let the node go and has the new carrier in
    // what it serves the node.
    eventually(
        "the holder disabled and serving the new carrier",
        WAIT,
        || async {
            connection_on(&p, holder).await == "disabled"
                && serves_gateway(&p, holder, "unpushed").await
        },
    )
    .await;
    let status = p.api("sofia status").await;
    assert!(
        !status.contains("unpushed"),
        "pushed after the disable: {status}"
    );
    p.send_to(
        standby,
        reqwest::Method::DELETE,
        &path("carriers", &unpushed),
        None,
    )
    .await;
    p.patch_on(standby, "switches", &switch, json!({"enabled": true}))
        .await;
    let holder = eventually_holder(&p, [first, second]).await;
    let (_alpha, alpha_row) =
        live_carrier(&p, holder, "alpha", Some(Answer::Connect), json!({})).await;

    // SIGKILL of the holder: the other takes the node over and applies a change made meanwhile.
    let survivor = if holder == first { second } else { first };
    let moved = free_port();
    let killed = Instant::now();
    if holder == first {
        p.server.kill();
    } else {
        p.second.as_mut().unwrap().0.kill();
    }
    p.patch_on(
        survivor,
        "carriers",
        &alpha_row,
        json!({"remote_port": moved}),
    )
    .await;
    p.gateway_live("alpha", &format!("sip:127.0.0.1:{moved}"))
        .await;
    eprintln!(
        "holder killed (SIGKILL) → a change made meanwhile live on the node through the other instance: {:.1} s (lease 4 s)",
        killed.elapsed().as_secs_f64()
    );
    assert_eq!(connection_on(&p, survivor).await, "connected");
}
