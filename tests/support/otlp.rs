//! Raw OTLP senders that know which records each request carried and how it was
//! answered: protobuf over HTTP (reqwest) and over gRPC (the generated tonic client).

use std::{io::Write as _, time::Duration};

use callscope_collector::{
    testing::{LogBuilder, ResourceBuilder, request},
    visibility::record_id,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, logs_service_client::LogsServiceClient,
};
use prost::Message as _;
use tonic::transport::Channel;
use tonic_types::StatusExt as _;
use uuid::Uuid;

/// The catalogue event every generated record carries.
pub const EVENT: &str = callscope_model::events::AGENT_MESSAGE_SENT.code;

/// The time of record number 0: when the test process first asked. Record `n` is `n`
/// nanoseconds later (recent times, so retention never purges them).
pub fn base_time() -> u64 {
    static BASE: std::sync::LazyLock<u64> = std::sync::LazyLock::new(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        u64::try_from(now.as_nanos()).unwrap()
    });
    *BASE
}

/// One export request and the ids of the customer records in it.
#[derive(Debug, Clone)]
pub struct Batch {
    pub tenant: String,
    pub call_id: String,
    pub request: ExportLogsServiceRequest,
    pub ids: Vec<Uuid>,
}

/// `n` customer records of `call_id` (numbered `first..first + n`, each `pad` bytes of
/// text), one internal record, resource attributes a customer must never see.
pub fn batch(tenant: &str, call_id: &str, first: u64, n: usize, pad: usize) -> Batch {
    let text = "x".repeat(pad);
    let records: Vec<_> = (first..first + n as u64)
        .map(|seq| {
            LogBuilder::customer(EVENT)
                .call(call_id)
                .tenant(tenant)
                .agent("agent-1")
                .time(base_time() + seq)
                .observed(base_time() + seq)
                .attr("seq", i64::try_from(seq).unwrap())
                .attr("text", text.as_str())
                .build()
        })
        .collect();
    let ids = records
        .iter()
        .map(|r| record_id(tenant, call_id, EVENT, r))
        .collect();
    let internal = LogBuilder::internal("CACHE_MISS")
        .call(call_id)
        .tenant(tenant)
        .attr("internal.secret", "s3cr3t")
        .build();
    let request = request([ResourceBuilder::new()
        .attr("host.name", "node-7.internal")
        .attr("service.name", "voice-agent")
        .logs(records.into_iter().chain([internal]))
        .build()]);
    Batch {
        tenant: tenant.into(),
        call_id: call_id.into(),
        request,
        ids,
    }
}

/// How a request was answered.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP 200 / gRPC OK: the records are committed.
    pub acked: bool,
    /// `"200"`, `"429"`, … for HTTP; the gRPC code's name; `"transport"` when there was
    /// no answer (connection refused or reset).
    pub code: String,
    /// A refusal carried `Retry-After` (HTTP) or `RetryInfo` (gRPC).
    pub retry_hint: bool,
    /// The answer's body (HTTP) or status message (gRPC).
    pub message: String,
}

impl Answer {
    fn transport(e: impl std::fmt::Display) -> Answer {
        Answer {
            acked: false,
            code: "transport".into(),
            retry_hint: false,
            message: e.to_string(),
        }
    }

    /// A retryable refusal: HTTP 429/503 with `Retry-After`, gRPC `UNAVAILABLE` with
    /// `RetryInfo`.
    pub fn is_retryable_refusal(&self) -> bool {
        self.retry_hint && ["429", "503", "Unavailable"].contains(&self.code.as_str())
    }
}

/// A reqwest client that never waits long.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// POSTs `body` to `url` with `content_type` (and `Content-Encoding: gzip` when `gzip`).
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    content_type: &str,
    body: Vec<u8>,
    encoding: Option<&str>,
) -> Answer {
    let mut req = client
        .post(url)
        .header("content-type", content_type)
        .body(body);
    if let Some(e) = encoding {
        req = req.header("content-encoding", e);
    }
    match req.send().await {
        Err(e) => Answer::transport(e),
        Ok(resp) => {
            let status = resp.status().as_u16();
            let retry_hint = resp.headers().contains_key("retry-after");
            let message = resp
                .bytes()
                .await
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            Answer {
                acked: status == 200,
                code: status.to_string(),
                retry_hint,
                message,
            }
        }
    }
}

/// Exports `request` as protobuf over OTLP/HTTP to `base` (`http://host:port`).
pub async fn send_http(
    client: &reqwest::Client,
    base: &str,
    request: &ExportLogsServiceRequest,
    gzip: bool,
) -> Answer {
    let mut body = request.encode_to_vec();
    let mut encoding = None;
    if gzip {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&body).unwrap();
        body = gz.finish().unwrap();
        encoding = Some("gzip");
    }
    post(
        client,
        &format!("{base}/v1/logs"),
        "application/x-protobuf",
        body,
        encoding,
    )
    .await
}

/// An OTLP/gRPC logs client for `url`; `None` when nothing listens there.
pub async fn grpc_client(url: &str) -> Option<LogsServiceClient<Channel>> {
    let channel = Channel::from_shared(url.to_owned())
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(60))
        .connect()
        .await
        .ok()?;
    Some(LogsServiceClient::new(channel).max_decoding_message_size(64 * 1024 * 1024))
}

/// Exports `request` over OTLP/gRPC.
pub async fn send_grpc(
    client: &mut LogsServiceClient<Channel>,
    request: &ExportLogsServiceRequest,
) -> Answer {
    match client.export(request.clone()).await {
        Ok(_) => Answer {
            acked: true,
            code: "Ok".into(),
            retry_hint: false,
            message: String::new(),
        },
        Err(status) => {
            let code = format!("{:?}", status.code());
            // A status from callscope's UNAVAILABLE always carries RetryInfo; without it,
            // these codes, and h2 or transport errors, are tonic's report of a dead,
            // closed or refused connection.
            let retry_hint = status.get_details_retry_info().is_some();
            let from_client = status.message().starts_with("h2 protocol error")
                || status.message().starts_with("transport error");
            if from_client
                || !retry_hint
                    && matches!(
                        status.code(),
                        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
                    )
            {
                return Answer::transport(format!("{:?}: {}", status.code(), status.message()));
            }
            Answer {
                acked: false,
                code,
                retry_hint,
                message: status.message().to_owned(),
            }
        }
    }
}

/// How a [`sender`] talks to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Http,
    HttpGzip,
    Grpc,
}

/// What one [`sender`] should do.
#[derive(Debug, Clone)]
pub struct SenderSpec {
    pub via: Via,
    /// `http://host:port` of the matching receiver.
    pub url: String,
    pub tenant: String,
    pub call_id: String,
    /// The first record number; each request takes the next `per_request`.
    pub first_seq: u64,
    pub per_request: usize,
    pub pad: usize,
    /// Stop at the first request that got no answer (the server is gone).
    pub stop_on_transport_error: bool,
    /// Pause after a retryable refusal.
    pub backoff: Duration,
}

/// What one [`sender`] did.
#[derive(Debug, Default)]
pub struct Tally {
    /// Every request sent, answered or not, in order.
    pub sent: Vec<Batch>,
    /// Ids of the records in acknowledged requests.
    pub acked: std::collections::HashSet<Uuid>,
    /// Answers by code.
    pub codes: std::collections::BTreeMap<String, usize>,
    /// Answers that are neither an acknowledgement nor a retryable refusal with its
    /// hint nor a missing answer.
    pub unexpected: Vec<String>,
    /// The next record number.
    pub next_seq: u64,
    /// What the requests without an answer failed with.
    pub transport_errors: Vec<String>,
    /// The first messages of retryable refusals.
    pub refusals: Vec<String>,
}

/// Sends requests of fresh records until `stop` is set (or the server is gone, with
/// `stop_on_transport_error`), tallying the answers.
pub async fn sender(
    spec: SenderSpec,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Tally {
    use std::sync::atomic::Ordering::Relaxed;
    let http = http_client();
    let mut grpc = None;
    let mut tally = Tally {
        next_seq: spec.first_seq,
        ..Tally::default()
    };
    while !stop.load(Relaxed) {
        let b = batch(
            &spec.tenant,
            &spec.call_id,
            tally.next_seq,
            spec.per_request,
            spec.pad,
        );
        tally.next_seq += spec.per_request as u64;
        let answer = match spec.via {
            Via::Http | Via::HttpGzip => {
                send_http(&http, &spec.url, &b.request, spec.via == Via::HttpGzip).await
            }
            Via::Grpc => {
                if grpc.is_none() {
                    grpc = grpc_client(&spec.url).await;
                }
                match grpc.as_mut() {
                    Some(c) => send_grpc(c, &b.request).await,
                    None => Answer::transport("cannot connect"),
                }
            }
        };
        *tally.codes.entry(answer.code.clone()).or_default() += 1;
        if answer.acked {
            tally.acked.extend(b.ids.iter().copied());
        }
        tally.sent.push(b);
        if answer.code == "transport" {
            tally.transport_errors.push(answer.message.clone());
            grpc = None;
            if spec.stop_on_transport_error {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        } else if !answer.acked {
            if !answer.is_retryable_refusal() {
                tally
                    .unexpected
                    .push(format!("{}: {}", answer.code, answer.message));
            } else if tally.refusals.len() < 20 {
                tally.refusals.push(answer.message.clone());
            }
            tokio::time::sleep(spec.backoff).await;
        }
    }
    tally
}
