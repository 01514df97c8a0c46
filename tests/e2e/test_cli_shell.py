"""`cove shell` end to end: the CLI in a real terminal (a tmux pane) attached
to a sandbox's PTY through coved's terminal WebSocket, and the same command
scripted through a pipe.

In tmux, cove runs under a small sh wrapper that records its exit status and,
right after it, `stty -a` of the pane: sh (unlike an interactive bash) does
not repair the terminal after its child, so the recorded settings are the
ones cove left behind."""

import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile

import pytest

from helpers import COVE, wait_until

pytestmark = [pytest.mark.cli, pytest.mark.timeout(300)]

WRAPPER = """#!/bin/sh
"$COVE_BIN" shell "$1" --session "$2"
echo "rc=$?" > "$3/rc"
stty -a > "$3/stty"
exec sleep 600
"""


def clean_env(coved):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("COVE_") and k not in ("TMUX", "TMUX_PANE")}
    env.update(COVE_URL=coved.url, COVE_TOKEN=coved.token, COVE_BIN=COVE)
    return env


class Tmux:
    """A private tmux server (its own socket, no config file)."""

    def __init__(self, env):
        self.socket = f"cove-e2e-{secrets.token_hex(4)}"
        self.env = env

    def run(self, *args):
        p = subprocess.run(["tmux", "-L", self.socket, "-f", "/dev/null", *args], env=self.env,
                           capture_output=True, timeout=30)
        assert p.returncode == 0, f"tmux {args}: {p.stderr.decode()}"
        return p.stdout.decode()

    def start(self, name, command, x=100, y=30):
        self.run("new-session", "-d", "-s", name, "-x", str(x), "-y", str(y), command)

    def type(self, name, text):
        self.run("send-keys", "-t", name, "-l", text)
        self.run("send-keys", "-t", name, "Enter")

    def screen(self, name):
        return self.run("capture-pane", "-p", "-J", "-S", "-500", "-t", name)

    def wait_screen(self, name, pattern, timeout=30):
        return wait_until(lambda: re.search(pattern, self.screen(name)), timeout,
                          what=lambda: f"{pattern!r} not on screen:\n{self.screen(name)}")

    def pane(self, name, fmt):
        return self.run("display-message", "-p", "-t", name, fmt).strip()

    def size(self, name):
        rows, cols = self.pane(name, "#{pane_height} #{pane_width}").split()
        return int(rows), int(cols)

    def kill(self):
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], env=self.env,
                       capture_output=True, timeout=30)


@pytest.fixture
def tmux(coved):
    if shutil.which("tmux") is None:
        pytest.fail("tmux is not installed (apt-get install tmux)")
    t = Tmux(clean_env(coved))
    try:
        yield t
    finally:
        t.kill()


@pytest.fixture
def workdir():
    d = tempfile.mkdtemp(prefix="cove-shell-")
    with open(os.path.join(d, "wrapper.sh"), "w") as f:
        f.write(WRAPPER)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def wait_file(path, timeout=30):
    return wait_until(lambda: read(path), timeout, what=f"{path} was not written")


def stty_modes(tmux, name):
    tty = tmux.pane(name, "#{pane_tty}")
    return subprocess.run(["stty", "-a", "-F", tty], capture_output=True,
                          check=True).stdout.decode().split()


def output_lines(data):
    """Terminal output as lines, without escape sequences and carriage returns."""
    text = re.sub(r"\x1b\[[?0-9;]*[A-Za-z]", "", data.decode(errors="replace"))
    return re.split(r"\r\n|\r|\n", text)


def assert_cooked(stty_text):
    modes = stty_text.split()
    assert "icanon" in modes and "echo" in modes and "isig" in modes, stty_text


def attach(tmux, workdir, name, sid, session):
    """Starts `cove shell` in a new tmux session; returns when the remote shell answers."""
    out = os.path.join(workdir, name)
    os.mkdir(out)
    tmux.start(name, f"/bin/sh {workdir}/wrapper.sh {sid} {session} {out}")
    tmux.type(name, "echo ready-$((40+2))")
    tmux.wait_screen(name, r"(?m)^ready-42")
    return out


def cove_pid(tmux, name):
    """The pid of cove: the only child of the wrapper that runs in the pane."""
    wrapper = tmux.pane(name, "#{pane_pid}")
    with open(f"/proc/{wrapper}/task/{wrapper}/children") as f:
        children = f.read().split()
    assert len(children) == 1, children
    with open(f"/proc/{children[0]}/comm") as f:
        assert f.read().strip() == "cove"
    return int(children[0])


def test_interactive_size_resize_ctrl_c_and_exit_status(tmux, workdir, api, sb):
    out = attach(tmux, workdir, "main", sb, f"t-{secrets.token_hex(3)}")
    modes = stty_modes(tmux, "main")
    assert "-icanon" in modes and "-echo" in modes and "-isig" in modes, "not raw while attached"

    rows, cols = tmux.size("main")
    tmux.type("main", "echo size:$(stty size)")
    tmux.wait_screen("main", rf"(?m)^size:{rows} {cols}\s*$")

    tmux.run("resize-window", "-t", "main", "-x", "120", "-y", "40")
    wait_until(lambda: tmux.size("main") != (rows, cols), 10, what="tmux did not resize")
    rows, cols = tmux.size("main")
    assert cols == 120

    # SIGWINCH reaches cove asynchronously: ask again until the new size shows.
    def new_size_shown():
        if re.search(rf"(?m)^size2:{rows} {cols}\s*$", tmux.screen("main")):
            return True
        tmux.type("main", "echo size2:$(stty size)")
        return False

    wait_until(new_size_shown, 30, interval=2, what=lambda: tmux.screen("main"))

    # Ctrl-C is a byte for the sandbox: it stops `sleep` there, not cove here.
    sleeping = "pgrep -xf 'sleep 100' || true"
    tmux.type("main", "sleep 100")
    wait_until(lambda: api.sh(sb, sleeping).strip(), 20, what="sleep to start in the sandbox")
    tmux.run("send-keys", "-t", "main", "C-c")
    wait_until(lambda: not api.sh(sb, sleeping).strip(), 20, what="Ctrl-C to stop sleep in the sandbox")
    tmux.type("main", "echo after-$((1+1))")
    tmux.wait_screen("main", r"(?m)^after-2")
    assert read(os.path.join(out, "rc")) == ""

    tmux.type("main", "exit 7")
    assert wait_file(os.path.join(out, "rc")).strip() == "rc=7"
    assert_cooked(wait_file(os.path.join(out, "stty")))
    assert "cove:" not in tmux.screen("main")


def test_sigterm_restores_terminal_and_keeps_the_shell(tmux, workdir, sb, coved):
    session = f"k-{secrets.token_hex(3)}"
    out = attach(tmux, workdir, "victim", sb, session)
    tmux.type("victim", "export MARK=kept-$((3*3))")
    assert "-icanon" in stty_modes(tmux, "victim")
    os.kill(cove_pid(tmux, "victim"), signal.SIGTERM)
    assert wait_file(os.path.join(out, "rc")).strip() == "rc=143"
    assert_cooked(wait_file(os.path.join(out, "stty")))
    tmux.wait_screen("victim", r"cove: detached \(SIGTERM\)")

    # The shell went on running in its session: attaching again finds it.
    p = subprocess.run([COVE, "shell", sb, "--session", session], env=clean_env(coved),
                       input=b'echo "mark=$MARK"; exit 5\n', capture_output=True, timeout=60)
    assert p.returncode == 5, p.stderr.decode()
    assert "mark=kept-9" in output_lines(p.stdout), p.stdout


def test_piped_input(coved, sb):
    env = clean_env(coved)
    p = subprocess.run([COVE, "shell", sb, "--session", f"p-{secrets.token_hex(3)}"], env=env,
                       input=b"echo hi; exit 3\n", capture_output=True, timeout=60)
    assert p.returncode == 3, p.stderr.decode()
    assert "hi" in output_lines(p.stdout), p.stdout
    assert p.stderr == b""

    # Without an `exit`, the end of the input ends the shell (Ctrl-D), with
    # the status of its last command; an unterminated last line still runs.
    p = subprocess.run([COVE, "shell", sb, "--session", f"p-{secrets.token_hex(3)}"], env=env,
                       input=b"sleep 1; echo piped-$((2+3))\n(exit 4)", capture_output=True,
                       timeout=60)
    assert p.returncode == 4, p.stderr.decode()
    assert "piped-5" in output_lines(p.stdout), p.stdout


def test_errors(coved, sb):
    env = clean_env(coved)
    p = subprocess.run([COVE, "shell", "no-such-sandbox"], env=env, input=b"",
                       capture_output=True, timeout=60)
    assert p.returncode == 1
    assert p.stderr.decode() == \
        'cove: sandbox "no-such-sandbox" not found (SANDBOX_NOT_FOUND)\n'

    env["COVE_TOKEN"] = "wrong"
    p = subprocess.run([COVE, "shell", sb], env=env, input=b"", capture_output=True, timeout=60)
    assert p.returncode == 1
    lines = p.stderr.decode().splitlines()
    assert len(lines) == 1 and "(UNAUTHORIZED)" in lines[0], lines

    env = clean_env(coved)
    env["COVE_URL"] = "http://127.0.0.1:1"
    p = subprocess.run([COVE, "shell", sb], env=env, input=b"", capture_output=True, timeout=60)
    assert p.returncode == 1
    lines = p.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cove: cannot reach coved"), lines
