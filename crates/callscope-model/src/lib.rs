//! The vocabulary every callscope crate shares: levels, categories, visibility, the
//! attribute keys senders use, the call event catalogue, and the stored call-log record.
//!
//! Nothing here does I/O. The types mirror what a sender puts on the wire
//! (`docs/wire.md`) and what the customer API answers (`docs/api.md`).
//!
//! ```
//! use callscope_model::{events, Category, Level};
//!
//! let spec = events::AGENT_MESSAGE_SENT;
//! assert_eq!(spec.category, Category::Agent);
//! assert_eq!(spec.level, Level::Info);
//! assert_eq!(Level::from_severity_number(17), Some(Level::Error));
//! ```

mod call;
mod catalogue;
mod category;
mod error;
mod id;
pub mod keys;
mod level;
pub mod metrics;
mod record;
mod span;
mod visibility;

pub use call::{Call, LevelCounts, STATUS_IN_PROGRESS};
pub use catalogue::{CATALOGUE, CallOutcome, EventSpec, events, lookup_event};
pub use category::Category;
pub use error::ParseError;
pub use id::RecordIdHasher;
pub use level::Level;
pub use record::{LogRecord, TenantRecord, Timestamp, TimestampError};
pub use span::{LatencySummary, SpanKind, SpanRecord, SpanStatus, TenantSpan, Turn, nearest_rank};
pub use visibility::Visibility;
