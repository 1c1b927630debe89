//! A carrier's `auth_password` never appears in an API response or a log line (it does appear
//! in sofia.conf, which is FreeSWITCH's document and must carry it). Its own test binary,
//! because it installs a process-wide tracing subscriber that captures every event at TRACE.

mod support;

use reqwest::StatusCode;
use serde_json::json;
use support::app::{TestApp, config_body};

const PASSWORD: &str = "Sup3r-S3cret-Pw";

#[tokio::test]
async fn auth_password_is_never_in_a_response_or_a_log_line() {
    let captured = support::logs::capture_all();

    for (label, store) in support::db::backends().await {
        let app = TestApp::start(&label, store).await;
        let admin = app.admin.clone();
        let mut responses = Vec::new();
        let created = app
            .post(
                "/api/v1/carriers",
                &admin,
                json!({"name": "Reg", "gateway_name": format!("reg-{label}"), "type": "register_trunk",
                       "remote_host": "sip.reg.example", "auth_username": "acct", "auth_password": PASSWORD}),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let id = created.id();
        responses.push(created.text);
        responses.push(
            app.get(&format!("/api/v1/carriers/{id}"), &admin)
                .await
                .text,
        );
        responses.push(app.get("/api/v1/carriers", &admin).await.text);
        responses.push(
            app.patch(
                &format!("/api/v1/carriers/{id}"),
                &admin,
                json!({"remote_port": 5070}),
            )
            .await
            .text,
        );
        // A refused update that echoes nothing back either.
        let refused = app
            .patch(
                &format!("/api/v1/carriers/{id}"),
                &admin,
                json!({"auth_password": format!("{PASSWORD}\r\n")}),
            )
            .await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
        responses.push(refused.text);
        responses.push(
            app.get("/api/v1/route-preview?destination=%2B15551234567", &admin)
                .await
                .text,
        );
        responses.push(
            app.send(reqwest::Method::GET, "/api/openapi.json", None, None)
                .await
                .text,
        );
        for text in &responses {
            assert!(
                !text.contains(PASSWORD),
                "response leaks the password: {text}"
            );
        }
        // FreeSWITCH does get it, in the gateway it registers with.
        let (_, sofia) = app.fetch(config_body("sofia.conf", Some("external"))).await;
        assert!(sofia.contains(PASSWORD), "{sofia}");
    }
    let logs = captured.text();
    assert!(
        logs.contains("carrier created"),
        "the capture works: {logs}"
    );
    assert!(!logs.contains(PASSWORD), "a log line leaks the password");
}
