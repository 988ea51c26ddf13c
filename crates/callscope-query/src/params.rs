//! Query-string parsing shared by the routes: repeated and comma-separated values,
//! strict numbers, and errors that name the parameter.

use std::str::FromStr;

use serde::{Deserialize, Deserializer, de::DeserializeOwned};

use crate::{Order, QueryError};

/// A parsed query string: every `name=value` pair in order.
#[derive(Debug, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Parses `raw` (without the `?`).
    pub fn parse(raw: Option<&str>) -> Result<Self, QueryError> {
        let Some(raw) = raw else {
            return Ok(Self::default());
        };
        serde_urlencoded::from_str::<Vec<(String, String)>>(raw)
            .map(Self)
            .map_err(|_| QueryError::Query("The query string is not valid URL encoding".into()))
    }

    /// The last value given for `name`, if any.
    pub fn one(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value for `name`, split on commas, blanks dropped.
    pub fn list(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// The parameters as a struct of raw spellings such as
    /// [`CallFilterParams`](crate::CallFilterParams): each name maps to every value given
    /// for it, and the struct's fields say how repeats combine (the last value, or every value
    /// split on commas).
    /// Names the struct does not know are ignored.
    ///
    /// # Errors
    /// [`QueryError::Query`] when the values do not fit the struct (only when a field
    /// has a type other than strings).
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, QueryError> {
        let mut map = serde_json::Map::new();
        for (k, v) in &self.0 {
            if let serde_json::Value::Array(values) = map
                .entry(k.clone())
                .or_insert_with(|| serde_json::Value::Array(Vec::new()))
            {
                values.push(serde_json::Value::String(v.clone()));
            }
        }
        serde_json::from_value(serde_json::Value::Object(map))
            .map_err(|e| QueryError::Query(format!("Invalid query parameters: {e}")))
    }

    /// Every value for `name` parsed as `T` (categories, levels, …).
    pub fn parsed_list<T: FromStr>(&self, name: &str) -> Result<Vec<T>, QueryError>
    where
        T::Err: std::fmt::Display,
    {
        self.list(name)
            .into_iter()
            .map(|s| {
                s.parse::<T>()
                    .map_err(|e| QueryError::Query(format!("Invalid `{name}`: {e}")))
            })
            .collect()
    }

    /// An integer parameter within `range`; out of range or not a number is a
    /// pagination error naming it.
    pub fn int_in(
        &self,
        name: &str,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Option<u64>, QueryError> {
        let Some(v) = self.one(name) else {
            return Ok(None);
        };
        match v.trim().parse::<u64>() {
            Ok(n) if range.contains(&n) => Ok(Some(n)),
            _ => Err(QueryError::Pagination(format!(
                "`{name}` must be an integer from {} to {}",
                range.start(),
                range.end()
            ))),
        }
    }
}

/// One value or several: how a parameter arrives from a query string (every value
/// given) or from a plain struct (one string).
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// A serde field reader: the last value given, like [`Params::one`].
///
/// # Errors
/// The value is neither a string nor a list of strings.
pub(crate) fn last<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(OneOrMany::deserialize(d)?.into_vec().pop())
}

/// A serde field reader: every value, split on commas, blanks dropped, like
/// [`Params::list`].
///
/// # Errors
/// The value is neither a string nor a list of strings.
pub(crate) fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(OneOrMany::deserialize(d)?
        .into_vec()
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect())
}

/// Parses `asc`/`desc` (any case).
pub fn parse_order(v: Option<&str>, name: &str) -> Result<Order, QueryError> {
    match v.map(str::to_ascii_lowercase).as_deref() {
        None | Some("desc") => Ok(Order::Desc),
        Some("asc") => Ok(Order::Asc),
        Some(_) => Err(QueryError::Query(format!(
            "`{name}` must be `asc` or `desc`"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_merge_repeats_and_commas() {
        let p = Params::parse(Some("level=INFO,ERROR&level=%20DEBUG&x=1&level=")).unwrap();
        assert_eq!(p.list("level"), ["INFO", "ERROR", "DEBUG"]);
        assert_eq!(p.one("x"), Some("1"));
        assert_eq!(p.int_in("x", 1..=5).unwrap(), Some(1));
        assert!(p.int_in("level", 1..=5).is_err());
    }
}
