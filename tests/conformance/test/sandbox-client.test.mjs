// Conformance: Cloudflare's unmodified @cloudflare/sandbox@0.12.10 client
// (SandboxClient over HTTP) against the real coved, for every route the HTTP
// transport of this release uses for sessions, commands and files.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';

import { SandboxClient, collectFile, parseSSEStream, streamFile } from '@cloudflare/sandbox';

import { events, rejectsWith } from '../lib/assertions.mjs';
import { Coved } from '../lib/coved.mjs';
import { waitUntil } from '../lib/wait.mjs';

const coved = new Coved();
const SID = `conf-${randomBytes(4).toString('hex')}`;
let client;

function makeClient(id = SID, token = coved.token) {
  return new SandboxClient({
    baseUrl: `${coved.url}/v1/sandboxes/${id}`,
    defaultHeaders: token ? { Authorization: `Bearer ${token}` } : {},
    retryTimeoutMs: 5000,
  });
}

before(async () => {
  await coved.start();
  client = makeClient();
});

after(async () => {
  const problems = await coved.shutdown();
  assert.deepEqual(problems, [], `leftovers after coved stopped:\n${problems.join('\n')}\n` +
                                 `--- coved log ---\n${coved.logTail()}`);
});

describe('sandbox is created on first use', () => {
  it('an unknown id is created by the first call', async () => {
    const fresh = `conf-auto-${randomBytes(3).toString('hex')}`;
    assert.equal((await coved.api('GET', `/v1/sandboxes/${fresh}`)).status, 404);
    const r = await makeClient(fresh).commands.execute('echo made', undefined);
    assert.equal(r.stdout, 'made\n');
    const info = await coved.api('GET', `/v1/sandboxes/${fresh}`);
    assert.equal(info.status, 200);
    assert.equal(info.json.state, 'running');
    assert.equal((await coved.api('DELETE', `/v1/sandboxes/${fresh}`)).status, 200);
  });

  it('a client without the token is refused', async () => {
    await rejectsWith(makeClient(SID, null).commands.execute('true', undefined), (e) => {
      assert.equal(e.httpStatus, 401);
      assert.equal(e.code, 'UNAUTHORIZED');
    });
  });
});

describe('utils', () => {
  it('ping', async () => {
    await client.utils.ping();  // resolves (its .message is undefined, as with Cloudflare)
    const raw = await fetch(`${coved.url}/v1/sandboxes/${SID}/api/ping`,
                            { headers: { Authorization: `Bearer ${coved.token}` } });
    assert.equal(raw.status, 200);
    const body = await raw.json();
    assert.equal(body.success, true);
    assert.equal(body.status, 'healthy');
  });

  it('getVersion', async () => {
    const v = await client.utils.getVersion();
    assert.equal(typeof v, 'string');
    const raw = await fetch(`${coved.url}/v1/sandboxes/${SID}/api/version`,
                            { headers: { Authorization: `Bearer ${coved.token}` } });
    assert.equal(raw.status, 200, 'GET /api/version must exist (getVersion hides errors)');
    assert.equal((await raw.json()).version, v);
  });

  it('createSession with env and cwd, then deleteSession', async () => {
    const r = await client.utils.createSession({ id: 's1', env: { FOO: 'bar' }, cwd: '/tmp' });
    assert.equal(r.success, true);
    const out = await client.commands.execute('echo "$FOO"; pwd', 's1');
    assert.equal(out.stdout, 'bar\n/tmp\n');
    await rejectsWith(client.utils.createSession({ id: 's1' }), (e) => {
      assert.equal(e.code, 'SESSION_ALREADY_EXISTS');
      assert.equal(e.httpStatus, 409);
    });
    const d = await client.utils.deleteSession('s1');
    assert.equal(d.success, true);
    assert.equal(d.sessionId, 's1');
    // next use creates a fresh session
    const again = await client.commands.execute('echo "${FOO-unset}"; pwd', 's1');
    assert.equal(again.stdout, 'unset\n/workspace\n');
  });

  it('createSession without an id generates one', async () => {
    const r = await client.utils.createSession({});
    assert.equal(r.success, true);
    const id = r.id ?? r.data?.id;
    assert.equal(typeof id, 'string');
    assert.ok(id.length > 0);
  });
});

describe('commands', () => {
  it('execute: stdout, stderr, exit code, success', async () => {
    const r = await client.commands.execute("sh -c 'echo out; echo err >&2; exit 3'", 'c1');
    assert.equal(r.stdout, 'out\n');
    assert.equal(r.stderr, 'err\n');
    assert.equal(r.exitCode, 3);
    assert.equal(r.success, false);
    assert.equal(typeof r.timestamp, 'string');
    const ok = await client.commands.execute('true', 'c1');
    assert.equal(ok.success, true);
    assert.equal(ok.exitCode, 0);
  });

  it('execute: sessions keep cd, export and functions', async () => {
    await client.commands.execute('cd /usr && export K=v && f() { echo "f:$1"; }', 'c2');
    const r = await client.commands.execute('pwd; echo $K; f x', 'c2');
    assert.equal(r.stdout, '/usr\nv\nf:x\n');
  });

  it('execute: env and cwd options apply to one command', async () => {
    const r = await client.commands.execute('echo "$E"; pwd', 'c3',
                                            { env: { E: 'one' }, cwd: '/tmp' });
    assert.equal(r.stdout, 'one\n/tmp\n');
    const next = await client.commands.execute('echo "${E-unset}"; pwd', 'c3');
    assert.equal(next.stdout, 'unset\n/workspace\n');
  });

  it('execute: sessionless', async () => {
    await client.commands.execute('cd /tmp', '__DISABLE_SESSION__');
    const r = await client.commands.execute('pwd', '__DISABLE_SESSION__');
    assert.equal(r.stdout, '/workspace\n');
  });

  it('execute: timeoutMs ends the command', async () => {
    const t0 = Date.now();
    const r = await client.commands.execute('sleep 30', 'c4', { timeoutMs: 500 })
      .catch((e) => e);
    assert.ok(Date.now() - t0 < 10000, 'timeout not applied');
    if (r instanceof Error) assert.ok(r.httpStatus >= 400);
    else assert.notEqual(r.exitCode, 0);
    const after = await client.commands.execute('echo still', 'c4');
    assert.equal(after.stdout, 'still\n');
  });

  it('executeStream parsed with parseSSEStream', async () => {
    const stream = await client.commands.executeStream(
      'for i in 1 2 3; do echo $i; done; echo e >&2', 'c5');
    const evs = await events(stream);
    const types = evs.map((e) => e.type);
    assert.equal(types[0], 'start');
    assert.equal(types.at(-1), 'complete');
    assert.equal(evs.at(-1).exitCode, 0);
    assert.equal(evs.filter((e) => e.type === 'stdout').map((e) => e.data).join(''), '1\n2\n3\n');
    assert.equal(evs.filter((e) => e.type === 'stderr').map((e) => e.data).join(''), 'e\n');
  });

  it('executeStream: exit code and large output', async () => {
    const stream = await client.commands.executeStream("seq 1 20000; sh -c 'exit 6'",
                                                       '__DISABLE_SESSION__');
    const evs = await events(stream);
    assert.equal(evs.at(-1).type, 'complete');
    assert.equal(evs.at(-1).exitCode, 6);
    const out = evs.filter((e) => e.type === 'stdout').map((e) => e.data).join('');
    assert.equal(out, Array.from({ length: 20000 }, (_, i) => `${i + 1}\n`).join(''));
  });
});

describe('files', () => {
  const text = 'héllo wörld\nsecond line\n';
  const binary = randomBytes(150000);

  it('writeFile and readFile, utf-8', async () => {
    const w = await client.files.writeFile('/workspace/conf/a.txt', text, 'f1');
    assert.equal(w.success, true);
    const r = await client.files.readFile('/workspace/conf/a.txt', 'f1');
    assert.equal(r.success, true);
    assert.equal(r.content, text);
    assert.equal(r.encoding, 'utf-8');
    assert.equal(r.isBinary, false);
    assert.equal(r.size, Buffer.byteLength(text));
    assert.match(r.mimeType, /^text\//);
  });

  it('writeFile and readFile, base64', async () => {
    await client.files.writeFile('/workspace/conf/b.bin', binary.toString('base64'), 'f1',
                                 { encoding: 'base64' });
    const r = await client.files.readFile('/workspace/conf/b.bin', 'f1', { encoding: 'base64' });
    assert.equal(r.encoding, 'base64');
    assert.ok(Buffer.from(r.content, 'base64').equals(binary));
    const auto = await client.files.readFile('/workspace/conf/b.bin', 'f1');
    assert.equal(auto.isBinary, true);
    assert.equal(auto.encoding, 'base64');
    assert.ok(Buffer.from(auto.content, 'base64').equals(binary));
  });

  it('readFileStream with streamFile and collectFile', async () => {
    const t = await collectFile(await client.files.readFileStream('/workspace/conf/a.txt', 'f1'));
    assert.equal(t.content, text);
    assert.equal(t.metadata.isBinary, false);
    const b = await collectFile(await client.files.readFileStream('/workspace/conf/b.bin', 'f1'));
    assert.equal(b.metadata.isBinary, true);
    assert.ok(Buffer.from(b.content).equals(binary));
    const chunks = [];
    const gen = streamFile(await client.files.readFileStream('/workspace/conf/b.bin', 'f1'));
    let step = await gen.next();
    while (!step.done) {
      chunks.push(step.value);
      step = await gen.next();
    }
    assert.equal(step.value.size, binary.length);
    assert.ok(chunks.length >= 2, 'a 150 kB file comes in several chunks');
    assert.ok(Buffer.concat(chunks.map((c) => Buffer.from(c))).equals(binary));
  });

  it('mkdir, listFiles, exists', async () => {
    const m = await client.files.mkdir('/workspace/conf/d1/d2', 'f1', { recursive: true });
    assert.equal(m.success, true);
    await client.files.writeFile('/workspace/conf/d1/x.txt', 'x', 'f1');
    await client.files.writeFile('/workspace/conf/d1/.hidden', 'h', 'f1');
    const l = await client.files.listFiles('/workspace/conf/d1', 'f1');
    assert.equal(l.success, true);
    const names = l.files.map((f) => f.name).sort();
    assert.deepEqual(names, ['d2', 'x.txt']);
    const x = l.files.find((f) => f.name === 'x.txt');
    assert.equal(x.type, 'file');
    assert.equal(x.size, 1);
    assert.equal(x.absolutePath, '/workspace/conf/d1/x.txt');
    assert.equal(l.files.find((f) => f.name === 'd2').type, 'directory');
    const all = await client.files.listFiles('/workspace/conf', 'f1',
                                             { recursive: true, includeHidden: true });
    assert.ok(all.files.some((f) => f.name === '.hidden'));
    assert.ok(all.files.some((f) => f.absolutePath === '/workspace/conf/d1/d2'));
    assert.equal((await client.files.exists('/workspace/conf/d1/x.txt', 'f1')).exists, true);
    assert.equal((await client.files.exists('/workspace/conf/nope', 'f1')).exists, false);
  });

  it('renameFile, moveFile, deleteFile', async () => {
    const r = await client.files.renameFile('/workspace/conf/d1/x.txt', '/workspace/conf/d1/y.txt',
                                            'f1');
    assert.equal(r.success, true);
    assert.equal((await client.files.exists('/workspace/conf/d1/x.txt', 'f1')).exists, false);
    const m = await client.files.moveFile('/workspace/conf/d1/y.txt', '/workspace/conf/d1/d2/z.txt',
                                          'f1');
    assert.equal(m.success, true);
    assert.equal((await client.files.readFile('/workspace/conf/d1/d2/z.txt', 'f1')).content, 'x');
    const d = await client.files.deleteFile('/workspace/conf/d1/d2/z.txt', 'f1');
    assert.equal(d.success, true);
    assert.equal((await client.files.exists('/workspace/conf/d1/d2/z.txt', 'f1')).exists, false);
  });

  it('relative paths resolve against the session cwd', async () => {
    await client.commands.execute('mkdir -p /workspace/conf/rel && cd /workspace/conf/rel', 'f2');
    await client.files.writeFile('r.txt', 'rel', 'f2');
    const r = await client.commands.execute('cat /workspace/conf/rel/r.txt', 'f2');
    assert.equal(r.stdout, 'rel');
  });

  it('errors map to typed errors', async () => {
    await rejectsWith(client.files.readFile('/workspace/conf/missing.txt', 'f1'), (e) => {
      assert.equal(e.name, 'FileNotFoundError');
      assert.equal(e.code, 'FILE_NOT_FOUND');
      assert.equal(e.httpStatus, 404);
      assert.match(e.message, /missing\.txt/);
    });
    await rejectsWith(client.files.deleteFile('/workspace/conf/missing.txt', 'f1'), (e) => {
      assert.equal(e.name, 'FileNotFoundError');
    });
    await rejectsWith(client.files.listFiles('/workspace/conf/missing-dir', 'f1'), (e) => {
      assert.equal(e.code, 'FILE_NOT_FOUND');
    });
    await rejectsWith(client.files.readFile('/workspace/conf', 'f1'), (e) => {
      assert.equal(e.code, 'IS_DIRECTORY');
      assert.equal(e.httpStatus, 400);
    });
    await rejectsWith(client.commands.execute(undefined, 'c1'), (e) => {
      assert.equal(e.code, 'VALIDATION_FAILED');
      assert.equal(e.httpStatus, 400);
    });
  });
});

describe('processes', () => {
  it('startProcess, getProcess, getProcessLogs, listProcesses', async () => {
    const started = await client.processes.startProcess('echo hello; echo oops >&2', 'p1', { processId: 'conf-p1' });
    assert.equal(started.success, true);
    assert.equal(started.processId, 'conf-p1');
    assert.ok(started.pid > 0);
    const done = await waitUntil(async () => {
      const r = await client.processes.getProcess('conf-p1');
      return r.process.status === 'completed' ? r : null;
    }, 'conf-p1 to complete', { intervalMs: 100 });
    assert.equal(done.process.exitCode, 0);
    const logs = await client.processes.getProcessLogs('conf-p1');
    assert.equal(logs.stdout, 'hello\n');
    assert.equal(logs.stderr, 'oops\n');
    const list = await client.processes.listProcesses();
    assert.ok(list.processes.some((p) => p.id === 'conf-p1'));
  });

  it('streamProcessLogs replays, follows and ends with exit', async () => {
    await client.processes.startProcess('echo one; sleep 0.3; echo two', 'p1', { processId: 'conf-p2' });
    const evs = await events(await client.processes.streamProcessLogs('conf-p2'));
    assert.equal(evs[0].type, 'process_info');
    assert.equal(evs.filter((e) => e.type === 'stdout').map((e) => e.data).join(''), 'one\ntwo\n');
    assert.equal(evs.at(-1).type, 'exit');
    assert.equal(evs.at(-1).exitCode, 0);
  });

  it('killProcess and killAllProcesses', async () => {
    await client.processes.startProcess('sleep 60', 'p1', { processId: 'conf-k1' });
    await client.processes.startProcess('sleep 60', 'p1', { processId: 'conf-k2' });
    await client.processes.killProcess('conf-k1');
    await waitUntil(async () => (await client.processes.getProcess('conf-k1')).process.status === 'killed',
                    'conf-k1 to be killed', { intervalMs: 100 });
    const all = await client.processes.killAllProcesses();
    assert.equal(all.cleanedCount, 1);
    await rejectsWith(client.processes.getProcess('conf-none'), (e) => {
      assert.equal(e.code, 'PROCESS_NOT_FOUND');
      assert.equal(e.httpStatus, 404);
    });
  });
});

describe('git and ports', () => {
  it('git.checkout clones a repository (file:// inside the sandbox)', async () => {
    await client.commands.execute(
      'set -e; rm -rf /tmp/conf-origin; mkdir /tmp/conf-origin; cd /tmp/conf-origin; git init -q -b main; ' +
      'git config user.email t@e; git config user.name t; echo hi > f; git add f; git commit -q -m one',
      '__DISABLE_SESSION__');
    const r = await client.git.checkout('file:///tmp/conf-origin', 'g1', { targetDir: '/workspace/conf-clone' });
    assert.equal(r.success, true);
    assert.equal(r.branch, 'main');
    assert.equal(r.targetDir, '/workspace/conf-clone');
    assert.equal((await client.commands.execute('cat /workspace/conf-clone/f', 'g1')).stdout, 'hi\n');
    await rejectsWith(client.git.checkout('file:///tmp/conf-missing', 'g1', { targetDir: '/tmp/conf-x' }), (e) => {
      assert.equal(e.code, 'GIT_REPOSITORY_NOT_FOUND');
      assert.equal(e.httpStatus, 404);
    });
  });

  it('ports.watchPort reports a server started as a process', async () => {
    await client.processes.startProcess('exec python3 -m http.server 8090 --bind 127.0.0.1', 'p1',
                                        { processId: 'conf-web' });
    const evs = await events(await client.ports.watchPort({ port: 8090, mode: 'http', path: '/', interval: 100 }));
    assert.equal(evs[0].type, 'watching');
    assert.equal(evs.at(-1).type, 'ready');
    assert.equal(evs.at(-1).statusCode, 200);
    await client.processes.killProcess('conf-web');
  });
});

describe('watch', () => {
  it('watch sees a file written by another request; checkChanges cursors', async () => {
    await client.files.mkdir('/workspace/conf-watch', 'w1', { recursive: true });
    const stream = await client.watch.watch({ path: '/workspace/conf-watch', recursive: true });
    const reader = parseSSEStream(stream)[Symbol.asyncIterator]();
    const first = (await reader.next()).value;
    assert.equal(first.type, 'watching');
    await client.files.writeFile('/workspace/conf-watch/new.txt', 'x', 'w1');
    let ev;
    do { ev = (await reader.next()).value; } while (ev.type !== 'event');
    assert.equal(ev.path, '/workspace/conf-watch/new.txt');
    assert.equal(ev.isDirectory, false);
    await reader.return?.();

    const v0 = await client.watch.checkChanges({ path: '/workspace/conf-watch' });
    assert.equal(v0.success, true);
    assert.equal((await client.watch.checkChanges({ path: '/workspace/conf-watch', since: v0.version })).status,
                 'unchanged');
    await client.files.writeFile('/workspace/conf-watch/two.txt', 'y', 'w1');
    const changedSinceV0 = async () =>
      (await client.watch.checkChanges({ path: '/workspace/conf-watch', since: v0.version })).status === 'changed';
    await waitUntil(changedSinceV0, 'checkChanges to see two.txt', { intervalMs: 100 });
    const stale = await client.watch.checkChanges({ path: '/workspace/conf-watch', since: 'bogus:1' });
    assert.equal(stale.status, 'resync');
  });
});
