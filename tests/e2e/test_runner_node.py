"""interpreter/node_runner.js driven directly, as cove-agent does (docs/interpreter.md).

Run: /usr/bin/python3 -m pytest tests/e2e/test_runner_node.py -p timeout --timeout 600
"""
import os
import random
import threading
import time

import pytest

from helpers import wait_until
from runner_driver import Runner, SigintsOn

pytestmark = pytest.mark.interpreter

RUNNER = os.path.join(os.path.dirname(__file__), "..", "..", "interpreter", "node_runner.js")
ARGV = ["/usr/bin/node", os.path.abspath(RUNNER)]


def start(cwd, env=None):
    r = Runner(ARGV)
    assert r.ready["language"] == "javascript", r.ready
    assert r.init(cwd=str(cwd), env=env) == {"type": "initialized"}
    return r


@pytest.fixture
def runner(tmp_path):
    r = start(tmp_path)
    yield r
    r.close()


def ok(runner, code, language=None):
    """Runs code that must not fail; returns the Execution."""
    ex = runner.execute(code, language)
    assert ex.errors == [], ex.events
    assert ex.done is not None
    return ex


def value(runner, code, language=None):
    """The one result of code (a dict of formats), or None when there is none."""
    ex = ok(runner, code, language)
    assert len(ex.results) <= 1, ex.events
    return ex.results[0] if ex.results else None


def error(runner, code, language=None):
    ex = runner.execute(code, language)
    assert len(ex.errors) == 1 and ex.results == [], ex.events
    assert ex.events[-1] == ex.done
    return ex.errors[0]


def let_idle_sigints_land():
    """Not a wait on a condition: a known race of the runner that this sleep hides.
    A SIGINT that comes while the runner is idle is counted by its watchdog thread,
    which nothing outside shows; counted after the next execution started, it
    interrupts that execution, and now and then the runner dies of it (about 1 in
    1000 SIGINTs sent just before an execution, in a stress loop)."""
    time.sleep(0.2)


def interrupt_after(runner, seconds):
    t = threading.Timer(seconds, runner.interrupt)
    t.start()
    return t


# -- persistence ------------------------------------------------------------------

def test_declarations_persist_across_executions(runner):
    ok(runner, "const {a, b: [c], ...rest} = {a: 1, b: [2], d: 3}\n"
               "let l = 4; var v = 5\n"
               "class K { sum() { return a + c + l + v } }\n"
               "function f() { return g() }\n"
               "function g() { return new K().sum() }")
    assert value(runner, "[a, c, rest, l, v, f(), typeof K]")["json"] == [1, 2, {"d": 3}, 4, 5, 12, "function"]


def test_redeclaration_in_a_later_execution(runner):
    ok(runner, "const x = 1; let y = 2; class C {}")
    assert value(runner, "const x = 'again'; let y = x + '!'; class C { k() { return 1 } }; [x, y, new C().k()]")[
        "json"] == ["again", "again!", 1]


def test_function_declarations_are_hoisted(runner):
    assert value(runner, "const r = later(); function later() { return 7 }; r")["text"] == "7"
    assert value(runner, "later() + 1")["text"] == "8"


def test_var_in_blocks_and_loops_persists(runner):
    ok(runner, "for (var i = 0; i < 3; i++) {}\nif (true) { var inner = 'x' }\nfor (var item of [1, 2]) {}")
    assert value(runner, "[i, inner, item]")["json"] == [3, "x", 2]


def test_closures_see_later_assignments(runner):
    ok(runner, "let count = 0; const inc = () => ++count")
    ok(runner, "inc(); inc()")
    assert value(runner, "count")["text"] == "2"


# -- top-level await and results ---------------------------------------------------

def test_top_level_await_and_for_await(runner):
    ok(runner, "const got = []\n"
               "for await (const v of (async function* () { yield 1; await null; yield 2 })()) got.push(v)\n"
               "const late = await new Promise(r => setTimeout(() => r('late'), 50))")
    assert value(runner, "[got, late]")["json"] == [[1, 2], "late"]


@pytest.mark.parametrize("code, expected", [
    ("({x: 1, y: [true, null]})", {"json": {"x": 1, "y": [True, None]}, "text": "{ x: 1, y: [ true, null ] }"}),
    ("{a: 1}", {"json": {"a": 1}, "text": "{ a: 1 }"}),
    ("[1, 'two']", {"json": [1, "two"], "text": "[ 1, 'two' ]"}),
    ("40 + 2", {"text": "42"}),
    ("'hi'", {"text": "'hi'"}),
    ("10n ** 20n", {"text": "100000000000000000000n"}),
    ("function named() {}; named", {"text": "[Function: named]"}),
    ("Promise.resolve({ok: true})", {"json": {"ok": True}, "text": "{ ok: true }"}),
    ("new Map([[1, 2]])", {"text": "Map(1) { 1 => 2 }"}),
    ("const o = {}; o.self = o; o", {"text": "<ref *1> { self: [Circular *1] }"}),
])
def test_last_expression_is_the_result(runner, code, expected):
    r = value(runner, code)
    assert {k: v for k, v in r.items() if k not in ("type", "id")} == expected


@pytest.mark.parametrize("code", ["undefined", "let z = 1", "console.log(1)", "function h() {}", ""])
def test_no_result(runner, code):
    assert value(runner, code) is None


def test_node_behaves_normally(runner):
    assert value(runner, "[Buffer.from('hi') instanceof Uint8Array, [] instanceof Array, typeof setImmediate]")[
        "json"] == [True, True, "function"]


# -- output -------------------------------------------------------------------------

def test_output_streams_before_done(runner):
    seen = []
    ex = runner.execute("console.log('one'); console.error('err')\n"
                        "await new Promise(r => setTimeout(r, 300))\n"
                        "process.stdout.write('two\\n'); 3",
                        on_event=lambda ev: seen.append(ev))
    kinds = [e if isinstance(e, tuple) else e["type"] for e in seen]
    assert kinds == [("stdout", "one\n"), ("stderr", "err\n"), ("stdout", "two\n"), "result", "done"], seen
    assert ex.results[0]["text"] == "3"


def test_large_output_precedes_the_result(runner):
    ex = ok(runner, "process.stdout.write('x'.repeat(1 << 20)); 'end'")
    assert ex.stdout == "x" * (1 << 20)
    assert ex.results[0]["text"] == "'end'"


# -- errors -------------------------------------------------------------------------

def test_reference_error(runner):
    e = error(runner, "const fine = 1\nmissing + 1")
    assert (e["ename"], e["evalue"]) == ("ReferenceError", "missing is not defined")
    assert e["traceback"][0] == "ReferenceError: missing is not defined"
    assert any(":2:" in line for line in e["traceback"][1:]), e["traceback"]  # the cell's own line
    assert not any("node_runner" in line or "node:vm" in line for line in e["traceback"]), e["traceback"]


def test_error_thrown_after_await(runner):
    e = error(runner, "await null\nthrow new TypeError('bad')")
    assert (e["ename"], e["evalue"]) == ("TypeError", "bad")


def test_syntax_error_has_line_and_column(runner):
    e = error(runner, "let ok = 1\nlet x = ;")
    assert e["ename"] == "SyntaxError"
    assert "(2:8)" in e["evalue"]
    assert e["traceback"][1:3] == ["let x = ;", "        ^"]


def test_thrown_non_error(runner):
    e = error(runner, "throw 'boom'")
    assert e["evalue"] == "'boom'"


def test_errors_from_timers_do_not_kill_the_runner(runner):
    ok(runner, "setTimeout(() => { throw new Error('late') }, 10); Promise.reject(new Error('nobody')); 0")
    ex = ok(runner, "await new Promise(r => setTimeout(r, 200)); 'alive'")
    assert ex.results[0]["text"] == "'alive'"
    assert runner.alive()


# -- TypeScript ---------------------------------------------------------------------

def test_typescript(runner):
    ok(runner, "interface P { x: number }\n"
               "enum Color { Red, Green }\n"
               "function id<T>(v: T): T { return v }\n"
               "const p = { x: 1 } as P\n"
               "let n: number = await Promise.resolve<number>(2)", "typescript")
    assert value(runner, "[id<number>(p.x), Color.Green, Color[0], n] as unknown[]", "typescript")["json"] == [
        1, 1, "Red", 2]
    assert value(runner, "p.x + n")["text"] == "3"  # shared with JavaScript


def test_typescript_syntax_error(runner):
    e = error(runner, "let z: = 5", "typescript")
    assert e["ename"] == "TranspileError"
    assert "(1:" in e["evalue"]


# -- interrupt ----------------------------------------------------------------------

@pytest.mark.parametrize("code", [
    "while (true) {}",
    "await new Promise(() => {})",
    "await null; while (true) {}",
])
def test_interrupt_keeps_state(runner, code):
    ok(runner, "const kept = 41")
    t = interrupt_after(runner, 0.5)
    ex = runner.execute(code, timeout=30)
    t.join()
    assert [e["ename"] for e in ex.errors] == ["Interrupted"], ex.events
    assert ex.events[-1] == ex.done
    assert value(runner, "kept + 1")["text"] == "42"


@pytest.mark.parametrize("code", ["while (true) {}", "await new Promise(() => {})"],
                         ids=["busy", "await"])
def test_sigints_in_quick_succession_give_one_error(runner, code):
    rng = random.Random(5)
    for i in range(15):
        # soon or later after the start; the second SIGINT back to back or not
        gaps = [rng.uniform(0, 0.3), 0 if i % 2 else rng.uniform(0, 0.02), 0.1]
        sigints = SigintsOn(runner, "spinning", gaps)
        ex = runner.execute("console.log('spinning');\n" + code, timeout=30, on_event=sigints)
        sigints.join()
        let_idle_sigints_land()
        assert [e["ename"] for e in ex.errors] == ["Interrupted"], ex.events
    assert value(runner, "1 + 1")["text"] == "2"


def test_output_works_after_an_interrupt_inside_console_log(runner):
    # the interrupt lands inside a write most of the time: V8 stops the stream
    # half-way, which left it buffering every later write
    for _ in range(5):
        t = interrupt_after(runner, 0.3)
        ex = runner.execute("let i = 0; while (true) { console.log(i++); }", timeout=30)
        t.join()
        assert [e["ename"] for e in ex.errors] == ["Interrupted"], ex.events[-3:]
        ex = ok(runner, "console.log('after'); console.error('err'); process.stdout.write('raw\\n')")
        assert (ex.stdout, ex.stderr) == ("after\nraw\n", "err\n")


def test_output_works_after_the_code_ends_stdout(runner):
    ok(runner, "process.stdout.end(); process.stderr.destroy()")
    ex = ok(runner, "console.log('still'); console.error('here')")
    assert (ex.stdout, ex.stderr) == ("still\n", "here\n")


def test_sigint_listeners_of_the_code_do_not_take_interrupts(runner):
    # such a listener used to replace the signal handler breakOnSigint relies on:
    # the next interrupt killed the runner
    ok(runner, "process.on('SIGINT', () => console.log('mine'));\n"
               "process.once('SIGINT', () => console.log('once'))")
    for code in ["while (true) {}", "await null; while (true) {}", "await new Promise(() => {})"]:
        t = interrupt_after(runner, 0.3)
        ex = runner.execute(code, timeout=30)
        t.join()
        assert [e["ename"] for e in ex.errors] == ["Interrupted"], ex.events
        assert ex.stdout == ""
    runner.interrupt()
    let_idle_sigints_land()
    assert value(runner, "process.listenerCount('SIGINT')")["text"] == "0"


def test_code_replacing_what_the_runner_uses_does_not_break_it(runner):
    # a test mocking fs.writeSync used to cut the runner off from the agent
    ok(runner, "const fs = require('fs'), util = require('util');\n"
               "const boom = () => { throw new Error('mocked'); };\n"
               "fs.writeSync = util.inspect = JSON.stringify = JSON.parse = boom;\n"
               "Atomics.store = Atomics.load = Atomics.notify = Atomics.wait = boom;")
    ex = ok(runner, "console.log('still'); ({a: [1]})")
    assert ex.stdout == "still\n" and ex.results[0]["json"] == {"a": [1]}, ex.events
    t = interrupt_after(runner, 0.3)
    ex = runner.execute("while (true) {}", timeout=30)
    t.join()
    assert [e["ename"] for e in ex.errors] == ["Interrupted"], ex.events


def test_sigint_while_idle_is_ignored(runner):
    ok(runner, "const still = 'here'")
    for _ in range(3):
        runner.interrupt()
        let_idle_sigints_land()
    assert runner.alive()
    assert value(runner, "still")["text"] == "'here'"


# -- environment ---------------------------------------------------------------------

def test_init_sets_cwd_and_env(tmp_path):
    r = start(tmp_path, env={"ONLY": "this", "PATH": "/usr/bin:/bin"})
    try:
        assert value(r, "[process.cwd(), Object.keys(process.env).sort(), __dirname]")["json"] == [
            str(tmp_path), ["ONLY", "PATH"], str(tmp_path)]
    finally:
        r.close()


def test_init_with_a_missing_cwd_is_fatal(tmp_path):
    r = Runner(ARGV)
    try:
        assert r.init(cwd=str(tmp_path / "missing"))["type"] == "fatal"
        with pytest.raises(EOFError):
            r._next_message(10)
    finally:
        r.close()


def test_require_resolves_from_cwd(runner, tmp_path):
    (tmp_path / "helper.js").write_text("module.exports = { twice: (n) => n * 2 }")
    (tmp_path / "node_modules" / "local-pkg").mkdir(parents=True)
    (tmp_path / "node_modules" / "local-pkg" / "index.js").write_text("exports.name = 'local-pkg'")
    assert value(runner, "const { twice } = require('./helper'); [twice(21), require('local-pkg').name]")[
        "json"] == [42, "local-pkg"]


def test_import_resolves_from_cwd(runner, tmp_path):
    pkg = tmp_path / "node_modules" / "esm-only"
    pkg.mkdir(parents=True)
    (pkg / "package.json").write_text('{"type": "module", "exports": {"import": "./index.js"}}')
    (pkg / "index.js").write_text("export const hello = 'esm'; export default 5")
    (tmp_path / "rel.mjs").write_text("export const rel = 1")
    ok(runner, "import def, {hello} from 'esm-only'\n"
               "import * as path from 'node:path'\n"
               "const load = async () => (await import('./rel.mjs')).rel")
    assert value(runner, "[def, hello, path.sep, await load()]")["json"] == [5, "esm", "/", 1]
    assert error(runner, "export const nope = 1")["ename"] == "SyntaxError"


def test_control_socket_not_leaked_to_children(runner):
    out = value(runner, "require('child_process').execSync('readlink /proc/self/fd/3 || echo none', "
                        "{stdio: ['ignore', 'pipe', 'ignore']}).toString().trim()")
    assert out["text"] == "'none'"


def test_runner_exits_on_control_eof(runner):
    ok(runner, "setInterval(() => {}, 1000)")  # a live timer must not keep it running
    runner.ctl.close()
    wait_until(lambda: not runner.alive(), 20, what="the runner to exit")


def test_malformed_control_input_is_ignored(runner):
    runner.ctl.sendall(b'not json\n{"type":"bogus"}\n[1,2]\nnull\n')
    assert value(runner, "1 + 1")["text"] == "2"


def test_two_runners_are_isolated(tmp_path):
    a, b = start(tmp_path), start(tmp_path)
    try:
        ok(a, "const mine = 'a'")
        assert error(b, "mine")["ename"] == "ReferenceError"
        assert value(a, "mine")["text"] == "'a'"
    finally:
        a.close()
        b.close()
