//! The per-call log query: `GET /v1/calls/{call_id}/logs?after=…&limit=…&level=…`.

use callscope_model::{Category, Level};
use uuid::Uuid;

use crate::{LogFilter, LogQuery, PageAt, Params, QueryError, parse_order};

/// The largest `limit`.
pub const MAX_LIMIT: u64 = 1000;
/// The `limit` when none is given.
pub const DEFAULT_LIMIT: u64 = 100;

fn cursor(params: &Params, name: &str) -> Result<Option<Uuid>, QueryError> {
    params
        .one(name)
        .map(|v| {
            Uuid::parse_str(v.trim()).map_err(|_| {
                QueryError::Pagination(format!("`{name}` must be a log id from a previous page"))
            })
        })
        .transpose()
}

/// Validates a per-call log query string.
///
/// # Errors
/// [`QueryError::Pagination`] or [`QueryError::Query`] naming the parameter.
pub fn parse_log_query(params: &Params) -> Result<LogQuery, QueryError> {
    let after = cursor(params, "after")?;
    let before = cursor(params, "before")?;
    let page = params.int_in("page", 1..=u64::from(u32::MAX))?;
    let limit = params
        .int_in("limit", 1..=MAX_LIMIT)?
        .unwrap_or(DEFAULT_LIMIT);
    let at = match (after, before, page) {
        (Some(_), Some(_), _) => {
            return Err(QueryError::Pagination(
                "Use either `after` or `before`, not both".into(),
            ));
        }
        (Some(_), None, Some(_)) | (None, Some(_), Some(_)) => {
            return Err(QueryError::Pagination(
                "`page` cannot be combined with a cursor".into(),
            ));
        }
        (Some(id), None, None) => PageAt::After(id),
        (None, Some(id), None) => PageAt::Before(id),
        (None, None, page) => PageAt::Page(page.unwrap_or(1)),
    };
    Ok(LogQuery {
        at,
        limit: u32::try_from(limit).unwrap_or(u32::MAX),
        order: parse_order(params.one("order"), "order")?,
        filter: parse_log_filter(params)?,
    })
}

/// Validates the filters of a per-call log query (`category`, `level`, `event`,
/// `min_level`); the log export takes them too.
///
/// # Errors
/// [`QueryError::Query`] naming the parameter.
pub fn parse_log_filter(params: &Params) -> Result<LogFilter, QueryError> {
    let min_level = params
        .one("min_level")
        .map(|v| {
            v.trim()
                .parse::<Level>()
                .map_err(|e| QueryError::Query(format!("Invalid `min_level`: {e}")))
        })
        .transpose()?;
    Ok(LogFilter {
        categories: params.parsed_list::<Category>("category")?,
        levels: params.parsed_list::<Level>("level")?,
        events: params
            .list("event")
            .into_iter()
            .map(str::to_owned)
            .collect(),
        min_level,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Order;

    fn parse(q: &str) -> Result<LogQuery, QueryError> {
        parse_log_query(&Params::parse(Some(q)).unwrap())
    }

    #[test]
    fn defaults() {
        let q = parse("").unwrap();
        assert_eq!(
            (q.at, q.limit, q.order),
            (PageAt::Page(1), 100, Order::Desc)
        );
    }

    #[test]
    fn pagination_errors() {
        let id = Uuid::nil();
        for bad in [
            format!("after={id}&before={id}"),
            format!("after={id}&page=2"),
            format!("before={id}&page=1"),
            "limit=0".into(),
            "limit=1001".into(),
            "limit=ten".into(),
            "limit=-1".into(),
            "page=0".into(),
            "after=not-a-uuid".into(),
        ] {
            assert!(
                matches!(parse(&bad), Err(QueryError::Pagination(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn query_errors() {
        for bad in [
            "order=sideways",
            "category=BILLING",
            "level=LOUD",
            "min_level=7",
            "level=INFO,NOPE",
        ] {
            assert!(matches!(parse(bad), Err(QueryError::Query(_))), "{bad}");
        }
    }

    #[test]
    fn filters_parse() {
        let q = parse("category=agent,USER&level=ERROR&level=critical&event=A,B&min_level=warning&order=ASC&limit=7").unwrap();
        assert_eq!(q.filter.categories, [Category::Agent, Category::User]);
        assert_eq!(q.filter.levels, [Level::Error, Level::Critical]);
        assert_eq!(q.filter.events, ["A", "B"]);
        assert_eq!(q.filter.min_level, Some(Level::Warning));
        assert_eq!((q.order, q.limit), (Order::Asc, 7));
    }
}
