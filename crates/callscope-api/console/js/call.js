// One call (/calls/{call_id}): the key facts, then the tabs Conversation, Metadata,
// Logs, Timeline and Comments. The selected tab is kept in the URL's fragment, so a
// link opens the same view.

import { api, followStream, isMissingRoute, meta } from './api.js';
import { copyText, h, replace, safeUrl, stateBox, toast } from './dom.js';
import * as fmt from './format.js';
import { badge, direction } from './calls.js';

const TABS = ['conversation', 'metadata', 'logs', 'timeline', 'comments'];
const TAB_NAMES = { conversation: 'Conversation', metadata: 'Metadata', logs: 'Logs', timeline: 'Timeline', comments: 'Comments' };
const CATEGORIES = ['CALL_LIFECYCLE', 'USER', 'AGENT', 'CALL_TOOLS', 'INTEGRATION_TOOLS', 'CONVERSATIONAL_PATHS',
  'TRANSFER', 'METRICS', 'SECURITY', 'WEBHOOKS', 'WORKFLOWS', 'KNOWLEDGE'];
const LEVELS = ['DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL'];
const TRANSCRIPT_EVENTS = ['USER_MESSAGE_RECEIVED', 'GREETING_SENT', 'AGENT_MESSAGE_SENT', 'REMINDER_MESSAGE_SENT'];
const TERMINAL_EVENTS = ['CALL_COMPLETED', 'CALL_FAILED', 'CALL_CANCELED', 'CALL_DEADLINE_EXCEEDED', 'CALL_REJECTED_BY_WEBHOOK'];
const LOG_PAGE = 100;

function callIdFromPath() {
  const seg = location.pathname.replace(/^\/calls\//, '');
  try { return decodeURIComponent(seg); } catch { return seg; }
}

function enc(id) { return encodeURIComponent(id); }

export function render(main) {
  const callId = callIdFromPath();
  document.title = `Call ${callId} · callscope`;
  const base = `/v1/calls/${enc(callId)}`;
  let call = null;
  const loaded = {};
  const panels = {};
  const tabs = {};
  const onCallChange = [];

  // ---- header
  const crumbs = h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '/calls', text: 'Call logs' }), ' / ', h('span', { class: 'mono', text: callId }));
  const statusSlot = h('span', {});
  const copyBtn = h('button', { type: 'button', class: 'btn btn-small', text: 'Copy link', on: { click: copyLink } });
  const facts = h('dl', { class: 'facts' });
  const head = h('section', { class: 'card call-head', 'aria-labelledby': 'call-title' },
    h('div', { class: 'call-title' }, h('h1', { id: 'call-title' }, h('span', { class: 'visually-hidden', text: 'Call ' }), callId), statusSlot,
      h('div', { class: 'actions' }, copyBtn)),
    facts);

  // ---- tabs
  const tablist = h('div', { class: 'tabs', role: 'tablist', 'aria-label': 'Call details' });
  for (const t of TABS) {
    tabs[t] = h('button', {
      type: 'button', role: 'tab', id: `tab-${t}`, 'aria-controls': `panel-${t}`, 'aria-selected': 'false', tabindex: '-1',
      on: { click: () => select(t, true), keydown: tabKeys },
    }, TAB_NAMES[t]);
    panels[t] = h('section', { role: 'tabpanel', id: `panel-${t}`, 'aria-labelledby': `tab-${t}`, tabindex: '0', hidden: true });
    tablist.append(tabs[t]);
  }

  replace(main, crumbs, head, tablist, TABS.map((t) => panels[t]));

  function tabKeys(ev) {
    const i = TABS.indexOf(ev.currentTarget.id.replace('tab-', ''));
    let j = null;
    if (ev.key === 'ArrowRight') j = (i + 1) % TABS.length;
    else if (ev.key === 'ArrowLeft') j = (i - 1 + TABS.length) % TABS.length;
    else if (ev.key === 'Home') j = 0;
    else if (ev.key === 'End') j = TABS.length - 1;
    if (j !== null) {
      ev.preventDefault();
      select(TABS[j], true);
      tabs[TABS[j]].focus();
    }
  }

  function select(t, fromUser) {
    for (const x of TABS) {
      const on = x === t;
      tabs[x].setAttribute('aria-selected', on ? 'true' : 'false');
      tabs[x].tabIndex = on ? 0 : -1;
      panels[x].hidden = !on;
    }
    if (fromUser) history.replaceState(null, '', location.pathname + location.search + '#' + t);
    if (!loaded[t] && call) {
      loaded[t] = true;
      builders[t](panels[t]);
    }
  }

  async function copyLink() {
    const ok = await copyText(location.href);
    toast(ok ? 'Link copied' : 'Copy failed: select the address bar instead');
  }

  function renderHead() {
    replace(statusSlot, badge(call.status));
    const item = (label, value) => h('div', {}, h('dt', { text: label }), h('dd', {}, value));
    const lc = call.level_counts || {};
    const problems = (lc.ERROR ?? lc.error ?? 0) + (lc.CRITICAL ?? lc.critical ?? 0);
    replace(facts,
      item('Direction', direction(call.direction)),
      item('From', call.from || '—'),
      item('To', call.to || '—'),
      item('Start time', h('time', { datetime: call.started_at, title: fmt.time(call.started_at), text: fmt.shortTime(call.started_at) })),
      item('Duration', call.status === 'in_progress' && call.duration_ms == null ? 'ongoing' : fmt.duration(call.duration_ms)),
      item('Hangup reason', call.hangup_reason ? fmt.words(call.hangup_reason) : '—'),
      item('Agent', call.agent_id || '—'),
      item('Log records', `${fmt.count(call.log_count)}${problems ? ` · ${problems} error${problems === 1 ? '' : 's'}` : ''}`));
  }

  async function refreshCall() {
    try {
      call = await api(base);
      renderHead();
      for (const fn of onCallChange) fn(call);
    } catch { /* the header keeps its last state */ }
  }

  // ---- Conversation
  async function buildConversation(panel) {
    replace(panel, stateBox('loading', 'Loading the conversation…'));
    let lines;
    try {
      lines = (await api(`${base}/transcript`)).data;
    } catch (e) {
      if (!isMissingRoute(e)) return replace(panel, stateBox('error', 'The conversation could not be loaded', e.message));
      try {
        const page = await api(`${base}/logs?order=asc&limit=1000&event=${TRANSCRIPT_EVENTS.join(',')}`);
        lines = page.data.map((r) => ({
          id: r.id, timestamp: r.timestamp, event: r.event,
          role: r.event === 'USER_MESSAGE_RECEIVED' ? 'user' : 'agent',
          text: r.data && typeof r.data.text === 'string' ? r.data.text : fmt.dataSummary(r.data),
          turn: r.data && Number.isInteger(r.data.turn) ? r.data.turn : null,
        }));
      } catch (e2) {
        return replace(panel, stateBox('error', 'The conversation could not be loaded', e2.message));
      }
    }
    const parts = [];
    const rec = safeUrl(call.recording_url);
    if (rec) {
      parts.push(h('div', { class: 'card recording' },
        h('h2', { class: 'visually-hidden', text: 'Recording' }),
        h('span', { class: 'muted', text: 'Recording' }),
        h('audio', { controls: true, preload: 'none', src: rec, 'aria-label': 'Call recording' }),
        h('a', { href: rec, class: 'btn btn-small', rel: 'noopener noreferrer', target: '_blank', text: 'Open file' })));
    }
    if (!lines.length) {
      parts.push(h('div', { class: 'card' }, stateBox('empty', 'No conversation recorded',
        call.status === 'in_progress' ? 'Messages appear as the call goes on.' : 'This call has no transcript lines (for example, it was never answered).')));
    } else {
      parts.push(h('div', { class: 'card' },
        h('h2', { class: 'visually-hidden', text: 'Transcript' }),
        h('ol', { class: 'chat', 'aria-label': 'Transcript' }, lines.map((l) => {
          const who = l.role === 'user' ? 'Caller' : 'Agent';
          const extra = l.event === 'GREETING_SENT' ? ' · greeting' : l.event === 'REMINDER_MESSAGE_SENT' ? ' · reminder' : '';
          return h('li', { class: `msg ${l.role === 'user' ? 'user' : 'agent'}` },
            h('div', { class: 'who' }, h('span', { text: who + extra }), h('time', { datetime: l.timestamp, text: fmt.clock(l.timestamp) }),
              l.turn != null ? h('span', { class: 'faint', text: `turn ${l.turn}` }) : null),
            h('div', { class: 'bubble', text: l.text ?? '' }));
        }))));
    }
    replace(panel, parts);
  }

  // ---- Metadata
  const META_LABELS = {
    call_id: 'Call ID', agent_id: 'Agent ID', direction: 'Direction', from: 'From', to: 'To', campaign_id: 'Campaign ID',
    status: 'Status', started_at: 'Start time', ended_at: 'End time', duration_ms: 'Call duration',
    ringing_duration_ms: 'Ringing duration', bot_duration_ms: 'Voice bot duration', billed_duration_ms: 'Voice bot bill duration',
    hangup_reason: 'Hangup reason', hangup_source: 'Hangup source', recording_url: 'Recording URL', trace_id: 'Trace ID',
    log_count: 'Log records', level_counts: 'Records by level', turn_count: 'Turns', latency_p50_ms: 'Turn latency p50',
    latency_p95_ms: 'Turn latency p95', latency_max_ms: 'Turn latency max', llm_input_tokens: 'LLM input tokens',
    llm_output_tokens: 'LLM output tokens', tts_characters: 'TTS characters', stt_seconds: 'STT seconds',
  };
  function metaValue(k, v) {
    if (v === null || v === undefined || v === '') return h('span', { class: 'faint', text: '—' });
    if (k.endsWith('_at')) return h('span', {}, h('time', { datetime: v, text: fmt.time(v) }), h('span', { class: 'raw block mono', text: v }));
    if (k.startsWith('latency_')) return h('span', { text: fmt.millis(v) });
    if (k.endsWith('_ms')) return h('span', {}, fmt.duration(v), h('span', { class: 'raw', text: `${fmt.count(v)} ms` }));
    if (k === 'status') return badge(v);
    if (k === 'direction') return direction(v);
    if (k === 'level_counts' && typeof v === 'object') {
      return h('span', { class: 'chips' }, LEVELS.map((l) => h('span', { class: `badge plain level-${l}`, text: `${fmt.words(l)} ${fmt.count(v[l] ?? v[l.toLowerCase()] ?? 0)}` })));
    }
    if (k === 'recording_url') {
      const u = safeUrl(v);
      return u ? h('a', { href: u, rel: 'noopener noreferrer', target: '_blank', class: 'mono', text: v }) : h('span', { class: 'mono', text: String(v) });
    }
    if (k.endsWith('_id')) return h('span', { class: 'mono', text: String(v) });
    if (typeof v === 'number') return h('span', { text: fmt.count(v) });
    if (typeof v === 'object') return h('code', { text: JSON.stringify(v) });
    return h('span', { text: String(v) });
  }
  function buildMetadata(panel) {
    const draw = () => {
      const keys = Object.keys(call);
      replace(panel, h('div', { class: 'card' }, h('h2', { class: 'visually-hidden', text: 'Metadata' }),
        h('dl', { class: 'meta-grid' }, keys.map((k) => h('div', {}, h('dt', { text: META_LABELS[k] || fmt.words(k) }), h('dd', {}, metaValue(k, call[k])))))));
    };
    draw();
    onCallChange.push(draw);
  }

  // ---- Logs
  function buildLogs(panel) {
    const state = { category: '', level: '', cursor: null, page: null, live: null, poll: null, rows: new Set(), loading: null };
    const cat = h('select', { id: 'logs-category' }, h('option', { value: '', text: 'All categories' }), CATEGORIES.map((c) => h('option', { value: c, text: fmt.words(c) })));
    const lvl = h('select', { id: 'logs-level' }, h('option', { value: '', text: 'All levels' }), LEVELS.map((c) => h('option', { value: c, text: fmt.words(c) })));
    const liveTag = h('span', { class: 'live-dot', hidden: true });
    const info = h('span', { class: 'muted', 'aria-live': 'polite' });
    const first = h('button', { type: 'button', class: 'btn btn-small', text: 'First', on: { click: () => load(null) } });
    const prev = h('button', { type: 'button', class: 'btn btn-small', text: '← Previous', on: { click: () => load({ before: state.page.first_id }) } });
    const next = h('button', { type: 'button', class: 'btn btn-small', text: 'Next →', on: { click: () => load({ after: state.page.last_id }) } });
    const tbody = h('tbody');
    const table = h('table', { class: 'data' },
      h('thead', {}, h('tr', {}, ['Time', 'Level', 'Category', 'Event', 'Details', ''].map((c) => h('th', { scope: 'col', text: c })))), tbody);
    const area = h('div', { class: 'table-wrap' });
    cat.addEventListener('change', () => { state.category = cat.value; load(null); });
    lvl.addEventListener('change', () => { state.level = lvl.value; load(null); });
    replace(panel, h('div', { class: 'card' },
      h('h2', { class: 'visually-hidden', text: 'Logs' }),
      h('div', { class: 'toolbar' },
        h('div', { class: 'field' }, h('label', { for: 'logs-category', text: 'Category' }), cat),
        h('div', { class: 'field' }, h('label', { for: 'logs-level', text: 'Level' }), lvl),
        h('span', { class: 'spacer' }), liveTag),
      area,
      h('nav', { class: 'pager', 'aria-label': 'Log pages' }, info, h('div', { class: 'actions' }, first, prev, next))));

    function filterQs() {
      const qs = new URLSearchParams();
      if (state.category) qs.set('category', state.category);
      if (state.level) qs.set('level', state.level);
      return qs;
    }

    function logRow(r, isNew) {
      const detail = h('tr', { class: 'detail-row', hidden: true },
        h('td', { colspan: '6' }, h('pre', { class: 'json', text: JSON.stringify(r, null, 2) })));
      const toggle = h('button', { type: 'button', class: 'expander', 'aria-expanded': 'false', 'aria-label': `Show the full record ${r.event}`, text: '▸ JSON' });
      toggle.addEventListener('click', () => {
        const open = detail.hidden;
        detail.hidden = !open;
        toggle.setAttribute('aria-expanded', String(open));
        toggle.textContent = open ? '▾ JSON' : '▸ JSON';
      });
      const main = h('tr', { class: isNew ? 'is-new' : null, dataset: { id: r.id } },
        h('td', { class: 'nowrap mono', title: fmt.time(r.timestamp) }, h('time', { datetime: r.timestamp, text: fmt.clock(r.timestamp) })),
        h('td', {}, h('span', { class: `badge plain level-${r.level}`, text: r.level })),
        h('td', { class: 'nowrap', text: fmt.words(r.category) }),
        h('td', { class: 'nowrap mono', text: r.event }),
        h('td', {}, h('div', { class: 'log-data', title: fmt.dataSummary(r.data), text: fmt.dataSummary(r.data) })),
        h('td', { class: 'nowrap' }, toggle));
      return [main, detail];
    }

    function appendLive(r) {
      if (state.rows.has(r.id)) return;
      if (state.category && r.category !== state.category) return;
      if (state.level && r.level !== state.level) return;
      state.rows.add(r.id);
      if (!tbody.isConnected) replace(area, table);
      tbody.append(...logRow(r, true));
      state.page.last_id = r.id;
      state.page.total_count += 1;
      if (call) {
        call.log_count += 1;
        renderHead();
      }
      info.textContent = `${fmt.count(state.page.total_count)} ${state.page.total_count === 1 ? 'record' : 'records'}`;
      if (TERMINAL_EVENTS.includes(r.event)) {
        stopLive();
        refreshCall();
      }
    }

    function stopLive() {
      if (state.live) { state.live(); state.live = null; }
      if (state.poll) { clearInterval(state.poll); state.poll = null; }
      liveTag.hidden = true;
    }

    function startLive() {
      stopLive();
      if (!call || call.status !== 'in_progress' || state.page.has_more) return;
      liveTag.hidden = false;
      liveTag.textContent = 'Connecting…';
      const qs = filterQs();
      if (state.page.last_id) qs.set('after', state.page.last_id);
      const poll = () => {
        liveTag.textContent = 'Live (polling)';
        liveTag.classList.add('on');
        state.poll = setInterval(async () => {
          if (document.hidden) return;
          const q = filterQs();
          q.set('order', 'asc');
          q.set('limit', String(LOG_PAGE));
          if (state.page.last_id) q.set('after', state.page.last_id);
          try {
            const p = await api(`${base}/logs?${q}`);
            p.data.forEach(appendLive);
          } catch { /* next tick tries again */ }
          if (call.status !== 'in_progress') stopLive();
        }, 2000);
      };
      state.live = followStream(`${base}/logs/stream?${qs}`, appendLive, () => { state.live = null; poll(); }, () => {
        liveTag.textContent = 'Live';
        liveTag.classList.add('on');
      });
    }

    async function load(cursor) {
      stopLive();
      const qs = filterQs();
      qs.set('order', 'asc');
      qs.set('limit', String(LOG_PAGE));
      if (cursor?.after) qs.set('after', cursor.after);
      if (cursor?.before) qs.set('before', cursor.before);
      area.setAttribute('aria-busy', 'true');
      if (!state.page) replace(area, stateBox('loading', 'Loading records…'));
      // Filters can change faster than pages load: only the latest request may draw.
      if (state.loading) state.loading.abort();
      const controller = new AbortController();
      state.loading = controller;
      try {
        const p = await api(`${base}/logs?${qs}`, { signal: controller.signal });
        state.cursor = cursor;
        state.page = p;
        state.rows = new Set(p.data.map((r) => r.id));
        if (!p.data.length) {
          replace(area, stateBox('empty', state.category || state.level ? 'No records match these filters' : 'No records yet',
            state.category || state.level ? 'Choose another category or level.' : 'Records appear as the call goes on.'));
        } else {
          replace(tbody, p.data.map((r) => logRow(r, false)));
          replace(area, table);
        }
        info.textContent = `${fmt.count(p.total_count)} ${p.total_count === 1 ? 'record' : 'records'}${p.current_page ? ` · page ${p.current_page} of ${Math.max(1, p.total_pages)}` : ''}`;
        // Oldest first: "Previous" goes back in time, "Next" forward.
        const atStart = !cursor || (cursor.before && !p.has_more);
        const atEnd = cursor?.before ? false : !p.has_more;
        first.disabled = !cursor;
        prev.disabled = atStart || !p.first_id;
        next.disabled = atEnd || !p.last_id;
        if (atEnd) startLive();
      } catch (e) {
        if (e.name === 'AbortError') return;
        replace(area, stateBox('error', 'The records could not be loaded', e.message,
          h('button', { type: 'button', class: 'btn btn-primary', text: 'Try again', on: { click: () => load(cursor) } })));
      } finally {
        if (state.loading === controller) {
          state.loading = null;
          area.removeAttribute('aria-busy');
        }
      }
    }
    onCallChange.push((c) => { if (c.status !== 'in_progress') stopLive(); });
    load(null);
  }

  // ---- Timeline
  function percentile(sorted, p) {
    if (!sorted.length) return null;
    const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
    return sorted[i];
  }
  async function buildTimeline(panel) {
    replace(panel, stateBox('loading', 'Loading the timeline…'));
    let turns;
    let summary;
    try {
      const t = await api(`${base}/turns`);
      turns = t.data;
      summary = t.summary;
    } catch (e) {
      if (!isMissingRoute(e)) return replace(panel, stateBox('error', 'The timeline could not be loaded', e.message));
      try {
        const p = await api(`${base}/logs?order=asc&limit=1000&event=TURN_LATENCY`);
        turns = p.data.map((r, i) => ({
          turn: r.data?.turn ?? i + 1, started_at: r.timestamp, stt_ms: r.data?.stt_ms ?? null, llm_ttft_ms: r.data?.llm_ttft_ms ?? null,
          tts_ttfb_ms: r.data?.tts_ttfb_ms ?? null, end_to_end_ms: r.data?.end_to_end_ms ?? null, interrupted: false,
        }));
      } catch (e2) {
        return replace(panel, stateBox('error', 'The timeline could not be loaded', e2.message));
      }
    }
    if (!summary) {
      const e2e = turns.map((t) => t.end_to_end_ms).filter((v) => typeof v === 'number').sort((a, b) => a - b);
      summary = { turn_count: turns.length, end_to_end_ms: { p50: percentile(e2e, 50), p95: percentile(e2e, 95), max: e2e.length ? e2e[e2e.length - 1] : null } };
    }
    const e2e = summary.end_to_end_ms || {};
    const stat = (label, value) => h('div', { class: 'card stat' }, h('div', { class: 'label', text: label }), h('div', { class: 'value', text: value }));
    const parts = [h('h2', { class: 'visually-hidden', text: 'Timeline' }),
      h('div', { class: 'stats' }, stat('Turns', fmt.count(summary.turn_count ?? turns.length)), stat('Latency p50', fmt.millis(e2e.p50)),
        stat('Latency p95', fmt.millis(e2e.p95)), stat('Latency max', fmt.millis(e2e.max)))];

    if (!turns.length) {
      parts.push(h('div', { class: 'card' }, stateBox('empty', 'No turn latencies', 'This call has no measured turns (no TURN_LATENCY events).')));
    } else {
      const maxTotal = Math.max(1, ...turns.map((t) => Math.max(t.end_to_end_ms || 0, (t.stt_ms || 0) + (t.llm_ttft_ms || 0) + (t.tts_ttfb_ms || 0))));
      const seg = (cls, ms, label) => (ms ? h('div', { class: cls, style: { width: `${(ms / maxTotal) * 100}%` }, title: `${label}: ${fmt.millis(ms)}` }) : null);
      parts.push(h('section', { class: 'card', 'aria-labelledby': 'turns-title' },
        h('div', { class: 'section-head' }, h('h3', { id: 'turns-title', text: 'Latency per turn, by stage' }), h('p', { class: 'faint', text: 'End-to-end: from the caller\'s last word to the agent\'s first sound' })),
        h('div', { class: 'legend', 'aria-hidden': 'true' },
          h('span', {}, h('i', { class: 'seg-stt' }), 'Speech-to-text'), h('span', {}, h('i', { class: 'seg-llm' }), 'LLM first token'),
          h('span', {}, h('i', { class: 'seg-tts' }), 'TTS first byte'), h('span', {}, h('i', { class: 'seg-other' }), 'Other')),
        h('ol', { class: 'turns', 'aria-label': 'Turns' }, turns.map((t) => {
          const staged = (t.stt_ms || 0) + (t.llm_ttft_ms || 0) + (t.tts_ttfb_ms || 0);
          const other = t.end_to_end_ms ? Math.max(0, t.end_to_end_ms - staged) : 0;
          const described = `Turn ${t.turn}: speech-to-text ${fmt.millis(t.stt_ms)}, LLM first token ${fmt.millis(t.llm_ttft_ms)}, TTS first byte ${fmt.millis(t.tts_ttfb_ms)}, end-to-end ${fmt.millis(t.end_to_end_ms)}`;
          const texts = [t.user_text ? `Caller: ${t.user_text}` : null, t.agent_text ? `Agent: ${t.agent_text}` : null].filter(Boolean).join('   ');
          return h('li', { class: 'turn' },
            h('span', { class: 'tlabel' }, `Turn ${t.turn}`, t.interrupted ? h('span', { class: 'badge plain status-missed', title: 'The caller interrupted the agent', text: 'cut' }) : null),
            h('div', { class: 'bar', role: 'img', 'aria-label': described },
              seg('seg-stt', t.stt_ms, 'Speech-to-text'), seg('seg-llm', t.llm_ttft_ms, 'LLM first token'),
              seg('seg-tts', t.tts_ttfb_ms, 'TTS first byte'), seg('seg-other', other, 'Other')),
            h('span', { class: 'total', text: fmt.millis(t.end_to_end_ms) }),
            texts ? h('div', { class: 'texts', title: texts, text: texts }) : null);
        }))));
    }

    const spansCard = h('section', { class: 'card', 'aria-labelledby': 'spans-title' },
      h('div', { class: 'section-head' }, h('h3', { id: 'spans-title', text: 'Spans' })), stateBox('loading', 'Loading spans…'));
    parts.push(h('div', { style: { height: '14px' } }), spansCard);
    replace(panel, parts);

    let spans = [];
    try {
      spans = (await api(`${base}/spans`)).data || [];
    } catch (e) {
      if (!isMissingRoute(e)) {
        spansCard.lastChild.replaceWith(stateBox('error', 'The spans could not be loaded', e.message));
        return;
      }
    }
    if (!spans.length) {
      spansCard.lastChild.replaceWith(stateBox('empty', 'No spans stored for this call', 'Spans the agent marks as customer-visible appear here as a waterfall.'));
      return;
    }
    const t0 = Math.min(...spans.map((s) => Date.parse(s.start_time)));
    const t1 = Math.max(...spans.map((s) => Date.parse(s.end_time || s.start_time)));
    const span = Math.max(1, t1 - t0);
    const depth = new Map();
    const byId = new Map(spans.map((s) => [s.span_id, s]));
    const depthOf = (s, guard = 0) => {
      if (depth.has(s.span_id)) return depth.get(s.span_id);
      const parent = s.parent_span_id && byId.get(s.parent_span_id);
      const d = parent && guard < 32 ? depthOf(parent, guard + 1) + 1 : 0;
      depth.set(s.span_id, d);
      return d;
    };
    spansCard.lastChild.replaceWith(h('div', { class: 'waterfall', role: 'list', 'aria-label': 'Spans by start time' }, spans.map((s) => {
      const start = Date.parse(s.start_time) - t0;
      const dur = s.duration_ms ?? (Date.parse(s.end_time) - Date.parse(s.start_time));
      return h('div', { class: 'wf-row', role: 'listitem' },
        h('div', { class: 'wf-name', style: { 'padding-left': `${depthOf(s) * 14}px` }, title: s.status_message || s.name, text: s.name }),
        h('div', { class: 'wf-track' }, h('div', {
          class: `wf-bar${s.status === 'error' ? ' error' : ''}`,
          style: { left: `${(start / span) * 100}%`, width: `${Math.max(0.3, (dur / span) * 100)}%` },
          title: `${s.name}: ${fmt.millis(dur)}${s.status === 'error' ? ' (error)' : ''}`,
        })),
        h('div', { class: 'wf-dur', text: fmt.millis(dur) }));
    })));
  }

  // ---- Comments
  function buildComments(panel) {
    const list = h('ol', { class: 'comments', 'aria-label': 'Comments' });
    const listArea = h('div', {}, stateBox('loading', 'Loading comments…'));
    const text = h('textarea', { id: 'comment-text', name: 'text', rows: '3', required: true, maxlength: '10000', placeholder: 'What happened on this call? Notes are visible to everyone in your organisation.' });
    const err = h('p', { class: 'alert alert-error', role: 'alert', hidden: true });
    const submit = h('button', { type: 'submit', class: 'btn btn-primary', text: 'Add comment' });
    const author = meta('cs-author');
    const form = h('form', { class: 'comment-form', 'aria-label': 'Add a comment' },
      h('div', { class: 'field' }, h('label', { for: 'comment-text', text: 'Comment' }), text), err,
      h('div', { class: 'row' }, h('span', { class: 'faint', text: `Posting as ${author}` }), submit));
    replace(panel, h('div', { class: 'card' }, h('h2', { class: 'visually-hidden', text: 'Comments' }), listArea, form));

    const item = (c) => h('li', { class: 'comment' },
      h('header', {}, h('span', { class: 'author-name', text: c.author }), h('time', { datetime: c.created_at, text: fmt.time(c.created_at) })),
      h('p', { class: 'text', text: c.text }));
    const showList = (items) => {
      if (!items.length) replace(listArea, stateBox('empty', 'No comments yet', 'Add the first note about this call below.'));
      else replace(listArea, replace(list, items.map(item)));
    };
    let items = [];
    api(`${base}/comments`).then((r) => { items = r.data; showList(items); })
      .catch((e) => replace(listArea, stateBox('error', 'The comments could not be loaded', e.message)));

    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const body = text.value.trim();
      if (!body) { text.focus(); return; }
      submit.disabled = true;
      err.hidden = true;
      try {
        const c = await api(`${base}/comments`, { method: 'POST', body: { author, text: body } });
        items.push(c);
        showList(items);
        text.value = '';
        updateCommentCount(items.length);
        toast('Comment added');
      } catch (e) {
        err.textContent = e.message;
        err.hidden = false;
      } finally {
        submit.disabled = false;
      }
    });
  }

  function updateCommentCount(n) {
    let badgeEl = tabs.comments.querySelector('.tab-count');
    if (!badgeEl) { badgeEl = h('span', { class: 'tab-count' }); tabs.comments.append(badgeEl); }
    badgeEl.textContent = String(n);
  }

  const builders = { conversation: buildConversation, metadata: buildMetadata, logs: buildLogs, timeline: buildTimeline, comments: buildComments };

  // ---- start
  const wanted = TABS.includes(location.hash.slice(1)) ? location.hash.slice(1) : 'conversation';
  select(wanted, false);
  replace(panels[wanted], stateBox('loading', 'Loading the call…'));
  api(base).then((c) => {
    call = c;
    renderHead();
    loaded[wanted] = false;
    select(wanted, false);
    api(`${base}/comments`).then((r) => { if (r.data.length) updateCommentCount(r.data.length); }).catch(() => {});
    if (call.status === 'in_progress') {
      // Keep the header current while the call runs.
      const timer = setInterval(() => {
        if (call.status !== 'in_progress') { clearInterval(timer); return; }
        if (!document.hidden) refreshCall();
      }, 5000);
    }
  }).catch((e) => {
    if (e.status === 404) {
      replace(main, h('section', { class: 'state state-notfound', 'aria-labelledby': 'nf-title' },
        h('div', { class: 'state-icon', 'aria-hidden': 'true', text: '?' }), h('h1', { id: 'nf-title', text: 'Call not found' }),
        h('p', { text: 'There is no call at this address in your organisation\'s call logs.' }),
        h('p', {}, h('a', { class: 'btn btn-primary', href: '/calls', text: 'Back to call logs' }))));
      return;
    }
    replace(panels[wanted], stateBox('error', 'The call could not be loaded', e.message,
      h('button', { type: 'button', class: 'btn btn-primary', text: 'Try again', on: { click: () => location.reload() } })));
  });

  window.addEventListener('hashchange', () => {
    const t = location.hash.slice(1);
    if (TABS.includes(t)) select(t, false);
  });
}
