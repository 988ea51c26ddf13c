//! `/openapi.json` describes the router exactly: every route in it (read from the
//! router's source), with the methods the router answers, and the answers every route
//! can give in the JSON error shape: 405 for a wrong method, 414 for an over-long URI.

use std::{collections::BTreeSet, sync::Arc};

use axum::{
    Router,
    body::Body,
    http::{Method, Request, StatusCode, header},
};
use callscope_api::{ApiState, KeyRing, MAX_URI_BYTES, router};
use callscope_store::{Store, StoreConfig};
use http_body_util::BodyExt as _;
use serde_json::Value;
use tower::ServiceExt as _;

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

async fn app() -> (Router, Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreConfig {
        path: dir.path().join("api.duckdb"),
        ..StoreConfig::default()
    })
    .unwrap();
    let app = router(ApiState::new(store.clone(), Arc::new(KeyRing::new())));
    (app, store, dir)
}

async fn send(app: &Router, method: &str, uri: &str) -> (StatusCode, Option<String>, Value) {
    let req = Request::builder()
        .method(Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap())
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{}"))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let allow = resp
        .headers()
        .get(header::ALLOW)
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, allow, body)
}

async fn document(app: &Router) -> Value {
    let (status, _, doc) = send(app, "get", "/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    doc
}

/// Every `.route("…", get(…).post(…))` in the API crate's sources: path and methods.
fn routes_in_source() -> BTreeSet<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        // Only the API's own modules: the console (a folder) routes pages, not API.
        let path = entry.unwrap().path();
        if path.is_dir() {
            continue;
        }
        let text = std::fs::read_to_string(path).unwrap();
        let mut rest = text.as_str();
        while let Some(at) = rest.find(".route(") {
            rest = &rest[at + ".route(".len()..];
            // The call's arguments, up to its closing parenthesis.
            let mut depth = 1;
            let end = rest
                .char_indices()
                .find(|(_, c)| {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map_or(rest.len(), |(i, _)| i);
            let call = &rest[..end];
            let Some(path) = call.split('"').nth(1) else {
                continue;
            };
            for method in METHODS {
                let called = format!("{method}(");
                let routed = call.match_indices(&called).any(|(i, _)| {
                    call[..i]
                        .chars()
                        .next_back()
                        .is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
                });
                if routed {
                    out.insert((path.to_owned(), method.to_owned()));
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn every_route_of_the_router_is_documented() {
    let (app, store, _dir) = app().await;
    let doc = document(&app).await;
    let routes = routes_in_source();
    assert!(
        routes.len() >= 13,
        "the source scan found the routes: {routes:?}"
    );
    assert!(routes.contains(&("/v1/calls/{call_id}/comments".into(), "post".into())));
    for (path, method) in &routes {
        assert!(
            doc["paths"][path][method].is_object(),
            "{} {path} is routed but not in /openapi.json",
            method.to_uppercase()
        );
    }
    // And the other way round: nothing is documented that is not routed.
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            METHODS
                .iter()
                .filter(|m| item[**m].is_object())
                .map(|m| (path.clone(), (*m).to_owned()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(&documented, &routes);
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_wrong_method_gets_405_in_the_error_shape_on_every_route() {
    let (app, store, _dir) = app().await;
    let doc = document(&app).await;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let uri = path.replace("{call_id}", "some-call");
        for method in METHODS {
            let (status, allow, body) = send(&app, method, &uri).await;
            if item[method].is_object() {
                assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                continue;
            }
            assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert_eq!(body["status"], "error", "{method} {path}: {body}");
            assert_eq!(body["error_code"], "METHOD_NOT_ALLOWED", "{method} {path}");
            assert!(
                allow.is_some(),
                "{method} {path}: 405 names the allowed methods"
            );
        }
    }
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_over_long_uri_gets_414_in_the_error_shape() {
    let (app, store, _dir) = app().await;
    let long = format!("/v1/calls?event={}", "X".repeat(MAX_URI_BYTES));
    let (status, _, body) = send(&app, "get", &long).await;
    assert_eq!(status, StatusCode::URI_TOO_LONG);
    assert_eq!(body["error_code"], "URI_TOO_LONG", "{body}");
    let short = format!("/v1/calls?event={}", "X".repeat(MAX_URI_BYTES / 2));
    let (status, _, _) = send(&app, "get", &short).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a long URI within the limit is read"
    );
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn every_operation_documents_its_error_answers() {
    let (app, store, _dir) = app().await;
    let doc = document(&app).await;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            let op = &item[method];
            if !op.is_object() {
                continue;
            }
            let mut want = vec!["405", "414", "500"];
            if path.starts_with("/v1/") {
                want.extend(["401", "503"]);
                let queried = op["parameters"]
                    .as_array()
                    .is_some_and(|ps| ps.iter().any(|p| p["in"] == "query"));
                if queried {
                    want.push("422");
                }
                if op["requestBody"].is_object() {
                    want.push("400");
                }
                if path.contains("{call_id}") {
                    want.push("404");
                }
            }
            for status in want {
                let answer = &op["responses"][status];
                assert!(answer.is_object(), "{method} {path} lacks {status}");
                if status != "503" || path.starts_with("/v1/") {
                    assert_eq!(
                        answer["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
    // The alias takes the same parameters as the route it stands for.
    let main = &doc["paths"]["/v1/calls/{call_id}/logs"]["get"]["parameters"];
    let alias = &doc["paths"]["/v1/log/call/{call_id}"]["get"]["parameters"];
    assert!(main.as_array().unwrap().len() > 5, "{main}");
    assert_eq!(alias, main);
    assert!(doc["paths"]["/readyz"]["get"]["responses"]["503"].is_object());
    store.shutdown().await.unwrap();
}
