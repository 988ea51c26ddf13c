//! `GET /v1/calls/{call_id}/logs` (and its alias `GET /v1/log/call/{call_id}`): one
//! call's records, paged by number or by cursor, with filters.

use axum::{
    Json,
    extract::{RawQuery, State},
};
use callscope_model::{Category, Level, LogRecord};
use callscope_store::{LogFilter, LogPage, LogQuery, PageAt};
use serde::Serialize;
use uuid::Uuid;

use crate::{
    ApiError, ApiState,
    auth::Tenant,
    params::{CallId, Params, parse_order},
};

/// The largest `limit`.
pub(crate) const MAX_LIMIT: u64 = 1000;
/// The `limit` when none is given.
pub(crate) const DEFAULT_LIMIT: u64 = 100;

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

fn cursor(params: &Params, name: &str) -> Result<Option<Uuid>, ApiError> {
    params
        .one(name)
        .map(|v| {
            Uuid::parse_str(v.trim()).map_err(|_| {
                ApiError::InvalidPagination(format!(
                    "`{name}` must be a log id from a previous page"
                ))
            })
        })
        .transpose()
}

/// Validates a per-call log query string.
///
/// # Errors
/// [`ApiError::InvalidPagination`] or [`ApiError::InvalidQuery`] naming the parameter.
pub(crate) fn parse_log_query(params: &Params) -> Result<LogQuery, ApiError> {
    let after = cursor(params, "after")?;
    let before = cursor(params, "before")?;
    let page = params.int_in("page", 1..=u64::from(u32::MAX))?;
    let limit = params
        .int_in("limit", 1..=MAX_LIMIT)?
        .unwrap_or(DEFAULT_LIMIT);
    let at = match (after, before, page) {
        (Some(_), Some(_), _) => {
            return Err(ApiError::InvalidPagination(
                "Use either `after` or `before`, not both".into(),
            ));
        }
        (Some(_), None, Some(_)) | (None, Some(_), Some(_)) => {
            return Err(ApiError::InvalidPagination(
                "`page` cannot be combined with a cursor".into(),
            ));
        }
        (Some(id), None, None) => PageAt::After(id),
        (None, Some(id), None) => PageAt::Before(id),
        (None, None, page) => PageAt::Page(page.unwrap_or(1)),
    };
    Ok(LogQuery {
        at,
        limit: u32::try_from(limit).unwrap_or(u32::MAX),
        order: parse_order(params.one("order"), "order")?,
        filter: parse_log_filter(params)?,
    })
}

/// Validates the filters of a per-call log query: `category`, `level`, `event`,
/// `min_level`.
///
/// # Errors
/// [`ApiError::InvalidQuery`] naming the parameter.
pub(crate) fn parse_log_filter(params: &Params) -> Result<LogFilter, ApiError> {
    let min_level = params
        .one("min_level")
        .map(|v| {
            v.trim()
                .parse::<Level>()
                .map_err(|e| ApiError::InvalidQuery(format!("Invalid `min_level`: {e}")))
        })
        .transpose()?;
    Ok(LogFilter {
        categories: params.parsed_list::<Category>("category")?,
        levels: params.parsed_list::<Level>("level")?,
        events: params
            .list("event")
            .into_iter()
            .map(str::to_owned)
            .collect(),
        min_level,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(q: &str) -> Result<LogQuery, ApiError> {
        parse_log_query(&Params::parse(Some(q)).unwrap())
    }

    #[test]
    fn defaults() {
        let q = parse("").unwrap();
        assert_eq!(
            (q.at, q.limit, q.order),
            (PageAt::Page(1), 100, callscope_store::Order::Desc)
        );
    }

    #[test]
    fn pagination_errors() {
        let id = Uuid::nil();
        for bad in [
            format!("after={id}&before={id}"),
            format!("after={id}&page=2"),
            format!("before={id}&page=1"),
            "limit=0".into(),
            "limit=1001".into(),
            "limit=ten".into(),
            "limit=-1".into(),
            "page=0".into(),
            "after=not-a-uuid".into(),
        ] {
            assert!(
                matches!(parse(&bad), Err(ApiError::InvalidPagination(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn query_errors() {
        for bad in [
            "order=sideways",
            "category=BILLING",
            "level=LOUD",
            "min_level=7",
            "level=INFO,NOPE",
        ] {
            assert!(
                matches!(parse(bad), Err(ApiError::InvalidQuery(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn filters_parse() {
        let q = parse("category=agent,USER&level=ERROR&level=critical&event=A,B&min_level=warning&order=ASC&limit=7").unwrap();
        assert_eq!(q.filter.categories, [Category::Agent, Category::User]);
        assert_eq!(q.filter.levels, [Level::Error, Level::Critical]);
        assert_eq!(q.filter.events, ["A", "B"]);
        assert_eq!(q.filter.min_level, Some(Level::Warning));
        assert_eq!((q.order, q.limit), (callscope_store::Order::Asc, 7));
    }
}
