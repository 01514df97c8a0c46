'use strict';
// JavaScript / TypeScript code-interpreter runner (docs/interpreter.md).
//
// fd 3 is the control socket (JSON lines); fds 1 and 2 carry the code's output.
// The code runs in this process's own global context, so Node behaves as
// usual; everything the runner needs lives in this module's scope.
//
// Persistence: acorn parses each cell and the runner rewrites it into one async
// arrow function (top-level await), run by vm.Script.runInThisContext. Every
// top-level declaration becomes a global `var` that the function assigns:
//
//   const {a, b} = o;  ->  void 0, ({a, b} = o);
//   class A {}         ->  A = class A {};
//   function f() {}    ->  kept (hoisted inside the function) + globalThis.f = f
//   import d from 'm'   ->  void 0, ({default: d} = await <loader>('m'));
//   last expression    ->  return (expr);
//
// so a later cell sees them and may declare the same names again. Edits stay on
// their lines, so line numbers in stack traces are the cell's own.

const acorn = require('acorn');
const fs = require('fs');
const Module = require('module');
const net = require('net');
const path = require('path');
const stream = require('stream');
const url = require('url');
const util = require('util');
const vm = require('vm');

// User code may replace any global (`let process = 1` assigns globalThis.process)
// or a module's function (a test mocking fs.writeSync), so the runner keeps its
// own references to what it calls.
const proc = process;
const { stringify, parse } = JSON;
const PromiseCtor = Promise;
const { writeSync } = fs;
const bufferFrom = Buffer.from.bind(Buffer);
const { inspect } = util;
const { wait: atomicsWait, load: atomicsLoad, store: atomicsStore, notify: atomicsNotify } = Atomics;
const RUN_OPTIONS = { breakOnSigint: true, displayErrors: false };
const CONTROL_FD = 3;
const RUNNER_FILE = __filename;

// ---------------------------------------------------------------- output ----

const sleepCell = new Int32Array(new SharedArrayBuffer(4));

// Writes all of buf to fd, synchronously. A descriptor shared with a child that
// set O_NONBLOCK on it can answer EAGAIN: wait a millisecond and retry.
function writeAll(fd, buf) {
  let off = 0;
  while (off < buf.length) {
    try {
      off += writeSync(fd, buf, off, buf.length - off);
    } catch (e) {
      if (e.code !== 'EAGAIN') throw e;
      atomicsWait(sleepCell, 0, 0, 1);
    }
  }
}

// process.stdout on a pipe is a libuv stream that sets O_NONBLOCK on the pipe
// (which the code's subprocesses share) and queues what a full pipe does not
// take, so output could trail the control line that follows it. This stream
// writes through before write() returns.
class SyncWriteStream extends stream.Writable {
  constructor(fd) {
    super({ decodeStrings: true });
    this.fd = fd;
    this.isTTY = false;
    this._type = 'pipe';
    this._isStdio = true;
  }

  _write(chunk, _encoding, cb) {
    try {
      writeAll(this.fd, chunk);
    } catch (e) {
      // The agent went away (EPIPE) or the descriptor is gone: drop output.
    }
    cb();
  }

  _destroy(err, cb) {
    cb(err); // never close fd 1 or 2
  }
}

const STDIO = [['stdout', 1], ['stderr', 2]];
const stdio = {};

function newStdio(name, fd) {
  const s = new SyncWriteStream(fd);
  s.destroySoon = s.destroy;
  stdio[name] = s;
}

function installStdio() {
  for (const [name, fd] of STDIO) {
    newStdio(name, fd);
    Object.defineProperty(proc, name, {
      configurable: true, enumerable: true, get: () => stdio[name],
    });
  }
}

// An interrupt may stop the code inside a write: V8's termination skips the
// stream's own bookkeeping, and the stream then buffers everything after it
// forever. Such a stream, or one the code ended, is replaced, in process and
// in console.
function repairStdio() {
  for (const [name, fd] of STDIO) {
    const s = stdio[name];
    if (!s.destroyed && !s.writableEnded && s.writableLength === 0) continue;
    newStdio(name, fd);
    console[`_${name}`] = stdio[name];
  }
}

function writeErr(text) {
  try {
    writeAll(2, bufferFrom(text.endsWith('\n') ? text : text + '\n'));
  } catch (e) {
    // nowhere left to report it
  }
}

// --------------------------------------------------------------- control ----

function sendRaw(line) {
  try {
    writeAll(CONTROL_FD, bufferFrom(line + '\n'));
  } catch (e) {
    proc.exit(1); // the agent is gone
  }
}

function send(msg) {
  sendRaw(stringify(msg));
}

// ------------------------------------------------------------- transform ----

const ACORN_OPTIONS = {
  ecmaVersion: 'latest',
  sourceType: 'script',
  allowAwaitOutsideFunction: true,
  allowHashBang: true,
  locations: true,
};

function patternNames(node, out) {
  if (!node) return out;
  switch (node.type) {
    case 'Identifier': out.push(node.name); break;
    case 'ObjectPattern':
      for (const p of node.properties) patternNames(p.type === 'RestElement' ? p.argument : p.value, out);
      break;
    case 'ArrayPattern': for (const e of node.elements) patternNames(e, out); break;
    case 'AssignmentPattern': patternNames(node.left, out); break;
    case 'RestElement': patternNames(node.argument, out); break;
    default: break; // member expressions only occur in assignments, not declarations
  }
  return out;
}

const FUNCTION_TYPES = new Set([
  'FunctionDeclaration', 'FunctionExpression', 'ArrowFunctionExpression', 'StaticBlock',
]);

// Calls visit(node, parent, key) for every node of the cell that belongs to its
// own function scope (it does not enter functions or class static blocks).
function walkScope(node, parent, key, visit) {
  visit(node, parent, key);
  for (const k of Object.keys(node)) {
    if (k === 'loc') continue;
    const v = node[k];
    const children = Array.isArray(v) ? v : [v];
    for (const c of children) {
      if (c && typeof c.type === 'string' && !FUNCTION_TYPES.has(c.type)) walkScope(c, node, k, visit);
    }
  }
}

function newlinesOf(text) {
  return text.replace(/[^\n]/g, '');
}

// Every node below `node` (functions included), for `import(...)`.
function walkAll(node, visit) {
  visit(node);
  for (const k of Object.keys(node)) {
    if (k === 'loc') continue;
    const v = node[k];
    for (const c of Array.isArray(v) ? v : [v]) if (c && typeof c.type === 'string') walkAll(c, visit);
  }
}

function unsupported(node, what) {
  const { line, column } = node.loc.start;
  const err = new SyntaxError(`${what} is not supported in a code context (${line}:${column})`);
  err.loc = { line, column };
  throw err;
}

// import() of a vm.Script needs --experimental-vm-modules, so cells call the
// runner's loader instead, which resolves from the context's directory.
const IMPORT = 'globalThis[Symbol.for("cove.import")]';

function parseCell(code) {
  // `{a: 1}` on its own is an object, as in Node's REPL, not a block.
  if (/^\s*\{/.test(code) && !/;\s*$/.test(code)) {
    try {
      const wrapped = '(' + code + '\n)';
      return { code: wrapped, ast: acorn.parse(wrapped, ACORN_OPTIONS) };
    } catch (e) {
      // not an expression: parse it as statements
    }
  }
  try {
    return { code, ast: acorn.parse(code, ACORN_OPTIONS) };
  } catch (e) {
    // Static imports need module syntax; everything else reports the script's error.
    if (!/\b(import|export)\b/.test(code)) throw e;
    try {
      return { code, ast: acorn.parse(code, { ...ACORN_OPTIONS, sourceType: 'module' }) };
    } catch (e2) {
      throw e;
    }
  }
}

// `import d, {a as b} from 'm'` -> `void 0, ({default: d, a: b} = await <loader>('m'));`
function importAsAssignment(code, node, names) {
  const source = code.slice(node.source.start, node.source.end);
  const load = `await ${IMPORT}(${source})`;
  const ns = node.specifiers.find((sp) => sp.type === 'ImportNamespaceSpecifier');
  const def = node.specifiers.find((sp) => sp.type === 'ImportDefaultSpecifier');
  node.specifiers.forEach((sp) => names.add(sp.local.name));
  let text;
  if (node.specifiers.length === 0) text = load;
  else if (ns) text = `(${ns.local.name} = ${load})` + (def ? `, (${def.local.name} = ${ns.local.name}.default)` : '');
  else {
    const props = node.specifiers.map((sp) => {
      if (sp.type === 'ImportDefaultSpecifier') return `default: ${sp.local.name}`;
      const key = sp.imported.type === 'Literal' ? stringify(sp.imported.value) : sp.imported.name;
      return `${key}: ${sp.local.name}`;
    });
    text = `({${props.join(', ')}} = ${load})`;
  }
  return 'void 0, ' + text + ';' + newlinesOf(code.slice(node.start, node.end));
}

// Returns {text, callLine}; throws acorn's SyntaxError.
function transformCell(source) {
  const { code, ast } = parseCell(source);
  const names = new Set();
  const functions = [];
  const edits = []; // {start, end, text}; ranges never overlap, inserts have start == end
  const edit = (start, end, text) => edits.push({ start, end, text });
  const body = ast.body;
  const last = body[body.length - 1];
  if (code.startsWith('#!')) edit(0, 2, '//'); // only valid at the very start of a script

  // A declaration becomes assignments in place, each declarator in parentheses,
  // so edits inside the initialisers (import()) still apply.
  function rewriteDeclaration(decl, position) {
    const first = decl.declarations[0];
    const head = newlinesOf(code.slice(decl.start, first.start));
    if (position === 'target') { // for (var x of ...)
      edit(decl.start, first.start, head);
      return;
    }
    // `void 0, ` rather than a leading `;`, so that `if (c) var x = 1;` stays one statement.
    edit(decl.start, first.start, (position === 'statement' ? 'void 0, ' : '') + head);
    for (const d of decl.declarations) {
      if (d.init) {
        edit(d.start, d.start, '(');
        edit(d.end, d.end, ')');
      } else if (decl.kind === 'var') {
        edit(d.start, d.end, 'void 0'); // `var x;` keeps x's value
      } else {
        edit(d.start, d.start, '(');
        edit(d.end, d.end, ' = void 0)');
      }
    }
    const lastDecl = decl.declarations[decl.declarations.length - 1];
    if (position === 'statement' && !code.slice(lastDecl.end, decl.end).includes(';')) edit(decl.end, decl.end, ';');
  }

  for (const stmt of body) {
    switch (stmt.type) {
      case 'FunctionDeclaration':
        names.add(stmt.id.name);
        functions.push(stmt.id.name);
        break;
      case 'ClassDeclaration':
        names.add(stmt.id.name);
        edit(stmt.start, stmt.start, stmt.id.name + ' = ');
        edit(stmt.end, stmt.end, ';');
        break;
      case 'VariableDeclaration':
        if (stmt.kind !== 'var') {
          for (const d of stmt.declarations) patternNames(d.id, []).forEach((n) => names.add(n));
          rewriteDeclaration(stmt, 'statement');
        }
        break;
      case 'ImportDeclaration':
        edit(stmt.start, stmt.end, importAsAssignment(code, stmt, names));
        break;
      case 'ExportNamedDeclaration': case 'ExportDefaultDeclaration': case 'ExportAllDeclaration':
        unsupported(stmt, 'export');
        break;
      default:
        break;
    }
  }
  // `var` anywhere in the cell's own scope (blocks, loops) is the cell's.
  walkScope(ast, null, null, (node, parent, key) => {
    if (node.type !== 'VariableDeclaration' || node.kind !== 'var') return;
    for (const d of node.declarations) patternNames(d.id, []).forEach((n) => names.add(n));
    if (parent && parent.type === 'ForStatement' && key === 'init') rewriteDeclaration(node, 'expression');
    else if (parent && (parent.type === 'ForInStatement' || parent.type === 'ForOfStatement') && key === 'left') {
      rewriteDeclaration(node, 'target');
    } else rewriteDeclaration(node, 'statement');
  });
  walkAll(ast, (node) => {
    if (node.type === 'ImportExpression') edit(node.start, node.source.start, IMPORT + '(');
  });

  if (last && last.type === 'ExpressionStatement') {
    edit(last.start, last.start, 'return (');
    const end = code[last.end - 1] === ';' ? last.end - 1 : last.end;
    edit(end, end, ')');
  }

  // Functions become globals as soon as the cell starts (they are hoisted),
  // after any directive prologue so that "use strict" still applies.
  let exportAt = 0;
  for (const stmt of body) {
    if (stmt.type !== 'ExpressionStatement' || stmt.directive === undefined || stmt === last) break;
    exportAt = stmt.end;
  }
  if (functions.length) {
    edit(exportAt, exportAt, (exportAt ? ' ' : '') + functions.map((f) => `globalThis.${f} = ${f};`).join(' '));
  }

  // Back to front. At one position an insert lands in front of a replacement
  // that starts there, and inserts keep their order.
  edits.forEach((e, i) => { e.order = i; });
  edits.sort((a, b) => b.start - a.start || b.end - a.end || b.order - a.order);
  let out = code;
  for (const e of edits) out = out.slice(0, e.start) + e.text + out.slice(e.end);
  const decls = names.size ? 'var ' + [...names].join(', ') + '; ' : '';
  // With lineOffset -1 the cell's lines keep their numbers; the last line
  // (the call of the function) is the runner's.
  return { text: decls + '(async () => {\n' + out + '\n})()', callLine: out.split('\n').length + 1 };
}

// sucrase is loaded by the first TypeScript execution: it is a quarter of a
// runner's start (~35-40 ms on a full CPU), which JavaScript contexts need not pay.
let sucrase = null;

function transpileTypeScript(code) {
  if (!sucrase) sucrase = require('sucrase');
  return sucrase.transform(code, {
    transforms: ['typescript'],
    disableESTransforms: true,
  }).code;
}

// ------------------------------------------------------------ user scope ----

let cwd = proc.cwd();

function setScope(dir) {
  const filename = path.join(dir, '[eval]');
  const m = new Module(filename, null);
  m.filename = filename;
  m.paths = Module._nodeModulePaths(dir);
  m.loaded = true;
  const req = Module.createRequire(dir.endsWith('/') ? dir : dir + '/');
  const globals = { require: req, module: m, exports: m.exports, __filename: filename, __dirname: dir };
  for (const [k, v] of Object.entries(globals)) {
    Object.defineProperty(globalThis, k, { value: v, writable: true, configurable: true, enumerable: false });
  }
}

// The entry of a package's "exports" for import() (conditions node, import,
// default), or undefined.
function exportsTarget(exp, subpath) {
  if (typeof exp === 'string') return subpath === '.' ? exp : undefined;
  if (Array.isArray(exp)) return exportsTarget(exp[0], subpath);
  if (!exp || typeof exp !== 'object') return undefined;
  if (Object.keys(exp).some((k) => k.startsWith('.'))) return exportsTarget(exp[subpath], '.');
  for (const cond of ['node', 'import', 'default']) {
    if (cond in exp) {
      const t = exportsTarget(exp[cond], subpath);
      if (t !== undefined) return t;
    }
  }
  return undefined;
}

// A bare specifier whose package require() cannot load (ESM only): look it up
// in the node_modules directories above the context's directory.
function resolvePackage(specifier) {
  const parts = specifier.split('/');
  const name = specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
  const subpath = '.' + specifier.slice(name.length);
  for (const dir of Module._nodeModulePaths(cwd)) {
    let pkg;
    try {
      pkg = parse(fs.readFileSync(path.join(dir, name, 'package.json'), 'utf8'));
    } catch (e) {
      continue;
    }
    const target = pkg.exports !== undefined ? exportsTarget(pkg.exports, subpath) :
      (subpath === '.' ? pkg.module || pkg.main || 'index.js' : subpath);
    if (target !== undefined) return path.join(dir, name, target);
  }
  return undefined;
}

function resolveImport(specifier) {
  if (/^(\.\.?)?\//.test(specifier)) return url.pathToFileURL(path.resolve(cwd, specifier)).href;
  if (/^[a-z][a-z0-9+.-]*:/i.test(specifier) || Module.isBuiltin(specifier)) return specifier;
  try {
    return url.pathToFileURL(Module.createRequire(path.join(cwd, '[eval]')).resolve(specifier)).href;
  } catch (e) {
    const file = resolvePackage(specifier);
    return file ? url.pathToFileURL(file).href : specifier;
  }
}

function installImport() {
  Object.defineProperty(globalThis, Symbol.for('cove.import'), {
    value: (specifier) => import(resolveImport(String(specifier))).catch((e) => {
      // "Cannot find package 'x' imported from <this file>": say where it was looked for
      if (e && typeof e.message === 'string') e.message = e.message.split(RUNNER_FILE).join(path.join(cwd, '[eval]'));
      if (e && typeof e.stack === 'string') e.stack = e.stack.split(RUNNER_FILE).join(path.join(cwd, '[eval]'));
      throw e;
    }),
    writable: false, configurable: false, enumerable: false,
  });
}

// ---------------------------------------------------------------- errors ----

const callLines = new Map(); // cell file name -> line of the runner's call of the cell

function isCellFrame(line) {
  return /<cell-\d+>:\d+/.test(line);
}

function isCallFrame(line) {
  const m = /(<cell-\d+>):(\d+):\d+\)?$/.exec(line);
  return m !== null && callLines.get(m[1]) === Number(m[2]);
}

// The stack without the runner's frames: everything below the outermost frame
// of the cell, or (for errors from elsewhere, say a timer) without frames of
// this file and of node:vm.
function cleanStack(stack) {
  const lines = String(stack).split('\n').filter((l) => !isCallFrame(l));
  let lastCell = -1;
  lines.forEach((l, i) => { if (isCellFrame(l)) lastCell = i; });
  if (lastCell >= 0) return lines.slice(0, lastCell + 1);
  return lines.filter((l, i) => i === 0 || (!l.includes(RUNNER_FILE) && !/\(node:vm:|at node:vm:/.test(l)));
}

function errorEvent(id, err) {
  if (err !== null && typeof err === 'object' && typeof err.name === 'string' && 'message' in err) {
    const stack = typeof err.stack === 'string' ? err.stack : `${err.name}: ${err.message}`;
    return { type: 'error', id, ename: err.name, evalue: String(err.message), traceback: cleanStack(stack) };
  }
  const shown = inspect(err);
  return { type: 'error', id, ename: 'Uncaught', evalue: shown, traceback: ['Uncaught ' + shown] };
}

function syntaxErrorEvent(id, err, code, filename, ename) {
  const line = err.loc ? err.loc.line : 1;
  const column = err.loc ? err.loc.column : 0;
  const text = code.split('\n')[line - 1] || '';
  return {
    type: 'error', id, ename, evalue: err.message,
    traceback: [`${filename}:${line}`, text, ' '.repeat(column) + '^', `${ename}: ${err.message}`],
  };
}

class InterruptedError extends Error {}
InterruptedError.prototype.name = 'Interrupted';

// --------------------------------------------------------------- results ----

function resultLine(id, value) {
  const text = inspect(value);
  if (value === null || (typeof value !== 'object')) return stringify({ type: 'result', id, text });
  let json;
  try {
    json = stringify(value);
  } catch (e) {
    json = undefined; // cycles, BigInt
  }
  // Map, Set, Error, class instances without own fields: JSON would say `{}`.
  const proto = Object.getPrototypeOf(value);
  const plain = proto === Object.prototype || proto === null;
  if (json === undefined || (json === '{}' && !plain)) return stringify({ type: 'result', id, text });
  return stringify({ type: 'result', id, text }).slice(0, -1) + ',"json":' + json + '}';
}

// ------------------------------------------------------------- interrupt ----
//
// SIGINT stops the code. While the synchronous start of a cell runs,
// runInThisContext's breakOnSigint does it. After its first `await` the code
// runs from the event loop, where a busy loop would never let a JS signal
// handler run; so a watchdog thread keeps a breakOnSigint script waiting
// forever. A SIGINT ends that wait; the thread tells this thread, and if this
// thread does not answer within 200 ms while the code runs, the thread stops
// the code through the inspector (Runtime.terminateExecution). The wait of the
// execution then ends with an error; the abandoned code never resumes.
//
// Node kills the process on a SIGINT that comes while no breakOnSigint script
// runs in any thread. So the watchdog does everything inside two nested
// scripts (see guarded() below). A SIGINT goes to the newest script only: while
// the code's own script runs (state 2) the watchdog does not start a new one.

const STATE = 0; // 0 idle, 1 the code runs from the event loop, 2 runInThisContext runs
const ACK = 1; // set when this thread has seen the latest SIGINT
const SIGNALS = 2; // SIGINTs counted by the watchdog
const WATCHDOG_SOURCE = `
const { workerData, parentPort } = require('worker_threads');
const vm = require('vm');
const flags = new Int32Array(workerData);
let session = null;
let reported = -1; // the count last posted; 0 (posted first) says the watchdog waits
function stopMainThread() {
  try {
    if (!session) {
      session = new (require('inspector').Session)();
      session.connectToMainThread();
    }
    session.post('Runtime.terminateExecution');
  } catch (e) {
    // no inspector in this build: only the awaiting execution is interrupted
  }
}
// Runs inside the breakOnSigint script: a SIGINT may end it anywhere.
globalThis.watch = function watch() {
  for (;;) {
    const n = Atomics.load(flags, ${SIGNALS});
    if (n === reported) {
      Atomics.wait(flags, 3, 0);
      continue;
    }
    Atomics.store(flags, ${ACK}, 0);
    reported = n;
    parentPort.postMessage(n);
    if (n > 0 && Atomics.wait(flags, ${ACK}, 0, 200) === 'timed-out' &&
        Atomics.load(flags, ${STATE}) === 1) {
      stopMainThread();
    }
  }
};
// Runs watch() in a breakOnSigint script, again after each SIGINT; but not while
// the code's own script runs, whose SIGINTs the newest script would take.
function guarded(fn) {
  for (;;) {
    try {
      vm.runInThisContext(fn + '()', { breakOnSigint: true });
    } catch (e) {
      Atomics.add(flags, ${SIGNALS}, 1);
    }
    while (Atomics.load(flags, ${STATE}) === 2) Atomics.wait(flags, ${STATE}, 2);
  }
}
globalThis.guarded = guarded;
globalThis.inner = () => guarded('watch');
// Two scripts, one inside the other: a SIGINT that ends the inner one leaves the
// outer one running, so there is always one while the inner one starts again.
guarded('inner');
`;
const flags = new Int32Array(new SharedArrayBuffer(16));
let signalsSeen = 0; // SIGINTs that arrived before the running execution started

function onSigint(n) {
  if (n === 0) return; // the watchdog's start
  atomicsStore(flags, ACK, 1);
  atomicsNotify(flags, ACK);
  if (n !== undefined && n <= signalsSeen) return; // meant for an execution already over
  if (interruptCurrent) interruptCurrent(); // otherwise idle: ignore
}

// SIGINT is the runner's. A SIGINT listener of the code's own would take the
// signal from Node's breakOnSigint (libuv and Node's watchdog share one
// sigaction), and once removed (as runInThisContext does while it runs) leave
// SIGINT's default action: the next interrupt would kill the context. So the
// code may add SIGINT listeners to process, but they are never called.
let runnerListener = null; // the fallback's, when the watchdog could not start

function keepSigintListeners() {
  for (const name of ['on', 'addListener', 'once', 'prependListener', 'prependOnceListener']) {
    const add = proc[name];
    proc[name] = function (event, listener) {
      if (event === 'SIGINT' && this === proc && listener !== runnerListener) return this;
      return add.apply(this, arguments);
    };
  }
}

// Resolves once the watchdog waits (a worker that is still starting when the
// code busy-loops would never start), or falls back to a plain SIGINT handler.
function startWatchdog() {
  const fallback = () => {
    runnerListener = () => onSigint();
    proc.on('SIGINT', runnerListener);
  };
  return new PromiseCtor((resolve) => {
    try {
      const { Worker } = require('worker_threads');
      const w = new Worker(WATCHDOG_SOURCE, { eval: true, workerData: flags.buffer });
      w.unref();
      w.once('message', resolve);
      w.on('message', onSigint);
      w.on('error', () => { fallback(); resolve(); });
    } catch (e) {
      fallback();
      resolve();
    }
  });
}

// ------------------------------------------------------------- execution ----

let executionCount = 0;
let interruptCurrent = null; // rejects the wait of the running execution
const queue = [];
let busy = false;

async function execute(msg) {
  const id = typeof msg.id === 'string' ? msg.id : String(msg.id);
  const number = ++executionCount;
  const filename = `<cell-${number}>`;
  let code = typeof msg.code === 'string' ? msg.code : '';
  try {
    if (msg.language === 'typescript') {
      try {
        code = transpileTypeScript(code);
      } catch (e) {
        send(syntaxErrorEvent(id, e, code, filename, 'TranspileError'));
        return;
      }
    }
    let script;
    try {
      const cell = transformCell(code);
      callLines.set(filename, cell.callLine);
      script = new vm.Script(cell.text, { filename, lineOffset: -1 });
    } catch (e) {
      if (e instanceof SyntaxError && e.loc) { // acorn's
        send(syntaxErrorEvent(id, e, code, filename, 'SyntaxError'));
      } else {
        send(errorEvent(id, e));
      }
      return;
    }
    const interrupted = new PromiseCtor((_, reject) => {
      interruptCurrent = () => reject(new InterruptedError('Script execution interrupted.'));
    });
    let value;
    signalsSeen = atomicsLoad(flags, SIGNALS);
    try {
      atomicsStore(flags, STATE, 2);
      let running;
      try {
        running = script.runInThisContext(RUN_OPTIONS);
      } finally {
        atomicsStore(flags, STATE, 1);
        atomicsNotify(flags, STATE); // a watchdog that waits for state 2 to end
      }
      value = await PromiseCtor.race([running, interrupted]);
    } catch (e) {
      if ((e && e.code === 'ERR_SCRIPT_EXECUTION_INTERRUPTED') || e instanceof InterruptedError) {
        const message = 'Script execution interrupted.';
        send({ type: 'error', id, ename: 'Interrupted', evalue: message, traceback: [`Interrupted: ${message}`] });
      } else {
        send(errorEvent(id, e));
      }
      return;
    } finally {
      atomicsStore(flags, STATE, 0);
    }
    if (value !== undefined) sendRaw(resultLine(id, value));
  } catch (e) {
    // a bug of the runner's own: report it rather than hang the context
    send({ type: 'error', id, ename: 'RunnerError', evalue: String(e && e.stack), traceback: [] });
  } finally {
    interruptCurrent = null;
    repairStdio();
    send({ type: 'done', id, execution_count: number });
  }
}

async function pump() {
  if (busy) return;
  busy = true;
  while (queue.length) await execute(queue.shift());
  busy = false;
}

// ------------------------------------------------------------------ init ----

function init(msg) {
  try {
    proc.chdir(String(msg.cwd || '/'));
  } catch (e) {
    send({ type: 'fatal', message: `cannot change directory to ${msg.cwd}: ${e.message}` });
    proc.exit(1);
  }
  cwd = proc.cwd();
  if (msg.env && typeof msg.env === 'object') {
    for (const k of Object.keys(proc.env)) delete proc.env[k];
    for (const [k, v] of Object.entries(msg.env)) proc.env[k] = String(v);
  }
  setScope(cwd);
  send({ type: 'initialized' });
}

function handleLine(line) {
  let msg;
  try {
    msg = parse(line);
  } catch (e) {
    return; // not JSON: ignore
  }
  if (!msg || typeof msg !== 'object') return;
  if (msg.type === 'init') init(msg);
  else if (msg.type === 'execute') {
    queue.push(msg);
    pump();
  }
}

// ------------------------------------------------------------------ main ----

async function main() {
  installStdio();
  installImport();
  setScope(cwd);
  keepSigintListeners();
  const watchdog = startWatchdog();
  proc.on('uncaughtException', (err) => {
    writeErr('Uncaught ' + (err && err.stack ? cleanStack(err.stack).join('\n') : inspect(err)));
  });
  proc.on('unhandledRejection', (reason) => {
    writeErr('Unhandled promise rejection: ' +
      (reason && reason.stack ? cleanStack(reason.stack).join('\n') : inspect(reason)));
  });

  // Warm up the parser and the compiler, so that the first execution of a spare
  // runner is as fast as the others.
  new vm.Script(transformCell('const warm = 1; warm').text, { filename: '<warm-up>' });
  inspect({ a: [1] });

  let control;
  try {
    control = new net.Socket({ fd: CONTROL_FD, readable: true, writable: false });
  } catch (e) {
    writeErr(`node_runner: fd ${CONTROL_FD} is not the control socket: ${e.message}`);
    proc.exit(2);
  }
  let pending = '';
  control.setEncoding('utf8');
  control.on('data', (chunk) => {
    pending += chunk;
    let nl;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      handleLine(line);
    }
  });
  control.on('end', () => proc.exit(0));
  control.on('error', () => proc.exit(0));

  await watchdog;
  send({ type: 'ready', language: 'javascript', version: proc.versions.node });
}

main();
