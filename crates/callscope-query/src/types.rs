//! The validated queries the store runs: what the API's parsers produce.

use callscope_model::{Category, Level, Timestamp};
use uuid::Uuid;

/// Sort order by time (ties by id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// Oldest first.
    Asc,
    /// Newest first (the API's default).
    #[default]
    Desc,
}

impl Order {
    /// The opposite order.
    #[must_use]
    pub fn reverse(self) -> Order {
        match self {
            Order::Asc => Order::Desc,
            Order::Desc => Order::Asc,
        }
    }
}

/// Which page to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageAt {
    /// Page number, from 1.
    Page(u64),
    /// The records that follow this id in the order.
    After(Uuid),
    /// The records that precede this id in the order.
    Before(Uuid),
}

/// Filters on a call's records; empty lists mean "any".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFilter {
    /// Any of these categories.
    pub categories: Vec<Category>,
    /// Any of these levels.
    pub levels: Vec<Level>,
    /// Any of these event codes.
    pub events: Vec<String>,
    /// At least this level.
    pub min_level: Option<Level>,
}

/// A validated per-call log query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogQuery {
    /// Which page.
    pub at: PageAt,
    /// Records per page (the API allows 1–1000).
    pub limit: u32,
    /// Sort order.
    pub order: Order,
    /// Filters.
    pub filter: LogFilter,
}

/// Filters on the calls list; `None` and empty lists mean "any".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallFilter {
    /// Any of these statuses (`in_progress`, `completed`, `failed`, `missed`, …).
    pub statuses: Vec<String>,
    /// Any of these directions.
    pub directions: Vec<String>,
    /// Digits the caller's number contains, once its formatting is ignored (see
    /// [`number_digits`](crate::number_digits)).
    pub from_number: Option<String>,
    /// Digits the called number contains, as for `from_number`.
    pub to_number: Option<String>,
    /// Any of these agents.
    pub agent_ids: Vec<String>,
    /// Any of these campaigns.
    pub campaign_ids: Vec<String>,
    /// Any of these hang-up reasons.
    pub hangup_reasons: Vec<String>,
    /// Any of these hang-up sources.
    pub hangup_sources: Vec<String>,
    /// Bounds on the call's duration (calls without one don't match a bound).
    pub duration: DurationRange,
    /// Bounds on the time the call rang before it was answered.
    pub ringing_duration: DurationRange,
    /// Bounds on the time the voice bot was on the call.
    pub bot_duration: DurationRange,
    /// Bounds on the billed time.
    pub billed_duration: DurationRange,
    /// Started at or after this time.
    pub started_after: Option<Timestamp>,
    /// Started before this time.
    pub started_before: Option<Timestamp>,
    /// The `q` search: a call-id prefix, or digits in either number.
    pub search: Option<CallSearch>,
}

/// Inclusive bounds on a duration in milliseconds; a call without the duration
/// matches no bound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DurationRange {
    /// At least this many milliseconds.
    pub min_ms: Option<i64>,
    /// At most this many milliseconds.
    pub max_ms: Option<i64>,
}

/// What `q` matches: calls whose id starts with `call_id_prefix`, or, when `q` is
/// spelled like a phone number, whose caller or called number contains its digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSearch {
    /// The text as given (trimmed): a call-id prefix.
    pub call_id_prefix: String,
    /// Its digits, when it reads as a number.
    pub number_digits: Option<String>,
}

/// Filters of a search; empty lists and `None` mean "any".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchFilter {
    /// Any of these event codes.
    pub events: Vec<String>,
    /// Any of these categories.
    pub categories: Vec<Category>,
    /// Any of these levels.
    pub levels: Vec<Level>,
    /// At least this level.
    pub min_level: Option<Level>,
    /// Any of these calls.
    pub call_ids: Vec<String>,
    /// Any of these agents.
    pub agent_ids: Vec<String>,
    /// At or after this time.
    pub from: Option<Timestamp>,
    /// At or before this time.
    pub to: Option<Timestamp>,
    /// Case-insensitive text that the message or a data value must contain.
    pub text: Option<String>,
}

/// A validated search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    /// Filters.
    pub filter: SearchFilter,
    /// Time order of the page (ties by id).
    pub order: Order,
    /// Page number, from 0.
    pub page: u64,
    /// Records per page; 0 asks for the counts only.
    pub size: u64,
}

/// Filters of a live stream: the log list's, and for the tenant-wide stream also
/// calls and agents. Empty lists mean "any".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamFilter {
    /// Category, level, event and minimum level, as the log list takes them.
    pub log: LogFilter,
    /// Any of these calls (tenant-wide stream only).
    pub call_ids: Vec<String>,
    /// Any of these agents (tenant-wide stream only).
    pub agent_ids: Vec<String>,
}

/// A validated live-stream request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamQuery {
    /// What to send.
    pub filter: StreamFilter,
    /// Resume after this record (`Last-Event-ID` or `after`): send what followed it.
    pub after: Option<Uuid>,
}
