//! Console sessions: an API key exchanged at sign-in for a random session id kept in an
//! `HttpOnly` cookie, and the checks every cookie-authenticated request goes through.
//!
//! Sessions live in memory (a restart signs everyone out), at most
//! [`SessionLimits::max_sessions`] of them. A session remembers the SHA-256 of the key
//! it was opened with, never the key, and every request re-checks that the
//! [`KeyRing`] still holds that hash: revoking or removing the key ends its sessions.
//! The map is keyed by the SHA-256 of the session id, so the ids themselves are never
//! stored and never logged.

use std::{collections::HashMap, sync::Arc, time::Duration};

use axum::http::{HeaderMap, HeaderValue, header};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use std::time::Instant;
use subtle::ConstantTimeEq;

use crate::{ApiError, KeyRing};

/// The session cookie's name.
pub const COOKIE_NAME: &str = "callscope_session";

/// The request header that carries the session's CSRF token on state changes.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// How long sessions last and how many are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// A session unused this long ends.
    pub idle: Duration,
    /// A session ends this long after sign-in, however busy.
    pub absolute: Duration,
    /// At most this many sessions at once; signing in past it ends the least recently
    /// used one.
    pub max_sessions: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(8 * 3600),
            absolute: Duration::from_secs(7 * 24 * 3600),
            max_sessions: 10_000,
        }
    }
}

/// What a live session knows.
#[derive(Debug, Clone)]
pub struct Session {
    /// The tenant whose data it may read.
    pub tenant: Arc<str>,
    /// Sent back in [`CSRF_HEADER`] on every state change.
    pub csrf_token: Arc<str>,
    /// Comment author: the name given at sign-in, else a label derived from the key.
    pub author: Arc<str>,
    key_sha256: [u8; 32],
}

#[derive(Debug)]
struct Entry {
    session: Session,
    created: Instant,
    last_seen: Instant,
}

/// The live console sessions.
#[derive(Debug)]
pub struct Sessions {
    limits: SessionLimits,
    by_id_hash: Mutex<HashMap<[u8; 32], Entry>>,
}

impl Default for Sessions {
    fn default() -> Self {
        Self::new(SessionLimits::default())
    }
}

/// 256 random bits from the operating system, as 64 hex digits.
fn random_token() -> String {
    let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    // Two version-4 UUIDs carry 244 random bits; hashing them spreads those over the
    // whole token.
    let mut h = Sha256::new();
    h.update(a.as_bytes());
    h.update(b.as_bytes());
    hex::encode(h.finalize())
}

fn id_hash(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl Sessions {
    /// No sessions yet, with these limits.
    #[must_use]
    pub fn new(limits: SessionLimits) -> Self {
        Self {
            limits,
            by_id_hash: Mutex::new(HashMap::new()),
        }
    }

    /// The limits in force.
    #[must_use]
    pub fn limits(&self) -> SessionLimits {
        self.limits
    }

    /// Opens a session for a key (by its SHA-256) of `tenant`; returns the new session
    /// id (for the cookie, shown to no one else) and the session.
    pub fn create(
        &self,
        tenant: Arc<str>,
        key_sha256: [u8; 32],
        author: &str,
    ) -> (String, Session) {
        self.create_at(tenant, key_sha256, author, Instant::now())
    }

    fn create_at(
        &self,
        tenant: Arc<str>,
        key_sha256: [u8; 32],
        author: &str,
        now: Instant,
    ) -> (String, Session) {
        let id = random_token();
        let session = Session {
            tenant,
            csrf_token: random_token().into(),
            author: author.into(),
            key_sha256,
        };
        let mut map = self.by_id_hash.lock();
        if map.len() >= self.limits.max_sessions {
            map.retain(|_, e| !self.expired(e, now));
        }
        while map.len() >= self.limits.max_sessions.max(1) {
            let Some(oldest) = map.iter().min_by_key(|(_, e)| e.last_seen).map(|(k, _)| *k) else {
                break;
            };
            map.remove(&oldest);
        }
        map.insert(
            id_hash(&id),
            Entry {
                session: session.clone(),
                created: now,
                last_seen: now,
            },
        );
        (id, session)
    }

    fn expired(&self, e: &Entry, now: Instant) -> bool {
        now.saturating_duration_since(e.last_seen) >= self.limits.idle
            || now.saturating_duration_since(e.created) >= self.limits.absolute
    }

    /// The live session with this id, its idle clock restarted. A session past its idle
    /// or absolute limit, or whose key `keys` no longer holds, is ended and not
    /// returned.
    pub fn get(&self, id: &str, keys: &KeyRing) -> Option<Session> {
        self.get_at(id, keys, Instant::now())
    }

    fn get_at(&self, id: &str, keys: &KeyRing, now: Instant) -> Option<Session> {
        let hash = id_hash(id);
        let mut map = self.by_id_hash.lock();
        let entry = map.get_mut(&hash)?;
        let key_still_valid = keys
            .tenant_for_hash(&entry.session.key_sha256)
            .is_some_and(|t| t == entry.session.tenant);
        if self.expired(entry, now) || !key_still_valid {
            map.remove(&hash);
            return None;
        }
        entry.last_seen = now;
        Some(entry.session.clone())
    }

    /// Ends the session with this id, if there is one.
    pub fn remove(&self, id: &str) {
        self.by_id_hash.lock().remove(&id_hash(id));
    }

    /// How many sessions are held (expired ones included until they are next looked
    /// at or pruned).
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_id_hash.lock().len()
    }

    /// No sessions held?
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The session id in the request's `Cookie` header, if any.
#[must_use]
pub fn cookie_value(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE_NAME && !value.is_empty()).then_some(value)
        })
}

/// Did the request reach us over TLS? callscope serves plain HTTP itself, so this is
/// the TLS-terminating proxy's `X-Forwarded-Proto: https`. Trusting it costs nothing:
/// a client that sends it falsely only gets a cookie its plain-HTTP browser will not
/// send back.
#[must_use]
pub fn is_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .next()
                .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
        })
}

/// The `Set-Cookie` value that stores `id` (or, with `None`, clears the cookie).
#[must_use]
pub fn set_cookie(id: Option<&str>, limits: SessionLimits, https: bool) -> HeaderValue {
    let secure = if https { "; Secure" } else { "" };
    let value = match id {
        Some(id) => format!(
            "{COOKIE_NAME}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            limits.absolute.as_secs()
        ),
        None => format!("{COOKIE_NAME}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    };
    // Built only from hex digits and fixed text.
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("invalid=1"))
}

/// The request's own host (`Host`, else the URI's authority, as HTTP/2 sends it).
fn own_host<'a>(headers: &'a HeaderMap, uri: &'a axum::http::Uri) -> Option<&'a str> {
    headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(axum::http::uri::Authority::as_str))
}

/// `scheme://authority[/…]` → `authority`.
fn authority_of(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some(&rest[..end])
}

/// Does the request come from a page of this same host? Its `Origin`, else its
/// `Referer`, must name the host the request was sent to. A request with neither is
/// not same-origin.
#[must_use]
pub fn same_origin(headers: &HeaderMap, uri: &axum::http::Uri) -> bool {
    let Some(host) = own_host(headers, uri) else {
        return false;
    };
    let source = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    source
        .and_then(authority_of)
        .is_some_and(|a| a.eq_ignore_ascii_case(host))
}

/// A state change by cookie needs the session's CSRF token and a same-origin request.
///
/// # Errors
/// [`ApiError::Forbidden`] when the token is missing or wrong, or the request comes
/// from another origin.
pub fn check_csrf(
    headers: &HeaderMap,
    uri: &axum::http::Uri,
    session: &Session,
) -> Result<(), ApiError> {
    let token_ok = headers
        .get(CSRF_HEADER)
        .is_some_and(|v| bool::from(v.as_bytes().ct_eq(session.csrf_token.as_bytes())));
    if !token_ok {
        return Err(ApiError::Forbidden(
            "Missing or invalid CSRF token for a console session request".into(),
        ));
    }
    if !same_origin(headers, uri) {
        return Err(ApiError::Forbidden(
            "A console session request must come from the console's own origin".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{key_sha256, key_sha256_hex};

    fn ring(keys: &[(&str, &str)]) -> KeyRing {
        let ring = KeyRing::new();
        for (k, t) in keys {
            ring.insert(&key_sha256_hex(k), t).unwrap();
        }
        ring
    }

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn idle_and_absolute_expiry_end_sessions() {
        let keys = ring(&[("k1", "acme")]);
        let sessions = Sessions::new(SessionLimits {
            idle: 60 * SEC,
            absolute: 150 * SEC,
            max_sessions: 10,
        });
        let t0 = Instant::now();
        let (id, s) = sessions.create_at("acme".into(), key_sha256("k1"), "Ana", t0);
        assert_eq!(&*s.tenant, "acme");
        assert_eq!(id.len(), 64);
        assert!(
            sessions.get_at(&id, &keys, t0 + 50 * SEC).is_some(),
            "used within the idle limit"
        );
        assert!(
            sessions.get_at(&id, &keys, t0 + 100 * SEC).is_some(),
            "idle clock restarted by use"
        );
        assert!(
            sessions.get_at(&id, &keys, t0 + 155 * SEC).is_none(),
            "past the absolute limit"
        );
        assert!(sessions.is_empty());

        let (id, _) = sessions.create_at("acme".into(), key_sha256("k1"), "Ana", t0);
        assert!(
            sessions.get_at(&id, &keys, t0 + 61 * SEC).is_none(),
            "idle too long"
        );
    }

    #[test]
    fn a_session_ends_with_its_key_and_ids_are_unguessable() {
        let keys = ring(&[("k1", "acme")]);
        let sessions = Sessions::default();
        let (id, s) = sessions.create("acme".into(), key_sha256("k1"), "");
        let (id2, s2) = sessions.create("acme".into(), key_sha256("k1"), "");
        assert_ne!(id, id2);
        assert_ne!(s.csrf_token, s2.csrf_token);
        assert_ne!(*s.csrf_token, *id);
        assert!(sessions.get("0".repeat(64).as_str(), &keys).is_none());
        assert!(sessions.get(&id, &keys).is_some());
        // The ring no longer holds the key: every session opened with it ends.
        let other = ring(&[("k2", "acme")]);
        assert!(sessions.get(&id, &other).is_none());
        assert!(sessions.get(&id2, &other).is_none());
        assert!(
            sessions.get(&id, &keys).is_none(),
            "ended, not just refused"
        );
    }

    #[test]
    fn the_number_of_sessions_is_bounded() {
        let keys = ring(&[("k1", "acme")]);
        let sessions = Sessions::new(SessionLimits {
            max_sessions: 3,
            ..SessionLimits::default()
        });
        let t0 = Instant::now();
        let ids: Vec<_> = (0..3u32)
            .map(|i| {
                sessions
                    .create_at("acme".into(), key_sha256("k1"), "", t0 + i * SEC)
                    .0
            })
            .collect();
        // The first is used again, so the second is now the least recently used.
        assert!(sessions.get_at(&ids[0], &keys, t0 + 4 * SEC).is_some());
        let (newest, _) = sessions.create_at("acme".into(), key_sha256("k1"), "", t0 + 5 * SEC);
        assert_eq!(sessions.len(), 3);
        assert!(sessions.get_at(&ids[1], &keys, t0 + 6 * SEC).is_none());
        assert!(sessions.get_at(&ids[0], &keys, t0 + 6 * SEC).is_some());
        assert!(sessions.get_at(&newest, &keys, t0 + 6 * SEC).is_some());
    }

    #[test]
    fn cookie_flags_and_parsing() {
        let limits = SessionLimits::default();
        let v = set_cookie(Some("abc"), limits, false);
        let v = v.to_str().unwrap();
        for part in [
            "callscope_session=abc",
            "Path=/",
            "HttpOnly",
            "SameSite=Strict",
            "Max-Age=604800",
        ] {
            assert!(v.contains(part), "{v} lacks {part}");
        }
        assert!(!v.contains("Secure"));
        assert!(
            set_cookie(Some("abc"), limits, true)
                .to_str()
                .unwrap()
                .ends_with("; Secure")
        );
        assert!(
            set_cookie(None, limits, false)
                .to_str()
                .unwrap()
                .contains("Max-Age=0")
        );

        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; callscope_session=xyz; b=2"),
        );
        assert_eq!(cookie_value(&h), Some("xyz"));
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("callscope_sessionx=1"),
        );
        assert_eq!(cookie_value(&h), None);
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(is_https(&h));
    }

    #[test]
    fn origin_must_name_the_requests_own_host() {
        let uri: axum::http::Uri = "/v1/calls/c1/comments".parse().unwrap();
        let with = |pairs: &[(header::HeaderName, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(k.clone(), HeaderValue::from_static(v));
            }
            same_origin(&h, &uri)
        };
        assert!(with(&[
            (header::HOST, "127.0.0.1:8080"),
            (header::ORIGIN, "http://127.0.0.1:8080")
        ]));
        assert!(with(&[
            (header::HOST, "127.0.0.1:8080"),
            (header::REFERER, "http://127.0.0.1:8080/calls/c1")
        ]));
        assert!(!with(&[
            (header::HOST, "127.0.0.1:8080"),
            (header::ORIGIN, "http://evil.example")
        ]));
        assert!(!with(&[
            (header::HOST, "127.0.0.1:8080"),
            (header::ORIGIN, "http://127.0.0.1:8081")
        ]));
        assert!(!with(&[
            (header::HOST, "127.0.0.1:8080"),
            (header::ORIGIN, "null")
        ]));
        assert!(
            !with(&[(header::HOST, "127.0.0.1:8080")]),
            "neither Origin nor Referer"
        );
        assert!(!with(&[
            (header::HOST, "a.example"),
            (header::REFERER, "http://a.example.evil/x")
        ]));
    }
}
