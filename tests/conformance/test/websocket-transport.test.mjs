// Conformance: the real client's WebSocket transport (/ws, reference §2.6)
// against coved. Node 20 has no global WebSocket: the `ws` package provides it.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';

import { SandboxClient, parseSSEStream } from '@cloudflare/sandbox';
import { WebSocket } from 'ws';

import { Coved } from '../lib/coved.mjs';
import { waitUntil } from '../lib/wait.mjs';

globalThis.WebSocket ??= WebSocket;

const coved = new Coved();
const SID = `conf-ws-${randomBytes(4).toString('hex')}`;
let client;

before(async () => {
  await coved.start();
  client = new SandboxClient({
    transportMode: 'websocket',
    wsUrl: `ws://127.0.0.1:${coved.port}/v1/sandboxes/${SID}/ws?token=${coved.token}`,
    retryTimeoutMs: 5000,
  });
});

after(async () => {
  client?.destroy?.();
  const problems = await coved.shutdown();
  assert.deepEqual(problems, [], `leftovers:\n${problems.join('\n')}\n${coved.logTail()}`);
});

describe('websocket transport', () => {
  it('commands, files and errors over one socket', async () => {
    const r = await client.commands.execute('echo over-ws; export K=v', 'w1');
    assert.equal(r.stdout, 'over-ws\n');
    assert.equal((await client.commands.execute('echo $K', 'w1')).stdout, 'v\n');
    await client.files.writeFile('/workspace/ws.txt', 'via socket', 'w1');
    assert.equal((await client.files.readFile('/workspace/ws.txt', 'w1')).content, 'via socket');
    await assert.rejects(client.files.readFile('/workspace/none.txt', 'w1'), (e) => e.code === 'FILE_NOT_FOUND');
  });

  it('streams come as one frame per event and end with the response', async () => {
    const evs = [];
    for await (const ev of parseSSEStream(await client.commands.executeStream('echo a; echo b >&2; exit 2', 'w1')))
      evs.push(ev);
    assert.equal(evs[0].type, 'start');
    assert.equal(evs.at(-1).type, 'complete');
    assert.equal(evs.at(-1).exitCode, 2);
  });

  it('large process logs (streamed by coved) come whole as one response', async () => {
    // 2 MB of stdout and some stderr: more than the agent answers in one frame.
    const cmd = 'head -c 1000000 /dev/zero | tr "\\0" a; head -c 1000000 /dev/zero | tr "\\0" b; echo err >&2';
    await client.processes.startProcess(cmd, 'w1', { processId: 'ws-big' });
    await waitUntil(async () => (await client.processes.getProcess('ws-big')).process.status === 'completed',
                    'ws-big to complete', { intervalMs: 100 });
    const logs = await client.processes.getProcessLogs('ws-big');
    assert.equal(logs.stdout.length, 2000000);
    assert.equal(logs.stdout, 'a'.repeat(1000000) + 'b'.repeat(1000000));
    assert.equal(logs.stderr, 'err\n');
  });

  it('a socket without the token is refused', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${coved.port}/v1/sandboxes/${SID}/ws`);
    const status = await new Promise((res) => {
      ws.on('unexpected-response', (_req, resp) => res(resp.statusCode));
      ws.on('open', () => res('open'));
      ws.on('error', () => {});
    });
    assert.equal(status, 401);
  });

  it('malformed frames get error frames, and the socket keeps serving', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${coved.port}/v1/sandboxes/${SID}/ws?token=${coved.token}`);
    await new Promise((res, rej) => { ws.on('open', res); ws.on('error', rej); });
    const next = () => new Promise((res) => ws.once('message', (d) => res(JSON.parse(d.toString()))));
    ws.send('not json');
    assert.equal((await next()).code, 'PARSE_ERROR');
    ws.send(JSON.stringify({ type: 'request', id: 'x' }));
    assert.equal((await next()).code, 'INVALID_REQUEST');
    ws.send(JSON.stringify({ type: 'request', id: 'p', method: 'GET', path: '/api/ping' }));
    const pong = await next();
    assert.equal(pong.type, 'response');
    assert.equal(pong.id, 'p');
    assert.equal(pong.status, 200);
    assert.equal(pong.body.status, 'healthy');
    ws.close();
  });

  it('requests beyond the in-flight bound are refused with 429, and the socket keeps serving', async () => {
    const MAX = 128;  // kMaxRequestsInFlight (src/api/ws_transport.h)
    await client.processes.startProcess('sleep 60', 'w1', { processId: 'ws-hold' });
    const ws = new WebSocket(`ws://127.0.0.1:${coved.port}/v1/sandboxes/${SID}/ws?token=${coved.token}`);
    await new Promise((res, rej) => { ws.on('open', res); ws.on('error', rej); });
    const answers = new Map();
    const waiters = new Map();
    ws.on('message', (d) => {
      const f = JSON.parse(d.toString());
      if (f.type !== 'response') return;
      answers.set(f.id, f);
      waiters.get(f.id)?.(f);
    });
    const answer = (id) => answers.get(id) ?? new Promise((res) => waiters.set(id, res));
    for (let i = 0; i < MAX + 2; i++)
      ws.send(JSON.stringify({ type: 'request', id: `s${i}`, method: 'GET', path: '/api/process/ws-hold/stream' }));
    for (const id of [`s${MAX}`, `s${MAX + 1}`]) {
      const f = await answer(id);
      assert.equal(f.status, 429);
      assert.equal(f.body.code, 'TOO_MANY_REQUESTS');
    }
    // The streams still run; cancelling one makes room again.
    ws.send(JSON.stringify({ type: 'cancel', id: 's0' }));
    await answer('s0');
    ws.send(JSON.stringify({ type: 'request', id: 'p', method: 'GET', path: '/api/ping' }));
    assert.equal((await answer('p')).status, 200);
    for (let i = 1; i < MAX; i++) assert.equal(answers.has(`s${i}`), false, `s${i} ended early`);
    ws.close();
    await client.processes.killProcess('ws-hold');
  });
});
