//! The console: the web pages a customer's support engineers read their call logs in,
//! served by the API router at `/`.
//!
//! The pages are a small hand-written front end (HTML, CSS and JavaScript modules in
//! `crates/callscope-api/console/`), embedded in the binary with `include_str!`, so
//! `cargo build` is the whole build and nothing is fetched at run time. The pages read
//! their data from the same `/v1` JSON API as every other client, authenticated by the
//! session cookie this module issues at sign-in ([`session`]); scoping and validation
//! therefore live in one place, the API's handlers. Customer data is rendered only
//! through DOM text APIs in the browser, never as markup, and every response carries a
//! Content-Security-Policy that allows the console's own scripts only.
//!
//! Server-side, this module renders very little: the sign-in page (with its error
//! message), the page shell (the session's CSRF token, tenant and author in `<meta>`
//! tags) and the "call not found" page, all HTML-escaped.

pub mod limit;
pub mod session;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::{
    Router,
    body::Body,
    extract::{ConnectInfo, Path, Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header, request::Parts},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use serde::Deserialize;

use crate::{ApiError, ApiState, auth::Tenant};
use session::{Session, check_csrf, cookie_value, is_https, same_origin, set_cookie};

/// The Content-Security-Policy of every response: the console's own scripts, styles and
/// images only; media (a call's recording) may come from elsewhere; no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self' https: http:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The embedded files under `/assets/`: name, media type, content.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "console.css",
        "text/css; charset=utf-8",
        include_str!("../../console/console.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../console/js/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_str!("../../console/js/api.js"),
    ),
    (
        "dom.js",
        "text/javascript; charset=utf-8",
        include_str!("../../console/js/dom.js"),
    ),
    (
        "format.js",
        "text/javascript; charset=utf-8",
        include_str!("../../console/js/format.js"),
    ),
    (
        "calls.js",
        "text/javascript; charset=utf-8",
        include_str!("../../console/js/calls.js"),
    ),
    (
        "call.js",
        "text/javascript; charset=utf-8",
        include_str!("../../console/js/call.js"),
    ),
    (
        "search.js",
        "text/javascript; charset=utf-8",
        include_str!("../../console/js/search.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("../../console/favicon.svg"),
    ),
];

const SHELL: &str = include_str!("../../console/app.html");
const SIGN_IN: &str = include_str!("../../console/signin.html");
const NOT_FOUND_MAIN: &str = include_str!("../../console/notfound.html");
const LOADING_MAIN: &str = r#"<div class="state state-loading" role="status"><span class="spinner" aria-hidden="true"></span> Loading…</div>"#;

/// The console's routes (pages, sign-in and sign-out, assets).
pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/", get(root))
        .route("/signin", get(sign_in_page).post(sign_in))
        .route("/signout", post(sign_out))
        .route("/calls", get(calls_page))
        .route("/calls/{call_id}", get(call_page))
        .route("/search", get(search_page))
        .route("/assets/{name}", get(asset))
        .route("/favicon.ico", get(favicon))
}

/// Adds the security headers to every response.
pub(crate) async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    resp
}

/// The tenant of the request's console session cookie; the [`Tenant`] extractor's path
/// when there is no `Authorization` header.
pub(crate) fn session_tenant(parts: &Parts, state: &ApiState) -> Result<Tenant, ApiError> {
    let id = cookie_value(&parts.headers).ok_or(ApiError::Unauthorized)?;
    let session = state
        .sessions
        .get(id, &state.keys)
        .ok_or(ApiError::Unauthorized)?;
    if !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
        check_csrf(&parts.headers, &parts.uri, &session)?;
    }
    Ok(Tenant(session.tenant))
}

fn session_of(headers: &HeaderMap, state: &ApiState) -> Option<Session> {
    cookie_value(headers).and_then(|id| state.sessions.get(id, &state.keys))
}

/// Text made safe for HTML element content and quoted attribute values.
#[must_use]
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `template` with each `{{name}}` replaced by its value from `vars`, HTML-escaped, in
/// one pass (a value that itself looks like a placeholder stays text). `{{main}}` takes
/// `main` unescaped: it is always fixed markup of this module, never data.
fn fill(template: &str, vars: &[(&str, &str)], main: &str) -> String {
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let name = &after[..end];
        if name == "main" {
            out.push_str(main);
        } else if let Some((_, value)) = vars.iter().find(|(n, _)| *n == name) {
            out.push_str(&escape_html(value));
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// The page shell for a signed-in session: `page` tells the script which page to
/// build; `main` is fixed markup (never data) shown until it does.
fn shell(status: StatusCode, session: &Session, page: &str, main: &str) -> Response {
    let body = fill(
        SHELL,
        &[
            ("csrf", &session.csrf_token),
            ("tenant", &session.tenant),
            ("author", &session.author),
            ("page", page),
        ],
        main,
    );
    html(status, body)
}

/// A relative link back into the console, or `/calls` when `next` is anything else
/// (another host, a scheme, a protocol-relative `//` link).
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && n.len() <= 2000
                && !n.chars().any(char::is_control)
                && !n.starts_with("/signin") =>
        {
            n
        }
        _ => "/calls",
    }
}

fn to_sign_in(uri: &Uri) -> Response {
    let next = uri
        .path_and_query()
        .map_or("/calls", axum::http::uri::PathAndQuery::as_str);
    let target = format!(
        "/signin?{}",
        serde_urlencoded::to_string([("next", next)]).unwrap_or_default()
    );
    Redirect::to(&target).into_response()
}

async fn root(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    if session_of(&headers, &state).is_some() {
        Redirect::to("/calls").into_response()
    } else {
        Redirect::to("/signin").into_response()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NextQuery {
    next: Option<String>,
}

fn sign_in_form(status: StatusCode, error: &str, next: &str, name: &str) -> Response {
    let hidden = if error.is_empty() { "hidden" } else { "" };
    html(
        status,
        fill(
            SIGN_IN,
            &[
                ("error", error),
                ("error_hidden", hidden),
                ("next", next),
                ("name", name),
            ],
            "",
        ),
    )
}

async fn sign_in_page(State(state): State<ApiState>, headers: HeaderMap, uri: Uri) -> Response {
    let query: NextQuery =
        serde_urlencoded::from_str(uri.query().unwrap_or("")).unwrap_or_default();
    let next = safe_next(query.next.as_deref());
    if session_of(&headers, &state).is_some() {
        return Redirect::to(next).into_response();
    }
    sign_in_form(StatusCode::OK, "", next, "")
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SignInForm {
    api_key: String,
    name: String,
    next: Option<String>,
}

/// The most a person's name may take in comments.
const MAX_NAME_CHARS: usize = 80;

/// The comment author for a session: the name given, tidied, else `key …` and the
/// key's last four characters (enough to tell one's keys apart, too few to matter).
fn author_for(name: &str, key: &str) -> String {
    let name: String = name
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_CHARS)
        .collect();
    let name = name.trim();
    if name.is_empty() {
        let tail: String = key
            .chars()
            .rev()
            .take(4)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("key …{tail}")
    } else {
        name.to_owned()
    }
}

async fn sign_in(State(state): State<ApiState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let client = parts
        .extensions
        .get::<ConnectInfo<limit::ClientAddr>>()
        .map(|c| c.0.0.ip())
        .or_else(|| {
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip())
        })
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    if let Err(wait) = state.sign_in_limiter.attempt(client) {
        let secs = wait.as_secs().max(1);
        let mut resp = sign_in_form(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("Too many sign-in attempts. Try again in {secs} seconds."),
            "/calls",
            "",
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return resp;
    }
    // A sign-in form posted from another site would sign the victim in as the
    // attacker; browsers send `Origin` on every form POST.
    if parts.headers.contains_key(header::ORIGIN) && !same_origin(&parts.headers, &parts.uri) {
        return ApiError::Forbidden("Sign-in must come from the console's own page".into())
            .into_response();
    }
    let Ok(bytes) = axum::body::to_bytes(body, 16 * 1024).await else {
        return sign_in_form(
            StatusCode::BAD_REQUEST,
            "The form could not be read.",
            "/calls",
            "",
        );
    };
    let form: SignInForm = serde_urlencoded::from_bytes(&bytes).unwrap_or_default();
    let next = safe_next(form.next.as_deref()).to_owned();
    let key = form.api_key.trim();
    let Some(tenant) = (!key.is_empty())
        .then(|| state.keys.tenant_for(key))
        .flatten()
    else {
        let msg = if key.is_empty() {
            "Enter your API key."
        } else {
            "That API key is not valid. Check it and try again."
        };
        return sign_in_form(StatusCode::UNAUTHORIZED, msg, &next, &form.name);
    };
    let author = author_for(&form.name, key);
    let (id, _) = state
        .sessions
        .create(tenant.clone(), crate::auth::key_sha256(key), &author);
    tracing::info!(%tenant, "Console sign-in.");
    let mut resp = Redirect::to(&next).into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(Some(&id), state.sessions.limits(), is_https(&parts.headers)),
    );
    resp
}

async fn sign_out(State(state): State<ApiState>, headers: HeaderMap, uri: Uri) -> Response {
    let clear = set_cookie(None, state.sessions.limits(), is_https(&headers));
    if let Some(id) = cookie_value(&headers)
        && let Some(session) = state.sessions.get(id, &state.keys)
    {
        if let Err(e) = check_csrf(&headers, &uri, &session) {
            return e.into_response();
        }
        state.sessions.remove(id);
    }
    (StatusCode::NO_CONTENT, [(header::SET_COOKIE, clear)]).into_response()
}

async fn calls_page(State(state): State<ApiState>, headers: HeaderMap, uri: Uri) -> Response {
    match session_of(&headers, &state) {
        Some(s) => shell(StatusCode::OK, &s, "calls", LOADING_MAIN),
        None => to_sign_in(&uri),
    }
}

async fn search_page(State(state): State<ApiState>, headers: HeaderMap, uri: Uri) -> Response {
    match session_of(&headers, &state) {
        Some(s) => shell(StatusCode::OK, &s, "search", LOADING_MAIN),
        None => to_sign_in(&uri),
    }
}

async fn call_page(
    State(state): State<ApiState>,
    headers: HeaderMap,
    uri: Uri,
    call_id: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Response {
    let Some(session) = session_of(&headers, &state) else {
        return to_sign_in(&uri);
    };
    let Ok(Path(call_id)) = call_id else {
        return shell(StatusCode::NOT_FOUND, &session, "not-found", NOT_FOUND_MAIN);
    };
    // The same query as `GET /v1/calls/{call_id}`: another tenant's call is "not found"
    // exactly like one that does not exist.
    match state.store.call(&session.tenant, &call_id).await {
        Ok(None) => shell(StatusCode::NOT_FOUND, &session, "not-found", NOT_FOUND_MAIN),
        // The page's own requests will show the error state if storage stays unwell.
        Ok(Some(_)) | Err(_) => shell(StatusCode::OK, &session, "call", LOADING_MAIN),
    }
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                // Revalidated on each load: the binary may have been upgraded.
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *body,
        )
            .into_response(),
        None => ApiError::NotFound.into_response(),
    }
}

async fn favicon() -> Response {
    asset(Path("favicon.svg".into())).await
}

/// Unknown paths: a page for browsers (for a signed-in person the console's "not
/// found" page, else the sign-in page), the JSON error for API clients.
pub(crate) async fn not_found(State(state): State<ApiState>, req: Request<Body>) -> Response {
    let wants_html = !req.uri().path().starts_with("/v1/")
        && req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/html"));
    if !wants_html || req.method() != Method::GET {
        return ApiError::NotFound.into_response();
    }
    match session_of(req.headers(), &state) {
        Some(s) => shell(StatusCode::NOT_FOUND, &s, "not-found", NOT_FOUND_MAIN),
        None => to_sign_in(req.uri()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_redirect_targets() {
        assert_eq!(
            escape_html(r#"<img src=x onerror="alert(1)">&'"#),
            "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;&#39;"
        );
        assert_eq!(
            safe_next(Some("/calls?status=failed")),
            "/calls?status=failed"
        );
        assert_eq!(safe_next(Some("//evil.example/")), "/calls");
        assert_eq!(safe_next(Some("https://evil.example/")), "/calls");
        assert_eq!(safe_next(Some("/\\evil.example")), "/calls");
        assert_eq!(safe_next(Some("/signin")), "/calls");
        assert_eq!(safe_next(None), "/calls");
        assert_eq!(author_for("  Ana \n", "cs_abcd1a2b"), "Ana");
        assert_eq!(author_for("", "cs_abcd1a2b"), "key …1a2b");
        assert_eq!(
            fill(
                "<p>{{a}}</p>{{main}}{{b}}",
                &[("a", "{{b}}<"), ("b", "x")],
                "<i>"
            ),
            "<p>{{b}}&lt;</p><i>x"
        );
    }
}
