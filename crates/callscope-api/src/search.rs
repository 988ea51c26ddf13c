//! `POST /v1/logs/search`: records across the tenant's calls, with counts by event,
//! level and category over every match.

use std::{collections::BTreeMap, time::Instant};

use axum::{Json, body::Bytes, extract::State};
use callscope_model::LogRecord;
pub use callscope_query::SearchBody;
use callscope_query::{parse_json, parse_search};
use serde::Serialize;

use crate::{ApiError, ApiState, auth::Tenant};

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
        (status = 403, body = crate::error::ErrorBody, description = "FORBIDDEN: a console-session request without the session's CSRF token or from another origin"),
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
