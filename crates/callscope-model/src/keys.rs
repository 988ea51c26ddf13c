//! The attribute keys senders and callscope agree on (`docs/wire.md`).

/// The call a record belongs to (log record attribute).
pub const CALL_ID: &str = "call.id";
/// The tenant (customer organisation) that owns the call; log record attribute, else
/// resource attribute.
pub const TENANT_ID: &str = "tenant.id";
/// The voice agent that handled the call (optional).
pub const AGENT_ID: &str = "agent.id";
/// `customer` or `internal`; absent means internal.
pub const VISIBILITY: &str = "callscope.visibility";
/// The event's category; may be omitted for catalogue events.
pub const CATEGORY: &str = "callscope.category";
/// The event code, when the sender cannot set the LogRecord's `event_name` field.
pub const EVENT_NAME: &str = "event.name";
/// Every key under this prefix is reserved for callscope and never stored as data.
pub const RESERVED_PREFIX: &str = "callscope.";
/// The largest `call.id` accepted, in bytes.
pub const MAX_CALL_ID_BYTES: usize = 128;

/// Keys that are never copied into a stored record's `data`.
pub const RESERVED: &[&str] = &[CALL_ID, TENANT_ID, AGENT_ID, EVENT_NAME];

/// `data` key for a string body.
pub const DATA_MESSAGE: &str = "message";
/// `data` key for any other body.
pub const DATA_BODY: &str = "body";

/// Is `key` reserved: one of [`RESERVED`] or under [`RESERVED_PREFIX`]?
#[must_use]
pub fn is_reserved(key: &str) -> bool {
    RESERVED.contains(&key) || key.starts_with(RESERVED_PREFIX)
}

/// The strip list a collector applies by default: infrastructure and internal details
/// that must never reach customers. A pattern ending in `.*` matches the prefix and
/// everything under it; any other pattern matches the key exactly.
pub const DEFAULT_STRIP: &[&str] = &[
    "internal.*",
    "exception.stacktrace",
    "code.*",
    "thread.*",
    "host.*",
    "os.*",
    "process.*",
    "container.*",
    "k8s.*",
    "cloud.*",
    "net.*",
    "network.*",
    "server.*",
    "client.*",
    "db.*",
    "url.full",
    "http.request.header.*",
    "http.response.header.*",
    "user_agent.*",
    "service.*",
    "telemetry.*",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_keys() {
        for k in [
            CALL_ID,
            TENANT_ID,
            AGENT_ID,
            EVENT_NAME,
            VISIBILITY,
            CATEGORY,
            "callscope.anything",
        ] {
            assert!(is_reserved(k), "{k}");
        }
        for k in ["text", "call", "callscope", "tenant", "call.ids"] {
            assert!(!is_reserved(k), "{k}");
        }
    }
}
