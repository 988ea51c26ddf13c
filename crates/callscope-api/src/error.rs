//! API errors: one enum, one JSON shape.
//!
//! Every error answers `{"status": "error", "error_code": "...", "message": "..."}`.
//! Internal failures are logged in full and shown to the client as a plain message.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Serialize;

/// Everything a `/v1` request can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// Missing or unknown API key.
    #[error("Missing or invalid API key")]
    Unauthorized,
    /// A console-session request that is not allowed: a state change without the
    /// session's CSRF token or from another origin.
    #[error("{0}")]
    Forbidden(String),
    /// The tenant has no such call (also when another tenant has it).
    #[error("Call not found")]
    CallNotFound,
    /// Cursor, page or size parameters that cannot be honoured.
    #[error("{0}")]
    InvalidPagination(String),
    /// An unknown category, level, order, format, or a malformed date.
    #[error("{0}")]
    InvalidQuery(String),
    /// A body that is not valid JSON of the expected shape.
    #[error("{0}")]
    InvalidBody(String),
    /// No such route.
    #[error("Not found")]
    NotFound,
    /// The route exists, not with this method.
    #[error("Method not allowed")]
    MethodNotAllowed,
    /// The request's URI is longer than [`crate::MAX_URI_BYTES`].
    #[error("URI too long")]
    UriTooLong,
    /// Storage is temporarily unable to answer.
    #[error("Service temporarily unavailable")]
    Unavailable,
    /// Anything else. The detail is logged, never returned.
    #[error("Internal server error")]
    Internal(String),
}

/// The error body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Always `"error"`.
    #[schema(example = "error")]
    pub status: &'static str,
    /// A stable code, e.g. `CALL_NOT_FOUND`.
    #[schema(example = "CALL_NOT_FOUND")]
    pub error_code: &'static str,
    /// A sentence for people.
    #[schema(example = "Call not found")]
    pub message: String,
}

impl ApiError {
    /// The HTTP status and the contract's error code.
    #[must_use]
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "FORBIDDEN"),
            ApiError::CallNotFound => (StatusCode::NOT_FOUND, "CALL_NOT_FOUND"),
            ApiError::InvalidPagination(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "INVALID_PAGINATION_PARAMETERS",
            ),
            ApiError::InvalidQuery(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "INVALID_QUERY_PARAMETERS")
            }
            ApiError::InvalidBody(_) => (StatusCode::BAD_REQUEST, "INVALID_REQUEST_BODY"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED"),
            ApiError::UriTooLong => (StatusCode::URI_TOO_LONG, "URI_TOO_LONG"),
            ApiError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_SERVER_ERROR"),
        }
    }
}

impl From<callscope_query::QueryError> for ApiError {
    fn from(e: callscope_query::QueryError) -> Self {
        use callscope_query::QueryError as Q;
        match e {
            Q::Pagination(m) => ApiError::InvalidPagination(m),
            Q::Query(m) => ApiError::InvalidQuery(m),
            Q::Body(m) => ApiError::InvalidBody(m),
        }
    }
}

impl From<callscope_store::Error> for ApiError {
    fn from(e: callscope_store::Error) -> Self {
        match e {
            callscope_store::Error::CursorNotFound => {
                ApiError::InvalidPagination("The cursor id is not in the result set".into())
            }
            e if e.is_retryable() => ApiError::Unavailable,
            e => ApiError::Internal(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, error_code) = self.status_and_code();
        if let ApiError::Internal(detail) = &self {
            tracing::error!(error = %detail, "Request failed.");
        }
        let body = ErrorBody {
            status: "error",
            error_code,
            message: self.to_string(),
        };
        let mut resp = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        resp
    }
}
