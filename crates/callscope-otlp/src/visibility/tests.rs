//! One test per rule, on small hand-built requests.

use callscope_model::{Category, Level, TenantRecord, Timestamp, metrics::PromWriter};
use serde_json::json;

use super::*;
use crate::testing::{
    LogBuilder, ResourceBuilder, ScopeBuilder, T0, array, bytes, empty, map, request,
};

fn filter() -> VisibilityFilter {
    VisibilityFilter::new(&VisibilityConfig::default()).unwrap()
}

fn with(config: &VisibilityConfig) -> VisibilityFilter {
    VisibilityFilter::new(config).unwrap()
}

fn ok() -> LogBuilder {
    LogBuilder::customer("AGENT_MESSAGE_SENT")
        .call("c1")
        .tenant("acme")
}

/// The one stored record, or a panic saying what happened instead.
fn one(f: &VisibilityFilter, b: LogBuilder) -> TenantRecord {
    let out = f.apply(&b.into_request());
    assert_eq!(out.records.len(), 1, "{out:?}");
    out.records.into_iter().next().unwrap()
}

fn data(f: &VisibilityFilter, b: LogBuilder) -> serde_json::Value {
    serde_json::to_value(one(f, b).record.data).unwrap()
}

fn rejected(f: &VisibilityFilter, b: LogBuilder) -> FilterOutput {
    let out = f.apply(&b.into_request());
    assert!(out.records.is_empty(), "{out:?}");
    assert_eq!(out.rejected, 1);
    out
}

#[test]
fn a_complete_customer_record_is_stored() {
    let f = filter();
    let r = one(
        &f,
        ok().agent("a7")
            .attr("text", "hi")
            .severity(13)
            .trace(&[0xab; 16], &[0x01; 8]),
    );
    assert_eq!(r.tenant, "acme");
    let r = r.record;
    assert_eq!(r.event, "AGENT_MESSAGE_SENT");
    assert_eq!(r.call_id, "c1");
    assert_eq!(r.agent_id.as_deref(), Some("a7"));
    assert_eq!(r.category, Category::Agent);
    assert_eq!(r.level, Level::Warning);
    assert_eq!(r.timestamp, Timestamp(T0 as i64));
    assert_eq!(
        r.trace_id.as_deref(),
        Some("abababababababababababababababab")
    );
    assert_eq!(r.span_id.as_deref(), Some("0101010101010101"));
    assert_eq!(
        serde_json::to_value(&r.data).unwrap(),
        json!({"text": "hi"})
    );
    assert_eq!(r.id.get_version_num(), 8);
    assert_eq!(f.stats().accepted(), 1);
}

#[test]
fn only_the_exact_string_customer_is_customer_visible() {
    let f = filter();
    let internal = [
        LogBuilder::internal("AGENT_MESSAGE_SENT")
            .call("c1")
            .tenant("acme"),
        ok().visibility("Customer"),
        ok().visibility("CUSTOMER"),
        ok().visibility(" customer"),
        ok().visibility("customer "),
        ok().visibility("internal"),
        ok().visibility(""),
        ok().visibility(1),
        ok().visibility(true),
        ok().visibility(array(["customer"])),
        ok().visibility(bytes(b"customer")),
        ok().visibility(empty()),
        // Two different values are ambiguous.
        ok().attr(keys::VISIBILITY, "internal"),
        // Only the exact key counts.
        ok().without(keys::VISIBILITY)
            .attr("Callscope.Visibility", "customer"),
    ];
    let n = internal.len() as u64;
    let out = f.apply(&request([ResourceBuilder::new().logs(internal).build()]));
    assert!(out.records.is_empty(), "{out:?}");
    assert_eq!(out.dropped_internal, n);
    assert_eq!((out.rejected, out.error_message.as_str()), (0, ""));
    assert_eq!(f.stats().dropped_internal(), n);
    assert_eq!(f.stats().received(), n);
    // A repeated identical value is still customer.
    one(&f, ok().attr(keys::VISIBILITY, "customer"));
}

#[test]
fn visibility_on_the_resource_does_not_count() {
    let f = filter();
    let req = request([ResourceBuilder::new()
        .attr(keys::VISIBILITY, "customer")
        .logs([LogBuilder::internal("AGENT_MESSAGE_SENT")
            .call("c1")
            .tenant("acme")])
        .build()]);
    assert_eq!(f.apply(&req).dropped_internal, 1);
}

#[test]
fn call_id_rules() {
    let f = filter();
    let cases = [
        (ok().without(keys::CALL_ID), RejectReason::MissingCallId),
        (
            ok().without(keys::CALL_ID).call(""),
            RejectReason::MissingCallId,
        ),
        (
            ok().without(keys::CALL_ID).attr(keys::CALL_ID, 7),
            RejectReason::InvalidCallId,
        ),
        (ok().call("c2"), RejectReason::InvalidCallId),
        (
            ok().without(keys::CALL_ID).call(&"x".repeat(129)),
            RejectReason::CallIdTooLong,
        ),
    ];
    for (b, reason) in cases {
        let before = f.stats().rejected(reason);
        rejected(&f, b);
        assert_eq!(f.stats().rejected(reason), before + 1, "{reason:?}");
    }
    let long = "é".repeat(64);
    assert_eq!(long.len(), 128);
    one(&f, ok().without(keys::CALL_ID).call(&long));
    one(&f, ok().call("c1"));
}

#[test]
fn tenant_comes_from_the_record_then_the_resource_then_the_default() {
    let f = with(&VisibilityConfig {
        default_tenant: "fallback".into(),
        ..VisibilityConfig::default()
    });
    let no_tenant = || ok().without(keys::TENANT_ID);
    let req = request([
        ResourceBuilder::new()
            .tenant("res")
            .logs([no_tenant(), ok()])
            .build(),
        ResourceBuilder::new().logs([no_tenant()]).build(),
    ]);
    let tenants: Vec<_> = f
        .apply(&req)
        .records
        .into_iter()
        .map(|r| r.tenant)
        .collect();
    assert_eq!(tenants, ["res", "acme", "fallback"]);

    let out = filter().apply(&no_tenant().into_request());
    assert_eq!(out.rejected, 1);
    assert_eq!(
        out.error_message,
        "1 customer record rejected: 1 missing tenant.id"
    );
}

#[test]
fn a_bad_tenant_never_falls_back_to_another() {
    let f = with(&VisibilityConfig {
        default_tenant: "fallback".into(),
        ..VisibilityConfig::default()
    });
    let no_tenant = || ok().without(keys::TENANT_ID);
    for b in [
        no_tenant().tenant(""),
        no_tenant().attr(keys::TENANT_ID, 12),
        ok().tenant("other"),
    ] {
        rejected(&f, b);
    }
    for res in [
        ResourceBuilder::new().tenant(""),
        ResourceBuilder::new().attr(keys::TENANT_ID, 12),
        ResourceBuilder::new().tenant("a").tenant("b"),
    ] {
        let out = f.apply(&request([res.logs([no_tenant()]).build()]));
        assert_eq!(out.rejected, 1, "{out:?}");
    }
    assert_eq!(f.stats().rejected(RejectReason::InvalidTenant), 6);
}

#[test]
fn event_comes_from_the_field_then_the_attribute() {
    let f = filter();
    let r = one(&f, ok().attr(keys::EVENT_NAME, "GREETING_SENT"));
    assert_eq!(r.record.event, "AGENT_MESSAGE_SENT");
    let r = one(
        &f,
        ok().event_name("").attr(keys::EVENT_NAME, "GREETING_SENT"),
    );
    assert_eq!(r.record.event, "GREETING_SENT");
    let out = rejected(&f, ok().event_name(""));
    assert!(out.error_message.contains("missing event name"), "{out:?}");
    rejected(&f, ok().event_name("").attr(keys::EVENT_NAME, ""));
    rejected(&f, ok().event_name("").attr(keys::EVENT_NAME, 3));
}

#[test]
fn category_comes_from_the_attribute_then_the_catalogue() {
    let f = filter();
    let r = one(&f, ok().category("webhooks"));
    assert_eq!(r.record.category, Category::Webhooks);
    let r = one(&f, ok().event_name("MY_EVENT").category("METRICS"));
    assert_eq!(r.record.category, Category::Metrics);

    let out = rejected(&f, ok().category("FOO"));
    assert_eq!(
        out.error_message,
        "1 customer record rejected: 1 unknown callscope.category (e.g. `FOO`)"
    );
    rejected(&f, ok().attr(keys::CATEGORY, 3));
    let out = rejected(&f, ok().event_name("MY_EVENT"));
    assert!(out.error_message.contains("`MY_EVENT`"), "{out:?}");
    assert_eq!(f.stats().rejected(RejectReason::UnknownCategory), 2);
    assert_eq!(f.stats().rejected(RejectReason::MissingCategory), 1);
}

#[test]
fn rejections_are_summarised_by_reason() {
    let f = filter();
    let req = request([ResourceBuilder::new()
        .logs([
            ok().without(keys::CALL_ID),
            ok().without(keys::CALL_ID),
            ok().category("FOO\n"),
            ok().category("BAR"),
            ok(),
            LogBuilder::internal("X"),
        ])
        .build()]);
    let out = f.apply(&req);
    assert_eq!(out.records.len(), 1);
    assert_eq!((out.rejected, out.dropped_internal), (4, 1));
    assert_eq!(
        out.error_message,
        "4 customer records rejected: 2 missing call.id, 2 unknown callscope.category (e.g. `FOO`)"
    );
}

#[test]
fn level_rules() {
    let f = filter();
    let level = |b: LogBuilder| one(&f, b).record.level;
    assert_eq!(level(ok().severity(1)), Level::Debug);
    assert_eq!(level(ok().severity(24)), Level::Critical);
    assert_eq!(
        level(ok().severity(17).severity_text("DEBUG")),
        Level::Error
    );
    assert_eq!(level(ok().severity_text("warn")), Level::Warning);
    assert_eq!(
        level(ok().severity(99).severity_text("fatal")),
        Level::Critical
    );
    // The catalogue's default.
    assert_eq!(
        level(ok().event_name("CALL_FAILED").severity_text("loud")),
        Level::Error
    );
    assert_eq!(
        level(ok().event_name("MY_EVENT").category("AGENT")),
        Level::Info
    );
}

#[test]
fn time_rules() {
    let f = filter();
    let ts = |b: LogBuilder| one(&f, b).record.timestamp;
    assert_eq!(ts(ok().time(5).observed(7)), Timestamp(5));
    assert_eq!(ts(ok().time(0).observed(7)), Timestamp(7));
    assert_eq!(ts(ok().time(u64::MAX)), Timestamp(i64::MAX));
    let before = Timestamp::now();
    let t = ts(ok().time(0).observed(0));
    assert!(t >= before && t <= Timestamp::now());
}

#[test]
fn trace_and_span_ids_must_be_valid() {
    let f = filter();
    let ids = |t: &[u8], s: &[u8]| {
        let r = one(&f, ok().trace(t, s)).record;
        (r.trace_id, r.span_id)
    };
    assert_eq!(ids(&[0; 16], &[0; 8]), (None, None));
    assert_eq!(ids(&[1; 15], &[1; 9]), (None, None));
    assert_eq!(ids(&[], &[]), (None, None));
    assert_eq!(
        ids(&[0xAB; 16], &[0xCD; 8]),
        (Some("ab".repeat(16)), Some("cd".repeat(8)))
    );
}

#[test]
fn agent_id_is_a_string_or_nothing() {
    let f = filter();
    assert_eq!(one(&f, ok()).record.agent_id, None);
    assert_eq!(one(&f, ok().attr(keys::AGENT_ID, 5)).record.agent_id, None);
    assert_eq!(one(&f, ok().agent("")).record.agent_id, None);
}

#[test]
fn data_is_typed() {
    let f = filter();
    let d = data(
        &f,
        ok().attr("s", "x")
            .attr("i", -3)
            .attr("big", i64::MAX)
            .attr("d", 1.5)
            .attr("nan", f64::NAN)
            .attr("inf", f64::INFINITY)
            .attr("ninf", f64::NEG_INFINITY)
            .attr("b", true)
            .attr("bytes", bytes(b"\x00\xffhi"))
            .attr("arr", array([1, 2]))
            .attr("nested", map([("a", array([map([("b", "c")])]))]))
            .attr("null", empty()),
    );
    assert_eq!(
        d,
        json!({
            "s": "x", "i": -3, "big": i64::MAX, "d": 1.5, "nan": "NaN", "inf": "Infinity",
            "ninf": "-Infinity", "b": true, "bytes": "AP9oaQ==", "arr": [1, 2],
            "nested": {"a": [{"b": "c"}]}, "null": null
        })
    );
}

#[test]
fn reserved_resource_and_scope_attributes_never_reach_data() {
    let f = filter();
    let req = request([ResourceBuilder::new()
        .attr("service.name", "voice")
        .attr("deployment.environment", "prod")
        .tenant("acme")
        .scope(
            ScopeBuilder::new("lib")
                .attr("library.secret", "s")
                .logs([ok()
                    .agent("a")
                    .category("AGENT")
                    .attr("callscope.anything", 1)
                    .attr("CALL.ID", "x")
                    .attr("Tenant.Id", "x")
                    .attr("text", "hi")]),
        )
        .build()]);
    let out = f.apply(&req);
    let d = serde_json::to_value(&out.records[0].record.data).unwrap();
    assert_eq!(d, json!({"text": "hi"}));
    let s = f.stats();
    assert_eq!(s.stripped(StripReason::Resource), 3);
    assert_eq!(s.stripped(StripReason::Scope), 1);
    // call.id, tenant.id, callscope.visibility, agent.id, callscope.category,
    // callscope.anything, CALL.ID, Tenant.Id
    assert_eq!(s.stripped(StripReason::Reserved), 8);
}

#[test]
fn strip_list_matches_any_case_and_nested_keys() {
    let f = with(&VisibilityConfig {
        strip: vec!["billing.*".into(), "caller.ip".into()],
        ..VisibilityConfig::default()
    });
    let d = data(
        &f,
        ok().attr("Host.Name", "h")
            .attr("INTERNAL.secret", "s")
            .attr(" k8s.pod.name ", "p")
            .attr("k8s", map([("pod", "p")]))
            .attr("exception.stacktrace", "st")
            .attr("exception.message", "boom")
            .attr("url.full", "https://x/?token=1")
            .attr("url.path", "/x")
            .attr("Billing", "b")
            .attr("billing.card", "4111")
            .attr("CALLER.IP", "1.2.3.4")
            .attr("caller.name", "Ann")
            .attr(
                "details",
                map([
                    ("host.name", "h"),
                    ("keep", "k"),
                    ("call.id", "c"),
                    ("deep", "d"),
                ]),
            )
            .attr("http", map([("request.header.authorization", "Bearer x")]))
            .attr(
                "list",
                array([map([("db.statement", "select"), ("ok", "1")])]),
            ),
    );
    assert_eq!(
        d,
        json!({
            "exception.message": "boom", "url.path": "/x", "caller.name": "Ann",
            "details": {"keep": "k", "deep": "d"}, "http": {}, "list": [{"ok": "1"}]
        })
    );
    assert_eq!(f.stats().stripped(StripReason::StripList), 12);
    assert_eq!(f.stats().stripped(StripReason::Reserved), 4);
}

#[test]
fn allow_list_only_narrows() {
    let f = with(&VisibilityConfig {
        allow: Some(vec!["text".into(), "host.*".into(), "tool.*".into()]),
        ..VisibilityConfig::default()
    });
    let d = data(
        &f,
        ok().attr("TEXT", "hi")
            .attr("host.name", "h")
            .attr("tool.name", "crm")
            .attr("other", 1)
            .body("said hi"),
    );
    assert_eq!(
        d,
        json!({"TEXT": "hi", "tool.name": "crm", "message": "said hi"})
    );
    assert_eq!(f.stats().stripped(StripReason::NotAllowed), 1);
    assert_eq!(f.stats().stripped(StripReason::StripList), 1);
}

#[test]
fn bodies_become_message_or_body() {
    let f = filter();
    assert_eq!(
        data(&f, ok().attr("message", "attr").body("hello")),
        json!({"message": "hello"})
    );
    assert_eq!(
        data(&f, ok().body(map([("a", 1), ("host.name", 2)]))),
        json!({"body": {"a": 1}})
    );
    assert_eq!(data(&f, ok().body(3)), json!({"body": 3}));
    assert_eq!(data(&f, ok().body(empty())), json!(null));
}

#[test]
fn data_is_null_when_nothing_is_left() {
    let f = filter();
    assert_eq!(one(&f, ok()).record.data, None);
    assert_eq!(one(&f, ok().attr("host.name", "h")).record.data, None);
    assert_eq!(
        data(&f, ok().attr("m", map([("a", 1)]).clone())),
        json!({"m": {"a": 1}})
    );
}

#[test]
fn masks_rewrite_strings_everywhere_they_apply() {
    let f = with(&VisibilityConfig {
        mask: vec![
            MaskRule {
                pattern: r"\b\d{16}\b".into(),
                replacement: "[card]".into(),
                keys: None,
            },
            MaskRule {
                pattern: r"(\w+)@example\.com".into(),
                replacement: "$1@…".into(),
                keys: Some(vec!["email".into(), "message".into()]),
            },
        ],
        ..VisibilityConfig::default()
    });
    let d = data(
        &f,
        ok().attr("text", "card 4111111111111111 ok")
            .attr("nested", map([("x", array(["4111111111111111", "n"]))]))
            .attr("Email", "ann@example.com")
            .attr("note", "bob@example.com")
            .attr("n", 4_111_111_111_111_111_i64)
            .body("ann@example.com paid with 4111111111111111"),
    );
    assert_eq!(
        d,
        json!({
            "text": "card [card] ok", "nested": {"x": ["[card]", "n"]},
            "Email": "ann@…", "note": "bob@example.com", "n": 4_111_111_111_111_111_i64,
            "message": "ann@… paid with [card]"
        })
    );
    assert_eq!(f.stats().masked(), 4);
}

#[test]
fn bad_config_names_the_key() {
    let err = |c: VisibilityConfig| VisibilityFilter::new(&c).unwrap_err().to_string();
    let mask = |pattern: &str, keys: Option<Vec<String>>| VisibilityConfig {
        mask: vec![
            MaskRule {
                pattern: "ok".into(),
                replacement: String::new(),
                keys: None,
            },
            MaskRule {
                pattern: pattern.into(),
                replacement: String::new(),
                keys,
            },
        ],
        ..VisibilityConfig::default()
    };
    let e = err(mask("(", None));
    assert!(e.starts_with("visibility.mask[1].pattern: "), "{e}");
    assert!(!e.contains('\n'), "{e}");
    let e = err(mask("", None));
    assert!(e.starts_with("visibility.mask[1].pattern: "), "{e}");
    let e = err(mask("x", Some(vec!["a*".into()])));
    assert!(e.starts_with("visibility.mask[1].keys[0]: "), "{e}");
    let e = err(VisibilityConfig {
        strip: vec!["*".into()],
        ..VisibilityConfig::default()
    });
    assert!(e.starts_with("visibility.strip[0]: "), "{e}");
    let e = err(VisibilityConfig {
        allow: Some(vec![String::new()]),
        ..VisibilityConfig::default()
    });
    assert!(e.starts_with("visibility.allow[0]: "), "{e}");
    let e = err(VisibilityConfig {
        default_tenant: " acme".into(),
        ..VisibilityConfig::default()
    });
    assert!(e.starts_with("visibility.default_tenant: "), "{e}");
}

#[test]
fn ids_are_stable_and_sensitive_to_content() {
    let f = filter();
    let id = |b: LogBuilder| one(&f, b).record.id;
    let base = || ok().attr("text", "hi").attr("n", 1).body("b");
    let a = id(base());
    assert_eq!(a, id(base()), "a retry gets the same id");
    // Attribute order does not matter.
    assert_eq!(
        a,
        id(ok()
            .attr("n", 1)
            .attr("text", "hi")
            .body("b")
            .attr("x", 1)
            .without("x"))
    );
    let variants = [
        base().time(T0 + 1),
        base().observed(T0 + 1),
        base().severity(9),
        base().severity_text("INFO"),
        base().trace(&[1; 16], &[1; 8]),
        base().body("c"),
        base().body(array(["b"])),
        base().attr("host.name", "h"),
        base().attr("text", "hi"),
        base().attr("m", map::<&str, i64>([])),
        base().attr("m", array::<i64>([])),
        base().attr("callscope.category", "AGENT"),
        base().without("n").attr("n", 1.0),
        base().without("n").attr("n", "1"),
        base().event_name("GREETING_SENT"),
        base().without(keys::CALL_ID).call("c2"),
        base().without(keys::TENANT_ID).tenant("other"),
    ];
    let mut seen = std::collections::HashSet::from([a]);
    for (i, v) in variants.into_iter().enumerate() {
        assert!(seen.insert(id(v)), "variant {i} collides");
    }
    // The default tenant is part of the id too.
    let g = with(&VisibilityConfig {
        default_tenant: "t2".into(),
        ..VisibilityConfig::default()
    });
    let no_tenant = base().without(keys::TENANT_ID);
    assert_ne!(one(&g, no_tenant.clone()).record.id, id(base()));
    assert_eq!(
        one(&g, no_tenant.clone()).record.id,
        one(&g, no_tenant).record.id
    );
}

#[test]
fn metrics_render_every_reason() {
    let f = filter();
    let _ = f.apply(&request([ResourceBuilder::new()
        .attr("host.name", "h")
        .logs([ok(), ok().without(keys::CALL_ID), LogBuilder::internal("X")])
        .build()]));
    let mut w = PromWriter::new();
    f.render(&mut w);
    let page = w.finish();
    for line in [
        "callscope_records_received_total 3",
        "callscope_records_dropped_total{reason=\"internal\"} 1",
        "callscope_records_rejected_total{reason=\"missing_call_id\"} 1",
        "callscope_records_rejected_total{reason=\"unknown_category\"} 0",
        "callscope_records_accepted_total 1",
        "callscope_attributes_stripped_total{reason=\"resource\"} 1",
        "callscope_attributes_stripped_total{reason=\"not_allowed\"} 0",
        "callscope_values_masked_total 0",
    ] {
        assert!(page.contains(line), "{line} missing from\n{page}");
    }
}
