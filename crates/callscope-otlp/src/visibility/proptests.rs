//! Property tests for the invariants that must never break: nothing internal, stripped or
//! infrastructural reaches a stored record, ids are deterministic and distinct, and every
//! customer record is accounted for.

use std::collections::HashSet;

use callscope_model::keys;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use proptest::prelude::*;
use serde_json::Value as Json;

use super::{VisibilityConfig, VisibilityFilter};
use crate::testing::{self, LogBuilder, ResourceBuilder, ScopeBuilder};

/// Placed only where customers must never see it.
const SECRET: &str = "S3CRET-5e1f";

/// Keys the filter must withhold (before random casing).
const STRIPPED: &[&str] = &[
    "internal.prompt",
    "internal",
    "exception.stacktrace",
    "code.function",
    "thread.id",
    "host.name",
    "host",
    "os.type",
    "process.pid",
    "container.id",
    "k8s.pod.name",
    "k8s",
    "cloud.region",
    "net.peer.ip",
    "network.peer.address",
    "server.address",
    "client.address",
    "db.statement",
    "url.full",
    "http.request.header.authorization",
    "http.response.header.set-cookie",
    "user_agent.original",
    "service.name",
    "telemetry.sdk.name",
    "callscope.secret",
    "callscope.visibility",
    "callscope.category",
    "call.id",
    "tenant.id",
    "agent.id",
    "event.name",
    "billing.card",
];

/// Keys that are stored.
const ORDINARY: &[&str] = &[
    "text",
    "confidence",
    "tool_name",
    "details",
    "items",
    "exception.message",
    "url.path",
    "http.method",
    "hostname",
    "callscope",
    "call",
];

/// The contract keys the filter reads by exact name; random casing must not hit them.
const EXACT: &[&str] = &[
    keys::CALL_ID,
    keys::TENANT_ID,
    keys::AGENT_ID,
    keys::EVENT_NAME,
    keys::VISIBILITY,
    keys::CATEGORY,
];

fn config() -> VisibilityConfig {
    VisibilityConfig {
        default_tenant: "dflt".into(),
        strip: vec!["billing.*".into()],
        ..VisibilityConfig::default()
    }
}

/// A key in random case, sometimes padded or spelt with look-alike characters that fold
/// to the same letters.
fn cased(key: &'static str) -> impl Strategy<Value = String> {
    (prop::collection::vec(any::<bool>(), key.len()), 0..8u8).prop_map(move |(upper, trick)| {
        let mut s: String = key
            .chars()
            .zip(upper)
            .map(|(c, u)| if u { c.to_ascii_uppercase() } else { c })
            .collect();
        match trick {
            0 => s = format!(" {s} "),
            1 => s = s.replacen(['k', 'K'], "\u{212A}", 1),
            2 => s = s.replacen(['s', 'S'], "\u{17F}", 1),
            _ => {}
        }
        if EXACT.contains(&s.as_str()) {
            s = s.to_uppercase();
        }
        s
    })
}

/// A value tree whose strings are secret under withheld keys and public elsewhere.
#[derive(Debug, Clone)]
enum Tree {
    Str,
    Int(i64),
    Double(f64),
    Bool(bool),
    Bytes,
    Array(Vec<Tree>),
    Map(Vec<(String, bool, Tree)>),
}

fn key() -> impl Strategy<Value = (String, bool)> {
    prop_oneof![
        prop::sample::select(STRIPPED)
            .prop_flat_map(cased)
            .prop_map(|k| (k, true)),
        prop::sample::select(ORDINARY)
            .prop_flat_map(cased)
            .prop_map(|k| (k, false)),
    ]
}

fn tree() -> impl Strategy<Value = Tree> {
    let leaf = prop_oneof![
        Just(Tree::Str),
        any::<i64>().prop_map(Tree::Int),
        any::<f64>().prop_map(Tree::Double),
        any::<bool>().prop_map(Tree::Bool),
        Just(Tree::Bytes),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Tree::Array),
            prop::collection::vec((key(), inner), 0..4)
                .prop_map(|v| { Tree::Map(v.into_iter().map(|((k, s), t)| (k, s, t)).collect()) }),
        ]
    })
}

fn render(t: &Tree, secret: bool) -> AnyValue {
    let text = if secret { SECRET } else { "public" };
    match t {
        Tree::Str => testing::IntoAnyValue::into_any_value(text),
        Tree::Int(i) => testing::IntoAnyValue::into_any_value(*i),
        Tree::Double(d) => testing::IntoAnyValue::into_any_value(*d),
        Tree::Bool(b) => testing::IntoAnyValue::into_any_value(*b),
        Tree::Bytes => testing::bytes(text.as_bytes()),
        Tree::Array(v) => testing::array(v.iter().map(|t| render(t, secret))),
        Tree::Map(v) => testing::map(
            v.iter()
                .map(|(k, s, t)| (k.clone(), render(t, secret || *s))),
        ),
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Vis {
    Customer,
    Absent,
    Other(&'static str),
    Int,
    Conflicting,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Tenant {
    Absent,
    Valid(&'static str),
    Empty,
}

#[derive(Debug, Clone)]
struct Input {
    vis: Vis,
    call: Option<String>,
    tenant: Tenant,
    /// (event_name field, callscope.category attribute)
    event: (&'static str, Option<&'static str>),
    attrs: Vec<((String, bool), Tree)>,
    body: Option<Tree>,
    time: u64,
}

fn input() -> impl Strategy<Value = Input> {
    let vis = prop_oneof![
        4 => Just(Vis::Customer),
        1 => Just(Vis::Absent),
        1 => prop::sample::select(&["Customer", "CUSTOMER", " customer", "internal", ""][..])
            .prop_map(Vis::Other),
        1 => Just(Vis::Int),
        1 => Just(Vis::Conflicting),
    ];
    let call = prop_oneof![
        6 => (0..4u8).prop_map(|c| Some(format!("call-{c}"))),
        1 => Just(None),
        1 => Just(Some(String::new())),
        1 => Just(Some("x".repeat(129))),
    ];
    let tenant = prop_oneof![
        Just(Tenant::Absent),
        Just(Tenant::Valid("acme")),
        Just(Tenant::Valid("globex")),
        Just(Tenant::Empty),
    ];
    let event = prop_oneof![
        4 => Just(("AGENT_MESSAGE_SENT", None)),
        1 => Just(("CALL_COMPLETED", Some("Call_Lifecycle"))),
        1 => Just(("CUSTOM_EVENT", Some("agent"))),
        1 => Just(("CUSTOM_EVENT", None)),
        1 => Just(("AGENT_MESSAGE_SENT", Some("BOGUS"))),
        1 => Just(("", None)),
    ];
    (
        vis,
        call,
        tenant,
        event,
        prop::collection::vec((key(), tree()), 0..8),
        prop::option::of(tree()),
        0..1_000u64,
    )
        .prop_map(|(vis, call, tenant, event, attrs, body, time)| Input {
            vis,
            call,
            tenant,
            event,
            attrs,
            body,
            time,
        })
}

impl Input {
    fn is_customer(&self) -> bool {
        self.vis == Vis::Customer
    }

    fn build(&self, seq: usize) -> LogBuilder {
        // Internal records carry the secret everywhere.
        let internal = !self.is_customer();
        let mut b = LogBuilder::bare()
            .event_name(self.event.0)
            .time(testing::T0 + self.time)
            .attr("seq", i64::try_from(seq).unwrap());
        b = match self.vis {
            Vis::Customer => b.attr(keys::VISIBILITY, "customer"),
            Vis::Absent => b,
            Vis::Other(v) => b.attr(keys::VISIBILITY, v),
            Vis::Int => b.attr(keys::VISIBILITY, 1),
            Vis::Conflicting => b
                .attr(keys::VISIBILITY, "customer")
                .attr(keys::VISIBILITY, "internal"),
        };
        if let Some(c) = &self.call {
            b = b.call(c);
        }
        b = match self.tenant {
            Tenant::Absent => b,
            Tenant::Valid(t) => b.tenant(t),
            Tenant::Empty => b.tenant(""),
        };
        if let Some(c) = self.event.1 {
            b = b.category(c);
        }
        for ((k, stripped), t) in &self.attrs {
            b = b.attr(k.clone(), render(t, internal || *stripped));
        }
        if let Some(t) = &self.body {
            b = b.body(render(t, internal));
        }
        b
    }

    /// The tenant the record must be stored under, or `None` when it must not be stored.
    fn expected(&self, resource: Tenant) -> Option<&'static str> {
        if !self.is_customer() {
            return None;
        }
        let call_ok = self
            .call
            .as_ref()
            .is_some_and(|c| !c.is_empty() && c.len() <= keys::MAX_CALL_ID_BYTES);
        let category_ok = !matches!(
            self.event,
            ("", _) | (_, Some("BOGUS")) | ("CUSTOM_EVENT", None)
        );
        let tenant = match (self.tenant, resource) {
            (Tenant::Valid(t), _) | (Tenant::Absent, Tenant::Valid(t)) => Some(t),
            (Tenant::Absent, Tenant::Absent) => Some("dflt"),
            _ => None,
        };
        tenant.filter(|_| call_ok && category_ok)
    }
}

/// Resources with tenants and secret-bearing attributes, each with two scopes.
fn batch() -> impl Strategy<Value = Vec<(Tenant, Vec<Input>)>> {
    let tenant = prop_oneof![
        Just(Tenant::Absent),
        Just(Tenant::Valid("res-tenant")),
        Just(Tenant::Empty),
    ];
    prop::collection::vec((tenant, prop::collection::vec(input(), 0..12)), 1..4)
}

fn request(
    batch: &[(Tenant, Vec<Input>)],
) -> opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest {
    let mut seq = 0;
    testing::request(batch.iter().map(|(tenant, inputs)| {
        let mut r = ResourceBuilder::new()
            .attr("host.name", SECRET)
            .attr("text", SECRET)
            .attr("deployment.environment", SECRET);
        if let Tenant::Valid(t) = tenant {
            r = r.tenant(t);
        } else if *tenant == Tenant::Empty {
            r = r.tenant("");
        }
        let (first, second) = inputs.split_at(inputs.len() / 2);
        let mut scope = |name: &str, inputs: &[Input]| {
            ScopeBuilder::new(name)
                .attr("library.token", SECRET)
                .attr("confidence", SECRET)
                .logs(inputs.iter().map(|i| {
                    seq += 1;
                    i.build(seq)
                }))
        };
        let a = scope("a", first);
        let b = scope("b", second);
        r.scope(a).scope(b).build()
    }))
}

/// Would the contract withhold `key` wherever it appears?
fn must_withhold(key: &str) -> bool {
    let fold = key.trim().to_uppercase().to_lowercase();
    let matches = |p: &str| match p.strip_suffix(".*") {
        Some(prefix) => {
            fold == prefix
                || fold
                    .strip_prefix(prefix)
                    .is_some_and(|r| r.starts_with('.'))
        }
        None => fold == p,
    };
    keys::is_reserved(&fold)
        || keys::DEFAULT_STRIP.iter().any(|p| matches(p))
        || matches("billing.*")
}

fn assert_no_withheld_keys(v: &Json) {
    match v {
        Json::Object(m) => {
            for (k, v) in m {
                assert!(!must_withhold(k), "withheld key `{k}` stored");
                assert_no_withheld_keys(v);
            }
        }
        Json::Array(a) => a.iter().for_each(assert_no_withheld_keys),
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn nothing_withheld_is_ever_stored(batch in batch()) {
        let filter = VisibilityFilter::new(&config()).unwrap();
        let req = request(&batch);
        let out = filter.apply(&req);

        // Every stored record is the customer record it claims to be, under the right tenant.
        let inputs: Vec<_> = batch
            .iter()
            .flat_map(|(t, inputs)| inputs.iter().map(move |i| (*t, i)))
            .collect();
        let mut stored = HashSet::new();
        for r in &out.records {
            let data = r.record.data.as_ref().expect("seq is always stored");
            let seq = usize::try_from(data["seq"].as_i64().unwrap()).unwrap();
            let (res_tenant, input) = inputs[seq - 1];
            prop_assert!(input.is_customer(), "internal record {seq} stored: {input:?}");
            prop_assert_eq!(Some(r.tenant.as_str()), input.expected(res_tenant), "{:?}", input);
            stored.insert(seq);
            assert_no_withheld_keys(&Json::Object(data.clone()));
        }
        // ... and every record that should be stored is.
        for (i, (res_tenant, input)) in inputs.iter().enumerate() {
            prop_assert_eq!(
                stored.contains(&(i + 1)),
                input.expected(*res_tenant).is_some(),
                "record {}: {:?}", i + 1, input
            );
        }

        // The secret is nowhere in what is stored.
        let json = serde_json::to_string(&out.records).unwrap();
        prop_assert!(!json.contains(SECRET), "secret leaked: {json}");
        // Nor in bytes values, which are stored as base64 (at any of three alignments).
        for skip in 0..3 {
            let b64 = base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                &SECRET.as_bytes()[skip..],
            );
            prop_assert!(!json.contains(&b64[4..b64.len() - 4]), "secret leaked as base64");
        }

        // Accounting adds up.
        let customer = inputs.iter().filter(|(_, i)| i.is_customer()).count() as u64;
        prop_assert_eq!(out.records.len() as u64 + out.rejected, customer);
        prop_assert_eq!(out.dropped_internal, inputs.len() as u64 - customer);
        let s = filter.stats();
        prop_assert_eq!(s.received(), inputs.len() as u64);
        prop_assert_eq!(s.accepted() + s.dropped_internal() + out.rejected, s.received());
        prop_assert_eq!(out.error_message.is_empty(), out.rejected == 0);
    }

    #[test]
    fn ids_are_deterministic_and_distinct(batch in batch()) {
        let filter = VisibilityFilter::new(&config()).unwrap();
        let req = request(&batch);
        let a = filter.apply(&req);
        let b = VisibilityFilter::new(&config()).unwrap().apply(&req);
        prop_assert_eq!(&a.records, &b.records);

        // Every record differs (by `seq`), so every id does.
        let ids: HashSet<_> = a.records.iter().map(|r| r.record.id).collect();
        prop_assert_eq!(ids.len(), a.records.len());

        // Attribute order is not content.
        let mut reordered = req.clone();
        for rl in &mut reordered.resource_logs {
            for sl in &mut rl.scope_logs {
                for lr in &mut sl.log_records {
                    lr.attributes.reverse();
                    dedup_last(&mut lr.attributes);
                }
            }
        }
        let mut dedup = req.clone();
        for rl in &mut dedup.resource_logs {
            for sl in &mut rl.scope_logs {
                for lr in &mut sl.log_records {
                    lr.attributes.reverse();
                    dedup_last(&mut lr.attributes);
                    lr.attributes.reverse();
                }
            }
        }
        let x: Vec<_> = filter.apply(&reordered).records.iter().map(|r| r.record.id).collect();
        let y: Vec<_> = filter.apply(&dedup).records.iter().map(|r| r.record.id).collect();
        prop_assert_eq!(x.len(), y.len());
        let x: HashSet<_> = x.into_iter().collect();
        let y: HashSet<_> = y.into_iter().collect();
        prop_assert_eq!(x, y);
    }
}

/// Keeps the first attribute of each key (so that reversing the list is a pure reorder).
fn dedup_last(attrs: &mut Vec<KeyValue>) {
    let mut seen = HashSet::new();
    attrs.retain(|a| seen.insert(a.key.clone()));
}
