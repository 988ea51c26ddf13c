// Formatting for people: durations like "5m 32s", times in the browser's own time
// zone with the zone shown, and the API's codes as words.

/** "5m 32s", "1h 02m", "45s", "0.8s"; an em dash for null. */
export function duration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(Number(ms))) return '—';
  ms = Number(ms);
  if (ms < 0) ms = 0;
  if (ms < 1000) return ms === 0 ? '0s' : `${(ms / 1000).toFixed(1)}s`;
  const total = Math.round(ms / 1000);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  if (h > 0) return `${h}h ${String(m).padStart(2, '0')}m`;
  if (m > 0) return `${m}m ${String(s).padStart(2, '0')}s`;
  return `${s}s`;
}

/** Milliseconds for latency figures: "850 ms", "1.42 s". */
export function millis(ms) {
  if (ms === null || ms === undefined || Number.isNaN(Number(ms))) return '—';
  ms = Number(ms);
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(2)} s`;
}

const dateTime = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: 'numeric',
  hour: '2-digit', minute: '2-digit', second: '2-digit',
  timeZoneName: 'short',
});
const clockFmt = new Intl.DateTimeFormat(undefined, {
  hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false,
});
const dateFmt = new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'short', day: 'numeric' });

/** Local date and time with the zone, e.g. "Dec 2, 2026, 17:35:12 UTC". */
export function time(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : dateTime.format(d);
}

const shortFmt = new Intl.DateTimeFormat(undefined, {
  month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false, timeZoneName: 'short',
});

/** Local date and time with the zone, without the year when it is this year: "2 Dec, 18:16:42 CET". */
export function shortTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return d.getFullYear() === new Date().getFullYear() ? shortFmt.format(d) : dateTime.format(d);
}

/** Local wall-clock time with milliseconds, for log lines: "17:35:12.345". */
export function clock(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return `${clockFmt.format(d)}.${String(d.getMilliseconds()).padStart(3, '0')}`;
}

export function day(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? '' : dateFmt.format(d);
}

/** The browser's time zone, for captions: "Europe/Berlin (UTC+1)". */
export function zoneName() {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || 'local time';
  const off = -new Date().getTimezoneOffset();
  const sign = off >= 0 ? '+' : '-';
  const hh = Math.floor(Math.abs(off) / 60);
  const mm = Math.abs(off) % 60;
  return `${zone} (UTC${sign}${hh}${mm ? ':' + String(mm).padStart(2, '0') : ''})`;
}

/** "in_progress" -> "In progress", "no_answer" -> "No answer". */
export function words(code) {
  if (code === null || code === undefined || code === '') return '—';
  const s = String(code).replace(/[_-]+/g, ' ').trim().toLowerCase();
  return s.charAt(0).toUpperCase() + s.slice(1);
}

export function count(n) {
  return new Intl.NumberFormat().format(Number(n) || 0);
}

/** One line of a record's data: the fields people look for first. */
export function dataSummary(data) {
  if (!data || typeof data !== 'object') return '';
  const first = ['message', 'text', 'tool_name', 'destination', 'url', 'status_code',
    'failure_reason', 'latency_ms', 'attempt', 'end_to_end_ms', 'duration_ms', 'hangup_reason', 'status'];
  const keys = [...first.filter((k) => k in data), ...Object.keys(data).filter((k) => !first.includes(k))];
  const parts = [];
  for (const k of keys.slice(0, 5)) {
    const v = data[k];
    const shown = typeof v === 'string' ? v : JSON.stringify(v);
    parts.push(k === 'message' || k === 'text' ? shown : `${k}=${shown}`);
  }
  return parts.join('  ·  ');
}
