//! `GET /v1/calls` (the calls list), `GET /v1/calls/{call_id}` (one call) and the
//! call's comments.

use axum::{
    Json,
    body::Bytes,
    extract::{RawQuery, State},
    http::StatusCode,
};
use callscope_model::{Call, Timestamp};
use callscope_store::{CallFilter, Comment};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    ApiError, ApiState,
    auth::Tenant,
    logs::{DEFAULT_LIMIT, MAX_LIMIT},
    params::{CallId, Params},
};

/// One page of the calls list, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CallPageBody {
    /// The calls on this page.
    pub data: Vec<Call>,
    /// Calls exist on later pages.
    pub has_more: bool,
    /// The page number, from 1.
    pub current_page: u64,
    /// Pages at this limit.
    pub total_pages: u64,
    /// Calls matching the filters, on all pages.
    pub total_count: u64,
}

fn timestamp(params: &Params, name: &str) -> Result<Option<Timestamp>, ApiError> {
    params
        .one(name)
        .map(|v| {
            Timestamp::parse_rfc3339(v.trim()).map_err(|_| {
                ApiError::InvalidQuery(format!(
                    "`{name}` must be an RFC 3339 date-time, e.g. 2026-11-21T10:00:00Z"
                ))
            })
        })
        .transpose()
}

fn millis(params: &Params, name: &str) -> Result<Option<i64>, ApiError> {
    params
        .one(name)
        .map(|v| {
            v.trim()
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| {
                    ApiError::InvalidQuery(format!(
                        "`{name}` must be a whole number of milliseconds"
                    ))
                })
        })
        .transpose()
}

fn strings(params: &Params, name: &str) -> Vec<String> {
    params.list(name).into_iter().map(str::to_owned).collect()
}

/// The directions a call can have.
const DIRECTIONS: [&str; 2] = ["inbound", "outbound"];

/// Validates the calls list's filters (shared with the calls export).
///
/// # Errors
/// [`ApiError::InvalidQuery`] naming the parameter.
pub(crate) fn parse_call_filter(params: &Params) -> Result<CallFilter, ApiError> {
    let directions = strings(params, "direction")
        .into_iter()
        .map(|d| {
            let d = d.to_ascii_lowercase();
            if DIRECTIONS.contains(&d.as_str()) {
                Ok(d)
            } else {
                Err(ApiError::InvalidQuery(
                    "`direction` must be `inbound` or `outbound`".into(),
                ))
            }
        })
        .collect::<Result<_, _>>()?;
    let filter = CallFilter {
        statuses: strings(params, "status")
            .into_iter()
            .map(|s| s.to_ascii_lowercase())
            .collect(),
        directions,
        from_number: params.one("from_number").map(|s| s.trim().to_owned()),
        to_number: params.one("to_number").map(|s| s.trim().to_owned()),
        agent_ids: strings(params, "agent_id"),
        campaign_ids: strings(params, "campaign_id"),
        hangup_reasons: strings(params, "hangup_reason"),
        hangup_sources: strings(params, "hangup_source"),
        min_duration_ms: millis(params, "min_duration_ms")?,
        max_duration_ms: millis(params, "max_duration_ms")?,
        started_after: timestamp(params, "started_after")?,
        started_before: timestamp(params, "started_before")?,
    };
    Ok(filter)
}

/// The tenant's calls, newest first.
#[utoipa::path(
    get,
    path = "/v1/calls",
    tag = "calls",
    params(
        ("status" = Option<String>, Query, description = "`in_progress`, `completed`, `failed`, `canceled` or a terminal event's own status such as `missed`; one or a comma-separated list"),
        ("direction" = Option<String>, Query, description = "`inbound` or `outbound`"),
        ("from_number" = Option<String>, Query, description = "The caller's number, exactly"),
        ("to_number" = Option<String>, Query, description = "The called number, exactly"),
        ("agent_id" = Option<String>, Query, description = "One agent or a comma-separated list"),
        ("campaign_id" = Option<String>, Query, description = "One campaign or a comma-separated list"),
        ("hangup_reason" = Option<String>, Query, description = "One reason or a comma-separated list"),
        ("hangup_source" = Option<String>, Query, description = "One source or a comma-separated list"),
        ("min_duration_ms" = Option<u64>, Query, description = "At least this long"),
        ("max_duration_ms" = Option<u64>, Query, description = "At most this long"),
        ("started_after" = Option<String>, Query, description = "Started at or after this RFC 3339 time"),
        ("started_before" = Option<String>, Query, description = "Started before this RFC 3339 time"),
        ("page" = Option<u64>, Query, description = "Page number from 1"),
        ("limit" = Option<u64>, Query, description = "Calls per page, 1–1000 (default 100)"),
    ),
    responses(
        (status = 200, body = CallPageBody),
        (status = 401, body = crate::error::ErrorBody, description = "UNAUTHORIZED"),
        (status = 422, body = crate::error::ErrorBody, description = "INVALID_PAGINATION_PARAMETERS or INVALID_QUERY_PARAMETERS"),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn list_calls(
    State(state): State<ApiState>,
    tenant: Tenant,
    RawQuery(raw): RawQuery,
) -> Result<Json<CallPageBody>, ApiError> {
    let params = Params::parse(raw.as_deref())?;
    let page = params.int_in("page", 1..=u64::from(u32::MAX))?.unwrap_or(1);
    let limit = params
        .int_in("limit", 1..=MAX_LIMIT)?
        .unwrap_or(DEFAULT_LIMIT);
    let filter = parse_call_filter(&params)?;
    let offset = (page - 1).saturating_mul(limit);
    let found = state
        .store
        .list_calls(&tenant.0, filter, limit, offset)
        .await?;
    Ok(Json(CallPageBody {
        has_more: offset.saturating_add(found.calls.len() as u64) < found.total_count,
        current_page: page,
        total_pages: found.total_count.div_ceil(limit),
        total_count: found.total_count,
        data: found.calls,
    }))
}

/// One call, built from its lifecycle events.
#[utoipa::path(
    get,
    path = "/v1/calls/{call_id}",
    tag = "calls",
    params(("call_id" = String, Path, description = "The call")),
    responses(
        (status = 200, body = Call),
        (status = 401, body = crate::error::ErrorBody, description = "UNAUTHORIZED"),
        (status = 404, body = crate::error::ErrorBody, description = "CALL_NOT_FOUND"),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn get_call(
    State(state): State<ApiState>,
    tenant: Tenant,
    CallId(call_id): CallId,
) -> Result<Json<Call>, ApiError> {
    state
        .store
        .call(&tenant.0, &call_id)
        .await?
        .map(Json)
        .ok_or(ApiError::CallNotFound)
}

/// A note on a call.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CommentBody {
    /// The comment's id.
    pub id: Uuid,
    /// The call it is about.
    pub call_id: String,
    /// Who wrote it.
    pub author: String,
    /// What it says.
    pub text: String,
    /// When it was stored (RFC 3339, UTC).
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

impl From<Comment> for CommentBody {
    fn from(c: Comment) -> Self {
        Self {
            id: c.id,
            call_id: c.call_id,
            author: c.author,
            text: c.text,
            created_at: c.created_at,
        }
    }
}

/// A call's comments, oldest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CommentListBody {
    /// The comments.
    pub data: Vec<CommentBody>,
}

/// A new comment.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewComment {
    /// Who writes it (1–200 characters).
    pub author: String,
    /// What it says (1–10,000 characters).
    pub text: String,
}

/// The longest comment author, in characters.
const MAX_AUTHOR: usize = 200;
/// The longest comment text, in characters.
const MAX_TEXT: usize = 10_000;

fn parse_comment(body: &[u8]) -> Result<NewComment, ApiError> {
    let c: NewComment = crate::search::parse_json(body)?;
    let check = |name: &str, v: &str, max: usize| {
        if v.trim().is_empty() || v.chars().count() > max {
            Err(ApiError::InvalidBody(format!(
                "`{name}` must be a non-blank string of at most {max} characters"
            )))
        } else {
            Ok(())
        }
    };
    check("author", &c.author, MAX_AUTHOR)?;
    check("text", &c.text, MAX_TEXT)?;
    Ok(NewComment {
        author: c.author.trim().to_owned(),
        text: c.text,
    })
}

/// Adds a comment to a call.
#[utoipa::path(
    post,
    path = "/v1/calls/{call_id}/comments",
    tag = "calls",
    params(("call_id" = String, Path, description = "The call")),
    request_body = NewComment,
    responses(
        (status = 201, body = CommentBody),
        (status = 400, body = crate::error::ErrorBody, description = "INVALID_REQUEST_BODY"),
        (status = 401, body = crate::error::ErrorBody, description = "UNAUTHORIZED"),
        (status = 404, body = crate::error::ErrorBody, description = "CALL_NOT_FOUND"),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn add_comment(
    State(state): State<ApiState>,
    tenant: Tenant,
    CallId(call_id): CallId,
    body: Bytes,
) -> Result<(StatusCode, Json<CommentBody>), ApiError> {
    let new = parse_comment(&body)?;
    let c = state
        .store
        .add_comment(&tenant.0, &call_id, &new.author, &new.text)
        .await?
        .ok_or(ApiError::CallNotFound)?;
    Ok((StatusCode::CREATED, Json(c.into())))
}

/// A call's comments, oldest first.
#[utoipa::path(
    get,
    path = "/v1/calls/{call_id}/comments",
    tag = "calls",
    params(("call_id" = String, Path, description = "The call")),
    responses(
        (status = 200, body = CommentListBody),
        (status = 401, body = crate::error::ErrorBody, description = "UNAUTHORIZED"),
        (status = 404, body = crate::error::ErrorBody, description = "CALL_NOT_FOUND"),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn list_comments(
    State(state): State<ApiState>,
    tenant: Tenant,
    CallId(call_id): CallId,
) -> Result<Json<CommentListBody>, ApiError> {
    let list = state
        .store
        .comments(&tenant.0, &call_id)
        .await?
        .ok_or(ApiError::CallNotFound)?;
    Ok(Json(CommentListBody {
        data: list.into_iter().map(Into::into).collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(q: &str) -> Result<CallFilter, ApiError> {
        parse_call_filter(&Params::parse(Some(q)).unwrap())
    }

    #[test]
    fn call_filters_parse_and_reject() {
        let f = filter("status=Missed,failed&direction=INBOUND&min_duration_ms=5&started_after=2026-11-21T10:00:00Z&agent_id=a,b").unwrap();
        assert_eq!(f.statuses, ["missed", "failed"]);
        assert_eq!(f.directions, ["inbound"]);
        assert_eq!(f.min_duration_ms, Some(5));
        assert_eq!(f.agent_ids, ["a", "b"]);
        assert!(f.started_after.is_some());
        for bad in [
            "direction=sideways",
            "min_duration_ms=-1",
            "max_duration_ms=lots",
            "started_before=yesterday",
        ] {
            assert!(
                matches!(filter(bad), Err(ApiError::InvalidQuery(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn comments_need_an_author_and_text() {
        assert!(parse_comment(br#"{"author": "ann", "text": "ok"}"#).is_ok());
        for bad in [
            &br#"{"author": "ann"}"#[..],
            br#"{"author": " ", "text": "x"}"#,
            br#"{"author": "a", "text": ""}"#,
            br#"{"author": "a", "text": "x", "extra": 1}"#,
            br#"{"author": 5, "text": "x"}"#,
            b"not json",
        ] {
            assert!(
                matches!(parse_comment(bad), Err(ApiError::InvalidBody(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = format!(
            r#"{{"author": "a", "text": "{}"}}"#,
            "x".repeat(MAX_TEXT + 1)
        );
        assert!(parse_comment(long.as_bytes()).is_err());
    }
}
