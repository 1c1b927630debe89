//! Faults, nothing lost — with real parts: a real SQLite file locked by a second connection,
//! the real `trunkline serve` binary sent SIGTERM under load and SIGKILL during a burst of
//! writes, and a fake FreeSWITCH that speaks the real Event Socket protocol. The PostgreSQL
//! restart is in `postgres_restart.rs`, alone in its binary because it stops the server.
//!
//! Every wait is bounded ([`eventually`]); no assertion depends on how long anything took.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::{Connection, SqliteConnection};
use support::app::{TestApp, bridges, call, create_token};
use support::fake_switch::FakeSwitch;
use support::process::{Server, eventually};
use support::raw_http::{is_complete_200, raw_fetch};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use trunkline::model::{Role, Scope};
use trunkline::store::Store;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(30);

/// The `bridge` data of a dialplan answer, after checking the whole document is safe.
#[tokio::test]
async fn while_sqlite_is_write_locked_fetches_bridge_from_the_snapshot_and_writes_answer_503() {
    // Arrange: a platform route to one carrier, and a call that bridges to it.
    let dir = tempfile::tempdir().unwrap();
    let (url, store) = sqlite_file(dir.path()).await;
    let app = TestApp::start("sqlite", store).await;
    app.route_plus_one_to_alpha().await;
    let fetch = call("trunkline", "+15551234567", None);
    let (_, before) = app.fetch(fetch.clone()).await;
    assert_eq!(bridges(&before).len(), 1, "{before}");

    // Act: a second connection, as another process would, takes SQLite's write lock and keeps
    // it past the store's busy timeout.
    let mut locker = SqliteConnection::connect(&url).await.unwrap();
    sqlx::raw_sql("BEGIN EXCLUSIVE")
        .execute(&mut locker)
        .await
        .unwrap();
    let refused = app
        .post(
            "/api/v1/carriers",
            &app.admin,
            json!({"name": "Bravo", "gateway_name": "bravo", "remote_host": "sip.bravo.example"}),
        )
        .await;
    let (status, during) = app.fetch(fetch.clone()).await;
    // WAL readers are never blocked by a writer: reads, and so the snapshot, stay current and
    // the instance stays ready; only writes wait for the lock.
    let ready = app
        .client
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .unwrap();
    let listed = app.get("/api/v1/carriers", &app.admin).await;
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut locker)
        .await
        .unwrap();

    // Assert: the write is a 503 in the API's error shape, the fetch still bridges.
    assert_eq!(refused.status, 503, "{}", refused.text);
    assert_eq!(
        refused.body["errors"][0]["detail"],
        "the database is unavailable; try again"
    );
    assert_eq!(status, 200);
    assert_eq!(bridges(&during), bridges(&before));
    assert_eq!(ready.status(), 200);
    assert_eq!(listed.status, 200);
    // And once the lock is gone, writes succeed again.
    app.create(
        "/api/v1/carriers",
        &app.admin,
        json!({"name": "Bravo", "gateway_name": "bravo", "remote_host": "sip.bravo.example"}),
    )
    .await;
}

/// A new, migrated SQLite file in `dir`: its URL and a store on it.
async fn sqlite_file(dir: &Path) -> (String, Store) {
    let url = format!("sqlite://{}", dir.join("trunkline.db").display());
    let store = Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    (url, store)
}

/// [`sqlite_file`] with a platform admin token stored in it.
async fn sqlite_with_admin(dir: &Path) -> (String, String) {
    let (url, store) = sqlite_file(dir).await;
    let token = create_token(&store, Role::PlatformAdmin, None, Scope::ALL).await;
    (url, token)
}

/// What became of one request during shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// A complete 200.
    Answered,
    /// Connection refused or closed before a single response byte: never accepted.
    NotAccepted,
    /// Anything else — a partial or non-200 response: a request lost in flight.
    Broken,
}

async fn fetch_fate(addr: std::net::SocketAddr) -> Fate {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return Fate::NotAccepted;
    };
    let (head, body) = raw_fetch(addr, "");
    let mut response = Vec::new();
    let sent = async {
        stream.write_all(&head).await?;
        stream.write_all(&body).await
    };
    if sent.await.is_err() {
        let _ = stream.read_to_end(&mut response).await;
    } else if let Err(e) = stream.read_to_end(&mut response).await {
        // A reset after the response was read whole is still an answer.
        if response.is_empty() {
            return Fate::NotAccepted;
        }
        eprintln!("read error after {} bytes: {e}", response.len());
    }
    match (response.is_empty(), is_complete_200(&response)) {
        (true, _) => Fate::NotAccepted,
        (false, true) => Fate::Answered,
        (false, false) => Fate::Broken,
    }
}

#[tokio::test]
async fn sigterm_under_load_finishes_every_accepted_request_then_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let (url, _) = sqlite_file(dir.path()).await;
    let mut server = Server::start(dir.path(), &format!("database_url = {url:?}\n")).await;
    let addr = server.addr;

    // A request the server is certainly in the middle of: `Expect: 100-continue` makes hyper
    // answer `100 Continue` only once the handler reads the body, i.e. the request is in flight.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    let (head, body) = raw_fetch(addr, "Expect: 100-continue\r\n");
    slow.write_all(&head).await.unwrap();
    let mut interim = [0u8; 25];
    tokio::time::timeout(WAIT, slow.read_exact(&mut interim))
        .await
        .expect("100 Continue in time")
        .unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");

    // Load: clients on new connections, back to back, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, answered) = (stop.clone(), answered.clone());
            tokio::spawn(async move {
                let mut fates = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let fate = fetch_fate(addr).await;
                    if fate == Fate::Answered {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                    fates.push(fate);
                }
                fates
            })
        })
        .collect();
    eventually("the load to be under way", WAIT, || {
        std::future::ready(answered.load(Ordering::Relaxed) >= 50)
    })
    .await;

    // Act: SIGTERM; once the listener is closed, shutdown has begun.
    server.terminate();
    eventually("the listener to close", WAIT, || async {
        TcpStream::connect(addr).await.is_err()
    })
    .await;
    slow.write_all(&body).await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, slow.read_to_end(&mut rest))
        .await
        .expect("the in-flight answer in time")
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    let mut fates = Vec::new();
    for w in workers {
        fates.extend(w.await.unwrap());
    }
    let status = server.exited(WAIT).await;

    // Assert
    assert!(
        is_complete_200(&rest),
        "the in-flight request was not completed: {}",
        String::from_utf8_lossy(&rest)
    );
    let count = |f: Fate| fates.iter().filter(|x| **x == f).count();
    println!(
        "SIGTERM under load: {} answered, {} not accepted, {} broken",
        count(Fate::Answered),
        count(Fate::NotAccepted),
        count(Fate::Broken)
    );
    assert_eq!(count(Fate::Broken), 0, "requests lost in flight");
    assert!(status.success(), "exit {status:?}\n{}", server.output());
}

/// What the API acknowledged for one carrier during the burst.
#[derive(Debug, Clone)]
struct Acked {
    id: Uuid,
    /// The port its last acknowledged write set.
    port: u16,
    /// A port change that was not acknowledged (in flight, or about to be sent, when the
    /// process died): it may or may not have committed.
    maybe_port: Option<u16>,
}

/// One writer of the burst: creates carriers and moves each to another port, one request at a
/// time, recording what was acknowledged, until the server stops answering.
async fn write_until_killed(
    base: String,
    token: String,
    writer: usize,
    acked: Arc<Mutex<BTreeMap<String, Acked>>>,
) {
    let client = reqwest::Client::new();
    for n in 0.. {
        let gateway = format!("w{writer}-{n}");
        let created = client
            .post(format!("{base}/api/v1/carriers"))
            .bearer_auth(&token)
            .json(&json!({"name": gateway, "gateway_name": gateway, "remote_host": format!("sip.{gateway}.example")}))
            .send()
            .await;
        let Ok(created) = created else { return };
        if created.status() != 201 {
            return;
        }
        let Ok(body) = created.json::<Value>().await else {
            return;
        };
        let id = Uuid::parse_str(body["id"].as_str().unwrap()).unwrap();
        acked.lock().await.insert(
            gateway.clone(),
            Acked {
                id,
                port: 5060,
                maybe_port: Some(5070),
            },
        );
        let patched = client
            .patch(format!("{base}/api/v1/carriers/{id}"))
            .bearer_auth(&token)
            .json(&json!({"remote_port": 5070}))
            .send()
            .await;
        match patched {
            Ok(r) if r.status() == 200 => {
                let mut acked = acked.lock().await;
                let entry = acked.get_mut(&gateway).unwrap();
                entry.port = 5070;
                entry.maybe_port = None;
            }
            _ => return,
        }
    }
}

#[tokio::test]
async fn sigkill_during_a_burst_of_writes_loses_no_acknowledged_change_and_the_node_converges() {
    let dir = tempfile::tempdir().unwrap();
    let (url, token) = sqlite_with_admin(dir.path()).await;
    let config = format!("database_url = {url:?}\nesl_debounce_ms = 50\n");
    let mut server = Server::start(dir.path(), &config).await;

    // Act: writers hammer the API; SIGKILL lands in the middle of the burst.
    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            tokio::spawn(write_until_killed(
                server.base.clone(),
                token.clone(),
                w,
                acked.clone(),
            ))
        })
        .collect();
    eventually("a burst of acknowledged writes", WAIT, || async {
        acked.lock().await.len() >= 40
    })
    .await;
    server.kill();
    for w in writers {
        w.await.unwrap();
    }
    drop(server);
    let acked = acked.lock().await.clone();

    // Restart on the same file, now pointed at a FreeSWITCH node.
    let fake = FakeSwitch::start("ClueCon-faults").await;
    let config = format!(
        "{config}\n[[switches]]\nname = \"fs1\"\nesl_host = \"127.0.0.1\"\nesl_port = {}\nesl_password = \"ClueCon-faults\"\n",
        fake.addr.port()
    );
    let server = Server::start(dir.path(), &config).await;
    fake.set_trunkline(&server.base);

    // Assert: every acknowledged change is stored…
    let client = reqwest::Client::new();
    let mut stored_port = BTreeMap::new();
    for (gateway, a) in &acked {
        let carrier: Value = client
            .get(format!("{}/api/v1/carriers/{}", server.base, a.id))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(carrier["gateway_name"], gateway.as_str(), "{carrier}");
        let port = carrier["remote_port"].as_u64().unwrap() as u16;
        assert!(
            port == a.port || Some(port) == a.maybe_port,
            "{gateway}: stored port {port}, acknowledged {a:?}"
        );
        stored_port.insert(gateway.clone(), port);
    }
    // …and the node runs every acknowledged carrier's gateway with the stored parameters.
    eventually("the node to run every acknowledged gateway", WAIT, || {
        let missing = stored_port.iter().find(|(gateway, port)| {
            let want = format!("sip.{gateway}.example:{port}");
            fake.gateway(gateway)
                .is_none_or(|g| g.param("proxy") != Some(want.as_str()))
        });
        std::future::ready(missing.is_none())
    })
    .await;
    println!(
        "SIGKILL during writes: {} carriers acknowledged, {} port changes acknowledged; all present and running",
        acked.len(),
        acked.values().filter(|a| a.maybe_port.is_none()).count()
    );
}

/// A carrier that cannot be a gateway (no template for its profile) is reported by the build
/// that publishes at start-up too, not only after the next write.
#[tokio::test]
async fn a_restart_reports_the_carriers_left_out_of_sofia_conf() {
    let dir = tempfile::tempdir().unwrap();
    let (url, token) = sqlite_with_admin(dir.path()).await;
    let config = format!("database_url = {url:?}\n");
    let mut server = Server::start(dir.path(), &config).await;
    let created = reqwest::Client::new()
        .post(format!("{}/api/v1/carriers", server.base))
        .bearer_auth(&token)
        .json(&json!({"name": "Orphan", "gateway_name": "orphan", "remote_host": "sip.orphan.example", "profile": "nosuchprofile"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), reqwest::StatusCode::CREATED);
    server.terminate();
    server.exited(WAIT).await;
    let before = server.output().len();

    let server = Server::start(dir.path(), &config).await;

    let boot = server.output()[before..].to_string();
    assert!(
        boot.contains("carrier left out of sofia.conf") && boot.contains("orphan"),
        "{boot}"
    );
}
