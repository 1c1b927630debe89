//! The database: SQLite or PostgreSQL behind one [`Store`], the configuration version and its
//! change feed.
//!
//! Owns every SQL statement of the crate, the schema migrations (`migrations/sqlite`,
//! `migrations/postgres`, embedded) and the mapping of database failures to [`StoreError`].
//! It does not decide who may do what (the API does) and does not render anything.
//!
//! Policy, the same for every entity:
//! - every configuration write (tenants, carriers, routes, phone numbers) is one transaction that
//!   also raises `config_version` by one; on PostgreSQL the same transaction sends
//!   `NOTIFY trunkline_config` so other instances reload. A write that fails changes nothing and
//!   raises nothing. API tokens are not configuration and leave the version alone;
//! - ids are UUIDv7 stored as hyphenated text, so id order is creation order: lists are keyset
//!   pages on the id ([`PageRequest`]);
//! - queries are written once with `$n` placeholders and run on either pool through
//!   `exec.rs`'s dispatch; there is no `AnyPool` and no compile-time checked query macro.

mod attempts;
mod carriers;
mod error;
mod exec;
mod feed;
mod list;
mod numbers;
mod routes;
pub mod rows;
mod switches;
mod tenants;
mod tokens;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use tokio::sync::watch;
use uuid::Uuid;

pub use self::attempts::{AttemptFilter, AttemptView};
pub use self::error::StoreError;
use self::exec::{Db, Tx, args};
use self::feed::Feed;
use self::rows::{CarrierRow, NumberOwnerRow, RouteRow, TenantRow};
pub use self::switches::SyncState;
use crate::model::{CarrierStatus, Dataset, MatchType};

/// How long a request waits for a pooled connection (or SQLite for its write lock) before the
/// store answers [`StoreError::Unavailable`].
const WAIT: Duration = Duration::from_secs(5);
/// PostgreSQL pool size; SQLite in a file uses the same, an in-memory SQLite database one.
const MAX_CONNECTIONS: u32 = 10;

/// The database. Cheap to clone: clones share the pool and the change feed.
#[derive(Clone)]
pub struct Store {
    db: Db,
    feed: Arc<Feed>,
}

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        })
    }
}

/// A database URL, parsed.
enum Options {
    Sqlite(SqliteConnectOptions),
    Postgres(PgConnectOptions),
}

fn parse_url(url: &str) -> Result<Options, StoreError> {
    let invalid = |detail: String| StoreError::Invalid {
        field: "database_url",
        detail,
    };
    if url.starts_with("sqlite:") {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| invalid(format!("not a SQLite url: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(WAIT);
        Ok(Options::Sqlite(options))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| invalid(format!("not a PostgreSQL url: {e}")))?;
        Ok(Options::Postgres(options))
    } else {
        Err(invalid(
            "must start with sqlite:// or postgres:// (or postgresql://)".into(),
        ))
    }
}

/// A keyset page request: at most `limit` rows with an id greater than `after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u32,
    pub after: Option<Uuid>,
}

/// A page of the newest rows first: at most `limit` rows created strictly before
/// `created_before` (VoIPBIN's `page_token`, the `tm_create` of the last row of the page
/// before). Rows created in the same microsecond as a page's last row and not on it are not
/// on the next page either: a VoIPBIN token carries nothing else to tell them apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewestFirst {
    pub limit: u32,
    pub created_before: Option<chrono::DateTime<chrono::Utc>>,
}

/// One page; `next_after` is the last item's id when more rows follow.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_after: Option<Uuid>,
}

/// Whose rows a list returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantScope {
    /// Every row (platform admins).
    All,
    /// One tenant's rows.
    Tenant(Uuid),
    /// One tenant's rows plus the platform's (`tenant_id` NULL): what a tenant may use.
    TenantAndPlatform(Uuid),
    /// The platform's rows only (`tenant_id` NULL).
    Platform,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantFilter {
    /// Only this tenant (a tenant admin listing tenants sees its own).
    pub only: Option<Uuid>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarrierFilter {
    pub scope: TenantScope,
    /// `None` lists active and disabled carriers: archived ones are listed only when asked for.
    pub status: Option<CarrierStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteFilter {
    pub scope: TenantScope,
    pub carrier_id: Option<Uuid>,
    pub match_type: Option<MatchType>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneNumberFilter {
    pub scope: TenantScope,
    pub carrier_id: Option<Uuid>,
}

const PING: &str = "SELECT 1";
const CONFIG_VERSION: &str = "SELECT version FROM config_version WHERE id = 1";
const BUMP_VERSION: &str =
    "UPDATE config_version SET version = version + 1 WHERE id = 1 RETURNING version";

impl Store {
    /// Opens a pool: `sqlite://path` (the file is created if missing; `sqlite::memory:` for unit
    /// tests) or `postgres://…` / `postgresql://…`. On PostgreSQL this also starts the task that
    /// follows other instances' writes through `LISTEN trunkline_config`.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        match parse_url(url)? {
            Options::Sqlite(options) => {
                // Every connection to `sqlite::memory:` would be a new, empty database: keep
                // exactly one, forever.
                let in_memory = url.contains(":memory:") || url.contains("mode=memory");
                let mut pool = SqlitePoolOptions::new()
                    .max_connections(MAX_CONNECTIONS)
                    .acquire_timeout(WAIT);
                if in_memory {
                    pool = pool
                        .max_connections(1)
                        .idle_timeout(None)
                        .max_lifetime(None);
                }
                let pool = pool.connect_with(options).await?;
                Ok(Store {
                    db: Db::Sqlite(pool),
                    feed: Arc::new(Feed::new()),
                })
            }
            Options::Postgres(options) => {
                let pool = PgPoolOptions::new()
                    .max_connections(MAX_CONNECTIONS)
                    .acquire_timeout(WAIT)
                    .connect_with(options.clone())
                    .await?;
                let feed = Feed::with_listener(pool.clone(), options);
                Ok(Store {
                    db: Db::Postgres(pool),
                    feed,
                })
            }
        }
    }

    /// The backend a database URL names, checked as [`Store::connect`] checks it, without
    /// connecting (`trunkline check-config`).
    pub fn backend_of(url: &str) -> Result<Backend, StoreError> {
        Ok(match parse_url(url)? {
            Options::Sqlite(_) => Backend::Sqlite,
            Options::Postgres(_) => Backend::Postgres,
        })
    }

    /// Applies the embedded migrations of this backend, then publishes the stored version.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let result = match &self.db {
            // sqlx locks nothing around SQLite migrations: two processes migrating one new file
            // at once (the service starting while an operator runs `trunkline token create`)
            // can both try the same step, and the loser fails on what the winner created. Each
            // step is one transaction, so the loser changed nothing; run again, it finds the
            // step applied. (On PostgreSQL sqlx holds an advisory lock.)
            Db::Sqlite(pool) => {
                let mut attempt = 0;
                loop {
                    match sqlx::migrate!("migrations/sqlite").run(pool).await {
                        Err(_) if attempt < 5 => {
                            attempt += 1;
                            tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                        }
                        result => break result,
                    }
                }
            }
            Db::Postgres(pool) => sqlx::migrate!("migrations/postgres").run(pool).await,
        };
        result.map_err(StoreError::from_migrate)?;
        let version = self.config_version().await?;
        self.feed.raise(version);
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        match self.db {
            Db::Sqlite(_) => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// Whether the database answers (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.db.conn().await?.exec().execute(PING, args![]).await?;
        Ok(())
    }

    /// The latest committed configuration version this process knows of: its own writes at
    /// once, other instances' through NOTIFY (PostgreSQL). It only ever goes up.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.feed.subscribe()
    }

    /// The version in the database now.
    pub async fn config_version(&self) -> Result<u64, StoreError> {
        let (version,) = self
            .db
            .conn()
            .await?
            .exec()
            .fetch_one::<(i64,)>(CONFIG_VERSION, args![])
            .await?;
        version_of(version)
    }

    /// The whole configuration in one consistent read.
    pub async fn load_dataset(&self) -> Result<Dataset, StoreError> {
        let mut tx = self.db.begin_read().await?;
        let (version,) = tx
            .exec()
            .fetch_one::<(i64,)>(CONFIG_VERSION, args![])
            .await?;
        let tenants = tx
            .exec()
            .fetch_all::<TenantRow>(tenants::ALL, args![])
            .await?;
        let carriers = tx
            .exec()
            .fetch_all::<CarrierRow>(carriers::ALL, args![])
            .await?;
        let routes = tx
            .exec()
            .fetch_all::<RouteRow>(routes::ALL, args![])
            .await?;
        let numbers = tx
            .exec()
            .fetch_all::<NumberOwnerRow>(numbers::ALL_OWNERS, args![])
            .await?;
        tx.commit().await?;
        Ok(Dataset {
            version: version_of(version)?,
            tenants: tenants
                .into_iter()
                .map(TenantRow::into_model)
                .collect::<Result<_, _>>()?,
            carriers: carriers
                .into_iter()
                .map(CarrierRow::into_model)
                .collect::<Result<_, _>>()?,
            routes: routes
                .into_iter()
                .map(RouteRow::into_model)
                .collect::<Result<_, _>>()?,
            voice_numbers: numbers
                .into_iter()
                .filter_map(|n| n.into_voice_number().transpose())
                .collect::<Result<_, _>>()?,
        })
    }

    /// Starts a configuration write (see [`Store::commit_config`]).
    async fn begin_config(&self) -> Result<Tx, StoreError> {
        self.db.begin_write().await
    }

    /// The row `get` (`SELECT … WHERE id = $1`) names, read outside any write.
    async fn get_row<R: exec::Record>(
        &self,
        get: &'static str,
        id: Uuid,
    ) -> Result<Option<R>, StoreError> {
        self.db
            .conn()
            .await?
            .exec()
            .fetch_optional(get, args![id])
            .await
    }

    /// [`StoreError::NotFound`] unless the row `get` (`SELECT … WHERE id = $1`) names exists,
    /// checked inside the write transaction `tx` before it updates that row.
    async fn require_row<R: exec::Record>(
        tx: &mut Tx,
        get: &'static str,
        id: Uuid,
    ) -> Result<(), StoreError> {
        match tx.exec().fetch_optional::<R>(get, args![id]).await? {
            Some(_) => Ok(()),
            None => Err(StoreError::NotFound),
        }
    }

    /// A configuration write that deletes the row `delete` (`DELETE … WHERE id = $1`) names;
    /// [`StoreError::NotFound`] (and nothing written) when there is none.
    async fn delete_config_row(&self, delete: &'static str, id: Uuid) -> Result<(), StoreError> {
        let mut tx = self.begin_config().await?;
        if tx.exec().execute(delete, args![id]).await? == 0 {
            return Err(StoreError::NotFound);
        }
        self.commit_config(tx).await?;
        Ok(())
    }

    /// Ends a configuration write: raises the version in the same transaction (and notifies
    /// other instances on PostgreSQL), commits, then tells this process's subscribers. The
    /// version row is touched last so concurrent writers hold its lock only briefly, and
    /// versions follow commit order.
    async fn commit_config(&self, mut tx: Tx) -> Result<u64, StoreError> {
        let (version,) = tx.exec().fetch_one::<(i64,)>(BUMP_VERSION, args![]).await?;
        let version = version_of(version)?;
        if matches!(tx, Tx::Postgres(_)) {
            tx.exec()
                .execute(feed::NOTIFY, args![version.to_string()])
                .await?;
        }
        tx.commit().await?;
        self.feed.raise(version);
        Ok(version)
    }
}

fn version_of(stored: i64) -> Result<u64, StoreError> {
    u64::try_from(stored)
        .map_err(|_| StoreError::Corrupt("config_version.version is negative".into()))
}
