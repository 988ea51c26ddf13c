//! The one error this crate has: a string that names no known value.

use std::fmt;

/// A string did not name a known level, category, visibility or event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    kind: &'static str,
    value: String,
    expected: &'static [&'static str],
}

impl ParseError {
    pub(crate) fn new(kind: &'static str, value: &str, expected: &'static [&'static str]) -> Self {
        Self {
            kind,
            value: value.to_owned(),
            expected,
        }
    }

    /// What was being parsed: `"level"`, `"category"`, `"visibility"` or `"event"`.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The string that was refused.
    #[must_use]
    pub fn value(&self) -> &str {
        &self.value
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown {} `{}`", self.kind, self.value)?;
        if !self.expected.is_empty() {
            write!(f, " (expected one of: {})", self.expected.join(", "))?;
        }
        Ok(())
    }
}

impl std::error::Error for ParseError {}
