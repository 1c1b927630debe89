//! Fresh databases for tests: a new SQLite file every time, and a new PostgreSQL database on the
//! server `TEST_DATABASE_URL` names when it is set (CI sets it; see `.ci/run`). Each call gives
//! empty, migrated databases, so tests never see each other's rows.

use std::sync::Once;

use sqlx::{AssertSqlSafe, Connection, PgConnection};
use trunkline::store::Store;
use uuid::Uuid;

/// A fresh store with the URL it was opened with (for tests that also need raw SQL).
pub struct Fresh {
    pub label: String,
    pub url: String,
    pub store: Store,
}

/// Every backend to run a test on, labelled `"sqlite"` / `"postgres"`, SQLite first.
pub async fn backends() -> Vec<(String, Store)> {
    fresh()
        .await
        .into_iter()
        .map(|f| (f.label, f.store))
        .collect()
}

/// Like [`backends`], with each database's URL.
pub async fn fresh() -> Vec<Fresh> {
    let mut all = vec![sqlite().await];
    all.extend(postgres_fresh().await);
    all
}

/// A fresh PostgreSQL store, or `None` when `TEST_DATABASE_URL` is not set.
pub async fn postgres() -> Option<Store> {
    postgres_fresh().await.map(|f| f.store)
}

async fn sqlite() -> Fresh {
    let dir = dir_until_exit();
    let url = format!("sqlite://{}", dir.join("trunkline.db").display());
    let store = Store::connect(&url).await.expect("SQLite opens");
    store.migrate().await.expect("SQLite migrates");
    Fresh {
        label: "sqlite".into(),
        url,
        store,
    }
}

/// A temporary directory that lives as long as the test process. A database file's directory
/// must outlive every connection, and a pool may still hold one when its test returns, so it is
/// removed when the process exits (libtest ends by returning from `main` or by
/// `process::exit`, both of which run `atexit` handlers) rather than when the test ends; a run
/// leaves none behind (issue #40).
pub fn dir_until_exit() -> std::path::PathBuf {
    static KEPT: std::sync::Mutex<Vec<std::path::PathBuf>> = std::sync::Mutex::new(Vec::new());
    static AT_EXIT: std::sync::Once = std::sync::Once::new();
    extern "C" fn remove_kept() {
        let kept = KEPT.lock().map(|k| k.clone()).unwrap_or_default();
        for dir in kept {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    AT_EXIT.call_once(|| {
        // SAFETY: registers a plain function; it only removes directories.
        unsafe {
            libc::atexit(remove_kept);
        }
    });
    let dir = tempfile::tempdir().expect("temp dir").keep();
    KEPT.lock().unwrap().push(dir.clone());
    dir
}

/// Whether this run is CI's (`CI=true`, as `.ci/run` is started), where a missing test
/// dependency is a failure, never a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A new database `trunkline_test_<uuid>` on the `TEST_DATABASE_URL` server. Without it the
/// PostgreSQL half of a test is skipped with a notice, except under `CI=true`, where it fails.
pub async fn postgres_fresh() -> Option<Fresh> {
    let Ok(server) = std::env::var("TEST_DATABASE_URL") else {
        assert!(
            !in_ci(),
            "CI=true but TEST_DATABASE_URL is not set: the PostgreSQL tests cannot run"
        );
        static NOTICE: Once = Once::new();
        NOTICE.call_once(|| {
            eprintln!("notice: TEST_DATABASE_URL is not set; PostgreSQL tests skipped");
        });
        return None;
    };
    let name = format!("trunkline_test_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&server)
        .await
        .expect("TEST_DATABASE_URL connects");
    // The name is ours (a uuid), not input: safe to splice into the statement.
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("test database created");
    let _ = admin.close().await;
    let url = database_url(&server, &name);
    let store = Store::connect(&url).await.expect("test database connects");
    store.migrate().await.expect("PostgreSQL migrates");
    Some(Fresh {
        label: "postgres".into(),
        url,
        store,
    })
}

/// `server` with its database replaced by `name` (keeps user, host, port and query).
fn database_url(server: &str, name: &str) -> String {
    let (base, query) = match server.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (server, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut url = format!("{}/{name}", &base[..authority_end]);
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    url
}
