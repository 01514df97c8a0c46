// Terminals: the /ws/pty WebSocket of the reference (§3), driven as xterm.js
// clients drive it (binary keystrokes, JSON resize), with `ws` under Node 20.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';

import { WebSocket } from 'ws';

import { Coved } from '../lib/coved.mjs';
import { waitUntil } from '../lib/wait.mjs';

const coved = new Coved();
const SID = `conf-pty-${randomBytes(4).toString('hex')}`;

before(async () => { await coved.start(); });
after(async () => {
  const problems = await coved.shutdown();
  assert.deepEqual(problems, [], `leftovers:\n${problems.join('\n')}\n${coved.logTail()}`);
});

// A connected terminal client that records everything the server sends.
async function connect(query) {
  const ws = new WebSocket(`ws://127.0.0.1:${coved.port}/v1/sandboxes/${SID}/ws/pty?${query}&token=${coved.token}`);
  ws.binaryType = 'nodebuffer';
  const t = { ws, bytes: '', texts: [], closed: false };
  ws.on('message', (data, isBinary) => {
    if (isBinary) t.bytes += data.toString('utf8');
    else t.texts.push(JSON.parse(data.toString()));
  });
  ws.on('close', () => { t.closed = true; });
  await new Promise((res, rej) => { ws.on('open', res); ws.on('error', rej); });
  return t;
}

const type = (t, s) => t.ws.send(Buffer.from(s), { binary: true });

describe('terminal', () => {
  it('ready, keystrokes, size, resize, bad control message', async () => {
    const t = await connect('sessionId=t1&cols=100&rows=30');
    await waitUntil(() => t.texts.some((m) => m.type === 'ready'));
    type(t, 'stty size\r');
    await waitUntil(() => t.bytes.includes('30 100'));
    t.ws.send(JSON.stringify({ type: 'resize', cols: 120, rows: 40 }));
    type(t, 'stty size\r');
    await waitUntil(() => t.bytes.includes('40 120'));
    t.ws.send('not json');
    await waitUntil(() => t.texts.some((m) => m.type === 'error' && m.message === 'Invalid control message'));
    type(t, 'echo marker-$((6*7))\r');
    await waitUntil(() => t.bytes.includes('marker-42'));
    t.ws.close();
  });

  it('a reconnect replays the output and finds the same shell; exit ends every client', async () => {
    const a = await connect('sessionId=t1');
    await waitUntil(() => a.texts.some((m) => m.type === 'ready'));
    assert.ok(a.bytes.includes('marker-42'), 'replay holds the earlier output');
    const b = await connect('sessionId=t1');
    await waitUntil(() => b.texts.some((m) => m.type === 'ready'));
    type(a, 'exit 3\r');
    await waitUntil(() => a.texts.some((m) => m.type === 'exit') && b.texts.some((m) => m.type === 'exit'));
    assert.equal(a.texts.find((m) => m.type === 'exit').code, 3);
    await waitUntil(() => a.closed && b.closed);
  });

  it('sessionId is required', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${coved.port}/v1/sandboxes/${SID}/ws/pty?token=${coved.token}`);
    const status = await new Promise((res) => {
      ws.on('unexpected-response', (_req, resp) => res(resp.statusCode));
      ws.on('open', () => res('open'));
      ws.on('error', () => {});
    });
    assert.equal(status, 400);
  });
});
