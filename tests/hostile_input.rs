//! Hostile input to the live receivers of the real binary: random, truncated, corrupted,
//! mislabelled, deeply nested and oversized bodies, compression bombs, over OTLP/HTTP and
//! OTLP/gRPC. The only HTTP answers are 200, 400, 413 and 415; the only gRPC codes OK,
//! INVALID_ARGUMENT and RESOURCE_EXHAUSTED; and the process keeps serving.

mod support;

use std::{io::Write as _, time::Duration};

use callscope_collector::testing::realistic_request;
use prost::{
    Message as _,
    bytes::{Buf as _, BufMut as _, Bytes},
};
use rand::{Rng as _, SeedableRng as _, rngs::StdRng};
use support::{
    otlp,
    process::{Callscope, write_config},
};
use tonic::{
    Code,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    codegen::http::uri::PathAndQuery,
    transport::Channel,
};

/// The request limit the binary runs with, small so bombs are cheap to build.
const LIMIT: usize = 1024 * 1024;

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(b).unwrap();
    gz.finish().unwrap()
}

fn random_bytes(rng: &mut StdRng, max: usize) -> Vec<u8> {
    let n = rng.random_range(0..=max);
    (0..n).map(|_| rng.random()).collect()
}

/// Valid bodies, then damaged copies of them.
fn bodies(rng: &mut StdRng) -> Vec<(&'static str, Option<&'static str>, Vec<u8>)> {
    const PB: &str = "application/x-protobuf";
    const JSON: &str = "application/json";
    let proto = realistic_request(3, 20).encode_to_vec();
    let json = serde_json::to_vec(&realistic_request(2, 5)).unwrap();
    let mut out: Vec<(&str, Option<&str>, Vec<u8>)> = vec![
        (PB, None, proto.clone()),
        (JSON, None, json.clone()),
        (PB, Some("gzip"), gzip(&proto)),
        (PB, None, Vec::new()),
        (JSON, None, b"{}".to_vec()),
        (JSON, None, b"null".to_vec()),
        (JSON, None, b"[]".to_vec()),
        (JSON, None, vec![b'['; 100_000]),
        (JSON, None, b"{\"resourceLogs\":".repeat(10_000)),
        ("text/plain", None, proto.clone()),
        ("application/xml", None, b"<x/>".to_vec()),
        (PB, Some("br"), proto.clone()),
        (PB, Some("gzip"), b"not gzip at all".to_vec()),
        (PB, Some("zstd"), b"not zstd either".to_vec()),
        (PB, None, vec![0u8; LIMIT + 1]),
        // Bombs: a few KiB that inflate past the limit.
        (PB, Some("gzip"), gzip(&vec![0u8; 8 * LIMIT])),
        (
            PB,
            Some("zstd"),
            zstd::encode_all(&vec![0u8; 8 * LIMIT][..], 19).unwrap(),
        ),
        // Invalid UTF-8 in a protobuf string field (field 1 of KeyValue, nested).
        (
            PB,
            None,
            vec![0x0a, 0x06, 0x12, 0x04, 0x0a, 0x02, 0xff, 0xfe],
        ),
    ];
    // An AnyValue nested 5 000 deep (protobuf and JSON).
    let mut deep = Vec::new();
    for _ in 0..5_000 {
        let inner = deep;
        deep = Vec::new();
        // AnyValue.array_value (field 5) -> ArrayValue.values (field 1)
        let mut array = vec![0x0a];
        prost::encoding::encode_varint(inner.len() as u64, &mut array);
        array.extend(inner);
        deep.push(0x2a);
        prost::encoding::encode_varint(array.len() as u64, &mut deep);
        deep.extend(array);
    }
    out.push((PB, None, deep));
    let nested = format!(
        "{{\"resourceLogs\":[{{\"scopeLogs\":[{{\"logRecords\":[{{\"body\":{}1{}}}]}}]}}]}}",
        "{\"arrayValue\":{\"values\":[".repeat(3_000),
        "]}}".repeat(3_000)
    );
    out.push((JSON, None, nested.into_bytes()));
    for _ in 0..60 {
        out.push((PB, None, random_bytes(rng, 4096)));
        out.push((JSON, None, random_bytes(rng, 4096)));
        out.push((PB, Some("gzip"), random_bytes(rng, 512)));
        let cut = rng.random_range(0..proto.len());
        out.push((PB, None, proto[..cut].to_vec()));
        let cut = rng.random_range(0..json.len());
        out.push((JSON, None, json[..cut].to_vec()));
        let gz = gzip(&proto);
        let cut = rng.random_range(0..gz.len());
        out.push((PB, Some("gzip"), gz[..cut].to_vec()));
        let mut flipped = proto.clone();
        for _ in 0..rng.random_range(1..8) {
            let i = rng.random_range(0..flipped.len());
            flipped[i] = rng.random();
        }
        out.push((PB, None, flipped));
        let mut flipped = json.clone();
        for _ in 0..rng.random_range(1..8) {
            let i = rng.random_range(0..flipped.len());
            flipped[i] = rng.random();
        }
        out.push((JSON, None, flipped));
    }
    out
}

/// Sends raw bytes as a gRPC request message.
#[derive(Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Bytes;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_and_truncated_bodies_get_only_client_errors() {
    let seed: u64 = rand::rng().random();
    eprintln!("seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        None,
        "[visibility]\ndefault_tenant = \"acme\"\n",
    );
    let limit = LIMIT.to_string();
    let mut server = Callscope::start(&config, &[("CALLSCOPE_OTLP__MAX_REQUEST_BYTES", &limit)]);
    let http = otlp::http_client();
    let bodies = bodies(&mut rng);

    let mut seen = std::collections::BTreeMap::new();
    for (i, (content_type, encoding, body)) in bodies.iter().enumerate() {
        let path = ["/v1/logs", "/v1/traces", "/v1/metrics"][i % 3];
        let answer = otlp::post(
            &http,
            &server.http_url(path),
            content_type,
            body.clone(),
            *encoding,
        )
        .await;
        assert!(
            ["200", "400", "413", "415"].contains(&answer.code.as_str()),
            "{path} {content_type} {encoding:?} ({} bytes): {} {}",
            body.len(),
            answer.code,
            answer.message
        );
        *seen.entry(answer.code).or_insert(0) += 1;
    }
    eprintln!("HTTP answers: {seen:?}");
    for code in ["200", "400", "413", "415"] {
        assert!(seen.contains_key(code), "no {code} among {seen:?}");
    }

    // The same over gRPC, as raw messages, plain and gzip-framed.
    let channel = Channel::from_shared(server.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut seen = std::collections::BTreeMap::new();
    for (i, (_, _, body)) in bodies.iter().enumerate() {
        let service = [
            "logs.v1.LogsService",
            "trace.v1.TraceService",
            "metrics.v1.MetricsService",
        ][i % 3];
        let path =
            PathAndQuery::try_from(format!("/opentelemetry.proto.collector.{service}/Export"))
                .unwrap();
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        if i % 4 == 0 {
            grpc = grpc.send_compressed(tonic::codec::CompressionEncoding::Gzip);
        }
        grpc.ready().await.unwrap();
        let code = match grpc
            .unary(tonic::Request::new(Bytes::from(body.clone())), path, Raw)
            .await
        {
            Ok(_) => Code::Ok,
            Err(status) => status.code(),
        };
        assert!(
            [Code::Ok, Code::InvalidArgument, Code::ResourceExhausted].contains(&code),
            "{service} ({} bytes): {code:?}",
            body.len()
        );
        *seen.entry(format!("{code:?}")).or_insert(0) += 1;
    }
    eprintln!("gRPC answers: {seen:?}");

    // Still serving, and still storing.
    assert!(server.is_running());
    let health = reqwest::get(server.api_url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    let b = otlp::batch("acme", "after-hostile", 0, 3, 10);
    assert!(
        otlp::send_http(&http, &server.http_url(""), &b.request, false)
            .await
            .acked
    );
    let mut grpc = otlp::grpc_client(&server.grpc_url()).await.unwrap();
    let b = otlp::batch("acme", "after-hostile", 3, 3, 10);
    assert!(otlp::send_grpc(&mut grpc, &b.request).await.acked);
    let logs = server.logs();
    assert!(!logs.contains("panicked"), "{logs}");
    let (status, _) =
        tokio::task::spawn_blocking(move || server.terminate(Duration::from_secs(30)))
            .await
            .unwrap();
    assert!(status.success());
}
