//! Live streams (Server-Sent Events): `GET /v1/calls/{call_id}/logs/stream` and
//! `GET /v1/logs/stream`.
//!
//! Each stored record is one event: `event: log`, `id: <record id>`, `data: <the
//! record as the log list returns it>`. Records go out in commit order (the store's
//! `seq`); for records one sender sends in time order that is time order too.
//!
//! - The per-call stream first sends the call's stored records, then each new one;
//!   the tenant-wide stream sends only new ones.
//! - `Last-Event-ID` (or `?after=`) resumes after that record: every matching record
//!   committed after it, then new ones. An id the tenant (or, per call, the call) has
//!   no record with answers 422 `INVALID_PAGINATION_PARAMETERS`.
//! - The handler subscribes to the store's commits before it reads anything, and a
//!   stream drops live records whose `seq` it already sent, so no record committed
//!   while the backlog is read is lost or sent twice.
//! - A stream whose client reads too slowly falls behind the store's channel; it is
//!   then ended with a final comment saying so, and the client resumes with
//!   `Last-Event-ID`. Ingest never waits for a stream.
//! - [`crate::ApiState::close_streams`] (graceful shutdown) ends every stream with a
//!   final comment, so the server's shutdown does not wait for clients to leave.

use std::{
    convert::Infallible,
    fmt::Write as _,
    sync::{
        Arc,
        atomic::{AtomicI64, AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use axum::{
    body::Body,
    extract::{RawQuery, State},
    http::{HeaderMap, HeaderValue, header},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use callscope_model::metrics::{MetricKind, PromWriter};
use callscope_query::parse_stream_query;
use callscope_store::{Lag, LiveBatch, LiveRecord, Store, StreamFilter, Subscription};
use tokio::{sync::watch, time::Instant};

use crate::{
    ApiError, ApiState,
    auth::Tenant,
    params::{CallId, Params},
};

/// How often an idle stream sends a comment line, so proxies keep it open.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Records read from storage per backlog query.
const BACKLOG_PAGE: usize = 1000;

/// Why a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    /// The client closed the connection.
    ClientGone,
    /// The client read too slowly and fell behind the store's channel.
    Lagged,
    /// The server is shutting down.
    Shutdown,
    /// Storage failed while reading the backlog.
    Error,
}

impl Reason {
    const ALL: [Reason; 4] = [
        Reason::ClientGone,
        Reason::Lagged,
        Reason::Shutdown,
        Reason::Error,
    ];

    fn label(self) -> &'static str {
        match self {
            Reason::ClientGone => "client_gone",
            Reason::Lagged => "lagged",
            Reason::Shutdown => "shutdown",
            Reason::Error => "error",
        }
    }

    /// The final comment a stream that ends for this reason sends.
    fn comment(self) -> &'static str {
        match self {
            Reason::ClientGone => "",
            Reason::Lagged => ": disconnected: too far behind, resume with Last-Event-ID\n\n",
            Reason::Shutdown => {
                ": disconnected: server shutting down, resume with Last-Event-ID\n\n"
            }
            Reason::Error => ": disconnected: storage error, resume with Last-Event-ID\n\n",
        }
    }
}

/// Which stream: per call or tenant-wide.
#[derive(Debug, Clone, Copy)]
enum Scope {
    Call = 0,
    Tenant = 1,
}

/// What the streams share: the shutdown signal and their metrics.
#[derive(Debug)]
pub(crate) struct Streams {
    shutdown: watch::Sender<bool>,
    open: [AtomicI64; 2],
    disconnects: [AtomicU64; 4],
    events: AtomicU64,
    /// Connections closed because their client stopped reading ([`crate::ApiListener`]).
    pub(crate) stalled: Arc<AtomicU64>,
}

impl Default for Streams {
    fn default() -> Self {
        Self {
            shutdown: watch::channel(false).0,
            open: Default::default(),
            disconnects: Default::default(),
            events: AtomicU64::new(0),
            stalled: Arc::default(),
        }
    }
}

impl Streams {
    /// Ends every open stream, and every stream opened from now on, with a final
    /// comment.
    pub(crate) fn close(&self) {
        self.shutdown.send_replace(true);
    }

    pub(crate) fn render(&self, w: &mut PromWriter) {
        let name = "callscope_api_streams_open";
        w.family(
            name,
            MetricKind::Gauge,
            "Open live streams (SSE), by scope.",
        );
        for (scope, i) in [("call", Scope::Call), ("tenant", Scope::Tenant)] {
            w.sample(
                name,
                &[("scope", scope)],
                self.open[i as usize].load(Relaxed) as f64,
            );
        }
        let name = "callscope_api_stream_disconnects_total";
        w.family(
            name,
            MetricKind::Counter,
            "Live streams ended, by reason: the client left, it fell too far behind, the server shut down, or storage failed.",
        );
        for r in Reason::ALL {
            w.sample(
                name,
                &[("reason", r.label())],
                self.disconnects[r as usize].load(Relaxed) as f64,
            );
        }
        w.single(
            "callscope_api_stream_events_total",
            MetricKind::Counter,
            "Records sent on live streams.",
            self.events.load(Relaxed) as f64,
        );
        w.single(
            "callscope_api_stalled_connections_total",
            MetricKind::Counter,
            "API connections closed because the client read nothing for api.write_stall_timeout_secs (a live stream's among them counts as client_gone).",
            self.stalled.load(Relaxed) as f64,
        );
    }
}

/// Counts a stream as open while it lives, and its end by reason: a stream dropped
/// before it ended by itself lost its client.
struct OpenStream {
    streams: Arc<Streams>,
    scope: Scope,
    ended: Option<Reason>,
}

impl OpenStream {
    fn new(streams: Arc<Streams>, scope: Scope) -> Self {
        streams.open[scope as usize].fetch_add(1, Relaxed);
        Self {
            streams,
            scope,
            ended: None,
        }
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.streams.open[self.scope as usize].fetch_sub(1, Relaxed);
        let reason = self.ended.unwrap_or(Reason::ClientGone);
        self.streams.disconnects[reason as usize].fetch_add(1, Relaxed);
    }
}

/// What woke a live stream up.
enum Woke {
    Stop,
    Got(Result<LiveBatch, Lag>),
    Ping,
}

/// One open stream's state.
struct Live {
    store: Store,
    tenant: Arc<str>,
    call_id: Option<String>,
    filter: StreamFilter,
    /// The `seq` of the last record sent (or resumed after); live records at or below
    /// it were already sent from the backlog.
    last_seq: i64,
    /// Still reading stored records?
    backlog: bool,
    sub: Subscription,
    shutdown: watch::Receiver<bool>,
    open: OpenStream,
    next_ping: Instant,
}

impl Live {
    /// The next chunk of the response body; `None` once the stream has ended.
    async fn next(mut self) -> Option<(Result<Bytes, Infallible>, Live)> {
        if self.open.ended.is_some() {
            return None;
        }
        while self.backlog {
            if *self.shutdown.borrow() {
                return Some(self.end(Reason::Shutdown));
            }
            let page = self
                .store
                .stream_page(
                    &self.tenant,
                    self.call_id.as_deref(),
                    self.filter.clone(),
                    self.last_seq,
                    BACKLOG_PAGE,
                )
                .await;
            match page {
                Ok(records) => {
                    let records = records.unwrap_or_default();
                    self.backlog = records.len() == BACKLOG_PAGE;
                    match self.encode(records.iter()) {
                        Ok(b) if b.is_empty() => {}
                        Ok(b) => return Some(self.send(b)),
                        Err(()) => return Some(self.end(Reason::Error)),
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, tenant = %self.tenant, "Reading a live stream's backlog failed; ending the stream.");
                    return Some(self.end(Reason::Error));
                }
            }
        }
        if *self.shutdown.borrow_and_update() {
            return Some(self.end(Reason::Shutdown));
        }
        loop {
            let woke = tokio::select! {
                biased;
                _ = self.shutdown.changed() => Woke::Stop,
                got = self.sub.recv() => Woke::Got(got),
                () = tokio::time::sleep_until(self.next_ping) => Woke::Ping,
            };
            match woke {
                Woke::Stop => return Some(self.end(Reason::Shutdown)),
                Woke::Got(Ok(batch)) => match self.encode(batch.iter().map(|r| &**r)) {
                    Ok(b) if b.is_empty() => {}
                    Ok(b) => return Some(self.send(b)),
                    Err(()) => return Some(self.end(Reason::Error)),
                },
                Woke::Got(Err(Lag::Behind)) => return Some(self.end(Reason::Lagged)),
                Woke::Got(Err(Lag::Closed)) => return Some(self.end(Reason::Shutdown)),
                Woke::Ping => return Some(self.send(Bytes::from_static(b": keep-alive\n\n"))),
            }
        }
    }

    /// The events for the records not yet sent that pass the filter; advances
    /// `last_seq`. `Err` when a record cannot be encoded (its stored data is corrupt).
    fn encode<'a>(&mut self, records: impl Iterator<Item = &'a LiveRecord>) -> Result<Bytes, ()> {
        let mut out = String::new();
        let mut n = 0u64;
        for r in records {
            if r.seq <= self.last_seq || !r.matches(&self.filter) {
                continue;
            }
            let json = r.json().map_err(|e| {
                tracing::error!(error = %e, id = %r.id, "A stored record cannot be encoded; ending its live stream.");
            })?;
            let _ = write!(out, "event: log\nid: {}\ndata: {json}\n\n", r.id);
            self.last_seq = r.seq;
            n += 1;
        }
        self.open.streams.events.fetch_add(n, Relaxed);
        Ok(Bytes::from(out))
    }

    fn send(mut self, b: Bytes) -> (Result<Bytes, Infallible>, Live) {
        self.next_ping = Instant::now() + KEEP_ALIVE;
        (Ok(b), self)
    }

    fn end(mut self, reason: Reason) -> (Result<Bytes, Infallible>, Live) {
        self.open.ended = Some(reason);
        (Ok(Bytes::from_static(reason.comment().as_bytes())), self)
    }
}

/// Starts a stream: subscribes, resolves the resume point, and answers with the body.
async fn open(
    state: &ApiState,
    tenant: Arc<str>,
    call_id: Option<String>,
    raw: Option<&str>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let last_event_id = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("not text"));
    let query = parse_stream_query(&Params::parse(raw)?, last_event_id, call_id.is_none())?;
    let store = &state.store;
    if let Some(c) = &call_id
        && !store.has_call(&tenant, c).await?
    {
        return Err(ApiError::CallNotFound);
    }
    // Subscribed before anything is read, so what commits from here on is heard.
    let sub = store.subscribe(&tenant, call_id.as_deref());
    let (last_seq, backlog) = match query.after {
        Some(id) => {
            let seq = store
                .stream_position(&tenant, call_id.as_deref(), id)
                .await?
                .ok_or_else(|| {
                    ApiError::InvalidPagination(format!(
                        "No record {id} to resume after: it is not {}'s (or was purged)",
                        if call_id.is_some() {
                            "this call"
                        } else {
                            "this tenant"
                        }
                    ))
                })?;
            (seq, true)
        }
        None => (0, call_id.is_some()),
    };
    let scope = if call_id.is_some() {
        Scope::Call
    } else {
        Scope::Tenant
    };
    let live = Live {
        store: store.clone(),
        tenant,
        call_id,
        filter: query.filter,
        last_seq,
        backlog,
        sub,
        shutdown: state.streams.shutdown.subscribe(),
        open: OpenStream::new(state.streams.clone(), scope),
        next_ping: Instant::now() + KEEP_ALIVE,
    };
    let body = Body::from_stream(futures::stream::unfold(live, Live::next));
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            // Proxies that buffer responses would hold events back.
            (
                header::HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            ),
        ],
        body,
    )
        .into_response())
}

/// A call's records as they are committed (Server-Sent Events).
///
/// First the call's stored records in commit order (for one sender, time order), then
/// each new record within a second of its acknowledgement. Each record is one event:
/// `event: log`, `id: <record id>`, `data: <the record JSON, as the log list returns
/// it>`. A comment line every 15 s keeps an idle stream open. Reconnect with
/// `Last-Event-ID` (or `after`) to get exactly the records missed, then new ones. A
/// client that reads too slowly is disconnected with the final comment `:
/// disconnected: too far behind, resume with Last-Event-ID`.
#[utoipa::path(
    get,
    path = "/v1/calls/{call_id}/logs/stream",
    tag = "logs",
    params(
        ("call_id" = String, Path, description = "The call"),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this record id (what `EventSource` sends when it reconnects); wins over `after`"),
        ("after" = Option<uuid::Uuid>, Query, description = "Resume after this record id"),
        ("category" = Option<String>, Query, description = "One category or a comma-separated list"),
        ("level" = Option<String>, Query, description = "One level or a comma-separated list"),
        ("event" = Option<String>, Query, description = "One event code or a comma-separated list"),
        ("min_level" = Option<String>, Query, description = "At least this level"),
    ),
    responses(
        (status = 200, content_type = "text/event-stream", body = String, description = "An endless stream of `event: log` events whose data is a log record (schema `LogRecord`)"),
        (status = 401, body = crate::error::ErrorBody, description = "UNAUTHORIZED"),
        (status = 404, body = crate::error::ErrorBody, description = "CALL_NOT_FOUND"),
        (status = 422, body = crate::error::ErrorBody, description = "INVALID_PAGINATION_PARAMETERS (a resume id that is not one of the call's records) or INVALID_QUERY_PARAMETERS"),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn call_logs_stream(
    State(state): State<ApiState>,
    tenant: Tenant,
    CallId(call_id): CallId,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    open(&state, tenant.0, Some(call_id), raw.as_deref(), &headers).await
}

/// Every new record of the tenant, across calls, as it is committed (Server-Sent
/// Events).
///
/// Only records committed after the stream opened, unless it resumes with
/// `Last-Event-ID` (or `after`): then every matching record committed after that one
/// first. Events, keep-alive comments and slow clients as for the per-call stream.
#[utoipa::path(
    get,
    path = "/v1/logs/stream",
    tag = "logs",
    params(
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this record id (what `EventSource` sends when it reconnects); wins over `after`"),
        ("after" = Option<uuid::Uuid>, Query, description = "Resume after this record id"),
        ("category" = Option<String>, Query, description = "One category or a comma-separated list"),
        ("level" = Option<String>, Query, description = "One level or a comma-separated list"),
        ("event" = Option<String>, Query, description = "One event code or a comma-separated list"),
        ("min_level" = Option<String>, Query, description = "At least this level"),
        ("call_ids" = Option<String>, Query, description = "Only these calls (comma-separated)"),
        ("agent_ids" = Option<String>, Query, description = "Only these agents (comma-separated)"),
    ),
    responses(
        (status = 200, content_type = "text/event-stream", body = String, description = "An endless stream of `event: log` events whose data is a log record (schema `LogRecord`)"),
        (status = 401, body = crate::error::ErrorBody, description = "UNAUTHORIZED"),
        (status = 422, body = crate::error::ErrorBody, description = "INVALID_PAGINATION_PARAMETERS (a resume id that is not one of the tenant's records) or INVALID_QUERY_PARAMETERS"),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn tenant_logs_stream(
    State(state): State<ApiState>,
    tenant: Tenant,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    open(&state, tenant.0, None, raw.as_deref(), &headers).await
}
