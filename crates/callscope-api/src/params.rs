//! Request parsing shared by the routes: the `{call_id}` segment here, query strings
//! from `callscope-query` (repeated and comma-separated values, strict numbers, errors
//! that name the parameter).

use axum::{
    extract::{FromRequestParts, Path},
    http::request::Parts,
};

use crate::ApiError;

/// The `{call_id}` path segment. A segment that does not decode (invalid UTF-8 after
/// percent-decoding) names no call: it answers 404 `CALL_NOT_FOUND` in the contract's
/// shape, where axum's own rejection would be a plain-text 400.
#[derive(Debug, Clone)]
pub(crate) struct CallId(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for CallId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(id)| CallId(id))
            .map_err(|_| ApiError::CallNotFound)
    }
}

pub(crate) use callscope_query::{Params, parse_order};
