// Search (/search): records across every call of the organisation through
// POST /v1/logs/search, with the counts by event, level and category. The form's
// state is kept in the URL so a search can be shared.

import { api } from './api.js';
import { h, replace, stateBox } from './dom.js';
import * as fmt from './format.js';
import { callHref } from './calls.js';

const LEVELS = ['DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL'];
const CATEGORIES = ['CALL_LIFECYCLE', 'USER', 'AGENT', 'CALL_TOOLS', 'INTEGRATION_TOOLS', 'CONVERSATIONAL_PATHS',
  'TRANSFER', 'METRICS', 'SECURITY', 'WEBHOOKS', 'WORKFLOWS', 'KNOWLEDGE'];
const SIZE = 50;

function list(v) {
  return (v || '').split(',').map((s) => s.trim()).filter(Boolean);
}

/** `2026-12-02T17:35` (local, as datetime-local holds it) <-> RFC 3339 UTC. */
function toRfc3339(local) {
  if (!local) return null;
  const d = new Date(local);
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
}
function toLocalInput(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function render(main) {
  document.title = 'Search · callscope';
  let controller = null;

  const text = h('input', { id: 's-text', type: 'search', name: 'text', placeholder: 'Words in messages and data, e.g. timeout', autocomplete: 'off' });
  const events = h('input', { id: 's-events', type: 'text', name: 'events', placeholder: 'e.g. CALL_FAILED, TOOL_CALL_FAILED', autocomplete: 'off', list: 's-events-list' });
  const eventsList = h('datalist', { id: 's-events-list' });
  const from = h('input', { id: 's-from', type: 'datetime-local', name: 'from' });
  const to = h('input', { id: 's-to', type: 'datetime-local', name: 'to' });
  const levelBoxes = LEVELS.map((l) => h('input', { type: 'checkbox', name: 'levels', value: l }));
  const catBoxes = CATEGORIES.map((c) => h('input', { type: 'checkbox', name: 'categories', value: c }));
  const field = (id, label, control) => h('div', { class: 'field' }, h('label', { for: id, text: label }), control);

  const form = h('form', { class: 'card card-pad search-form', role: 'search', 'aria-label': 'Search call logs' },
    h('div', { class: 'grid' },
      field('s-text', 'Text', text),
      h('div', { class: 'field' }, h('label', { for: 's-events', text: 'Events' }), events, eventsList),
      field('s-from', 'From', from),
      field('s-to', 'To', to)),
    h('div', { class: 'check-groups' },
      h('fieldset', { class: 'checks' }, h('legend', { text: 'Levels' }), LEVELS.map((l, i) => h('label', {}, levelBoxes[i], fmt.words(l)))),
      h('fieldset', { class: 'checks' }, h('legend', { text: 'Categories' }), CATEGORIES.map((c, i) => h('label', {}, catBoxes[i], fmt.words(c))))),
    h('div', { class: 'filters-foot' },
      h('span', { class: 'faint', text: `Times in ${fmt.zoneName()}` }),
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'btn', text: 'Reset', on: { click: () => go(new URLSearchParams()) } }),
        h('button', { type: 'submit', class: 'btn btn-primary', text: 'Search' }))));
  form.addEventListener('submit', (ev) => { ev.preventDefault(); go(readForm()); });

  const summary = h('p', { class: 'sub', id: 'search-summary', 'aria-live': 'polite' });
  const resultsArea = h('div', { class: 'table-wrap' });
  const pagerText = h('span');
  const prev = h('button', { type: 'button', class: 'btn btn-small', text: '← Previous', on: { click: () => page(-1) } });
  const next = h('button', { type: 'button', class: 'btn btn-small', text: 'Next →', on: { click: () => page(1) } });
  const aggs = h('aside', { class: 'aggs', 'aria-label': 'Counts' });

  replace(main,
    h('div', { class: 'page-head' }, h('div', {}, h('h1', { text: 'Search' }), summary)),
    form,
    h('div', { style: { height: '14px' } }),
    h('div', { class: 'search-layout' },
      h('section', { class: 'card search-results', 'aria-label': 'Results' }, resultsArea,
        h('nav', { class: 'pager', 'aria-label': 'Result pages' }, pagerText, h('div', { class: 'actions' }, prev, next))),
      aggs));

  function readForm() {
    const sp = new URLSearchParams();
    if (text.value.trim()) sp.set('text', text.value.trim());
    if (list(events.value).length) sp.set('events', list(events.value).join(','));
    const lv = levelBoxes.filter((b) => b.checked).map((b) => b.value);
    if (lv.length) sp.set('levels', lv.join(','));
    const cs = catBoxes.filter((b) => b.checked).map((b) => b.value);
    if (cs.length) sp.set('categories', cs.join(','));
    const f = toRfc3339(from.value);
    const t = toRfc3339(to.value);
    if (f) sp.set('from', f);
    if (t) sp.set('to', t);
    return sp;
  }

  function fillForm(sp) {
    text.value = sp.get('text') || '';
    events.value = list(sp.get('events')).join(', ');
    const lv = list(sp.get('levels'));
    levelBoxes.forEach((b) => { b.checked = lv.includes(b.value); });
    const cs = list(sp.get('categories'));
    catBoxes.forEach((b) => { b.checked = cs.includes(b.value); });
    from.value = toLocalInput(sp.get('from'));
    to.value = toLocalInput(sp.get('to'));
  }

  function go(sp, pageNo = 0) {
    if (pageNo > 0) sp.set('page', String(pageNo));
    const qs = sp.toString();
    history.pushState(null, '', '/search' + (qs ? '?' + qs : ''));
    run();
  }

  function page(delta) {
    const sp = new URLSearchParams(location.search);
    const p = Math.max(0, (parseInt(sp.get('page') || '0', 10) || 0) + delta);
    sp.delete('page');
    go(sp, p);
  }

  function toggle(key, value) {
    const sp = new URLSearchParams(location.search);
    const cur = list(sp.get(key));
    const nextList = cur.includes(value) ? cur.filter((v) => v !== value) : [...cur, value];
    if (nextList.length) sp.set(key, nextList.join(','));
    else sp.delete(key);
    sp.delete('page');
    go(sp);
  }

  function aggCard(title, counts, key, label) {
    const entries = Object.entries(counts || {}).sort((a, b) => b[1] - a[1]);
    const max = Math.max(1, ...entries.map(([, n]) => n));
    const active = list(new URLSearchParams(location.search).get(key));
    return h('section', { class: 'card agg', 'aria-label': title },
      h('h2', { text: title }),
      entries.length
        ? h('ul', {}, entries.map(([name, n]) => h('li', {}, h('button', {
          type: 'button', 'aria-pressed': active.includes(name) ? 'true' : 'false',
          title: active.includes(name) ? `Stop filtering by ${name}` : `Show only ${name}`,
          on: { click: () => toggle(key, name) },
        }, h('span', { class: 'name', text: label(name) }), h('span', { class: 'count', text: fmt.count(n) }),
        h('span', { class: 'meter', 'aria-hidden': 'true' }, h('span', { style: { width: `${(n / max) * 100}%` } }))))))
        : h('p', { class: 'faint', style: { padding: '0 14px 12px', margin: '0' }, text: 'No matches' }));
  }

  async function run() {
    const sp = new URLSearchParams(location.search);
    fillForm(sp);
    const pageNo = Math.max(0, parseInt(sp.get('page') || '0', 10) || 0);
    const body = { size: SIZE, page: pageNo, sort_direction: 'desc' };
    if (sp.get('text')) body.search_text = sp.get('text');
    if (list(sp.get('events')).length) body.events = list(sp.get('events'));
    if (list(sp.get('levels')).length) body.levels = list(sp.get('levels'));
    if (list(sp.get('categories')).length) body.categories = list(sp.get('categories'));
    if (sp.get('from')) body.from = sp.get('from');
    if (sp.get('to')) body.to = sp.get('to');
    if (controller) controller.abort();
    controller = new AbortController();
    resultsArea.setAttribute('aria-busy', 'true');
    replace(resultsArea, stateBox('loading', 'Searching…'));
    try {
      const r = await api('/v1/logs/search', { method: 'POST', body, signal: controller.signal });
      summary.textContent = `${fmt.count(r.total_count)} ${r.total_count === 1 ? 'match' : 'matches'} · ${r.execution_time_ms} ms`;
      if (!r.results.length) {
        replace(resultsArea, stateBox('empty', 'Nothing matches this search', 'Try fewer words, another time range, or clear the level and category boxes.'));
      } else {
        replace(resultsArea, h('table', { class: 'data', 'aria-describedby': 'search-summary' },
          h('thead', {}, h('tr', {}, ['Time', 'Call', 'Level', 'Category', 'Event', 'Details'].map((c) => h('th', { scope: 'col', text: c })))),
          h('tbody', {}, r.results.map((rec) => h('tr', {},
            h('td', { class: 'nowrap' }, h('time', { datetime: rec.timestamp, title: fmt.time(rec.timestamp), text: fmt.shortTime(rec.timestamp) })),
            h('td', { class: 'callid' }, h('a', { href: callHref(rec.call_id) + '#logs', class: 'ellipsis', title: rec.call_id, text: rec.call_id })),
            h('td', {}, h('span', { class: `badge plain level-${rec.level}`, text: rec.level })),
            h('td', { class: 'nowrap', text: fmt.words(rec.category) }),
            h('td', { class: 'nowrap mono', text: rec.event }),
            h('td', {}, h('div', { class: 'log-data', title: fmt.dataSummary(rec.data), text: fmt.dataSummary(rec.data) })))))));
      }
      const pages = Math.max(1, r.total_pages);
      pagerText.textContent = r.total_count ? `Page ${r.page + 1} of ${pages}` : '';
      prev.disabled = r.page <= 0;
      next.disabled = r.page + 1 >= pages;
      const a = r.aggregations || {};
      replace(eventsList, Object.keys(a.event_counts || {}).map((e) => h('option', { value: e })));
      replace(aggs,
        aggCard('By level', a.level_counts, 'levels', (n) => fmt.words(n)),
        aggCard('By category', a.category_counts, 'categories', (n) => fmt.words(n)),
        aggCard('By event', a.event_counts, 'events', (n) => n));
    } catch (e) {
      if (e.name === 'AbortError') return;
      summary.textContent = '';
      replace(resultsArea, stateBox('error', 'The search failed', e.message,
        h('button', { type: 'button', class: 'btn btn-primary', text: 'Try again', on: { click: () => run() } })));
      replace(aggs);
    } finally {
      resultsArea.removeAttribute('aria-busy');
    }
  }

  window.addEventListener('popstate', run);
  run();
}
