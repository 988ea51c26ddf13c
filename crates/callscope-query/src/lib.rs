//! The customer API's query language, without storage or HTTP: the validated queries
//! the store runs ([`LogQuery`], [`CallFilter`], [`SearchQuery`]) and the parsers that
//! turn query strings and JSON bodies into them, refusing with a [`QueryError`] that
//! names the parameter.
//!
//! `callscope-api` answers with these parsers and `callscope-store` runs what they
//! produce; keeping them here lets the fuzz targets in `fuzz/` reach them without the
//! bundled DuckDB.
//!
//! ```
//! use callscope_query::{Order, Params, parse_log_query};
//!
//! let q = parse_log_query(&Params::parse(Some("order=asc&limit=50&level=ERROR,CRITICAL"))?)?;
//! assert_eq!((q.order, q.limit), (Order::Asc, 50));
//! # Ok::<(), callscope_query::QueryError>(())
//! ```

mod calls;
mod logs;
mod params;
mod search;
mod stream;
mod types;

pub use calls::{CallFilterParams, NewComment, number_digits, parse_call_filter, parse_comment};
pub use logs::{DEFAULT_LIMIT, MAX_LIMIT, parse_log_filter, parse_log_query};
pub use params::{Params, parse_order};
pub use search::{SearchBody, parse_json, parse_search};
pub use stream::parse_stream_query;
pub use types::{
    CallFilter, CallSearch, DurationRange, LogFilter, LogQuery, Order, PageAt, SearchFilter,
    SearchQuery, StreamFilter, StreamQuery,
};

/// Why a query string or body was refused; the message names the parameter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// Cursor, page or size parameters that cannot be honoured (the API's 422
    /// `INVALID_PAGINATION_PARAMETERS`).
    #[error("{0}")]
    Pagination(String),
    /// An unknown category, level, order or format, or a malformed date (422
    /// `INVALID_QUERY_PARAMETERS`).
    #[error("{0}")]
    Query(String),
    /// A body that is not valid JSON of the expected shape (400 `INVALID_REQUEST_BODY`).
    #[error("{0}")]
    Body(String),
}
