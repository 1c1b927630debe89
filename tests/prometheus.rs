//! `/metrics` scraped by a real Prometheus (Debian's `prometheus` package) with the scrape
//! configuration the README documents: a scrape token read from `credentials_file` and sent as
//! `Authorization: Bearer`. A second job with no credentials stands for an anonymous scraper.
//! Without Prometheus the test prints one line and is skipped; under `CI=true` that is a failure
//! (`.ci/run` installs it).

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::app::{TestApp, create_token};
use support::db::in_ci;
use support::process::{eventually, free_loopback_addr};
use trunkline::model::{Role, Scope};

const PROMETHEUS: &str = "/usr/bin/prometheus";

/// A Prometheus process, killed when dropped.
struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The value of `query` for the series of `job`, as Prometheus's HTTP API answers it.
async fn query(client: &reqwest::Client, web: &str, query: &str, job: &str) -> Option<f64> {
    let answer: Value = client
        .get(format!(
            "http://{web}/api/v1/query?{}",
            form_urlencoded::Serializer::new(String::new())
                .append_pair("query", query)
                .finish()
        ))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    answer["data"]["result"]
        .as_array()?
        .iter()
        .find(|r| r["metric"]["job"] == job)?["value"][1]
        .as_str()?
        .parse()
        .ok()
}

#[tokio::test]
async fn prometheus_scrapes_metrics_with_the_documented_configuration_and_an_anonymous_job_is_refused()
 {
    if !Path::new(PROMETHEUS).exists() {
        assert!(
            !in_ci(),
            "CI=true but {PROMETHEUS} is missing: apt-get install prometheus"
        );
        eprintln!("skipped: no {PROMETHEUS} here (apt-get install prometheus)");
        return;
    }
    // Arrange: trunkline with a fetch counted, a scrape token in a file, and Prometheus with the
    // README's job plus one without credentials.
    let (_, store) = support::db::backends().await.into_iter().next().unwrap();
    let app = TestApp::start("sqlite", store).await;
    let (status, _) = app
        .fetch(
            "section=configuration&tag_name=configuration&key_name=name&key_value=acl.conf".into(),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK);
    let token = create_token(&app.store, Role::Admin, None, &[Scope::MetricsRead]).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("trunkline.token");
    std::fs::write(&token_file, &token).unwrap();
    let target = app.base.trim_start_matches("http://");
    let config = format!(
        r#"global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: trunkline
    authorization:
      type: Bearer
      credentials_file: {}
    static_configs:
      - targets: ["{target}"]
  - job_name: anonymous
    static_configs:
      - targets: ["{target}"]
"#,
        token_file.display()
    );
    let config_file = dir.path().join("prometheus.yml");
    std::fs::write(&config_file, config).unwrap();
    let web = free_loopback_addr().to_string();
    let _prometheus = Prometheus(
        Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={web}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts"),
    );
    let client = reqwest::Client::new();

    // Act: wait until both jobs have been scraped.
    eventually(
        "both jobs scraped by Prometheus",
        Duration::from_secs(60),
        || async {
            query(&client, &web, "up", "trunkline").await.is_some()
                && query(&client, &web, "up", "anonymous").await.is_some()
        },
    )
    .await;
    eventually(
        "trunkline's own series stored by Prometheus",
        Duration::from_secs(60),
        || async {
            query(
                &client,
                &web,
                "sum by (job) (trunkline_xmlcurl_requests_total)",
                "trunkline",
            )
            .await
            .is_some_and(|v| v >= 1.0)
        },
    )
    .await;

    // Assert: the documented job is up; the anonymous one is down (401) and stored nothing.
    assert_eq!(query(&client, &web, "up", "trunkline").await, Some(1.0));
    assert_eq!(query(&client, &web, "up", "anonymous").await, Some(0.0));
    assert_eq!(
        query(
            &client,
            &web,
            "sum by (job) (trunkline_xmlcurl_requests_total)",
            "anonymous"
        )
        .await,
        None
    );
}
