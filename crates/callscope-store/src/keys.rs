//! Customer API keys in the database: stored only as SHA-256 hashes, listed by a short
//! fingerprint (the hash's first hex digits), revoked by it, and stamped with their last
//! use. Every change goes through the writer.

use callscope_model::Timestamp;

use crate::{Error, Result, Store};

/// Hex digits of the key's SHA-256 that name it in lists and revocations: enough to tell
/// keys apart, far too few to stand for the key.
pub const FINGERPRINT_LEN: usize = 12;

/// A stored API key, without the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// The key's SHA-256, lowercase hex.
    pub key_sha256: String,
    /// The tenant the key reads.
    pub tenant: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last authenticated a request, as far as the server has recorded.
    pub last_used_at: Option<Timestamp>,
}

impl StoredKey {
    /// The key's fingerprint: the first [`FINGERPRINT_LEN`] hex digits of its hash.
    #[must_use]
    pub fn fingerprint(&self) -> &str {
        self.key_sha256
            .get(..FINGERPRINT_LEN)
            .unwrap_or(&self.key_sha256)
    }
}

/// What [`Store::revoke_api_key`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoked {
    /// This key is gone.
    Key(StoredKey),
    /// No stored key has that fingerprint.
    NotFound,
    /// Several keys start with that fingerprint; nothing was revoked.
    Ambiguous(usize),
}

const SELECT_KEYS: &str = "SELECT k.key_sha256, k.tenant, k.created_at, u.last_used_at \
     FROM api_keys k LEFT JOIN api_key_uses u USING (key_sha256)";

fn stored_key(r: &duckdb::Row<'_>) -> duckdb::Result<StoredKey> {
    Ok(StoredKey {
        key_sha256: r.get(0)?,
        tenant: r.get(1)?,
        created_at: Timestamp(r.get(2)?),
        last_used_at: r.get::<_, Option<i64>>(3)?.map(Timestamp),
    })
}

impl Store {
    /// Stores an API key's SHA-256 (hex) for `tenant`.
    ///
    /// # Errors
    /// [`Error::Constraint`] when the hash is already stored; another error when the
    /// write failed.
    pub async fn add_api_key(&self, key_sha256: &str, tenant: &str) -> Result<()> {
        let (hash, tenant) = (key_sha256.to_owned(), tenant.to_owned());
        self.write(move |c| {
            c.execute(
                "INSERT INTO api_keys (key_sha256, tenant, created_at) VALUES (?, ?, ?)",
                duckdb::params![hash, tenant, Timestamp::now().as_nanos()],
            )?;
            Ok(())
        })
        .await
    }

    /// Every stored API key hash with its tenant.
    ///
    /// # Errors
    /// The query failed.
    pub async fn api_keys(&self) -> Result<Vec<(String, String)>> {
        Ok(self
            .stored_api_keys()
            .await?
            .into_iter()
            .map(|k| (k.key_sha256, k.tenant))
            .collect())
    }

    /// Every stored API key, oldest first.
    ///
    /// # Errors
    /// The query failed.
    pub async fn stored_api_keys(&self) -> Result<Vec<StoredKey>> {
        self.read_in(crate::accept::Scope::Unwritten, |c| {
            let mut stmt = c.prepare(&format!(
                "{SELECT_KEYS} ORDER BY k.created_at, k.key_sha256"
            ))?;
            let rows = stmt.query_map([], stored_key)?;
            Ok(rows.collect::<duckdb::Result<Vec<_>>>()?)
        })
        .await
    }

    /// Deletes the one stored key whose hash starts with `fingerprint` (hex, at least
    /// eight digits).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a fingerprint that is too short or not hex; a
    /// database error when the write failed.
    pub async fn revoke_api_key(&self, fingerprint: &str) -> Result<Revoked> {
        let prefix = fingerprint.trim().to_ascii_lowercase();
        if prefix.len() < 8 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::InvalidArgument(format!(
                "{fingerprint:?} is not a key fingerprint (at least 8 hex digits, as `callscope keys list` shows)"
            )));
        }
        self.write(move |c| {
            let mut stmt =
                c.prepare(&format!("{SELECT_KEYS} WHERE starts_with(k.key_sha256, ?)"))?;
            let mut found = stmt
                .query_map([&prefix], stored_key)?
                .collect::<duckdb::Result<Vec<_>>>()?;
            if found.len() > 1 {
                return Ok(Revoked::Ambiguous(found.len()));
            }
            let Some(key) = found.pop() else {
                return Ok(Revoked::NotFound);
            };
            c.execute_batch("BEGIN TRANSACTION")?;
            let deleted = (|| {
                c.execute(
                    "DELETE FROM api_keys WHERE key_sha256 = ?",
                    [&key.key_sha256],
                )?;
                c.execute(
                    "DELETE FROM api_key_uses WHERE key_sha256 = ?",
                    [&key.key_sha256],
                )?;
                c.execute_batch("COMMIT")
            })();
            if let Err(e) = deleted {
                let _ = c.execute_batch("ROLLBACK");
                return Err(e.into());
            }
            Ok(Revoked::Key(key))
        })
        .await
    }

    /// Records when keys (by hex SHA-256) last authenticated a request. Uses of keys
    /// that are not stored (keys from the configuration) are ignored.
    ///
    /// # Errors
    /// The write failed.
    pub async fn record_api_key_uses(&self, uses: Vec<(String, Timestamp)>) -> Result<()> {
        if uses.is_empty() {
            return Ok(());
        }
        self.write(move |c| {
            // DuckLake has no keys for `ON CONFLICT`.
            let sql = if crate::lake::is_lake(c)? {
                "MERGE INTO api_key_uses USING (SELECT key_sha256, ?::BIGINT AS at FROM api_keys \
                 WHERE key_sha256 = ?) AS u ON api_key_uses.key_sha256 = u.key_sha256 \
                 WHEN MATCHED THEN UPDATE SET last_used_at = greatest(last_used_at, u.at) \
                 WHEN NOT MATCHED THEN INSERT VALUES (u.key_sha256, u.at)"
            } else {
                "INSERT INTO api_key_uses SELECT key_sha256, ? FROM api_keys WHERE key_sha256 = ? \
                 ON CONFLICT (key_sha256) DO UPDATE SET \
                 last_used_at = greatest(last_used_at, excluded.last_used_at)"
            };
            let mut stmt = c.prepare(sql)?;
            for (hash, at) in &uses {
                stmt.execute(duckdb::params![at.as_nanos(), hash])?;
            }
            Ok(())
        })
        .await
    }
}
