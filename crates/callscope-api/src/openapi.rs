//! The OpenAPI 3.1 document, generated from the handlers' types.
//!
//! Every route of [`crate::router`] is in it (a test reads the router's source and
//! checks). Answers every route can give are added once, by [`StandardAnswers`], rather
//! than listed on each handler: 405, 414 and 500 everywhere, and for the `/v1` routes 401
//! and 503, 404 `CALL_NOT_FOUND` where a call is named, 422 where there are query
//! parameters and 400 where there is a body.

use utoipa::{
    Modify, OpenApi,
    openapi::{
        ContentBuilder, Ref, ResponseBuilder,
        path::{Operation, ParameterIn},
        security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};

/// The customer API's OpenAPI description.
#[derive(OpenApi)]
#[openapi(
    info(title = "callscope customer API", description = "Per-call logs for the customers of a voice-agent platform."),
    paths(
        crate::logs::call_logs,
        crate::logs::call_logs_alias,
        crate::stream::call_logs_stream,
        crate::stream::tenant_logs_stream,
        crate::search::search,
        crate::calls::list_calls,
        crate::calls::get_call,
        crate::calls::add_comment,
        crate::calls::list_comments,
        crate::transcript::transcript,
        crate::timeline::call_spans,
        crate::timeline::call_turns,
        crate::export::call_logs_export,
        crate::export::calls_export,
        crate::ops::healthz,
        crate::ops::readyz,
        crate::ops::metrics,
        crate::ops::openapi,
    ),
    components(schemas(crate::logs::LogPageBody, crate::search::SearchBody, crate::search::SearchResponse, crate::search::Aggregations, crate::calls::CallPageBody, crate::calls::CommentBody, crate::calls::CommentListBody, crate::calls::NewComment, crate::transcript::TranscriptBody, crate::transcript::TranscriptLineBody, crate::transcript::Role, callscope_model::Call, callscope_model::LevelCounts, crate::timeline::SpanBody, crate::timeline::SpanListBody, crate::timeline::TurnListBody, crate::timeline::TurnSummaryBody, callscope_model::Turn, callscope_model::LatencySummary, callscope_model::SpanKind, callscope_model::SpanStatus, crate::error::ErrorBody, callscope_model::LogRecord, callscope_model::Level, callscope_model::Category)),
    modifiers(&BearerKey, &AliasParameters, &StandardAnswers),
    tags((name = "logs", description = "Call logs and search"), (name = "calls", description = "Calls, their timelines and their comments"), (name = "operations", description = "Liveness, readiness, metrics and this document; no key, no tenant data"))
)]
pub struct ApiDoc;

struct BearerKey;

impl Modify for BearerKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A tenant's API key"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "console_session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::console::session::COOKIE_NAME,
                "The console's session cookie (set by `POST /signin`). Accepted by every `/v1` route in place of the key; POST, PUT, PATCH and DELETE by cookie also need the session's CSRF token in `X-CSRF-Token` and a same-origin `Origin` or `Referer`, else 403 `FORBIDDEN`.",
            ))),
        );
    }
}

/// `/v1/log/call/{call_id}` answers exactly as `/v1/calls/{call_id}/logs`: it gets that
/// operation's parameters and answers, so the two cannot drift apart.
struct AliasParameters;

impl Modify for AliasParameters {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let Some(main) = openapi
            .paths
            .paths
            .get("/v1/calls/{call_id}/logs")
            .and_then(|p| p.get.clone())
        else {
            return;
        };
        if let Some(alias) = openapi
            .paths
            .paths
            .get_mut("/v1/log/call/{call_id}")
            .and_then(|p| p.get.as_mut())
        {
            alias.parameters.clone_from(&main.parameters);
            alias.responses = main.responses;
        }
    }
}

/// Adds the answers any route can give (see the module's documentation).
struct StandardAnswers;

/// `(status, error codes)` every operation can answer.
const EVERYWHERE: &[(&str, &str)] = &[
    (
        "405",
        "METHOD_NOT_ALLOWED: the route exists, not with this method (see `Allow`)",
    ),
    ("414", "URI_TOO_LONG: the path and query are over 32 KiB"),
    ("500", "INTERNAL_SERVER_ERROR"),
];

impl Modify for StandardAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in &mut openapi.paths.paths {
            let customer = path.starts_with("/v1/");
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                let mut answers: Vec<(&str, &str)> = EVERYWHERE.to_vec();
                if customer {
                    answers.push(("401", "UNAUTHORIZED: no key, or an unknown one"));
                    answers.push((
                        "503",
                        "SERVICE_UNAVAILABLE: storage cannot answer now; retry after `Retry-After`",
                    ));
                    if path.contains("{call_id}") {
                        answers.push(("404", "CALL_NOT_FOUND: the tenant has no such call"));
                    }
                    if has_query(op) {
                        answers.push((
                            "422",
                            "INVALID_QUERY_PARAMETERS or INVALID_PAGINATION_PARAMETERS",
                        ));
                    }
                    if op.request_body.is_some() {
                        answers.push(("400", "INVALID_REQUEST_BODY"));
                    }
                }
                for (status, description) in answers {
                    op.responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| error_answer(description).into());
                }
            }
        }
    }
}

fn has_query(op: &Operation) -> bool {
    op.parameters
        .as_ref()
        .is_some_and(|ps| ps.iter().any(|p| p.parameter_in == ParameterIn::Query))
}

/// An answer in the API's JSON error shape.
fn error_answer(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
}
