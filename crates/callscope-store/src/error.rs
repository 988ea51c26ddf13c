//! Storage errors, and the one place a DuckDB error is classified.
//!
//! Every `duckdb::Error` becomes an [`Error`] through `From` (so through `?`), which
//! reads DuckDB's error type once and picks a variant. Code elsewhere matches variants,
//! never message text.

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The write queue is full: the caller should refuse with a retryable status
    /// (HTTP 429/503 with `Retry-After`, gRPC `UNAVAILABLE`).
    #[error("the storage queue is full; retry later")]
    Overloaded,
    /// DuckDB refused a write (disk full, read-only file, …). Nothing in the batch was
    /// committed; the caller answers 503 and the sender retries.
    #[error("storage is unavailable: {0}")]
    Unavailable(String),
    /// The store is shutting down.
    #[error("the store is shut down")]
    Closed,
    /// An argument the store refuses before touching the database.
    #[error("{0}")]
    InvalidArgument(String),
    /// A per-call query named a cursor id that is not among the records it matches.
    #[error("the cursor id is not in the result set")]
    CursorNotFound,
    /// DuckDB invalidated the database instance (after a fatal or internal error, e.g.
    /// a checkpoint that failed on a full disk): every statement on it fails until the
    /// file is opened again, which the writer does. Retryable.
    #[error("the database must be reopened: {0}")]
    Invalidated(duckdb::Error),
    /// Another process holds the database file (DuckDB lets one process open it).
    #[error("the database file is in use by another process: {0}")]
    Locked(duckdb::Error),
    /// A write broke a constraint, e.g. a key that is already stored.
    #[error("constraint violated: {0}")]
    Constraint(duckdb::Error),
    /// Another instance sharing the lake committed a change this transaction's
    /// changes conflict with; the same transaction succeeds on a fresh snapshot.
    #[error("commit conflict: {0}")]
    Conflict(duckdb::Error),
    /// Any other DuckDB failure.
    #[error("database error: {0}")]
    Database(duckdb::Error),
    /// A value in the database could not be read back.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// Writing an export file failed.
    #[error("export failed: {0}")]
    Export(String),
    /// Opening the database file failed.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// Should the sender retry the same request later?
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Overloaded
                | Error::Unavailable(_)
                | Error::Closed
                | Error::Invalidated(_)
                | Error::Conflict(_)
        )
    }

    /// Did a commit lose to another instance's (DuckLake)?
    #[must_use]
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict(_))
    }
}

/// DuckDB's error types, as the first words of its messages name them
/// (`"<Type> Error: …"`); the C API's typed error data is not what statements return.
fn error_type(e: &duckdb::Error) -> Option<&str> {
    let duckdb::Error::DuckDBFailure(_, Some(message)) = e else {
        return None;
    };
    message.split_once(" Error: ").map(|(kind, _)| kind)
}

impl From<duckdb::Error> for Error {
    fn from(e: duckdb::Error) -> Self {
        let message = match &e {
            duckdb::Error::DuckDBFailure(_, Some(m)) => m.as_str(),
            _ => "",
        };
        match error_type(&e) {
            // Fatal errors invalidate the instance; internal ones were seen to as well
            // (a query that raced a commit failing on a full disk). Later statements
            // say so in their own words, under other types.
            Some("FATAL" | "INTERNAL") => Error::Invalidated(e),
            _ if message.contains("database has been invalidated") => Error::Invalidated(e),
            Some("IO") if message.contains("Could not set lock on file") => Error::Locked(e),
            Some("Constraint") => Error::Constraint(e),
            // DuckLake's own conflict check, and PostgreSQL's serialisation failure
            // when the catalog's rows changed under a statement (maintenance deleting
            // inlined rows while another instance inserts).
            Some("TransactionContext") if message.contains("Transaction conflict") => {
                Error::Conflict(e)
            }
            _ if message.contains("could not serialize access") => Error::Conflict(e),
            _ => Error::Database(e),
        }
    }
}

/// The store's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::Error;

    fn run(conn: &duckdb::Connection, sql: &str) -> Error {
        conn.execute_batch(sql).unwrap_err().into()
    }

    #[test]
    fn duckdb_errors_become_typed_variants() {
        let conn = duckdb::Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (k VARCHAR PRIMARY KEY); INSERT INTO t VALUES ('a')")
            .unwrap();
        let dup = run(&conn, "INSERT INTO t VALUES ('a')");
        assert!(matches!(dup, Error::Constraint(_)), "{dup:?}");
        assert!(!dup.is_retryable());
        let syntax = run(&conn, "SELEC 1");
        assert!(matches!(syntax, Error::Database(_)), "{syntax:?}");
        let missing = run(&conn, "SELECT * FROM no_such_table");
        assert!(matches!(missing, Error::Database(_)), "{missing:?}");
        let no_rows: Error = conn
            .query_row("SELECT 1 WHERE false", [], |r| r.get::<_, i64>(0))
            .unwrap_err()
            .into();
        assert!(matches!(no_rows, Error::Database(_)), "{no_rows:?}");
    }

    #[test]
    fn fatal_and_internal_errors_invalidate() {
        for kind in ["FATAL", "INTERNAL"] {
            let e = duckdb::Error::DuckDBFailure(
                duckdb::ffi::Error::new(1),
                Some(format!("{kind} Error: Failed to commit")),
            );
            let e = Error::from(e);
            assert!(matches!(e, Error::Invalidated(_)), "{e:?}");
            assert!(e.is_retryable());
        }
    }
}
