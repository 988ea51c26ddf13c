//! OTLP values: their canonical encoding for record ids, and their typed JSON form for
//! `data`, with nested keys withheld and masks applied.

use std::borrow::Cow;

use base64::Engine as _;
use callscope_model::RecordIdHasher;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use serde_json::{Map, Value as Json};

use super::{Rules, config::FoldedKey, stats::Tally};

/// Set on the length of a map so that a map never encodes like an array.
const MAP_BIT: usize = 1 << (usize::BITS - 1);

/// Adds `v` to `h`: tagged, length-prefixed, map entries sorted by key.
pub(crate) fn hash_value(h: &mut RecordIdHasher, v: Option<&AnyValue>) {
    match v.and_then(|a| a.value.as_ref()) {
        // An index into a profiling string table means nothing in a log record: absent.
        None | Some(Value::StringValueStrindex(_)) => {
            h.none();
        }
        Some(Value::StringValue(s)) => {
            h.str(s);
        }
        Some(Value::BoolValue(b)) => {
            h.bool(*b);
        }
        Some(Value::IntValue(i)) => {
            h.i64(*i);
        }
        Some(Value::DoubleValue(d)) => {
            h.f64(*d);
        }
        Some(Value::BytesValue(b)) => {
            h.bytes(b);
        }
        Some(Value::ArrayValue(a)) => {
            h.open(a.values.len());
            for x in &a.values {
                hash_value(h, Some(x));
            }
            h.close();
        }
        Some(Value::KvlistValue(kv)) => hash_map(h, &kv.values, &mut Vec::new()),
    }
}

/// Adds a list of key-values as a map: sorted by key (a stable sort, so duplicate keys
/// keep their order), keys and values both hashed. `scratch` is reused between calls.
pub(crate) fn hash_map<'a>(
    h: &mut RecordIdHasher,
    kvs: &'a [KeyValue],
    scratch: &mut Vec<&'a KeyValue>,
) {
    h.open(kvs.len() | MAP_BIT);
    if kvs.is_sorted_by(|a, b| a.key <= b.key) {
        for kv in kvs {
            h.str(&kv.key);
            hash_value(h, kv.value.as_ref());
        }
    } else {
        scratch.clear();
        scratch.extend(kvs);
        scratch.sort_by(|a, b| a.key.cmp(&b.key));
        for kv in scratch.iter() {
            h.str(&kv.key);
            hash_value(h, kv.value.as_ref());
        }
    }
    h.close();
}

/// Converts values to `data` JSON under a set of rules.
pub(crate) struct ToJson<'r, 't> {
    pub(crate) rules: &'r Rules,
    pub(crate) tally: &'t mut Tally,
}

impl ToJson<'_, '_> {
    /// `path` is the dotted key path of the value (`details.caller` for the key `caller`
    /// in the map attribute `details`), used to withhold nested keys; `masks` is the set of
    /// mask rules that apply (bit `i` for rule `i`).
    pub(crate) fn value(&mut self, v: Option<&AnyValue>, path: &str, masks: u64) -> Json {
        let Some(v) = v.and_then(|a| a.value.as_ref()) else {
            return Json::Null;
        };
        match v {
            Value::StringValue(s) => Json::String(self.mask(s, masks)),
            Value::BoolValue(b) => Json::Bool(*b),
            Value::IntValue(i) => Json::from(*i),
            Value::DoubleValue(d) => double(*d),
            Value::BytesValue(b) => {
                Json::String(self.mask(&base64::engine::general_purpose::STANDARD.encode(b), masks))
            }
            Value::ArrayValue(a) => Json::Array(
                a.values
                    .iter()
                    .map(|x| self.value(Some(x), path, masks))
                    .collect(),
            ),
            Value::KvlistValue(kv) => {
                let mut map = Map::new();
                for e in &kv.values {
                    let child = FoldedKey::child_path(path, &e.key);
                    if let Some(reason) = self
                        .rules
                        .withheld(&FoldedKey::new(&e.key))
                        .or_else(|| self.rules.withheld(&FoldedKey::new(&child)))
                    {
                        self.tally.strip(reason, 1);
                        continue;
                    }
                    let v = self.value(e.value.as_ref(), &child, masks);
                    map.insert(e.key.clone(), v);
                }
                Json::Object(map)
            }
            Value::StringValueStrindex(_) => Json::Null,
        }
    }

    /// Applies the mask rules in `masks` to `s`, in order.
    pub(crate) fn mask(&mut self, s: &str, masks: u64) -> String {
        if masks == 0 {
            return s.to_owned();
        }
        let mut out = Cow::Borrowed(s);
        let mut changed = false;
        for (i, m) in self.rules.masks.iter().enumerate() {
            if masks & (1 << i) == 0 {
                continue;
            }
            let next = match m.regex.replace_all(&out, m.replacement.as_str()) {
                Cow::Owned(n) => Some(n),
                Cow::Borrowed(_) => None,
            };
            if let Some(n) = next {
                changed |= n != *out;
                out = Cow::Owned(n);
            }
        }
        if changed {
            self.tally.masked += 1;
        }
        out.into_owned()
    }
}

/// JSON has no NaN or infinities; they are stored as the strings `NaN`, `Infinity` and
/// `-Infinity` rather than lost.
fn double(d: f64) -> Json {
    serde_json::Number::from_f64(d).map_or_else(
        || {
            Json::String(
                if d.is_nan() {
                    "NaN"
                } else if d > 0.0 {
                    "Infinity"
                } else {
                    "-Infinity"
                }
                .to_owned(),
            )
        },
        Json::Number,
    )
}
