//! The list queries every entity shares: optional filters and a keyset page on the id.
//!
//! Keyset, not OFFSET: ids are UUIDv7 text, so `id > $after ORDER BY id` walks rows in creation
//! order and a row inserted while a client pages can neither shift the rows after it nor appear
//! twice. One row more than asked is read to know whether another page follows.
//!
//! The statement is assembled from `&'static str` fragments written in this module and its
//! callers; every value is a bound parameter, never text in the SQL.

use super::exec::{Args, Conn, Record, Value};
use super::rows::{parse_id, ts};
use super::{NewestFirst, Page, PageRequest, StoreError, TenantScope};
use sqlx::AssertSqlSafe;

/// A `SELECT … FROM … WHERE …` being built.
pub(super) struct Select {
    sql: String,
    args: Args,
}

impl Select {
    /// `base` is `SELECT <columns> FROM <table>` without a WHERE clause.
    pub fn from(base: &'static str) -> Select {
        Select {
            sql: format!("{base} WHERE TRUE"),
            args: Vec::new(),
        }
    }

    /// Adds `AND <predicate>`, where `predicate` uses `{}` for the placeholder of `value`.
    fn and(&mut self, predicate: &'static str, value: impl Into<Value>) -> &mut Self {
        self.args.push(value.into());
        let placeholder = format!("${}", self.args.len());
        self.sql.push_str(" AND ");
        self.sql.push_str(&predicate.replace("{}", &placeholder));
        self
    }

    /// Adds `AND <predicate>` when `value` is given.
    pub fn and_if(
        &mut self,
        predicate: &'static str,
        value: Option<impl Into<Value>>,
    ) -> &mut Self {
        match value {
            Some(v) => self.and(predicate, v),
            None => self,
        }
    }

    /// Adds a predicate without a value.
    pub fn raw(&mut self, predicate: &'static str) -> &mut Self {
        self.sql.push_str(" AND ");
        self.sql.push_str(predicate);
        self
    }

    /// Restricts to the rows of a tenant scope (`tenant_id` column).
    pub fn scope(&mut self, scope: TenantScope) -> &mut Self {
        match scope {
            TenantScope::All => self,
            TenantScope::Tenant(t) => self.and("tenant_id = {}", t),
            TenantScope::TenantAndPlatform(t) => {
                self.and("(tenant_id = {} OR tenant_id IS NULL)", t)
            }
            TenantScope::Platform => self.raw("tenant_id IS NULL"),
        }
    }

    /// Runs the query as one page of the newest rows first, converted with `into_model`.
    /// `created_at` is RFC 3339 text of one fixed width (`rows::ts`), so text order is time
    /// order on both databases.
    pub async fn newest_first<R: Record, T>(
        mut self,
        conn: &mut Conn,
        page: &NewestFirst,
        into_model: impl Fn(R) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        self.and_if("created_at < {}", page.created_before.map(ts));
        self.sql.push_str(&format!(
            " ORDER BY created_at DESC, id DESC LIMIT {}",
            page.limit
        ));
        let rows: Vec<R> = conn
            .exec()
            .fetch_all(AssertSqlSafe(self.sql), self.args)
            .await?;
        rows.into_iter().map(into_model).collect()
    }

    /// Runs the query as one keyset page of `R`, converted with `into_model`.
    pub async fn page<R: Record, T>(
        mut self,
        conn: &mut Conn,
        page: &PageRequest,
        id_of: impl Fn(&R) -> &str,
        into_model: impl Fn(R) -> Result<T, StoreError>,
    ) -> Result<Page<T>, StoreError> {
        if let Some(after) = page.after {
            self.and("id > {}", after);
        }
        // The limit is a number we own (the API bounds it); the extra row says "more follow".
        let limit = u64::from(page.limit);
        self.sql
            .push_str(&format!(" ORDER BY id LIMIT {}", limit + 1));
        let mut rows: Vec<R> = conn
            .exec()
            .fetch_all(AssertSqlSafe(self.sql), self.args)
            .await?;
        let more = rows.len() as u64 > limit;
        rows.truncate(page.limit as usize);
        let next_after = match rows.last() {
            Some(last) if more => Some(parse_id("id", id_of(last))?),
            _ => None,
        };
        Ok(Page {
            items: rows.into_iter().map(into_model).collect::<Result<_, _>>()?,
            next_after,
        })
    }
}
