//! Attempt records (`call_attempts`): the batched insert the recorder uses, the filtered keyset
//! list and the per-call view the API shows, and the retention prune.
//!
//! Attempts are history, not configuration: writing them never raises `config_version` nor
//! notifies other instances, and the table has no foreign keys (a record outlives what it
//! names). `failed_over` is computed when read, so it is right whatever order a call's legs
//! were written in.

use chrono::{DateTime, Utc};
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::exec::{Args, Value, args};
use super::list::Select;
use super::rows::{AttemptRow, ts};
use super::{Page, PageRequest, Store, StoreError, TenantScope};
use crate::model::{Attempt, StatusClass};

macro_rules! columns {
    () => {
        "id, call_id, leg_id, switch_id, tenant_id, route_id, carrier_id, gateway, number, \
         attempt, sip_status, cause, q850, started_at, progress_at, answered_at, ended_at, \
         billable_seconds, hangup_by"
    };
}

/// Bound values per inserted row: one per column of [`columns!`].
const COLUMNS: usize = 19;

/// Rows per INSERT statement; a batch is several statements in one transaction. Few, because
/// a statement's cost grows with the square of its parameters on SQLite: sqlx binds each `$N`
/// by asking SQLite for the parameter's name (`sqlite3_bind_parameter_name`, a linear scan).
/// At 500 rows (9,500 parameters) that scan was a third of the process's CPU at 1,000 attempts
/// a second (BENCHMARKS.md, event ingestion); at 25 rows (475) it is a few µs a row, and every
/// full statement is the same text, which sqlx keeps prepared.
const ROWS_PER_STATEMENT: usize = 25;

/// The list's columns, `failed_over` computed: a later attempt of the same call exists. The
/// table is aliased so the subquery's `o` never captures the outer filters' column names.
const SELECT: &str = concat!(
    "SELECT ",
    columns!(),
    ", EXISTS (SELECT 1 FROM call_attempts o WHERE o.call_id = a.call_id \
     AND o.attempt > a.attempt) AS failed_over FROM call_attempts a"
);

/// One batch of the prune: the oldest-ended rows first, at most `$2` of them.
const PRUNE: &str = "DELETE FROM call_attempts WHERE id IN \
     (SELECT id FROM call_attempts WHERE ended_at < $1 ORDER BY ended_at LIMIT $2)";

/// An attempt as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptView {
    pub attempt: Attempt,
    /// The call went on to a later attempt after this one.
    pub failed_over: bool,
}

/// Which attempts a list returns; every filter is optional and they combine with AND.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptFilter {
    pub scope: TenantScope,
    pub carrier_id: Option<Uuid>,
    pub route_id: Option<Uuid>,
    /// The dialled `number` starts with these characters, taken literally.
    pub destination_prefix: Option<String>,
    pub status: Option<StatusClass>,
    /// `started_at` at or after.
    pub started_from: Option<DateTime<Utc>>,
    /// `started_at` strictly before.
    pub started_to: Option<DateTime<Utc>>,
    pub call_id: Option<Uuid>,
}

impl AttemptFilter {
    /// Every attempt in `scope`.
    pub fn new(scope: TenantScope) -> AttemptFilter {
        AttemptFilter {
            scope,
            carrier_id: None,
            route_id: None,
            destination_prefix: None,
            status: None,
            started_from: None,
            started_to: None,
            call_id: None,
        }
    }
}

/// The bound values of one row, in [`columns!`] order.
fn row_args(a: &Attempt, into: &mut Args) {
    into.extend(args![
        a.id,
        a.call_id,
        a.leg_id,
        a.switch_id,
        a.tenant_id,
        a.route_id,
        a.carrier_id,
        storable(&a.gateway),
        storable(&a.number),
        i64::from(a.attempt),
        a.sip_status.map(i64::from),
        storable(&a.cause),
        a.q850.map(i64::from),
        ts(a.started_at),
        a.progress_at.map(ts),
        a.answered_at.map(ts),
        ts(a.ended_at),
        i64::from(a.billable_seconds),
        a.hangup_by.map(|h| h.as_str().to_string()),
    ]);
}

/// Text PostgreSQL can store: it refuses NUL in `text` (SQLite would keep it). The recorder
/// retries a failed batch until it is written, so no value may make an insert fail for good.
fn storable(s: &str) -> String {
    s.replace('\0', "\u{FFFD}")
}

/// `INSERT … VALUES (…), (…) … ON CONFLICT DO NOTHING` for `rows` rows. Any conflict, not only
/// `leg_id`'s: a repeated leg is the expected one, but a batch the recorder retries must never
/// fail for good on a duplicate of any unique column.
fn insert_sql(rows: usize) -> String {
    let mut sql = String::with_capacity(64 + rows * COLUMNS * 5);
    sql.push_str(concat!(
        "INSERT INTO call_attempts (",
        columns!(),
        ") VALUES "
    ));
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..COLUMNS {
            if column > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${}", row * COLUMNS + column + 1));
        }
        sql.push(')');
    }
    sql.push_str(" ON CONFLICT DO NOTHING");
    sql
}

impl Store {
    /// Writes `attempts` in one transaction; a leg already stored (or repeated within the
    /// batch) is skipped. Returns the rows written. Not a configuration write: the version
    /// stays and nothing is notified.
    pub async fn insert_attempts(&self, attempts: &[Attempt]) -> Result<u64, StoreError> {
        if attempts.is_empty() {
            return Ok(0);
        }
        let mut tx = self.db.begin_write().await?;
        let mut written = 0;
        for chunk in attempts.chunks(ROWS_PER_STATEMENT) {
            let mut values = Vec::with_capacity(chunk.len() * COLUMNS);
            for a in chunk {
                row_args(a, &mut values);
            }
            written += tx
                .exec()
                .execute(AssertSqlSafe(insert_sql(chunk.len())), values)
                .await?;
        }
        tx.commit().await?;
        Ok(written)
    }

    /// One keyset page (id order, which is arrival order) of the attempts `f` selects.
    pub async fn list_attempts(
        &self,
        f: &AttemptFilter,
        p: &PageRequest,
    ) -> Result<Page<AttemptView>, StoreError> {
        let mut conn = self.db.conn().await?;
        filtered(f)
            .page(&mut conn, p, |r: &AttemptRow| &r.id, AttemptRow::into_model)
            .await
    }

    /// Every attempt of one call visible in `scope`, in the call's order (empty when none).
    pub async fn call_attempts(
        &self,
        scope: TenantScope,
        call_id: Uuid,
    ) -> Result<Vec<AttemptView>, StoreError> {
        let mut filter = AttemptFilter::new(scope);
        filter.call_id = Some(call_id);
        let mut all = Vec::new();
        let mut page = PageRequest {
            limit: 1000,
            after: None,
        };
        // A call has a handful of legs (max_legs is at most 32); paging keeps even a
        // pathological one bounded per query.
        loop {
            let found = self.list_attempts(&filter, &page).await?;
            all.extend(found.items);
            match found.next_after {
                Some(after) => page.after = Some(after),
                None => break,
            }
        }
        all.sort_by_key(|v| (v.attempt.attempt, v.attempt.id));
        Ok(all)
    }

    /// Deletes the attempts that ended before `ended_before`, `batch` rows per statement, each
    /// its own transaction: a large prune never holds SQLite's write lock for long, and the
    /// recorder's inserts interleave with it. Returns how many were deleted.
    pub async fn prune_attempts(
        &self,
        ended_before: DateTime<Utc>,
        batch: u32,
    ) -> Result<u64, StoreError> {
        let batch = batch.max(1);
        let mut total = 0;
        loop {
            let deleted = self
                .db
                .conn()
                .await?
                .exec()
                .execute(PRUNE, args![ts(ended_before), i64::from(batch)])
                .await?;
            total += deleted;
            if deleted < u64::from(batch) {
                return Ok(total);
            }
            // Let a waiting writer (the recorder) take the lock between batches.
            tokio::task::yield_now().await;
        }
    }
}

/// The attempts a filter selects.
fn filtered(f: &AttemptFilter) -> Select {
    let mut select = Select::from(SELECT);
    select
        .scope(f.scope)
        .and_if("carrier_id = {}", f.carrier_id)
        .and_if("route_id = {}", f.route_id)
        .and_if("call_id = {}", f.call_id)
        // substr, not LIKE: the prefix is compared literally, so `_` or `%` could never act as
        // wildcards even if validation let them through.
        .and_if(
            "substr(number, 1, length({})) = {}",
            f.destination_prefix.clone().map(Value::from),
        )
        .and_if("started_at >= {}", f.started_from.map(ts))
        .and_if("started_at < {}", f.started_to.map(ts));
    match f.status.map(StatusClass::range) {
        None => {}
        Some(None) => {
            select.raw("sip_status IS NULL");
        }
        Some(Some((low, high))) => {
            select
                .and_if("sip_status >= {}", Some(i64::from(low)))
                .and_if("sip_status <= {}", Some(i64::from(high)));
        }
    }
    select
}
