//! The customer API: call logs, search, calls, their transcripts and timelines,
//! comments and exports over HTTP, scoped by API key to one tenant.
//!
//! [`router`] builds the axum app. Every `/v1` route takes the tenant from the
//! request's `Authorization: Bearer` key or console session cookie ([`auth::Tenant`]),
//! so a handler cannot forget to scope its query; another tenant's call answers 404
//! exactly as a call that does not exist. Errors share one JSON shape ([`ApiError`]).
//! The [`console`] (web pages at `/`) reads through those same routes.
//!
//! ```no_run
//! # async fn demo(store: callscope_store::Store) -> std::io::Result<()> {
//! use std::sync::Arc;
//! use callscope_api::{ApiState, KeyRing, key_sha256_hex, router};
//!
//! let keys = Arc::new(KeyRing::new());
//! keys.insert(&key_sha256_hex("cs_demo_key"), "acme").expect("valid hash");
//! let app = router(ApiState::new(store, keys));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await
//! # }
//! ```

pub mod auth;
mod calls;
mod config;
pub mod console;
mod error;
mod export;
mod listener;
mod logs;
pub mod openapi;
mod ops;
mod params;
mod search;
mod stream;
mod timeline;
mod transcript;

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering::Relaxed},
};

use axum::{
    Router,
    extract::{Request, State},
    middleware::{self, Next},
    response::Response,
    routing::{get, post},
};
use callscope_model::metrics::{MetricKind, MetricsSource, PromWriter};
use callscope_store::Store;

pub use auth::{KeyRing, Tenant, key_sha256_hex};
pub use calls::{CallPageBody, CommentBody, CommentListBody, NewComment};
pub use config::{ApiConfig, ApiKeyConfig};
pub use error::{ApiError, ErrorBody};
pub use listener::{ApiListener, StallGuard};
pub use logs::LogPageBody;
pub use search::{Aggregations, SearchBody, SearchResponse};
pub use stream::KEEP_ALIVE;
pub use timeline::{SpanBody, SpanListBody, TurnListBody, TurnSummaryBody};
pub use transcript::{Role, TranscriptBody, TranscriptLineBody};

/// What every handler shares.
#[derive(Clone)]
pub struct ApiState {
    /// The call-log store.
    pub store: Store,
    /// Known API keys.
    pub keys: Arc<KeyRing>,
    /// Other components' metrics, rendered on `/metrics` after the store's.
    pub metrics: Arc<Vec<Arc<dyn MetricsSource>>>,
    /// Console sessions (signed-in browsers).
    pub sessions: Arc<console::session::Sessions>,
    /// Sign-in attempts per client address.
    pub sign_in_limiter: Arc<console::limit::SignInLimiter>,
    requests: Arc<RequestCounts>,
    streams: Arc<stream::Streams>,
}

impl ApiState {
    /// State over `store` with `keys`.
    #[must_use]
    pub fn new(store: Store, keys: Arc<KeyRing>) -> Self {
        Self {
            store,
            keys,
            metrics: Arc::new(Vec::new()),
            sessions: Arc::default(),
            sign_in_limiter: Arc::default(),
            requests: Arc::default(),
            streams: Arc::default(),
        }
    }

    /// `listener`'s connections for [`router`], closed when a write makes no progress
    /// for `stall` (a client that stopped reading); `/metrics` counts them.
    #[must_use]
    pub fn listener(
        &self,
        listener: tokio::net::TcpListener,
        stall: std::time::Duration,
    ) -> ApiListener {
        ApiListener::new(listener, stall, self.streams.stalled.clone())
    }

    /// Ends every open live stream with a final comment, and every stream opened
    /// from now on at once: call it when the server stops, since a graceful shutdown
    /// waits for open responses and a stream never ends by itself.
    pub fn close_streams(&self) {
        self.streams.close();
    }

    /// Adds metrics sources shown on `/metrics` (collector, filter, forwarders).
    #[must_use]
    pub fn with_metrics(mut self, sources: Vec<Arc<dyn MetricsSource>>) -> Self {
        self.metrics = Arc::new(sources);
        self
    }
}

/// Responses by status class.
#[derive(Debug, Default)]
struct RequestCounts([AtomicU64; 5]);

impl RequestCounts {
    fn render(&self, w: &mut PromWriter) {
        let name = "callscope_api_responses_total";
        w.family(
            name,
            MetricKind::Counter,
            "Customer API responses by status class.",
        );
        for (i, c) in self.0.iter().enumerate() {
            let class = format!("{}xx", i + 1);
            w.sample(name, &[("class", &class)], c.load(Relaxed) as f64);
        }
    }
}

async fn count_responses(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let class = usize::from(resp.status().as_u16() / 100).clamp(1, 5) - 1;
    state.requests.0[class].fetch_add(1, Relaxed);
    resp
}

/// The longest request URI (path and query) the API reads, in bytes. Longer ones answer
/// 414 in the JSON error shape. (The HTTP server itself refuses URIs over 65,534 bytes
/// before any route runs, with a 414 that has no body; this limit is below it so that
/// the API's own answer is the one clients normally see.)
pub const MAX_URI_BYTES: usize = 32 * 1024;

/// Gives the answers axum produces itself the JSON error shape: 405 for a known route
/// with another method (keeping its `Allow` header), and 414 for an over-long URI.
async fn uniform_errors(req: Request, next: Next) -> Response {
    use axum::response::IntoResponse as _;
    let uri_len = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if uri_len > MAX_URI_BYTES {
        return ApiError::UriTooLong.into_response();
    }
    let resp = next.run(req).await;
    if resp.status() != axum::http::StatusCode::METHOD_NOT_ALLOWED {
        return resp;
    }
    let allow = resp.headers().get(axum::http::header::ALLOW).cloned();
    let mut json = ApiError::MethodNotAllowed.into_response();
    if let Some(allow) = allow {
        json.headers_mut().insert(axum::http::header::ALLOW, allow);
    }
    json
}

/// The customer API, the operations endpoints and the console. Every response carries
/// the console's security headers (Content-Security-Policy, `nosniff`,
/// `Referrer-Policy`).
///
/// Serve it with [`Router::into_make_service_with_connect_info`]
/// ([`console::limit::ClientAddr`]) so sign-in attempts are limited per client
/// address; without it all clients share one limit.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/calls/{call_id}/logs", get(logs::call_logs))
        .route("/v1/log/call/{call_id}", get(logs::call_logs_alias))
        .route(
            "/v1/calls/{call_id}/logs/export",
            get(export::call_logs_export),
        )
        .route(
            "/v1/calls/{call_id}/logs/stream",
            get(stream::call_logs_stream),
        )
        .route("/v1/logs/stream", get(stream::tenant_logs_stream))
        .route("/v1/logs/search", post(search::search))
        .route("/v1/calls", get(calls::list_calls))
        .route("/v1/calls/export", get(export::calls_export))
        .route("/v1/calls/{call_id}", get(calls::get_call))
        .route("/v1/calls/{call_id}/spans", get(timeline::call_spans))
        .route("/v1/calls/{call_id}/turns", get(timeline::call_turns))
        .route(
            "/v1/calls/{call_id}/comments",
            get(calls::list_comments).post(calls::add_comment),
        )
        .route(
            "/v1/calls/{call_id}/transcript",
            get(transcript::transcript),
        )
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .merge(console::routes())
        .fallback(console::not_found)
        .layer(middleware::map_response(console::security_headers))
        .layer(middleware::from_fn(uniform_errors))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_responses,
        ))
        .with_state(state)
}
