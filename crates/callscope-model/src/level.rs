//! Log levels and their mapping to OpenTelemetry severity numbers.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

use crate::ParseError;

/// How severe a call event is. Ordered: `Debug < Info < Warning < Error < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Level {
    /// Severity numbers 1–8 (OpenTelemetry TRACE and DEBUG).
    Debug,
    /// Severity numbers 9–12.
    Info,
    /// Severity numbers 13–16 (OpenTelemetry WARN).
    Warning,
    /// Severity numbers 17–20.
    Error,
    /// Severity numbers 21–24 (OpenTelemetry FATAL).
    Critical,
}

impl Level {
    /// Every level, lowest first.
    pub const ALL: [Level; 5] = [
        Level::Debug,
        Level::Info,
        Level::Warning,
        Level::Error,
        Level::Critical,
    ];
    const NAMES: &'static [&'static str] = &["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"];

    /// The level an OpenTelemetry severity number (1–24) falls in; `None` for 0
    /// (unspecified) and anything out of range.
    #[must_use]
    pub fn from_severity_number(n: i32) -> Option<Level> {
        match n {
            1..=8 => Some(Level::Debug),
            9..=12 => Some(Level::Info),
            13..=16 => Some(Level::Warning),
            17..=20 => Some(Level::Error),
            21..=24 => Some(Level::Critical),
            _ => None,
        }
    }

    /// The canonical severity number of the level: the first of its range
    /// (DEBUG 5, INFO 9, WARN 13, ERROR 17, FATAL 21).
    #[must_use]
    pub fn severity_number(self) -> i32 {
        match self {
            Level::Debug => 5,
            Level::Info => 9,
            Level::Warning => 13,
            Level::Error => 17,
            Level::Critical => 21,
        }
    }

    /// The OpenTelemetry severity text of the canonical severity number.
    #[must_use]
    pub fn severity_text(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warning => "WARN",
            Level::Error => "ERROR",
            Level::Critical => "FATAL",
        }
    }

    /// Reads a sender's `severity_text`: the contract's names and OpenTelemetry's
    /// short names (`TRACE`, `WARN`, `FATAL`, and numbered forms such as `INFO2`),
    /// in any case. `None` when the text names no level.
    #[must_use]
    pub fn from_severity_text(text: &str) -> Option<Level> {
        let t = text.trim();
        let base = t.trim_end_matches(|c: char| c.is_ascii_digit());
        let eq = |s: &str| base.eq_ignore_ascii_case(s);
        if eq("TRACE") || eq("DEBUG") {
            Some(Level::Debug)
        } else if eq("INFO") || eq("INFORMATION") || eq("NOTICE") {
            Some(Level::Info)
        } else if eq("WARN") || eq("WARNING") {
            Some(Level::Warning)
        } else if eq("ERROR") || eq("ERR") {
            Some(Level::Error)
        } else if eq("FATAL") || eq("CRITICAL") || eq("CRIT") {
            Some(Level::Critical)
        } else {
            None
        }
    }

    /// The name the API uses: `DEBUG`, `INFO`, `WARNING`, `ERROR` or `CRITICAL`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    /// A compact code for storage: 1 (DEBUG) to 5 (CRITICAL), in level order.
    #[must_use]
    pub fn code(self) -> u8 {
        self as u8 + 1
    }

    /// The inverse of [`Level::code`].
    #[must_use]
    pub fn from_code(code: u8) -> Option<Level> {
        Self::ALL.get(usize::from(code).checked_sub(1)?).copied()
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Level {
    type Err = ParseError;

    /// Parses the API's names, case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| ParseError::new("level", s, Self::NAMES))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_ranges_map_to_levels() {
        let expect = |range: std::ops::RangeInclusive<i32>, level| {
            for n in range {
                assert_eq!(Level::from_severity_number(n), Some(level), "severity {n}");
            }
        };
        expect(1..=8, Level::Debug);
        expect(9..=12, Level::Info);
        expect(13..=16, Level::Warning);
        expect(17..=20, Level::Error);
        expect(21..=24, Level::Critical);
        for n in [-1, 0, 25, i32::MAX, i32::MIN] {
            assert_eq!(Level::from_severity_number(n), None, "severity {n}");
        }
    }

    #[test]
    fn canonical_numbers_round_trip() {
        for level in Level::ALL {
            assert_eq!(
                Level::from_severity_number(level.severity_number()),
                Some(level)
            );
            assert_eq!(
                Level::from_severity_text(level.severity_text()),
                Some(level)
            );
            assert_eq!(Level::from_code(level.code()), Some(level));
            assert_eq!(level.as_str().parse::<Level>(), Ok(level));
            assert_eq!(level.as_str().to_lowercase().parse::<Level>(), Ok(level));
        }
        assert_eq!(Level::from_code(0), None);
        assert_eq!(Level::from_code(6), None);
    }

    #[test]
    fn severity_text_accepts_otel_names() {
        assert_eq!(Level::from_severity_text("trace"), Some(Level::Debug));
        assert_eq!(Level::from_severity_text("INFO3"), Some(Level::Info));
        assert_eq!(Level::from_severity_text("Warning"), Some(Level::Warning));
        assert_eq!(Level::from_severity_text("fatal"), Some(Level::Critical));
        assert_eq!(Level::from_severity_text("loud"), None);
        assert_eq!(Level::from_severity_text(""), None);
    }

    #[test]
    fn levels_are_ordered_and_serialize_by_name() {
        assert!(Level::Debug < Level::Info && Level::Error < Level::Critical);
        assert_eq!(
            serde_json::to_string(&Level::Warning).unwrap(),
            "\"WARNING\""
        );
        assert_eq!(
            serde_json::from_str::<Level>("\"CRITICAL\"").unwrap(),
            Level::Critical
        );
    }

    #[test]
    fn unknown_level_is_a_clear_error() {
        let err = "LOUD".parse::<Level>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown level `LOUD` (expected one of: DEBUG, INFO, WARNING, ERROR, CRITICAL)"
        );
    }
}
