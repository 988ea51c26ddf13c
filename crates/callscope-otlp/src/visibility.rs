//! The customer-visibility filter: turns an OTLP logs request into the records customers
//! may see, and fails closed (`docs/wire.md`).
//!
//! A log record is stored only when its `callscope.visibility` attribute is exactly the
//! string `customer` and it names a call, a tenant, an event and a known category. Every
//! other record is either *dropped* (internal: not meant for customers) or *rejected*
//! (meant for customers but incomplete; the sender is told why through OTLP
//! `partial_success`). A stored record's `data` holds the record's own attributes and body,
//! never its resource or scope attributes, reserved keys, or keys on the strip list.
//!
//! The filter is pure: it does no I/O, and the same request always yields the same
//! records with the same ids.
//!
//! ```
//! use callscope_otlp::visibility::{VisibilityConfig, VisibilityFilter};
//! use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
//!
//! let filter = VisibilityFilter::new(&VisibilityConfig {
//!     strip: vec!["billing.*".into()],
//!     ..VisibilityConfig::default()
//! })?;
//! let out = filter.apply(&ExportLogsServiceRequest::default());
//! assert!(out.records.is_empty() && out.error_message.is_empty());
//! # Ok::<(), callscope_otlp::visibility::ConfigError>(())
//! ```
//!
//! # Rules
//!
//! - **Visibility.** Only the exact string `customer` makes a record customer-visible; an
//!   absent attribute, `Customer`, a number, or two different values make it internal.
//! - **Call.** `call.id` must be one non-empty string of at most 128 bytes.
//! - **Tenant.** `tenant.id` on the record, else on its resource, else the configured
//!   default tenant. A `tenant.id` that is present but empty, not a string, or given twice
//!   with different values rejects the record: it never falls back to another tenant.
//! - **Event.** The record's `event_name` field, else its `event.name` attribute.
//! - **Category.** `callscope.category` (any case), else the catalogue's category for the
//!   event. An unknown `callscope.category` rejects the record even for catalogue events.
//! - **Level.** `severity_number` 1–24, else `severity_text`, else the catalogue's default,
//!   else `INFO`. **Time.** `time_unix_nano`, else `observed_time_unix_nano`, else now.
//! - **Data.** The record's attributes, typed (bytes as base64, non-finite doubles as the
//!   strings `NaN`, `Infinity`, `-Infinity`), minus reserved keys, strip-list keys and, in
//!   allow-list mode, keys not on the allow list. Keys are matched without regard to case
//!   or surrounding whitespace. Keys inside map values are withheld by the same reserved
//!   and strip rules, matched by their own name and by their dotted path (`k8s` →
//!   `{pod: …}` is withheld as `k8s`; `http` → `{request.header.x: …}` as
//!   `http.request.header.x`). A string body becomes `data.message` (replacing an attribute
//!   of that name), any other body `data.body`. `data` is `null` when nothing is left, so
//!   a customer cannot tell a withheld attribute from an absent one.
//! - **Id.** A UUID derived from the tenant, call id, the raw time fields, event, trace
//!   and span ids, severity, body and every original attribute (before stripping, sorted by
//!   key): a retried record gets the same id, a different record a different one.

mod config;
mod spans;
mod stats;
mod value;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod span_tests;
#[cfg(test)]
mod tests;

use std::{collections::HashMap, fmt::Write as _, sync::Arc};

use callscope_model::{
    CATALOGUE, Category, EventSpec, Level, LogRecord, RecordIdHasher, TenantRecord, Timestamp,
    keys,
    metrics::{MetricsSource, PromWriter},
};
use opentelemetry_proto::tonic::{
    collector::logs::v1::ExportLogsServiceRequest,
    common::v1::{AnyValue, KeyValue, any_value::Value},
    logs::v1::LogRecord as OtlpLogRecord,
};
use serde_json::{Map, Value as Json};
use uuid::Uuid;

pub use config::{ConfigError, MaskRule, VisibilityConfig};
pub use spans::SpanFilterOutput;
pub use stats::{FilterStats, RejectReason, StripReason};

use config::{FoldedKey, KeyMatcher, MAX_MASK_RULES, Mask};
use stats::Tally;
use value::{ToJson, hash_map, hash_value};

/// Versions the id encoding: changing what goes into an id changes this string.
const ID_DOMAIN: &str = "callscope.log_record.v1";

/// The longest sender-supplied value quoted in an error message, in characters.
const MAX_QUOTED_CHARS: usize = 64;

/// The customer-visibility filter, built once from [`VisibilityConfig`] and shared by
/// every receiver.
#[derive(Debug)]
pub struct VisibilityFilter {
    rules: Rules,
    default_tenant: Option<Box<str>>,
    events: HashMap<&'static str, &'static EventSpec>,
    spans: spans::SpanRules,
    stats: Arc<FilterStats>,
}

/// The key rules and masks, shared with value conversion.
#[derive(Debug)]
pub(crate) struct Rules {
    reserved: KeyMatcher,
    strip: KeyMatcher,
    allow: Option<KeyMatcher>,
    masks: Vec<Mask>,
}

impl Rules {
    /// Why `key` is withheld wherever it appears, if it is.
    pub(crate) fn withheld(&self, key: &FoldedKey<'_>) -> Option<StripReason> {
        if self.reserved.matches(key) {
            Some(StripReason::Reserved)
        } else if self.strip.matches(key) {
            Some(StripReason::StripList)
        } else {
            None
        }
    }

    /// The mask rules that apply to values under the top-level key `key`, as a bit set.
    fn masks_for(&self, key: &FoldedKey<'_>) -> u64 {
        self.masks
            .iter()
            .enumerate()
            .filter(|(_, m)| m.keys.as_ref().is_none_or(|k| k.matches(key)))
            .fold(0, |set, (i, _)| set | 1 << i)
    }
}

/// What the filter made of one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FilterOutput {
    /// The records to store, in request order.
    pub records: Vec<TenantRecord>,
    /// Customer-visible records refused (the OTLP `partial_success` rejected count).
    pub rejected: u64,
    /// Records dropped because they are not customer-visible. They are still forwarded.
    pub dropped_internal: u64,
    /// For OTLP `partial_success`: the rejections summarised by reason with counts, e.g.
    /// ``3 customer records rejected: 2 missing call.id, 1 unknown callscope.category (e.g. `FOO`)``.
    /// Empty when nothing was rejected.
    pub error_message: String,
}

/// A refused customer record: the reason, and a value to quote in the message.
struct Rejection {
    reason: RejectReason,
    quote: Option<String>,
}

impl From<RejectReason> for Rejection {
    fn from(reason: RejectReason) -> Self {
        Self {
            reason,
            quote: None,
        }
    }
}

impl VisibilityFilter {
    /// Builds the filter.
    ///
    /// # Errors
    /// A malformed key pattern in `strip`, `allow` or a mask's `keys`, a mask pattern that
    /// is empty or not a valid regular expression, more than 64 mask rules, or a default
    /// tenant with surrounding whitespace. The error names the setting, e.g.
    /// `visibility.mask[0].pattern: …`.
    pub fn new(config: &VisibilityConfig) -> Result<Self, ConfigError> {
        let tenant = config.default_tenant.as_str();
        if tenant.trim() != tenant {
            return Err(ConfigError::Invalid {
                key: "visibility.default_tenant".into(),
                reason: "must not start or end with whitespace",
            });
        }
        let mut strip = KeyMatcher::builtin(keys::DEFAULT_STRIP);
        strip.extend(KeyMatcher::parse("visibility.strip", &config.strip)?);
        let allow = config
            .allow
            .as_deref()
            .map(|a| KeyMatcher::parse("visibility.allow", a))
            .transpose()?;
        if config.mask.len() > MAX_MASK_RULES {
            return Err(ConfigError::Invalid {
                key: "visibility.mask".into(),
                reason: "at most 64 mask rules are supported",
            });
        }
        let masks = config
            .mask
            .iter()
            .enumerate()
            .map(|(i, r)| Mask::compile(i, r))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            rules: Rules {
                reserved: KeyMatcher::reserved(),
                strip,
                allow,
                masks,
            },
            default_tenant: (!tenant.is_empty()).then(|| tenant.into()),
            events: CATALOGUE.iter().map(|e| (e.code, e)).collect(),
            spans: spans::SpanRules::new(
                &config.customer_span_names,
                &config.span_call_id_attributes,
            )?,
            stats: Arc::default(),
        })
    }

    /// The counters since the filter was built.
    #[must_use]
    pub fn stats(&self) -> &FilterStats {
        &self.stats
    }

    /// The counters, to register with the `/metrics` page.
    #[must_use]
    pub fn metrics_source(&self) -> Arc<FilterStats> {
        Arc::clone(&self.stats)
    }

    /// Filters one request: the customer records to store, and what was refused.
    #[must_use]
    pub fn apply(&self, req: &ExportLogsServiceRequest) -> FilterOutput {
        let mut tally = Tally::default();
        let mut quotes: [Option<String>; RejectReason::ALL.len()] = Default::default();
        let mut records = Vec::new();
        let mut scratch = Vec::new();
        for rl in &req.resource_logs {
            let resource_attrs = rl.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
            let resource_tenant = Slot::find(resource_attrs, keys::TENANT_ID);
            for sl in &rl.scope_logs {
                let scope_attrs = sl.scope.as_ref().map_or(0, |s| s.attributes.len());
                for lr in &sl.log_records {
                    tally.received += 1;
                    let known = Known::scan(&lr.attributes);
                    if !known.is_customer() {
                        tally.internal += 1;
                        continue;
                    }
                    match self.convert(lr, &known, &resource_tenant, &mut scratch, &mut tally) {
                        Ok(record) => {
                            tally.accepted += 1;
                            tally.strip(StripReason::Resource, resource_attrs.len());
                            tally.strip(StripReason::Scope, scope_attrs);
                            records.push(record);
                        }
                        Err(r) => {
                            tally.reject(r.reason);
                            let q = &mut quotes[r.reason as usize];
                            if q.is_none() {
                                *q = r.quote;
                            }
                        }
                    }
                }
            }
        }
        self.stats.add(&tally);
        FilterOutput {
            records,
            rejected: tally.rejected_total(),
            dropped_internal: tally.internal,
            error_message: summarise(&tally, &quotes),
        }
    }

    /// One customer-visible record to a stored record, or why not.
    fn convert<'a>(
        &self,
        lr: &'a OtlpLogRecord,
        known: &Known<'a>,
        resource_tenant: &Slot<'a>,
        scratch: &mut Vec<&'a KeyValue>,
        tally: &mut Tally,
    ) -> Result<TenantRecord, Rejection> {
        let call_id = match known.call_id.string() {
            Ok(None | Some("")) => return Err(RejectReason::MissingCallId.into()),
            Err(()) => return Err(RejectReason::InvalidCallId.into()),
            Ok(Some(c)) if c.len() > keys::MAX_CALL_ID_BYTES => {
                return Err(RejectReason::CallIdTooLong.into());
            }
            Ok(Some(c)) => c,
        };
        let tenant = match known.tenant.non_empty() {
            Ok(Some(t)) => t,
            Ok(None) => match resource_tenant.non_empty() {
                Ok(Some(t)) => t,
                Ok(None) => self
                    .default_tenant
                    .as_deref()
                    .ok_or(RejectReason::MissingTenant)?,
                Err(()) => return Err(RejectReason::InvalidTenant.into()),
            },
            Err(()) => return Err(RejectReason::InvalidTenant.into()),
        };
        let event = if lr.event_name.is_empty() {
            match known.event.non_empty() {
                Ok(Some(e)) => e,
                _ => return Err(RejectReason::MissingEvent.into()),
            }
        } else {
            lr.event_name.as_str()
        };
        let spec = self.events.get(event).copied();
        let category = match &known.category {
            Slot::Absent => spec.map(|s| s.category).ok_or_else(|| Rejection {
                reason: RejectReason::MissingCategory,
                quote: Some(quote(event)),
            })?,
            Slot::One(Some(AnyValue {
                value: Some(Value::StringValue(c)),
            })) => c.parse::<Category>().map_err(|_| Rejection {
                reason: RejectReason::UnknownCategory,
                quote: Some(quote(c)),
            })?,
            _ => return Err(RejectReason::UnknownCategory.into()),
        };

        let level = Level::from_severity_number(lr.severity_number)
            .or_else(|| Level::from_severity_text(&lr.severity_text))
            .or(spec.map(|s| s.level))
            .unwrap_or(Level::Info);
        let raw_time = if lr.time_unix_nano != 0 {
            lr.time_unix_nano
        } else {
            lr.observed_time_unix_nano
        };
        let timestamp = if raw_time == 0 {
            Timestamp::now()
        } else {
            Timestamp(i64::try_from(raw_time).unwrap_or(i64::MAX))
        };

        let id = id_with(tenant, call_id, event, lr, scratch);

        Ok(TenantRecord {
            tenant: tenant.to_owned(),
            record: LogRecord {
                id,
                timestamp,
                level,
                category,
                event: event.to_owned(),
                call_id: call_id.to_owned(),
                agent_id: match known.agent.non_empty() {
                    Ok(Some(a)) => Some(a.to_owned()),
                    _ => None,
                },
                trace_id: hex_id(&lr.trace_id, 16),
                span_id: hex_id(&lr.span_id, 8),
                data: self.data(lr, tally),
            },
        })
    }

    /// The record's `data`: its attributes and body, withheld keys removed, masks applied.
    fn data(&self, lr: &OtlpLogRecord, tally: &mut Tally) -> Option<Map<String, Json>> {
        let rules = &self.rules;
        let mut data = Map::new();
        self.convert_attributes(&lr.attributes, tally, &mut data);
        let mut conv = ToJson { rules, tally };
        match lr.body.as_ref().and_then(|b| b.value.as_ref()) {
            None => {}
            Some(Value::StringValue(s)) => {
                let masks = rules.masks_for(&FoldedKey::Ascii(keys::DATA_MESSAGE));
                let v = Json::String(conv.mask(s, masks));
                data.insert(keys::DATA_MESSAGE.to_owned(), v);
            }
            Some(_) => {
                let masks = rules.masks_for(&FoldedKey::Ascii(keys::DATA_BODY));
                let v = conv.value(lr.body.as_ref(), keys::DATA_BODY, masks);
                data.insert(keys::DATA_BODY.to_owned(), v);
            }
        }
        (!data.is_empty()).then_some(data)
    }
}

impl VisibilityFilter {
    /// Puts `attrs` into `out`, typed, withheld keys removed, masks applied: what a
    /// record's `data` and a span's `attributes` hold.
    fn convert_attributes(
        &self,
        attrs: &[KeyValue],
        tally: &mut Tally,
        out: &mut Map<String, Json>,
    ) {
        let rules = &self.rules;
        let mut conv = ToJson { rules, tally };
        for kv in attrs {
            let key = FoldedKey::new(&kv.key);
            if let Some(reason) = rules.withheld(&key) {
                conv.tally.strip(reason, 1);
                continue;
            }
            if rules.allow.as_ref().is_some_and(|a| !a.matches(&key)) {
                conv.tally.strip(StripReason::NotAllowed, 1);
                continue;
            }
            let v = conv.value(kv.value.as_ref(), &kv.key, rules.masks_for(&key));
            out.insert(kv.key.clone(), v);
        }
    }
}

impl MetricsSource for VisibilityFilter {
    fn render(&self, out: &mut PromWriter) {
        self.stats.render(out);
    }
}

/// One reserved attribute as found on a record.
#[derive(Debug, Default, Clone, PartialEq)]
enum Slot<'a> {
    #[default]
    Absent,
    /// Present once, or several times with the same value.
    One(Option<&'a AnyValue>),
    /// Present several times with different values: ambiguous, so never trusted.
    Conflict,
}

impl<'a> Slot<'a> {
    fn find(attrs: &'a [KeyValue], key: &str) -> Self {
        let mut slot = Slot::Absent;
        for kv in attrs.iter().filter(|kv| kv.key == key) {
            slot.set(kv.value.as_ref());
        }
        slot
    }

    fn set(&mut self, v: Option<&'a AnyValue>) {
        *self = match std::mem::take(self) {
            Slot::Absent => Slot::One(v),
            Slot::One(prev) if prev == v => Slot::One(prev),
            Slot::One(_) | Slot::Conflict => Slot::Conflict,
        };
    }

    /// `Ok(None)` when absent, `Ok(Some)` for a single string, `Err` for anything else.
    fn string(&self) -> Result<Option<&'a str>, ()> {
        match self {
            Slot::Absent => Ok(None),
            Slot::One(Some(AnyValue {
                value: Some(Value::StringValue(s)),
            })) => Ok(Some(s)),
            Slot::One(_) | Slot::Conflict => Err(()),
        }
    }

    /// Like [`Slot::string`], but an empty string is an error too.
    fn non_empty(&self) -> Result<Option<&'a str>, ()> {
        match self.string()? {
            Some("") => Err(()),
            s => Ok(s),
        }
    }
}

/// The reserved attributes of one record, found in one pass.
#[derive(Debug, Default)]
struct Known<'a> {
    visibility: Slot<'a>,
    call_id: Slot<'a>,
    tenant: Slot<'a>,
    agent: Slot<'a>,
    category: Slot<'a>,
    event: Slot<'a>,
}

impl<'a> Known<'a> {
    fn scan(attrs: &'a [KeyValue]) -> Self {
        let mut k = Known::default();
        for kv in attrs {
            let slot = match kv.key.as_str() {
                keys::VISIBILITY => &mut k.visibility,
                keys::CALL_ID => &mut k.call_id,
                keys::TENANT_ID => &mut k.tenant,
                keys::AGENT_ID => &mut k.agent,
                keys::CATEGORY => &mut k.category,
                keys::EVENT_NAME => &mut k.event,
                _ => continue,
            };
            slot.set(kv.value.as_ref());
        }
        k
    }

    /// Exactly the string `customer`, and nothing else anywhere under the same key.
    fn is_customer(&self) -> bool {
        self.visibility.string() == Ok(Some("customer"))
    }
}

/// The id of a stored record: a UUID derived from the tenant, call id and event the filter
/// resolved for `record`, and from the record's raw content (both time fields, trace and
/// span ids, severity number and text, body, and every attribute, sorted by key).
#[must_use]
pub fn record_id(tenant: &str, call_id: &str, event: &str, record: &OtlpLogRecord) -> Uuid {
    id_with(tenant, call_id, event, record, &mut Vec::new())
}

/// [`record_id`] with a reusable buffer for sorting attributes.
fn id_with<'a>(
    tenant: &str,
    call_id: &str,
    event: &str,
    lr: &'a OtlpLogRecord,
    scratch: &mut Vec<&'a KeyValue>,
) -> Uuid {
    // Times are hashed by their bits; the cast only reinterprets them.
    #[allow(clippy::cast_possible_wrap)]
    let (time, observed) = (lr.time_unix_nano as i64, lr.observed_time_unix_nano as i64);
    let mut h = RecordIdHasher::new();
    h.str(ID_DOMAIN)
        .str(tenant)
        .str(call_id)
        .i64(time)
        .i64(observed)
        .str(event)
        .bytes(&lr.trace_id)
        .bytes(&lr.span_id)
        .i64(i64::from(lr.severity_number))
        .str(&lr.severity_text);
    hash_value(&mut h, lr.body.as_ref());
    hash_map(&mut h, &lr.attributes, scratch);
    h.finish()
}

/// 16- or 8-byte trace and span ids as lowercase hex; invalid (all zero, wrong length) ones
/// as `None`, as the OTLP specification asks of receivers.
fn hex_id(bytes: &[u8], len: usize) -> Option<String> {
    (bytes.len() == len && bytes.iter().any(|&b| b != 0)).then(|| hex::encode(bytes))
}

/// A sender-supplied value fit for an error message: no control characters, bounded.
fn quote(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(MAX_QUOTED_CHARS)
        .collect()
}

fn summarise(tally: &Tally, quotes: &[Option<String>]) -> String {
    summarise_as(tally, quotes, "record")
}

/// The `partial_success` message for rejected customer `noun`s (`record`, `span`).
fn summarise_as(tally: &Tally, quotes: &[Option<String>], noun: &str) -> String {
    let total = tally.rejected_total();
    if total == 0 {
        return String::new();
    }
    let plural = if total == 1 { "" } else { "s" };
    let mut s = format!("{total} customer {noun}{plural} rejected: ");
    let mut first = true;
    for r in RejectReason::ALL {
        let n = tally.rejected[r as usize];
        if n == 0 {
            continue;
        }
        if !first {
            s.push_str(", ");
        }
        first = false;
        let _ = write!(s, "{n} {}", r.description());
        if let Some(q) = &quotes[r as usize] {
            let _ = write!(s, " (e.g. `{q}`)");
        }
    }
    s
}
