//! The calls list's filters (`GET /v1/calls?status=…`) and a new comment's body.

use callscope_model::Timestamp;
use serde::Deserialize;

use crate::{CallFilter, Params, QueryError, search::parse_json};

fn timestamp(params: &Params, name: &str) -> Result<Option<Timestamp>, QueryError> {
    params
        .one(name)
        .map(|v| {
            Timestamp::parse_rfc3339(v.trim()).map_err(|_| {
                QueryError::Query(format!(
                    "`{name}` must be an RFC 3339 date-time, e.g. 2026-11-21T10:00:00Z"
                ))
            })
        })
        .transpose()
}

fn millis(params: &Params, name: &str) -> Result<Option<i64>, QueryError> {
    params
        .one(name)
        .map(|v| {
            v.trim()
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| {
                    QueryError::Query(format!("`{name}` must be a whole number of milliseconds"))
                })
        })
        .transpose()
}

fn strings(params: &Params, name: &str) -> Vec<String> {
    params.list(name).into_iter().map(str::to_owned).collect()
}

/// The directions a call can have.
const DIRECTIONS: [&str; 2] = ["inbound", "outbound"];

/// Validates the calls list's filters (shared with the calls export).
///
/// # Errors
/// [`QueryError::Query`] naming the parameter.
pub fn parse_call_filter(params: &Params) -> Result<CallFilter, QueryError> {
    let directions = strings(params, "direction")
        .into_iter()
        .map(|d| {
            let d = d.to_ascii_lowercase();
            if DIRECTIONS.contains(&d.as_str()) {
                Ok(d)
            } else {
                Err(QueryError::Query(
                    "`direction` must be `inbound` or `outbound`".into(),
                ))
            }
        })
        .collect::<Result<_, _>>()?;
    let filter = CallFilter {
        statuses: strings(params, "status")
            .into_iter()
            .map(|s| s.to_ascii_lowercase())
            .collect(),
        directions,
        from_number: params.one("from_number").map(|s| s.trim().to_owned()),
        to_number: params.one("to_number").map(|s| s.trim().to_owned()),
        agent_ids: strings(params, "agent_id"),
        campaign_ids: strings(params, "campaign_id"),
        hangup_reasons: strings(params, "hangup_reason"),
        hangup_sources: strings(params, "hangup_source"),
        min_duration_ms: millis(params, "min_duration_ms")?,
        max_duration_ms: millis(params, "max_duration_ms")?,
        started_after: timestamp(params, "started_after")?,
        started_before: timestamp(params, "started_before")?,
    };
    Ok(filter)
}

/// A new comment.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewComment {
    /// Who writes it (1–200 characters).
    pub author: String,
    /// What it says (1–10,000 characters).
    pub text: String,
}

/// The longest comment author, in characters.
const MAX_AUTHOR: usize = 200;
/// The longest comment text, in characters.
const MAX_TEXT: usize = 10_000;

/// Validates a new comment's body: `author` 1–200 and `text` 1–10,000 characters, not
/// blank; the author is trimmed.
///
/// # Errors
/// [`QueryError::Body`] naming the field.
pub fn parse_comment(body: &[u8]) -> Result<NewComment, QueryError> {
    let c: NewComment = parse_json(body)?;
    let check = |name: &str, v: &str, max: usize| {
        if v.trim().is_empty() || v.chars().count() > max {
            Err(QueryError::Body(format!(
                "`{name}` must be a non-blank string of at most {max} characters"
            )))
        } else {
            Ok(())
        }
    };
    check("author", &c.author, MAX_AUTHOR)?;
    check("text", &c.text, MAX_TEXT)?;
    Ok(NewComment {
        author: c.author.trim().to_owned(),
        text: c.text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(q: &str) -> Result<CallFilter, QueryError> {
        parse_call_filter(&Params::parse(Some(q)).unwrap())
    }

    #[test]
    fn call_filters_parse_and_reject() {
        let f = filter("status=Missed,failed&direction=INBOUND&min_duration_ms=5&started_after=2026-11-21T10:00:00Z&agent_id=a,b").unwrap();
        assert_eq!(f.statuses, ["missed", "failed"]);
        assert_eq!(f.directions, ["inbound"]);
        assert_eq!(f.min_duration_ms, Some(5));
        assert_eq!(f.agent_ids, ["a", "b"]);
        assert!(f.started_after.is_some());
        for bad in [
            "direction=sideways",
            "min_duration_ms=-1",
            "max_duration_ms=lots",
            "started_before=yesterday",
        ] {
            assert!(matches!(filter(bad), Err(QueryError::Query(_))), "{bad}");
        }
    }

    #[test]
    fn comments_need_an_author_and_text() {
        assert!(parse_comment(br#"{"author": "ann", "text": "ok"}"#).is_ok());
        for bad in [
            &br#"{"author": "ann"}"#[..],
            br#"{"author": " ", "text": "x"}"#,
            br#"{"author": "a", "text": ""}"#,
            br#"{"author": "a", "text": "x", "extra": 1}"#,
            br#"{"author": 5, "text": "x"}"#,
            b"not json",
        ] {
            assert!(
                matches!(parse_comment(bad), Err(QueryError::Body(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = format!(
            r#"{{"author": "a", "text": "{}"}}"#,
            "x".repeat(MAX_TEXT + 1)
        );
        assert!(parse_comment(long.as_bytes()).is_err());
    }
}
