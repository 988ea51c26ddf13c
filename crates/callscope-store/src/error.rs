//! Storage errors.

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
    /// A per-call query named a cursor id that is not among the records it matches.
    #[error("the cursor id is not in the result set")]
    CursorNotFound,
    /// A query failed.
    #[error("database error: {0}")]
    Database(#[from] duckdb::Error),
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
            Error::Overloaded | Error::Unavailable(_) | Error::Closed
        )
    }
}

/// The store's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
