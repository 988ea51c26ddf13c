//! The calls list's filters (`GET /v1/calls?status=…`, the calls export and `callscope
//! export`), declared once in [`CallFilterParams`], and a new comment's body.

use callscope_model::Timestamp;
use serde::{Deserialize, Serialize};

use crate::{
    CallFilter, CallSearch, DurationRange, Params, QueryError,
    params::{last, list},
    search::parse_json,
};

/// The calls list's filters as the caller spells them: the query parameters of
/// `GET /v1/calls` and `GET /v1/calls/export`, and the call filters of `callscope
/// export`. Every field is raw text; [`CallFilterParams::parse`] validates them into a
/// [`CallFilter`], so the API and the CLI refuse the same values with the same message.
///
/// List parameters take one value or a comma-separated list, and repeats add up
/// (`status=failed&status=missed` = `status=failed,missed`); for the others the last
/// value given wins.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[cfg_attr(
    feature = "cli",
    command(next_help_heading = "Call filters (without --call)")
)]
#[serde(default)]
pub struct CallFilterParams {
    /// Calls with any of these statuses: `in_progress`, `completed`, `failed`,
    /// `canceled` or a terminal event's own status such as `missed` (comma-separated).
    #[serde(deserialize_with = "list")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<String>))]
    #[cfg_attr(feature = "cli", arg(long, value_delimiter = ','))]
    pub status: Vec<String>,
    /// Calls in any of these directions: `inbound`, `outbound` (comma-separated).
    #[serde(deserialize_with = "list")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<String>))]
    #[cfg_attr(feature = "cli", arg(long, value_delimiter = ','))]
    pub direction: Vec<String>,
    /// Calls whose caller's number contains these digits; `+`, spaces, dashes, dots
    /// and parentheses are ignored on both sides (`555-01` finds `+1 (415) 555-0100`).
    #[serde(deserialize_with = "last")]
    #[cfg_attr(feature = "cli", arg(long))]
    pub from_number: Option<String>,
    /// Calls whose called number contains these digits, as for `from_number`.
    #[serde(deserialize_with = "last")]
    #[cfg_attr(feature = "cli", arg(long))]
    pub to_number: Option<String>,
    /// Calls handled by any of these agents (comma-separated).
    #[serde(deserialize_with = "list")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<String>))]
    #[cfg_attr(feature = "cli", arg(long, value_delimiter = ','))]
    pub agent_id: Vec<String>,
    /// Calls in any of these campaigns (comma-separated).
    #[serde(deserialize_with = "list")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<String>))]
    #[cfg_attr(feature = "cli", arg(long, value_delimiter = ','))]
    pub campaign_id: Vec<String>,
    /// Calls with any of these hang-up reasons (comma-separated).
    #[serde(deserialize_with = "list")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<String>))]
    #[cfg_attr(feature = "cli", arg(long, value_delimiter = ','))]
    pub hangup_reason: Vec<String>,
    /// Calls with any of these hang-up sources (comma-separated).
    #[serde(deserialize_with = "list")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<String>))]
    #[cfg_attr(feature = "cli", arg(long, value_delimiter = ','))]
    pub hangup_source: Vec<String>,
    /// Calls at least this long, in milliseconds (calls without a duration don't match).
    #[serde(deserialize_with = "last")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<u64>))]
    #[cfg_attr(feature = "cli", arg(long, value_name = "MS"))]
    pub min_duration_ms: Option<String>,
    /// Calls at most this long, in milliseconds.
    #[serde(deserialize_with = "last")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<u64>))]
    #[cfg_attr(feature = "cli", arg(long, value_name = "MS"))]
    pub max_duration_ms: Option<String>,
    /// Calls that rang at least this long before they were answered, in milliseconds.
    #[serde(deserialize_with = "last")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<u64>))]
    #[cfg_attr(feature = "cli", arg(long, value_name = "MS"))]
    pub min_ringing_duration_ms: Option<String>,
    /// Calls that rang at most this long, in milliseconds.
    #[serde(deserialize_with = "last")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<u64>))]
    #[cfg_attr(feature = "cli", arg(long, value_name = "MS"))]
    pub max_ringing_duration_ms: Option<String>,
    /// Calls where the voice bot spent at least this long, in milliseconds.
    #[serde(deserialize_with = "last")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<u64>))]
    #[cfg_attr(feature = "cli", arg(long, value_name = "MS"))]
    pub min_bot_duration_ms: Option<String>,
    /// Calls where the voice bot spent at most this long, in milliseconds.
    #[serde(deserialize_with = "last")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<u64>))]
    #[cfg_attr(feature = "cli", arg(long, value_name = "MS"))]
    pub max_bot_duration_ms: Option<String>,
    /// Calls billed for at least this long, in milliseconds.
    #[serde(deserialize_with = "last")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<u64>))]
    #[cfg_attr(feature = "cli", arg(long, value_name = "MS"))]
    pub min_billed_duration_ms: Option<String>,
    /// Calls billed for at most this long, in milliseconds.
    #[serde(deserialize_with = "last")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<u64>))]
    #[cfg_attr(feature = "cli", arg(long, value_name = "MS"))]
    pub max_billed_duration_ms: Option<String>,
    /// Calls started at or after this RFC 3339 time.
    #[serde(deserialize_with = "last")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<String>, format = DateTime))]
    #[cfg_attr(feature = "cli", arg(long, value_name = "TIME"))]
    pub started_after: Option<String>,
    /// Calls started before this RFC 3339 time.
    #[serde(deserialize_with = "last")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<String>, format = DateTime))]
    #[cfg_attr(feature = "cli", arg(long, value_name = "TIME"))]
    pub started_before: Option<String>,
    /// Calls whose id starts with this text, or, when it is spelled like a phone
    /// number, whose caller's or called number contains its digits.
    #[serde(deserialize_with = "last")]
    #[cfg_attr(feature = "cli", arg(long, value_name = "TEXT"))]
    pub q: Option<String>,
}

/// The directions a call can have.
const DIRECTIONS: [&str; 2] = ["inbound", "outbound"];

/// The longest `q`, `from_number` or `to_number`, in characters.
const MAX_SEARCH_CHARS: usize = 1_000;

/// The characters a phone number's spelling may have besides its digits, and that
/// number matching ignores.
fn is_number_formatting(c: char) -> bool {
    matches!(c, '+' | '-' | '.' | '(' | ')') || c.is_whitespace()
}

/// The digits of a phone number as a person may write it (`+1 (415) 555-0100` →
/// `14155550100`); `None` when `s` has no digit or has anything other than digits,
/// `+`, spaces, dashes, dots and parentheses.
///
/// This is the filter side of number matching; the store applies the same reduction
/// to the stored numbers (every character that is not a digit dropped).
#[must_use]
pub fn number_digits(s: &str) -> Option<String> {
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else if !is_number_formatting(c) {
            return None;
        }
    }
    (!digits.is_empty()).then_some(digits)
}

fn timestamp(v: Option<&String>, name: &str) -> Result<Option<Timestamp>, QueryError> {
    v.map(|v| {
        Timestamp::parse_rfc3339(v.trim()).map_err(|_| {
            QueryError::Query(format!(
                "`{name}` must be an RFC 3339 date-time, e.g. 2026-11-21T10:00:00Z"
            ))
        })
    })
    .transpose()
}

fn millis(v: Option<&String>, name: &str) -> Result<Option<i64>, QueryError> {
    v.map(|v| {
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

fn range(
    min: Option<&String>,
    max: Option<&String>,
    min_name: &str,
    max_name: &str,
) -> Result<DurationRange, QueryError> {
    Ok(DurationRange {
        min_ms: millis(min, min_name)?,
        max_ms: millis(max, max_name)?,
    })
}

/// A number filter's digits; a value that is not a phone number's spelling is refused.
fn number(v: Option<&String>, name: &str) -> Result<Option<String>, QueryError> {
    v.map(|v| {
        if v.chars().count() > MAX_SEARCH_CHARS {
            return Err(QueryError::Query(format!(
                "`{name}` must be at most {MAX_SEARCH_CHARS} characters"
            )));
        }
        number_digits(v).ok_or_else(|| {
            QueryError::Query(format!(
                "`{name}` must be digits of a phone number (`+`, spaces, dashes, dots and \
                 parentheses are ignored)"
            ))
        })
    })
    .transpose()
}

fn search(v: Option<&String>) -> Result<Option<CallSearch>, QueryError> {
    let Some(q) = v.map(|v| v.trim()).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if q.chars().count() > MAX_SEARCH_CHARS {
        return Err(QueryError::Query(format!(
            "`q` must be at most {MAX_SEARCH_CHARS} characters"
        )));
    }
    Ok(Some(CallSearch {
        call_id_prefix: q.to_owned(),
        number_digits: number_digits(q),
    }))
}

impl CallFilterParams {
    /// Validates the filters.
    ///
    /// # Errors
    /// [`QueryError::Query`] naming the parameter: an unknown direction, a negative or
    /// non-integer duration, a malformed time, a number filter that is not a phone
    /// number's digits, an over-long `q`.
    pub fn parse(&self) -> Result<CallFilter, QueryError> {
        let directions = self
            .direction
            .iter()
            .map(|d| {
                let d = d.trim().to_ascii_lowercase();
                if DIRECTIONS.contains(&d.as_str()) {
                    Ok(d)
                } else {
                    Err(QueryError::Query(
                        "`direction` must be `inbound` or `outbound`".into(),
                    ))
                }
            })
            .collect::<Result<_, _>>()?;
        let trimmed = |v: &[String]| v.iter().map(|s| s.trim().to_owned()).collect::<Vec<_>>();
        Ok(CallFilter {
            statuses: self
                .status
                .iter()
                .map(|s| s.trim().to_ascii_lowercase())
                .collect(),
            directions,
            from_number: number(self.from_number.as_ref(), "from_number")?,
            to_number: number(self.to_number.as_ref(), "to_number")?,
            agent_ids: trimmed(&self.agent_id),
            campaign_ids: trimmed(&self.campaign_id),
            hangup_reasons: trimmed(&self.hangup_reason),
            hangup_sources: trimmed(&self.hangup_source),
            duration: range(
                self.min_duration_ms.as_ref(),
                self.max_duration_ms.as_ref(),
                "min_duration_ms",
                "max_duration_ms",
            )?,
            ringing_duration: range(
                self.min_ringing_duration_ms.as_ref(),
                self.max_ringing_duration_ms.as_ref(),
                "min_ringing_duration_ms",
                "max_ringing_duration_ms",
            )?,
            bot_duration: range(
                self.min_bot_duration_ms.as_ref(),
                self.max_bot_duration_ms.as_ref(),
                "min_bot_duration_ms",
                "max_bot_duration_ms",
            )?,
            billed_duration: range(
                self.min_billed_duration_ms.as_ref(),
                self.max_billed_duration_ms.as_ref(),
                "min_billed_duration_ms",
                "max_billed_duration_ms",
            )?,
            started_after: timestamp(self.started_after.as_ref(), "started_after")?,
            started_before: timestamp(self.started_before.as_ref(), "started_before")?,
            search: search(self.q.as_ref())?,
        })
    }
}

impl CallFilterParams {
    /// The filters given, as `name` and value (lists comma-separated), by name: what a
    /// report prints as the filters it applies.
    #[must_use]
    pub fn applied(&self) -> Vec<(String, String)> {
        let Ok(serde_json::Value::Object(map)) = serde_json::to_value(self) else {
            return Vec::new();
        };
        let mut applied: Vec<(String, String)> = map
            .into_iter()
            .filter_map(|(name, v)| {
                let value = match v {
                    serde_json::Value::String(s) => s,
                    serde_json::Value::Array(items) => items
                        .iter()
                        .filter_map(serde_json::Value::as_str)
                        .collect::<Vec<_>>()
                        .join(","),
                    _ => String::new(),
                };
                (!value.trim().is_empty()).then_some((name, value))
            })
            .collect();
        applied.sort();
        applied
    }
}

/// Validates the calls list's filters from a query string (the list and the calls
/// export).
///
/// # Errors
/// [`QueryError::Query`] naming the parameter.
pub fn parse_call_filter(params: &Params) -> Result<CallFilter, QueryError> {
    params.deserialize::<CallFilterParams>()?.parse()
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
        assert_eq!(f.duration.min_ms, Some(5));
        assert_eq!(f.agent_ids, ["a", "b"]);
        assert!(f.started_after.is_some());
        for bad in [
            "direction=sideways",
            "min_duration_ms=-1",
            "max_duration_ms=lots",
            "min_ringing_duration_ms=1.5",
            "max_ringing_duration_ms=-2",
            "min_bot_duration_ms=x",
            "max_bot_duration_ms=",
            "min_billed_duration_ms=1e3",
            "max_billed_duration_ms=99999999999999999999",
            "started_before=yesterday",
            "from_number=abc",
            "from_number=+()",
            "to_number=555;1",
        ] {
            let name = bad.split('=').next().unwrap();
            match filter(bad) {
                Err(QueryError::Query(m)) => {
                    assert!(m.contains(&format!("`{name}`")), "{bad}: {m}");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn new_duration_filters_and_numbers() {
        let f = filter(
            "min_ringing_duration_ms=1&max_ringing_duration_ms=2&min_bot_duration_ms=3\
             &max_bot_duration_ms=4&min_billed_duration_ms=5&max_billed_duration_ms=6\
             &from_number=%2B1%20(415)%20555-0100&to_number=555.01",
        )
        .unwrap();
        assert_eq!(
            (f.ringing_duration, f.bot_duration, f.billed_duration),
            (
                DurationRange {
                    min_ms: Some(1),
                    max_ms: Some(2)
                },
                DurationRange {
                    min_ms: Some(3),
                    max_ms: Some(4)
                },
                DurationRange {
                    min_ms: Some(5),
                    max_ms: Some(6)
                },
            )
        );
        assert_eq!(f.from_number.as_deref(), Some("14155550100"));
        assert_eq!(f.to_number.as_deref(), Some("55501"));
        // The last of repeated single values wins, as before.
        assert_eq!(
            filter("from_number=1&from_number=2")
                .unwrap()
                .from_number
                .as_deref(),
            Some("2")
        );
    }

    #[test]
    fn q_is_an_id_prefix_and_maybe_a_number() {
        let f = filter("q=%20c123%20").unwrap();
        assert_eq!(
            f.search,
            Some(CallSearch {
                call_id_prefix: "c123".into(),
                number_digits: None
            })
        );
        let f = filter("q=(415)%20555").unwrap();
        assert_eq!(
            f.search,
            Some(CallSearch {
                call_id_prefix: "(415) 555".into(),
                number_digits: Some("415555".into())
            })
        );
        assert_eq!(filter("q=%20").unwrap().search, None);
        assert!(matches!(
            filter(&format!("q={}", "x".repeat(1001))),
            Err(QueryError::Query(_))
        ));
    }

    #[test]
    fn applied_filters_name_what_was_given() {
        let p = Params::parse(Some(
            "status=failed&status=missed&q=c1&min_bot_duration_ms=5&x=1&agent_id=",
        ))
        .unwrap()
        .deserialize::<CallFilterParams>()
        .unwrap();
        assert_eq!(
            p.applied(),
            [
                ("min_bot_duration_ms".to_owned(), "5".to_owned()),
                ("q".to_owned(), "c1".to_owned()),
                ("status".to_owned(), "failed,missed".to_owned()),
            ]
        );
        assert!(CallFilterParams::default().applied().is_empty());
    }

    #[test]
    fn number_digits_ignore_formatting_only() {
        assert_eq!(
            number_digits("+1 (415) 555-0100").as_deref(),
            Some("14155550100")
        );
        assert_eq!(number_digits("555.01").as_deref(), Some("55501"));
        assert_eq!(number_digits("0100").as_deref(), Some("0100"));
        assert_eq!(number_digits("+ - . ( )"), None);
        assert_eq!(number_digits(""), None);
        assert_eq!(number_digits("c123"), None);
        assert_eq!(number_digits("١٢٣"), None, "only ASCII digits");
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
