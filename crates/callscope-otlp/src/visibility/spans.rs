//! The visibility filter for spans: which spans of an OTLP traces request customers may
//! see, and what of them.
//!
//! A span is stored under the rule that stores a log record: it is customer-visible
//! (its `callscope.visibility` attribute is exactly `customer`, or its name is on
//! `[visibility] customer_span_names`), it names a call and it has a tenant. Its
//! `attributes` go through the same reserved keys, strip list, allow list and masks as
//! a record's `data`; resource and scope attributes, span events and links never reach
//! storage. Every other span is still forwarded, never stored.
//!
//! The call comes from the span's `call.id`, else from the first attribute of
//! `[visibility] span_call_id_attributes` it carries (e.g. Pipecat's `conversation.id`),
//! else from the other spans of the same trace in the same request: frameworks put the
//! conversation's id on the conversation and turn spans only, and their stage spans are
//! exported in the same batch as the turn that encloses them. A trace whose spans in the
//! request name two different calls lends none.
//!
//! A span's id is derived from its tenant, trace id and span id, so a retried export
//! stores it once.

use std::collections::HashMap;

use callscope_model::{
    RecordIdHasher, SpanKind, SpanRecord, SpanStatus, TenantSpan, Timestamp, keys,
};
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest, trace::v1::Span as OtlpSpan,
};

use super::{Known, RejectReason, Slot, StripReason, VisibilityFilter, hex_id, stats::Tally};

/// Versions the span id encoding.
const SPAN_ID_DOMAIN: &str = "callscope.span.v1";

/// What the filter made of one traces request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpanFilterOutput {
    /// The spans to store, in request order.
    pub spans: Vec<TenantSpan>,
    /// Customer-visible spans refused (the OTLP `partial_success` rejected count).
    pub rejected: u64,
    /// Spans dropped because they are not customer-visible. They are still forwarded.
    pub dropped_internal: u64,
    /// For OTLP `partial_success`: the rejections summarised by reason with counts.
    /// Empty when nothing was rejected.
    pub error_message: String,
}

/// The call id a trace's spans lend to those of its spans that carry none.
#[derive(Debug, Clone, Copy)]
enum Lent<'a> {
    One(&'a str),
    Conflict,
}

impl VisibilityFilter {
    /// Filters one traces request: the customer spans to store, and what was refused.
    #[must_use]
    pub fn apply_spans(&self, req: &ExportTraceServiceRequest) -> SpanFilterOutput {
        let mut tally = Tally::default();
        let mut quotes: [Option<String>; RejectReason::ALL.len()] = Default::default();
        let lent = self.lent_call_ids(req);
        let mut spans = Vec::new();
        for rs in &req.resource_spans {
            let resource_attrs = rs.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
            let resource_tenant = Slot::find(resource_attrs, keys::TENANT_ID);
            for ss in &rs.scope_spans {
                let scope_attrs = ss.scope.as_ref().map_or(0, |s| s.attributes.len());
                for span in &ss.spans {
                    tally.received += 1;
                    let known = Known::scan(&span.attributes);
                    if !known.is_customer() && !self.spans.is_customer_name(&span.name) {
                        tally.internal += 1;
                        continue;
                    }
                    match self.convert_span(span, &known, &resource_tenant, &lent, &mut tally) {
                        Ok(s) => {
                            tally.accepted += 1;
                            tally.strip(StripReason::Resource, resource_attrs.len());
                            tally.strip(StripReason::Scope, scope_attrs);
                            spans.push(s);
                        }
                        Err((reason, quote)) => {
                            tally.reject(reason);
                            let q = &mut quotes[reason as usize];
                            if q.is_none() {
                                *q = quote;
                            }
                        }
                    }
                }
            }
        }
        self.stats.add_spans(&tally);
        SpanFilterOutput {
            spans,
            rejected: tally.rejected_total(),
            dropped_internal: tally.internal,
            error_message: super::summarise_as(&tally, &quotes, "span"),
        }
    }

    /// The call id each trace in the request lends: from its spans that carry one.
    fn lent_call_ids<'a>(&self, req: &'a ExportTraceServiceRequest) -> HashMap<&'a [u8], Lent<'a>> {
        let mut lent: HashMap<&[u8], Lent<'_>> = HashMap::new();
        let spans = req
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans);
        for span in spans {
            let Some(call) = self.own_call_id(span) else {
                continue;
            };
            lent.entry(&span.trace_id)
                .and_modify(|l| {
                    if let Lent::One(c) = l
                        && *c != call
                    {
                        *l = Lent::Conflict;
                    }
                })
                .or_insert(Lent::One(call));
        }
        lent
    }

    /// The span's own call id, as a single non-empty string: `call.id`, else the first
    /// configured call-id attribute it carries.
    fn own_call_id<'a>(&self, span: &'a OtlpSpan) -> Option<&'a str> {
        let as_id = |slot: Slot<'a>| match slot.string() {
            Ok(Some(s)) if !s.is_empty() => Some(s),
            _ => None,
        };
        if let Some(c) = as_id(Slot::find(&span.attributes, keys::CALL_ID)) {
            return Some(c);
        }
        self.spans
            .call_id_attributes
            .iter()
            .find_map(|key| as_id(Slot::find(&span.attributes, key)))
    }

    fn convert_span(
        &self,
        span: &OtlpSpan,
        known: &Known<'_>,
        resource_tenant: &Slot<'_>,
        lent: &HashMap<&[u8], Lent<'_>>,
        tally: &mut Tally,
    ) -> Result<TenantSpan, (RejectReason, Option<String>)> {
        let call_id = match known.call_id.string() {
            Err(()) => return Err((RejectReason::InvalidCallId, None)),
            Ok(Some(c)) if !c.is_empty() => c,
            Ok(_) => match self
                .own_call_id(span)
                .or_else(|| match lent.get(&span.trace_id[..]) {
                    Some(Lent::One(c)) => Some(*c),
                    _ => None,
                }) {
                Some(c) => c,
                None => return Err((RejectReason::MissingCallId, None)),
            },
        };
        if call_id.len() > keys::MAX_CALL_ID_BYTES {
            return Err((RejectReason::CallIdTooLong, None));
        }
        let tenant = match known.tenant.non_empty() {
            Ok(Some(t)) => t,
            Ok(None) => match resource_tenant.non_empty() {
                Ok(Some(t)) => t,
                Ok(None) => self
                    .default_tenant
                    .as_deref()
                    .ok_or((RejectReason::MissingTenant, None))?,
                Err(()) => return Err((RejectReason::InvalidTenant, None)),
            },
            Err(()) => return Err((RejectReason::InvalidTenant, None)),
        };
        let (Some(trace_id), Some(span_id)) =
            (hex_id(&span.trace_id, 16), hex_id(&span.span_id, 8))
        else {
            return Err((RejectReason::InvalidSpanId, None));
        };
        let mut h = RecordIdHasher::new();
        h.str(SPAN_ID_DOMAIN)
            .str(tenant)
            .bytes(&span.trace_id)
            .bytes(&span.span_id);
        let id = h.finish();
        let time = |t: u64| Timestamp(i64::try_from(t).unwrap_or(i64::MAX));
        let start_time = time(span.start_time_unix_nano);
        let end_time = if span.end_time_unix_nano == 0 {
            start_time
        } else {
            time(span.end_time_unix_nano)
        };
        let (status, status_message) =
            span.status.as_ref().map_or((SpanStatus::Unset, None), |s| {
                let m = (!s.message.is_empty()).then(|| {
                    let masks = self
                        .rules
                        .masks_for(&super::FoldedKey::Ascii("status_message"));
                    let mut conv = super::value::ToJson {
                        rules: &self.rules,
                        tally,
                    };
                    conv.mask(&s.message, masks)
                });
                (SpanStatus::from_otlp(s.code), m)
            });
        let mut attributes = serde_json::Map::new();
        self.convert_attributes(&span.attributes, tally, &mut attributes);
        // A configured call-id attribute names the call; like `call.id`, it is no
        // attribute of the span.
        for key in &self.spans.call_id_attributes {
            attributes.remove(key.as_str());
        }
        Ok(TenantSpan {
            tenant: tenant.to_owned(),
            span: SpanRecord {
                id,
                call_id: call_id.to_owned(),
                agent_id: match known.agent.non_empty() {
                    Ok(Some(a)) => Some(a.to_owned()),
                    _ => None,
                },
                trace_id,
                span_id,
                parent_span_id: hex_id(&span.parent_span_id, 8),
                name: span.name.chars().take(MAX_NAME_CHARS).collect(),
                kind: SpanKind::from_otlp(span.kind),
                start_time,
                end_time,
                status,
                status_message,
                attributes,
            },
        })
    }
}

/// The longest span name stored, in characters.
const MAX_NAME_CHARS: usize = 256;

/// Spans of third-party frameworks: which are customer-visible by name, and which
/// attribute names their call.
#[derive(Debug, Default)]
pub(crate) struct SpanRules {
    exact: Vec<String>,
    prefixes: Vec<String>,
    pub(crate) call_id_attributes: Vec<String>,
}

impl SpanRules {
    pub(crate) fn new(
        names: &[String],
        call_id_attributes: &[String],
    ) -> Result<Self, super::ConfigError> {
        let mut rules = SpanRules::default();
        for (i, n) in names.iter().enumerate() {
            let bad = |reason| super::ConfigError::Invalid {
                key: format!("visibility.customer_span_names[{i}]"),
                reason,
            };
            match n.strip_suffix('*') {
                Some(p) if p.contains('*') => return Err(bad("`*` is allowed only at the end")),
                Some(p) => rules.prefixes.push(p.to_owned()),
                None if n.is_empty() => return Err(bad("a span name must not be empty")),
                None if n.contains('*') => return Err(bad("`*` is allowed only at the end")),
                None => rules.exact.push(n.clone()),
            }
        }
        for (i, k) in call_id_attributes.iter().enumerate() {
            if k.trim().is_empty() || k.trim() != k {
                return Err(super::ConfigError::Invalid {
                    key: format!("visibility.span_call_id_attributes[{i}]"),
                    reason: "must be a non-empty attribute key without surrounding whitespace",
                });
            }
        }
        rules.call_id_attributes = call_id_attributes.to_vec();
        Ok(rules)
    }

    /// Is a span of this name customer-visible whatever its attributes say?
    pub(crate) fn is_customer_name(&self, name: &str) -> bool {
        self.exact.iter().any(|n| n == name)
            || self.prefixes.iter().any(|p| name.starts_with(p.as_str()))
    }
}
