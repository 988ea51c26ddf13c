// The call logs report (/calls): filters kept in the URL under the API's own
// parameter names, the calls table, paging, downloads of exactly the filtered list,
// and new calls arriving without a reload.

import { api, followStream } from './api.js';
import { h, replace, safeUrl, stateBox } from './dom.js';
import * as fmt from './format.js';

const PAGE_SIZES = [25, 50, 100, 200];
const DEFAULT_LIMIT = 50;
const POLL_MS = 5000;

// The report's columns: the nine of the call-logs report, then the call's p95 turn
// latency (end to end, from its TURN_LATENCY events). Second: the header's tooltip.
const COLUMNS = [
  ['Call ID'], ['Recording'], ['Direction'], ['From'], ['To'], ['Duration'],
  ['Turn p95', 'The 95th percentile of the call\'s turn latencies, end to end'],
  ['Start time'], ['Status'], ['Hangup reason'],
];
const NUMERIC = new Set(['Duration', 'Turn p95']);
const STATUSES = ['in_progress', 'completed', 'failed', 'canceled', 'missed'];
const TEXT_FILTERS = [
  ['from_number', 'From', 'Digits of the caller'],
  ['to_number', 'To', 'Digits of the callee'],
  ['hangup_reason', 'Hangup reason', 'e.g. no_answer'],
  ['hangup_source', 'Hangup source', 'e.g. caller'],
  ['campaign_id', 'Campaign ID', ''],
];
const RANGES = [
  ['ringing_duration_ms', 'Ringing duration'],
  ['duration_ms', 'Call duration'],
  ['bot_duration_ms', 'Voice bot duration'],
  ['billed_duration_ms', 'Voice bot bill duration'],
];
const LABELS = {
  q: 'Search', status: 'Status', direction: 'Direction',
  ...Object.fromEntries(TEXT_FILTERS.map(([k, l]) => [k, l])),
  ...Object.fromEntries(RANGES.flatMap(([k, l]) => [[`min_${k}`, `${l} ≥`], [`max_${k}`, `${l} ≤`]])),
  agent_id: 'Agent', started_after: 'Started after', started_before: 'Started before',
};
const FILTER_KEYS = Object.keys(LABELS);

/** The filters in the page's URL (API parameter names), without paging. */
function urlFilters() {
  const sp = new URLSearchParams(location.search);
  const out = new URLSearchParams();
  for (const [k, v] of sp) if (FILTER_KEYS.includes(k) && v !== '') out.append(k, v);
  return out;
}

function urlPaging() {
  const sp = new URLSearchParams(location.search);
  const page = Math.max(1, parseInt(sp.get('page') || '1', 10) || 1);
  const limit = parseInt(sp.get('limit') || '', 10);
  return { page, limit: PAGE_SIZES.includes(limit) ? limit : DEFAULT_LIMIT };
}

function pushUrl(filters, { page = 1, limit = DEFAULT_LIMIT } = {}, replaceState = false) {
  const sp = new URLSearchParams(filters);
  if (page > 1) sp.set('page', String(page));
  if (limit !== DEFAULT_LIMIT) sp.set('limit', String(limit));
  const qs = sp.toString();
  const url = location.pathname + (qs ? '?' + qs : '');
  if (replaceState) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
}

export function badge(status) {
  const s = String(status || 'unknown');
  return h('span', { class: `badge status-${s.replace(/[^a-z0-9_]/gi, '_').toLowerCase()}`, text: fmt.words(s) });
}

export function direction(dir) {
  if (!dir) return h('span', { class: 'faint', text: '—' });
  const icon = dir === 'inbound' ? '↙' : dir === 'outbound' ? '↗' : '•';
  return h('span', { class: 'dir' }, h('span', { class: 'dir-icon', 'aria-hidden': 'true', text: icon }), fmt.words(dir));
}

export function callHref(id) {
  return '/calls/' + encodeURIComponent(id);
}

export function render(main) {
  document.title = 'Call logs · callscope';
  const ui = {};
  let controller = null;
  let seen = null;
  let lastData = null;

  // ---- header
  ui.summary = h('span', { id: 'calls-summary', 'aria-live': 'polite' }, 'Loading calls…');
  ui.live = h('span', { class: 'live-dot', id: 'live-status', text: 'Connecting…' });
  ui.downloads = {};
  const downloadGroup = h('div', { class: 'actions', role: 'group', 'aria-label': 'Download the filtered list' },
    h('span', { class: 'download-label', text: 'Download' }),
    ['csv', 'xlsx', 'pdf'].map((f) => {
      ui.downloads[f] = h('a', { class: 'btn btn-small', href: '#', download: '', title: `Download the filtered calls as ${f.toUpperCase()}`, text: f.toUpperCase() });
      return ui.downloads[f];
    }));
  const head = h('div', { class: 'page-head' },
    h('div', {}, h('h1', { text: 'Call logs' }), h('p', { class: 'sub' }, ui.summary, h('span', { class: 'faint', text: ` · times in ${fmt.zoneName()}` }))),
    h('div', { class: 'actions' }, ui.live, downloadGroup));

  // ---- filters
  const field = (id, label, control, hint) => h('div', { class: 'field' }, h('label', { for: id, text: label }), control, hint || null);
  ui.q = h('input', { id: 'f-q', type: 'search', name: 'q', placeholder: 'Call ID (or its start) or a phone number', autocomplete: 'off' });
  ui.status = h('select', { id: 'f-status', name: 'status' },
    h('option', { value: '', text: 'Any status' }),
    STATUSES.map((s) => h('option', { value: s, text: fmt.words(s) })));
  ui.direction = h('select', { id: 'f-direction', name: 'direction' },
    h('option', { value: '', text: 'Any direction' }),
    h('option', { value: 'inbound', text: 'Inbound' }),
    h('option', { value: 'outbound', text: 'Outbound' }));
  ui.text = {};
  ui.lists = {};
  const textFields = TEXT_FILTERS.map(([k, label, ph]) => {
    ui.lists[k] = h('datalist', { id: `dl-${k}` });
    ui.text[k] = h('input', { id: `f-${k}`, type: 'text', name: k, placeholder: ph, autocomplete: 'off', list: `dl-${k}` });
    return h('div', { class: 'field' }, h('label', { for: `f-${k}`, text: label }), ui.text[k], ui.lists[k]);
  });
  ui.ranges = {};
  const rangeFields = RANGES.map(([k, label]) => {
    const min = h('input', { type: 'number', min: '0', step: 'any', inputmode: 'decimal', name: `min_${k}`, placeholder: 'min s', 'aria-label': `${label}, at least (seconds)` });
    const max = h('input', { type: 'number', min: '0', step: 'any', inputmode: 'decimal', name: `max_${k}`, placeholder: 'max s', 'aria-label': `${label}, at most (seconds)` });
    ui.ranges[k] = { min, max };
    return h('fieldset', { class: 'range' }, h('legend', { text: `${label} (s)` }),
      h('div', { class: 'range-inputs' }, min, h('span', { 'aria-hidden': 'true', text: '–' }), max));
  });
  ui.chips = h('div', { class: 'chips', 'aria-label': 'Active filters' });
  const form = h('form', { class: 'card filters', role: 'search', 'aria-label': 'Filter calls' },
    h('div', { class: 'filters-top' },
      field('f-q', 'Search by call ID or number', ui.q),
      h('button', { type: 'submit', class: 'btn btn-primary', text: 'Apply filters' }),
      h('button', { type: 'button', class: 'btn', text: 'Reset', on: { click: () => apply(new URLSearchParams()) } })),
    h('div', { class: 'filter-grid' },
      field('f-status', 'Status', ui.status),
      field('f-direction', 'Direction', ui.direction),
      textFields,
      rangeFields),
    ui.chips);
  form.addEventListener('submit', (ev) => { ev.preventDefault(); apply(readForm()); });
  ui.status.addEventListener('change', () => apply(readForm()));
  ui.direction.addEventListener('change', () => apply(readForm()));

  // ---- table
  ui.tbody = h('tbody');
  ui.tableArea = h('div', { class: 'table-wrap' });
  ui.table = h('table', { class: 'data', 'aria-describedby': 'calls-summary' },
    h('thead', {}, h('tr', {}, COLUMNS.map(([c, title]) => h('th', { scope: 'col', class: NUMERIC.has(c) ? 'nowrap num' : 'nowrap', title, text: c })))),
    ui.tbody);
  ui.pagerText = h('span', {});
  ui.prev = h('button', { type: 'button', class: 'btn btn-small', text: '← Previous', on: { click: () => goPage(-1) } });
  ui.next = h('button', { type: 'button', class: 'btn btn-small', text: 'Next →', on: { click: () => goPage(1) } });
  ui.size = h('select', { id: 'page-size', on: { change: () => { pushUrl(urlFilters(), { page: 1, limit: Number(ui.size.value) }); load(); } } },
    PAGE_SIZES.map((n) => h('option', { value: String(n), text: String(n) })));
  ui.pager = h('nav', { class: 'pager', 'aria-label': 'Pages' }, ui.pagerText,
    h('div', { class: 'actions' }, h('label', { for: 'page-size', text: 'Rows per page' }), ui.size, ui.prev, ui.next));
  const tableCard = h('section', { class: 'card', 'aria-label': 'Calls' }, ui.tableArea, ui.pager);

  replace(main, head, form, tableCard);

  function readForm() {
    const f = new URLSearchParams();
    const q = ui.q.value.trim();
    if (q) f.set('q', q);
    if (ui.status.value) f.set('status', ui.status.value);
    if (ui.direction.value) f.set('direction', ui.direction.value);
    for (const [k] of TEXT_FILTERS) {
      const v = ui.text[k].value.trim();
      if (v) f.set(k, v);
    }
    for (const [k] of RANGES) {
      for (const side of ['min', 'max']) {
        const v = ui.ranges[k][side].value.trim();
        if (v !== '' && !Number.isNaN(Number(v))) f.set(`${side}_${k}`, String(Math.round(Number(v) * 1000)));
      }
    }
    // Filters the form has no control for (agent, time range) stay as they were.
    for (const k of ['agent_id', 'started_after', 'started_before']) {
      const v = urlFilters().get(k);
      if (v) f.set(k, v);
    }
    return f;
  }

  function fillForm(f) {
    ui.q.value = f.get('q') || '';
    const status = f.get('status') || '';
    if (status && ![...ui.status.options].some((o) => o.value === status)) {
      ui.status.append(h('option', { value: status, text: fmt.words(status) }));
    }
    ui.status.value = status;
    ui.direction.value = f.get('direction') || '';
    for (const [k] of TEXT_FILTERS) ui.text[k].value = f.get(k) || '';
    for (const [k] of RANGES) {
      for (const side of ['min', 'max']) {
        const v = f.get(`${side}_${k}`);
        ui.ranges[k][side].value = v !== null && v !== '' && !Number.isNaN(Number(v)) ? String(Number(v) / 1000) : '';
      }
    }
    ui.size.value = String(urlPaging().limit);
    replace(ui.chips, [...f].map(([k, v]) => {
      const shown = k.startsWith('min_') || k.startsWith('max_') ? fmt.duration(Number(v)) : v;
      return h('span', { class: 'chip' }, `${LABELS[k] || k}: ${shown}`,
        h('button', { type: 'button', 'aria-label': `Remove filter ${LABELS[k] || k}`, text: '×', on: { click: () => { const n = urlFilters(); n.delete(k); apply(n); } } }));
    }));
    for (const f2 of ['csv', 'xlsx', 'pdf']) {
      const sp = new URLSearchParams(f);
      sp.set('format', f2);
      ui.downloads[f2].href = '/v1/calls/export?' + sp.toString();
    }
  }

  function apply(filters) {
    pushUrl(filters, { page: 1, limit: urlPaging().limit });
    load();
  }

  function goPage(delta) {
    const { page, limit } = urlPaging();
    pushUrl(urlFilters(), { page: Math.max(1, page + delta), limit });
    load();
    ui.table.scrollIntoView({ block: 'nearest' });
  }

  function skeleton() {
    replace(ui.tbody, Array.from({ length: 6 }, () => h('tr', { class: 'skeleton-row' }, Array.from({ length: COLUMNS.length }, () => h('td', { text: '·' })))));
    replace(ui.tableArea, ui.table);
  }

  function row(c, isNew) {
    const rec = safeUrl(c.recording_url);
    return h('tr', { class: isNew ? 'is-new' : null, dataset: { callId: c.call_id } },
      h('td', { class: 'callid' }, h('a', { href: callHref(c.call_id), text: c.call_id })),
      h('td', {}, rec
        ? h('a', { href: callHref(c.call_id) + '#conversation', title: 'Play the recording', 'aria-label': `Play the recording of call ${c.call_id}` }, '▶ Play')
        : h('span', { class: 'faint' }, h('span', { 'aria-hidden': 'true', text: '—' }), h('span', { class: 'visually-hidden', text: 'No recording' }))),
      h('td', {}, direction(c.direction)),
      h('td', { text: c.from || '—' }),
      h('td', { text: c.to || '—' }),
      h('td', { class: 'num', text: c.status === 'in_progress' && c.duration_ms == null ? 'ongoing' : fmt.duration(c.duration_ms) }),
      h('td', { class: 'num', title: c.turn_count ? `${c.turn_count} ${c.turn_count === 1 ? 'turn' : 'turns'}, p50 ${fmt.millis(c.latency_p50_ms)}, max ${fmt.millis(c.latency_max_ms)}` : null, text: fmt.millis(c.latency_p95_ms) }),
      h('td', { class: 'nowrap' }, h('time', { datetime: c.started_at, title: fmt.time(c.started_at), text: fmt.shortTime(c.started_at) })),
      h('td', {}, badge(c.status)),
      h('td', { text: c.hangup_reason ? fmt.words(c.hangup_reason) : '—' }));
  }

  function fillDatalists(calls) {
    for (const [k] of TEXT_FILTERS) {
      const field = { from_number: 'from', to_number: 'to' }[k] || k;
      const values = [...new Set(calls.map((c) => c[field]).filter(Boolean))].sort().slice(0, 50);
      replace(ui.lists[k], values.map((v) => h('option', { value: v })));
    }
  }

  function show(data, quiet) {
    const { page, limit } = urlPaging();
    const filters = urlFilters();
    const ids = data.data.map((c) => c.call_id);
    const fresh = quiet && seen ? new Set(ids.filter((id) => !seen.has(id))) : new Set();
    seen = new Set(ids);
    lastData = data;
    const total = data.total_count;
    const filtered = [...filters].length > 0;
    ui.summary.textContent = total === 0 && filtered ? 'No calls match these filters'
      : `${fmt.count(total)} ${total === 1 ? 'call' : 'calls'}${filtered ? (total === 1 ? ' matches these filters' : ' match these filters') : ''}`;
    if (data.data.length === 0) {
      const box = filtered
        ? stateBox('empty', 'No calls match these filters', 'Try a wider duration range, another status, or fewer filters.',
          h('button', { type: 'button', class: 'btn', text: 'Clear all filters', on: { click: () => apply(new URLSearchParams()) } }))
        : page > 1
          ? stateBox('empty', 'No calls on this page', 'The list is shorter than this page.',
            h('button', { type: 'button', class: 'btn', text: 'Go to the first page', on: { click: () => { pushUrl(filters, { page: 1, limit }); load(); } } }))
          : stateBox('empty', 'No calls yet', 'Calls appear here as soon as your voice agents place or receive them; this page updates by itself.');
      replace(ui.tableArea, box);
    } else {
      replace(ui.tbody, data.data.map((c) => row(c, fresh.has(c.call_id))));
      replace(ui.tableArea, ui.table);
      fillDatalists(data.data);
    }
    const from = total === 0 ? 0 : (page - 1) * limit + 1;
    const to = Math.min(total, (page - 1) * limit + data.data.length);
    ui.pagerText.textContent = total === 0 ? 'No calls' : `Showing ${fmt.count(from)}–${fmt.count(to)} of ${fmt.count(total)} · page ${page} of ${Math.max(1, data.total_pages)}`;
    ui.prev.disabled = page <= 1;
    ui.next.disabled = !data.has_more;
  }

  async function load({ quiet = false } = {}) {
    const filters = urlFilters();
    if (!quiet) {
      fillForm(filters);
      if (!lastData) skeleton();
      ui.tableArea.setAttribute('aria-busy', 'true');
    }
    const { page, limit } = urlPaging();
    const qs = new URLSearchParams(filters);
    qs.set('page', String(page));
    qs.set('limit', String(limit));
    if (controller) controller.abort();
    controller = new AbortController();
    try {
      const data = await api('/v1/calls?' + qs.toString(), { signal: controller.signal });
      show(data, quiet);
    } catch (e) {
      if (e.name === 'AbortError') return;
      if (quiet) return; // a failed background refresh keeps the last good view
      ui.summary.textContent = 'The calls could not be loaded';
      replace(ui.tableArea, stateBox('error', 'The calls could not be loaded', e.message,
        h('button', { type: 'button', class: 'btn btn-primary', text: 'Try again', on: { click: () => load() } })));
      ui.pagerText.textContent = '';
    } finally {
      ui.tableArea.removeAttribute('aria-busy');
    }
  }

  // ---- live: the tenant-wide stream when the server has it, else polling.
  let refreshTimer = null;
  function refreshSoon() {
    if (refreshTimer) return;
    refreshTimer = setTimeout(() => { refreshTimer = null; load({ quiet: true }); }, 800);
  }
  function startPolling() {
    ui.live.textContent = 'Auto-refresh every 5 s';
    ui.live.classList.add('on');
    setInterval(() => { if (!document.hidden) load({ quiet: true }); }, POLL_MS);
  }
  followStream('/v1/logs/stream', refreshSoon, startPolling, () => {
    ui.live.textContent = 'Live';
    ui.live.classList.add('on');
  });

  window.addEventListener('popstate', () => load());
  load();
}
