//! The two concrete pools behind one set of queries (the vaultwarden pattern: an enum of
//! connections and a dispatch macro, since `AnyPool` can neither bind a `Uuid` nor listen).
//!
//! A query is a SQL string with `$n` placeholders (both drivers read them; SQLite maps `$n` to
//! the n-th argument, so a placeholder may repeat) and [`Args`], a list of portable [`Value`]s.
//! [`Exec`] runs it on whichever connection it holds; the repositories never match on the
//! backend themselves.

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnection, PgPool, PgRow};
use sqlx::sqlite::{SqliteConnection, SqlitePool, SqliteRow};
use sqlx::{FromRow, Postgres, SqlSafeStr, Sqlite, Transaction};
use uuid::Uuid;

use super::StoreError;

#[derive(Clone, Debug)]
pub(super) enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A bound value: every column is text, a 64-bit integer or a boolean, on both backends.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Value {
    Text(Option<String>),
    Int(Option<i64>),
    Bool(bool),
}

pub(super) type Args = Vec<Value>;

/// `args![a, b, …]`: the arguments of a query, `$1` first.
macro_rules! args {
    ($($value:expr),* $(,)?) => {
        vec![$($crate::store::exec::Value::from($value)),*]
    };
}
pub(super) use args;

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Text(Some(s))
    }
}

impl From<Option<String>> for Value {
    fn from(s: Option<String>) -> Self {
        Value::Text(s)
    }
}

/// Ids are stored hyphenated, lower case: the form `Uuid`'s `Display` writes and the form
/// whose text order is the UUIDv7 time order.
impl From<Uuid> for Value {
    fn from(id: Uuid) -> Self {
        Value::Text(Some(id.hyphenated().to_string()))
    }
}

impl From<Option<Uuid>> for Value {
    fn from(id: Option<Uuid>) -> Self {
        Value::Text(id.map(|id| id.hyphenated().to_string()))
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::Int(Some(n))
    }
}

impl From<Option<i64>> for Value {
    fn from(n: Option<i64>) -> Self {
        Value::Int(n)
    }
}

impl From<Option<u32>> for Value {
    fn from(n: Option<u32>) -> Self {
        Value::Int(n.map(i64::from))
    }
}

impl From<u16> for Value {
    fn from(n: u16) -> Self {
        Value::Int(Some(i64::from(n)))
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

/// A row type both drivers can decode.
pub(super) trait Record:
    for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{
}

impl<T> Record for T where
    T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{
}

/// A connection of either backend, borrowed for one query.
pub(super) enum Exec<'c> {
    Sqlite(&'c mut SqliteConnection),
    Postgres(&'c mut PgConnection),
}

/// Runs `$body` with `$conn` bound to the concrete connection and `$db` to its database type:
/// the body is written once and compiled for both.
macro_rules! dispatch {
    ($exec:expr, |$conn:ident, $db:ident| $body:expr) => {
        match $exec {
            Exec::Sqlite($conn) => {
                type $db = Sqlite;
                $body
            }
            Exec::Postgres($conn) => {
                type $db = Postgres;
                $body
            }
        }
    };
}

/// Binds every argument, in order, to a `query` or `query_as`.
macro_rules! bind_all {
    ($query:expr, $args:expr) => {{
        let mut query = $query;
        for value in $args {
            query = match value {
                Value::Text(v) => query.bind(v),
                Value::Int(v) => query.bind(v),
                Value::Bool(v) => query.bind(v),
            };
        }
        query
    }};
}

impl Exec<'_> {
    pub async fn fetch_optional<R: Record>(
        self,
        sql: impl SqlSafeStr,
        args: Args,
    ) -> Result<Option<R>, StoreError> {
        Ok(dispatch!(self, |conn, DB| {
            bind_all!(sqlx::query_as::<DB, R>(sql), args)
                .fetch_optional(conn)
                .await
        })?)
    }

    /// One row; none is [`StoreError::NotFound`].
    pub async fn fetch_one<R: Record>(
        self,
        sql: impl SqlSafeStr,
        args: Args,
    ) -> Result<R, StoreError> {
        self.fetch_optional(sql, args)
            .await?
            .ok_or(StoreError::NotFound)
    }

    pub async fn fetch_all<R: Record>(
        self,
        sql: impl SqlSafeStr,
        args: Args,
    ) -> Result<Vec<R>, StoreError> {
        Ok(dispatch!(self, |conn, DB| {
            bind_all!(sqlx::query_as::<DB, R>(sql), args)
                .fetch_all(conn)
                .await
        })?)
    }

    /// Runs a statement; returns the number of rows it changed.
    pub async fn execute(self, sql: impl SqlSafeStr, args: Args) -> Result<u64, StoreError> {
        Ok(dispatch!(self, |conn, DB| {
            bind_all!(sqlx::query::<DB>(sql), args)
                .execute(conn)
                .await
                .map(|done| done.rows_affected())
        })?)
    }
}

/// A pooled connection outside any transaction (single reads).
pub(super) enum Conn {
    Sqlite(PoolConnection<Sqlite>),
    Postgres(PoolConnection<Postgres>),
}

impl Conn {
    pub fn exec(&mut self) -> Exec<'_> {
        match self {
            Conn::Sqlite(c) => Exec::Sqlite(c),
            Conn::Postgres(c) => Exec::Postgres(c),
        }
    }
}

/// An open transaction; dropping it without [`Tx::commit`] rolls back.
pub(super) enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

impl Tx {
    pub fn exec(&mut self) -> Exec<'_> {
        match self {
            Tx::Sqlite(t) => Exec::Sqlite(t),
            Tx::Postgres(t) => Exec::Postgres(t),
        }
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(t) => t.commit().await?,
            Tx::Postgres(t) => t.commit().await?,
        }
        Ok(())
    }
}

impl Db {
    pub async fn conn(&self) -> Result<Conn, StoreError> {
        Ok(match self {
            Db::Sqlite(p) => Conn::Sqlite(p.acquire().await?),
            Db::Postgres(p) => Conn::Postgres(p.acquire().await?),
        })
    }

    /// A transaction that will write. SQLite: `BEGIN IMMEDIATE` takes the write lock up front,
    /// so concurrent writers queue on `busy_timeout` instead of failing with SQLITE_BUSY when a
    /// deferred transaction tries to upgrade its read lock.
    pub async fn begin_write(&self) -> Result<Tx, StoreError> {
        Ok(match self {
            Db::Sqlite(p) => Tx::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
            Db::Postgres(p) => Tx::Postgres(p.begin().await?),
        })
    }

    /// A transaction that reads several tables as of one moment. SQLite in WAL mode gives a
    /// deferred transaction one snapshot from its first read; PostgreSQL needs REPEATABLE READ
    /// (READ COMMITTED takes a new snapshot per statement).
    pub async fn begin_read(&self) -> Result<Tx, StoreError> {
        Ok(match self {
            Db::Sqlite(p) => Tx::Sqlite(p.begin().await?),
            Db::Postgres(p) => Tx::Postgres(
                p.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await?,
            ),
        })
    }
}
