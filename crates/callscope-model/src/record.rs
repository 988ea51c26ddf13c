//! The stored call-log record, in the shape the customer API returns it.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use crate::{Category, Level};

/// A point in time, in nanoseconds since the Unix epoch (UTC).
///
/// Serialises as RFC 3339 in UTC with microseconds, or nanoseconds when the time has
/// sub-microsecond digits: `2026-11-21T10:00:00.123456Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Now, from the system clock.
    #[must_use]
    pub fn now() -> Self {
        Self(Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX))
    }

    /// Nanoseconds since the epoch.
    #[must_use]
    pub fn as_nanos(self) -> i64 {
        self.0
    }

    /// Parses RFC 3339 (any offset), e.g. `2026-11-21T10:00:00Z`.
    ///
    /// # Errors
    /// The text is not RFC 3339, or lies outside the years 1677–2262 that 64-bit
    /// nanoseconds can hold.
    pub fn parse_rfc3339(s: &str) -> Result<Self, TimestampError> {
        let dt = DateTime::parse_from_rfc3339(s).map_err(|_| TimestampError(s.to_owned()))?;
        dt.timestamp_nanos_opt()
            .map(Self)
            .ok_or_else(|| TimestampError(s.to_owned()))
    }

    /// The time as a `chrono` UTC date-time.
    #[must_use]
    pub fn to_datetime(self) -> DateTime<Utc> {
        DateTime::from_timestamp_nanos(self.0)
    }

    /// RFC 3339 in UTC with at least microseconds.
    #[must_use]
    pub fn to_rfc3339(self) -> String {
        let format = if self.0.rem_euclid(1_000) == 0 {
            SecondsFormat::Micros
        } else {
            SecondsFormat::Nanos
        };
        self.to_datetime().to_rfc3339_opts(format, true)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// A time that is not valid RFC 3339.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an RFC 3339 date-time (e.g. 2026-11-21T10:00:00Z)")]
pub struct TimestampError(String);

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Timestamp::parse_rfc3339(&s).map_err(serde::de::Error::custom)
    }
}

/// One customer-visible call-log record, as stored and as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogRecord {
    /// Content-derived id (see [`crate::RecordIdHasher`]).
    pub id: Uuid,
    /// When the event happened: RFC 3339, UTC, at least microseconds.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime, example = "2026-11-21T10:00:00.123456Z"))]
    pub timestamp: Timestamp,
    /// The level.
    pub level: Level,
    /// The category.
    pub category: Category,
    /// The event code, e.g. `AGENT_MESSAGE_SENT`.
    pub event: String,
    /// The call the record belongs to.
    pub call_id: String,
    /// The voice agent that handled the call.
    pub agent_id: Option<String>,
    /// 32 lowercase hex digits.
    #[cfg_attr(
        feature = "openapi",
        schema(example = "0af7651916cd43dd8448eb211c80319c")
    )]
    pub trace_id: Option<String>,
    /// 16 lowercase hex digits.
    pub span_id: Option<String>,
    /// The record's attributes (minus stripped keys) and its body: a string body is
    /// `data.message`, any other body `data.body`.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub data: Option<serde_json::Map<String, serde_json::Value>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_keep_at_least_microseconds() {
        let t = Timestamp::parse_rfc3339("2026-11-21T10:00:00Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-21T10:00:00.000000Z");
        let t = Timestamp(t.0 + 123_456_789);
        assert_eq!(t.to_rfc3339(), "2026-11-21T10:00:00.123456789Z");
        let t = Timestamp::parse_rfc3339("2026-11-21T12:00:00.5+02:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-21T10:00:00.500000Z");
        assert!(Timestamp::parse_rfc3339("yesterday").is_err());
        assert!(Timestamp::parse_rfc3339("3000-01-01T00:00:00Z").is_err());
    }

    #[test]
    fn record_serializes_in_the_contract_shape() {
        let r = LogRecord {
            id: Uuid::nil(),
            timestamp: Timestamp(0),
            level: Level::Info,
            category: Category::Agent,
            event: "GREETING_SENT".into(),
            call_id: "c1".into(),
            agent_id: None,
            trace_id: Some("0af7651916cd43dd8448eb211c80319c".into()),
            span_id: None,
            data: Some(serde_json::from_str(r#"{"text":"hi"}"#).unwrap()),
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "id": "00000000-0000-0000-0000-000000000000",
                "timestamp": "1970-01-01T00:00:00.000000Z",
                "level": "INFO", "category": "AGENT", "event": "GREETING_SENT",
                "call_id": "c1", "agent_id": null,
                "trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": null,
                "data": {"text": "hi"}
            })
        );
        assert_eq!(serde_json::from_value::<LogRecord>(v).unwrap(), r);
    }
}

/// A record together with the tenant that owns it: what the collector hands the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantRecord {
    /// The tenant (customer organisation).
    pub tenant: String,
    /// The record.
    #[serde(flatten)]
    pub record: LogRecord,
}
