//! `GET /v1/calls` (the calls list), `GET /v1/calls/{call_id}` (one call) and the
//! call's comments.

use axum::{
    Json,
    body::Bytes,
    extract::{RawQuery, State},
    http::StatusCode,
};
use callscope_model::{Call, Timestamp};
pub use callscope_query::NewComment;
pub(crate) use callscope_query::parse_call_filter;
use callscope_query::{CallFilterParams, parse_comment};
use callscope_store::Comment;
use serde::Serialize;
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

/// The tenant's calls, newest first.
#[utoipa::path(
    get,
    path = "/v1/calls",
    tag = "calls",
    params(
        CallFilterParams,
        ("page" = Option<u64>, Query, description = "Page number from 1"),
        ("limit" = Option<u64>, Query, description = "Calls per page, 1–1000 (default 100)"),
    ),
    responses(
        (status = 200, body = CallPageBody),
        (status = 401, body = crate::error::ErrorBody, description = "UNAUTHORIZED"),
        (status = 422, body = crate::error::ErrorBody, description = "INVALID_PAGINATION_PARAMETERS (`page`, `limit`) or INVALID_QUERY_PARAMETERS (a filter), the message naming the parameter"),
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
        (status = 403, body = crate::error::ErrorBody, description = "FORBIDDEN: a console-session request without the session's CSRF token or from another origin"),
        (status = 404, body = crate::error::ErrorBody, description = "CALL_NOT_FOUND"),
    ),
    security(("api_key" = []), ("console_session" = []))
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
