//! Live streams end to end: a real server, records sent over OTLP/HTTP, and the
//! Server-Sent Events read with a real HTTP client. Backlog then live, resume with
//! `Last-Event-ID` (after a disconnect and across a restart) with nothing missed or
//! repeated, filters, auth and tenant scoping, a slow consumer cut off while ingest
//! keeps its rate, and graceful shutdown ending the streams.

mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use callscope_collector::{
    testing::{LogBuilder, ResourceBuilder, request},
    visibility::record_id,
};
use serde_json::Value;
use support::{
    Harness, key_for, metric,
    otlp::{self, SenderSpec, Via},
};
use uuid::Uuid;

/// What one SSE block held.
#[derive(Debug, Clone, PartialEq)]
enum Item {
    /// `event: log` with its id and data.
    Log { id: Uuid, data: Value },
    /// Comment lines only (keep-alive, or the final word).
    Comment(String),
    /// The server ended the response.
    End,
}

/// An open stream, read block by block.
struct Sse {
    resp: reqwest::Response,
    buf: String,
}

impl Sse {
    /// Opens `path` as `tenant` (none: no key), resuming after `last` when given.
    async fn open(
        h: &Harness,
        path: &str,
        tenant: Option<&str>,
        last: Option<Uuid>,
    ) -> Result<Sse, (u16, Value)> {
        let mut req = h.http.get(h.api(path));
        if let Some(t) = tenant {
            req = req.bearer_auth(key_for(t));
        }
        if let Some(id) = last {
            req = req.header("last-event-id", id.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        if status != 200 {
            let text = resp.text().await.unwrap();
            return Err((status, serde_json::from_str(&text).unwrap_or(Value::Null)));
        }
        assert_eq!(
            resp.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Ok(Sse {
            resp,
            buf: String::new(),
        })
    }

    /// The next block, or `None` when nothing arrives `within`.
    async fn next(&mut self, within: Duration) -> Option<Item> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                return Some(parse_block(&block));
            }
            match tokio::time::timeout_at(deadline, self.resp.chunk()).await {
                Err(_) => return None,
                Ok(Ok(Some(bytes))) => self.buf.push_str(std::str::from_utf8(&bytes).unwrap()),
                Ok(Ok(None) | Err(_)) => {
                    assert!(self.buf.trim().is_empty(), "cut mid-event: {:?}", self.buf);
                    return Some(Item::End);
                }
            }
        }
    }

    /// The next `n` log events (comments skipped), each within `within`.
    async fn logs(&mut self, n: usize, within: Duration) -> Vec<(Uuid, Value)> {
        let mut out = Vec::new();
        while out.len() < n {
            match self.next(within).await {
                Some(Item::Log { id, data }) => out.push((id, data)),
                Some(Item::Comment(_)) => {}
                other => panic!("expected {n} events, got {} then {other:?}", out.len()),
            }
        }
        out
    }

    /// Asserts nothing but comments arrives for `quiet`.
    async fn expect_silence(&mut self, quiet: Duration) {
        let until = tokio::time::Instant::now() + quiet;
        loop {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                None => return,
                Some(Item::Comment(_)) => {}
                Some(other) => panic!("expected nothing more, got {other:?}"),
            }
        }
    }
}

fn parse_block(block: &str) -> Item {
    let (mut event, mut id, mut data, mut comments) = (None, None, None, Vec::new());
    for line in block.lines() {
        if let Some(c) = line.strip_prefix(':') {
            comments.push(c.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("event: ") {
            event = Some(v.to_owned());
        } else if let Some(v) = line.strip_prefix("id: ") {
            id = Some(v.parse().unwrap());
        } else if let Some(v) = line.strip_prefix("data: ") {
            assert!(data.is_none(), "one data line per event: {block}");
            data = Some(serde_json::from_str::<Value>(v).unwrap());
        } else if !line.is_empty() {
            panic!("unexpected SSE line {line:?}");
        }
    }
    match (event, id, data) {
        (Some(e), Some(id), Some(data)) => {
            assert_eq!(e, "log");
            assert_eq!(data["id"], Value::String(Uuid::to_string(&id)));
            Item::Log { id, data }
        }
        (None, None, None) => Item::Comment(comments.join("\n")),
        _ => panic!("incomplete event: {block}"),
    }
}

/// Opens `path` as acme over a raw connection with a small receive buffer, and does
/// not read it (see [`read_unread`]).
async fn open_unread(h: &Harness, path: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt as _;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(8 * 1024).unwrap();
    let mut conn = socket.connect(h.server().api_addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: callscope\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        key_for("acme")
    );
    conn.write_all(req.as_bytes()).await.unwrap();
    conn
}

/// Reads what the server sent on `conn` until it closed it: a 200 with a chunked
/// `text/event-stream` body, as SSE blocks.
async fn read_unread(mut conn: tokio::net::TcpStream) -> Vec<Item> {
    use tokio::io::AsyncReadExt as _;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), conn.read_to_end(&mut raw))
        .await
        .expect("the server closes the connection")
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, mut chunked) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    let mut body = String::new();
    loop {
        let (size, rest) = chunked.split_once("\r\n").unwrap();
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        body.push_str(&rest[..size]);
        chunked = &rest[size + 2..];
    }
    let mut items: Vec<Item> = body
        .split_inclusive("\n\n")
        .map(|block| {
            assert!(block.ends_with("\n\n"), "cut mid-event: {block:?}");
            parse_block(block)
        })
        .collect();
    items.push(Item::End);
    items
}

/// Record numbers unique within the test process, so every record is new.
fn next_number() -> u64 {
    static N: AtomicU64 = AtomicU64::new(1);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Sends one request of records (event, OTLP severity number) for `tenant`'s
/// `call_id` over OTLP/HTTP; asserts it is acknowledged and returns the ids in order.
async fn send(h: &Harness, tenant: &str, call_id: &str, records: &[(&str, i32)]) -> Vec<Uuid> {
    let built: Vec<_> = records
        .iter()
        .map(|(event, severity)| {
            let n = next_number();
            LogBuilder::customer(event)
                .call(call_id)
                .tenant(tenant)
                .agent(&format!("agent-of-{call_id}"))
                .severity(*severity)
                .time(otlp::base_time() + n * 1000)
                .attr("n", i64::try_from(n).unwrap())
                .attr("text", "hello")
                .build()
        })
        .collect();
    let ids: Vec<Uuid> = built
        .iter()
        .zip(records)
        .map(|(r, (event, _))| record_id(tenant, call_id, event, r))
        .collect();
    let req = request([ResourceBuilder::new().logs(built).build()]);
    let answer = otlp::send_http(
        &otlp::http_client(),
        &format!("http://{}", h.server().http_addr),
        &req,
        false,
    )
    .await;
    assert!(answer.acked, "{answer:?}");
    ids
}

const INFO: i32 = 9;
const WARN: i32 = 13;
const ERROR: i32 = 17;
const SECOND: Duration = Duration::from_secs(1);

/// Every record id of acme's call `call_id`, as the log list pages them (oldest first).
async fn all_ids(h: &Harness, call_id: &str) -> Vec<Uuid> {
    support::api_ids(&h.http, h.server().api_addr, "acme", call_id)
        .await
        .expect("the call exists")
}

fn ids(events: &[(Uuid, Value)]) -> Vec<Uuid> {
    events.iter().map(|(id, _)| *id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_then_live_each_record_once_as_the_log_list_shows_it() {
    let h = Harness::start().await;
    let stored = send(&h, "acme", "c-live", &[("GREETING_SENT", INFO); 5]).await;
    let mut s = Sse::open(&h, "/v1/calls/c-live/logs/stream", Some("acme"), None)
        .await
        .unwrap();
    let backlog = s.logs(5, SECOND).await;
    assert_eq!(
        ids(&backlog),
        stored,
        "the stored records first, oldest first"
    );
    // Each event's data is the record exactly as the log list returns it.
    let listed = h.call_records("acme", "c-live").await;
    let data: Vec<Value> = backlog.iter().map(|(_, d)| d.clone()).collect();
    assert_eq!(data, listed);

    // Then every new record, within a second of its acknowledgement.
    for round in 0..5 {
        let sent = send(&h, "acme", "c-live", &[("AGENT_MESSAGE_SENT", INFO); 3]).await;
        let acked = Instant::now();
        let live = s.logs(3, SECOND).await;
        assert!(
            acked.elapsed() < SECOND,
            "round {round}: {:?}",
            acked.elapsed()
        );
        assert_eq!(ids(&live), sent);
    }
    let listed = h.call_records("acme", "c-live").await;
    assert_eq!(listed.len(), 20);
    s.expect_silence(Duration::from_millis(300)).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_disconnects_misses_and_repeats_nothing() {
    let h = Harness::start().await;
    let first = send(&h, "acme", "c-resume", &[("GREETING_SENT", INFO); 4]).await;

    // A sender that keeps committing records while the client comes and goes.
    let stop = Arc::new(AtomicBool::new(false));
    let sender = tokio::spawn(otlp::sender(
        SenderSpec {
            via: Via::Http,
            url: format!("http://{}", h.server().http_addr),
            tenant: "acme".into(),
            call_id: "c-resume".into(),
            // Stamped after every record `send` makes, so time order is commit order.
            first_seq: 10_000_000_000,
            per_request: 7,
            pad: 50,
            stop_on_transport_error: true,
            backoff: Duration::from_millis(5),
        },
        stop.clone(),
    ));

    let mut seen: Vec<Uuid> = Vec::new();
    let mut last = None;
    for round in 0..8 {
        let mut s = Sse::open(&h, "/v1/calls/c-resume/logs/stream", Some("acme"), last)
            .await
            .unwrap();
        let got = s.logs(5 + round * 3, Duration::from_secs(5)).await;
        seen.extend(ids(&got));
        last = seen.last().copied();
        // Gone; the sender goes on committing while nobody listens.
        drop(s);
        tokio::time::sleep(Duration::from_millis(50 + 20 * round as u64)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let tally = sender.await.unwrap();
    assert!(tally.unexpected.is_empty(), "{:?}", tally.unexpected);

    // One more resume gets exactly the rest: the stream's order is the log list's.
    let mut s = Sse::open(&h, "/v1/calls/c-resume/logs/stream", Some("acme"), last)
        .await
        .unwrap();
    let listed = all_ids(&h, "c-resume").await;
    let rest = s
        .logs(listed.len() - seen.len(), Duration::from_secs(5))
        .await;
    seen.extend(ids(&rest));
    s.expect_silence(Duration::from_millis(300)).await;
    assert_eq!(seen.len(), listed.len(), "no record twice, none missing");
    assert_eq!(seen, listed);
    assert_eq!(seen[..4], first[..]);
    for id in &tally.acked {
        assert!(seen.contains(id), "acknowledged {id} never streamed");
    }

    // `?after=` resumes like the header.
    let mid = seen[seen.len() / 2];
    let mut s = Sse::open(
        &h,
        &format!("/v1/calls/c-resume/logs/stream?after={mid}"),
        Some("acme"),
        None,
    )
    .await
    .unwrap();
    let after = s.logs(seen.len() - seen.len() / 2 - 1, SECOND).await;
    assert_eq!(ids(&after), seen[seen.len() / 2 + 1..]);
    s.expect_silence(Duration::from_millis(200)).await;

    // An id the call has no record with is refused.
    for path in [
        format!(
            "/v1/calls/c-resume/logs/stream?after={}",
            Uuid::from_u128(7)
        ),
        format!("/v1/logs/stream?after={}", Uuid::from_u128(7)),
        "/v1/logs/stream?after=not-an-id".to_owned(),
    ] {
        let (status, body) = Sse::open(&h, &path, Some("acme"), None)
            .await
            .err()
            .unwrap();
        assert_eq!(status, 422, "{path}");
        assert_eq!(body["error_code"], "INVALID_PAGINATION_PARAMETERS");
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_across_a_restart() {
    let mut h = Harness::start().await;
    let before = send(&h, "acme", "c-restart", &[("GREETING_SENT", INFO); 3]).await;
    let mut call = Sse::open(&h, "/v1/calls/c-restart/logs/stream", Some("acme"), None)
        .await
        .unwrap();
    let mut wide = Sse::open(&h, "/v1/logs/stream", Some("acme"), None)
        .await
        .unwrap();
    assert_eq!(ids(&call.logs(3, SECOND).await), before);
    let more = send(&h, "acme", "c-restart", &[("AGENT_MESSAGE_SENT", INFO); 2]).await;
    assert_eq!(ids(&call.logs(2, SECOND).await), more);
    assert_eq!(ids(&wide.logs(2, SECOND).await), more);
    // Committed after the client's last event, before the restart.
    let unseen = send(&h, "acme", "c-restart", &[("AGENT_MESSAGE_SENT", WARN); 2]).await;
    drop((call, wide));

    h.restart().await;
    let after_restart = send(&h, "acme", "c-restart", &[("CALL_COMPLETED", INFO); 2]).await;
    let mut expected: Vec<Uuid> = unseen.iter().chain(&after_restart).copied().collect();
    for path in ["/v1/calls/c-restart/logs/stream", "/v1/logs/stream"] {
        let mut s = Sse::open(&h, path, Some("acme"), more.last().copied())
            .await
            .unwrap();
        assert_eq!(
            ids(&s.logs(expected.len(), SECOND).await),
            expected,
            "{path}"
        );
        // Numbering went on after the restart: new records follow, once.
        let newest = send(&h, "acme", "c-restart", &[("AGENT_MESSAGE_SENT", INFO)]).await;
        assert_eq!(ids(&s.logs(1, SECOND).await), newest, "{path}");
        expected.extend(newest);
        s.expect_silence(Duration::from_millis(200)).await;
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_apply_to_backlog_and_live_records() {
    let h = Harness::start().await;
    let mixed = [
        ("GREETING_SENT", INFO),
        ("INTEGRATION_TOOL_FAILED", ERROR),
        ("AGENT_MESSAGE_SENT", WARN),
    ];
    let a1 = send(&h, "acme", "c-f1", &mixed).await;
    let mut errors = Sse::open(
        &h,
        "/v1/calls/c-f1/logs/stream?level=ERROR,CRITICAL",
        Some("acme"),
        None,
    )
    .await
    .unwrap();
    let mut warn_up = Sse::open(
        &h,
        "/v1/calls/c-f1/logs/stream?min_level=WARNING&event=AGENT_MESSAGE_SENT",
        Some("acme"),
        None,
    )
    .await
    .unwrap();
    let mut by_call = Sse::open(&h, "/v1/logs/stream?call_ids=c-f2", Some("acme"), None)
        .await
        .unwrap();
    let mut by_agent = Sse::open(
        &h,
        "/v1/logs/stream?agent_ids=agent-of-c-f1&category=INTEGRATION_TOOLS",
        Some("acme"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(ids(&errors.logs(1, SECOND).await), [a1[1]]);
    assert_eq!(ids(&warn_up.logs(1, SECOND).await), [a1[2]]);

    let b1 = send(&h, "acme", "c-f1", &mixed).await;
    let b2 = send(&h, "acme", "c-f2", &mixed).await;
    assert_eq!(ids(&errors.logs(1, SECOND).await), [b1[1]]);
    assert_eq!(ids(&warn_up.logs(1, SECOND).await), [b1[2]]);
    assert_eq!(ids(&by_call.logs(3, SECOND).await), b2);
    assert_eq!(ids(&by_agent.logs(1, SECOND).await), [b1[1]]);
    for s in [&mut errors, &mut warn_up, &mut by_call, &mut by_agent] {
        s.expect_silence(Duration::from_millis(300)).await;
    }
    let (status, body) = Sse::open(&h, "/v1/logs/stream?level=LOUD", Some("acme"), None)
        .await
        .err()
        .unwrap();
    assert_eq!(
        (status, body["error_code"].as_str()),
        (422, Some("INVALID_QUERY_PARAMETERS"))
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_scoping_and_tenants_never_mix() {
    let h = Harness::start().await;
    send(&h, "acme", "c-acme-only", &[("GREETING_SENT", INFO)]).await;
    for path in ["/v1/calls/c-acme-only/logs/stream", "/v1/logs/stream"] {
        let (status, body) = Sse::open(&h, path, None, None).await.err().unwrap();
        assert_eq!(
            (status, body["error_code"].as_str()),
            (401, Some("UNAUTHORIZED"))
        );
    }
    let (status, body) = Sse::open(
        &h,
        "/v1/calls/c-acme-only/logs/stream",
        Some("globex"),
        None,
    )
    .await
    .err()
    .unwrap();
    assert_eq!(
        (status, body["error_code"].as_str()),
        (404, Some("CALL_NOT_FOUND"))
    );
    // Another tenant's record id is no resume point either.
    let acme_id = send(&h, "acme", "c-acme-only", &[("GREETING_SENT", INFO)]).await[0];
    let (status, _) = Sse::open(&h, "/v1/logs/stream", Some("globex"), Some(acme_id))
        .await
        .err()
        .unwrap();
    assert_eq!(status, 422);

    // Both tenants use the same call id; each sees its own records only.
    send(&h, "acme", "c-shared", &[("GREETING_SENT", INFO)]).await;
    send(&h, "globex", "c-shared", &[("GREETING_SENT", INFO)]).await;
    let mut acme_wide = Sse::open(&h, "/v1/logs/stream", Some("acme"), None)
        .await
        .unwrap();
    let mut globex_wide = Sse::open(&h, "/v1/logs/stream", Some("globex"), None)
        .await
        .unwrap();
    let mut acme_call = Sse::open(&h, "/v1/calls/c-shared/logs/stream", Some("acme"), None)
        .await
        .unwrap();
    let mut globex_call = Sse::open(&h, "/v1/calls/c-shared/logs/stream", Some("globex"), None)
        .await
        .unwrap();
    assert_eq!(acme_call.logs(1, SECOND).await.len(), 1);
    assert_eq!(globex_call.logs(1, SECOND).await.len(), 1);
    let (mut acme_sent, mut globex_sent) = (Vec::new(), Vec::new());
    for i in 0..6 {
        let call = if i % 2 == 0 { "c-shared" } else { "c-other" };
        acme_sent.extend(send(&h, "acme", call, &[("AGENT_MESSAGE_SENT", INFO); 2]).await);
        globex_sent.extend(send(&h, "globex", call, &[("AGENT_MESSAGE_SENT", INFO); 2]).await);
    }
    assert_eq!(ids(&acme_wide.logs(12, SECOND).await), acme_sent);
    assert_eq!(ids(&globex_wide.logs(12, SECOND).await), globex_sent);
    let shared =
        |sent: &[Uuid]| -> Vec<Uuid> { sent.chunks(2).step_by(2).flatten().copied().collect() };
    assert_eq!(ids(&acme_call.logs(6, SECOND).await), shared(&acme_sent));
    assert_eq!(
        ids(&globex_call.logs(6, SECOND).await),
        shared(&globex_sent)
    );
    for s in [
        &mut acme_wide,
        &mut globex_wide,
        &mut acme_call,
        &mut globex_call,
    ] {
        s.expect_silence(Duration::from_millis(300)).await;
    }
    let m = h.metrics().await;
    assert_eq!(
        metric(&m, "callscope_api_streams_open{scope=\"call\"}"),
        2.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "callscope_api_streams_open{scope=\"tenant\"}"),
        2.0
    );
    h.stop().await;
}

/// Records acknowledged per second by two OTLP/HTTP senders, one on `{prefix}-0` and
/// one on `{prefix}-1`, over at least `min` and at least `records` stored records
/// (at most 60 s).
async fn ingest_rate(h: &Harness, prefix: &str, min: Duration, records: f64) -> f64 {
    let stored = async || metric(&h.metrics().await, "callscope_records_stored_total");
    let from = stored().await;
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..2u64)
        .map(|i| {
            tokio::spawn(otlp::sender(
                SenderSpec {
                    via: Via::Http,
                    url: format!("http://{}", h.server().http_addr),
                    tenant: "acme".into(),
                    call_id: format!("{prefix}-{i}"),
                    // Stamped after every record `send` makes (other tests in this
                    // process take numbers too), so time order is commit order.
                    first_seq: 100_000_000_000 + i * 1_000_000_000,
                    // Small requests, one commit each: the rings a slow stream is
                    // sent from count commits, and this fills them in seconds.
                    per_request: 10,
                    pad: 8000,
                    stop_on_transport_error: true,
                    backoff: Duration::from_millis(5),
                },
                stop.clone(),
            ))
        })
        .collect();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let enough = started.elapsed() >= min && stored().await - from >= records;
        if enough || started.elapsed() > Duration::from_secs(60) {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut acked = 0;
    for t in tasks {
        let tally = t.await.unwrap();
        assert!(tally.unexpected.is_empty(), "{:?}", tally.unexpected);
        acked += tally.acked.len();
    }
    acked as f64 / started.elapsed().as_secs_f64()
}

/// Asserts that, call by call, `got` holds a run of that call's records in order
/// with none missing in between (and, with `to_end`, up to its newest record).
fn assert_runs(got: &[Uuid], calls: &[Vec<Uuid>], to_end: bool) {
    let mut matched = 0;
    for listed in calls {
        let mine: Vec<Uuid> = got
            .iter()
            .filter(|id| listed.contains(id))
            .copied()
            .collect();
        matched += mine.len();
        let Some(first) = mine.first() else { continue };
        let at = listed.iter().position(|id| id == first).unwrap();
        assert_eq!(mine[..], listed[at..at + mine.len()], "in order, no gaps");
        if to_end {
            assert_eq!(at + mine.len(), listed.len(), "up to the newest record");
        }
    }
    assert_eq!(matched, got.len(), "no repeats, nothing foreign");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_cut_off_and_ingest_keeps_its_rate() {
    // Streams fall behind here long before a stalled write would close them.
    let dir = tempfile::tempdir().unwrap();
    let mut config = support::config_in(dir.path());
    config.api.write_stall_timeout_secs = 600;
    let h = Harness::start_with(config, dir).await;
    let phase = Duration::from_secs(6);
    let without = ingest_rate(&h, "c-fast", phase, 0.0).await;

    // Opened, then not read while the senders push. A raw connection with a small
    // receive buffer: the kernel would otherwise buffer tens of megabytes for it.
    send(&h, "acme", "c-slow-0", &[("GREETING_SENT", INFO)]).await;
    let slow_call = open_unread(&h, "/v1/calls/c-slow-0/logs/stream").await;
    let slow_wide = open_unread(&h, "/v1/logs/stream").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = h.metrics().await;
        if metric(&m, "callscope_api_streams_open{scope=\"call\"}") == 1.0
            && metric(&m, "callscope_api_streams_open{scope=\"tenant\"}") == 1.0
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slow streams did not open: {m}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Enough commits for each slow stream that what it has not read is more than its
    // socket and the server's buffers hold (about 5 MB, 650 records here) plus its
    // ring (per call 64 commits, the tenant's 128, of 10 records).
    let with = ingest_rate(&h, "c-slow", phase, 4000.0).await;
    println!("ingest without a slow reader {without:.0} records/s, with two {with:.0}");
    // Measured on 2 shared cores the ratio stays near 1 (0.64 at worst, with builds
    // running beside it). A stream that held up the writer would stall every sender
    // behind it, a ratio near 0, so half the rate still tells the two apart.
    let ratio = with / without;
    assert!(ratio > 0.5, "ingest slowed to {ratio:.2} of its rate");
    let (slow_call, slow_wide) = (read_unread(slow_call).await, read_unread(slow_wide).await);
    let m = h.metrics().await;
    let lagged = metric(
        &m,
        "callscope_api_stream_disconnects_total{reason=\"lagged\"}",
    );
    assert_eq!(lagged, 2.0, "both slow streams were cut off: {m}");

    // What the slow clients did get is a gap-free run per call, then the final
    // comment; resuming from their last event gets the rest.
    let calls = [all_ids(&h, "c-slow-0").await, all_ids(&h, "c-slow-1").await];
    for (items, path) in [
        (slow_call, "/v1/calls/c-slow-0/logs/stream"),
        (slow_wide, "/v1/logs/stream"),
    ] {
        let mut items = items.into_iter();
        let mut got = Vec::new();
        let last = loop {
            match items.next().expect("the stream ends") {
                Item::Log { id, .. } => got.push(id),
                Item::Comment(c) if c.starts_with("disconnected") => break c,
                Item::Comment(_) => {}
                Item::End => panic!("{path}: ended without the final comment"),
            }
        };
        assert_eq!(
            last,
            "disconnected: too far behind, resume with Last-Event-ID"
        );
        assert_eq!(items.next(), Some(Item::End));
        assert!(
            !got.is_empty(),
            "{path}: records went out before the client fell behind"
        );
        assert_runs(&got, &calls, false);
        let mut resumed = Sse::open(&h, path, Some("acme"), got.last().copied())
            .await
            .unwrap();
        let total: usize = calls.iter().map(Vec::len).sum();
        let first_seen = calls
            .iter()
            .map(|c| c.iter().position(|id| got.contains(id)).unwrap_or(c.len()))
            .sum::<usize>();
        let per_call = path.contains("/calls/");
        let rest = if per_call {
            calls[0].len() - calls[0].iter().position(|id| *id == got[0]).unwrap() - got.len()
        } else {
            total - first_seen - got.len()
        };
        got.extend(ids(&resumed.logs(rest, Duration::from_secs(10)).await));
        resumed.expect_silence(Duration::from_millis(300)).await;
        if per_call {
            assert_runs(&got, &calls[..1], true);
        } else {
            assert_runs(&got, &calls, true);
        }
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_ends_open_streams() {
    let h = Harness::start().await;
    send(&h, "acme", "c-stop", &[("GREETING_SENT", INFO)]).await;
    let mut call = Sse::open(&h, "/v1/calls/c-stop/logs/stream", Some("acme"), None)
        .await
        .unwrap();
    let mut wide = Sse::open(&h, "/v1/logs/stream", Some("globex"), None)
        .await
        .unwrap();
    assert_eq!(call.logs(1, SECOND).await.len(), 1);
    let m = h.metrics().await;
    assert_eq!(
        metric(&m, "callscope_api_streams_open{scope=\"call\"}"),
        1.0
    );
    tokio::time::timeout(Duration::from_secs(10), h.stop())
        .await
        .expect("shutdown does not wait for the streams' clients");
    for s in [&mut call, &mut wide] {
        assert_eq!(
            s.next(SECOND).await,
            Some(Item::Comment(
                "disconnected: server shutting down, resume with Last-Event-ID".into()
            ))
        );
        assert_eq!(s.next(SECOND).await, Some(Item::End));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_is_counted_and_forgotten() {
    let h = Harness::start().await;
    send(&h, "acme", "c-gone", &[("GREETING_SENT", INFO)]).await;
    let mut s = Sse::open(&h, "/v1/calls/c-gone/logs/stream", Some("acme"), None)
        .await
        .unwrap();
    s.logs(1, SECOND).await;
    drop(s);
    // The server notices when it next writes to the closed connection.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        send(&h, "acme", "c-gone", &[("AGENT_MESSAGE_SENT", INFO)]).await;
        let m = h.metrics().await;
        if metric(
            &m,
            "callscope_api_stream_disconnects_total{reason=\"client_gone\"}",
        ) == 1.0
        {
            assert_eq!(
                metric(&m, "callscope_api_streams_open{scope=\"call\"}"),
                0.0
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the closed stream is still counted open: {m}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_and_does_not_hold_up_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = support::config_in(dir.path());
    config.api.write_stall_timeout_secs = 2;
    let h = Harness::start_with(config, dir).await;
    send(&h, "acme", "c-stuck", &[("GREETING_SENT", INFO)]).await;
    let pad = "x".repeat(4000);
    let fill = async |h: &Harness, until: &dyn Fn(&str) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            send_padded(h, "c-stuck", 50, &pad).await;
            let m = h.metrics().await;
            if until(&m) {
                return m;
            }
            assert!(Instant::now() < deadline, "{m}");
        }
    };
    let stuck = open_unread(&h, "/v1/calls/c-stuck/logs/stream").await;
    let m = fill(&h, &|m: &str| {
        metric(m, "callscope_api_stalled_connections_total") >= 1.0
    })
    .await;
    assert_eq!(
        metric(&m, "callscope_api_streams_open{scope=\"call\"}"),
        0.0,
        "{m}"
    );
    drop(stuck);

    // Another client stops reading; the server stops while its socket is full.
    let _stuck = open_unread(&h, "/v1/logs/stream").await;
    // 10 MB: more than the connection's buffers hold.
    for _ in 0..50 {
        send_padded(&h, "c-stuck", 50, &pad).await;
    }
    tokio::time::timeout(Duration::from_secs(20), h.stop())
        .await
        .expect("shutdown does not wait for a client that stopped reading");
}

/// Sends `n` acme records of `call_id`, each carrying `pad`.
async fn send_padded(h: &Harness, call_id: &str, n: usize, pad: &str) {
    let built: Vec<_> = (0..n)
        .map(|_| {
            let n = next_number();
            LogBuilder::customer("AGENT_MESSAGE_SENT")
                .call(call_id)
                .tenant("acme")
                .time(otlp::base_time() + n * 1000)
                .attr("n", i64::try_from(n).unwrap())
                .attr("text", pad)
                .build()
        })
        .collect();
    let req = request([ResourceBuilder::new().logs(built).build()]);
    let answer = otlp::send_http(
        &otlp::http_client(),
        &format!("http://{}", h.server().http_addr),
        &req,
        false,
    )
    .await;
    assert!(answer.acked, "{answer:?}");
}
