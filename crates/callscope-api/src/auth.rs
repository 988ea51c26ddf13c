//! API keys: stored and compared only as SHA-256 hashes, in constant time.

use std::sync::Arc;

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

/// The known keys, by hash.
#[derive(Debug, Default)]
pub struct KeyRing {
    keys: RwLock<Vec<([u8; 32], Arc<str>)>>,
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
        let mut hash = [0u8; 32];
        hex::decode_to_slice(key_sha256_hex.trim(), &mut hash)
            .map_err(|_| BadKeyHash(key_sha256_hex.len()))?;
        self.keys.write().push((hash, Arc::from(tenant)));
        Ok(())
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
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for (hash, tenant) in self.keys.read().iter() {
            if bool::from(hash.ct_eq(&digest)) {
                found = Some(tenant.clone());
            }
        }
        found
    }
}

/// The tenant the request's API key belongs to. Extracting it answers 401 when the
/// `Authorization: Bearer` key is missing or unknown.
#[derive(Debug, Clone)]
pub struct Tenant(pub Arc<str>);

impl FromRequestParts<ApiState> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or(ApiError::Unauthorized)?;
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
        assert!(ring.insert("abc", "x").is_err());
        assert_eq!(
            key_sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
