//! The console's server side driven directly (no sockets) over a real DuckDB file:
//! sign-in and sessions, the cookie on `/v1`, CSRF and origin checks, sign-out, key
//! removal, rate limiting, security headers and the "call not found" page. One test at
//! the end runs over a real socket, where the client address comes from the connection.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    Router,
    body::Body,
    extract::ConnectInfo,
    http::{HeaderMap, Request, StatusCode, header},
};
use callscope_api::{
    ApiState, KeyRing,
    console::{CONTENT_SECURITY_POLICY, limit::ClientAddr},
    key_sha256_hex, router,
};
use callscope_model::{Category, Level, LogRecord, RecordIdHasher, TenantRecord, Timestamp};
use callscope_store::{Store, StoreConfig};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

const ACME_KEY: &str = "cs_test_acme_0001a2b";
const GLOBEX_KEY: &str = "cs_test_globex";
const HOST: &str = "console.test:8080";
const ORIGIN: &str = "http://console.test:8080";

fn record(tenant: &str, call: &str, n: i64, event: &str, data: Value) -> TenantRecord {
    let mut h = RecordIdHasher::new();
    h.str(tenant).str(call).i64(n);
    TenantRecord {
        tenant: tenant.into(),
        record: LogRecord {
            id: h.finish(),
            timestamp: Timestamp(1_790_000_000_000_000_000 + n * 1_000_000),
            level: Level::Info,
            category: Category::CallLifecycle,
            event: event.into(),
            call_id: call.into(),
            agent_id: None,
            trace_id: None,
            span_id: None,
            data: Some(serde_json::from_value(data).unwrap()),
        },
    }
}

struct Fixture {
    app: Router,
    keys: Arc<KeyRing>,
    _store: Store,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreConfig {
        path: dir.path().join("console.duckdb"),
        ..StoreConfig::default()
    })
    .unwrap();
    let started = json!({"direction": "inbound", "from": "+1 555 0100", "to": "+1 555 0199"});
    store
        .append(vec![
            record("acme", "call-a", 0, "CALL_STARTED", started.clone()),
            record("globex", "call-g", 1, "CALL_STARTED", started),
        ])
        .await
        .unwrap();
    let keys = Arc::new(KeyRing::new());
    keys.insert(&key_sha256_hex(ACME_KEY), "acme").unwrap();
    keys.insert(&key_sha256_hex(GLOBEX_KEY), "globex").unwrap();
    Fixture {
        app: router(ApiState::new(store.clone(), keys.clone())),
        keys,
        _store: store,
        _dir: dir,
    }
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
    fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

async fn send(app: &Router, req: Request<Body>) -> Resp {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

fn from_client(mut req: Request<Body>, ip: [u8; 4]) -> Request<Body> {
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from((ip, 40000))));
    req
}

fn sign_in_request(key: &str, name: &str, next: &str) -> Request<Body> {
    let body =
        serde_urlencoded::to_string([("api_key", key), ("name", name), ("next", next)]).unwrap();
    Request::post("/signin")
        .header(header::HOST, HOST)
        .header(header::ORIGIN, ORIGIN)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap()
}

/// Signs in and returns the cookie pair (`callscope_session=…`) and the CSRF token from
/// the page shell.
async fn sign_in(app: &Router, key: &str, name: &str) -> (String, String) {
    let resp = send(app, sign_in_request(key, name, "/calls")).await;
    assert_eq!(resp.status, StatusCode::SEE_OTHER, "{}", resp.body);
    let cookie = resp
        .header(header::SET_COOKIE)
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let page = send(
        app,
        Request::get("/calls")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(page.status, StatusCode::OK);
    let marker = r#"<meta name="cs-csrf" content=""#;
    let at = page
        .body
        .find(marker)
        .expect("the shell carries the CSRF token")
        + marker.len();
    let token = page.body[at..].split('"').next().unwrap().to_owned();
    assert_eq!(token.len(), 64);
    (cookie, token)
}

fn comment_request(cookie: &str, token: Option<&str>, origin: Option<&str>) -> Request<Body> {
    let mut req = Request::post("/v1/calls/call-a/comments")
        .header(header::HOST, HOST)
        .header(header::COOKIE, cookie)
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(t) = token {
        req = req.header("x-csrf-token", t);
    }
    if let Some(o) = origin {
        req = req.header(header::ORIGIN, o);
    }
    req.body(Body::from(
        r#"{"author":"Ana","text":"Checked the CRM timeout."}"#,
    ))
    .unwrap()
}

#[tokio::test]
async fn sign_in_sets_a_strict_http_only_cookie_and_goes_where_asked() {
    let f = fixture().await;
    let resp = send(
        &f.app,
        sign_in_request(ACME_KEY, "Ana", "/calls?status=failed&q=c123"),
    )
    .await;
    assert_eq!(resp.status, StatusCode::SEE_OTHER);
    assert_eq!(resp.header(header::LOCATION), "/calls?status=failed&q=c123");
    let cookie = resp.header(header::SET_COOKIE);
    for part in [
        "callscope_session=",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=",
    ] {
        assert!(cookie.contains(part), "{cookie} lacks {part}");
    }
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP: a Secure cookie would never come back"
    );
    assert!(
        !cookie.contains(ACME_KEY),
        "the key never goes into the cookie"
    );

    // Behind a TLS-terminating proxy the cookie is Secure.
    let mut req = sign_in_request(ACME_KEY, "", "/calls");
    req.headers_mut()
        .insert("x-forwarded-proto", "https".parse().unwrap());
    let resp = send(&f.app, req).await;
    assert!(resp.header(header::SET_COOKIE).contains("; Secure"));

    // An open redirect is not on offer.
    let resp = send(&f.app, sign_in_request(ACME_KEY, "", "//evil.example/x")).await;
    assert_eq!(resp.header(header::LOCATION), "/calls");

    // A wrong key: the form again, with a message, and no cookie.
    let resp = send(&f.app, sign_in_request("cs_wrong", "Ana", "/calls")).await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    assert!(resp.body.contains("That API key is not valid"));
    assert!(
        resp.body
            .contains(r#"<label for="api-key">API key</label>"#)
    );
    assert!(resp.headers.get(header::SET_COOKIE).is_none());

    // A sign-in form posted from another site is refused.
    let mut req = sign_in_request(ACME_KEY, "", "/calls");
    req.headers_mut()
        .insert(header::ORIGIN, "http://evil.example".parse().unwrap());
    let resp = send(&f.app, req).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert_eq!(resp.json()["error_code"], "FORBIDDEN");
}

#[tokio::test]
async fn pages_need_a_session_and_the_shell_escapes_what_it_shows() {
    let f = fixture().await;
    for path in ["/calls", "/calls/call-a", "/search", "/calls?status=failed"] {
        let resp = send(&f.app, Request::get(path).body(Body::empty()).unwrap()).await;
        assert_eq!(resp.status, StatusCode::SEE_OTHER, "{path}");
        let location = resp.header(header::LOCATION);
        assert!(location.starts_with("/signin?next="), "{path} → {location}");
    }
    let resp = send(&f.app, Request::get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(resp.header(header::LOCATION), "/signin");
    let resp = send(&f.app, Request::get("/signin").body(Body::empty()).unwrap()).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert!(resp.body.contains(r#"name="api_key""#));

    // The name given at sign-in is shown in the page, as text.
    let (cookie, _) = sign_in(&f.app, ACME_KEY, "<script>alert(1)</script>").await;
    let resp = send(
        &f.app,
        Request::get("/calls")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert!(!resp.body.contains("<script>alert(1)"));
    assert!(resp.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(
        resp.body
            .contains(r#"<meta name="cs-tenant" content="acme">"#)
    );
    assert_eq!(resp.header(header::CACHE_CONTROL), "no-store");
    // Without a name, the author is derived from the key's end.
    let (cookie, _) = sign_in(&f.app, ACME_KEY, "").await;
    let resp = send(
        &f.app,
        Request::get("/search")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert!(
        resp.body
            .contains(r#"<meta name="cs-author" content="key …1a2b">"#)
    );
    let resp = send(
        &f.app,
        Request::get("/")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(resp.header(header::LOCATION), "/calls");
}

#[tokio::test]
async fn the_cookie_scopes_v1_like_the_key_and_other_tenants_calls_are_404() {
    let f = fixture().await;
    let (cookie, _) = sign_in(&f.app, ACME_KEY, "Ana").await;
    let get = |uri: &str| {
        Request::get(uri)
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap()
    };
    let resp = send(&f.app, get("/v1/calls")).await;
    assert_eq!(resp.status, StatusCode::OK);
    let ids: Vec<_> = resp.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["call_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["call-a"]);
    let resp = send(&f.app, get("/v1/calls/call-g")).await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    assert_eq!(resp.json()["error_code"], "CALL_NOT_FOUND");

    // The call page: 200 for one's own call, a designed 404 page for another tenant's
    // call and for one that does not exist.
    let resp = send(&f.app, get("/calls/call-a")).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert!(
        resp.body
            .contains(r#"<meta name="cs-page" content="call">"#)
    );
    for other in ["/calls/call-g", "/calls/nope", "/calls/%FF"] {
        let resp = send(&f.app, get(other)).await;
        assert_eq!(resp.status, StatusCode::NOT_FOUND, "{other}");
        assert!(resp.body.contains("Call not found"), "{other}");
        assert!(resp.header(header::CONTENT_TYPE).starts_with("text/html"));
    }

    // Without a key or cookie, /v1 stays a 401 in the JSON shape; a made-up cookie too.
    let resp = send(
        &f.app,
        Request::get("/v1/calls").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    assert_eq!(resp.json()["error_code"], "UNAUTHORIZED");
    let resp = send(
        &f.app,
        Request::get("/v1/calls")
            .header(
                header::COOKIE,
                format!("callscope_session={}", "a".repeat(64)),
            )
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    // A bad Bearer key is not rescued by a good cookie.
    let resp = send(
        &f.app,
        Request::get("/v1/calls")
            .header(header::COOKIE, &cookie)
            .header(header::AUTHORIZATION, "Bearer cs_wrong")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn writes_by_cookie_need_the_csrf_token_and_the_same_origin() {
    let f = fixture().await;
    let (cookie, token) = sign_in(&f.app, ACME_KEY, "Ana").await;

    let refused = [
        (None, Some(ORIGIN)),
        (Some("0".repeat(64)), Some(ORIGIN)),
        (Some(token.clone()), Some("http://evil.example")),
        (
            Some(token.clone()),
            Some("https://console.test:8080.evil.example"),
        ),
        (Some(token.clone()), None),
    ];
    for (t, origin) in refused {
        let resp = send(&f.app, comment_request(&cookie, t.as_deref(), origin)).await;
        assert_eq!(
            resp.status,
            StatusCode::FORBIDDEN,
            "token {t:?} origin {origin:?}"
        );
        let body = resp.json();
        assert_eq!(body["status"], "error");
        assert_eq!(body["error_code"], "FORBIDDEN");
    }
    // The search is a POST too.
    let resp = send(
        &f.app,
        Request::post("/v1/logs/search")
            .header(header::HOST, HOST)
            .header(header::COOKIE, &cookie)
            .header(header::ORIGIN, "http://evil.example")
            .body(Body::from("{}"))
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);

    let ok = send(&f.app, comment_request(&cookie, Some(&token), Some(ORIGIN))).await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.body);
    assert_eq!(ok.json()["author"], "Ana");
    // A same-origin Referer stands in for a missing Origin.
    let mut req = comment_request(&cookie, Some(&token), None);
    req.headers_mut().insert(
        header::REFERER,
        format!("{ORIGIN}/calls/call-a").parse().unwrap(),
    );
    assert_eq!(send(&f.app, req).await.status, StatusCode::CREATED);

    // API clients with a key are not asked for any of it.
    let resp = send(
        &f.app,
        Request::post("/v1/calls/call-a/comments")
            .header(header::AUTHORIZATION, format!("Bearer {ACME_KEY}"))
            .body(Body::from(r#"{"author":"bot","text":"via the API"}"#))
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status, StatusCode::CREATED);
}

#[tokio::test]
async fn sign_out_and_key_removal_end_sessions() {
    let f = fixture().await;
    let (cookie, token) = sign_in(&f.app, ACME_KEY, "Ana").await;
    let sign_out = |token: Option<&str>, origin: &str| {
        let mut req = Request::post("/signout")
            .header(header::HOST, HOST)
            .header(header::ORIGIN, origin)
            .header(header::COOKIE, &cookie);
        if let Some(t) = token {
            req = req.header("x-csrf-token", t);
        }
        req.body(Body::empty()).unwrap()
    };
    // Another site cannot sign the person out, nor can a request without the token.
    assert_eq!(
        send(&f.app, sign_out(None, ORIGIN)).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send(&f.app, sign_out(Some(&token), "http://evil.example"))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let list = || {
        Request::get("/v1/calls")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(send(&f.app, list()).await.status, StatusCode::OK);

    let resp = send(&f.app, sign_out(Some(&token), ORIGIN)).await;
    assert_eq!(resp.status, StatusCode::NO_CONTENT);
    assert!(resp.header(header::SET_COOKIE).contains("Max-Age=0"));
    // The old cookie is refused everywhere.
    assert_eq!(send(&f.app, list()).await.status, StatusCode::UNAUTHORIZED);
    let page = send(
        &f.app,
        Request::get("/calls")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);

    // Removing a key ends every session opened with it, and only those.
    let (acme, _) = sign_in(&f.app, ACME_KEY, "").await;
    let (globex, _) = sign_in(&f.app, GLOBEX_KEY, "").await;
    let list_with = |c: &str| {
        Request::get("/v1/calls")
            .header(header::COOKIE, c)
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(send(&f.app, list_with(&acme)).await.status, StatusCode::OK);
    // What the server's key reload does when `callscope keys revoke` removed the key.
    let (acme_hash, globex_hash) = (key_sha256_hex(ACME_KEY), key_sha256_hex(GLOBEX_KEY));
    f.keys.replace([(globex_hash.as_str(), "globex")]).unwrap();
    assert_eq!(
        send(&f.app, list_with(&acme)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&f.app, list_with(&globex)).await.status,
        StatusCode::OK
    );
    // Putting the key back does not revive the ended session.
    f.keys
        .replace([
            (globex_hash.as_str(), "globex"),
            (acme_hash.as_str(), "acme"),
        ])
        .unwrap();
    assert_eq!(
        send(&f.app, list_with(&acme)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn sign_in_attempts_are_limited_per_client() {
    let f = fixture().await;
    for i in 0..10 {
        let resp = send(
            &f.app,
            from_client(sign_in_request("cs_guess", "", "/calls"), [10, 0, 0, 7]),
        )
        .await;
        assert_eq!(resp.status, StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    // The eleventh, even with the right key, waits.
    let resp = send(
        &f.app,
        from_client(sign_in_request(ACME_KEY, "", "/calls"), [10, 0, 0, 7]),
    )
    .await;
    assert_eq!(resp.status, StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = resp.header(header::RETRY_AFTER).parse().unwrap();
    assert!((1..=6).contains(&wait), "{wait}");
    assert!(resp.headers.get(header::SET_COOKIE).is_none());
    assert!(resp.body.contains("Too many sign-in attempts"));
    // Another client is not held up.
    let resp = send(
        &f.app,
        from_client(sign_in_request(ACME_KEY, "", "/calls"), [10, 0, 0, 8]),
    )
    .await;
    assert_eq!(resp.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn every_response_carries_the_security_headers_and_assets_are_embedded() {
    let f = fixture().await;
    let (cookie, _) = sign_in(&f.app, ACME_KEY, "Ana").await;
    for path in [
        "/signin",
        "/calls",
        "/assets/app.js",
        "/assets/console.css",
        "/v1/calls",
        "/calls/nope",
    ] {
        let resp = send(
            &f.app,
            Request::get(path)
                .header(header::COOKIE, &cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(
            resp.header(header::CONTENT_SECURITY_POLICY),
            CONTENT_SECURITY_POLICY,
            "{path}"
        );
        assert_eq!(
            resp.header(header::X_CONTENT_TYPE_OPTIONS),
            "nosniff",
            "{path}"
        );
        assert_eq!(
            resp.header(header::REFERRER_POLICY),
            "same-origin",
            "{path}"
        );
    }
    assert!(CONTENT_SECURITY_POLICY.contains("script-src 'self';"));
    assert!(CONTENT_SECURITY_POLICY.contains("frame-ancestors 'none'"));

    let js = send(
        &f.app,
        Request::get("/assets/call.js").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(js.status, StatusCode::OK);
    assert!(
        js.header(header::CONTENT_TYPE)
            .starts_with("text/javascript")
    );
    // Customer data reaches the page as text only.
    for asset in [
        "app.js",
        "api.js",
        "dom.js",
        "format.js",
        "calls.js",
        "call.js",
        "search.js",
    ] {
        let resp = send(
            &f.app,
            Request::get(format!("/assets/{asset}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(resp.status, StatusCode::OK, "{asset}");
        assert!(!resp.body.contains("innerHTML"), "{asset} uses innerHTML");
        assert!(!resp.body.contains("insertAdjacentHTML"), "{asset}");
        assert!(!resp.body.contains("document.write"), "{asset}");
    }
    // No inline script, no inline handler, nothing from another origin in the pages.
    for path in ["/signin", "/calls"] {
        let resp = send(
            &f.app,
            Request::get(path)
                .header(header::COOKIE, &cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert!(!resp.body.contains("<script>"), "{path}");
        assert!(!resp.body.contains(" onclick="), "{path}");
        assert!(!resp.body.contains("https://"), "{path}");
    }
    let missing = send(
        &f.app,
        Request::get("/assets/nope.js").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    // An unknown page for a browser is a page; for an API client, the JSON error.
    let resp = send(
        &f.app,
        Request::get("/nowhere")
            .header(header::COOKIE, &cookie)
            .header(header::ACCEPT, "text/html,application/xhtml+xml")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    assert!(resp.header(header::CONTENT_TYPE).starts_with("text/html"));
    let resp = send(
        &f.app,
        Request::get("/v1/nowhere").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(resp.json()["error_code"], "NOT_FOUND");
}

/// Over a real socket the limit follows the connection's address, and the session
/// cookie works as a browser would send it.
#[tokio::test]
async fn over_a_real_socket() {
    let f = fixture().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = f.app.clone();
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<ClientAddr>(),
        )
        .await
        .unwrap();
    });
    let base = format!("http://{addr}");
    let raw = |req: String| async move {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    };
    let form = format!("api_key={ACME_KEY}&name=Ana&next=%2Fcalls");
    let resp = raw(format!(
        "POST /signin HTTP/1.1\r\nHost: {addr}\r\nOrigin: {base}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    ))
    .await;
    assert!(resp.starts_with("HTTP/1.1 303"), "{resp}");
    let cookie = resp
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|v| v.split(';').next())
        .unwrap()
        .to_owned();
    let resp = raw(format!(
        "GET /v1/calls HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
    ))
    .await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("call-a") && !resp.contains("call-g"));
    // Ten more attempts from this address use up its bucket.
    let mut last = String::new();
    for _ in 0..10 {
        last = raw(format!(
            "POST /signin HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 10\r\nConnection: close\r\n\r\napi_key=xx"
        ))
        .await;
    }
    assert!(last.starts_with("HTTP/1.1 429"), "{last}");
    assert!(last.to_ascii_lowercase().contains("retry-after: "));
    server.abort();
}
