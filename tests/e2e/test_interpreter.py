"""Code contexts through coved's API (docs/interpreter.md, docs/api.md).

Python, JavaScript and TypeScript contexts in real sandboxes: state that
persists, rich results, live output, timeouts that interrupt without losing
state, crashes that are reported and restartable, isolation between contexts,
and attacks on the runner machinery from inside a sandbox. The same features
through Cloudflare's own client are in tests/conformance/test/interpreter.test.mjs.
"""

import base64
import contextlib
import glob
import json
import os
import shutil
import struct
import subprocess
import threading
import time

import pytest

from helpers import assert_error, sse_events, unique_id, wait_until
from test_images import minimal_rootfs, tar_bytes

pytestmark = pytest.mark.interpreter


class Contexts:
    """Calls the code-interpreter routes of one sandbox."""

    def __init__(self, api, sid):
        self.api, self.sid = api, sid

    def path(self, rest):
        return f"/v1/sandboxes/{self.sid}/api/{rest}"

    def create(self, language="python", expect=200, **fields):
        r = self.api.post(self.path("contexts"), {"language": language, **fields}, timeout=120)
        assert r.status_code == expect, r.text
        return r.json()["contextId"] if expect == 200 else r

    def get(self, ctx):
        r = self.api.get(self.path(f"contexts/{ctx}"))
        assert r.status_code == 200, r.text
        return r.json()["context"]

    def delete(self, ctx):
        r = self.api.delete(self.path(f"contexts/{ctx}"))
        assert r.status_code == 200, r.text

    def stream(self, ctx, code, **fields):
        """Starts an execution; returns the streaming response."""
        return self.api.request("POST", self.path("execute/code"),
                                json_body={"context_id": ctx, "code": code, **fields},
                                stream=True, timeout=120)

    def run(self, ctx, code, on_event=None, **fields):
        """Runs code; returns Run (its events, in order). on_event(event, events so
        far) is called for each event as it arrives."""
        r = self.stream(ctx, code, **fields)
        assert r.status_code == 200, r.text
        events = []
        for e in sse_events(r):
            events.append(json.loads(e["data"]))
            if on_event:
                on_event(events[-1], events)
        return Run(events)


class Run:
    def __init__(self, events):
        self.events = events
        assert events and events[-1]["type"] == "execution_complete", events
        self.complete = events[-1]

    def of(self, kind):
        return [e for e in self.events if e["type"] == kind]

    @property
    def stdout(self):
        return "".join(e["text"] for e in self.of("stdout"))

    @property
    def results(self):
        return self.of("result")

    @property
    def error(self):
        errors = self.of("error")
        return errors[0] if errors else None

    def value(self):
        """The single result's json, else its text."""
        assert len(self.results) == 1, self.events
        res = self.results[0]
        return res["json"] if "json" in res else res["text"]


@pytest.fixture(scope="module")
def ctxs(api):
    sid = unique_id("interp")
    api.create(id=sid)
    yield Contexts(api, sid)
    api.delete(f"/v1/sandboxes/{sid}")


def png_size(b64):
    data = base64.b64decode(b64)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", data[:32]
    return struct.unpack(">II", data[16:24])


# ---------------------------------------------------------------- persistence

def test_python_state_persists_between_runs(ctxs):
    ctx = ctxs.create("python")
    ctxs.run(ctx, "import math\nx = 40\ndef f(v):\n    return v + 2\n"
                  "class C:\n    def twice(self, v):\n        return 2 * v")
    assert ctxs.run(ctx, "f(x)").value() == "42"
    assert ctxs.run(ctx, "C().twice(math.floor(10.5))").value() == "20"
    ctxs.run(ctx, "import asyncio\nasync def later():\n    await asyncio.sleep(0.01)\n    return 'awaited'\n"
                  "y = await later()")
    assert ctxs.run(ctx, "y").value() == "'awaited'"
    run = ctxs.run(ctx, "print('count')")
    assert run.complete["execution_count"] == 6 and run.stdout == "count\n"
    ctxs.delete(ctx)


@pytest.mark.parametrize("language", ["javascript", "typescript"])
def test_node_state_persists_between_runs(ctxs, language):
    ctx = ctxs.create(language)
    typed = language == "typescript"
    ctxs.run(ctx, ("const base: number = 40;\nlet label: string = 'n';\n"
                   "function add(a: number, b: number): number { return a + b; }\n"
                   "class Box<T> { constructor(public v: T) {} get(): T { return this.v; } }")
             if typed else
             ("const base = 40;\nlet label = 'n';\nfunction add(a, b) { return a + b; }\n"
              "class Box { constructor(v) { this.v = v; } get() { return this.v; } }"))
    assert ctxs.run(ctx, "add(base, 2)").value() == "42"
    assert ctxs.run(ctx, "new Box(label).get()").value() == "'n'"
    ctxs.run(ctx, "const later = await new Promise((r) => setTimeout(() => r('awaited'), 10));")
    assert ctxs.run(ctx, "later").value() == "'awaited'"
    assert ctxs.run(ctx, "const base = 1; base").value() == "1"  # re-declared, like a REPL
    assert ctxs.run(ctx, "({a: base, b: [1, 2]})").value() == {"a": 1, "b": [1, 2]}
    ctxs.delete(ctx)


def test_contexts_honour_cwd_and_env_vars(ctxs):
    py = ctxs.create("python", cwd="/tmp", env_vars={"COVE_TEST_VAR": "from-env"})
    assert ctxs.run(py, "import os\n[os.getcwd(), os.environ['COVE_TEST_VAR']]").value() == ["/tmp", "from-env"]
    js = ctxs.create("javascript", cwd="/tmp", env_vars={"COVE_TEST_VAR": "from-env"})
    assert ctxs.run(js, "[process.cwd(), process.env.COVE_TEST_VAR]").value() == ["/tmp", "from-env"]
    listed = {c["id"]: c for c in ctxs.api.get(ctxs.path("contexts")).json()["contexts"]}
    assert listed[py]["cwd"] == "/tmp" and listed[js]["language"] == "javascript"
    ctxs.delete(py)
    ctxs.delete(js)


def test_contexts_are_isolated_from_each_other(ctxs):
    a, b = ctxs.create("python"), ctxs.create("python")
    ctxs.run(a, "secret = 'only in a'")
    err = ctxs.run(b, "secret").error
    assert err["ename"] == "NameError", err
    assert ctxs.get(a)["pid"] != ctxs.get(b)["pid"]
    ctxs.delete(a)
    ctxs.delete(b)


# ---------------------------------------------------------------- rich outputs

def test_python_rich_results(ctxs):
    ctx = ctxs.create("python")
    run = ctxs.run(ctx, "import matplotlib.pyplot as plt\nfig = plt.figure(figsize=(4, 3), dpi=100)\n"
                        "plt.plot([1, 2, 3], [1, 4, 9])\nNone")
    pngs = [r for r in run.results if "png" in r]
    assert len(pngs) == 1 and png_size(pngs[0]["png"]) == (400, 300), run.events
    assert not ctxs.run(ctx, "1").results[0].get("png")  # the figure was closed after being returned

    frame = ctxs.run(ctx, "import pandas as pd\npd.DataFrame({'city': ['Oslo', 'Lima'], 'n': [1, 2]})").results
    assert len(frame) == 1 and "<table" in frame[0]["html"] and "Oslo" in frame[0]["text"], frame

    shown = ctxs.run(ctx, "from IPython.display import display, HTML, Markdown, JSON\n"
                          "display(HTML('<b>bold</b>'))\ndisplay(Markdown('# Title'))\n"
                          "display(JSON({'k': [1, 2]}))\n{'a': 1, 'b': [1, 2]}")
    kinds = [sorted(k for k in r if k != "type") for r in shown.results]
    assert shown.results[0]["html"] == "<b>bold</b>", shown.events
    assert shown.results[1]["markdown"] == "# Title"
    assert shown.results[2]["json"] == {"k": [1, 2]}
    assert shown.results[3]["json"] == {"a": 1, "b": [1, 2]}, kinds
    assert "Out[" not in shown.stdout  # the value is a result, not echoed to stdout
    ctxs.delete(ctx)


def test_errors_have_name_value_and_a_clean_traceback(ctxs):
    py = ctxs.create("python")
    err = ctxs.run(py, "def boom():\n    return undefined_name\nboom()").error
    assert err["ename"] == "NameError" and "undefined_name" in err["evalue"], err
    assert any("boom" in line for line in err["traceback"]), err
    assert not any("\x1b" in line for line in err["traceback"]), err
    assert ctxs.run(py, "def (:").error["ename"] == "SyntaxError"
    js = ctxs.create("typescript")
    err = ctxs.run(js, "missing.call()").error
    assert err["ename"] == "ReferenceError" and "missing" in err["evalue"], err
    assert ctxs.run(js, "let x: = ;").error["ename"] in ("TranspileError", "SyntaxError")
    ctxs.delete(py)
    ctxs.delete(js)


# ---------------------------------------------------------------- live output, timeouts

@pytest.mark.parametrize("language", ["python", "javascript"])
def test_output_streams_while_the_code_runs(ctxs, language):
    """The code prints, then waits until the test has seen that line: only a
    live stream lets it finish without its timeout."""
    ctx = ctxs.create(language)
    marker = f"/tmp/seen-{unique_id('m')}"
    code = (f"import os, time\nprint('first', flush=True)\n"
            f"for _ in range(600):\n    if os.path.exists('{marker}'): break\n    time.sleep(0.05)\n"
            f"'saw marker' if os.path.exists('{marker}') else 'no marker'") if language == "python" else (
            f"const fs = require('fs');\nconsole.log('first');\n"
            f"for (let i = 0; i < 600 && !fs.existsSync('{marker}'); i++) await new Promise(r => setTimeout(r, 50));\n"
            f"fs.existsSync('{marker}') ? 'saw marker' : 'no marker'")

    def on_event(ev, events):
        if ev["type"] == "stdout" and "first" in ev["text"]:
            ctxs.api.exec(ctxs.sid, f"touch {marker}", session="__DISABLE_SESSION__")

    run = ctxs.run(ctx, code, on_event)
    assert "saw marker" in run.value(), run.events
    ctxs.delete(ctx)


@pytest.mark.parametrize("language,spin", [
    ("python", "while True:\n    pass"),
    ("python", "import time\ntime.sleep(3600)"),
    ("javascript", "while (true) {}"),
    ("javascript", "await new Promise(() => {})"),
])
def test_timeout_interrupts_and_keeps_state(ctxs, language, spin):
    ctx = ctxs.create(language)
    ctxs.run(ctx, "kept = 7" if language == "python" else "var kept = 7;")
    run = ctxs.run(ctx, spin, timeout_ms=300)
    assert run.complete.get("timed_out") is True, run.events
    assert run.error["ename"] == "TimeoutError" and "timeout_ms=300" in run.error["evalue"], run.error
    assert ctxs.run(ctx, "kept").value() == "7"
    assert ctxs.get(ctx)["status"] == "ready"
    ctxs.delete(ctx)


def test_concurrent_runs_on_one_context_queue_one_at_a_time(ctxs):
    ctx = ctxs.create("python")
    ctxs.run(ctx, "log = []")  # execution 1
    out = {}

    def go(i):
        out[i] = ctxs.run(ctx, f"import time\ntime.sleep(0.2)\nlog.append({i})\nlen(log)")

    threads = [threading.Thread(target=go, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Each run saw exactly the runs before it: the Nth to execute found N entries.
    for run in out.values():
        assert run.value() == str(run.complete["execution_count"] - 1), run.events
    order = sorted(out, key=lambda i: out[i].complete["execution_count"])
    assert ctxs.run(ctx, "log").value() == order
    ctxs.delete(ctx)


def test_a_context_queues_at_most_64_executions(ctxs):
    ctx = ctxs.create("python")
    blocker = ctxs.stream(ctx, "import time\nprint('running', flush=True)\ntime.sleep(3600)")
    assert blocker.status_code == 200, blocker.text
    blocker_events = sse_events(blocker)
    assert json.loads(next(blocker_events)["data"])["type"] == "stdout"
    queued = []
    try:
        for i in range(64):
            r = ctxs.stream(ctx, f"{i} * 2")
            assert r.status_code == 200, (i, r.text)
            queued.append(r)
        assert_error(ctxs.stream(ctx, "'one too many'"), 409, "CONTEXT_BUSY")
        r = ctxs.api.post(ctxs.path(f"contexts/{ctx}/interrupt"), {})
        assert r.status_code == 200, r.text
        rest = [json.loads(e["data"]) for e in blocker_events]
        assert [e["type"] for e in rest][-2:] == ["error", "execution_complete"], rest
        # every queued execution runs, in the order it was queued
        values = [Run([json.loads(e["data"]) for e in sse_events(r)]).value() for r in queued]
        assert values == [str(i * 2) for i in range(64)]
    finally:
        for r in queued + [blocker]:
            r.close()
    assert ctxs.run(ctx, "'after'").value() == "'after'"
    ctxs.delete(ctx)


# ---------------------------------------------------------------- lifecycle

@pytest.mark.parametrize("language,crash", [
    ("python", "import os\nos._exit(3)"),
    ("javascript", "process.exit(3)"),
])
def test_crash_is_reported_and_the_context_can_be_restarted(ctxs, language, crash):
    ctx = ctxs.create(language)
    ctxs.run(ctx, "before = 1" if language == "python" else "var before = 1;")
    run = ctxs.run(ctx, crash)
    assert run.error["ename"] == "ContextCrashed" and "status 3" in run.error["evalue"], run.error
    info = ctxs.get(ctx)
    assert info["status"] == "crashed" and "status 3" in info["error"], info
    assert_error(ctxs.stream(ctx, "1"), 409, "CONTEXT_CRASHED")
    r = ctxs.api.post(ctxs.path(f"contexts/{ctx}/restart"), {})
    assert r.status_code == 200 and r.json()["contextId"] == ctx, r.text
    assert ctxs.run(ctx, "before").error is not None  # a fresh interpreter
    assert ctxs.run(ctx, "1 + 1").value() == "2"
    ctxs.delete(ctx)


def test_interrupt_route_stops_the_running_code(ctxs):
    ctx = ctxs.create("python")

    def on_event(ev, events):
        if ev["type"] == "stdout":
            res = ctxs.api.post(ctxs.path(f"contexts/{ctx}/interrupt"), {})
            assert res.status_code == 200 and res.json()["interrupted"] is True, res.text

    run = ctxs.run(ctx, "import time\nprint('started', flush=True)\ntime.sleep(3600)", on_event)
    assert run.error["ename"] == "KeyboardInterrupt", run.events
    ctxs.delete(ctx)


def test_deleting_a_context_ends_its_process(ctxs):
    ctx = ctxs.create("python")
    ctxs.run(ctx, "import subprocess\nchild = subprocess.Popen(['sleep', '3600'])")
    pid = ctxs.get(ctx)["pid"]
    child = ctxs.run(ctx, "child.pid").value()
    ctxs.delete(ctx)
    assert_error(ctxs.api.get(ctxs.path(f"contexts/{ctx}")), 404, "CONTEXT_NOT_FOUND")
    gone = f"for p in {pid} {child}; do test -d /proc/$p && ! grep -q '^State:.*Z' /proc/$p/status && exit 1; done; exit 0"
    wait_until(lambda: ctxs.api.exec(ctxs.sid, gone, session="__DISABLE_SESSION__")["exitCode"] == 0, 10)


def test_many_contexts_fit_in_a_small_sandbox(api, make_sandbox):
    sid = make_sandbox(limits={"memoryBytes": 512 << 20})
    c = Contexts(api, sid)
    made = [c.create("python") for _ in range(16)]
    for i, ctx in enumerate(made):
        assert c.run(ctx, f"import numpy\nv = numpy.full(100_000, {i})\nint(v.sum())").value() == str(100_000 * i)
    states = {x["id"]: x["status"] for x in api.get(c.path("contexts")).json()["contexts"]}
    assert all(states[ctx] == "ready" for ctx in made), states
    for ctx in made:
        c.delete(ctx)


def test_idle_contexts_use_no_cpu(ctxs):
    py, js = ctxs.create("python"), ctxs.create("javascript")
    ctxs.run(py, "1")
    ctxs.run(js, "1")
    pids = [ctxs.get(x)["pid"] for x in (py, js)]
    ticks = "for p in {}; do awk '{{print $14 + $15}}' /proc/$p/stat; done".format(" ".join(map(str, pids)))
    samples = []

    def settled():  # start-up work (JIT, GC) is over: a sample 0.5 s after the last differs by at most a tick
        samples.append([int(v) for v in ctxs.api.sh(ctxs.sid, ticks).split()])
        return len(samples) > 1 and max(a - b for a, b in zip(samples[-1], samples[-2])) <= 1

    wait_until(settled, 30, interval=0.5, what=lambda: f"the contexts to settle; clock ticks sampled: {samples}")
    before = samples[-1]
    time.sleep(2)  # the point: the interval measured
    after = [int(v) for v in ctxs.api.sh(ctxs.sid, ticks).split()]
    # Clock ticks (10 ms) in 2 s: a waiting loop would use ~200; V8 runs one garbage
    # collection some seconds after start (2 ticks), which may fall in the window.
    assert max(a - b for a, b in zip(after, before)) <= 3, (before, after)
    ctxs.delete(py)
    ctxs.delete(js)


# ---------------------------------------------------------------- bad input, availability

def test_bad_requests_get_clear_errors(ctxs):
    assert_error(ctxs.create("cobol", expect=400), 400, "VALIDATION_FAILED")
    assert_error(ctxs.create("python", expect=400, cwd="/no/such/dir"), 400, "VALIDATION_FAILED")
    assert_error(ctxs.stream("ctx-0000000000000000", "1"), 404, "CONTEXT_NOT_FOUND")
    assert_error(ctxs.api.delete(ctxs.path("contexts/ctx-0000000000000000")), 404, "CONTEXT_NOT_FOUND")
    assert_error(ctxs.api.post(ctxs.path("execute/code"), {"code": "1"}), 400, "VALIDATION_FAILED")
    py = ctxs.create("python")
    assert_error(ctxs.stream(py, "1", language="javascript"), 400, "VALIDATION_FAILED")
    ctxs.delete(py)


@contextlib.contextmanager
def sandbox_on_rootfs(api, root, prefix):
    """Imports the directory root as an image and yields Contexts of a sandbox made
    from it; both are deleted afterwards."""
    name = unique_id(prefix)
    r = api.request("POST", f"/v1/images/{name}", data=tar_bytes(root),
                    headers={"Content-Type": "application/x-tar"}, timeout=300)
    assert r.status_code == 201, r.text
    sid = unique_id(prefix)
    api.create(id=sid, image=name)
    try:
        yield Contexts(api, sid)
    finally:
        api.destroy(sid)
        api.delete(f"/v1/images/{name}")


def test_images_without_interpreters_say_so(api, tmp_path):
    root = str(tmp_path / "rootfs")
    minimal_rootfs(root)  # bash and coreutils only
    with sandbox_on_rootfs(api, root, "noint") as c:
        assert_error(c.create("python", expect=501), 501, "PYTHON_NOT_AVAILABLE")
        assert_error(c.create("typescript", expect=501), 501, "JAVASCRIPT_NOT_AVAILABLE")
        health = api.get(c.path("interpreter/health")).json()
        assert health["status"] == "unhealthy" and health["languages"]["python"] is False, health
        assert api.sh(c.sid, "ls /opt/cove/interpreter").split()  # the runners are there, read-only


def copy_with_libraries(root, paths):
    """Copies host files into root, with the shared libraries they link."""
    files = set(paths)
    for p in paths:
        out = subprocess.run(["ldd", p], capture_output=True, text=True).stdout
        files.update(tok for line in out.splitlines() for tok in line.split() if tok.startswith("/"))
    for f in files:
        dest = os.path.join(root, f.lstrip("/"))
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        if not os.path.exists(dest):
            shutil.copy2(os.path.realpath(f), dest)


@pytest.mark.slow
def test_imported_image_with_its_own_python_and_node(api, tmp_path):
    """An image without IPython gets the plain Python fallback; its own node runs JavaScript."""
    root = str(tmp_path / "rootfs")
    minimal_rootfs(root)
    stdlib = "/usr/lib/python3.11"
    skip = {"test", "idlelib", "tkinter", "lib2to3", "ensurepip", "dist-packages", "site-packages"}
    shutil.copytree(stdlib, root + stdlib, symlinks=True,
                    ignore=lambda d, names: [n for n in names if d == stdlib and n in skip])
    copy_with_libraries(root, ["/usr/bin/python3.11", "/usr/bin/node"] + glob.glob(stdlib + "/lib-dynload/*.so"))
    os.symlink("python3.11", os.path.join(root, "usr/bin/python3"))
    with sandbox_on_rootfs(api, root, "pyimg") as c:
        py = c.create("python")
        c.run(py, "import json\ndef double(v):\n    return 2 * v\nstate = {'n': double(21)}")
        assert c.run(py, "state").value() == {"n": 42}
        shown = c.run(py, "class Page:\n    def _repr_html_(self):\n        return '<i>page</i>'\n"
                          "display(Page())\nprint('out')\n7 * 6")
        assert [r.get("html") for r in shown.results][0] == "<i>page</i>", shown.events
        assert shown.results[-1]["text"] == "42" and shown.stdout == "out\n"
        err = c.run(py, "1 / 0").error
        assert err["ename"] == "ZeroDivisionError" and any("1 / 0" in line for line in err["traceback"]), err
        js = c.create("javascript")
        c.run(js, "const answer = await Promise.resolve(42);")
        assert c.run(js, "answer").value() == "42"


# ---------------------------------------------------------------- attacks from inside

def test_runners_are_read_only_in_the_sandbox(ctxs):
    out = ctxs.api.exec(ctxs.sid, "echo 'import os; os.system(\"evil\")' > /opt/cove/interpreter/python_runner.py",
                        session="__DISABLE_SESSION__")
    assert out["exitCode"] != 0 and "Read-only file system" in out["stderr"], out
    ctx = ctxs.create("python")
    assert ctxs.run(ctx, "1 + 1").value() == "2"
    ctxs.delete(ctx)


def test_a_killed_zygote_is_replaced(ctxs):
    ctx = ctxs.create("python")
    # Forked contexts share the zygote's command line: spare ourselves.
    run = ctxs.run(ctx, "import os, signal, subprocess\n"
                        "z = subprocess.run(['pgrep', '-f', 'python_runner.py --zygote'], capture_output=True, text=True)\n"
                        "killed = [p for p in z.stdout.split() if int(p) != os.getpid()]\n"
                        "for p in killed:\n    os.kill(int(p), signal.SIGKILL)\nkilled")
    assert run.value() != "[]", run.events
    fresh = ctxs.create("python")  # a new zygote starts
    assert ctxs.run(fresh, "2 * 21").value() == "42"
    assert ctxs.run(ctx, "'still alive'").value() == "'still alive'"  # forked contexts do not depend on it
    ctxs.delete(ctx)
    ctxs.delete(fresh)


def test_a_runner_that_floods_or_lies_on_its_control_socket_is_contained(ctxs):
    ctx = ctxs.create("python")
    # A forged completion for another execution is ignored.
    run = ctxs.run(ctx, "import os\nos.write(3, b'{\"type\":\"done\",\"id\":\"x\",\"execution_count\":99}\\n')\n"
                        "'finished'")
    assert run.complete["execution_count"] == 1 and run.value() == "'finished'", run.events
    assert ctxs.run(ctx, "'next'").value() == "'next'"
    # A forged result reaches the client with the contract's fields only (the first
    # execution of a runner has id "1").
    fresh = ctxs.create("python")
    forged = ctxs.run(fresh, "import os\nos.write(3, b'{\"type\":\"result\",\"id\":\"1\",\"text\":\"ok\","
                             "\"html\":5,\"evil\":\"x\",\"json\":{\"a\":1}}\\n')\nNone")
    assert forged.results == [{"type": "result", "text": "ok", "json": {"a": 1}}], forged.events
    ctxs.delete(fresh)
    # A message without end: the agent kills the runner at 16 MiB and says why.
    flood = ctxs.run(ctx, "import os\nchunk = b'x' * (1 << 20)\nfor _ in range(40):\n    os.write(3, chunk)")
    assert flood.error["ename"] == "ContextCrashed" and "16 MiB" in flood.error["evalue"], flood.error
    ctxs.api.alive(ctxs.sid)
    ctxs.delete(ctx)


# ---------------------------------------------------------------- users, restarts

def test_contexts_run_as_the_sandbox_user(api, make_sandbox):
    sid = make_sandbox(user="user")
    c = Contexts(api, sid)
    for language, code in (("python", "import os\nos.getuid()"), ("javascript", "process.getuid()")):
        ctx = c.create(language)
        assert c.run(ctx, code).value() == "1000"
        c.delete(ctx)


@pytest.mark.restart
def test_contexts_survive_a_coved_restart(coved_factory):
    coved, api = coved_factory()
    sid = unique_id("interp-rst")
    api.create(id=sid)
    c = Contexts(api, sid)
    ctx = c.create("python")
    c.run(ctx, "kept = 'across restarts'")
    coved.kill9()
    coved.start()
    assert c.run(ctx, "kept").value() == "'across restarts'"
    api.destroy(sid)


def test_coved_without_runners_says_so(coved_factory):
    coved, api = coved_factory(args=["--interpreter-dir", "none"])
    sid = unique_id("norunners")
    api.create(id=sid)
    c = Contexts(api, sid)
    r = c.create("python", expect=501)
    assert_error(r, 501, "PYTHON_NOT_AVAILABLE")
    assert "runners are not available" in r.json()["message"], r.text
    assert_error(c.create("javascript", expect=501), 501, "JAVASCRIPT_NOT_AVAILABLE")
    assert api.get(c.path("interpreter/health")).json()["status"] == "unhealthy"
    assert api.get(c.path("contexts")).json()["contexts"] == []  # nothing half-made is listed
    api.destroy(sid)
