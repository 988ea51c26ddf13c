// DOM helpers. Customer data only ever becomes text nodes or attribute values set
// through the DOM; nothing here parses markup.

/**
 * Creates an element. `attrs`: `class`, `text` (textContent), `dataset` (object),
 * `on` (event name -> handler), `style` (object of custom properties or styles);
 * any other key is set as an attribute (true -> empty attribute, false/null -> none).
 * Children: nodes, strings (text nodes), arrays, null/false (skipped).
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = String(v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'on') for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else if (k === 'style') for (const [p, val] of Object.entries(v)) el.style.setProperty(p, val);
    else if (k.startsWith('on')) throw new Error('use the `on` object for handlers');
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function replace(el, ...children) {
  clear(el);
  return append(el, children);
}

/** A link target from customer data: only http(s) URLs, else null. */
export function safeUrl(u) {
  if (typeof u !== 'string' || u === '') return null;
  try {
    const url = new URL(u, location.href);
    return url.protocol === 'https:' || url.protocol === 'http:' ? url.href : null;
  } catch {
    return null;
  }
}

/** An empty, loading or error state. */
export function stateBox(kind, title, detail, ...actions) {
  const icon = { empty: '∅', error: '!', loading: null }[kind] ?? 'i';
  if (kind === 'loading') {
    return h('div', { class: 'state state-loading', role: 'status' },
      h('span', { class: 'spinner', 'aria-hidden': 'true' }), title || 'Loading…');
  }
  return h('div', { class: `state state-${kind}`, role: kind === 'error' ? 'alert' : null },
    h('div', { class: 'state-icon', 'aria-hidden': 'true', text: icon }),
    h('h2', { text: title }),
    detail ? h('p', { text: detail }) : null,
    actions.length ? h('p', {}, actions) : null);
}

let toastTimer;
/** A short message at the bottom of the page, read out by screen readers. */
export function toast(message) {
  const t = document.getElementById('toast');
  if (!t) return;
  t.textContent = message;
  t.classList.add('show');
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => t.classList.remove('show'), 2200);
}

/** Copies text to the clipboard, with a fallback for browsers without the async API. */
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const ta = h('textarea', { class: 'visually-hidden', readonly: true });
    ta.value = text;
    document.body.append(ta);
    ta.select();
    let ok = false;
    try { ok = document.execCommand('copy'); } catch { ok = false; }
    ta.remove();
    return ok;
  }
}
