// The terminal page coved serves (GET /v1/sandboxes/{id}/terminal) in a real
// Chromium (Debian's, driven by playwright-core): it connects, takes
// keystrokes, fits and resizes, runs a full-screen program, reconnects with a
// replay, and hides its token. Its assets and headers are checked with fetch.
// Chromium talks only to coved on 127.0.0.1.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';

import { chromium } from 'playwright-core';

import { Coved } from '../lib/coved.mjs';
import { waitUntil } from '../lib/wait.mjs';

const CHROMIUM = '/usr/bin/chromium';
const coved = new Coved();
const SID = `conf-page-${randomBytes(4).toString('hex')}`;
let browser;

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: run scripts/install-deps.sh`);
  await coved.start();
  const r = await coved.api('POST', '/v1/sandboxes', { id: SID, instanceType: 'lite' });
  assert.equal(r.status, 201, r.text);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync',
           '--disable-default-apps', '--disable-extensions', '--no-pings',
           '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1'],  // no name resolves
  });
});
after(async () => {
  await browser?.close();
  const problems = await coved.shutdown();
  assert.deepEqual(problems, [], `leftovers:\n${problems.join('\n')}\n${coved.logTail()}`);
});

const pageUrl = (query) => `${coved.url}/v1/sandboxes/${SID}/terminal${query}`;

// A page with its own context; every request it makes must go to coved, and
// every console message and CSP violation is kept.
async function open(query) {
  const context = await browser.newContext({ viewport: { width: 900, height: 600 } });
  const page = await context.newPage();
  const log = { requests: [], console: [], csp: [] };
  page.on('request', (r) => log.requests.push(r.url()));
  page.on('console', (m) => log.console.push(`${m.type()}: ${m.text()}`));
  await page.exposeFunction('__cspViolation', (v) => log.csp.push(v));
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation',
                              (e) => window.__cspViolation(`${e.violatedDirective} ${e.blockedURI}`));
  });
  const response = await page.goto(pageUrl(query));
  return { context, page, response, log };
}

// The active buffer's lines as text.
const screen = (page) => page.evaluate(() => {
  const b = window.coveTerminal.buffer.active;
  const out = [];
  for (let i = 0; i < b.length; i++) out.push(b.getLine(i)?.translateToString(true) ?? '');
  return out.join('\n');
});
const bufferType = (page) => page.evaluate(() => window.coveTerminal.buffer.active.type);
const size = (page) => page.evaluate(() => ({ cols: window.coveTerminal.cols, rows: window.coveTerminal.rows }));
const status = (page) => page.evaluate(() => document.getElementById('status').dataset.state);

async function run(page, command) {
  await page.keyboard.type(command);
  await page.keyboard.press('Enter');
}

describe('terminal page in Chromium', () => {
  it('connects, runs a command, hides the token, fits and resizes, runs vi', async () => {
    const { context, page, response, log } = await open(`?token=${coved.token}&session=web1`);
    assert.equal(response.status(), 200);
    await page.waitForFunction(() => window.coveTerminal, null, { timeout: 15000 });
    await waitUntil(async () => (await status(page)) === 'open', 'the ready message');
    await waitUntil(async () => /[$#] $/m.test(await screen(page)), 'the prompt');

    const url = new URL(page.url());
    assert.equal(url.searchParams.get('token'), null, 'the token left the address bar');
    assert.equal(url.searchParams.get('session'), 'web1');
    assert.ok(!(await page.evaluate(() => location.href)).includes(coved.token));

    await page.click('#terminal');
    await run(page, 'echo answer-$((6*7))');
    await waitUntil(async () => (await screen(page)).includes('answer-42'), 'answer-42');

    // The PTY has the terminal's size, before and after the window changes.
    const checkSize = async (marker) => {
      const { cols, rows } = await size(page);
      await run(page, `echo ${marker} $(stty size)`);
      await waitUntil(async () => (await screen(page)).includes(`${marker} ${rows} ${cols}`),
                      `stty size ${rows} ${cols}`);
      return { cols, rows };
    };
    const first = await checkSize('size-a');
    await page.setViewportSize({ width: 1300, height: 820 });
    await waitUntil(async () => (await size(page)).cols > first.cols, 'a wider terminal');
    const second = await checkSize('size-b');
    assert.ok(second.rows > first.rows, `${JSON.stringify(second)} vs ${JSON.stringify(first)}`);

    // A full-screen program switches to the alternate buffer and back.
    await run(page, 'vi');
    await waitUntil(async () => (await bufferType(page)) === 'alternate', 'vi on the alternate screen');
    await page.keyboard.press('Escape');
    await page.keyboard.type(':q!');
    await page.keyboard.press('Enter');
    await waitUntil(async () => (await bufferType(page)) === 'normal', 'back to the normal screen');
    await run(page, 'echo after-vi-$((1+1))');
    await waitUntil(async () => (await screen(page)).includes('after-vi-2'), 'the shell after vi');

    for (const u of log.requests) assert.ok(u.startsWith(`${coved.url}/`) || u.startsWith(`ws://127.0.0.1:${coved.port}/`), u);
    assert.deepEqual(log.csp, [], `CSP violations; console:\n${log.console.join('\n')}`);
    await context.close();
  });

  it('opening the link again reattaches with a replay; exit code; Reconnect', async () => {
    const first = await open(`?token=${coved.token}&session=web2`);
    await waitUntil(async () => (await status(first.page)) === 'open', 'the ready message');
    await first.page.click('#terminal');
    await run(first.page, 'echo replay-$((5*5))');
    await waitUntil(async () => (await screen(first.page)).includes('replay-25'), 'replay-25');
    await first.context.close();

    const { context, page } = await open(`?token=${coved.token}&session=web2`);
    await waitUntil(async () => (await status(page)) === 'open', 'the ready message');
    await waitUntil(async () => (await screen(page)).includes('replay-25'), 'the replayed output');
    await page.click('#terminal');
    await run(page, 'echo again-$((2*3))');
    await waitUntil(async () => (await screen(page)).includes('again-6'), 'again-6');
    // The shell's exit is shown, with its code.
    await run(page, 'exit 7');
    await waitUntil(async () => (await status(page)) === 'exited', 'the exit status');
    assert.match(await page.textContent('#status'), /code 7/);
    // Reconnect (no reload: the token is only in the page's memory) starts a new shell.
    await page.click('#status button');
    await waitUntil(async () => (await status(page)) === 'open', 'the ready message after Reconnect');
    await page.click('#terminal');
    await run(page, 'echo fresh-$((3*3))');
    await waitUntil(async () => (await screen(page)).includes('fresh-9'), 'fresh-9');
    await context.close();
  });

  it('a wrong or missing token gets 401 and no page', async () => {
    for (const query of ['', '?token=wrong', `?token=${coved.token}x`, '?session=web1']) {
      const { context, page, response } = await open(query);
      assert.equal(response.status(), 401, query);
      assert.equal(response.headers()['content-type'], 'application/json', query);
      const body = JSON.parse(await response.text());
      assert.equal(body.code, 'UNAUTHORIZED');
      assert.equal(await page.evaluate(() => typeof window.coveTerminal), 'undefined');
      await context.close();
    }
  });
});

describe('terminal page over HTTP', () => {
  const get = (path, headers = {}) => fetch(`${coved.url}${path}`, { headers });

  it('serves the page with strict headers, by header or ?token=', async () => {
    for (const r of [await get(`/v1/sandboxes/${SID}/terminal`, { Authorization: `Bearer ${coved.token}` }),
                     await get(`/v1/sandboxes/${SID}/terminal?token=${coved.token}`)]) {
      assert.equal(r.status, 200);
      assert.equal(r.headers.get('content-type'), 'text/html; charset=utf-8');
      assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
      assert.equal(r.headers.get('cache-control'), 'no-store');
      assert.equal(r.headers.get('referrer-policy'), 'no-referrer');
      const csp = r.headers.get('content-security-policy');
      assert.match(csp, /(^|; )default-src 'none'(;|$)/);
      assert.match(csp, /(^|; )script-src 'self'(;|$)/);
      assert.match(csp, new RegExp(`(^|; )connect-src 'self' ws://127\\.0\\.0\\.1:${coved.port} wss://127\\.0\\.0\\.1:${coved.port}(;|$)`));
      assert.match(csp, /frame-ancestors 'none'/);
      const html = await r.text();
      assert.match(html, /<script src="\/v1\/terminal\/xterm\.js"/);
      assert.ok(!html.includes(coved.token) && !html.includes(SID), 'nothing from the request in the page');
    }
  });

  it('?token= is accepted only on the page and on WebSocket upgrades', async () => {
    const r = await get(`/v1/sandboxes/${SID}?token=${coved.token}`);
    assert.equal(r.status, 401);
    const post = await fetch(`${coved.url}/v1/sandboxes/${SID}/terminal?token=${coved.token}`, { method: 'POST' });
    assert.equal(post.status, 401);
  });

  it('bad ids, other methods', async () => {
    const auth = { Authorization: `Bearer ${coved.token}` };
    const bad = await get('/v1/sandboxes/Bad_Id/terminal', auth);
    assert.equal(bad.status, 400);
    assert.equal((await bad.json()).code, 'VALIDATION_FAILED');
    const post = await fetch(`${coved.url}/v1/sandboxes/${SID}/terminal`, { method: 'POST', headers: auth });
    assert.equal(post.status, 405);
  });

  it('serves the assets publicly with their types; unknown ones are 404', async () => {
    const want = {
      'xterm.js': 'text/javascript; charset=utf-8',
      'addon-fit.js': 'text/javascript; charset=utf-8',
      'terminal.js': 'text/javascript; charset=utf-8',
      'xterm.css': 'text/css; charset=utf-8',
      'terminal.css': 'text/css; charset=utf-8',
    };
    for (const [name, type] of Object.entries(want)) {
      const r = await get(`/v1/terminal/${name}`);
      assert.equal(r.status, 200, name);
      assert.equal(r.headers.get('content-type'), type, name);
      assert.equal(r.headers.get('x-content-type-options'), 'nosniff', name);
      assert.match(r.headers.get('cache-control'), /max-age=\d+/, name);
      assert.ok((await r.text()).length > 100, name);
    }
    const xterm = await (await get('/v1/terminal/xterm.js')).text();
    assert.match(xterm, /Terminal/);
    for (const name of ['nope.js', 'terminal.html', '%2e%2e%2fapi-token', '', 'xterm.js/x']) {
      const r = await get(`/v1/terminal/${name}`);
      assert.equal(r.status, 404, name);
      const body = await r.json();
      assert.equal(body.code, 'NOT_FOUND');
      assert.equal(body.httpStatus, 404);
    }
    const post = await fetch(`${coved.url}/v1/terminal/xterm.js`, { method: 'POST' });
    assert.equal(post.status, 405);
  });
});
