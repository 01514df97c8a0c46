// interactive_bench: what an agent feels interactively, each against a
// baseline measured in the same run:
//   PTY keystroke to echo:  coved /ws/pty        vs a local PTY (script(1) + bash)
//   file watch:             write -> /api/watch   vs write -> Node's fs.watch on the host
//   process to completion:  /api/process/start + /stream until exit  vs Node spawn('true')
//   log streaming:          a process printing as fast as it can, read through
//                           /api/process/{id}/stream  vs the same command read from a host pipe
//
//   (cd tests/conformance && npm ci) && node bench/interactive_bench.mjs [--n 200] [--log-mb 200]
// It starts its own coved (build/bin) with the conformance suite's launcher.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, watch, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const require = createRequire(new URL('../tests/conformance/package.json', import.meta.url));
const { WebSocket } = require('ws');
const { Coved } = await import('../tests/conformance/lib/coved.mjs');

const LOG_MB = Number(process.argv[process.argv.indexOf('--log-mb') + 1]) || 200;
const N = Number(process.argv[process.argv.indexOf('--n') + 1]) || 200;
const now = () => Number(process.hrtime.bigint()) / 1e6;
const pct = (v, p) => [...v].sort((a, b) => a - b)[Math.min(v.length - 1, Math.floor(v.length * p))];
const fmt = (v) => `${pct(v, 0.5).toFixed(2)} / ${pct(v, 0.99).toFixed(2)}`;
const row = (what, a, base, b) => console.log(`| ${what} | ${a.length} | ${fmt(a)} | ${base} | ${fmt(b)} |`);

// Types one character at a time and waits until it is echoed.
async function echoLatencies(send, sink, n) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const ch = String.fromCharCode(97 + (i % 26));
    const t0 = now();
    await new Promise((res) => { sink.on = (s) => { if (s.includes(ch)) res(); }; send(ch); });
    out.push(now() - t0);
  }
  return out;
}

// Reads SSE events from a fetch response, one at a time.
function sseReader(res) {
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  return async () => {
    for (;;) {
      const i = buf.indexOf('\n\n');
      if (i >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 2);
        if (line.startsWith('data: ')) return JSON.parse(line.slice(6));
        continue;
      }
      const { value, done } = await reader.read();
      if (done) return null;
      buf += dec.decode(value, { stream: true });
    }
  };
}

const coved = new Coved();
await coved.start();
const sid = 'bench-interactive';
const auth = { Authorization: `Bearer ${coved.token}`, 'Content-Type': 'application/json' };
const post = (p, body) => fetch(`${coved.url}/v1/sandboxes/${sid}${p}`, { method: 'POST', headers: auth, body: JSON.stringify(body) });
try {
  await coved.api('POST', '/v1/sandboxes', { id: sid, instanceType: 'standard-3' });

  const ws = new WebSocket(`ws://127.0.0.1:${coved.port}/v1/sandboxes/${sid}/ws/pty?sessionId=b&token=${coved.token}`);
  const coveSink = { on: () => {} };
  await new Promise((res) => ws.on('open', res));
  ws.on('message', (d, bin) => { if (bin) coveSink.on(d.toString()); });
  await new Promise((r) => setTimeout(r, 500));
  const ptyCove = await echoLatencies((c) => ws.send(Buffer.from(c), { binary: true }), coveSink, N);
  ws.close();
  const local = spawn('script', ['-qfc', 'bash --norc --noprofile', '/dev/null'], { stdio: ['pipe', 'pipe', 'ignore'] });
  const localSink = { on: () => {} };
  local.stdout.on('data', (d) => localSink.on(d.toString()));
  await new Promise((r) => setTimeout(r, 500));
  const ptyLocal = await echoLatencies((c) => local.stdin.write(c), localSink, N);
  local.kill('SIGKILL');

  await post('/api/mkdir', { path: '/workspace/wb', recursive: true });
  const next = sseReader(await post('/api/watch', { path: '/workspace/wb' }));
  await next();  // watching
  const watchCove = [];
  for (let i = 0; i < N; i++) {
    const t0 = now();
    await post('/api/write', { path: `/workspace/wb/f${i}`, content: 'x' });
    for (let ev = await next(); !(ev.type === 'event' && ev.path.endsWith(`/f${i}`)); ev = await next());
    watchCove.push(now() - t0);
  }
  const dir = mkdtempSync(join(tmpdir(), 'cove-bench-watch-'));
  const watchHost = [];
  const hostSink = { on: () => {} };
  const w = watch(dir, (_e, name) => hostSink.on(name ?? ''));
  for (let i = 0; i < N; i++) {
    const t0 = now();
    await new Promise((res) => { hostSink.on = (name) => { if (name === `f${i}`) res(); }; writeFileSync(join(dir, `f${i}`), 'x'); });
    watchHost.push(now() - t0);
  }
  w.close();
  rmSync(dir, { recursive: true });

  const procCove = [];
  for (let i = 0; i < N; i++) {
    const t0 = now();
    await post('/api/process/start', { command: 'true', processId: `b${i}` });
    const ev = sseReader(await fetch(`${coved.url}/v1/sandboxes/${sid}/api/process/b${i}/stream`, { headers: auth }));
    for (let e = await ev(); e && e.type !== 'exit'; e = await ev());
    procCove.push(now() - t0);
  }
  const procHost = [];
  for (let i = 0; i < N; i++) {
    const t0 = now();
    await new Promise((res) => spawn('true').on('exit', res));
    procHost.push(now() - t0);
  }

  // Log throughput: the same flood read through coved's SSE stream and from a host pipe.
  const FLOOD = `yes 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde | head -c ${LOG_MB * 1000000}`;
  const t0 = now();
  await post('/api/process/start', { command: FLOOD, processId: 'flood' });
  const flood = sseReader(await fetch(`${coved.url}/v1/sandboxes/${sid}/api/process/flood/stream`, { headers: auth }));
  let coveBytes = 0, coveDropped = 0;
  for (let e = await flood(); e && e.type !== 'exit'; e = await flood()) {
    if (e.type === 'stdout') coveBytes += Buffer.byteLength(e.data);
    if (e.type === 'dropped') coveDropped += e.stdout;
  }
  const coveSecs = (now() - t0) / 1000;
  const t1 = now();
  let hostBytes = 0;
  await new Promise((res) => {
    const p = spawn('bash', ['-c', FLOOD], { stdio: ['ignore', 'pipe', 'ignore'] });
    p.stdout.on('data', (d) => { hostBytes += d.length; });
    p.on('close', res);
  });
  const hostSecs = (now() - t1) / 1000;

  console.log('| measure | n | cove p50 / p99 ms | baseline | baseline p50 / p99 ms |');
  console.log('|---|---|---|---|---|');
  row('PTY keystroke to echo', ptyCove, 'local PTY (script + bash)', ptyLocal);
  row('file write request to watch event', watchCove, 'host write to Node fs.watch event', watchHost);
  row('process start to completed (`true`)', procCove, 'Node spawn(`true`) to exit', procHost);
  console.log();
  console.log('| log streaming (MB/s) | cove: /api/process/{id}/stream | host: same command into a Node pipe |');
  console.log('|---|---|---|');
  console.log(`| ${LOG_MB} MB of \`yes\` output | ${(coveBytes / 1e6 / coveSecs).toFixed(0)} MB/s (${(coveBytes / 1e6).toFixed(1)} MB delivered, ${coveDropped} B dropped) | ${(hostBytes / 1e6 / hostSecs).toFixed(0)} MB/s |`);
} finally {
  await coved.api('DELETE', `/v1/sandboxes/${sid}`);
  const problems = await coved.shutdown();
  if (problems.length) console.error(problems.join('\n'));
}
