//! `GET /v1/calls/{call_id}/logs` (and its alias `GET /v1/log/call/{call_id}`): one
//! call's records, paged by number or by cursor, with filters.

use axum::{
    Json,
    extract::{RawQuery, State},
};
use callscope_model::LogRecord;
pub(crate) use callscope_query::parse_log_filter;
use callscope_query::parse_log_query;
pub(crate) use callscope_query::{DEFAULT_LIMIT, MAX_LIMIT};
use callscope_store::LogPage;
use serde::Serialize;
use uuid::Uuid;

use crate::{
    ApiError, ApiState,
    auth::Tenant,
    params::{CallId, Params},
};

/// One page of a call's log.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LogPageBody {
    /// The records, in the requested order.
    pub data: Vec<LogRecord>,
    /// The id of the first record on the page.
    pub first_id: Option<Uuid>,
    /// The id of the last record on the page.
    pub last_id: Option<Uuid>,
    /// More records exist past this page in its direction (past `last_id`, or for
    /// `before`, ahead of `first_id`).
    pub has_more: bool,
    /// The page number; null for cursor queries.
    pub current_page: Option<u64>,
    /// Pages at this limit; null for cursor queries.
    pub total_pages: Option<u64>,
    /// Records matching the filters, on all pages.
    pub total_count: u64,
}

impl From<LogPage> for LogPageBody {
    fn from(p: LogPage) -> Self {
        Self {
            first_id: p.records.first().map(|r| r.id),
            last_id: p.records.last().map(|r| r.id),
            has_more: p.has_more,
            current_page: p.current_page,
            total_pages: p.total_pages,
            total_count: p.total_count,
            data: p.records,
        }
    }
}

/// A call's log records.
#[utoipa::path(
    get,
    path = "/v1/calls/{call_id}/logs",
    tag = "logs",
    params(
        ("call_id" = String, Path, description = "The call"),
        ("after" = Option<Uuid>, Query, description = "Records that follow this log id in `order`"),
        ("before" = Option<Uuid>, Query, description = "Records that precede this log id in `order`, returned in `order`"),
        ("page" = Option<u64>, Query, description = "Page number from 1; not with a cursor"),
        ("limit" = Option<u64>, Query, description = "Records per page, 1–1000 (default 100)"),
        ("order" = Option<String>, Query, description = "`asc` or `desc` (default) by timestamp, ties by id"),
        ("category" = Option<String>, Query, description = "One category or a comma-separated list"),
        ("level" = Option<String>, Query, description = "One level or a comma-separated list"),
        ("event" = Option<String>, Query, description = "One event code or a comma-separated list"),
        ("min_level" = Option<String>, Query, description = "At least this level"),
    ),
    responses(
        (status = 200, body = LogPageBody),
        (status = 401, body = crate::error::ErrorBody, description = "UNAUTHORIZED"),
        (status = 404, body = crate::error::ErrorBody, description = "CALL_NOT_FOUND"),
        (status = 422, body = crate::error::ErrorBody, description = "INVALID_PAGINATION_PARAMETERS or INVALID_QUERY_PARAMETERS"),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn call_logs(
    State(state): State<ApiState>,
    tenant: Tenant,
    CallId(call_id): CallId,
    RawQuery(raw): RawQuery,
) -> Result<Json<LogPageBody>, ApiError> {
    let query = parse_log_query(&Params::parse(raw.as_deref())?)?;
    let page = state
        .store
        .call_logs(&tenant.0, &call_id, query)
        .await?
        .ok_or(ApiError::CallNotFound)?;
    Ok(Json(page.into()))
}

/// The same as `GET /v1/calls/{call_id}/logs`, at its older path.
#[utoipa::path(
    get,
    path = "/v1/log/call/{call_id}",
    tag = "logs",
    params(("call_id" = String, Path, description = "The call")),
    responses((status = 200, body = LogPageBody, description = "As `GET /v1/calls/{call_id}/logs`, with the same query parameters")),
    security(("api_key" = []))
)]
pub(crate) async fn call_logs_alias(
    state: State<ApiState>,
    tenant: Tenant,
    path: CallId,
    raw: RawQuery,
) -> Result<Json<LogPageBody>, ApiError> {
    call_logs(state, tenant, path, raw).await
}
