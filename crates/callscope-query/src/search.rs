//! The search body: `POST /v1/logs/search {"events": […], "search_text": …}`.

use callscope_model::{Category, Level, Timestamp};
use serde::{Deserialize, de::DeserializeOwned};

use crate::{QueryError, SearchFilter, SearchQuery, parse_order};

/// The largest `size`.
const MAX_SIZE: u64 = 100;
/// The `size` when none is given.
const DEFAULT_SIZE: u64 = 20;
/// The highest `page` (0-based).
const MAX_PAGE: u64 = 100_000;
/// The most values in one list filter.
const MAX_LIST: usize = 1_000;
/// The longest `search_text`, in characters.
const MAX_TEXT: usize = 1_000;

/// A search. Every field is optional.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SearchBody {
    /// Any of these event codes.
    pub events: Option<Vec<String>>,
    /// Any of these categories.
    pub categories: Option<Vec<String>>,
    /// Any of these levels.
    pub levels: Option<Vec<String>>,
    /// At least this level.
    pub min_level: Option<String>,
    /// Any of these calls.
    pub call_ids: Option<Vec<String>>,
    /// Any of these agents.
    pub agent_ids: Option<Vec<String>>,
    /// At or after this RFC 3339 time.
    pub from: Option<String>,
    /// At or before this RFC 3339 time.
    pub to: Option<String>,
    /// Case-insensitive text the message or a data value must contain.
    pub search_text: Option<String>,
    /// `asc` or `desc` (default) by timestamp.
    pub sort_direction: Option<String>,
    /// Page number from 0.
    pub page: Option<i64>,
    /// Records per page, 0–100 (default 20); 0 returns aggregations only.
    pub size: Option<i64>,
}

/// Parses a JSON body; an empty body is `{}`. A body of the wrong shape is
/// [`QueryError::Body`].
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, QueryError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body)
        .map_err(|e| QueryError::Body(format!("The body is not a valid request: {e}")))
}

fn list(v: Option<Vec<String>>, name: &str) -> Result<Vec<String>, QueryError> {
    let v: Vec<String> = v
        .unwrap_or_default()
        .into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    if v.len() > MAX_LIST {
        return Err(QueryError::Query(format!(
            "`{name}` takes at most {MAX_LIST} values"
        )));
    }
    Ok(v)
}

fn parsed<T: std::str::FromStr>(v: Option<Vec<String>>, name: &str) -> Result<Vec<T>, QueryError>
where
    T::Err: std::fmt::Display,
{
    list(v, name)?
        .iter()
        .map(|s| {
            s.parse::<T>()
                .map_err(|e| QueryError::Query(format!("Invalid `{name}`: {e}")))
        })
        .collect()
}

fn time(v: Option<&str>, name: &str) -> Result<Option<Timestamp>, QueryError> {
    v.map(|s| {
        Timestamp::parse_rfc3339(s.trim()).map_err(|_| {
            QueryError::Query(format!(
                "`{name}` must be an RFC 3339 date-time, e.g. 2026-11-21T10:00:00Z"
            ))
        })
    })
    .transpose()
}

fn bounded(v: Option<i64>, name: &str, max: u64, default: u64) -> Result<u64, QueryError> {
    match v {
        None => Ok(default),
        Some(n) => u64::try_from(n).ok().filter(|n| *n <= max).ok_or_else(|| {
            QueryError::Pagination(format!("`{name}` must be an integer from 0 to {max}"))
        }),
    }
}

/// Validates a search body.
///
/// # Errors
/// [`QueryError::Query`] or [`QueryError::Pagination`] naming the field.
pub fn parse_search(b: SearchBody) -> Result<SearchQuery, QueryError> {
    let from = time(b.from.as_deref(), "from")?;
    let to = time(b.to.as_deref(), "to")?;
    if let (Some(f), Some(t)) = (from, to)
        && f > t
    {
        return Err(QueryError::Query("`from` is after `to`".into()));
    }
    let text = b.search_text.filter(|t| !t.trim().is_empty());
    if text.as_ref().is_some_and(|t| t.chars().count() > MAX_TEXT) {
        return Err(QueryError::Query(format!(
            "`search_text` is longer than {MAX_TEXT} characters"
        )));
    }
    let min_level = b
        .min_level
        .map(|v| {
            v.trim()
                .parse::<Level>()
                .map_err(|e| QueryError::Query(format!("Invalid `min_level`: {e}")))
        })
        .transpose()?;
    Ok(SearchQuery {
        filter: SearchFilter {
            events: list(b.events, "events")?,
            categories: parsed::<Category>(b.categories, "categories")?,
            levels: parsed::<Level>(b.levels, "levels")?,
            min_level,
            call_ids: list(b.call_ids, "call_ids")?,
            agent_ids: list(b.agent_ids, "agent_ids")?,
            from,
            to,
            text,
        },
        order: parse_order(b.sort_direction.as_deref(), "sort_direction")?,
        page: bounded(b.page, "page", MAX_PAGE, 0)?,
        size: bounded(b.size, "size", MAX_SIZE, DEFAULT_SIZE)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<SearchQuery, QueryError> {
        parse_search(parse_json(body.as_bytes())?)
    }

    #[test]
    fn defaults_and_fields() {
        let q = parse("").unwrap();
        assert_eq!((q.page, q.size, q.order), (0, 20, crate::Order::Desc));
        let q = parse(r#"{"events": ["A"], "categories": ["user"], "levels": ["error"], "min_level": "warning",
            "call_ids": ["c"], "agent_ids": ["a"], "from": "2026-11-21T10:00:00Z", "to": "2026-11-21T11:00:00Z",
            "search_text": "Refund", "sort_direction": "ASC", "page": 2, "size": 0}"#)
        .unwrap();
        assert_eq!(q.filter.categories, [Category::User]);
        assert_eq!(q.filter.levels, [Level::Error]);
        assert_eq!(q.filter.text.as_deref(), Some("Refund"));
        assert_eq!((q.page, q.size, q.order), (2, 0, crate::Order::Asc));
    }

    #[test]
    fn errors_follow_the_contract() {
        for bad in [
            "[1]",
            "{\"size\": \"ten\"}",
            "{\"surprise\": 1}",
            "{",
            "{\"events\": \"A\"}",
        ] {
            assert!(matches!(parse(bad), Err(QueryError::Body(_))), "{bad}");
        }
        for bad in [
            r#"{"size": 101}"#,
            r#"{"size": -1}"#,
            r#"{"page": -1}"#,
            r#"{"page": 100001}"#,
        ] {
            assert!(
                matches!(parse(bad), Err(QueryError::Pagination(_))),
                "{bad}"
            );
        }
        for bad in [
            r#"{"categories": ["BILLING"]}"#,
            r#"{"levels": ["LOUD"]}"#,
            r#"{"min_level": "x"}"#,
            r#"{"from": "yesterday"}"#,
            r#"{"from": "2026-11-21T11:00:00Z", "to": "2026-11-21T10:00:00Z"}"#,
            r#"{"sort_direction": "up"}"#,
        ] {
            assert!(matches!(parse(bad), Err(QueryError::Query(_))), "{bad}");
        }
    }
}
