"""Drives an interpreter runner directly, as cove-agent does (docs/interpreter.md).

Runner(argv) starts a runner with its control socket on fd 3 and pipes on fds 1
and 2; Zygote(argv) starts a Python zygote and forks runners from it. Both hand
events back in the order the agent would forward them: output already in the
pipes comes before the control line that follows it.
"""
import array
import codecs
import json
import os
import selectors
import signal
import socket
import threading
import time

from helpers import pid_alive


class Execution:
    def __init__(self):
        self.events = []  # ("stdout"|"stderr", text) or a control message (dict)

    @property
    def stdout(self):
        return "".join(t for k, t in self._streams() if k == "stdout")

    @property
    def stderr(self):
        return "".join(t for k, t in self._streams() if k == "stderr")

    @property
    def results(self):
        return [e for e in self.events if isinstance(e, dict) and e["type"] == "result"]

    @property
    def errors(self):
        return [e for e in self.events if isinstance(e, dict) and e["type"] == "error"]

    @property
    def done(self):
        return next((e for e in self.events if isinstance(e, dict) and e["type"] == "done"), None)

    def _streams(self):
        return [e for e in self.events if isinstance(e, tuple)]


class SigintsOn:
    """An on_event callback: once `marker` shows on stdout, sends the runner a SIGINT
    after each of `gaps` (seconds) in turn, from a thread; join() waits for the last."""

    def __init__(self, runner, marker, gaps):
        self.runner, self.marker, self.gaps = runner, marker, gaps
        self.thread = None

    def __call__(self, ev):
        if self.thread is None and isinstance(ev, tuple) and ev[0] == "stdout" \
                and self.marker in ev[1]:
            self.thread = threading.Thread(target=self._send)
            self.thread.start()

    def _send(self):
        for gap in self.gaps:
            time.sleep(gap)  # the point: interrupts at these moments of the run
            self.runner.interrupt()

    def join(self):
        if self.thread is not None:
            self.thread.join()


class Runner:
    """One runner process. `pid` is its process group too (it runs setsid)."""

    def __init__(self, argv=None, env=None, *, attach=None, timeout=30):
        if attach is None:
            ctl, child_ctl = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            actions = [
                (os.POSIX_SPAWN_DUP2, child_ctl.fileno(), 3),
                (os.POSIX_SPAWN_DUP2, out_w, 1),
                (os.POSIX_SPAWN_DUP2, err_w, 2),
                (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
            ]
            self.pid = os.posix_spawn(argv[0], argv, env if env is not None else os.environ,
                                      file_actions=actions, setsid=True)
            child_ctl.close()
            os.close(out_w)
            os.close(err_w)
        else:
            self.pid, ctl, out_r, err_r = attach
        self.ctl = ctl
        self.out, self.err = out_r, err_r
        self.buf = b""
        self.eof = False
        self._run_over = threading.Event()  # set at each `done`
        self._decoders = {}  # fd -> incremental UTF-8 decoder (a read may split a character)
        self.ready = self._next_message(timeout)
        assert self.ready and self.ready["type"] == "ready", self.ready

    def send(self, msg):
        self.ctl.sendall(json.dumps(msg).encode() + b"\n")

    def init(self, cwd="/tmp", env=None, timeout=30):
        self.send({"type": "init", "cwd": cwd, "env": env if env is not None else dict(os.environ)})
        return self._next_message(timeout)

    def execute(self, code, language=None, *, timeout=60, on_event=None, exec_id=None):
        exec_id = exec_id or str(time.monotonic_ns())
        msg = {"type": "execute", "id": exec_id, "code": code}
        if language:
            msg["language"] = language
        self.send(msg)
        ex = Execution()
        deadline = time.monotonic() + timeout
        while True:
            for ev in self._events(deadline):
                ex.events.append(ev)
                if on_event:
                    on_event(ev)
                if isinstance(ev, dict) and ev.get("type") == "done":
                    self._run_over.set()
                    assert ev["id"] == exec_id, ev
                    return ex

    def interrupt(self):
        os.killpg(self.pid, signal.SIGINT)

    def interrupt_until_done(self, every=0.25):
        """SIGINT now and every `every` s until the running execution's `done`, as
        cove-agent does: CPython handles a signal that lands just before a blocking
        call only when the call returns."""
        self._run_over.clear()

        def repeat():
            while True:
                try:
                    self.interrupt()
                except ProcessLookupError:
                    return
                if self._run_over.wait(every):
                    return
        threading.Thread(target=repeat, daemon=True).start()

    def alive(self):
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        try:
            pid, _ = os.waitpid(self.pid, os.WNOHANG)
            return pid == 0
        except ChildProcessError:  # not our child (forked by a zygote, which reaps it)
            return pid_alive(self.pid)

    def close(self):
        try:
            self.ctl.close()
        finally:
            for fd in (self.out, self.err):
                try:
                    os.close(fd)
                except OSError:
                    pass
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass

    # -- internals --

    def _drain(self, fd, kind, into):
        decoder = self._decoders.setdefault(fd, codecs.getincrementaldecoder("utf-8")("replace"))
        os.set_blocking(fd, False)
        try:
            while True:
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    return
                text = decoder.decode(data, final=not data)
                if text:
                    into.append((kind, text))
                if not data:
                    return
        finally:
            os.set_blocking(fd, True)

    def _events(self, deadline):
        """Blocks until something arrives; returns the events it read, in order."""
        if b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            return [json.loads(line)]
        sel = selectors.DefaultSelector()
        sel.register(self.ctl, selectors.EVENT_READ, "ctl")
        for fd, kind in ((self.out, "stdout"), (self.err, "stderr")):
            sel.register(fd, selectors.EVENT_READ, kind)
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("runner did not answer in time")
                ready = sel.select(left)
                evs = []
                for key, _ in ready:
                    if key.data != "ctl":
                        self._drain(key.fd, key.data, evs)
                if any(key.data == "ctl" for key, _ in ready):
                    self._drain(self.out, "stdout", evs)
                    self._drain(self.err, "stderr", evs)
                    data = self.ctl.recv(1 << 20)
                    if not data:
                        self.eof = True
                        raise EOFError("runner closed its control socket")
                    self.buf += data
                    while b"\n" in self.buf:
                        line, self.buf = self.buf.split(b"\n", 1)
                        evs.append(json.loads(line))
                if evs:
                    return evs
        finally:
            sel.close()

    def _next_message(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            for ev in self._events(deadline):
                if isinstance(ev, dict):
                    return ev


class Zygote:
    """A Python zygote; fork() returns a Runner for a new context."""

    def __init__(self, argv, env=None, timeout=30):
        self.sock, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        actions = [(os.POSIX_SPAWN_DUP2, child.fileno(), 3),
                   (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0)]
        self.pid = os.posix_spawn(argv[0], argv, env if env is not None else os.environ,
                                  file_actions=actions, setsid=True)
        child.close()
        self.sock.settimeout(timeout)
        self.ready = json.loads(self.sock.recv(65536))
        assert self.ready["type"] == "ready", self.ready
        self.exits = {}  # pid -> wait status, from the zygote's `exited` messages

    def fork(self, timeout=30):
        ctl, child_ctl = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        fds = array.array("i", [child_ctl.fileno(), out_w, err_w])
        self.sock.sendmsg([b'{"type":"fork"}'], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
        child_ctl.close()
        os.close(out_w)
        os.close(err_w)
        reply = self.next_reply()
        assert reply["type"] == "forked", reply
        return Runner(attach=(reply["pid"], ctl, out_r, err_r), timeout=timeout)

    def next_reply(self):
        """The next answer to a request; `exited` reports on the way are kept in self.exits."""
        while True:
            msg = json.loads(self.sock.recv(65536))
            if msg.get("type") != "exited":
                return msg
            self.exits[msg["pid"]] = msg["status"]

    def close(self):
        self.sock.close()
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass
