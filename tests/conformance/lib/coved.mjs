// Starts the real coved on a free loopback port with a temporary state dir, and
// checks after it stopped that nothing it made is left on the host.
import { spawn, spawnSync } from 'node:child_process';
import {
  chmodSync, existsSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { waitUntil } from './wait.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
export const REPO = resolve(HERE, '..', '..', '..');
export const COVED = join(process.env.COVE_BUILD_DIR ?? join(REPO, 'build'), 'bin', 'coved');

function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

export class Coved {
  constructor() {
    this.base = mkdtempSync(join(tmpdir(), 'cove-conformance-'));
    chmodSync(this.base, 0o711);  // sandboxes' mapped ids traverse it
    this.stateDir = join(this.base, 'state');
    this.logPath = join(this.base, 'coved.log');
    this.proc = null;
    this.exited = null;
  }

  get url() { return `http://127.0.0.1:${this.port}`; }

  async start(timeoutMs = 60000) {
    if (!existsSync(COVED)) throw new Error(`${COVED} does not exist: build it first`);
    this.port = await freePort();
    this.previewPort ??= await freePort();  // the preview listener (--preview-listen)
    const log = openSync(this.logPath, 'a');
    const env = Object.fromEntries(Object.entries(process.env)
      .filter(([k]) => !k.startsWith('COVE_')));
    this.proc = spawn(COVED, ['--listen', `127.0.0.1:${this.port}`, '--state-dir', this.stateDir,
                              '--preview-listen', `127.0.0.1:${this.previewPort}`],
                      { stdio: ['ignore', log, log], detached: true, env });
    this.exited = new Promise((res) => this.proc.once('exit', (code, sig) => res({ code, sig })));
    const tokenFile = join(this.stateDir, 'api-token');
    const answering = async () => {
      if (this.proc.exitCode !== null) throw new Error(`coved exited at start:\n${this.logTail()}`);
      if (!existsSync(tokenFile)) return false;
      this.token = readFileSync(tokenFile, 'utf8').trim();
      try {
        const r = await fetch(`${this.url}/v1/sandboxes`, { headers: { Authorization: `Bearer ${this.token}` } });
        return r.status === 200;
      } catch {
        return false;  // not listening yet
      }
    };
    try {
      await waitUntil(answering, 'coved to answer GET /v1/sandboxes', { timeoutMs });
    } catch (e) {
      this.proc.kill('SIGKILL');
      throw new Error(`${e.message}\n${this.logTail()}`);
    }
  }

  async api(method, path, body) {
    const r = await fetch(`${this.url}${path}`, {
      method,
      headers: { Authorization: `Bearer ${this.token}`, 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    let json;
    try { json = JSON.parse(text); } catch { json = undefined; }
    return { status: r.status, json, text };
  }

  // Deletes every sandbox, stops coved with SIGTERM, and returns the list of leftovers.
  async shutdown() {
    const problems = [];
    const ids = new Set();
    if (this.proc && this.proc.exitCode === null) {
      const list = await this.api('GET', '/v1/sandboxes');
      for (const s of list.json?.sandboxes ?? []) ids.add(s.id);
      for (const id of ids) {
        const r = await this.api('DELETE', `/v1/sandboxes/${id}`);
        if (r.status !== 200) problems.push(`DELETE ${id}: ${r.status} ${r.text}`);
      }
      this.proc.kill('SIGTERM');
      const timer = setTimeout(() => this.proc.kill('SIGKILL'), 30000);
      const { code, sig } = await this.exited;
      clearTimeout(timer);
      if (code !== 0) problems.push(`coved exited with code ${code} signal ${sig} on SIGTERM`);
    }
    try {
      await waitUntil(() => leftovers(this.stateDir, [...ids]).length === 0, 'nothing left on the host',
                      { intervalMs: 200 });
    } catch {
      problems.push(...leftovers(this.stateDir, [...ids]));
    }
    // Reported above; now leave the machine clean (lazy unmount of what is left).
    for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
      const point = line.split(' ')[4];
      if (point?.startsWith(this.base)) spawnSync('umount', ['-l', point]);
    }
    if (problems.length === 0) rmSync(this.base, { recursive: true, force: true });
    return problems;
  }

  logTail(lines = 40) {
    try {
      return readFileSync(this.logPath, 'utf8').split('\n').slice(-lines).join('\n');
    } catch { return '(no log)'; }
  }
}

// Mounts naming the state dir, cgroup directories and processes of the given sandbox ids.
export function leftovers(stateDir, ids) {
  const out = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    if (line.includes(stateDir) || ids.some((id) => line.includes(`/${id}`))) {
      out.push(`mount left: ${line}`);
    }
  }
  const walk = (dir, depth) => {
    if (depth > 8) return;
    let entries;
    try { entries = readdirSync(dir, { withFileTypes: true }); } catch { return; }
    for (const e of entries) {
      if (!e.isDirectory()) continue;
      const p = join(dir, e.name);
      if (ids.some((id) => e.name.includes(id))) out.push(`cgroup left: ${p}`);
      walk(p, depth + 1);
    }
  };
  if (ids.length) walk('/sys/fs/cgroup', 0);
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
      const cg = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
      if (cmd.includes(stateDir) || ids.some((id) => cg.includes(id))) {
        out.push(`process left: ${pid} ${cmd}`);
      }
    } catch { /* gone */ }
  }
  return out;
}
