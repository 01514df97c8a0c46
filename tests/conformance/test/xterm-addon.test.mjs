// Cloudflare's SandboxAddon (@cloudflare/sandbox/xterm) on an xterm.js
// terminal (@xterm/headless under Node 20, `ws` as the WebSocket), pointed at
// coved's /ws/pty: what a browser page with the addon does.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, it } from 'node:test';

import { SandboxAddon } from '@cloudflare/sandbox/xterm';
import xterm from '@xterm/headless';
import { WebSocket } from 'ws';

import { Coved } from '../lib/coved.mjs';
import { waitUntil } from '../lib/wait.mjs';

const coved = new Coved();
const SID = `conf-addon-${randomBytes(4).toString('hex')}`;

before(async () => {
  await coved.start();
  globalThis.WebSocket ??= WebSocket;
  globalThis.location ??= { protocol: 'http:', host: `127.0.0.1:${coved.port}` };
});
after(async () => {
  const problems = await coved.shutdown();
  assert.deepEqual(problems, [], `leftovers:\n${problems.join('\n')}\n${coved.logTail()}`);
});

function screen(term) {
  const buf = term.buffer.active;
  const lines = [];
  for (let i = 0; i < buf.length; i++) lines.push(buf.getLine(i)?.translateToString(true) ?? '');
  return lines.join('\n');
}

it('the addon connects, types, and follows a resize', async () => {
  const term = new xterm.Terminal({ cols: 90, rows: 25, allowProposedApi: true });
  const states = [];
  const addon = new SandboxAddon({
    getWebSocketUrl: ({ sandboxId, sessionId }) =>
      `ws://127.0.0.1:${coved.port}/v1/sandboxes/${sandboxId}/ws/pty?sessionId=${sessionId}&token=${coved.token}`,
    onStateChange: (s) => states.push(s),
  });
  term.loadAddon(addon);
  addon.connect({ sandboxId: SID, sessionId: 'addon' });
  await waitUntil(() => addon.state === 'connected');
  term.input('echo addon-$((20+22))\r');
  await waitUntil(() => screen(term).includes('addon-42'));
  term.resize(100, 30);  // the addon sends {type:"resize"}
  // It reaches the PTY asynchronously: ask again until the new size shows.
  const newSizeShown = () => {
    if (screen(term).includes('30 100')) return true;
    term.input('stty size\r');
    return false;
  };
  await waitUntil(newSizeShown, 'stty size to say 30 100', { intervalMs: 1000 });
  addon.disconnect();
  term.dispose();
  assert.ok(states.includes('connecting') && states.includes('connected'));
});
