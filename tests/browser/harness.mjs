// The browser suite's fixtures: a real `callscope serve` on free ports over a temporary
// config and database, API keys made with `callscope keys create`, calls sent over real
// OTLP/HTTP (JSON), and Debian's Chromium driven by playwright-core.

import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import readline from 'node:readline';
import { randomUUID } from 'node:crypto';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, '..', '..');

/** The `callscope` binary under test: CALLSCOPE_BIN, set by .ci/run after `cargo build -p callscope`. */
export function binary() {
  const bin = process.env.CALLSCOPE_BIN;
  if (!bin) {
    throw new Error('Set CALLSCOPE_BIN to the callscope binary (e.g. $CARGO_TARGET_DIR/debug/callscope) after `cargo build -p callscope`.');
  }
  return bin;
}

export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

export function chromiumPath() {
  return process.env.CHROMIUM_PATH || '/usr/bin/chromium';
}

/** Where the screenshots of every page state go (printed by the suite). */
export function screenshotDir() {
  const dir = process.env.CONSOLE_SCREENSHOTS || path.join(repoRoot, 'target', 'console-screenshots');
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** A running `callscope serve` with two tenants' keys. */
export class Server {
  static async start() {
    const bin = binary();
    const dir = mkdtempSync(path.join(tmpdir(), 'callscope-console-'));
    const config = path.join(dir, 'callscope.toml');
    writeFileSync(config, [
      '[storage]', `path = ${JSON.stringify(path.join(dir, 'callscope.duckdb'))}`, '',
      '[otlp]', 'grpc_addr = "127.0.0.1:0"', 'http_addr = "127.0.0.1:0"', '',
      '[api]', 'addr = "127.0.0.1:0"', '',
    ].join('\n'));
    const env = { ...process.env };
    for (const k of Object.keys(env)) if (k.startsWith('CALLSCOPE_')) delete env[k];
    const keys = {};
    for (const tenant of ['acme', 'globex']) {
      keys[tenant] = execFileSync(bin, ['keys', 'create', '--tenant', tenant, '--config', config], { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    }
    const child = spawn(bin, ['serve', '--config', config], {
      env: { ...env, CALLSCOPE_LOG_FORMAT: 'json', CALLSCOPE_LOG: 'info' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const logs = [];
    const addrs = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('callscope serve did not start within 60 s:\n' + logs.join('\n'))), 60000);
      child.on('exit', (code) => reject(new Error(`callscope serve exited (${code}):\n${logs.join('\n')}`)));
      readline.createInterface({ input: child.stderr }).on('line', (line) => {
        logs.push(line);
        try {
          const f = JSON.parse(line).fields || {};
          if (f.message === 'callscope is serving.') {
            clearTimeout(timer);
            resolve({ api: f.api_addr, http: f.http_addr });
          }
        } catch { /* not JSON */ }
      });
    });
    const s = new Server();
    Object.assign(s, { child, dir, keys, logs, base: `http://${addrs.api}`, otlp: `http://${addrs.http}` });
    return s;
  }

  async stop() {
    if (this.child.exitCode === null) {
      const exited = new Promise((r) => this.child.once('exit', r));
      this.child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 15000))]);
      if (this.child.exitCode === null) this.child.kill('SIGKILL');
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Every log line the server wrote, for checks that nothing secret was logged. */
  logText() {
    return this.logs.join('\n');
  }
}

// ---- OTLP/HTTP JSON

const CATEGORY = {
  CALL_STARTED: 'CALL_LIFECYCLE', CALL_RECEIVED: 'CALL_LIFECYCLE', RECORDING_STARTED: 'CALL_LIFECYCLE',
  CALL_COMPLETED: 'CALL_LIFECYCLE', CALL_FAILED: 'CALL_LIFECYCLE', USER_MESSAGE_RECEIVED: 'USER',
  USER_STARTED_SPEAKING: 'USER', GREETING_SENT: 'AGENT', AGENT_MESSAGE_SENT: 'AGENT', TURN_LATENCY: 'METRICS',
  INTEGRATION_TOOL_FAILED: 'INTEGRATION_TOOLS', INTEGRATION_TOOL_COMPLETED: 'INTEGRATION_TOOLS', USAGE_REPORTED: 'METRICS',
  WEBHOOK_RESPONSE_FAILED: 'WEBHOOKS',
};
const SEVERITY = { DEBUG: 5, INFO: 9, WARNING: 13, ERROR: 17, CRITICAL: 21 };

function anyValue(v) {
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (Number.isInteger(v)) return { intValue: String(v) };
  return { doubleValue: v };
}

/** One customer-visible record. */
export function rec(tenant, callId, event, atMs, data = {}, level = 'INFO') {
  const attrs = { 'call.id': callId, 'tenant.id': tenant, 'callscope.visibility': 'customer', 'callscope.category': CATEGORY[event] || 'AGENT', ...data };
  return {
    timeUnixNano: String(BigInt(Math.round(atMs)) * 1000000n),
    severityNumber: SEVERITY[level],
    severityText: level,
    eventName: event,
    attributes: Object.entries(attrs).map(([key, v]) => ({ key, value: anyValue(v) })),
  };
}

/** Sends records over OTLP/HTTP JSON; resolves once callscope has committed them. */
export async function sendLogs(server, records) {
  const body = {
    resourceLogs: [{
      resource: { attributes: [{ key: 'service.name', value: { stringValue: 'browser-suite-agent' } }] },
      scopeLogs: [{ scope: { name: 'callscope-browser-suite' }, logRecords: records }],
    }],
  };
  const resp = await fetch(`${server.otlp}/v1/logs`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  if (!resp.ok) throw new Error(`OTLP export answered ${resp.status}: ${await resp.text()}`);
  const answer = await resp.json().catch(() => ({}));
  if (answer.partialSuccess && Number(answer.partialSuccess.rejectedLogRecords || 0) > 0) {
    throw new Error('OTLP export rejected records: ' + JSON.stringify(answer));
  }
}

/** One span of a call: customer-visible unless `internal`. Times in ms since the epoch. */
export function span(tenant, callId, traceId, spanId, parentId, name, startMs, endMs, { internal = false, error = null } = {}) {
  const attrs = internal ? { 'call.id': callId, 'tenant.id': tenant, 'db.statement': 'SELECT * FROM orders' }
    : { 'call.id': callId, 'tenant.id': tenant, 'callscope.visibility': 'customer' };
  const ns = (ms) => String(BigInt(Math.round(ms)) * 1000000n);
  return {
    traceId, spanId, parentSpanId: parentId || '', name, kind: 1,
    startTimeUnixNano: ns(startMs), endTimeUnixNano: ns(endMs),
    attributes: Object.entries(attrs).map(([key, v]) => ({ key, value: anyValue(v) })),
    status: error ? { code: 2, message: error } : { code: 0 },
  };
}

/** Sends spans over OTLP/HTTP JSON; resolves once callscope has committed them. */
export async function sendSpans(server, spans) {
  const body = {
    resourceSpans: [{
      resource: { attributes: [{ key: 'service.name', value: { stringValue: 'browser-suite-agent' } }] },
      scopeSpans: [{ scope: { name: 'callscope-browser-suite' }, spans }],
    }],
  };
  const resp = await fetch(`${server.otlp}/v1/traces`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  if (!resp.ok) throw new Error(`OTLP trace export answered ${resp.status}: ${await resp.text()}`);
  const answer = await resp.json().catch(() => ({}));
  if (answer.partialSuccess && Number(answer.partialSuccess.rejectedSpans || 0) > 0) {
    throw new Error('OTLP trace export rejected spans: ' + JSON.stringify(answer));
  }
}

export const XSS_LINE = '<img src=x onerror=alert(1)>';

/** The calls the suite reads: four for acme (completed, failed, missed, in progress) and one for globex. */
export function seedCalls() {
  const now = Date.now();
  const ids = {
    completed: 'c1a2' + randomUUID().slice(4),
    failed: 'f2b3' + randomUUID().slice(4),
    missed: 'a3c4' + randomUUID().slice(4),
    live: 'b4d5' + randomUUID().slice(4),
    globex: 'e5e6' + randomUUID().slice(4),
  };
  const r = [];
  // A completed inbound call with a recording, a conversation (one line is an XSS
  // attempt), turn latencies, a failed tool, and enough records for several log pages.
  let t = now - 40 * 60000;
  const A = ids.completed;
  r.push(rec('acme', A, 'CALL_STARTED', t, { direction: 'inbound', from: '+1 (555) 010-1234', to: '+1 555 0199' }));
  r.push(rec('acme', A, 'RECORDING_STARTED', t += 200, { recording_url: 'https://recordings.example/' + A + '.wav' }));
  r.push(rec('acme', A, 'GREETING_SENT', t += 800, { text: 'Hi, this is Ava from Acme Support. How can I help you today?' }));
  r.push(rec('acme', A, 'USER_MESSAGE_RECEIVED', t += 4000, { text: XSS_LINE, turn: 1, confidence: 0.91 }));
  r.push(rec('acme', A, 'TURN_LATENCY', t += 300, { turn: 1, stt_ms: 180, llm_ttft_ms: 420, tts_ttfb_ms: 150, end_to_end_ms: 890 }));
  r.push(rec('acme', A, 'AGENT_MESSAGE_SENT', t += 600, { text: 'Sorry, I did not catch that. Could you say it again?', turn: 1 }));
  r.push(rec('acme', A, 'USER_MESSAGE_RECEIVED', t += 5000, { text: "I'd like to check my order status, it's order 4471.", turn: 2, confidence: 0.97 }));
  // Turn 2 as spans: the turn, its three stages (the LLM's ended in an error) and one
  // internal span, which is forwarded but never stored.
  const trace = randomUUID().replaceAll('-', '');
  const spans = [
    span('acme', A, trace, '00000000000000a1', null, 'turn', t, t + 2100),
    span('acme', A, trace, '00000000000000a2', '00000000000000a1', 'stt', t + 5, t + 210),
    span('acme', A, trace, '00000000000000a3', '00000000000000a1', 'llm', t + 210, t + 1560, { error: 'rate limited, retried' }),
    span('acme', A, trace, '00000000000000a4', '00000000000000a1', 'tts', t + 1560, t + 1750),
    span('acme', A, trace, '00000000000000a5', '00000000000000a3', 'orders.lookup', t + 300, t + 900, { internal: true }),
  ];
  r.push(rec('acme', A, 'INTEGRATION_TOOL_FAILED', t += 400, { tool_name: 'crm_lookup', failure_reason: 'timeout after 10 s', latency_ms: 10000 }, 'ERROR'));
  r.push(rec('acme', A, 'TURN_LATENCY', t += 300, { turn: 2, stt_ms: 210, llm_ttft_ms: 1350, tts_ttfb_ms: 190, end_to_end_ms: 2100 }));
  r.push(rec('acme', A, 'AGENT_MESSAGE_SENT', t += 600, { text: 'Order 4471 shipped yesterday and should arrive on Friday.', turn: 2 }));
  r.push(rec('acme', A, 'TURN_LATENCY', t += 6000, { turn: 3, stt_ms: 160, llm_ttft_ms: 380, tts_ttfb_ms: 140, end_to_end_ms: 760 }));
  r.push(rec('acme', A, 'USAGE_REPORTED', t += 100, { llm_input_tokens: 1840, llm_output_tokens: 212, tts_characters: 480, stt_seconds: 41.5 }));
  for (let i = 0; i < 120; i += 1) r.push(rec('acme', A, 'USER_STARTED_SPEAKING', t += 50, { segment: i }, 'DEBUG'));
  r.push(rec('acme', A, 'CALL_COMPLETED', t += 1000, {
    duration_ms: 332000, ringing_duration_ms: 4000, bot_duration_ms: 320000, billed_duration_ms: 330000,
    hangup_reason: 'caller_hangup', hangup_source: 'caller',
  }));
  // A failed outbound campaign call.
  t = now - 30 * 60000;
  const B = ids.failed;
  r.push(rec('acme', B, 'CALL_STARTED', t, { direction: 'outbound', from: '+1 555 0100', to: '+44 20 7946 0018', campaign_id: 'campaign-42' }));
  r.push(rec('acme', B, 'GREETING_SENT', t += 900, { text: 'Hello, this is Acme calling about your appointment.' }));
  r.push(rec('acme', B, 'WEBHOOK_RESPONSE_FAILED', t += 2000, { url: 'https://hooks.example/status', status_code: 503, attempt: 1 }, 'WARNING'));
  r.push(rec('acme', B, 'CALL_FAILED', t += 9000, { failure_reason: 'carrier error', hangup_reason: 'network_error', hangup_source: 'system', duration_ms: 12000 }, 'ERROR'));
  // A missed inbound call.
  t = now - 20 * 60000;
  const C = ids.missed;
  r.push(rec('acme', C, 'CALL_STARTED', t, { direction: 'inbound', from: '+49 30 901820', to: '+1 555 0199' }));
  r.push(rec('acme', C, 'CALL_COMPLETED', t += 25000, { status: 'missed', duration_ms: 25000, ringing_duration_ms: 25000, hangup_reason: 'no_answer', hangup_source: 'caller' }));
  // A call still in progress.
  t = now - 60000;
  const D = ids.live;
  r.push(rec('acme', D, 'CALL_STARTED', t, { direction: 'inbound', from: '+1 555 0142', to: '+1 555 0199' }));
  r.push(rec('acme', D, 'GREETING_SENT', t += 700, { text: 'Hi, this is Ava. What can I do for you?' }));
  // Another tenant's call: never visible to acme.
  t = now - 10 * 60000;
  const G = ids.globex;
  r.push(rec('globex', G, 'CALL_STARTED', t, { direction: 'outbound', from: '+1 555 0300', to: '+1 555 0301' }));
  r.push(rec('globex', G, 'CALL_COMPLETED', t += 60000, { duration_ms: 60000, hangup_reason: 'agent_hangup', hangup_source: 'agent' }));
  return { ids, records: r, spans };
}
