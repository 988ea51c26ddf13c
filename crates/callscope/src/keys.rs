//! `callscope keys create`: a new API key, shown once, stored only as its hash.

use anyhow::Context as _;
use callscope_api::key_sha256_hex;
use callscope_store::Store;
use rand::RngCore as _;

/// A new random key: `cs_` and 40 hex digits (160 bits).
#[must_use]
pub fn generate_key() -> String {
    let mut bytes = [0u8; 20];
    rand::rng().fill_bytes(&mut bytes);
    format!("cs_{}", hex::encode(bytes))
}

/// Creates a key for `tenant`, stores its hash in the database, and returns the key.
///
/// # Errors
/// The tenant is empty, or the database cannot be opened (for example, a running
/// server holds it) or written.
pub async fn create(store: &Store, tenant: &str) -> anyhow::Result<String> {
    anyhow::ensure!(!tenant.trim().is_empty(), "--tenant must not be empty");
    let key = generate_key();
    store
        .add_api_key(&key_sha256_hex(&key), tenant)
        .await
        .context("storing the key's hash")?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_and_well_formed() {
        let (a, b) = (generate_key(), generate_key());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(a.starts_with("cs_") && a[3..].bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
