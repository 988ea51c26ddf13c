//! Forwarding to `[[forward]]` destinations: one bounded queue and one worker per
//! destination, sending unfiltered OTLP over gRPC or HTTP/protobuf with retries.
//!
//! Receivers only ever *offer* a request to a queue, which never waits: when a queue is
//! full the request is dropped for that destination and counted, so a slow or dead
//! destination cannot delay acknowledgements, storage or the other destinations.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use callscope_model::metrics::{MetricKind, PromWriter};
use tokio::{sync::Notify, task::JoinHandle};
use tonic::{
    Code,
    codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder},
    transport::{Channel, Endpoint},
};
use tonic_types::StatusExt as _;
use tracing::{debug, info, warn};

use crate::{Compression, Error, ForwardConfig, ForwardProtocol, Result, Signal};

/// One request waiting to be forwarded: the encoded protobuf export request.
#[derive(Debug, Clone)]
struct Item {
    signal: Signal,
    body: Bytes,
}

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Item>,
    bytes: usize,
}

/// Why a request was not delivered to a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DropReason {
    /// The destination's queue was full (or closed) when the request was offered.
    QueueFull,
    /// Still queued when the shutdown's grace period ended.
    Shutdown,
    /// The destination answered with a status that is not worth retrying.
    Refused,
    /// Every attempt failed with a retryable error (or shutdown cut the retries short).
    RetriesExhausted,
    /// The request could not be compressed for sending.
    EncodeError,
}

impl DropReason {
    const ALL: [DropReason; 5] = [
        DropReason::QueueFull,
        DropReason::Shutdown,
        DropReason::Refused,
        DropReason::RetriesExhausted,
        DropReason::EncodeError,
    ];

    fn label(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::Shutdown => "shutdown",
            DropReason::Refused => "refused",
            DropReason::RetriesExhausted => "retries_exhausted",
            DropReason::EncodeError => "encode_error",
        }
    }

    /// The coarser outcome of `callscope_forward_requests_total`.
    fn outcome(self) -> &'static str {
        match self {
            DropReason::QueueFull | DropReason::Shutdown => "dropped",
            DropReason::Refused | DropReason::RetriesExhausted | DropReason::EncodeError => {
                "failed"
            }
        }
    }
}

/// Counters for one destination, each by signal (traces, logs, metrics).
#[derive(Debug, Default)]
struct DestinationMetrics {
    sent: [AtomicU64; 3],
    /// Requests not delivered, by signal and [`DropReason`] (in `DropReason::ALL` order).
    lost: [[AtomicU64; 5]; 3],
    retries: AtomicU64,
}

impl DestinationMetrics {
    fn lose(&self, signal: Signal, reason: DropReason) {
        let r = DropReason::ALL
            .iter()
            .position(|x| *x == reason)
            .unwrap_or_default();
        self.lost[slot(signal)][r].fetch_add(1, Relaxed);
    }

    /// Requests of `signal` not delivered with outcome `outcome` (`failed`, `dropped`).
    fn lost_with_outcome(&self, i: usize, outcome: &str) -> u64 {
        DropReason::ALL
            .iter()
            .zip(&self.lost[i])
            .filter(|(r, _)| r.outcome() == outcome)
            .map(|(_, n)| n.load(Relaxed))
            .sum()
    }
}

fn slot(signal: Signal) -> usize {
    match signal {
        Signal::Traces => 0,
        Signal::Logs => 1,
        Signal::Metrics => 2,
    }
}

/// A destination: its settings, queue and counters, shared with its worker.
#[derive(Debug)]
struct Destination {
    config: ForwardConfig,
    queue: Mutex<Queue>,
    wake: Notify,
    closed: AtomicBool,
    /// The signal of the request the worker is sending: counted as lost to the
    /// shutdown when the worker is stopped before it is done.
    sending: Mutex<Option<Signal>>,
    metrics: DestinationMetrics,
}

impl Destination {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues `body` unless the queue is full or closed; never waits.
    fn offer(&self, signal: Signal, body: Bytes) {
        if !self.config.signals.contains(&signal) {
            return;
        }
        let accepted = {
            let mut q = self.lock();
            let fits = q.items.len() < self.config.queue_capacity
                && q.bytes + body.len() <= self.config.queue_max_bytes;
            if fits && !self.closed.load(Relaxed) {
                q.bytes += body.len();
                q.items.push_back(Item { signal, body });
                true
            } else {
                false
            }
        };
        if accepted {
            self.wake.notify_one();
        } else {
            self.metrics.lose(signal, DropReason::QueueFull);
            debug!(destination = self.config.label(), %signal, "Forwarding queue is full; dropped the request.");
        }
    }

    /// The signal of the request being sent, taken so it is counted once.
    fn take_sending(&self) -> Option<Signal> {
        self.sending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    fn pop(&self) -> Option<Item> {
        let mut q = self.lock();
        let item = q.items.pop_front()?;
        q.bytes -= item.body.len();
        Some(item)
    }
}

/// Every configured destination and its worker task.
#[derive(Debug)]
pub(crate) struct Forwarders {
    destinations: Vec<Arc<Destination>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

impl Forwarders {
    /// Validates the destinations and starts one worker each. Must run inside a Tokio
    /// runtime.
    pub(crate) fn start(configs: &[ForwardConfig]) -> Result<Self> {
        let mut destinations = Vec::new();
        let mut workers = Vec::new();
        for (i, config) in configs.iter().enumerate() {
            config.validate(i)?;
            let client = Client::new(config).map_err(|message| Error::Config {
                key: format!("forward[{i}].endpoint"),
                message,
            })?;
            let destination = Arc::new(Destination {
                config: config.clone(),
                queue: Mutex::default(),
                wake: Notify::new(),
                closed: AtomicBool::new(false),
                sending: Mutex::new(None),
                metrics: DestinationMetrics::default(),
            });
            info!(
                destination = config.label(),
                endpoint = %config.endpoint,
                protocol = ?config.protocol,
                "Forwarding OTLP."
            );
            workers.push(tokio::spawn(run(Arc::clone(&destination), client)));
            destinations.push(destination);
        }
        Ok(Self {
            destinations,
            workers: Mutex::new(workers),
        })
    }

    /// Whether any destination takes `signal`: the caller encodes the request only then.
    pub(crate) fn wants(&self, signal: Signal) -> bool {
        self.destinations
            .iter()
            .any(|d| d.config.signals.contains(&signal))
    }

    /// Offers an encoded export request to every destination subscribed to `signal`.
    pub(crate) fn offer(&self, signal: Signal, body: &Bytes) {
        for d in &self.destinations {
            d.offer(signal, body.clone());
        }
    }

    /// Stops taking requests, lets the workers send what is queued until `deadline`,
    /// then stops them; whatever is still queued or being sent then is counted as lost
    /// to the shutdown.
    pub(crate) async fn shutdown(&self, deadline: Duration) {
        for d in &self.destinations {
            d.closed.store(true, Relaxed);
            d.wake.notify_one();
        }
        let workers = std::mem::take(
            &mut *self
                .workers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let aborts: Vec<_> = workers.iter().map(JoinHandle::abort_handle).collect();
        if tokio::time::timeout(deadline, futures::future::join_all(workers))
            .await
            .is_err()
        {
            aborts.iter().for_each(tokio::task::AbortHandle::abort);
        }
        for d in &self.destinations {
            let mut left = 0;
            if let Some(signal) = d.take_sending() {
                d.metrics.lose(signal, DropReason::Shutdown);
                left += 1;
            }
            while let Some(item) = d.pop() {
                d.metrics.lose(item.signal, DropReason::Shutdown);
                left += 1;
            }
            if left > 0 {
                warn!(
                    destination = d.config.label(),
                    requests = left,
                    "Shut down with requests still queued; dropped them."
                );
            }
        }
    }

    /// Requests sent, failed and dropped for the destination labelled `label`, over all
    /// signals.
    pub(crate) fn totals(&self, label: &str) -> Option<(u64, u64, u64)> {
        let d = self
            .destinations
            .iter()
            .find(|d| d.config.label() == label)?;
        let sent = d.metrics.sent.iter().map(|n| n.load(Relaxed)).sum();
        let lost = |outcome| {
            (0..3)
                .map(|i| d.metrics.lost_with_outcome(i, outcome))
                .sum()
        };
        Some((sent, lost("failed"), lost("dropped")))
    }

    pub(crate) fn render(&self, w: &mut PromWriter) {
        let name = "callscope_forward_requests_total";
        w.family(
            name,
            MetricKind::Counter,
            "Export requests per forwarding destination and signal, by outcome: sent, failed (given up after retries or refused), dropped (queue full or shutdown).",
        );
        for d in &self.destinations {
            for signal in Signal::ALL {
                if !d.config.signals.contains(&signal) {
                    continue;
                }
                let i = slot(signal);
                for (outcome, n) in [
                    ("sent", d.metrics.sent[i].load(Relaxed)),
                    ("failed", d.metrics.lost_with_outcome(i, "failed")),
                    ("dropped", d.metrics.lost_with_outcome(i, "dropped")),
                ] {
                    w.sample(
                        name,
                        &[
                            ("destination", d.config.label()),
                            ("signal", signal.as_str()),
                            ("outcome", outcome),
                        ],
                        n as f64,
                    );
                }
            }
        }
        let name = "callscope_forward_lost_requests_total";
        w.family(
            name,
            MetricKind::Counter,
            "Export requests not delivered, per forwarding destination and signal, by reason: queue_full, shutdown (still queued when the grace period ended), refused (a status not worth retrying), retries_exhausted, encode_error.",
        );
        for d in &self.destinations {
            for signal in Signal::ALL {
                if !d.config.signals.contains(&signal) {
                    continue;
                }
                for (reason, n) in DropReason::ALL.iter().zip(&d.metrics.lost[slot(signal)]) {
                    w.sample(
                        name,
                        &[
                            ("destination", d.config.label()),
                            ("signal", signal.as_str()),
                            ("reason", reason.label()),
                        ],
                        n.load(Relaxed) as f64,
                    );
                }
            }
        }
        let name = "callscope_forward_retries_total";
        w.family(
            name,
            MetricKind::Counter,
            "Attempts repeated after a retryable failure, per destination.",
        );
        for d in &self.destinations {
            w.sample(
                name,
                &[("destination", d.config.label())],
                d.metrics.retries.load(Relaxed) as f64,
            );
        }
        let (depth, bytes) = (
            "callscope_forward_queue_depth",
            "callscope_forward_queue_bytes",
        );
        w.family(
            depth,
            MetricKind::Gauge,
            "Export requests waiting to be forwarded, per destination.",
        );
        for d in &self.destinations {
            let n = d.lock().items.len();
            w.sample(depth, &[("destination", d.config.label())], n as f64);
        }
        w.family(
            bytes,
            MetricKind::Gauge,
            "Bytes waiting to be forwarded, per destination.",
        );
        for d in &self.destinations {
            let n = d.lock().bytes;
            w.sample(bytes, &[("destination", d.config.label())], n as f64);
        }
    }
}

/// The worker: sends queued requests one at a time until the queue is closed and empty.
async fn run(d: Arc<Destination>, client: Client) {
    loop {
        let Some(item) = d.pop() else {
            if d.closed.load(Relaxed) {
                return;
            }
            d.wake.notified().await;
            continue;
        };
        *d.sending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(item.signal);
        let result = send_with_retries(&d, &client, &item).await;
        // Stopped by the shutdown while sending, the request was counted there.
        if d.take_sending().is_none() {
            continue;
        }
        match result {
            Ok(()) => {
                d.metrics.sent[slot(item.signal)].fetch_add(1, Relaxed);
            }
            Err(reason) => d.metrics.lose(item.signal, reason),
        }
    }
}

/// What one attempt came to.
#[derive(Debug)]
enum Attempt {
    Sent,
    /// Worth repeating, after at least the destination's own delay if it gave one.
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    Fatal(String),
}

/// Sends one request, retrying what is worth retrying; says why when it gave up.
async fn send_with_retries(
    d: &Destination,
    client: &Client,
    item: &Item,
) -> std::result::Result<(), DropReason> {
    let config = &d.config;
    // tonic compresses gRPC messages itself; HTTP bodies are compressed once here.
    let compression = match config.protocol {
        ForwardProtocol::Grpc => Compression::None,
        ForwardProtocol::HttpProtobuf => config.compression,
    };
    let body = match compress(compression, &item.body) {
        Ok(b) => b,
        Err(e) => {
            warn!(destination = config.label(), error = %e, "Cannot compress a request; dropped it.");
            return Err(DropReason::EncodeError);
        }
    };
    let mut backoff = Duration::from_millis(config.retry_initial_backoff_ms);
    let max_backoff = Duration::from_millis(config.retry_max_backoff_ms);
    for attempt in 1..=config.retry_max_attempts {
        let result = tokio::time::timeout(
            config.timeout(),
            client.send(config, item.signal, body.clone()),
        )
        .await
        .unwrap_or_else(|_| Attempt::Retry {
            reason: "timed out".into(),
            after: None,
        });
        match result {
            Attempt::Sent => return Ok(()),
            Attempt::Fatal(reason) => {
                warn!(destination = config.label(), signal = %item.signal, %reason, "Destination refused a request; dropped it.");
                return Err(DropReason::Refused);
            }
            Attempt::Retry { reason, after } => {
                // While shutting down, the drain deadline is better spent on the queue.
                if attempt == config.retry_max_attempts || d.closed.load(Relaxed) {
                    warn!(destination = config.label(), signal = %item.signal, attempts = attempt, %reason, "Forwarding failed; gave the request up.");
                    return Err(DropReason::RetriesExhausted);
                }
                // Jitter spreads the retries of many collectors over [backoff/2, backoff].
                let half = backoff / 2;
                let jitter = half.mul_f64(rand::random::<f64>());
                let wait = after
                    .map_or(half + jitter, |a| a.max(half + jitter))
                    .min(max_backoff);
                debug!(destination = config.label(), attempt, %reason, wait_ms = wait.as_millis() as u64, "Forwarding failed; retrying.");
                d.metrics.retries.fetch_add(1, Relaxed);
                tokio::time::sleep(wait).await;
                backoff = (backoff * 2).min(max_backoff);
            }
        }
    }
    Err(DropReason::RetriesExhausted)
}

fn compress(compression: Compression, body: &Bytes) -> std::io::Result<Bytes> {
    use std::io::Write as _;
    match compression {
        Compression::None => Ok(body.clone()),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(
                Vec::with_capacity(body.len() / 4),
                flate2::Compression::fast(),
            );
            e.write_all(body)?;
            Ok(e.finish()?.into())
        }
        Compression::Zstd => Ok(zstd::encode_all(&body[..], 1)?.into()),
    }
}

/// A connection to one destination.
enum Client {
    Grpc {
        channel: Channel,
        metadata: tonic::metadata::MetadataMap,
    },
    Http {
        client: reqwest::Client,
        base: String,
    },
}

impl Client {
    fn new(config: &ForwardConfig) -> std::result::Result<Self, String> {
        match config.protocol {
            ForwardProtocol::Grpc => {
                let endpoint = Endpoint::from_shared(config.endpoint.clone())
                    .map_err(|e| e.to_string())?
                    .connect_timeout(config.timeout())
                    .tcp_nodelay(true);
                let mut metadata = tonic::metadata::MetadataMap::new();
                for (k, v) in &config.headers {
                    let key =
                        tonic::metadata::MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes())
                            .map_err(|e| format!("header `{k}`: {e}"))?;
                    let value = v
                        .parse()
                        .map_err(|_| format!("header `{k}` has an invalid value"))?;
                    metadata.insert(key, value);
                }
                Ok(Client::Grpc {
                    channel: endpoint.connect_lazy(),
                    metadata,
                })
            }
            ForwardProtocol::HttpProtobuf => {
                let mut headers = http::HeaderMap::new();
                for (k, v) in &config.headers {
                    let name = http::HeaderName::from_bytes(k.as_bytes())
                        .map_err(|e| format!("header `{k}`: {e}"))?;
                    let value = http::HeaderValue::from_str(v)
                        .map_err(|_| format!("header `{k}` has an invalid value"))?;
                    headers.insert(name, value);
                }
                let client = reqwest::Client::builder()
                    .default_headers(headers)
                    .connect_timeout(config.timeout())
                    .build()
                    .map_err(|e| e.to_string())?;
                Ok(Client::Http {
                    client,
                    base: config.endpoint.trim_end_matches('/').to_owned(),
                })
            }
        }
    }

    async fn send(&self, config: &ForwardConfig, signal: Signal, body: Bytes) -> Attempt {
        match self {
            Client::Grpc { channel, metadata } => {
                let mut grpc = tonic::client::Grpc::new(channel.clone());
                match config.compression {
                    Compression::None => {}
                    Compression::Gzip => grpc = grpc.send_compressed(CompressionEncoding::Gzip),
                    Compression::Zstd => grpc = grpc.send_compressed(CompressionEncoding::Zstd),
                }
                grpc = grpc
                    .accept_compressed(CompressionEncoding::Gzip)
                    .accept_compressed(CompressionEncoding::Zstd);
                if let Err(e) = grpc.ready().await {
                    return Attempt::Retry {
                        reason: format!("not connected: {e}"),
                        after: None,
                    };
                }
                let mut request = tonic::Request::new(body);
                *request.metadata_mut() = metadata.clone();
                request.set_timeout(config.timeout());
                let path = http::uri::PathAndQuery::from_static(signal.grpc_path());
                match grpc.unary(request, path, RawCodec).await {
                    Ok(_) => Attempt::Sent,
                    Err(status) => grpc_attempt(&status),
                }
            }
            Client::Http { client, base } => {
                let mut request = client
                    .post(format!("{base}{}", signal.http_path()))
                    .timeout(config.timeout())
                    .header(http::header::CONTENT_TYPE, "application/x-protobuf");
                match config.compression {
                    Compression::None => {}
                    Compression::Gzip => {
                        request = request.header(http::header::CONTENT_ENCODING, "gzip");
                    }
                    Compression::Zstd => {
                        request = request.header(http::header::CONTENT_ENCODING, "zstd");
                    }
                }
                match request.body(body).send().await {
                    Ok(response) => http_attempt(&response),
                    Err(e) => Attempt::Retry {
                        reason: e.to_string(),
                        after: None,
                    },
                }
            }
        }
    }
}

/// Classifies a gRPC failure the way the OTLP specification does.
fn grpc_attempt(status: &tonic::Status) -> Attempt {
    let after = status
        .get_details_retry_info()
        .and_then(|info| info.retry_delay);
    let reason = format!("{:?}: {}", status.code(), status.message());
    match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => Attempt::Retry { reason, after },
        // Retryable only when the server says when.
        Code::ResourceExhausted if after.is_some() => Attempt::Retry { reason, after },
        _ => Attempt::Fatal(reason),
    }
}

fn http_attempt(response: &reqwest::Response) -> Attempt {
    let status = response.status();
    if status.is_success() {
        return Attempt::Sent;
    }
    let after = response
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let reason = format!("HTTP {status}");
    match status.as_u16() {
        429 | 502 | 503 | 504 => Attempt::Retry { reason, after },
        _ => Attempt::Fatal(reason),
    }
}

/// Passes already-encoded protobuf messages through tonic unchanged.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Bytes,
        dst: &mut EncodeBuf<'_>,
    ) -> std::result::Result<(), Self::Error> {
        use bytes::BufMut as _;
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut DecodeBuf<'_>,
    ) -> std::result::Result<Option<Bytes>, Self::Error> {
        use bytes::Buf as _;
        let mut out = BytesMut::with_capacity(src.remaining());
        out.extend_from_slice(src.chunk());
        let n = src.chunk().len();
        src.advance(n);
        while src.has_remaining() {
            let chunk = src.chunk();
            out.extend_from_slice(chunk);
            let n = chunk.len();
            src.advance(n);
        }
        Ok(Some(out.freeze()))
    }
}
