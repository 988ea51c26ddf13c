//! The `[visibility]` section of `callscope.toml`, and the key patterns it is written in.

use std::borrow::Cow;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// How the collector decides what customers may see (`[visibility]` in `callscope.toml`).
///
/// The built-in rules always apply: only records whose `callscope.visibility` is exactly
/// `customer` are stored, resource and scope attributes never reach `data`, and neither do
/// the reserved keys (`call.id`, `tenant.id`, `agent.id`, `event.name`, `callscope.*`) or
/// the keys of the built-in strip list (`internal.*`, `host.*`, `k8s.*`, …). The options
/// below can only add to what is withheld, or rewrite values; none can reveal more.
///
/// Key patterns (in `strip`, `allow` and `mask.keys`) are compared with attribute keys
/// without regard to case and surrounding whitespace. A pattern ending in `.*` matches the
/// key before the `.*` and every key under it (`billing.*` matches `billing` and
/// `billing.card.last4`); any other pattern matches one key exactly. `*` is allowed only
/// in that trailing position.
///
/// ```toml
/// [visibility]
/// default_tenant = ""
/// strip = ["billing.*", "caller.ip"]
/// # allow = ["text", "confidence", "tool_name"]
///
/// [[visibility.mask]]
/// pattern = '\b\d{13,19}\b'
/// replacement = "[card]"
/// keys = ["message", "text"]
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VisibilityConfig {
    /// The tenant that owns customer records carrying no `tenant.id`, neither on the
    /// record nor on its resource. Empty (the default): such records are rejected.
    pub default_tenant: String,
    /// Key patterns withheld from `data` in addition to the built-in strip list.
    pub strip: Vec<String>,
    /// When set, `data` keeps only attributes whose key matches one of these patterns.
    /// The allow list is applied after the reserved keys and the strip list, so it can
    /// only narrow what is stored. The record's body (`data.message` / `data.body`) is
    /// kept either way; use `mask` to rewrite it.
    pub allow: Option<Vec<String>>,
    /// Regular-expression rewrites of string values, applied in order.
    pub mask: Vec<MaskRule>,
    /// Span names that are customer-visible without a `callscope.visibility` attribute,
    /// for agents built on frameworks that emit their own spans (e.g. `["turn", "stt",
    /// "llm", "tts"]`). A trailing `*` matches every name starting with what precedes
    /// it. Such spans still need a call and a tenant, and their attributes go through
    /// the same strip list, allow list and masks as records.
    pub customer_span_names: Vec<String>,
    /// Span attributes that name the call when a span has no `call.id`, tried in order
    /// (e.g. `["conversation.id"]`). Spans of the same trace in one request that carry
    /// none take the call of those that do.
    pub span_call_id_attributes: Vec<String>,
}

/// One value rewrite (`[[visibility.mask]]`).
///
/// Every match of `pattern` in a string value is replaced by `replacement`. Strings inside
/// arrays and maps are rewritten too, and so is the record's body. Map keys are not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskRule {
    /// A regular expression (Rust `regex` syntax, e.g. `\b\d{13,19}\b`).
    pub pattern: String,
    /// What each match becomes. `$1` or `${name}` insert a capture group; write `$$` for
    /// a literal `$`.
    pub replacement: String,
    /// Restricts the rule to attributes whose key matches one of these patterns; `message`
    /// names a string body and `body` any other body. Absent: every value.
    #[serde(default)]
    pub keys: Option<Vec<String>>,
}

/// A `[visibility]` setting that cannot be used. The message names the key, e.g.
/// `visibility.mask[0].pattern: …`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A key pattern is malformed.
    #[error("{key}: invalid key pattern `{pattern}`: {reason}")]
    Pattern {
        /// The setting, e.g. `visibility.strip[2]`.
        key: String,
        /// The pattern as written.
        pattern: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A mask's regular expression does not compile or is empty.
    #[error("{key}: {reason}")]
    Regex {
        /// The setting, e.g. `visibility.mask[0].pattern`.
        key: String,
        /// The regular-expression engine's explanation.
        reason: String,
    },
    /// Any other bad value.
    #[error("{key}: {reason}")]
    Invalid {
        /// The setting, e.g. `visibility.default_tenant`.
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// The most mask rules a configuration may have (each record tracks them in a bit set).
pub(crate) const MAX_MASK_RULES: usize = 64;

/// A key as matched against patterns: trimmed and compared without regard to case.
///
/// ASCII keys (the usual case) are compared byte by byte without allocating. Other keys
/// are folded two ways (lower case, and upper then lower case) so that characters such as
/// the Kelvin sign or the long s cannot smuggle a stripped key past the list.
#[derive(Debug)]
pub(crate) enum FoldedKey<'a> {
    Ascii(&'a str),
    Unicode([String; 2]),
}

impl<'a> FoldedKey<'a> {
    pub(crate) fn new(key: &'a str) -> Self {
        let key = key.trim();
        if key.is_ascii() {
            FoldedKey::Ascii(key)
        } else {
            FoldedKey::Unicode([key.to_lowercase(), key.to_uppercase().to_lowercase()])
        }
    }

    /// The dotted path of a map entry `child` under this key.
    pub(crate) fn child_path(parent: &str, child: &str) -> String {
        let mut s = String::with_capacity(parent.len() + 1 + child.len());
        s.push_str(parent);
        s.push('.');
        s.push_str(child);
        s
    }
}

/// One parsed key pattern, lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyPattern {
    /// Matches one key.
    Exact(Box<str>),
    /// Matches the prefix itself and every key starting with `prefix.`.
    Prefix(Box<str>),
    /// Matches every key starting with `prefix.`, but not the prefix itself.
    Below(Box<str>),
}

impl KeyPattern {
    fn parse(pattern: &str) -> Result<Self, &'static str> {
        let p = pattern.trim();
        if p.is_empty() {
            return Err("a pattern must not be empty");
        }
        if p.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("a pattern must not contain whitespace");
        }
        let lower = p.to_lowercase();
        match lower.strip_suffix(".*") {
            Some("") => Err("`.*` needs a prefix, e.g. `billing.*`"),
            Some(prefix) if prefix.contains('*') => Err("`*` is allowed only as a trailing `.*`"),
            Some(prefix) => Ok(KeyPattern::Prefix(prefix.into())),
            None if lower.contains('*') => Err("`*` is allowed only as a trailing `.*`"),
            None => Ok(KeyPattern::Exact(lower.into())),
        }
    }

    fn matches_ascii(&self, key: &[u8]) -> bool {
        match self {
            KeyPattern::Exact(p) => key.eq_ignore_ascii_case(p.as_bytes()),
            KeyPattern::Prefix(p) => {
                let p = p.as_bytes();
                key.len() >= p.len()
                    && key[..p.len()].eq_ignore_ascii_case(p)
                    && (key.len() == p.len() || key[p.len()] == b'.')
            }
            KeyPattern::Below(p) => {
                let p = p.as_bytes();
                key.len() > p.len()
                    && key[..p.len()].eq_ignore_ascii_case(p)
                    && key[p.len()] == b'.'
            }
        }
    }

    fn matches_lower(&self, key: &str) -> bool {
        match self {
            KeyPattern::Exact(p) => key == &**p,
            KeyPattern::Prefix(p) => key
                .strip_prefix(&**p)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('.')),
            KeyPattern::Below(p) => key
                .strip_prefix(&**p)
                .is_some_and(|rest| rest.starts_with('.')),
        }
    }
}

/// A list of key patterns.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyMatcher {
    patterns: Vec<KeyPattern>,
}

impl KeyMatcher {
    /// Parses `patterns`; `setting` names the list in errors (`visibility.strip`).
    pub(crate) fn parse<S: AsRef<str>>(setting: &str, patterns: &[S]) -> Result<Self, ConfigError> {
        let mut out = Self::default();
        for (i, p) in patterns.iter().enumerate() {
            let p = p.as_ref();
            let parsed = KeyPattern::parse(p).map_err(|reason| ConfigError::Pattern {
                key: format!("{setting}[{i}]"),
                pattern: p.to_owned(),
                reason,
            })?;
            if !out.patterns.contains(&parsed) {
                out.patterns.push(parsed);
            }
        }
        Ok(out)
    }

    /// The built-in patterns, which are known to be valid.
    pub(crate) fn builtin<S: AsRef<str>>(patterns: &[S]) -> Self {
        Self::parse("built-in", patterns).expect("built-in key patterns are valid")
    }

    /// The reserved keys of the contract: `keys::RESERVED` exactly and everything under
    /// `callscope.`, as `keys::is_reserved` has it, but without regard to case.
    pub(crate) fn reserved() -> Self {
        let mut m = Self::builtin(callscope_model::keys::RESERVED);
        let prefix = callscope_model::keys::RESERVED_PREFIX;
        m.patterns.push(KeyPattern::Below(
            prefix.trim_end_matches('.').to_lowercase().into(),
        ));
        m
    }

    pub(crate) fn extend(&mut self, other: KeyMatcher) {
        for p in other.patterns {
            if !self.patterns.contains(&p) {
                self.patterns.push(p);
            }
        }
    }

    pub(crate) fn matches(&self, key: &FoldedKey<'_>) -> bool {
        match key {
            FoldedKey::Ascii(k) => self.patterns.iter().any(|p| p.matches_ascii(k.as_bytes())),
            FoldedKey::Unicode(forms) => self
                .patterns
                .iter()
                .any(|p| forms.iter().any(|f| p.matches_lower(f))),
        }
    }
}

/// A compiled mask rule.
#[derive(Debug, Clone)]
pub(crate) struct Mask {
    pub(crate) regex: Regex,
    pub(crate) replacement: String,
    /// `None`: every key.
    pub(crate) keys: Option<KeyMatcher>,
}

impl Mask {
    pub(crate) fn compile(i: usize, rule: &MaskRule) -> Result<Self, ConfigError> {
        let key = format!("visibility.mask[{i}].pattern");
        if rule.pattern.is_empty() {
            return Err(ConfigError::Regex {
                key,
                reason: "the pattern must not be empty".into(),
            });
        }
        let regex = Regex::new(&rule.pattern).map_err(|e| ConfigError::Regex {
            key,
            reason: one_line(&e.to_string()).into_owned(),
        })?;
        let keys = rule
            .keys
            .as_deref()
            .map(|k| KeyMatcher::parse(&format!("visibility.mask[{i}].keys"), k))
            .transpose()?;
        Ok(Self {
            regex,
            replacement: rule.replacement.clone(),
            keys,
        })
    }
}

/// The regex crate explains errors over several lines; a config error reads best on one.
fn one_line(s: &str) -> Cow<'_, str> {
    if s.contains('\n') {
        Cow::Owned(
            s.lines()
                .map(str::trim_end)
                .filter(|l| !l.trim().is_empty())
                .collect::<Vec<_>>()
                .join(" "),
        )
    } else {
        Cow::Borrowed(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(patterns: &[&str]) -> KeyMatcher {
        KeyMatcher::parse("t", patterns).unwrap()
    }

    fn hit(m: &KeyMatcher, key: &str) -> bool {
        m.matches(&FoldedKey::new(key))
    }

    #[test]
    fn prefix_patterns_match_the_prefix_and_below_only() {
        let m = m(&["host.*", "url.full"]);
        for k in ["host", "host.name", "HOST.Name", " host.name ", "Host.a.b"] {
            assert!(hit(&m, k), "{k}");
        }
        for k in ["hostname", "hosts.x", "url", "url.fullx", "x.host.name", ""] {
            assert!(!hit(&m, k), "{k}");
        }
        assert!(hit(&m, "URL.FULL"));
    }

    #[test]
    fn unicode_case_tricks_are_folded() {
        let m = m(&["k8s.*", "server.*"]);
        assert!(hit(&m, "\u{212A}8s.pod.name"), "Kelvin sign");
        assert!(hit(&m, "\u{17F}erver.address"), "long s");
        assert!(hit(&m, "SERVER.ADDRESS"));
        assert!(!hit(&m, "s\u{e9}rver.address"));
    }

    #[test]
    fn bad_patterns_name_the_setting() {
        for (p, why) in [
            ("", "empty"),
            ("*", "`.*`"),
            (".*", "prefix"),
            ("a*", "trailing"),
            ("a.*.b", "trailing"),
            ("a b", "whitespace"),
        ] {
            let err = KeyMatcher::parse("visibility.strip", &["ok", p]).unwrap_err();
            let msg = err.to_string();
            assert!(msg.starts_with("visibility.strip[1]: "), "{msg}");
            assert!(msg.contains(why), "{p:?}: {msg}");
        }
    }

    #[test]
    fn config_parses_from_toml_and_refuses_unknown_keys() {
        let c: VisibilityConfig = toml::from_str(
            r#"
            default_tenant = "acme"
            strip = ["billing.*"]
            allow = ["text"]
            [[mask]]
            pattern = '\d{4}'
            replacement = "XXXX"
            keys = ["text"]
            "#,
        )
        .unwrap();
        assert_eq!(c.default_tenant, "acme");
        assert_eq!(c.mask[0].keys.as_deref(), Some(&["text".to_owned()][..]));
        let err = toml::from_str::<VisibilityConfig>("strip_list = []").unwrap_err();
        assert!(err.to_string().contains("strip_list"), "{err}");
        let err = toml::from_str::<VisibilityConfig>("[[mask]]\npattern = 'x'\n").unwrap_err();
        assert!(err.to_string().contains("replacement"), "{err}");
        assert_eq!(
            toml::from_str::<VisibilityConfig>("").unwrap(),
            VisibilityConfig::default()
        );
    }
}
