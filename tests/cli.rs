//! The `trunkline` binary as an operator runs it: `serve` with nothing configured, started in
//! an empty directory, creates and migrates its SQLite file there and answers (sofia.conf from
//! the built-in templates included); `check-config` says what `serve` would use or names what
//! is wrong; `templates export` writes the built-in templates out to start from; `tenant create`, `token
//! create` and `route explain` work against that database; bad configuration exits 1 with a
//! message naming the setting, never a panic.

mod support;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use support::process::eventually;

const BIN: &str = env!("CARGO_BIN_EXE_trunkline");

/// An empty working directory: the binary carries its default templates, so it starts from
/// anywhere.
fn workdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Runs the binary in `dir` with no TRUNKLINE_* variables from the test's environment.
fn trunkline(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir).args(args);
    for (key, _) in std::env::vars() {
        if key.starts_with("TRUNKLINE_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

fn run(dir: &Path, args: &[&str]) -> Output {
    trunkline(dir, args).output().expect("binary runs")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_until_healthy(base: &str) {
    let health = format!("{base}/healthz");
    eventually(
        &format!("trunkline healthy at {base}"),
        Duration::from_secs(10),
        || {
            let request = reqwest::get(&health);
            async move { request.await.is_ok_and(|r| r.status().is_success()) }
        },
    )
    .await;
}

#[tokio::test]
async fn serve_with_nothing_configured_creates_its_database_and_answers() {
    let dir = workdir();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    // The only flag is the port, so that tests can run in parallel; the default is 127.0.0.1:8080.
    let server = Server(
        trunkline(dir.path(), &["serve", "--listen", &listen])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://{listen}");
    wait_until_healthy(&base).await;
    assert!(
        dir.path().join("trunkline.db").exists(),
        "the SQLite file is created in the working directory"
    );
    let ready = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    let sofia = reqwest::Client::new()
        .post(format!("{base}/freeswitch/xml"))
        .form(&[
            ("section", "configuration"),
            ("tag_name", "configuration"),
            ("key_name", "name"),
            ("key_value", "sofia.conf"),
        ])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        sofia.contains("<profile name=\"external\">"),
        "the built-in templates serve sofia.conf: {sofia}"
    );

    // An operator's first steps, against the same database while the service runs.
    let token = stdout(&run(dir.path(), &["token", "create", "--platform-admin"]))
        .trim()
        .to_string();
    assert!(token.starts_with("tl_") && token.len() == 67, "{token}");
    let client = reqwest::Client::new();
    let created = client
        .post(format!("{base}/api/v1/carriers"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"name": "Carrier A", "gateway_name": "carrier-a", "remote_host": "sip.a.example"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let carrier: serde_json::Value = created.json().await.unwrap();
    let route = client
        .post(format!("{base}/api/v1/outbound-routes"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"name": "All", "prefix": "all", "carrier_id": carrier["id"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(route.status(), 201);
    let tenant = stdout(&run(
        dir.path(),
        &["tenant", "create", "Acme", "--context", "acme"],
    ))
    .trim()
    .to_string();
    uuid::Uuid::parse_str(&tenant).expect("tenant create prints the id");

    let explained = stdout(&run(
        dir.path(),
        &["route", "explain", "+15551234567", "--tenant", &tenant],
    ));
    assert!(
        explained.contains("sofia/gateway/carrier-a/+15551234567"),
        "{explained}"
    );
    assert!(explained.contains("<context name=\"acme\">"), "{explained}");
    let json = stdout(&run(
        dir.path(),
        &["route", "explain", "+15551234567", "--json"],
    ));
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["legs"][0]["leg"]["gateway_name"], "carrier-a");
    drop(server);
}

#[test]
fn token_create_for_a_tenant_checks_the_tenant_and_the_scopes() {
    let dir = workdir();
    let missing = run(
        dir.path(),
        &[
            "token",
            "create",
            "--tenant",
            &uuid::Uuid::now_v7().to_string(),
        ],
    );
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("--tenant"));
    let tenant = stdout(&run(dir.path(), &["tenant", "create", "T"]))
        .trim()
        .to_string();
    let bad_scope = run(
        dir.path(),
        &["token", "create", "--tenant", &tenant, "--scope", "root"],
    );
    assert_eq!(bad_scope.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad_scope.stderr).contains("--scope"));
    let token = stdout(&run(
        dir.path(),
        &[
            "token",
            "create",
            "--tenant",
            &tenant,
            "--scope",
            "carriers:read",
        ],
    ));
    assert!(token.trim().starts_with("tl_"));
    let both = run(
        dir.path(),
        &["token", "create", "--platform-admin", "--tenant", &tenant],
    );
    assert_eq!(
        both.status.code(),
        Some(2),
        "clap refuses the conflicting flags"
    );
}

/// Arguments, environment variables, and the setting the error must name.
type BadConfig<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);

#[test]
fn bad_configuration_exits_1_naming_the_setting() {
    let dir = workdir();
    let cases: Vec<BadConfig> = vec![
        (
            vec!["serve", "--failover-codes", "404,sip:503"],
            vec![],
            "failover_codes",
        ),
        (vec!["serve", "--context", "a b"], vec![], "context"),
        (
            vec!["serve"],
            vec![("TRUNKLINE_DATABASE_URL", "mysql://x")],
            "database",
        ),
        (
            vec!["serve"],
            vec![("TRUNKLINE_XMLCURL_ALLOW", "10.0.0.0/99")],
            "xmlcurl_allow",
        ),
        (
            vec!["serve", "--templates", "/nonexistent"],
            vec![],
            "templates",
        ),
        (
            vec!["migrate", "--config", "/nonexistent.toml"],
            vec![],
            "/nonexistent.toml",
        ),
    ];
    for (args, env, expected) in cases {
        let mut cmd = trunkline(dir.path(), &args);
        cmd.envs(env.iter().copied());
        let output = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.starts_with("trunkline: "), "{args:?}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{args:?}: expected {expected} in {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "lisen = \"127.0.0.1:1\"\n").unwrap();
    let output = run(dir.path(), &["serve", "--config", file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("lisen"));
}

#[test]
fn check_config_says_what_serve_would_use_or_names_what_is_wrong() {
    let dir = workdir();
    let config = dir.path().join("trunkline.toml");
    std::fs::write(
        &config,
        "database_url = \"postgres://trunkline:s3cret@db.internal/trunkline\"\nxmlcurl_listen = \"127.0.0.1:8081\"\n\n[[switches]]\nname = \"fs1\"\nesl_host = \"10.0.0.5\"\nesl_password = \"ClueCon\"\n",
    )
    .unwrap();
    let printed = stdout(&run(
        dir.path(),
        &["--config", config.to_str().unwrap(), "check-config"],
    ));
    for line in [
        "listen: 127.0.0.1:8080 (API, health and metrics)",
        "xmlcurl_listen: 127.0.0.1:8081 (/freeswitch/xml only)",
        "database: postgres://trunkline:***@db.internal/trunkline (postgres)",
        "templates: built in (sofia profiles: external)",
        "switch fs1: 10.0.0.5:8021 (profiles external)",
        "configuration OK",
    ] {
        assert!(printed.contains(line), "{line:?} in {printed}");
    }
    assert!(
        !printed.contains("s3cret") && !printed.contains("ClueCon"),
        "{printed}"
    );
    assert!(
        !dir.path().join("trunkline.db").exists(),
        "nothing is created by a check"
    );

    for (file, setting) in [
        (
            "http_idle_timeout_seconds = 0\n",
            "http_idle_timeout_seconds",
        ),
        (
            "listen = \"127.0.0.1:9000\"\nxmlcurl_listen = \"127.0.0.1:9000\"\n",
            "xmlcurl_listen",
        ),
        ("database_url = \"mysql://x\"\n", "database_url"),
        ("templates = \"/nonexistent\"\n", "/nonexistent"),
    ] {
        std::fs::write(&config, file).unwrap();
        let output = run(
            dir.path(),
            &["--config", config.to_str().unwrap(), "check-config"],
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{file}: {stderr}");
        assert!(stderr.contains(setting), "{setting} in {stderr}");
    }
}

#[test]
fn exported_templates_are_the_built_in_ones_and_a_directory_of_them_replaces_them() {
    let dir = workdir();
    let exported = dir.path().join("templates");
    let listed = stdout(&run(
        dir.path(),
        &["templates", "export", exported.to_str().unwrap()],
    ));
    assert_eq!(listed.lines().count(), 3, "{listed}");
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    for file in ["sofia/external.xml", "acl.conf.xml", "examples/callers.xml"] {
        assert_eq!(
            std::fs::read_to_string(exported.join(file)).unwrap(),
            std::fs::read_to_string(shipped.join(file)).unwrap(),
            "{file}"
        );
    }
    let again = run(
        dir.path(),
        &["templates", "export", exported.to_str().unwrap()],
    );
    assert_eq!(again.status.code(), Some(1), "an export never overwrites");

    // The directory replaces the built-in set whole: a second profile appears.
    std::fs::copy(
        exported.join("sofia/external.xml"),
        exported.join("sofia/carriers.xml"),
    )
    .unwrap();
    let printed = stdout(&run(
        dir.path(),
        &["check-config", "--templates", exported.to_str().unwrap()],
    ));
    assert!(
        printed.contains("(sofia profiles: carriers, external)"),
        "{printed}"
    );
}
