// The console in a real browser: Debian's Chromium, driven by playwright-core, against
// a real `callscope serve` fed over real OTLP. The steps read like a support engineer's
// day: sign in, filter the call logs through the URL, open a call, walk every tab, add
// a comment, download the report three ways, watch live updates arrive, and sign out.
// Every page state is saved as a screenshot (the directory is printed).
//
// Run alone: see README.md ("The console" → browser tests).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync, readFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { CHROMIUM_ARGS, Server, XSS_LINE, chromiumPath, rec, screenshotDir, seedCalls, sendLogs, sendSpans } from './harness.mjs';

let server;
let browser;
let context;
let page;
let ids;
let shots;
let downloadsDir;
const dialogs = [];
const externalRequests = [];
const sessionIds = new Set();

async function shot(name) {
  await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
}

async function waitFor(fn, what, timeoutMs = 15000) {
  const until = Date.now() + timeoutMs;
  let last;
  while (Date.now() < until) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) { last = e; }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}${last ? ': ' + last.message : ''}`);
}

async function sessionCookie() {
  const c = (await context.cookies()).find((x) => x.name === 'callscope_session');
  if (c) sessionIds.add(c.value);
  return c ? `${c.name}=${c.value}` : null;
}

before(async () => {
  shots = screenshotDir();
  downloadsDir = mkdtempSync(path.join(tmpdir(), 'callscope-downloads-'));
  console.log(`# screenshots: ${shots}`);
  server = await Server.start();
  const seeded = seedCalls();
  ids = seeded.ids;
  await sendLogs(server, seeded.records);
  await sendSpans(server, seeded.spans);
  browser = await chromium.launch({ executablePath: chromiumPath(), args: CHROMIUM_ARGS });
  context = await browser.newContext({
    viewport: { width: 1280, height: 800 },
    timezoneId: 'Europe/Berlin',
    locale: 'en-GB',
    acceptDownloads: true,
  });
  page = await context.newPage();
  page.setDefaultTimeout(10000);
  page.on('pageerror', (e) => console.log('# page error: ' + e.message));
  page.on('dialog', async (d) => { dialogs.push(d.message()); await d.dismiss(); });
  // Nothing may be fetched from another origin while the pages load.
  await context.route((url) => !url.href.startsWith(server.base), (route) => {
    externalRequests.push(route.request().url());
    return route.abort();
  });
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

describe('the console', () => {
  test('the sign-in page refuses a wrong key and signs in with the right one', async () => {
    const resp = await page.goto(server.base + '/');
    assert.equal(new URL(page.url()).pathname, '/signin');
    const csp = resp.headers()['content-security-policy'];
    assert.match(csp, /script-src 'self';/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.equal(resp.headers()['x-content-type-options'], 'nosniff');
    await shot('01-sign-in');

    await page.getByLabel('API key', { exact: true }).fill('cs_not_a_real_key');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').filter({ hasText: 'not valid' }).waitFor();
    await shot('02-sign-in-wrong-key');

    await page.getByLabel('API key', { exact: true }).fill(server.keys.acme);
    await page.getByLabel('Your name', { exact: true }).fill('Ana Support');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL('**/calls');
    const cookie = (await context.cookies()).find((c) => c.name === 'callscope_session');
    assert.ok(cookie, 'a session cookie');
    sessionIds.add(cookie.value);
    assert.equal(cookie.httpOnly, true);
    assert.equal(cookie.sameSite, 'Strict');
    assert.equal(cookie.path, '/');
    assert.ok(!cookie.value.includes(server.keys.acme));
  });

  test('the call logs show exactly the tenant\'s calls in the nine columns and the p95 turn latency', async () => {
    await page.getByRole('heading', { name: 'Call logs' }).waitFor();
    const table = page.getByRole('table');
    await table.waitFor();
    const headers = await table.locator('thead th').allTextContents();
    assert.deepEqual(headers.map((s) => s.trim().toLowerCase()),
      ['call id', 'recording', 'direction', 'from', 'to', 'duration', 'turn p95', 'start time', 'status', 'hangup reason']);
    await waitFor(async () => (await table.locator('tbody tr').count()) === 4, 'four acme calls');
    const text = await table.innerText();
    for (const id of [ids.completed, ids.failed, ids.missed, ids.live]) assert.ok(text.includes(id), id);
    assert.ok(!text.includes(ids.globex), 'another tenant\'s call is not listed');
    // Durations and times for people: "5m 32s", local time with the zone.
    const row = table.locator('tbody tr', { hasText: ids.completed });
    assert.match(await row.innerText(), /5m 32s/);
    assert.match(await row.locator('time').innerText(), /CES?T|GMT\+\d/);
    assert.equal(await row.locator('.badge').innerText(), 'Completed');
    // The p95 turn latency is the API's figure, formatted; a call without turns shows a dash.
    const api = await (await fetch(`${server.base}/v1/calls/${ids.completed}`, { headers: { Authorization: `Bearer ${server.keys.acme}` } })).json();
    assert.ok(api.latency_p95_ms > 0, 'the seeded call has turn latencies');
    const p95 = api.latency_p95_ms < 1000 ? `${Math.round(api.latency_p95_ms)} ms` : `${(api.latency_p95_ms / 1000).toFixed(2)} s`;
    assert.equal((await row.locator('td').nth(6).innerText()).trim(), p95);
    const missed = table.locator('tbody tr', { hasText: ids.missed });
    assert.equal((await missed.locator('td').nth(6).innerText()).trim(), '—');
    await page.getByText(/4 calls/).waitFor();
    await shot('03-calls');
  });

  test('filters live in the URL with the API\'s names, and the form follows them', async () => {
    await page.goto(server.base + '/calls?status=failed');
    const table = page.getByRole('table');
    await waitFor(async () => (await table.locator('tbody tr').count()) === 1, 'one failed call');
    assert.ok((await table.innerText()).includes(ids.failed));
    assert.equal(await page.getByLabel('Status', { exact: true }).inputValue(), 'failed');
    await shot('04-calls-filtered-status');

    // Choosing a direction in the form puts it in the URL.
    await page.goto(server.base + '/calls');
    await waitFor(async () => (await table.locator('tbody tr').count()) === 4, 'all calls again');
    await page.getByLabel('Direction', { exact: true }).selectOption('outbound');
    await page.waitForURL(/direction=outbound/);
    await waitFor(async () => (await table.locator('tbody tr').count()) === 1, 'one outbound call');

    // Every seed-001 filter has a labelled control.
    for (const label of ['Status', 'From', 'To', 'Direction', 'Hangup reason', 'Campaign ID', 'Hangup source',
      'Search by call ID or number', 'Ringing duration, at least (seconds)', 'Call duration, at most (seconds)',
      'Voice bot duration, at least (seconds)', 'Voice bot bill duration, at most (seconds)']) {
      assert.equal(await page.getByLabel(label, { exact: true }).count(), 1, label);
    }

    // A duration range typed in seconds is sent in milliseconds.
    await page.goto(server.base + '/calls');
    await page.getByLabel('Call duration, at least (seconds)', { exact: true }).fill('300');
    await page.getByRole('button', { name: 'Apply filters' }).click();
    await page.waitForURL(/min_duration_ms=300000/);
    await waitFor(async () => (await table.locator('tbody tr').count()) === 1, 'one call of at least 5 minutes');
    assert.ok((await table.innerText()).includes(ids.completed));
    await shot('05-calls-filtered-duration');

    // The seed-001 duration filters and digit matching on numbers, straight from the URL.
    const only = async (qs, id, what) => {
      await page.goto(server.base + '/calls?' + qs);
      await waitFor(async () => {
        const rows = await table.locator('tbody tr').allInnerTexts();
        return rows.length === 1 && rows[0].includes(id);
      }, what);
    };
    await only('min_ringing_duration_ms=20000', ids.missed, 'the call that rang 25 s');
    await only('min_bot_duration_ms=300000', ids.completed, 'the call with 5m 20s of bot time');
    await only('max_billed_duration_ms=400000&min_billed_duration_ms=1', ids.completed, 'the billed call');
    await only('from_number=010-1234', ids.completed, 'the caller whose number holds 0101234');
    assert.equal(await page.getByLabel('From', { exact: true }).inputValue(), '010-1234');
    assert.equal(await page.getByLabel('Ringing duration, at least (seconds)').inputValue(), '');

    // No match: a designed empty state.
    await page.goto(server.base + '/calls?hangup_reason=does_not_exist');
    await page.getByRole('heading', { name: 'No calls match these filters' }).waitFor();
    await shot('06-calls-empty');
  });

  test('the call-id search finds a call by the start of its id, or by a number', async () => {
    await page.goto(server.base + `/calls?q=${ids.missed.slice(0, 8)}`);
    const table = page.getByRole('table');
    await waitFor(async () => {
      const rows = await table.locator('tbody tr').allInnerTexts();
      return rows.length === 1 && rows[0].includes(ids.missed);
    }, 'only the call whose id starts so');
    assert.equal(await page.getByLabel('Search by call ID or number', { exact: true }).inputValue(), ids.missed.slice(0, 8));
    // Typed into the search box: a number, whatever its formatting.
    await page.getByLabel('Search by call ID or number', { exact: true }).fill('0049 30 901820');
    await page.keyboard.press('Enter');
    await page.waitForURL(/q=0049/);
    await waitFor(async () => {
      const rows = await table.locator('tbody tr').allInnerTexts();
      return rows.length === 1 && rows[0].includes(ids.missed);
    }, 'the call from +49 30 901820');
  });

  test('CSV, XLSX and PDF downloads hold exactly the filtered list', async () => {
    await page.goto(server.base + '/calls?status=failed');
    await waitFor(async () => (await page.getByRole('table').locator('tbody tr').count()) === 1, 'the failed call');
    const grab = async (name) => {
      const [dl] = await Promise.all([page.waitForEvent('download'), page.getByRole('link', { name, exact: true }).click()]);
      const file = path.join(downloadsDir, `calls.${name.toLowerCase()}`);
      await dl.saveAs(file);
      return file;
    };
    const csv = readFileSync(await grab('CSV'), 'utf8');
    const lines = csv.trim().split(/\r?\n/);
    assert.equal(lines.length, 2, csv);
    assert.ok(lines[0].includes('call_id'));
    assert.ok(lines[1].includes(ids.failed));
    assert.ok(!csv.includes(ids.completed));

    const xlsx = await grab('XLSX');
    const listing = execFileSync('unzip', ['-l', xlsx], { encoding: 'utf8' });
    assert.match(listing, /xl\/worksheets\/sheet1\.xml/);
    const parts = ['xl/worksheets/sheet1.xml', 'xl/sharedStrings.xml'].filter((p) => listing.includes(p));
    const sheetText = execFileSync('unzip', ['-p', xlsx, ...parts], { encoding: 'utf8' });
    assert.ok(sheetText.includes(ids.failed), 'the XLSX holds the failed call');
    assert.ok(!sheetText.includes(ids.completed), 'and only that one');

    const pdf = await grab('PDF');
    assert.equal(readFileSync(pdf).subarray(0, 5).toString(), '%PDF-');
    const text = execFileSync('pdftotext', ['-layout', pdf, '-'], { encoding: 'utf8' });
    // A long id wraps inside its table cell, so look for its first segment.
    assert.ok(text.includes(ids.failed.slice(0, 9)), 'the PDF lists the failed call');
    assert.ok(!text.includes(ids.completed.slice(0, 9)), 'and only that one');
    assert.match(text, /status=failed/, 'the header names the filters');
  });

  test('a new call appears in the list without a reload', async () => {
    await page.goto(server.base + '/calls');
    const table = page.getByRole('table');
    await waitFor(async () => (await table.locator('tbody tr').count()) === 4, 'four calls');
    const fresh = 'd6f7' + Date.now().toString(16);
    await sendLogs(server, [rec('acme', fresh, 'CALL_STARTED', Date.now(), { direction: 'inbound', from: '+1 555 0777', to: '+1 555 0199' })]);
    await waitFor(async () => (await table.innerText()).includes(fresh), 'the new call to appear', 20000);
    assert.equal(await page.locator('#live-status').innerText(), 'Live', 'the live stream, not polling');
    await shot('07-calls-live-new-call');
    ids.fresh = fresh;
  });

  test('a call opens on its conversation; customer text stays text', async () => {
    await page.goto(server.base + '/calls');
    await page.getByRole('link', { name: ids.completed, exact: true }).click();
    await page.waitForURL(`**/calls/${ids.completed}`);
    await page.getByRole('tab', { name: 'Conversation' }).waitFor();
    assert.equal(await page.getByRole('tab', { name: 'Conversation' }).getAttribute('aria-selected'), 'true');
    const transcript = page.getByRole('list', { name: 'Transcript' });
    await transcript.waitFor();
    await transcript.getByText(XSS_LINE, { exact: true }).waitFor();
    assert.equal(await page.locator('main img').count(), 0, 'no img element was created from customer data');
    await page.waitForTimeout(300);
    assert.deepEqual(dialogs, [], 'no script ran');
    assert.ok((await transcript.locator('.msg.user').count()) >= 2);
    assert.ok((await transcript.locator('.msg.agent').count()) >= 3);
    const audio = page.locator('audio');
    assert.equal(await audio.getAttribute('src'), `https://recordings.example/${ids.completed}.wav`);
    await page.getByRole('button', { name: 'Copy link' }).waitFor();
    await shot('08-call-conversation');
  });

  test('metadata shows every call field', async () => {
    await page.getByRole('tab', { name: 'Metadata' }).click();
    const panel = page.getByRole('tabpanel', { name: 'Metadata' });
    await panel.getByText('Hangup reason').waitFor();
    const text = await panel.innerText();
    for (const label of ['Call ID', 'Direction', 'From', 'To', 'Status', 'Start time', 'End time', 'Call duration', 'Ringing duration',
      'Voice bot duration', 'Voice bot bill duration', 'Hangup source', 'Recording URL', 'Log records']) {
      assert.ok(text.includes(label), label);
    }
    assert.ok(text.includes('5m 32s'));
    assert.ok(text.includes('+1 (555) 010-1234'));
    assert.match(page.url(), /#metadata$/);
    await shot('09-call-metadata');
  });

  test('logs: level and category filters, cursor paging', async () => {
    await page.getByRole('tab', { name: 'Logs' }).click();
    const panel = page.getByRole('tabpanel', { name: 'Logs' });
    const rows = panel.locator('tbody tr:not(.detail-row)');
    await waitFor(async () => (await rows.count()) === 100, 'a first page of 100 records');
    await shot('10-call-logs');
    await panel.getByRole('button', { name: 'Next →' }).click();
    await waitFor(async () => (await rows.count()) > 0 && (await rows.count()) < 100, 'the second page');
    assert.ok((await panel.innerText()).includes('CALL_COMPLETED'));
    await panel.getByRole('button', { name: '← Previous' }).click();
    await waitFor(async () => (await rows.count()) === 100, 'back to the first page');
    await panel.getByLabel('Level', { exact: true }).selectOption('ERROR');
    await waitFor(async () => (await rows.count()) === 1, 'one error');
    assert.ok((await rows.first().innerText()).includes('INTEGRATION_TOOL_FAILED'));
    await rows.first().getByRole('button', { name: /Show the full record/ }).click();
    await panel.locator('pre.json').filter({ hasText: 'crm_lookup' }).waitFor();
    await shot('11-call-logs-errors');
    // Two filter changes in a row, the first answer held back until after the second:
    // the table must show the later choice, not whichever answer came last.
    const unfiltered = (url) => /\/v1\/calls\/[^/]+\/logs\?/.test(url.href)
      && !url.searchParams.has('level') && !url.searchParams.has('category');
    const held = async (route) => { await new Promise((r) => setTimeout(r, 700)); await route.continue(); };
    await page.route(unfiltered, held);
    await panel.getByLabel('Level', { exact: true }).selectOption('');
    await panel.getByLabel('Category', { exact: true }).selectOption('METRICS');
    await waitFor(async () => (await rows.count()) === 4, 'three turn latencies and one usage report');
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(await rows.count(), 4, 'the held-back unfiltered page did not replace the filtered one');
    await page.unroute(unfiltered, held);
  });

  test('the timeline shows each turn\'s latency by stage', async () => {
    await page.getByRole('tab', { name: 'Timeline' }).click();
    const panel = page.getByRole('tabpanel', { name: 'Timeline' });
    const turns = panel.getByRole('list', { name: 'Turns' });
    await turns.waitFor();
    assert.equal(await turns.locator('li').count(), 3);
    const text = await panel.innerText();
    assert.ok(text.includes('2.10 s'), 'the slowest turn');
    assert.ok(text.includes('890 ms'));
    assert.ok(await panel.getByRole('img', { name: /Turn 2: speech-to-text 210 ms, LLM first token 1.35 s/ }).count() === 1);
    // The stored spans as a waterfall, in start order; the internal span is not there.
    const waterfall = panel.getByRole('list', { name: 'Spans by start time' });
    await waterfall.waitFor();
    const names = (await waterfall.locator('.wf-name').allTextContents()).map((s) => s.trim());
    assert.deepEqual(names, ['turn', 'stt', 'llm', 'tts']);
    assert.equal(await waterfall.locator('.wf-bar.error').count(), 1, 'the failed LLM call is marked');
    assert.ok((await waterfall.innerText()).includes('2.10 s'), 'the turn span\'s duration');
    assert.ok(!(await panel.innerText()).includes('orders.lookup'), 'internal spans are never shown');
    await shot('12-call-timeline');
  });

  test('comments: add one, shown with its author and time', async () => {
    await page.getByRole('tab', { name: 'Comments' }).click();
    const panel = page.getByRole('tabpanel', { name: 'Comments' });
    await panel.getByRole('heading', { name: 'No comments yet' }).waitFor();
    await shot('13-call-comments-empty');
    await panel.getByLabel('Comment', { exact: true }).fill(`Caller could not be understood on turn 1; CRM timed out. ${XSS_LINE}`);
    await panel.getByRole('button', { name: 'Add comment' }).click();
    const list = panel.getByRole('list', { name: 'Comments' });
    await list.getByText('Ana Support').waitFor();
    assert.ok((await list.innerText()).includes(XSS_LINE));
    assert.equal(await page.locator('main img').count(), 0);
    // It is stored: a reload shows it.
    await page.reload();
    await page.getByRole('tabpanel', { name: 'Comments' }).getByText('CRM timed out', { exact: false }).waitFor();
    await shot('14-call-comments');
  });

  test('an in-progress call\'s logs update live', async () => {
    await page.goto(server.base + `/calls/${ids.live}#logs`);
    const panel = page.getByRole('tabpanel', { name: 'Logs' });
    const rows = panel.locator('tbody tr:not(.detail-row)');
    await waitFor(async () => (await rows.count()) === 2, 'the two records so far');
    await panel.locator('.live-dot.on', { hasText: /^Live$/ }).waitFor();
    await sendLogs(server, [rec('acme', ids.live, 'USER_MESSAGE_RECEIVED', Date.now(), { text: 'Can I move my appointment to Tuesday?', turn: 1 })]);
    await waitFor(async () => (await rows.count()) === 3, 'the new record to arrive', 20000);
    assert.ok((await panel.innerText()).includes('Can I move my appointment to Tuesday?'));
    await shot('15-call-logs-live');
  });

  test('another tenant\'s call is a 404 page', async () => {
    const resp = await page.goto(server.base + `/calls/${ids.globex}`);
    assert.equal(resp.status(), 404);
    await page.getByRole('heading', { name: 'Call not found' }).waitFor();
    assert.ok(!(await page.content()).includes('agent_hangup'));
    await shot('16-call-not-found');
    const api = await page.request.get(server.base + `/v1/calls/${ids.globex}`);
    assert.equal(api.status(), 404);
  });

  test('search across calls, with counts by event, level and category', async () => {
    await page.goto(server.base + '/search');
    await page.getByRole('heading', { name: 'Search' }).waitFor();
    const results = page.getByRole('region', { name: 'Results' });
    await results.getByRole('table').waitFor();
    await page.getByRole('complementary', { name: 'Counts' }).getByRole('region', { name: 'By level' }).waitFor();
    await shot('17-search');
    await page.getByLabel('Text', { exact: true }).fill('crm_lookup');
    await page.getByRole('button', { name: 'Search', exact: true }).click();
    await page.waitForURL(/text=crm_lookup/);
    await waitFor(async () => (await results.locator('tbody tr').count()) === 1, 'one match');
    const link = results.getByRole('link', { name: ids.completed });
    assert.equal(await link.count(), 1);
    const byEvent = page.getByRole('region', { name: 'By event' });
    assert.ok((await byEvent.innerText()).includes('INTEGRATION_TOOL_FAILED'));
    await shot('18-search-results');
    // A level chosen from the counts narrows the search.
    await page.goto(server.base + '/search');
    await page.getByRole('region', { name: 'By level' }).getByRole('button', { name: /Error/ }).click();
    await page.waitForURL(/levels=ERROR/);
    await waitFor(async () => {
      const rows = await results.locator('tbody tr').allInnerTexts();
      return rows.length >= 2 && rows.every((r) => r.includes('ERROR'));
    }, 'only errors');
  });

  test('CSRF: the cookie alone never authorises a write', async () => {
    await page.goto(server.base + '/calls');
    const cookie = await sessionCookie();
    const url = server.base + `/v1/calls/${ids.completed}/comments`;
    const body = JSON.stringify({ author: 'mallory', text: 'forged' });
    const post = (headers) => fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json', Cookie: cookie, ...headers }, body });
    const csrf = await page.locator('meta[name="cs-csrf"]').getAttribute('content');
    let r = await post({ Origin: server.base });
    assert.equal(r.status, 403);
    assert.equal((await r.json()).error_code, 'FORBIDDEN');
    r = await post({ 'X-CSRF-Token': csrf, Origin: 'http://evil.example' });
    assert.equal(r.status, 403);
    r = await post({ 'X-CSRF-Token': 'x'.repeat(64), Origin: server.base });
    assert.equal(r.status, 403);
    // A page on another origin posting with the browser's cookies is refused too.
    const other = await context.newPage();
    await other.route('http://evil.example/**', (route) => route.fulfill({ contentType: 'text/html', body: '<p>evil</p>' }));
    await other.goto('http://evil.example/');
    const status = await other.evaluate(async ([u, b]) => {
      try {
        const resp = await fetch(u, { method: 'POST', credentials: 'include', headers: { 'Content-Type': 'text/plain' }, body: b });
        return resp.status;
      } catch { return 'blocked'; }
    }, [url, body]);
    assert.notEqual(status, 201);
    await other.close();
    const comments = await (await fetch(url, { headers: { Cookie: cookie } })).json();
    assert.ok(comments.data.every((c) => c.author !== 'mallory'), 'nothing forged was stored');
  });

  test('sign-out ends the session on the server', async () => {
    await page.goto(server.base + '/calls');
    const cookie = await sessionCookie();
    assert.equal((await fetch(server.base + '/v1/calls', { headers: { Cookie: cookie } })).status, 200);
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForURL('**/signin');
    await shot('19-signed-out');
    const r = await fetch(server.base + '/v1/calls', { headers: { Cookie: cookie } });
    assert.equal(r.status, 401, 'the old cookie is refused');
    const p = await fetch(server.base + '/calls', { headers: { Cookie: cookie }, redirect: 'manual' });
    assert.equal(p.status, 303);
    // The console now sends the browser to sign-in.
    await page.goto(server.base + '/calls?status=failed');
    assert.match(page.url(), /\/signin\?next=%2Fcalls%3Fstatus%3Dfailed/);
  });

  test('no key or session id was ever logged', async () => {
    const logs = server.logText();
    assert.ok(logs.length > 0);
    assert.ok(!logs.includes(server.keys.acme), 'the key is not in the logs');
    assert.ok(!logs.includes('callscope_session='), 'no session cookie in the logs');
    assert.ok(sessionIds.size > 0);
    for (const id of sessionIds) assert.ok(!logs.includes(id), 'a session id is not in the logs');
  });

  test('nothing was fetched from another origin', () => {
    assert.deepEqual(externalRequests, []);
  });
});
