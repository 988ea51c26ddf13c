//! `GET /v1/calls/export` (the calls list) and `GET /v1/calls/{call_id}/logs/export`
//! (a call's records) as downloadable files (CSV, JSON Lines, Parquet, XLSX or a PDF
//! report), streamed as they are produced.

use axum::{
    body::Body,
    extract::{RawQuery, State},
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use callscope_store::{ExportFormat, ExportStream, Order};

use crate::{
    ApiError, ApiState,
    auth::Tenant,
    logs::parse_log_filter,
    params::{CallId, Params, parse_order},
};
use callscope_query::CallFilterParams;

/// `format`, `csv` when absent.
pub(crate) fn parse_format(params: &Params) -> Result<ExportFormat, ApiError> {
    params.one("format").map_or(Ok(ExportFormat::Csv), |v| {
        v.parse::<ExportFormat>().map_err(|_| {
            ApiError::InvalidQuery(format!(
                "Invalid `format`: `{v}` is not one of csv, jsonl, parquet, xlsx, pdf"
            ))
        })
    })
}

/// `order`, oldest first (`asc`) when absent: a file reads top to bottom.
pub(crate) fn parse_export_order(params: &Params) -> Result<Order, ApiError> {
    match params.one("order") {
        None => Ok(Order::Asc),
        Some(v) => Ok(parse_order(Some(v), "order")?),
    }
}

/// The record filters given, as `name` and value, for a report's heading.
fn applied_log_filters(params: &Params) -> Vec<(String, String)> {
    ["category", "level", "event", "min_level", "order"]
        .into_iter()
        .filter_map(|name| {
            let values = params.list(name);
            (!values.is_empty()).then(|| (name.to_owned(), values.join(",")))
        })
        .collect()
}

/// `s` reduced to characters that are safe in a file name on every system.
pub(crate) fn filename_part(s: &str) -> String {
    let safe: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    if safe.trim_matches(['.', '_']).is_empty() {
        "unnamed".to_owned()
    } else {
        safe
    }
}

/// The download response: the format's media type, `Content-Disposition: attachment`
/// with `<stem>.<extension>`, and the file as a streamed body.
pub(crate) fn download(stream: ExportStream, stem: &str) -> Response {
    let format = stream.format();
    let filename = format!("{stem}.{}", format.extension());
    let body = futures::stream::unfold(stream, |mut s| async move {
        let chunk = s.next_chunk().await?.map_err(|e| {
            // The status line has gone; ending the body early tells the client the
            // file is incomplete.
            tracing::error!(error = %e, "Export failed part-way; the download is cut short.");
            std::io::Error::other("export failed")
        });
        Some((chunk.map(bytes::Bytes::from), s))
    });
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            ),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

/// Download every record of a call that matches the filters, as a file.
///
/// Unlike the list, an export has no pages: it holds every matching record, oldest
/// first unless `order=desc`. CSV is UTF-8 with a byte-order mark, a header row and
/// RFC 3339 UTC times; JSON Lines has one record per line in the list's shape; Parquet
/// has UTC timestamps and `data` as JSON text; XLSX has typed cells (times as
/// date-times in UTC); PDF is a printable report that starts with the call's fields
/// and the filters, then the records as in the CSV. The body is streamed: large
/// exports start at once.
#[utoipa::path(
    get,
    path = "/v1/calls/{call_id}/logs/export",
    tag = "logs",
    params(
        ("call_id" = String, Path, description = "The call"),
        ("format" = Option<String>, Query, description = "`csv` (default), `jsonl`, `parquet`, `xlsx` or `pdf`"),
        ("order" = Option<String>, Query, description = "`asc` (default) or `desc` by timestamp, ties by id"),
        ("category" = Option<String>, Query, description = "One category or a comma-separated list"),
        ("level" = Option<String>, Query, description = "One level or a comma-separated list"),
        ("event" = Option<String>, Query, description = "One event code or a comma-separated list"),
        ("min_level" = Option<String>, Query, description = "At least this level"),
    ),
    responses(
        (status = 200, description = "The file, as an attachment named `call-<call_id>-logs.<format>`",
            content(
                (String = "text/csv"),
                (String = "application/jsonl"),
                (Vec<u8> = "application/vnd.apache.parquet"),
                (Vec<u8> = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
                (Vec<u8> = "application/pdf"),
            ),
            headers(("Content-Disposition" = String, description = "`attachment; filename=\"call-<call_id>-logs.<format>\"`"))
        ),
        (status = 401, body = crate::error::ErrorBody, description = "UNAUTHORIZED"),
        (status = 404, body = crate::error::ErrorBody, description = "CALL_NOT_FOUND"),
        (status = 422, body = crate::error::ErrorBody, description = "INVALID_QUERY_PARAMETERS: an unknown format, category, level or order"),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn call_logs_export(
    State(state): State<ApiState>,
    tenant: Tenant,
    CallId(call_id): CallId,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params = Params::parse(raw.as_deref())?;
    let format = parse_format(&params)?;
    let order = parse_export_order(&params)?;
    let filter = parse_log_filter(&params)?;
    let applied = applied_log_filters(&params);
    let stream = state
        .store
        .export_call_logs(&tenant.0, &call_id, filter, order, format, &applied)
        .await?
        .ok_or(ApiError::CallNotFound)?;
    Ok(download(
        stream,
        &format!("call-{}-logs", filename_part(&call_id)),
    ))
}

/// Download the calls list as a file: every call the filters select, newest first.
///
/// The filters are the list's; there are no pages. Columns follow the call's JSON
/// shape, with `from`/`to` for the numbers; in CSV, Parquet, XLSX and PDF the level
/// counts are the columns `debug_count` … `critical_count` (numbers in XLSX), in JSON
/// Lines the `level_counts` object. Times as in the log export. The PDF report names
/// the tenant, the filters given and the generation time above the table.
#[utoipa::path(
    get,
    path = "/v1/calls/export",
    tag = "calls",
    params(
        ("format" = Option<String>, Query, description = "`csv` (default), `jsonl`, `parquet`, `xlsx` or `pdf`"),
        CallFilterParams,
    ),
    responses(
        (status = 200, description = "The file, as an attachment named `calls-<UTC time>.<format>`",
            content(
                (String = "text/csv"),
                (String = "application/jsonl"),
                (Vec<u8> = "application/vnd.apache.parquet"),
                (Vec<u8> = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
                (Vec<u8> = "application/pdf"),
            ),
            headers(("Content-Disposition" = String, description = "`attachment; filename=\"calls-20261121T100000Z.<format>\"`"))
        ),
        (status = 401, body = crate::error::ErrorBody, description = "UNAUTHORIZED"),
        (status = 422, body = crate::error::ErrorBody, description = "INVALID_QUERY_PARAMETERS: an unknown format or a bad filter, the message naming the parameter"),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn calls_export(
    State(state): State<ApiState>,
    tenant: Tenant,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params = Params::parse(raw.as_deref())?;
    let format = parse_format(&params)?;
    let given = params.deserialize::<CallFilterParams>()?;
    let filter = given.parse()?;
    let stream = state
        .store
        .export_calls(&tenant.0, &filter, format, &given.applied())
        .await?;
    let now = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    Ok(download(stream, &format!("calls-{now}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(q: &str) -> Params {
        Params::parse(Some(q)).unwrap()
    }

    #[test]
    fn format_defaults_to_csv_and_refuses_unknown_names() {
        assert_eq!(parse_format(&params("")).unwrap(), ExportFormat::Csv);
        assert_eq!(
            parse_format(&params("format=XLSX")).unwrap(),
            ExportFormat::Xlsx
        );
        for bad in ["format=xls", "format=", "format=csv;rm"] {
            assert!(
                matches!(parse_format(&params(bad)), Err(ApiError::InvalidQuery(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn exports_are_oldest_first_by_default() {
        assert_eq!(parse_export_order(&params("")).unwrap(), Order::Asc);
        assert_eq!(
            parse_export_order(&params("order=desc")).unwrap(),
            Order::Desc
        );
        assert!(parse_export_order(&params("order=up")).is_err());
    }

    #[test]
    fn file_names_are_safe() {
        assert_eq!(filename_part("call-1.a_B"), "call-1.a_B");
        assert_eq!(filename_part("a\"b/c\\d\r\ne;f"), "a_b_c_d__e_f");
        assert_eq!(filename_part("é"), "unnamed");
        assert_eq!(filename_part(".."), "unnamed");
        assert_eq!(filename_part(&"x".repeat(500)).len(), 100);
    }
}
