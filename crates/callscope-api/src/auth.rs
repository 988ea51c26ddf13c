//! API keys: stored and compared only as SHA-256 hashes, in constant time.

use std::sync::{
    Arc,
    atomic::{AtomicI64, Ordering},
};

use axum::{extract::FromRequestParts, http::request::Parts};
use parking_lot::RwLock;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{ApiError, ApiState};

/// The SHA-256 of a key, as lowercase hex (what config and storage hold).
#[must_use]
pub fn key_sha256_hex(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The SHA-256 of a key, as bytes.
#[must_use]
pub fn key_sha256(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The known keys, by hash. The server replaces the whole set every few seconds
/// ([`KeyRing::replace`]), so created and revoked keys take effect without a restart.
#[derive(Debug, Default)]
pub struct KeyRing {
    keys: RwLock<Vec<Entry>>,
}

#[derive(Debug)]
struct Entry {
    hash: [u8; 32],
    tenant: Arc<str>,
    /// When the key last authenticated a request (nanoseconds since the epoch), 0 when
    /// not since [`KeyRing::take_uses`] last took it.
    used: AtomicI64,
}

fn decode_hash(key_sha256_hex: &str) -> Result<[u8; 32], BadKeyHash> {
    let mut hash = [0u8; 32];
    hex::decode_to_slice(key_sha256_hex.trim(), &mut hash)
        .map_err(|_| BadKeyHash(key_sha256_hex.len()))?;
    Ok(hash)
}

/// A hash that is not 64 hex digits.
#[derive(Debug, thiserror::Error)]
#[error("key_sha256 must be 64 hex digits (the SHA-256 of the key), got {0} characters")]
pub struct BadKeyHash(usize);

impl KeyRing {
    /// An empty ring: every request is refused.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key by its hex SHA-256.
    ///
    /// # Errors
    /// The hash is not 64 hex digits.
    pub fn insert(&self, key_sha256_hex: &str, tenant: &str) -> Result<(), BadKeyHash> {
        let hash = decode_hash(key_sha256_hex)?;
        self.keys.write().push(Entry {
            hash,
            tenant: Arc::from(tenant),
            used: AtomicI64::new(0),
        });
        Ok(())
    }

    /// Replaces every key at once with `keys` (hex SHA-256, tenant): a request sees the
    /// old set or the new one, never a mix. Uses not yet taken are kept for the keys
    /// that stay.
    ///
    /// # Errors
    /// A hash is not 64 hex digits; the ring is then unchanged.
    pub fn replace<'a>(
        &self,
        keys: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<(), BadKeyHash> {
        let mut next = Vec::new();
        for (hash, tenant) in keys {
            next.push(Entry {
                hash: decode_hash(hash)?,
                tenant: Arc::from(tenant),
                used: AtomicI64::new(0),
            });
        }
        let mut current = self.keys.write();
        for entry in &next {
            if let Some(old) = current.iter().find(|e| e.hash == entry.hash) {
                entry
                    .used
                    .store(old.used.load(Ordering::Relaxed), Ordering::Relaxed);
            }
        }
        *current = next;
        Ok(())
    }

    /// The keys (hex SHA-256) that authenticated a request since the last call, with
    /// the time of their latest use (nanoseconds since the epoch).
    #[must_use]
    pub fn take_uses(&self) -> Vec<(String, i64)> {
        self.keys
            .read()
            .iter()
            .filter_map(|e| {
                let at = e.used.swap(0, Ordering::Relaxed);
                (at != 0).then(|| (hex::encode(e.hash), at))
            })
            .collect()
    }

    /// How many keys are known.
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.read().len()
    }

    /// No keys known?
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.read().is_empty()
    }

    /// The tenant a presented key belongs to. Compares against every known hash in
    /// constant time, so timing reveals nothing about which or how many keys match.
    #[must_use]
    pub fn tenant_for(&self, presented: &str) -> Option<Arc<str>> {
        self.tenant_for_hash(&key_sha256(presented))
    }

    /// The tenant of the key whose SHA-256 is `hash`, if the ring still holds it: how a
    /// console session (which remembers only the hash) checks on every request that
    /// its key has not been revoked or removed. Constant time, like
    /// [`Self::tenant_for`], and counted as a use of the key.
    #[must_use]
    pub fn tenant_for_hash(&self, hash: &[u8; 32]) -> Option<Arc<str>> {
        let keys = self.keys.read();
        let mut found = None;
        for entry in keys.iter() {
            if bool::from(entry.hash.ct_eq(hash)) {
                found = Some(entry);
            }
        }
        found.map(|entry| {
            entry.used.store(
                callscope_model::Timestamp::now().as_nanos(),
                Ordering::Relaxed,
            );
            entry.tenant.clone()
        })
    }
}

/// The tenant the request is scoped to: the one its `Authorization: Bearer` key belongs
/// to, or, without that header, the one of its console session cookie. Extracting it
/// answers 401 when neither names a live key; a state-changing request (POST, PUT,
/// PATCH, DELETE) authenticated by the cookie also needs the session's CSRF token and a
/// same-origin `Origin` (or `Referer`), else 403 `FORBIDDEN`, so the cookie alone never
/// authorises a write from another site.
#[derive(Debug, Clone)]
pub struct Tenant(pub Arc<str>);

impl FromRequestParts<ApiState> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        let Some(header) = parts.headers.get(axum::http::header::AUTHORIZATION) else {
            return crate::console::session_tenant(parts, state);
        };
        let value = header.to_str().map_err(|_| ApiError::Unauthorized)?;
        let (scheme, key) = value.split_once(' ').ok_or(ApiError::Unauthorized)?;
        if !scheme.eq_ignore_ascii_case("bearer") || key.trim().is_empty() {
            return Err(ApiError::Unauthorized);
        }
        state
            .keys
            .tenant_for(key.trim())
            .map(Tenant)
            .ok_or(ApiError::Unauthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_tenant_by_hash_only() {
        let ring = KeyRing::new();
        ring.insert(&key_sha256_hex("cs_live_acme"), "acme")
            .unwrap();
        ring.insert(&key_sha256_hex("cs_live_globex"), "globex")
            .unwrap();
        assert_eq!(ring.tenant_for("cs_live_acme").as_deref(), Some("acme"));
        assert_eq!(ring.tenant_for("cs_live_globex").as_deref(), Some("globex"));
        assert_eq!(ring.tenant_for("cs_live_acmf"), None);
        assert_eq!(ring.tenant_for(""), None);
        assert_eq!(
            ring.tenant_for_hash(&key_sha256("cs_live_globex"))
                .as_deref(),
            Some("globex")
        );
        assert_eq!(ring.tenant_for_hash(&[0; 32]), None);
        assert!(ring.insert("abc", "x").is_err());

        // Uses are recorded per key and taken once.
        assert_eq!(ring.take_uses().len(), 2);
        assert!(ring.take_uses().is_empty());
        let _ = ring.tenant_for("cs_live_acme");
        let acme = key_sha256_hex("cs_live_acme");
        assert_eq!(ring.take_uses()[0].0, acme);

        // A replacement swaps the whole set: globex's key stops working, a new one starts.
        let _ = ring.tenant_for("cs_live_acme");
        let initech = key_sha256_hex("cs_live_initech");
        ring.replace([(acme.as_str(), "acme"), (initech.as_str(), "initech")])
            .unwrap();
        assert_eq!(ring.tenant_for("cs_live_globex"), None);
        assert_eq!(
            ring.tenant_for("cs_live_initech").as_deref(),
            Some("initech")
        );
        assert_eq!(ring.len(), 2);
        let uses = ring.take_uses();
        assert_eq!(
            uses.len(),
            2,
            "acme's use before the swap is kept: {uses:?}"
        );
        assert!(ring.replace([("abc", "x")]).is_err());
        assert_eq!(ring.len(), 2, "a bad replacement changes nothing");
        assert_eq!(
            key_sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
