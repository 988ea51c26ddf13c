//! `callscope keys`: create, list and revoke customer API keys, also while a server runs.
//!
//! Keys are stored in the database as SHA-256 hashes. DuckDB lets one process open the
//! file, so when a server holds it the command hands its request to the server instead:
//! it writes the request as a file into the folder beside the database named by
//! [`requests_dir`], and the server's key task ([`KeyTask`]), which runs every
//! [`KEY_RELOAD`], carries it out through the store and writes the answer beside it.
//! The same task reloads the server's [`KeyRing`] from the database and the
//! configuration, so a created key works, and a revoked one stops working, within
//! seconds, and records when each key was last used.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use callscope_api::{KeyRing, key_sha256_hex};
use callscope_model::Timestamp;
use callscope_store::{Revoked, Store, StoredKey};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};

use crate::Config;

/// How often a running server reloads its keys and answers key requests.
pub const KEY_RELOAD: Duration = Duration::from_secs(2);

/// How long a command waits for a running server to answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(15);

/// A new random key: `cs_` and 40 hex digits (160 bits).
#[must_use]
pub fn generate_key() -> String {
    let mut bytes = [0u8; 20];
    rand::rng().fill_bytes(&mut bytes);
    format!("cs_{}", hex::encode(bytes))
}

/// What a key command asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Store this hash for this tenant.
    Create {
        /// The new key's SHA-256, hex.
        key_sha256: String,
        /// Its tenant.
        tenant: String,
    },
    /// List the stored keys.
    List,
    /// Delete the key with this fingerprint.
    Revoke {
        /// At least eight hex digits of the key's hash.
        fingerprint: String,
    },
}

/// One stored key as a list shows it: never the key or its whole hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// The first hex digits of the key's SHA-256.
    pub fingerprint: String,
    /// The tenant the key reads.
    pub tenant: String,
    /// When it was created (nanoseconds since the epoch).
    pub created_at: i64,
    /// When it last authenticated a request, if it has.
    pub last_used_at: Option<i64>,
}

impl From<&StoredKey> for KeyInfo {
    fn from(k: &StoredKey) -> Self {
        Self {
            fingerprint: k.fingerprint().to_owned(),
            tenant: k.tenant.clone(),
            created_at: k.created_at.as_nanos(),
            last_used_at: k.last_used_at.map(Timestamp::as_nanos),
        }
    }
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Answer {
    /// The key is stored.
    Created {
        /// Its fingerprint.
        fingerprint: String,
    },
    /// The stored keys, oldest first.
    Keys {
        /// The keys.
        keys: Vec<KeyInfo>,
    },
    /// The key is gone.
    Revoked {
        /// The revoked key.
        key: KeyInfo,
    },
    /// The request could not be carried out.
    Failed {
        /// Why.
        message: String,
    },
}

/// Carries out `request` on `store`.
pub async fn apply(store: &Store, request: &Request) -> Answer {
    let failed = |message: String| Answer::Failed { message };
    match request {
        Request::Create { key_sha256, tenant } => {
            if tenant.trim().is_empty() {
                return failed("the tenant must not be empty".into());
            }
            match store.add_api_key(key_sha256, tenant).await {
                Ok(()) => Answer::Created {
                    fingerprint: key_sha256
                        .get(..callscope_store::FINGERPRINT_LEN)
                        .unwrap_or(key_sha256)
                        .to_owned(),
                },
                Err(e) => failed(format!("storing the key's hash failed: {e}")),
            }
        }
        Request::List => match store.stored_api_keys().await {
            Ok(keys) => Answer::Keys {
                keys: keys.iter().map(KeyInfo::from).collect(),
            },
            Err(e) => failed(format!("reading the keys failed: {e}")),
        },
        Request::Revoke { fingerprint } => match store.revoke_api_key(fingerprint).await {
            Ok(Revoked::Key(k)) => Answer::Revoked {
                key: KeyInfo::from(&k),
            },
            Ok(Revoked::NotFound) => failed(format!(
                "no stored key has the fingerprint {fingerprint} (`callscope keys list` shows them)"
            )),
            Ok(Revoked::Ambiguous(n)) => failed(format!(
                "{n} keys start with {fingerprint}; give more of the fingerprint"
            )),
            Err(e) => failed(e.to_string()),
        },
    }
}

/// The folder beside the database where commands leave requests for a running server.
#[must_use]
pub fn requests_dir(db: &Path) -> PathBuf {
    let name = db
        .file_name()
        .map_or_else(|| "callscope".into(), |n| n.to_string_lossy().into_owned());
    db.with_file_name(format!("{name}.key-requests"))
}

/// Writes `bytes` to `path` whole: to a temporary name first, then renamed.
fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(tmp, path)
}

/// Runs `request` against the database of `config`: directly when no process holds it,
/// else through the running server, waiting for its answer.
///
/// # Errors
/// The database cannot be opened for another reason, or the server did not answer.
pub async fn run(config: &Config, request: &Request) -> anyhow::Result<Answer> {
    let path = &config.storage.path;
    // A lake has no local file: the store opens it beside any running instance.
    let lake = config.storage.backend == callscope_store::Backend::Ducklake;
    if !lake && !path.exists() && !matches!(request, Request::Create { .. }) {
        bail!(
            "there is no database at {} (the [storage] path of the configuration; pass --config)",
            path.display()
        );
    }
    let storage = callscope_store::StoreConfig {
        retention_days: 0,
        ..config.storage.clone()
    };
    match Store::open(&storage) {
        Ok(store) => {
            let answer = apply(&store, request).await;
            store.shutdown().await.context("closing the database")?;
            Ok(answer)
        }
        Err(callscope_store::Error::Locked(_)) => ask_server(path, request).await,
        Err(e) => Err(anyhow::Error::new(e).context(format!("opening {}", path.display()))),
    }
}

/// Leaves `request` for the server that holds `db` and waits for its answer.
async fn ask_server(db: &Path, request: &Request) -> anyhow::Result<Answer> {
    let dir = requests_dir(db);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let id = uuid::Uuid::new_v4();
    let asked = dir.join(format!("{id}.request.json"));
    let answered = dir.join(format!("{id}.answer.json"));
    write_whole(&asked, &serde_json::to_vec(request)?)
        .with_context(|| format!("writing {}", asked.display()))?;
    let deadline = Instant::now() + ANSWER_WITHIN;
    loop {
        if let Ok(bytes) = std::fs::read(&answered) {
            let _ = std::fs::remove_file(&answered);
            return serde_json::from_slice(&bytes).context("reading the server's answer");
        }
        if Instant::now() >= deadline {
            let _ = std::fs::remove_file(&asked);
            bail!(
                "{} is held by another process that did not answer within {} s; \
                 is it a `callscope serve` of this version? (An export holds the file too.)",
                db.display(),
                ANSWER_WITHIN.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The server's key task: every [`KEY_RELOAD`] it answers waiting requests, records
/// when keys were last used, and reloads the ring.
pub struct KeyTask {
    store: Store,
    ring: Arc<KeyRing>,
    /// Keys from the configuration (hex SHA-256, tenant): always in the ring.
    configured: Vec<(String, String)>,
    dir: PathBuf,
}

impl KeyTask {
    /// A task for the server running on `store` with `ring`.
    #[must_use]
    pub fn new(config: &Config, store: Store, ring: Arc<KeyRing>) -> Self {
        Self {
            configured: config
                .api
                .keys
                .iter()
                .map(|k| (k.key_sha256.clone(), k.tenant.clone()))
                .collect(),
            dir: requests_dir(&config.storage.path),
            store,
            ring,
        }
    }

    /// Reloads the ring from the configuration and the database.
    ///
    /// # Errors
    /// The database could not be read, or a hash is malformed (the ring is unchanged).
    pub async fn reload(&self) -> anyhow::Result<()> {
        let stored = self
            .store
            .api_keys()
            .await
            .context("reading stored API keys")?;
        self.ring
            .replace(
                self.configured
                    .iter()
                    .chain(&stored)
                    .map(|(h, t)| (h.as_str(), t.as_str())),
            )
            .context("an API key hash")?;
        Ok(())
    }

    /// One round: records uses (first, so a list answered now shows them), answers
    /// requests, reloads.
    ///
    /// # Errors
    /// The database could not be read or written.
    pub async fn round(&self) -> anyhow::Result<()> {
        let uses = self
            .ring
            .take_uses()
            .into_iter()
            .map(|(h, at)| (h, Timestamp(at)))
            .collect();
        let recorded = self.store.record_api_key_uses(uses).await;
        self.answer_requests().await;
        self.reload().await?;
        recorded.context("recording API key uses")
    }

    async fn answer_requests(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(id) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".request.json"))
            else {
                continue;
            };
            let answer = match std::fs::read(&path)
                .map_err(anyhow::Error::from)
                .and_then(|b| Ok(serde_json::from_slice::<Request>(&b)?))
            {
                Ok(request) => apply(&self.store, &request).await,
                Err(e) => Answer::Failed {
                    message: format!("unreadable request: {e}"),
                },
            };
            if let Answer::Created { fingerprint }
            | Answer::Revoked {
                key: KeyInfo { fingerprint, .. },
            } = &answer
            {
                tracing::info!(%fingerprint, "API keys changed by `callscope keys`.");
            }
            let _ = std::fs::remove_file(&path);
            let answered = self.dir.join(format!("{id}.answer.json"));
            if let Err(e) = serde_json::to_vec(&answer)
                .map_err(std::io::Error::other)
                .and_then(|b| write_whole(&answered, &b))
            {
                tracing::warn!(error = %e, "Cannot write the answer to a key request.");
            }
        }
    }

    /// Runs rounds until `stopped` resolves.
    pub async fn run(self, stopped: impl std::future::Future<Output = ()>) {
        let mut stopped = std::pin::pin!(stopped);
        let mut tick = tokio::time::interval(KEY_RELOAD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = &mut stopped => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.round().await {
                tracing::warn!(error = %format!("{e:#}"), "Reloading API keys failed; keeping the current ones.");
            }
        }
    }
}

/// Creates a key for `tenant` in the database of `config` (through a running server if
/// one holds it) and returns the key and its fingerprint.
///
/// # Errors
/// The tenant is empty, or the key could not be stored.
pub async fn create(config: &Config, tenant: &str) -> anyhow::Result<(String, String)> {
    anyhow::ensure!(!tenant.trim().is_empty(), "--tenant must not be empty");
    let key = generate_key();
    let request = Request::Create {
        key_sha256: key_sha256_hex(&key),
        tenant: tenant.to_owned(),
    };
    match run(config, &request).await? {
        Answer::Created { fingerprint } => Ok((key, fingerprint)),
        Answer::Failed { message } => bail!(message),
        other => bail!("unexpected answer: {other:?}"),
    }
}

/// Formats nanoseconds since the epoch as RFC 3339 (UTC, seconds).
fn when(nanos: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(nanos)
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// The stored keys as a table: fingerprint, tenant, created, last used.
#[must_use]
pub fn format_list(keys: &[KeyInfo]) -> String {
    let mut out = format!(
        "{:<14}{:<24}{:<22}{}\n",
        "FINGERPRINT", "TENANT", "CREATED", "LAST USED"
    );
    for k in keys {
        out.push_str(&format!(
            "{:<14}{:<24}{:<22}{}\n",
            k.fingerprint,
            k.tenant,
            when(k.created_at),
            k.last_used_at.map_or_else(|| "never".to_owned(), when)
        ));
    }
    out
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

    #[test]
    fn requests_and_answers_keep_their_shape_on_disk() {
        let r = Request::Revoke {
            fingerprint: "0123456789ab".into(),
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(text, r#"{"op":"revoke","fingerprint":"0123456789ab"}"#);
        assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), r);
        assert_eq!(
            requests_dir(Path::new("/data/callscope.duckdb")),
            Path::new("/data/callscope.duckdb.key-requests")
        );
    }
}
