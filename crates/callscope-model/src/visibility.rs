//! Who may see a record.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

use crate::ParseError;

/// The value of `callscope.visibility`. A record without it is [`Visibility::Internal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Shown to the platform's customer in their call log.
    Customer,
    /// For the platform's own observability stack only (the default).
    #[default]
    Internal,
}

impl Visibility {
    /// The attribute value: `customer` or `internal`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Customer => "customer",
            Visibility::Internal => "internal",
        }
    }
}

impl fmt::Display for Visibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Visibility {
    type Err = ParseError;

    /// Exact match only: visibility fails closed, so `Customer` or ` customer` is not
    /// customer-visible.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "customer" => Ok(Visibility::Customer),
            "internal" => Ok(Visibility::Internal),
            _ => Err(ParseError::new("visibility", s, &["customer", "internal"])),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exact_values_parse() {
        assert_eq!("customer".parse(), Ok(Visibility::Customer));
        assert_eq!("internal".parse(), Ok(Visibility::Internal));
        for s in [
            "Customer",
            "CUSTOMER",
            " customer",
            "customer ",
            "",
            "public",
        ] {
            assert!(s.parse::<Visibility>().is_err(), "{s:?} must not parse");
        }
        assert_eq!(Visibility::default(), Visibility::Internal);
    }
}
