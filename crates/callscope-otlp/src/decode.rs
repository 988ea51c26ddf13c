//! Turning OTLP/HTTP bodies into requests: bounded decompression (so a gzip or zstd bomb
//! costs at most `max_request_bytes`), protobuf, and OTLP JSON.
//!
//! OTLP JSON is decoded with the `serde` derives of `opentelemetry-proto`, which accept
//! the canonical encoding (lowerCamelCase keys, hex ids, integer enums, 64-bit integers
//! as strings or numbers, unknown fields ignored). A body they refuse gets a second,
//! lenient pass that first normalises what the protobuf JSON mapping also allows:
//! `null` for a default value, an empty `arrayValue` / `kvlistValue`, enum names such as
//! `"SEVERITY_NUMBER_INFO"`, and 32-bit integers written as strings.

use std::io::Read;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// How a body is compressed (`Content-Encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Not compressed.
    Identity,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

impl Encoding {
    /// Parses a `Content-Encoding` value; `None` for one callscope does not accept.
    #[must_use]
    pub fn from_header(value: Option<&str>) -> Option<Self> {
        match value.map(|v| v.trim().to_ascii_lowercase()) {
            None => Some(Self::Identity),
            Some(v) if v.is_empty() || v == "identity" => Some(Self::Identity),
            Some(v) if v == "gzip" || v == "x-gzip" => Some(Self::Gzip),
            Some(v) if v == "zstd" => Some(Self::Zstd),
            Some(_) => None,
        }
    }
}

/// Why a body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The body inflates past the limit.
    #[error("the request body exceeds {limit} bytes after decompression")]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The compressed stream is corrupt.
    #[error("the request body cannot be decompressed: {0}")]
    Decompress(std::io::Error),
    /// The protobuf is malformed.
    #[error("the request body is not a valid protobuf message: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// The JSON is malformed or not OTLP.
    #[error("the request body is not valid OTLP JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Decompresses `body`, refusing to produce more than `limit` bytes. The output grows as
/// it is read, so a bomb costs at most `limit` bytes of memory.
///
/// # Errors
/// [`DecodeError::TooLarge`] past the limit, [`DecodeError::Decompress`] for a corrupt
/// stream.
pub fn decompress(body: Bytes, encoding: Encoding, limit: usize) -> Result<Bytes, DecodeError> {
    match encoding {
        Encoding::Identity if body.len() > limit => Err(DecodeError::TooLarge { limit }),
        Encoding::Identity => Ok(body),
        Encoding::Gzip => read_capped(
            flate2::read::MultiGzDecoder::new(&body[..]),
            limit,
            body.len(),
        ),
        Encoding::Zstd => {
            let decoder =
                zstd::stream::read::Decoder::new(&body[..]).map_err(DecodeError::Decompress)?;
            read_capped(decoder, limit, body.len())
        }
    }
}

fn read_capped(reader: impl Read, limit: usize, compressed: usize) -> Result<Bytes, DecodeError> {
    // Reading one byte past the limit tells "exactly at the limit" from "over it".
    let mut out = Vec::with_capacity(compressed.saturating_mul(4).min(limit));
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader
        .take(cap)
        .read_to_end(&mut out)
        .map_err(DecodeError::Decompress)?;
    if out.len() > limit {
        return Err(DecodeError::TooLarge { limit });
    }
    Ok(out.into())
}

/// Decodes a protobuf body.
///
/// # Errors
/// [`DecodeError::Protobuf`].
pub fn protobuf<T: prost::Message + Default>(body: &[u8]) -> Result<T, DecodeError> {
    Ok(T::decode(body)?)
}

/// Decodes an OTLP JSON body (see the module docs for what is accepted).
///
/// # Errors
/// [`DecodeError::Json`] naming the first problem of the canonical decoding.
pub fn json<T: DeserializeOwned>(body: &[u8]) -> Result<T, DecodeError> {
    match serde_json::from_slice::<T>(body) {
        Ok(v) => Ok(v),
        Err(first) => {
            let Ok(mut value) = serde_json::from_slice::<Value>(body) else {
                return Err(first.into());
            };
            normalize(&mut value);
            serde_json::from_value(value).map_err(|_| first.into())
        }
    }
}

/// Protobuf enum names OTLP defines, for senders that write names instead of numbers.
fn enum_number(name: &str) -> Option<i64> {
    const SPAN_KINDS: [&str; 6] = [
        "SPAN_KIND_UNSPECIFIED",
        "SPAN_KIND_INTERNAL",
        "SPAN_KIND_SERVER",
        "SPAN_KIND_CLIENT",
        "SPAN_KIND_PRODUCER",
        "SPAN_KIND_CONSUMER",
    ];
    const STATUS: [&str; 3] = ["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"];
    const TEMPORALITY: [&str; 3] = [
        "AGGREGATION_TEMPORALITY_UNSPECIFIED",
        "AGGREGATION_TEMPORALITY_DELTA",
        "AGGREGATION_TEMPORALITY_CUMULATIVE",
    ];
    const SEVERITY: [&str; 25] = [
        "UNSPECIFIED",
        "TRACE",
        "TRACE2",
        "TRACE3",
        "TRACE4",
        "DEBUG",
        "DEBUG2",
        "DEBUG3",
        "DEBUG4",
        "INFO",
        "INFO2",
        "INFO3",
        "INFO4",
        "WARN",
        "WARN2",
        "WARN3",
        "WARN4",
        "ERROR",
        "ERROR2",
        "ERROR3",
        "ERROR4",
        "FATAL",
        "FATAL2",
        "FATAL3",
        "FATAL4",
    ];
    let position = |names: &[&str], n: &str| names.iter().position(|x| *x == n);
    let index = if let Some(rest) = name.strip_prefix("SEVERITY_NUMBER_") {
        position(&SEVERITY, rest)
    } else {
        position(&SPAN_KINDS, name)
            .or_else(|| position(&STATUS, name))
            .or_else(|| position(&TEMPORALITY, name))
    };
    index.and_then(|i| i64::try_from(i).ok())
}

/// Keys whose values are 32-bit integers or enums in OTLP; 64-bit ones already accept
/// strings.
const INT32_KEYS: &[&str] = &[
    "severityNumber",
    "kind",
    "code",
    "aggregationTemporality",
    "droppedAttributesCount",
    "droppedEventsCount",
    "droppedLinksCount",
    "flags",
    "scale",
    "offset",
    "keyStrindex",
];

fn normalize(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            for key in ["arrayValue", "kvlistValue"] {
                if let Some(Value::Object(inner)) = map.get_mut(key) {
                    inner
                        .entry("values")
                        .or_insert_with(|| Value::Array(Vec::new()));
                }
            }
            for (key, v) in map.iter_mut() {
                if INT32_KEYS.contains(&key.as_str())
                    && let Value::String(s) = v
                {
                    let number = s
                        .trim()
                        .parse::<i64>()
                        .ok()
                        .or_else(|| enum_number(s.trim()));
                    if let Some(n) = number {
                        *v = Value::from(n);
                    }
                } else {
                    normalize(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use opentelemetry_proto::tonic::{
        collector::{
            logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
            trace::v1::ExportTraceServiceRequest,
        },
        common::v1::any_value::Value as Any,
        logs::v1::{LogRecord, SeverityNumber},
        metrics::v1::{metric::Data, number_data_point::Value as Number},
    };

    use super::*;

    fn first_log(r: &ExportLogsServiceRequest) -> &LogRecord {
        &r.resource_logs[0].scope_logs[0].log_records[0]
    }

    fn attr<'a>(r: &'a LogRecord, key: &str) -> Option<&'a Any> {
        r.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| v.value.as_ref())
    }

    #[test]
    fn canonical_otlp_json() {
        let body = br#"{"resourceLogs":[{"resource":{"attributes":[{"key":"tenant.id","value":{"stringValue":"acme"}}]},
          "scopeLogs":[{"scope":{"name":"s"},"logRecords":[{
            "timeUnixNano":"1700000000000000001","observedTimeUnixNano":1700000000000000002,
            "severityNumber":17,"severityText":"ERROR","eventName":"CALL_FAILED",
            "body":{"stringValue":"hi"},
            "attributes":[{"key":"s","value":{"intValue":"5"}},{"key":"n","value":{"intValue":6}},
              {"key":"d","value":{"doubleValue":1.5}},{"key":"b","value":{"boolValue":true}},
              {"key":"a","value":{"arrayValue":{"values":[{"stringValue":"x"}]}}},
              {"key":"m","value":{"kvlistValue":{"values":[{"key":"k","value":{"intValue":"1"}}]}}}],
            "traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"eee19b7ec3c1b174","flags":1,
            "someFutureField":{"x":[1,2]}}]}]}]}"#;
        let r: ExportLogsServiceRequest = json(body).unwrap();
        let log = first_log(&r);
        assert_eq!(log.time_unix_nano, 1_700_000_000_000_000_001);
        assert_eq!(log.observed_time_unix_nano, 1_700_000_000_000_000_002);
        assert_eq!(log.severity_number, SeverityNumber::Error as i32);
        assert_eq!(log.event_name, "CALL_FAILED");
        assert_eq!(
            hex::encode(&log.trace_id),
            "5b8efff798038103d269b633813fc60c"
        );
        assert_eq!(hex::encode(&log.span_id), "eee19b7ec3c1b174");
        assert_eq!(attr(log, "s"), Some(&Any::IntValue(5)));
        assert_eq!(attr(log, "n"), Some(&Any::IntValue(6)));
        assert_eq!(attr(log, "d"), Some(&Any::DoubleValue(1.5)));
        assert_eq!(attr(log, "b"), Some(&Any::BoolValue(true)));
        assert!(matches!(attr(log, "a"), Some(Any::ArrayValue(a)) if a.values.len() == 1));
        assert!(matches!(attr(log, "m"), Some(Any::KvlistValue(m)) if m.values.len() == 1));
    }

    #[test]
    fn lenient_json_the_protobuf_mapping_allows() {
        let body = br#"{"resourceLogs":[{"resource":null,"scopeLogs":[{"logRecords":[{
            "severityNumber":"SEVERITY_NUMBER_WARN","traceId":null,"flags":"1",
            "droppedAttributesCount":"2",
            "attributes":[{"key":"a","value":{"arrayValue":{}}},{"key":"m","value":{"kvlistValue":{}}},
              {"key":"none"}]}]}]}]}"#;
        let r: ExportLogsServiceRequest = json(body).unwrap();
        let log = first_log(&r);
        assert_eq!(log.severity_number, SeverityNumber::Warn as i32);
        assert_eq!(log.flags, 1);
        assert_eq!(log.dropped_attributes_count, 2);
        assert!(log.trace_id.is_empty());
        assert!(matches!(attr(log, "a"), Some(Any::ArrayValue(a)) if a.values.is_empty()));
        assert_eq!(attr(log, "none"), None);
    }

    #[test]
    fn missing_fields_are_defaults() {
        let r: ExportLogsServiceRequest = json(b"{}").unwrap();
        assert!(r.resource_logs.is_empty());
        let r: ExportLogsServiceRequest =
            json(br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{}]}]}]}"#).unwrap();
        assert_eq!(first_log(&r), &LogRecord::default());
    }

    #[test]
    fn malformed_json_is_an_error_with_a_message() {
        for body in [
            &b"{"[..],
            br#"{"resourceLogs":5}"#,
            br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"traceId":"zz"}]}]}]}"#,
            br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"timeUnixNano":"soon"}]}]}]}"#,
        ] {
            let err = json::<ExportLogsServiceRequest>(body).unwrap_err();
            assert!(matches!(err, DecodeError::Json(_)), "{err}");
            assert!(
                err.to_string()
                    .starts_with("the request body is not valid OTLP JSON: ")
            );
        }
    }

    #[test]
    fn traces_and_metrics_json() {
        let r: ExportTraceServiceRequest = json(
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c",
            "spanId":"eee19b7ec3c1b174","name":"n","kind":"SPAN_KIND_SERVER","startTimeUnixNano":"1",
            "endTimeUnixNano":2,"status":{"code":2}}]}]}]}"#,
        )
        .unwrap();
        let span = &r.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!((span.kind, span.end_time_unix_nano), (2, 2));
        assert_eq!(span.status.as_ref().unwrap().code, 2);

        let r: ExportMetricsServiceRequest = json(
            br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"m","sum":{
            "aggregationTemporality":2,"isMonotonic":true,"dataPoints":[{"asInt":"5","timeUnixNano":"2"}]}},
            {"name":"h","histogram":{"dataPoints":[{"count":"3","bucketCounts":["1",2],"explicitBounds":[1.0]}]}}]}]}]}"#,
        )
        .unwrap();
        let metrics = &r.resource_metrics[0].scope_metrics[0].metrics;
        let Some(Data::Sum(sum)) = &metrics[0].data else {
            panic!("not a sum")
        };
        assert_eq!(sum.data_points[0].value, Some(Number::AsInt(5)));
        let Some(Data::Histogram(h)) = &metrics[1].data else {
            panic!("not a histogram")
        };
        assert_eq!(h.data_points[0].bucket_counts, vec![1, 2]);
    }

    #[test]
    fn bombs_are_refused_without_inflating_them() {
        let zeros = vec![0u8; 8 * 1024 * 1024];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&zeros).unwrap();
        let gz = Bytes::from(gz.finish().unwrap());
        assert!(gz.len() < 64 * 1024);
        assert!(matches!(
            decompress(gz.clone(), Encoding::Gzip, 1024 * 1024),
            Err(DecodeError::TooLarge { .. })
        ));
        assert_eq!(
            decompress(gz, Encoding::Gzip, zeros.len()).unwrap().len(),
            zeros.len()
        );

        let zst = Bytes::from(zstd::encode_all(&zeros[..], 19).unwrap());
        assert!(matches!(
            decompress(zst.clone(), Encoding::Zstd, 1024 * 1024),
            Err(DecodeError::TooLarge { .. })
        ));
        assert_eq!(
            decompress(zst, Encoding::Zstd, zeros.len()).unwrap().len(),
            zeros.len()
        );

        assert!(matches!(
            decompress(Bytes::from_static(b"not gzip"), Encoding::Gzip, 100),
            Err(DecodeError::Decompress(_))
        ));
        assert!(matches!(
            decompress(Bytes::from_static(b"12345"), Encoding::Identity, 4),
            Err(DecodeError::TooLarge { limit: 4 })
        ));
    }

    #[test]
    fn content_encodings() {
        assert_eq!(Encoding::from_header(None), Some(Encoding::Identity));
        assert_eq!(Encoding::from_header(Some("GZIP")), Some(Encoding::Gzip));
        assert_eq!(Encoding::from_header(Some("zstd")), Some(Encoding::Zstd));
        assert_eq!(Encoding::from_header(Some("br")), None);
    }
}
