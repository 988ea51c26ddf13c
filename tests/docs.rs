//! The generated references in `docs/` match the code: `docs/api.md` is rendered from the
//! OpenAPI document `/openapi.json` serves, `docs/events.md` from the event catalogue in
//! `callscope_model`. When one is stale the test fails; regenerate both with
//!
//! ```sh
//! CALLSCOPE_UPDATE_DOCS=1 cargo test -p callscope --test docs
//! ```

use std::{fmt::Write as _, path::PathBuf};

use callscope_model::{CATALOGUE, Category};
use serde_json::Value;
use utoipa::OpenApi as _;

fn docs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs")
}

/// Compares `name` in `docs/` with `rendered`, or writes it when asked to.
fn check(name: &str, rendered: &str) {
    let path = docs().join(name);
    if std::env::var("CALLSCOPE_UPDATE_DOCS").is_ok_and(|v| v == "1") {
        std::fs::write(&path, rendered).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == rendered,
        "docs/{name} is stale; regenerate it with \
         `CALLSCOPE_UPDATE_DOCS=1 cargo test -p callscope --test docs`"
    );
}

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

/// A schema as a short type: `$ref`s by name, arrays as `[T]`.
fn type_of(schema: &Value) -> String {
    if let Some(r) = schema["$ref"].as_str() {
        return format!("`{}`", r.rsplit('/').next().unwrap_or(r));
    }
    if let Some(one) = schema["oneOf"].as_array() {
        let types: Vec<String> = one.iter().map(type_of).collect();
        return types.join(" or ");
    }
    match &schema["type"] {
        Value::String(t) if t == "array" => format!("[{}]", type_of(&schema["items"])),
        Value::String(t) => match schema["format"].as_str() {
            Some(f) => format!("{t} ({f})"),
            None => t.clone(),
        },
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "object".into(),
    }
}

fn cell(text: &str) -> String {
    text.replace('\n', " ").replace('|', "\\|")
}

fn render_api(doc: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# API reference\n\n<!-- Generated from /openapi.json by tests/docs.rs; do not edit. -->\n\n\
         {}\n\nEvery `/v1` route needs `Authorization: Bearer <API key>`; the key decides the \
         tenant. Every error answers `{{\"status\": \"error\", \"error_code\": \"…\", \"message\": \"…\"}}` \
         (schema `ErrorBody`). The running server serves this document as OpenAPI 3.1 at \
         `GET /openapi.json`.\n",
        doc["info"]["description"].as_str().unwrap_or_default()
    );
    let paths = doc["paths"].as_object().unwrap();
    for (path, item) in paths {
        for method in METHODS {
            let op = &item[method];
            if !op.is_object() {
                continue;
            }
            let _ = writeln!(out, "## {} `{path}`\n", method.to_uppercase());
            for key in ["summary", "description"] {
                if let Some(text) = op[key].as_str() {
                    let _ = writeln!(out, "{text}\n");
                }
            }
            if let Some(params) = op["parameters"].as_array().filter(|p| !p.is_empty()) {
                let _ = writeln!(
                    out,
                    "| parameter | in | type | required | description |\n|---|---|---|---|---|"
                );
                for p in params {
                    let _ = writeln!(
                        out,
                        "| `{}` | {} | {} | {} | {} |",
                        p["name"].as_str().unwrap_or_default(),
                        p["in"].as_str().unwrap_or_default(),
                        type_of(&p["schema"]),
                        if p["required"] == true { "yes" } else { "no" },
                        cell(p["description"].as_str().unwrap_or_default())
                    );
                }
                out.push('\n');
            }
            if let Some(content) = op["requestBody"]["content"].as_object() {
                for (kind, body) in content {
                    let _ = writeln!(out, "Body ({kind}): {}\n", type_of(&body["schema"]));
                }
            }
            let _ = writeln!(out, "| status | answer |\n|---|---|");
            for (status, answer) in op["responses"].as_object().unwrap() {
                let body = answer["content"]
                    .as_object()
                    .and_then(|c| c.values().next())
                    .map(|c| format!(" ({})", type_of(&c["schema"])))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "| {status} | {}{body} |",
                    cell(answer["description"].as_str().unwrap_or_default())
                );
            }
            out.push('\n');
        }
    }
    let _ = writeln!(out, "## Schemas\n");
    if let Some(schemas) = doc["components"]["schemas"].as_object() {
        for (name, schema) in schemas {
            let _ = writeln!(out, "### `{name}`\n");
            if let Some(text) = schema["description"].as_str() {
                let _ = writeln!(out, "{text}\n");
            }
            if let Some(values) = schema["enum"].as_array() {
                let values: Vec<String> = values
                    .iter()
                    .map(|v| format!("`{}`", v.as_str().unwrap_or_default()))
                    .collect();
                let _ = writeln!(out, "One of {}.\n", values.join(", "));
                continue;
            }
            let Some(props) = schema["properties"].as_object() else {
                let _ = writeln!(out, "Type: {}.\n", type_of(schema));
                continue;
            };
            let required: Vec<&str> = schema["required"]
                .as_array()
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "| field | type | always present | description |\n|---|---|---|---|"
            );
            for (field, p) in props {
                let _ = writeln!(
                    out,
                    "| `{field}` | {} | {} | {} |",
                    type_of(p),
                    if required.contains(&field.as_str()) {
                        "yes"
                    } else {
                        "no"
                    },
                    cell(p["description"].as_str().unwrap_or_default())
                );
            }
            out.push('\n');
        }
    }
    out
}

fn render_events() -> String {
    let mut out = String::from(
        "# Event catalogue\n\n<!-- Generated from callscope_model::events by tests/docs.rs; do not edit. -->\n\n\
         The events an agent service emits for its customers. Each has a code (sent as the \
         OpenTelemetry event name), a category, a default level (used when the sender gives \
         none) and the `data` fields it usually carries. A sender may emit events outside the \
         catalogue if it gives their category (`callscope.category`). Events marked *ends the \
         call* set the call's status; the call summary (`/v1/calls`) takes its fields from the \
         events that carry them.\n\n",
    );
    for category in Category::ALL {
        let events: Vec<_> = CATALOGUE
            .iter()
            .filter(|e| e.category == category)
            .collect();
        if events.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "## {}\n\n| event | level | data fields | ends the call | meaning |\n|---|---|---|---|---|",
            category.as_str()
        );
        for e in events {
            let fields: Vec<String> = e.fields.iter().map(|f| format!("`{f}`")).collect();
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {} |",
                e.code,
                e.level.as_str(),
                fields.join(", "),
                e.outcome.map_or("", |o| o.as_str()),
                cell(e.description)
            );
        }
        out.push('\n');
    }
    out
}

#[test]
fn the_api_reference_is_current() {
    let doc = serde_json::to_value(callscope_api::openapi::ApiDoc::openapi()).unwrap();
    check("api.md", &render_api(&doc));
}

#[test]
fn the_event_catalogue_is_current() {
    check("events.md", &render_events());
}
