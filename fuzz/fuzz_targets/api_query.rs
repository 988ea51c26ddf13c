//! The customer API's query parsing: query strings (per-call logs, calls list) and JSON
//! bodies (search, comments). Parsing never panics, and whatever it accepts is within
//! the contract's bounds.
#![no_main]

use callscope_query::{
    MAX_LIMIT, PageAt, Params, SearchBody, parse_call_filter, parse_comment, parse_json,
    parse_log_query, parse_search,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(params) = Params::parse(Some(text))
    {
        if let Ok(q) = parse_log_query(&params) {
            assert!(q.limit >= 1 && u64::from(q.limit) <= MAX_LIMIT);
            if let PageAt::Page(p) = q.at {
                assert!(p >= 1);
            }
        }
        if let Ok(f) = parse_call_filter(&params) {
            for range in [f.duration, f.ringing_duration, f.bot_duration, f.billed_duration] {
                assert!(range.min_ms.is_none_or(|m| m >= 0));
                assert!(range.max_ms.is_none_or(|m| m >= 0));
            }
            for digits in [&f.from_number, &f.to_number].into_iter().flatten() {
                assert!(!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()));
            }
            assert!(f.directions.iter().all(|d| d == "inbound" || d == "outbound"));
        }
    }
    if let Ok(body) = parse_json::<SearchBody>(data)
        && let Ok(q) = parse_search(body)
    {
        assert!(q.size <= 100 && q.page <= 100_000);
        if let (Some(from), Some(to)) = (q.filter.from, q.filter.to) {
            assert!(from <= to);
        }
        assert!(q.filter.text.as_ref().is_none_or(|t| !t.trim().is_empty()));
    }
    if let Ok(c) = parse_comment(data) {
        assert!(!c.author.trim().is_empty() && c.author.chars().count() <= 200);
        assert!(!c.text.trim().is_empty() && c.text.chars().count() <= 10_000);
    }
});
