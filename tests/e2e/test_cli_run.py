"""`cove run` end to end: code from files and stdin in interpreter contexts
(docs/interpreter.md), rich results saved as files, errors, timeouts, and the
REPL driven through a real pseudo-terminal.

The CLI binary is helpers.COVE unless COVE_CLI names another one."""

import fcntl
import json
import os
import re
import select
import signal
import subprocess
import termios
import time

import pytest

from helpers import COVE, unique_id, wait_until

pytestmark = [pytest.mark.cli, pytest.mark.timeout(300)]

COVE_BIN = os.environ.get("COVE_CLI", COVE)  # another build of the CLI, if set


def cove_env(coved):
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVE_")}
    env.update(COVE_URL=coved.url, COVE_TOKEN=coved.token)
    return env


@pytest.fixture(scope="module")
def sid(api):
    if not os.path.exists(COVE_BIN):
        pytest.fail(f"{COVE_BIN} does not exist: build it first (ninja -C build cove)")
    s = unique_id("clirun")
    api.create(id=s)
    yield s
    api.destroy(s)


@pytest.fixture
def run(coved, sid, tmp_path):
    """Runs `cove run SID ARGS...` in tmp_path; returns the CompletedProcess."""
    def go(*args, input=None, timeout=120):
        return subprocess.run([COVE_BIN, "run", sid, *args], env=cove_env(coved), cwd=tmp_path,
                              input=input, capture_output=True, timeout=timeout)
    return go


def contexts(api, sid):
    r = api.get(f"/v1/sandboxes/{sid}/api/contexts")
    assert r.status_code == 200, r.text
    return r.json()["contexts"]


@pytest.fixture
def no_contexts_left(api, sid):
    """Every test leaves the sandbox without contexts: cove deletes what it created."""
    assert contexts(api, sid) == []
    yield
    wait_until(lambda: contexts(api, sid) == [], 10, what=lambda: contexts(api, sid))


def write(path, text):
    path.write_text(text)
    return str(path)


def test_file_prints_and_returns_a_value(run, tmp_path, no_contexts_left):
    f = write(tmp_path / "a.py", "import sys\nprint('hello', 6 * 7)\n"
              "print('to stderr', file=sys.stderr)\n{'answer': 42}\n")
    p = run(f)
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode() == "hello 42\n{'answer': 42}\n"
    assert p.stderr.decode() == "to stderr\n"


def test_stdin_and_dash(run, no_contexts_left):
    p = run(input=b"x = 20\nx + 1\n")
    assert (p.returncode, p.stdout) == (0, b"21\n"), p.stderr
    p = run("-", input=b"print('dash')\n")
    assert (p.returncode, p.stdout) == (0, b"dash\n"), p.stderr


def test_output_streams_while_the_code_runs(coved, sid, tmp_path, no_contexts_left):
    f = write(tmp_path / "slow.py",
              "import time\nprint('first', flush=True)\ntime.sleep(4)\nprint('second')\n")
    proc = subprocess.Popen([COVE_BIN, "run", sid, f], env=cove_env(coved), cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        start = time.monotonic()
        line = proc.stdout.readline()
        assert line == b"first\n"
        assert proc.poll() is None, "the first line came only at the end"
        assert proc.wait(60) == 0
        assert proc.stdout.read() == b"second\n"
        assert time.monotonic() - start > 3
    finally:
        proc.kill()
        proc.wait()


def test_matplotlib_plot_is_saved_as_png(run, tmp_path, no_contexts_left):
    (tmp_path / "cove-result-1.png").write_bytes(b"not mine")  # never overwritten
    f = write(tmp_path / "plot.py", "import matplotlib.pyplot as plt\n"
              "plt.figure(figsize=(4, 3), dpi=100)\nplt.plot([1, 3, 2])\nplt.show()\n")
    p = run(f)
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode() == "[image saved to cove-result-2.png (400x300)]\n", p.stdout
    data = (tmp_path / "cove-result-2.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(data[16:20], "big") == 400
    assert int.from_bytes(data[20:24], "big") == 300
    assert (tmp_path / "cove-result-1.png").read_bytes() == b"not mine"


def test_rich_results(run, tmp_path, no_contexts_left):
    f = write(tmp_path / "rich.py",
              "from IPython.display import display, HTML, JSON, Markdown\n"
              "display(HTML('<b>bold</b>'))\ndisplay(Markdown('# Title'))\n"
              "import pandas as pd\npd.DataFrame({'a': [1, 2]})\n")
    p = run(f)
    assert p.returncode == 0, p.stderr
    out = p.stdout.decode().splitlines()
    assert out[0] == "[HTML result saved to cove-result-1.html]", out
    assert "# Title" in out
    assert out[-3:] == ["   a", "0  1", "1  2"], out
    assert (tmp_path / "cove-result-1.html").read_text() == "<b>bold</b>"


def test_error_exits_1_with_the_traceback(run, tmp_path, no_contexts_left):
    f = write(tmp_path / "err.py", "print('before')\ndef f():\n    return 1 / 0\nf()\n")
    p = run(f)
    assert p.returncode == 1
    assert p.stdout == b"before\n"
    err = p.stderr.decode()
    assert "Traceback" in err and "return 1 / 0" in err, err
    assert err.rstrip().endswith("ZeroDivisionError: division by zero"), err


def test_timeout_interrupts_and_exits_124(run, tmp_path, no_contexts_left):
    f = write(tmp_path / "loop.py", "import time\nprint('start', flush=True)\ntime.sleep(60)\n")
    start = time.monotonic()
    p = run("--timeout", "1500", f)
    assert p.returncode == 124, p.stderr
    assert time.monotonic() - start < 30
    assert p.stdout == b"start\n"
    assert "TimeoutError" in p.stderr.decode()


def test_javascript_and_typescript(run, tmp_path, no_contexts_left):
    f = write(tmp_path / "a.js", "console.log('js', 1 + 1)\nconst o = {a: [1, 2]}\no\n")
    p = run("--lang", "javascript", f)
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode() == "js 2\n{ a: [ 1, 2 ] }\n"
    f = write(tmp_path / "a.ts", "interface P { x: number }\nconst p: P = { x: 3 }\n"
              "console.log('ts', p.x * 2)\n")
    p = run("--lang", "typescript", f)
    assert (p.returncode, p.stdout) == (0, b"ts 6\n"), p.stderr
    p = run("--lang", "javascript", input=b"throw new Error('boom')\n")
    assert p.returncode == 1
    assert "Error: boom" in p.stderr.decode()


def test_existing_context_is_used_and_kept(api, sid, run, tmp_path):
    ctx = api.call(sid, "contexts", {"language": "python"})["contextId"]
    try:
        assert run("--context", ctx, input=b"kept = 'yes'\n").returncode == 0
        p = run("--context", ctx, input=b"print(kept)\n")
        assert (p.returncode, p.stdout) == (0, b"yes\n"), p.stderr
        assert [c["id"] for c in contexts(api, sid)] == [ctx]
        p = run("--context", ctx, "--lang", "javascript", input=b"1\n")
        assert p.returncode == 2 and b"is python" in p.stderr, p.stderr
    finally:
        api.delete(f"/v1/sandboxes/{sid}/api/contexts/{ctx}")


def test_usage_and_api_errors_exit_2(run, coved, tmp_path, no_contexts_left):
    p = run(str(tmp_path / "missing.py"))
    assert p.returncode == 2 and b"missing.py" in p.stderr, p.stderr
    p = run("--lang", "cobol", input=b"1")
    assert p.returncode == 2, p.stderr
    p = run("--context", "ctx-nope", input=b"1")
    assert p.returncode == 2 and b"CONTEXT_NOT_FOUND" in p.stderr, p.stderr
    p = subprocess.run([COVE_BIN, "run", unique_id("absent")], env=cove_env(coved),
                       input=b"1", capture_output=True, timeout=60)
    assert p.returncode == 2 and b"SANDBOX_NOT_FOUND" in p.stderr, p.stderr


def test_sigterm_deletes_the_context(api, coved, sid, tmp_path, no_contexts_left):
    f = write(tmp_path / "long.py", "import time\nprint('running', flush=True)\ntime.sleep(120)\n")
    proc = subprocess.Popen([COVE_BIN, "run", sid, f], env=cove_env(coved), cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"running\n"
        assert len(contexts(api, sid)) == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 128 + signal.SIGTERM
        assert contexts(api, sid) == []  # deleted before cove exited
    finally:
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------- the REPL

class Pty:
    """cove in a new session whose controlling terminal is a fresh pty."""

    def __init__(self, args, env, cwd):
        self.master, slave = os.openpty()

        def setup():
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(args, env=env, cwd=cwd, stdin=slave, stdout=slave,
                                     stderr=slave, preexec_fn=setup)
        os.close(slave)
        self.out = b""

    def send(self, text):
        os.write(self.master, text.encode())

    def expect(self, pattern, timeout=60):
        """Waits until pattern matches the output after what earlier calls consumed."""
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(pattern.encode(), self.out)
            if m:
                self.out = self.out[m.end():]
                return m
            left = deadline - time.monotonic()
            assert left > 0, f"{pattern!r} not in output: {self.out.decode(errors='replace')!r}"
            r, _, _ = select.select([self.master], [], [], left)
            if r:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # EIO: the other side is closed
                    chunk = b""
                if not chunk:
                    assert re.search(pattern.encode(), self.out), \
                        f"{pattern!r} not in output before EOF: {self.out!r}"
                    continue
                self.out += chunk

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        os.close(self.master)


@pytest.fixture
def repl(coved, sid, tmp_path):
    ptys = []

    def start(*args):
        p = Pty([COVE_BIN, "run", sid, *args], cove_env(coved), tmp_path)
        ptys.append(p)
        return p
    yield start
    for p in ptys:
        p.close()


def test_repl_keeps_state_and_reads_blocks(api, sid, repl, no_contexts_left):
    t = repl()
    t.expect(r"python context ctx-\S+ in sandbox")
    t.expect(r">>> ")
    assert len(contexts(api, sid)) == 1
    t.send("x = 20\n")
    t.expect(r">>> ")
    t.send("def f(y):\n")
    t.expect(r"\.\.\. ")
    t.send("    return x + y\n")
    t.expect(r"\.\.\. ")
    t.send("\n")
    t.expect(r">>> ")
    t.send("f(22)\n")
    t.expect(r"\r\n42\r\n>>> ")
    t.send("(1,\n")
    t.expect(r"\.\.\. ")
    t.send(" 2)\n")
    t.expect(r"\(1, 2\)\r\n>>> ")
    t.send("1/0\n")
    t.expect(r"ZeroDivisionError: division by zero\r\n>>> ")
    t.send("\x04")  # Ctrl-D
    assert t.proc.wait(30) == 0


def test_repl_ctrl_c_interrupts_and_clears(api, sid, repl, no_contexts_left):
    t = repl()
    t.expect(r">>> ")
    t.send("n = 5\n")
    t.expect(r">>> ")
    t.send("import time\n")
    t.expect(r">>> ")
    t.send("print('sleeping', flush=True); time.sleep(60)\n")
    t.expect(r"sleeping\r\n")
    start = time.monotonic()
    t.send("\x03")  # Ctrl-C while the code runs: /interrupt
    t.expect(r"KeyboardInterrupt")
    t.expect(r">>> ")
    assert time.monotonic() - start < 20
    t.send("print(n * 2)\n")  # the context survived
    t.expect(r"\r\n10\r\n>>> ")
    t.send("def g():\n")
    t.expect(r"\.\.\. ")
    t.send("\x03")  # Ctrl-C at a prompt drops the pending input
    t.expect(r"KeyboardInterrupt\r\n>>> ")
    t.send("'after'\n")
    t.expect(r"'after'\r\n>>> ")
    assert len(contexts(api, sid)) == 1
    t.send("\x04")
    assert t.proc.wait(30) == 0


def test_repl_javascript(repl, no_contexts_left):
    t = repl("--lang", "javascript")
    t.expect(r"\r\n> ")
    t.send("function add(a, b) {\n")
    t.expect(r"\.\.\. ")
    t.send("  return a + b\n")
    t.expect(r"\.\.\. ")
    t.send("}\n")
    t.expect(r"\r\n> ")
    t.send("let k = 40\n")
    t.expect(r"\r\n> ")
    t.send("add(k, 2)\n")
    t.expect(r"\r\n42\r\n> ")
    t.send("\x04")
    assert t.proc.wait(30) == 0


def test_repl_sighup_deletes_the_context(api, sid, repl, no_contexts_left):
    t = repl()
    t.expect(r">>> ")
    assert len(contexts(api, sid)) == 1
    t.proc.send_signal(signal.SIGHUP)
    assert t.proc.wait(30) == 128 + signal.SIGHUP
    assert contexts(api, sid) == []
