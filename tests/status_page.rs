//! The status page in a real headless Chromium (`support/browser.rs`), against a running
//! trunkline that keeps a node in step over a real Event Socket (the fake switch of
//! `support/fake_switch.rs`): log in with a token, see a carrier's gateway go from UP to DOWN
//! when the node reports it (the page refreshes itself, without a reload), run an explain.
//! Screenshots go to `target/status-page/`. Then, over plain HTTP: what a tenant sees, the
//! pages at 1,000 carriers, and the login's cookie and cross-site rules.

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, ORIGIN, SET_COOKIE};
use serde_json::json;
use support::app::{TestApp, test_settings};
use support::browser::{Browser, processes_marked};
use support::fake_switch::FakeSwitch;
use support::process::eventually_ok;
use trunkline::model::Scope;

const PASSWORD: &str = "ClueCon-status";
const WAIT: Duration = Duration::from_secs(20);

/// trunkline with one node (the fake switch) in step, and one platform carrier `alpha` routed
/// for every number, running on the node.
async fn platform_with_a_node() -> (TestApp, FakeSwitch) {
    let fake = FakeSwitch::start(PASSWORD).await;
    let store = support::db::fresh().await.remove(0).store;
    store
        .create_switch(&fake.as_new_switch(PASSWORD, true), false)
        .await
        .expect("switch stored");
    let mut settings = test_settings();
    settings.esl.debounce = Duration::from_millis(50);
    settings.esl.liveness_every = Duration::from_secs(1);
    let app = TestApp::start_with("sqlite", store, settings).await;
    fake.set_trunkline(&app.base);
    let alpha = app.platform_carrier("alpha", json!({})).await;
    app.create(
        "/api/v1/outbound-routes",
        &app.admin,
        json!({"name": "Everything", "prefix": "all", "carrier_id": alpha}),
    )
    .await;
    eventually_ok("alpha UP on the node", WAIT, || async {
        let status = app
            .get(&format!("/api/v1/carriers/{alpha}/status"), &app.admin)
            .await;
        match status.body["switches"][0]["status"] == "UP" {
            true => Ok(()),
            false => Err(status.text),
        }
    })
    .await;
    (app, fake)
}

#[tokio::test]
async fn an_operator_logs_in_sees_a_gateway_go_down_without_a_reload_and_explains_a_number() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let (app, fake) = platform_with_a_node().await;

    // Not logged in: the login form.
    browser.goto(&format!("{}/status", app.base)).await;
    assert!(
        browser.url().await.ends_with("/status/login"),
        "{}",
        browser.url().await
    );
    browser
        .type_into("input[name=token]", "tl_not-a-token")
        .await;
    browser.click("form.login button").await;
    browser
        .wait_for_text("#login-error", "not valid", WAIT)
        .await;
    browser.type_into("input[name=token]", &app.admin).await;
    browser.click("form.login button").await;

    // The node and the carrier's gateway on it, UP.
    browser
        .wait_for_text("#nodes tr.node", "connected", WAIT)
        .await;
    let cell = "tr.carrier[data-gateway=alpha] td.gw";
    browser.wait_for_text(cell, "UP", WAIT).await;
    browser.screenshot("overview-up").await;

    // The node reports the gateway down; the page shows it on its next refresh, and it is the
    // same page (a marker set in it survives), not a reload.
    browser.run("window.trunklineMarker = 'still here';").await;
    fake.report_gateway_state("alpha", "NOREG", "DOWN");
    let shown = browser.wait_for_text(cell, "DOWN", WAIT).await;
    assert!(shown.contains("DOWN NOREG since 20"), "{shown}");
    assert_eq!(
        browser.run("return window.trunklineMarker;").await,
        "still here"
    );
    assert!(
        browser
            .text("#carriers h2")
            .await
            .contains("1 with a gateway down")
    );
    let down = browser.screenshot("overview-down").await;
    assert!(std::fs::metadata(&down).unwrap().len() > 10_000);

    // Explain: the number, the leg and the exact XML.
    browser.goto(&format!("{}/status/explain", app.base)).await;
    browser
        .type_into("input[name=destination]", "+15551234567")
        .await;
    browser.click("form.explain button").await;
    let legs = browser
        .wait_for_text("#explanation table.legs", "alpha", WAIT)
        .await;
    assert!(legs.contains("sofia/gateway/alpha/+15551234567"), "{legs}");
    let xml = browser.text("#xml").await;
    assert!(
        xml.starts_with("<document type=\"freeswitch/xml\">"),
        "{xml}"
    );
    browser.screenshot("explain").await;

    // Log out: the cookie is gone, the page asks for a token again.
    browser.goto(&format!("{}/status", app.base)).await;
    browser.click("header form button").await;
    browser.wait_for_text("h1", "Log in", WAIT).await;
}

/// A client that keeps nothing between requests: the cookie is sent by hand.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_test_that_panics_mid_session_leaves_no_browser_process_and_no_profile_behind() {
    // Arrange: a browser with a page open, in a task of its own.
    let Some(browser) = Browser::start().await else {
        return;
    };
    let marker = browser.marker().to_path_buf();
    let session = tokio::spawn(async move {
        browser
            .goto("data:text/html,<p id='said'>mid-session</p>")
            .await;
        assert_eq!(browser.text("#said").await, "mid-session");
        let running = processes_marked(browser.marker());
        assert!(
            running.len() >= 2,
            "the driver and its browser: {running:?}"
        );

        // Act: the test fails with the session open.
        panic!("a failure mid-session");
    });

    // Assert: it failed where it was meant to, and took every process and the profile with it.
    let failure = session.await.expect_err("the session's task panicked");
    let message = failure.into_panic();
    assert_eq!(
        message.downcast_ref::<&str>(),
        Some(&"a failure mid-session"),
        "it failed before the point under test"
    );
    assert_eq!(processes_marked(&marker), Vec::<u32>::new(), "left running");
    assert!(!marker.exists(), "{} left behind", marker.display());
}

async fn page(app: &TestApp, path: &str, token: &str) -> String {
    let reply = client()
        .get(format!("{}{path}", app.base))
        .header(COOKIE, format!("trunkline_session={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::OK, "{path}");
    reply.text().await.unwrap()
}

#[tokio::test]
async fn tenants_see_their_own_carriers_and_a_thousand_are_searched_and_paged() {
    let app = TestApp::start("sqlite", support::db::fresh().await.remove(0).store).await;
    app.platform_carrier("alpha", json!({})).await;
    // A node the tenant's page shows as a column of its carriers, though not as a node.
    app.create(
        "/api/v1/switches",
        &app.admin,
        json!({"name": "fs-east", "esl_host": "127.0.0.1", "esl_port": 1, "esl_password": "x", "enabled": false}),
    )
    .await;
    let acme = app.tenant("Acme", Some("acme"), true).await;
    app.create(
        "/api/v1/carriers",
        &app.admin,
        json!({"tenant_id": acme, "name": "Acme <script>alert(1)</script>", "gateway_name": "acme-own", "remote_host": "sip.acme.example"}),
    )
    .await;
    let tenant = app.tenant_token(acme, &[Scope::CarriersRead]).await;

    let seen = page(&app, "/status", &tenant).await;
    assert!(seen.contains("data-gateway=\"acme-own\""), "{seen}");
    assert!(
        !seen.contains("data-gateway=\"alpha\""),
        "a platform carrier"
    );
    assert!(
        !seen.contains("id=\"nodes\""),
        "nodes are for platform admins"
    );
    assert!(!seen.contains("<script>alert"), "escaped");
    assert!(seen.contains("Acme &lt;script&gt;"), "{seen}");

    // 1,000 more platform carriers: one page of 50, search, the last page.
    for i in 0..1000 {
        app.platform_carrier(&format!("gw-{i:04}"), json!({})).await;
    }
    let first = page(&app, "/status", &app.admin).await;
    assert_eq!(first.matches("<tr class=\"carrier\"").count(), 50);
    assert!(
        first.contains("1002 matching"),
        "{}",
        &first[..2000.min(first.len())]
    );
    assert!(first.contains("page 1 of 21"));
    let found = page(&app, "/status?q=GW-0777", &app.admin).await;
    assert_eq!(found.matches("<tr class=\"carrier\"").count(), 1);
    assert!(found.contains("data-gateway=\"gw-0777\""));
    let last = page(&app, "/status?page=21", &app.admin).await;
    assert_eq!(
        last.matches("<tr class=\"carrier\"").count(),
        2,
        "1,002 = 20 × 50 + 2"
    );
    let beyond = page(&app, "/status?page=99", &app.admin).await;
    assert!(beyond.contains("page 21 of 21"));
}

#[tokio::test]
async fn the_login_cookie_is_http_only_and_strict_and_cross_site_posts_are_refused() {
    let app = TestApp::start("sqlite", support::db::fresh().await.remove(0).store).await;
    let login = |origin: Option<&str>, token: String| {
        let mut request = client()
            .post(format!("{}/status/login", app.base))
            .form(&[("token", token)]);
        if let Some(o) = origin {
            request = request.header(ORIGIN, o);
        }
        request.send()
    };
    let ok = login(Some(&app.base), app.admin.clone()).await.unwrap();
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);
    assert_eq!(ok.headers()[LOCATION], "/status");
    let cookie = ok.headers()[SET_COOKIE].to_str().unwrap().to_string();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/status"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    let csp = ok.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"));

    let cross = login(Some("http://evil.example"), app.admin.clone())
        .await
        .unwrap();
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    assert!(!cross.headers().contains_key(SET_COOKIE));
    let wrong = login(None, "tl_0000".into()).await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(!wrong.headers().contains_key(SET_COOKIE));

    // Without the cookie, or with a revoked token's: the login form, never the data.
    let anonymous = client()
        .get(format!("{}/status", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
    assert_eq!(anonymous.headers()[LOCATION], "/status/login");
    let explain = client()
        .get(format!("{}/status/explain?destination=%2B1555", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(explain.status(), StatusCode::SEE_OTHER);
}
