// Conformance: the code interpreter of Cloudflare's unmodified
// @cloudflare/sandbox@0.12.10 client against the real coved (routes #28-#32 and
// section 4 of the reference). `sandbox` below is what the Durable Object's
// Sandbox does for createCodeContext / runCode / runCodeStream /
// listCodeContexts / deleteCodeContext: it forwards to the package's own
// CodeInterpreter over SandboxClient.interpreter (runCode answers
// Execution.toJSON()).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';

import { CodeInterpreter, SandboxClient } from '@cloudflare/sandbox';

import { events, rejectsWith } from '../lib/assertions.mjs';
import { Coved } from '../lib/coved.mjs';

const coved = new Coved();
const SID = `conf-ci-${randomBytes(4).toString('hex')}`;
let client;
let sandbox;

function makeClient(id = SID) {
  return new SandboxClient({
    baseUrl: `${coved.url}/v1/sandboxes/${id}`,
    defaultHeaders: { Authorization: `Bearer ${coved.token}` },
    retryTimeoutMs: 5000,
  });
}

// The Sandbox Durable Object's code-interpreter methods (sandbox.ts), verbatim.
function sandboxOf(c) {
  const ci = new CodeInterpreter(() => c.interpreter);
  return {
    createCodeContext: (options) => ci.createCodeContext(options),
    runCode: async (code, options) => (await ci.runCode(code, options)).toJSON(),
    runCodeStream: (code, options) => ci.runCodeStream(code, options),
    listCodeContexts: () => ci.listCodeContexts(),
    deleteCodeContext: (contextId) => ci.deleteCodeContext(contextId),
  };
}

const stdoutOf = (execution) => execution.logs.stdout.join('');
const stderrOf = (execution) => execution.logs.stderr.join('');

function pngSize(b64) {
  const buf = Buffer.from(b64, 'base64');
  assert.deepEqual([...buf.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'PNG signature');
  assert.equal(buf.subarray(12, 16).toString('latin1'), 'IHDR');
  return { width: buf.readUInt32BE(16), height: buf.readUInt32BE(20) };
}

before(async () => {
  await coved.start();
  client = makeClient();
  sandbox = sandboxOf(client);
});

after(async () => {
  const problems = await coved.shutdown();
  assert.deepEqual(problems, [], `leftovers after coved stopped:\n${problems.join('\n')}\n` +
                                 `--- coved log ---\n${coved.logTail()}`);
});

describe('python', () => {
  let ctx;
  before(async () => {
    ctx = await sandbox.createCodeContext({ language: 'python' });
  });

  it('createCodeContext answers an id, the language and /workspace', () => {
    assert.equal(typeof ctx.id, 'string');
    assert.ok(ctx.id.length > 0);
    assert.equal(ctx.language, 'python');
    assert.equal(ctx.cwd, '/workspace');
    assert.ok(ctx.createdAt instanceof Date && !Number.isNaN(ctx.createdAt.getTime()));
  });

  it('state persists across runCode calls: variables, imports, functions, classes', async () => {
    let r = await sandbox.runCode([
      'import math',
      'x = 20',
      'def double(v):',
      '    return v * 2',
      'class Box:',
      '    def __init__(self, v):',
      '        self.v = v',
      '    def get(self):',
      '        return self.v',
    ].join('\n'), { context: ctx });
    assert.equal(r.error, undefined, JSON.stringify(r.error));
    assert.deepEqual(r.results, []);
    r = await sandbox.runCode('print(double(x) + 2, math.floor(math.pi), Box("b").get())', { context: ctx });
    assert.equal(r.error, undefined, JSON.stringify(r.error));
    assert.equal(stdoutOf(r), '42 3 b\n');
    assert.deepEqual(r.results, []);
  });

  it('a number gives results[0].text; nothing echoes Out[n] to stdout', async () => {
    const seen = [];
    const r = await sandbox.runCode('6 * 7', { context: ctx, onResult: (res) => seen.push(res) });
    assert.equal(r.error, undefined);
    assert.equal(r.results.length, 1);
    assert.equal(r.results[0].text, '42');
    assert.equal(seen.length, 1);
    assert.equal(seen[0].text, '42');
    assert.deepEqual(r.logs.stdout, [], 'the displayhook must not print Out[n]');
  });

  it('a dict gives results[0].json', async () => {
    const r = await sandbox.runCode("{'a': 1, 'b': [1, 2], 'c': 'x'}", { context: ctx });
    assert.equal(r.error, undefined);
    assert.equal(r.results.length, 1);
    assert.deepEqual(r.results[0].json, { a: 1, b: [1, 2], c: 'x' });
    assert.equal(typeof r.results[0].text, 'string');
  });

  it('stdout and stderr go to their callbacks and logs', async () => {
    const out = [];
    const err = [];
    const r = await sandbox.runCode('import sys\nprint("to out")\nprint("to err", file=sys.stderr)', {
      context: ctx, onStdout: (o) => out.push(o), onStderr: (o) => err.push(o),
    });
    assert.equal(stdoutOf(r), 'to out\n');
    assert.equal(stderrOf(r), 'to err\n');
    assert.equal(out.map((o) => o.text).join(''), 'to out\n');
    assert.equal(err.map((o) => o.text).join(''), 'to err\n');
    assert.ok(out[0].timestamp !== undefined);
  });

  // Needs /etc/matplotlibrc in the default image (Debian's matplotlib reads it).
  it('a matplotlib figure gives a PNG of the figure size (4x3 in at 100 dpi = 400x300)', async () => {
    const r = await sandbox.runCode([
      'import matplotlib.pyplot as plt',
      'fig = plt.figure(figsize=(4, 3), dpi=100)',
      'plt.plot([1, 2, 3], [1, 4, 9])',
      'plt.show()',
    ].join('\n'), { context: ctx });
    assert.equal(r.error, undefined, JSON.stringify(r.error));
    const pngs = r.results.filter((res) => res.png);
    assert.equal(pngs.length, 1, JSON.stringify(r.results.map((res) => Object.keys(res).filter((k) => res[k]))));
    assert.deepEqual(pngSize(pngs[0].png), { width: 400, height: 300 });
  });

  it('a pandas DataFrame gives html with a <table> and text', async () => {
    const r = await sandbox.runCode(
      "import pandas as pd\npd.DataFrame({'name': ['a', 'b'], 'n': [1, 2]})", { context: ctx });
    assert.equal(r.error, undefined, JSON.stringify(r.error));
    assert.equal(r.results.length, 1);
    assert.match(r.results[0].html, /<table/);
    assert.match(r.results[0].text, /name/);
    assert.match(r.results[0].text, /\bb\b/);
  });

  it('display(HTML(...)) and display(Markdown(...)) give html and markdown results, in order', async () => {
    const r = await sandbox.runCode([
      'from IPython.display import display, HTML, Markdown',
      "display(HTML('<b>bold</b>'))",
      "display(Markdown('# Title'))",
      "{'a': 1}",
    ].join('\n'), { context: ctx });
    assert.equal(r.error, undefined, JSON.stringify(r.error));
    assert.equal(r.results.length, 3, JSON.stringify(r.results));
    assert.equal(r.results[0].html, '<b>bold</b>');
    assert.equal(r.results[1].markdown, '# Title');
    assert.deepEqual(r.results[2].json, { a: 1 });
    assert.deepEqual(r.logs.stdout, []);
  });

  it('an exception gives error.name, .message and .traceback without ANSI escapes; state is kept', async () => {
    const errors = [];
    const r = await sandbox.runCode('y = 5\nundefined_name + 1', { context: ctx, onError: (e) => errors.push(e) });
    assert.ok(r.error, 'expected an error');
    assert.equal(r.error.name, 'NameError');
    assert.match(r.error.message, /undefined_name/);
    assert.ok(Array.isArray(r.error.traceback) && r.error.traceback.length > 0);
    assert.ok(!r.error.traceback.join('\n').includes('\u001b['), 'ANSI escapes in the traceback');
    assert.equal(errors.length, 1);
    assert.equal(errors[0].name, 'NameError');
    assert.deepEqual(r.logs.stdout, [], 'the traceback must not be printed to stdout as well');
    const again = await sandbox.runCode('print(y)', { context: ctx });
    assert.equal(stdoutOf(again), '5\n');
  });

  it('output is streamed live: the first onStdout arrives while the code still runs', async () => {
    const t0 = Date.now();
    const arrivals = [];
    const r = await sandbox.runCode('import time\nprint("first", flush=True)\ntime.sleep(1.5)\nprint("second")', {
      context: ctx, onStdout: (o) => arrivals.push({ text: o.text, at: Date.now() - t0 }),
    });
    const done = Date.now() - t0;
    assert.equal(stdoutOf(r), 'first\nsecond\n');
    assert.ok(arrivals.length >= 2, JSON.stringify(arrivals));
    assert.equal(arrivals[0].text, 'first\n');
    // The code sleeps 1.5 s after the first line: a live stream delivers it
    // long before runCode resolves; a buffered one at the same moment.
    assert.ok(done - arrivals[0].at >= 1000, `first line at ${arrivals[0].at} ms, done at ${done} ms`);
  });

  it('runCodeStream gives the raw SSE events, execution_complete last', async () => {
    const stream = await sandbox.runCodeStream('print("s")\n1 + 1', { context: ctx });
    const evs = await events(stream);
    const types = evs.map((e) => e.type);
    assert.deepEqual(types, ['stdout', 'result', 'execution_complete'], JSON.stringify(evs));
    assert.equal(evs[0].text, 's\n');
    assert.equal(evs[1].text, '2');
    assert.equal(typeof evs[2].execution_count, 'number');
    assert.ok(evs[2].execution_count > 1);
  });

  it('timeout_ms (InterpreterClient.runCodeStream) interrupts the run and keeps the state', async () => {
    // CodeInterpreter.runCode in 0.12.10 does not forward RunCodeOptions.timeout;
    // the interpreter client's runCodeStream takes it as its fifth argument.
    await sandbox.runCode('kept = "still here"', { context: ctx });
    const errors = [];
    const out = [];
    const t0 = Date.now();
    await client.interpreter.runCodeStream(ctx.id, 'import time\nprint("start", flush=True)\ntime.sleep(60)',
      undefined, { onStdout: (o) => out.push(o.text), onError: (e) => errors.push(e) }, 500);
    assert.ok(Date.now() - t0 < 30000, 'the timeout did not stop the run');
    assert.equal(out.join(''), 'start\n');
    assert.equal(errors.length, 1, JSON.stringify(errors));
    // coved names a timed-out run TimeoutError; the message names the limit
    // and what the interpreter raised (Python: KeyboardInterrupt).
    assert.equal(errors[0].name, 'TimeoutError');
    assert.match(errors[0].message, /timeout_ms=500/);
    assert.match(errors[0].message, /KeyboardInterrupt/);
    const r = await sandbox.runCode('print(kept)', { context: ctx });
    assert.equal(stdoutOf(r), 'still here\n');
    // The raw stream says the run timed out.
    const evs = await events(await fetch(`${coved.url}/v1/sandboxes/${SID}/api/execute/code`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${coved.token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ context_id: ctx.id, code: 'import time\ntime.sleep(60)', timeout_ms: 300 }),
    }).then((res) => res.body));
    assert.equal(evs.at(-1).type, 'execution_complete');
    assert.equal(evs.at(-1).timed_out, true);
  });
});

describe('javascript and typescript', () => {
  it('a javascript context keeps const, let, function and class; top-level await works', async () => {
    const ctx = await sandbox.createCodeContext({ language: 'javascript' });
    assert.equal(ctx.language, 'javascript');
    let r = await sandbox.runCode([
      'const base = 40;',
      'let counter = 1;',
      'function add(a, b) { return a + b; }',
      'class Greeter { constructor(n) { this.n = n; } hi() { return `hi ${this.n}`; } }',
    ].join('\n'), { context: ctx });
    assert.equal(r.error, undefined, JSON.stringify(r.error));
    r = await sandbox.runCode('counter += 1;\nconsole.log(add(base, counter), new Greeter("js").hi());', { context: ctx });
    assert.equal(r.error, undefined, JSON.stringify(r.error));
    assert.equal(stdoutOf(r), '42 hi js\n');
    r = await sandbox.runCode('const v = await new Promise((res) => setTimeout(() => res(base + 2), 50));\nv',
                              { context: ctx });
    assert.equal(r.error, undefined, JSON.stringify(r.error));
    assert.equal(r.results.length, 1);
    assert.equal(r.results[0].text, '42');
    r = await sandbox.runCode('v * 2', { context: ctx });
    assert.equal(r.results[0].text, '84');
  });

  it('a javascript object gives json, a number text; an exception gives error', async () => {
    const ctx = await sandbox.createCodeContext({ language: 'javascript' });
    let r = await sandbox.runCode('({ a: 1, b: [1, 2], c: "x" })', { context: ctx });
    assert.equal(r.results.length, 1);
    assert.deepEqual(r.results[0].json, { a: 1, b: [1, 2], c: 'x' });
    r = await sandbox.runCode('6 * 7', { context: ctx });
    assert.equal(r.results[0].text, '42');
    r = await sandbox.runCode('null.x', { context: ctx });
    assert.ok(r.error);
    assert.equal(r.error.name, 'TypeError');
    assert.match(r.error.message, /null/);
    assert.ok(Array.isArray(r.error.traceback));
  });

  // A synchronous busy loop is the hard case for Node (no JS signal handler
  // can run); repeated because it fails only some of the time.
  it('timeout_ms stops a synchronous busy loop in javascript and keeps the context', async () => {
    const ctx = await sandbox.createCodeContext({ language: 'javascript' });
    await sandbox.runCode('const keep = 7;', { context: ctx });
    for (let i = 0; i < 4; i++) {
      const errors = [];
      const t0 = Date.now();
      await client.interpreter.runCodeStream(ctx.id, 'while (true) {}', undefined,
        { onError: (e) => errors.push(e) }, 500);
      assert.ok(Date.now() - t0 < 30000, 'the timeout did not stop the loop');
      assert.equal(errors.length, 1, JSON.stringify(errors));
      assert.equal(errors[0].name, 'TimeoutError', `attempt ${i}: ${JSON.stringify(errors[0])}`);
      const r = await sandbox.runCode('keep * 6', { context: ctx });
      assert.equal(r.results[0].text, '42');
    }
  });

  it('typescript: an interface and a generic function', async () => {
    const ctx = await sandbox.createCodeContext({ language: 'typescript' });
    assert.equal(ctx.language, 'typescript');
    let r = await sandbox.runCode([
      'interface Point { x: number; y: number }',
      'function first<T>(items: T[]): T { return items[0]; }',
      'const p: Point = { x: 3, y: 4 };',
    ].join('\n'), { context: ctx });
    assert.equal(r.error, undefined, JSON.stringify(r.error));
    r = await sandbox.runCode('const n: number = first<number>([p.x * p.y, 0]);\nn', { context: ctx });
    assert.equal(r.error, undefined, JSON.stringify(r.error));
    assert.equal(r.results[0].text, '12');
    r = await sandbox.runCode('first<Point>([p])', { context: ctx });
    assert.deepEqual(r.results[0].json, { x: 3, y: 4 });
  });
});

describe('contexts', () => {
  it('env_vars and cwd are honoured (Cloudflare ignores both)', async () => {
    await client.commands.execute('mkdir -p /tmp/ci-cwd', undefined);
    const ctx = await sandbox.createCodeContext({ language: 'python', cwd: '/tmp/ci-cwd', envVars: { CI_VAR: 'v1' } });
    assert.equal(ctx.cwd, '/tmp/ci-cwd');
    const r = await sandbox.runCode('import os\nprint(os.getcwd(), os.environ.get("CI_VAR"))', { context: ctx });
    assert.equal(stdoutOf(r), '/tmp/ci-cwd v1\n');
  });

  it('an unknown language is refused by the client, a missing cwd by coved', async () => {
    await rejectsWith(sandbox.createCodeContext({ language: 'cobol' }), (e) => {
      assert.match(e.message, /Unsupported language/);
    });
    await rejectsWith(sandbox.createCodeContext({ language: 'python', cwd: '/no/such/dir' }), (e) => {
      assert.equal(e.code, 'VALIDATION_FAILED');
      assert.equal(e.httpStatus, 400);
    });
  });

  it('listCodeContexts lists them; deleteCodeContext removes one; runCode on it then rejects', async () => {
    const c = makeClient(`conf-ci-list-${randomBytes(3).toString('hex')}`);
    const sb = sandboxOf(c);
    const py = await sb.createCodeContext({ language: 'python' });
    const js = await sb.createCodeContext({ language: 'javascript' });
    let list = await sb.listCodeContexts();
    assert.deepEqual(list.map((x) => x.id).sort(), [py.id, js.id].sort());
    const byId = Object.fromEntries(list.map((x) => [x.id, x]));
    assert.equal(byId[py.id].language, 'python');
    assert.equal(byId[js.id].language, 'javascript');
    assert.equal(byId[py.id].cwd, '/workspace');

    await sb.deleteCodeContext(py.id);
    list = await sb.listCodeContexts();
    assert.deepEqual(list.map((x) => x.id), [js.id]);
    await rejectsWith(sb.runCode('1', { context: py }), (e) => {
      assert.equal(e.code, 'CONTEXT_NOT_FOUND');
      assert.equal(e.httpStatus, 404);
    });
    await rejectsWith(sb.deleteCodeContext(py.id), (e) => {
      assert.equal(e.code, 'CONTEXT_NOT_FOUND');
      assert.equal(e.httpStatus, 404);
    });
    await sb.deleteCodeContext(js.id);
    assert.deepEqual(await sb.listCodeContexts(), []);
  });

  it('runCode without a context creates a default one per language and reuses it', async () => {
    const c = makeClient(`conf-ci-def-${randomBytes(3).toString('hex')}`);
    const sb = sandboxOf(c);
    await sb.runCode('z = 9');
    const r = await sb.runCode('z + 1');
    assert.equal(r.results[0].text, '10');
    const list = await sb.listCodeContexts();
    assert.equal(list.length, 1);
    assert.equal(list[0].language, 'python');
  });

  it('a crashed context is refused with CONTEXT_CRASHED, and restart brings it back (empty)', async () => {
    const ctx = await sandbox.createCodeContext({ language: 'python' });
    await sandbox.runCode('lost = 1', { context: ctx });
    const crash = await sandbox.runCode('import os\nos._exit(3)', { context: ctx });
    assert.ok(crash.error, 'the run that killed the interpreter reports an error');
    const info = await coved.api('GET', `/v1/sandboxes/${SID}/api/contexts/${ctx.id}`);
    assert.equal(info.status, 200, info.text);
    assert.equal(info.json.context.status, 'crashed');
    assert.equal(typeof info.json.context.error, 'string');
    await rejectsWith(sandbox.runCode('1', { context: ctx }), (e) => {
      assert.equal(e.code, 'CONTEXT_CRASHED');
      assert.equal(e.httpStatus, 409);
    });
    const restarted = await coved.api('POST', `/v1/sandboxes/${SID}/api/contexts/${ctx.id}/restart`, {});
    assert.equal(restarted.status, 200, restarted.text);
    assert.equal(restarted.json.contextId, ctx.id);
    const r = await sandbox.runCode("'lost' in globals()", { context: ctx });
    assert.equal(r.results[0].text, 'False');
  });

  it('runs sent at once to one context execute one at a time, in order', async () => {
    const ctx = await sandbox.createCodeContext({ language: 'python' });
    await sandbox.runCode('order = []', { context: ctx });
    const runs = [0, 1, 2].map((i) =>
      sandbox.runCode(`import time\ntime.sleep(0.2)\norder.append(${i})\nlen(order)`, { context: ctx }));
    const results = await Promise.all(runs);
    assert.deepEqual(results.map((r) => r.results[0].text).sort(), ['1', '2', '3']);
    const r = await sandbox.runCode('order', { context: ctx });
    assert.deepEqual([...r.results[0].json].sort(), [0, 1, 2]);
  });

  it('health reports the languages', async () => {
    const r = await coved.api('GET', `/v1/sandboxes/${SID}/api/interpreter/health`);
    assert.equal(r.status, 200);
    assert.equal(r.json.success, true);
    assert.equal(r.json.status, 'healthy');
    assert.deepEqual(r.json.languages, { python: true, javascript: true, typescript: true });
    assert.ok(r.json.contexts >= 1);
  });
});
