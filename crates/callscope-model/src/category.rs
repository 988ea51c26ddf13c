//! Event categories: what part of a call an event describes.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

use crate::ParseError;

/// The category of a call event, as the contract names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Category {
    /// Creation, connection, recording and the end of a call.
    CallLifecycle,
    /// What the caller said and did.
    User,
    /// What the voice agent said and did.
    Agent,
    /// Built-in tools: transfer and hangup.
    CallTools,
    /// The customer's own HTTP/MCP tools and context look-ups.
    IntegrationTools,
    /// Moves through a conversational flow.
    ConversationalPaths,
    /// A human joining the call.
    Transfer,
    /// Latency and usage figures.
    Metrics,
    /// Caller verification and credentials.
    Security,
    /// Webhook deliveries.
    Webhooks,
    /// Workflows run for the call.
    Workflows,
    /// Knowledge-base queries.
    Knowledge,
}

impl Category {
    /// Every category, in the contract's order.
    pub const ALL: [Category; 12] = [
        Category::CallLifecycle,
        Category::User,
        Category::Agent,
        Category::CallTools,
        Category::IntegrationTools,
        Category::ConversationalPaths,
        Category::Transfer,
        Category::Metrics,
        Category::Security,
        Category::Webhooks,
        Category::Workflows,
        Category::Knowledge,
    ];
    const NAMES: &'static [&'static str] = &[
        "CALL_LIFECYCLE",
        "USER",
        "AGENT",
        "CALL_TOOLS",
        "INTEGRATION_TOOLS",
        "CONVERSATIONAL_PATHS",
        "TRANSFER",
        "METRICS",
        "SECURITY",
        "WEBHOOKS",
        "WORKFLOWS",
        "KNOWLEDGE",
    ];

    /// The contract's name, e.g. `CALL_LIFECYCLE`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    /// A compact code for storage (1–12).
    #[must_use]
    pub fn code(self) -> u8 {
        self as u8 + 1
    }

    /// The inverse of [`Category::code`].
    #[must_use]
    pub fn from_code(code: u8) -> Option<Category> {
        Self::ALL.get(usize::from(code).checked_sub(1)?).copied()
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Category {
    type Err = ParseError;

    /// Parses the contract's names, case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| ParseError::new("category", s, Self::NAMES))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_category_round_trips() {
        for c in Category::ALL {
            assert_eq!(c.as_str().parse::<Category>(), Ok(c));
            assert_eq!(c.as_str().to_lowercase().parse::<Category>(), Ok(c));
            assert_eq!(Category::from_code(c.code()), Some(c));
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(json, format!("\"{}\"", c.as_str()));
            assert_eq!(serde_json::from_str::<Category>(&json).unwrap(), c);
        }
        assert_eq!(Category::from_code(0), None);
        assert_eq!(Category::from_code(13), None);
    }

    #[test]
    fn unknown_category_is_a_clear_error() {
        let err = "BILLING".parse::<Category>().unwrap_err();
        assert_eq!(err.kind(), "category");
        assert!(
            err.to_string()
                .starts_with("unknown category `BILLING` (expected one of: CALL_LIFECYCLE, USER")
        );
    }
}
