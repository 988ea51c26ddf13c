//! The live streams' query: `GET /v1/calls/{call_id}/logs/stream?level=…` and
//! `GET /v1/logs/stream?call_ids=…`, with the resume point from `Last-Event-ID` or
//! `after`.

use uuid::Uuid;

use crate::{Params, QueryError, StreamFilter, StreamQuery, parse_log_filter};

/// Validates a live stream's query string. `last_event_id` is the request's
/// `Last-Event-ID` header, which a reconnecting `EventSource` sends with the URL it
/// first opened: the header wins over `after`, since it is the newer position.
/// `tenant_wide` streams also take `call_ids` and `agent_ids`; the per-call stream
/// ignores them, as every route ignores parameters it does not know.
///
/// # Errors
/// [`QueryError::Pagination`] for a resume point that is not a log id;
/// [`QueryError::Query`] for an unknown category or level, naming the parameter.
pub fn parse_stream_query(
    params: &Params,
    last_event_id: Option<&str>,
    tenant_wide: bool,
) -> Result<StreamQuery, QueryError> {
    let (name, raw) = match last_event_id.map(str::trim).filter(|s| !s.is_empty()) {
        Some(v) => ("Last-Event-ID", Some(v)),
        None => ("after", params.one("after").map(str::trim)),
    };
    let after = raw
        .map(|v| {
            Uuid::parse_str(v).map_err(|_| {
                QueryError::Pagination(format!("`{name}` must be the id of a streamed record"))
            })
        })
        .transpose()?;
    let owned = |name: &str| -> Vec<String> {
        if tenant_wide {
            params.list(name).into_iter().map(str::to_owned).collect()
        } else {
            Vec::new()
        }
    };
    Ok(StreamQuery {
        filter: StreamFilter {
            log: parse_log_filter(params)?,
            call_ids: owned("call_ids"),
            agent_ids: owned("agent_ids"),
        },
        after,
    })
}

#[cfg(test)]
mod tests {
    use callscope_model::Level;

    use super::*;

    fn parse(q: &str, header: Option<&str>, wide: bool) -> Result<StreamQuery, QueryError> {
        parse_stream_query(&Params::parse(Some(q)).unwrap(), header, wide)
    }

    #[test]
    fn the_header_wins_over_after() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        assert_eq!(
            parse(&format!("after={a}"), None, false).unwrap().after,
            Some(a)
        );
        assert_eq!(
            parse(&format!("after={a}"), Some(&b.to_string()), false)
                .unwrap()
                .after,
            Some(b)
        );
        assert_eq!(parse("", Some("  "), false).unwrap().after, None);
        assert!(matches!(
            parse("after=nope", None, false),
            Err(QueryError::Pagination(_))
        ));
        assert!(matches!(
            parse("", Some("nope"), false),
            Err(QueryError::Pagination(m)) if m.contains("Last-Event-ID")
        ));
    }

    #[test]
    fn filters_as_the_log_list_and_calls_only_tenant_wide() {
        let q = parse("min_level=warning&call_ids=a,b&agent_ids=x", None, true).unwrap();
        assert_eq!(q.filter.log.min_level, Some(Level::Warning));
        assert_eq!(q.filter.call_ids, ["a", "b"]);
        assert_eq!(q.filter.agent_ids, ["x"]);
        let q = parse("call_ids=a&agent_ids=x", None, false).unwrap();
        assert!(q.filter.call_ids.is_empty() && q.filter.agent_ids.is_empty());
        assert!(matches!(
            parse("level=LOUD", None, true),
            Err(QueryError::Query(_))
        ));
    }
}
