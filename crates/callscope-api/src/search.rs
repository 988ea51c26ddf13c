//! `POST /v1/logs/search`: records across the tenant's calls, with counts by event,
//! level and category over every match.

use std::{collections::BTreeMap, time::Instant};

use axum::{Json, body::Bytes, extract::State};
use callscope_model::{Category, Level, LogRecord, Timestamp};
use callscope_store::{SearchFilter, SearchQuery};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{ApiError, ApiState, auth::Tenant, params::parse_order};

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
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
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

/// Counts over every match.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Aggregations {
    /// Matches per event code.
    pub event_counts: BTreeMap<String, u64>,
    /// Matches per level (levels without matches are absent).
    pub level_counts: BTreeMap<String, u64>,
    /// Matches per category (categories without matches are absent).
    pub category_counts: BTreeMap<String, u64>,
}

/// The answer to a search.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SearchResponse {
    /// The page of records.
    pub results: Vec<LogRecord>,
    /// Every match, on all pages.
    pub total_count: u64,
    /// The page number, from 0.
    pub page: u64,
    /// The page size.
    pub size: u64,
    /// Pages at this size (0 when `size` is 0).
    pub total_pages: u64,
    /// Counts over every match.
    pub aggregations: Aggregations,
    /// Time spent answering, in milliseconds.
    pub execution_time_ms: u64,
}

/// Parses a JSON body; an empty body is `{}`. A body of the wrong shape is
/// [`ApiError::InvalidBody`].
pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body)
        .map_err(|e| ApiError::InvalidBody(format!("The body is not a valid request: {e}")))
}

fn list(v: Option<Vec<String>>, name: &str) -> Result<Vec<String>, ApiError> {
    let v: Vec<String> = v
        .unwrap_or_default()
        .into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    if v.len() > MAX_LIST {
        return Err(ApiError::InvalidQuery(format!(
            "`{name}` takes at most {MAX_LIST} values"
        )));
    }
    Ok(v)
}

fn parsed<T: std::str::FromStr>(v: Option<Vec<String>>, name: &str) -> Result<Vec<T>, ApiError>
where
    T::Err: std::fmt::Display,
{
    list(v, name)?
        .iter()
        .map(|s| {
            s.parse::<T>()
                .map_err(|e| ApiError::InvalidQuery(format!("Invalid `{name}`: {e}")))
        })
        .collect()
}

fn time(v: Option<&str>, name: &str) -> Result<Option<Timestamp>, ApiError> {
    v.map(|s| {
        Timestamp::parse_rfc3339(s.trim()).map_err(|_| {
            ApiError::InvalidQuery(format!(
                "`{name}` must be an RFC 3339 date-time, e.g. 2026-11-21T10:00:00Z"
            ))
        })
    })
    .transpose()
}

fn bounded(v: Option<i64>, name: &str, max: u64, default: u64) -> Result<u64, ApiError> {
    match v {
        None => Ok(default),
        Some(n) => u64::try_from(n).ok().filter(|n| *n <= max).ok_or_else(|| {
            ApiError::InvalidPagination(format!("`{name}` must be an integer from 0 to {max}"))
        }),
    }
}

/// Validates a search body.
///
/// # Errors
/// [`ApiError::InvalidQuery`] or [`ApiError::InvalidPagination`] naming the field.
pub(crate) fn parse_search(b: SearchBody) -> Result<SearchQuery, ApiError> {
    let from = time(b.from.as_deref(), "from")?;
    let to = time(b.to.as_deref(), "to")?;
    if let (Some(f), Some(t)) = (from, to)
        && f > t
    {
        return Err(ApiError::InvalidQuery("`from` is after `to`".into()));
    }
    let text = b.search_text.filter(|t| !t.trim().is_empty());
    if text.as_ref().is_some_and(|t| t.chars().count() > MAX_TEXT) {
        return Err(ApiError::InvalidQuery(format!(
            "`search_text` is longer than {MAX_TEXT} characters"
        )));
    }
    let min_level = b
        .min_level
        .map(|v| {
            v.trim()
                .parse::<Level>()
                .map_err(|e| ApiError::InvalidQuery(format!("Invalid `min_level`: {e}")))
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

/// Searches the tenant's records across calls.
#[utoipa::path(
    post,
    path = "/v1/logs/search",
    tag = "logs",
    request_body = SearchBody,
    responses(
        (status = 200, body = SearchResponse),
        (status = 400, body = crate::error::ErrorBody, description = "INVALID_REQUEST_BODY"),
        (status = 401, body = crate::error::ErrorBody, description = "UNAUTHORIZED"),
        (status = 422, body = crate::error::ErrorBody, description = "INVALID_PAGINATION_PARAMETERS or INVALID_QUERY_PARAMETERS"),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn search(
    State(state): State<ApiState>,
    tenant: Tenant,
    body: Bytes,
) -> Result<Json<SearchResponse>, ApiError> {
    let started = Instant::now();
    let query = parse_search(parse_json(&body)?)?;
    let (page, size) = (query.page, query.size);
    let found = state.store.search(&tenant.0, query).await?;
    Ok(Json(SearchResponse {
        results: found.records,
        total_count: found.total_count,
        page,
        size,
        total_pages: if size == 0 {
            0
        } else {
            found.total_count.div_ceil(size)
        },
        aggregations: Aggregations {
            event_counts: found.event_counts,
            level_counts: found.level_counts,
            category_counts: found.category_counts,
        },
        execution_time_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<SearchQuery, ApiError> {
        parse_search(parse_json(body.as_bytes())?)
    }

    #[test]
    fn defaults_and_fields() {
        let q = parse("").unwrap();
        assert_eq!(
            (q.page, q.size, q.order),
            (0, 20, callscope_store::Order::Desc)
        );
        let q = parse(r#"{"events": ["A"], "categories": ["user"], "levels": ["error"], "min_level": "warning",
            "call_ids": ["c"], "agent_ids": ["a"], "from": "2026-11-21T10:00:00Z", "to": "2026-11-21T11:00:00Z",
            "search_text": "Refund", "sort_direction": "ASC", "page": 2, "size": 0}"#)
        .unwrap();
        assert_eq!(q.filter.categories, [Category::User]);
        assert_eq!(q.filter.levels, [Level::Error]);
        assert_eq!(q.filter.text.as_deref(), Some("Refund"));
        assert_eq!(
            (q.page, q.size, q.order),
            (2, 0, callscope_store::Order::Asc)
        );
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
            assert!(matches!(parse(bad), Err(ApiError::InvalidBody(_))), "{bad}");
        }
        for bad in [
            r#"{"size": 101}"#,
            r#"{"size": -1}"#,
            r#"{"page": -1}"#,
            r#"{"page": 100001}"#,
        ] {
            assert!(
                matches!(parse(bad), Err(ApiError::InvalidPagination(_))),
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
            assert!(
                matches!(parse(bad), Err(ApiError::InvalidQuery(_))),
                "{bad}"
            );
        }
    }
}
