//! Operations endpoints: liveness, readiness, metrics, the OpenAPI document. None needs
//! a key and none reveals tenant data.

use axum::{
    Json,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
};
use callscope_model::metrics::{MetricsSource, PromWriter};
use serde_json::json;
use utoipa::OpenApi as _;

use crate::{ApiState, openapi::ApiDoc};

/// `GET /healthz`: the process is up.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "The process is up: `{\"status\": \"ok\"}`")),
)]
pub(crate) async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: storage is writable.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "The last write succeeded: `{\"status\": \"ok\"}`"),
        (status = 503, description = "Storage is not writable: `{\"status\": \"error\", \"message\": …}`"),
    ),
)]
pub(crate) async fn readyz(State(state): State<ApiState>) -> impl IntoResponse {
    if state.store.is_ready() {
        (StatusCode::OK, Json(json!({"status": "ok"})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "error", "message": "storage is not writable"})),
        )
    }
}

/// `GET /metrics`: Prometheus text.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, content_type = "text/plain; version=0.0.4", body = String, description = "Counters, gauges and histograms in the Prometheus text format; no tenant data")),
)]
pub(crate) async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    let mut w = PromWriter::new();
    state.store.metrics().render(&mut w);
    for source in state.metrics.iter() {
        source.render(&mut w);
    }
    state.requests.render(&mut w);
    state.streams.render(&mut w);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        w.finish(),
    )
}

/// `GET /openapi.json`: OpenAPI 3.1 of the customer API.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "This document")),
)]
pub(crate) async fn openapi() -> impl IntoResponse {
    Json(ApiDoc::openapi())
}
