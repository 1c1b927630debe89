//! The store's one error type and how database failures map onto it.
//!
//! The API turns these into responses (`api/error.rs`): `NotFound` 404, `Conflict` and `InUse`
//! 409, `Invalid` 422, `Unavailable` 503, the rest 500. So the mapping here must be precise: a
//! unique violation names the field the client can fix, and a database that is down or busy is
//! `Unavailable`, never a 500. Details never echo stored or submitted values (a value may be
//! hostile or a secret).

use std::borrow::Cow;

use sqlx::error::{DatabaseError, ErrorKind};
use sqlx::migrate::MigrateError;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A unique value is already taken (`gateway_name`, `context`, `number`, `token_hash`).
    #[error("{field}: {detail}")]
    Conflict { field: &'static str, detail: String },
    /// A carrier cannot stop being active while enabled routes use it: (route id, route name).
    #[error("the carrier is used by {} enabled outbound route(s)", routes.len())]
    InUse { routes: Vec<(Uuid, String)> },
    /// A reference to a row that does not exist, or a value the database refuses.
    #[error("{field}: {detail}")]
    Invalid { field: &'static str, detail: String },
    /// The database cannot be reached or is busy: worth retrying later. The driver's error is
    /// kept as the source.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// A stored row no longer parses as the model.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// Anything else the database or a migration reported, kept as the source.
    #[error("database error: {0}")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The unique constraints the schema declares: PostgreSQL's constraint name, SQLite's
/// `table.column` as its message spells it, the field reported, and the detail.
const UNIQUE: &[(&str, &str, &str, &str)] = &[
    (
        "carriers_gateway_name_key",
        "carriers.gateway_name",
        "gateway_name",
        "another carrier already uses this gateway name (gateway names are global in FreeSWITCH)",
    ),
    (
        "tenants_context_key",
        "tenants.context",
        "context",
        "another tenant already uses this context",
    ),
    (
        "phone_numbers_number_key",
        "phone_numbers.number",
        "number",
        "this number is already in the inventory",
    ),
    (
        "api_tokens_token_hash_key",
        "api_tokens.token_hash",
        "token_hash",
        "a token with this hash already exists",
    ),
];

/// The columns a foreign key violation can be about, as PostgreSQL names its constraints
/// (`<table>_<column>_fkey`). SQLite does not say which key failed; the repositories check
/// references first inside the same transaction, so this fallback is for PostgreSQL.
const REFERENCES: &[&str] = &["carrier_id", "tenant_id"];

/// SQLSTATE classes and codes meaning "try again later" on PostgreSQL: connection exceptions,
/// too many connections, the server shutting down or starting up.
fn pg_unavailable(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "53300" | "57P01" | "57P02" | "57P03")
}

/// SQLite primary result codes SQLITE_BUSY and SQLITE_LOCKED (the extended code's low byte).
fn sqlite_unavailable(code: &str) -> bool {
    code.parse::<u32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6))
}

impl StoreError {
    /// The precise errors a database failure can be: a unique or foreign key violation the
    /// client can fix, or a database that is down or busy. `None`: an unexpected failure.
    fn classify(e: &dyn DatabaseError) -> Option<Class> {
        let code = e.code().unwrap_or(Cow::Borrowed(""));
        match e.kind() {
            ErrorKind::UniqueViolation => {
                let constraint = e.constraint().unwrap_or_default();
                let message = e.message();
                UNIQUE
                    .iter()
                    .find(|(pg, sqlite, _, _)| {
                        constraint == *pg
                            || message.strip_prefix("UNIQUE constraint failed: ") == Some(*sqlite)
                    })
                    .map(|(_, _, field, detail)| Class::Conflict { field, detail })
            }
            ErrorKind::ForeignKeyViolation => {
                let constraint = e.constraint().unwrap_or_default();
                REFERENCES
                    .iter()
                    .find(|column| constraint.contains(*column))
                    .map(|field| Class::MissingReference { field })
            }
            _ if pg_unavailable(&code)
                && e.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                    .is_some() =>
            {
                Some(Class::Unavailable)
            }
            _ if sqlite_unavailable(&code)
                && e.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() =>
            {
                Some(Class::Unavailable)
            }
            _ => None,
        }
    }

    pub(super) fn from_migrate(e: MigrateError) -> StoreError {
        match e {
            MigrateError::Execute(e) | MigrateError::ExecuteMigration(e, _) => e.into(),
            other => StoreError::Database(Box::new(other)),
        }
    }
}

/// What [`StoreError::classify`] found.
enum Class {
    Conflict {
        field: &'static str,
        detail: &'static str,
    },
    MissingReference {
        field: &'static str,
    },
    Unavailable,
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        let class = match &e {
            sqlx::Error::Database(db) => StoreError::classify(&**db),
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => Some(Class::Unavailable),
            sqlx::Error::RowNotFound => return StoreError::NotFound,
            _ => None,
        };
        match class {
            Some(Class::Conflict { field, detail }) => StoreError::Conflict {
                field,
                detail: detail.to_string(),
            },
            Some(Class::MissingReference { field }) => StoreError::Invalid {
                field,
                detail: "refers to a row that does not exist".into(),
            },
            Some(Class::Unavailable) => StoreError::Unavailable(e),
            None => StoreError::Database(Box::new(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_busy_and_locked_are_unavailable_whatever_the_extended_code() {
        assert!(sqlite_unavailable("5"));
        assert!(sqlite_unavailable("517")); // SQLITE_BUSY_SNAPSHOT
        assert!(sqlite_unavailable("6"));
        assert!(!sqlite_unavailable("19")); // SQLITE_CONSTRAINT
        assert!(!sqlite_unavailable("2067")); // SQLITE_CONSTRAINT_UNIQUE
    }

    #[test]
    fn the_drivers_error_is_kept_as_the_source() {
        use std::error::Error as _;
        let busy = StoreError::from(sqlx::Error::PoolTimedOut);
        assert!(matches!(busy, StoreError::Unavailable(_)));
        assert!(
            busy.source()
                .is_some_and(|s| s.downcast_ref::<sqlx::Error>().is_some())
        );
        let other = StoreError::from(sqlx::Error::ColumnNotFound("version".into()));
        assert!(matches!(other, StoreError::Database(_)));
        let source = other.source().expect("a source");
        assert!(source.to_string().contains("version"), "{source}");
        assert!(matches!(
            StoreError::from(sqlx::Error::RowNotFound),
            StoreError::NotFound
        ));
    }

    #[test]
    fn postgres_connection_failures_are_unavailable_and_constraint_failures_are_not() {
        assert!(pg_unavailable("08006"));
        assert!(pg_unavailable("57P01"));
        assert!(!pg_unavailable("23505"));
    }
}
