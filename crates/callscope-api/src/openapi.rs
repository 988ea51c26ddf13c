//! The OpenAPI 3.1 document, generated from the handlers' types.

use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
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
        crate::export::call_logs_export,
        crate::export::calls_export,
    ),
    components(schemas(crate::logs::LogPageBody, crate::search::SearchBody, crate::search::SearchResponse, crate::search::Aggregations, crate::calls::CallPageBody, crate::calls::CommentBody, crate::calls::CommentListBody, crate::calls::NewComment, crate::transcript::TranscriptBody, crate::transcript::TranscriptLineBody, crate::transcript::Role, callscope_model::Call, callscope_model::LevelCounts, crate::error::ErrorBody, callscope_model::LogRecord, callscope_model::Level, callscope_model::Category)),
    modifiers(&BearerKey),
    tags((name = "logs", description = "Call logs and search"), (name = "calls", description = "Calls and their comments"))
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
    }
}
