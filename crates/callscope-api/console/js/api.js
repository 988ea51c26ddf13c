// The console's only way to the server: the same /v1 JSON API every client uses,
// authenticated by the session cookie, with the session's CSRF token on every
// state-changing request.

export function meta(name) {
  const m = document.querySelector(`meta[name="${name}"]`);
  return m ? m.getAttribute('content') : '';
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function toSignIn() {
  const next = location.pathname + location.search + location.hash;
  location.assign('/signin?next=' + encodeURIComponent(next));
}

/**
 * Calls the API and returns the parsed JSON. Errors throw ApiError with the API's
 * error_code; a 401 (session ended) goes back to the sign-in page.
 */
export async function api(path, { method = 'GET', body, signal } = {}) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET' && method !== 'HEAD') headers['X-CSRF-Token'] = meta('cs-csrf');
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      signal,
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'NETWORK', 'The server could not be reached. Check your connection and try again.');
  }
  if (resp.status === 401) {
    toSignIn();
    throw new ApiError(401, 'UNAUTHORIZED', 'Your session has ended. Sign in again.');
  }
  let data = null;
  const text = await resp.text();
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!resp.ok) {
    throw new ApiError(resp.status, data?.error_code || 'HTTP_' + resp.status,
      data?.message || `The server answered ${resp.status}.`);
  }
  return data;
}

/** True when the error means "this route does not exist on this server". */
export function isMissingRoute(e) {
  return e instanceof ApiError && e.status === 404 && e.code === 'NOT_FOUND';
}

/** Ends the session on the server, then goes to the sign-in page. */
export async function signOut() {
  try {
    await fetch('/signout', {
      method: 'POST',
      headers: { 'X-CSRF-Token': meta('cs-csrf') },
      credentials: 'same-origin',
    });
  } finally {
    location.assign('/signin');
  }
}

/**
 * Follows a server-sent event stream of log records, calling onRecord for each. If
 * the stream cannot be opened (or breaks for good) onFail is called once, so the
 * caller can fall back to polling. Returns a function that closes the stream.
 */
export function followStream(url, onRecord, onFail, onOpen) {
  if (typeof EventSource === 'undefined') {
    onFail();
    return () => {};
  }
  let failed = false;
  const es = new EventSource(url, { withCredentials: true });
  es.addEventListener('open', () => onOpen && onOpen());
  es.addEventListener('log', (ev) => {
    try { onRecord(JSON.parse(ev.data)); } catch { /* a malformed event is skipped */ }
  });
  es.addEventListener('error', () => {
    // EventSource reconnects by itself after a dropped connection; CLOSED means the
    // server refused the stream (no such route, an error status), so poll instead.
    if (es.readyState === EventSource.CLOSED && !failed) {
      failed = true;
      onFail();
    }
  });
  return () => es.close();
}
