//! Content-derived record ids.
//!
//! A record's id is a UUID (version 8) made of the first 122 bits of a SHA-256 over a
//! canonical, length-prefixed encoding of the record's content. The same record sent
//! twice (an exporter's retry) gets the same id and is stored once; two records that
//! differ in any hashed field get different ids unless SHA-256 collides.

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Builds a record id field by field.
///
/// Every field is written with a type tag and, for variable-length data, its length,
/// so no two different sequences of fields encode to the same bytes.
///
/// ```
/// use callscope_model::RecordIdHasher;
///
/// let id = |body: &str| {
///     let mut h = RecordIdHasher::new();
///     h.str("acme").str("call-1").i64(1_700_000_000_000_000_000).str(body);
///     h.finish()
/// };
/// assert_eq!(id("hello"), id("hello"));
/// assert_ne!(id("hello"), id("hello!"));
/// assert_eq!(id("x").get_version_num(), 8);
/// ```
#[derive(Debug, Clone, Default)]
pub struct RecordIdHasher(Sha256);

const TAG_STR: u8 = 1;
const TAG_BYTES: u8 = 2;
const TAG_I64: u8 = 3;
const TAG_F64: u8 = 4;
const TAG_BOOL: u8 = 5;
const TAG_NONE: u8 = 6;
const TAG_OPEN: u8 = 7;
const TAG_CLOSE: u8 = 8;

impl RecordIdHasher {
    /// An empty hasher.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn len(&mut self, n: usize) {
        self.0.update((n as u64).to_le_bytes());
    }

    /// Adds a string.
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.0.update([TAG_STR]);
        self.len(s.len());
        self.0.update(s.as_bytes());
        self
    }

    /// Adds raw bytes (ids, binary values).
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.update([TAG_BYTES]);
        self.len(b.len());
        self.0.update(b);
        self
    }

    /// Adds an integer.
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.0.update([TAG_I64]);
        self.0.update(v.to_le_bytes());
        self
    }

    /// Adds a float, by its bit pattern.
    pub fn f64(&mut self, v: f64) -> &mut Self {
        self.0.update([TAG_F64]);
        self.0.update(v.to_bits().to_le_bytes());
        self
    }

    /// Adds a boolean.
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.0.update([TAG_BOOL, u8::from(v)]);
        self
    }

    /// Adds an absent value, distinct from every present one.
    pub fn none(&mut self) -> &mut Self {
        self.0.update([TAG_NONE]);
        self
    }

    /// Opens a nested list or map of `n` entries.
    pub fn open(&mut self, n: usize) -> &mut Self {
        self.0.update([TAG_OPEN]);
        self.len(n);
        self
    }

    /// Closes what [`RecordIdHasher::open`] opened.
    pub fn close(&mut self) -> &mut Self {
        self.0.update([TAG_CLOSE]);
        self
    }

    /// The id: a version-8 UUID from the first 16 bytes of the digest.
    #[must_use]
    pub fn finish(self) -> Uuid {
        let digest = self.0.finalize();
        let mut b = [0u8; 16];
        b.copy_from_slice(&digest[..16]);
        b[6] = (b[6] & 0x0f) | 0x80;
        b[8] = (b[8] & 0x3f) | 0x80;
        Uuid::from_bytes(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(f: impl FnOnce(&mut RecordIdHasher)) -> Uuid {
        let mut h = RecordIdHasher::new();
        f(&mut h);
        h.finish()
    }

    #[test]
    fn field_boundaries_matter() {
        assert_ne!(
            id(|h| {
                h.str("ab").str("c");
            }),
            id(|h| {
                h.str("a").str("bc");
            })
        );
        assert_ne!(
            id(|h| {
                h.str("1");
            }),
            id(|h| {
                h.i64(1);
            })
        );
        assert_ne!(
            id(|h| {
                h.none();
            }),
            id(|h| {
                h.str("");
            })
        );
        assert_ne!(
            id(|h| {
                h.open(1).str("a").close();
            }),
            id(|h| {
                h.str("a");
            })
        );
    }

    #[test]
    fn ids_are_rfc_9562_version_8() {
        let u = id(|h| {
            h.str("x");
        });
        assert_eq!(u.get_version_num(), 8);
        assert_eq!(u.get_variant(), uuid::Variant::RFC4122);
    }
}
