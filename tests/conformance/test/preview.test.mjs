// Preview URLs in a real Chromium (Debian's, driven by playwright-core): a dev
// server in the sandbox (tests/e2e/apps/preview_app.py, on 127.0.0.1 inside
// the sandbox) serves a page through its preview URL
// http://PORT-ID-TOKEN.localhost:PREVIEWPORT/; the page opens a WebSocket to
// its own origin and shows the echo. Chromium resolves *.localhost to the
// loopback itself; every other name is blocked.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { request } from 'node:http';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import { Coved } from '../lib/coved.mjs';
import { waitUntil } from '../lib/wait.mjs';

const CHROMIUM = '/usr/bin/chromium';
const APP = readFileSync(join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'e2e', 'apps', 'preview_app.py'), 'utf8');
const coved = new Coved();
const SID = `conf-pv-${randomBytes(4).toString('hex')}`;
let browser;

// GET through the preview listener with a given Host (Node does not resolve *.localhost).
function previewGet(host, path) {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port: coved.previewPort, path, headers: { Host: host } }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('error', (e) => resolve({ status: 0, body: String(e) }));
    req.end();
  });
}

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: run scripts/install-deps.sh`);
  await coved.start();
  let r = await coved.api('POST', '/v1/sandboxes', { id: SID, instanceType: 'lite' });
  assert.equal(r.status, 201, r.text);
  r = await coved.api('POST', `/v1/sandboxes/${SID}/api/write`, { path: '/tmp/preview_app.py', content: APP });
  assert.equal(r.status, 200, r.text);
  r = await coved.api('POST', `/v1/sandboxes/${SID}/api/process/start`,
                      { command: 'exec python3 /tmp/preview_app.py 5173', processId: 'dev' });
  assert.equal(r.status, 200, r.text);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync',
           '--disable-default-apps', '--disable-extensions', '--no-pings',
           // no name resolves, except the loopback and *.localhost (Chromium's own loopback names)
           '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost, EXCLUDE *.localhost'],
  });
});
after(async () => {
  await browser?.close();
  const problems = await coved.shutdown();
  assert.deepEqual(problems, [], `leftovers:\n${problems.join('\n')}\n${coved.logTail()}`);
});

describe('preview URL in Chromium', () => {
  it('loads a page from the sandbox whose WebSocket to the same origin echoes', async () => {
    const r = await coved.api('POST', `/v1/sandboxes/${SID}/ports`, { port: 5173, name: 'dev' });
    assert.equal(r.status, 201, r.text);
    const { url, token } = r.json;
    assert.equal(url, `http://5173-${SID}-${token}.localhost:${coved.previewPort}`);
    const host = new URL(url).host;
    await waitUntil(async () => (await previewGet(host, '/hello')).status === 200, 'the dev server to come up',
                    { timeoutMs: 30000 });

    const context = await browser.newContext();
    const page = await context.newPage();
    const requests = [];
    const consoleLines = [];
    page.on('request', (q) => requests.push(q.url()));
    page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
    const response = await page.goto(`${url}/`);
    assert.equal(response.status(), 200);
    assert.equal(await page.title(), 'preview');
    await page.waitForFunction(() => document.getElementById('out').textContent !== 'waiting', null,
                               { timeout: 15000 });
    assert.equal(await page.textContent('#out'), 'echo:hello-from-page', consoleLines.join('\n'));
    for (const u of requests) assert.ok(u.startsWith(`${url}/`), u);

    // A wrong token is the plain 404, in the browser too.
    const wrong = await page.goto(`http://5173-${SID}-${token === 'x' ? 'y' : 'x'}.localhost:${coved.previewPort}/`);
    assert.equal(wrong.status(), 404);
    await context.close();
  });
});
