"""Helpers of the end-to-end suite: start/stop the real coved, call its API,
parse SSE, and look for anything a sandbox left behind on the host."""

import inspect
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import time

import requests

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("COVE_BUILD_DIR", os.path.join(REPO, "build"))
COVED = os.path.join(BUILD, "bin", "coved")
COVE = os.path.join(BUILD, "bin", "cove")

MiB = 1 << 20
GiB = 1 << 30


def make_base_dir(prefix):
    """A fresh directory for a coved's state and log. Its parents must be
    traversable by the sandboxes' mapped ids (pytest's own tmp dirs are 0700)."""
    import tempfile
    d = tempfile.mkdtemp(prefix=prefix, dir=os.environ.get("COVE_TEST_TMP", "/tmp"))
    os.chmod(d, 0o711)
    return d


def unmount_under(path):
    """Lazily unmounts whatever is still mounted under path (after a leak was
    reported), so the machine is left clean; loop devices set to autoclear go too."""
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f if path in line.split()[4]]
    for p in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", p], capture_output=True)


def unique_id(prefix="e2e"):
    """A sandbox id no other run uses (so leak checks can search for it)."""
    return f"{prefix}-{secrets.token_hex(4)}"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path, lines=60):
    try:
        with open(path, "rb") as f:
            data = f.read()[-20000:]
        return "\n".join(data.decode(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Coved:
    """One real coved process on a free port with its own state dir.

    host: the address it listens on (loopback unless a test's own network
    namespace is used); prefix: a command that coved runs under (nsenter);
    args: more coved options."""

    def __init__(self, state_dir, log_path, port=None, host="127.0.0.1", prefix=(), args=()):
        self.state_dir = str(state_dir)
        self.log_path = str(log_path)
        self.host = host
        self.prefix = list(prefix)
        self.args = list(args)
        self.port = port or free_port()
        self.preview_port = free_port()  # the preview listener (--preview-listen)
        self.proc = None
        self.token = None
        self.starts = 0

    @property
    def url(self):
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def start(self, timeout=60):
        if not os.path.exists(COVED):
            raise RuntimeError(f"{COVED} does not exist: build it first (ninja -C build)")
        os.makedirs(self.state_dir, exist_ok=True)
        log = open(self.log_path, "ab")
        log.write(f"\n===== coved start #{self.starts + 1} on port {self.port} =====\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            self.prefix + [COVED, "--listen", f"{self.host}:{self.port}", "--state-dir", self.state_dir,
                           "--preview-listen", f"{self.host}:{self.preview_port}"] + self.args,
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("COVE_")})
        log.close()
        self.starts += 1
        token_file = os.path.join(self.state_dir, "api-token")

        def answering():
            if self.proc.poll() is not None:
                raise RuntimeError(f"coved exited with {self.proc.returncode} at start:\n"
                                   + tail(self.log_path))
            if not os.path.exists(token_file):
                return False
            with open(token_file) as f:
                self.token = f.read().strip()
            try:
                return requests.get(self.url + "/v1/sandboxes", timeout=5,
                                    headers={"Authorization": f"Bearer {self.token}"}).status_code == 200
            except requests.RequestException:
                return False

        try:
            wait_until(answering, timeout, interval=0.05, what="coved to answer GET /v1/sandboxes")
        except WaitTimeout as e:
            self.kill9()
            raise RuntimeError(f"coved did not answer within {timeout}s:\n{e}\n" + tail(self.log_path))

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Signals coved and waits for it; returns its exit status."""
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"coved did not exit within {timeout}s of signal {sig}")

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None


class ApiError(AssertionError):
    pass


class Api:
    """A thin client over requests; records every sandbox id it has seen."""

    def __init__(self, coved):
        self.coved = coved
        self.http = requests.Session()
        self.seen_ids = set()
        self.seen_pids = set()

    @property
    def headers(self):
        return {"Authorization": f"Bearer {self.coved.token}"}

    def url(self, path):
        return self.coved.url + path

    def request(self, method, path, *, json_body=None, data=None, headers=None, auth=True,
                timeout=120, stream=False):
        h = dict(self.headers) if auth else {}
        if headers:
            h.update(headers)
        r = self.http.request(method, self.url(path), json=json_body, data=data, headers=h,
                              timeout=timeout, stream=stream)
        if not stream:
            self._remember(r)
        return r

    def _remember(self, r):
        try:
            body = r.json()
        except ValueError:
            return
        items = []
        if isinstance(body, dict):
            items = body.get("sandboxes", [body]) if "sandboxes" in body else [body]
        for s in items:
            if isinstance(s, dict) and isinstance(s.get("id"), str) and "state" in s:
                self.seen_ids.add(s["id"])
                if isinstance(s.get("pid"), int) and s["pid"] > 0:
                    self.seen_pids.add(s["pid"])

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, json_body=body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    # -- lifecycle
    def create(self, expect=201, **fields):
        if "id" in fields:
            self.seen_ids.add(fields["id"])
        r = self.post("/v1/sandboxes", fields)
        if expect is not None and r.status_code != expect:
            raise ApiError(f"create {fields}: {r.status_code} {r.text}")
        return r.json()

    def info(self, sid):
        r = self.get(f"/v1/sandboxes/{sid}")
        if r.status_code != 200:
            raise ApiError(f"info {sid}: {r.status_code} {r.text}")
        return r.json()

    def destroy(self, sid):
        r = self.delete(f"/v1/sandboxes/{sid}")
        if r.status_code != 200:
            raise ApiError(f"delete {sid}: {r.status_code} {r.text}")
        return r.json()

    def list_ids(self):
        r = self.get("/v1/sandboxes")
        assert r.status_code == 200, r.text
        return [s["id"] for s in r.json()["sandboxes"]]

    # -- compatible API
    def call(self, sid, route, body=None, expect=200, method="POST", timeout=120):
        path = f"/v1/sandboxes/{sid}/api/{route}"
        if method == "GET":
            r = self.get(path, timeout=timeout)
        else:
            r = self.request(method, path, json_body=body, timeout=timeout)
        if expect is not None and r.status_code != expect:
            raise ApiError(f"{route} {body}: expected {expect}, got {r.status_code} {r.text}")
        return r.json() if r.headers.get("content-type", "").startswith("application/json") \
            else r

    def exec(self, sid, command, session=None, expect=200, timeout=120, **extra):
        body = {"command": command}
        if session is not None:
            body["sessionId"] = session
        body.update(extra)
        return self.call(sid, "execute", body, expect=expect, timeout=timeout)

    def sh(self, sid, command, **kw):
        """Runs command sessionless; asserts exit 0; returns stdout."""
        r = self.exec(sid, command, session="__DISABLE_SESSION__", **kw)
        assert r["exitCode"] == 0, f"{command!r} -> {r}"
        return r["stdout"]

    def stream(self, sid, route, body, timeout=120):
        """POSTs to an SSE route; returns the list of (parsed JSON) events."""
        r = self.request("POST", f"/v1/sandboxes/{sid}/api/{route}", json_body=body,
                         stream=True, timeout=timeout)
        if r.status_code != 200:
            text = r.text
            raise ApiError(f"{route} {body}: {r.status_code} {text}")
        assert r.headers["content-type"].startswith("text/event-stream"), r.headers
        return [json.loads(e["data"]) for e in sse_events(r)]

    def alive(self, sid=None, timeout=30):
        """coved answers, and (when sid is given) so does that sandbox."""
        r = self.get("/v1/sandboxes", timeout=timeout)
        assert r.status_code == 200, f"coved does not answer: {r.status_code} {r.text}"
        if sid:
            out = self.exec(sid, "echo alive", session="__DISABLE_SESSION__", timeout=timeout)
            assert out["exitCode"] == 0 and out["stdout"] == "alive\n", out


def sse_events(response):
    """Parses a streaming requests response as SSE; yields {event, data} dicts."""
    buf = b""
    for chunk in response.iter_content(chunk_size=None):
        buf += chunk
        buf = buf.replace(b"\r\n", b"\n")
        while b"\n\n" in buf:
            block, buf = buf.split(b"\n\n", 1)
            ev = {"event": "", "data": None}
            lines = []
            for line in block.decode().split("\n"):
                if line.startswith(":"):
                    continue
                field, _, value = line.partition(":")
                if value.startswith(" "):
                    value = value[1:]
                if field == "data":
                    lines.append(value)
                elif field == "event":
                    ev["event"] = value
            if lines:
                ev["data"] = "\n".join(lines)
                yield ev


def assert_error(r, status, code=None):
    """r is an error answer in the common envelope."""
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text[:500]}"
    body = r.json()
    assert isinstance(body.get("message"), str) and body["message"], body
    assert body.get("httpStatus") == status, body
    assert isinstance(body.get("timestamp"), str), body
    if code:
        assert body.get("code") == code, body
    return body


# ---------------------------------------------------------------- host-side checks

def mounts_mentioning(text):
    with open("/proc/self/mountinfo") as f:
        return [line.strip() for line in f if text in line]


def cgroup_dirs_matching(ids):
    """Directories under /sys/fs/cgroup whose name contains one of ids."""
    found = []
    if not ids:
        return found
    pattern = re.compile("|".join(re.escape(i) for i in ids))
    for root, dirs, _ in os.walk("/sys/fs/cgroup"):
        for d in dirs:
            if pattern.search(d):
                found.append(os.path.join(root, d))
    return found


def processes_matching(ids, text):
    """Host pids whose cgroup path names one of ids, or whose command line contains text."""
    found = []
    pattern = re.compile("|".join(re.escape(i) for i in ids)) if ids else None
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{p}/cgroup") as f:
                cg = f.read()
        except OSError:
            continue
        if text and text in cmd:
            found.append((int(p), cmd))
        elif pattern and pattern.search(cg):
            found.append((int(p), cmd))
    return found


def proc_stat(pid):
    """The fields of /proc/PID/stat after the command name, which may hold spaces
    and ')': [state, ppid, ...] (field N of proc(5) at index N - 3). OSError once
    the process is gone."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def pid_alive(pid):
    try:
        return proc_stat(pid)[0] != "Z"
    except OSError:
        return False


def leaks(state_dir, ids, pids):
    """Everything a stopped coved left behind; [] when clean."""
    problems = [f"mount left: {m}" for m in mounts_mentioning(state_dir)]
    problems += [f"process left: {pid} {cmd}" for pid, cmd in processes_matching([], state_dir)]
    return problems + leaks_of(ids, pids)


def leaks_of(ids, pids):
    """What is left of the sandboxes ids (with host pids) that were deleted or died."""
    problems = []
    for i in ids:
        for m in mounts_mentioning("/" + i):
            problems.append(f"mount left: {m}")
    for d in cgroup_dirs_matching(ids):
        problems.append(f"cgroup left: {d}")
    for pid, cmd in processes_matching(ids, None):
        problems.append(f"process left: {pid} {cmd}")
    for pid in pids:
        if pid_alive(pid):
            problems.append(f"sandbox pid {pid} still alive")
    return problems


class WaitTimeout(AssertionError):
    """wait_until gave up: the condition it waited for did not come in time."""


def wait_until(predicate, timeout=20, interval=0.1, what=None):
    """Calls predicate() every `interval` seconds until it returns something true,
    and returns that. After `timeout` seconds raises WaitTimeout naming what was
    awaited (the predicate's source), its last value and `what`: a note, or a
    callable giving one at that moment (such as the state found then).
    Timeouts are generous: the suite must pass on a loaded machine."""
    deadline = time.monotonic() + timeout
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    note = what() if callable(what) else what
    raise WaitTimeout(f"gave up after {timeout} s waiting for: {_source(predicate)}\n"
                      f"  last value: {last!r}" + (f"\n  {note}" if note is not None else ""))


def _source(fn):
    try:
        return " ".join(line.strip() for line in inspect.getsource(fn).splitlines())
    except (OSError, TypeError):
        return repr(fn)


def host_uids(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                return [int(x) for x in line.split()[1:]]
    return None


def comm(pid):
    """The command name of host pid ("" once it is gone)."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def descendants(pid):
    """pid and all its descendants on the host."""
    children = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            ppid = int(proc_stat(p)[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(p))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cgroup_limit(pid, controller):
    """The host-side limit of controller ("memory", "pids", "cpu") applying to pid,
    read from its cgroup (v1 hierarchy or v2 unified); None if not found."""
    with open(f"/proc/{pid}/cgroup") as f:
        lines = [line.strip().split(":", 2) for line in f if line.strip()]
    v1 = {"memory": ("memory", "memory.limit_in_bytes"), "pids": ("pids", "pids.max"),
          "cpu": ("cpu", "cpu.cfs_quota_us")}
    v2 = {"memory": "memory.max", "pids": "pids.max", "cpu": "cpu.max"}
    for hid, ctrls, path in lines:
        names = ctrls.split(",")
        sub, fname = v1[controller]
        if sub in names:
            for mount in (f"/sys/fs/cgroup/{ctrls}", f"/sys/fs/cgroup/{sub}"):
                p = os.path.join(mount + path, fname)
                if os.path.exists(p):
                    with open(p) as f:
                        val = f.read().strip()
                    if controller == "cpu":
                        with open(os.path.join(mount + path, "cpu.cfs_period_us")) as f:
                            return val + " " + f.read().strip()
                    return val
    for hid, ctrls, path in lines:
        if hid == "0":
            for mount in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
                p = os.path.join(mount + path, v2[controller])
                if os.path.exists(p):
                    with open(p) as f:
                        return f.read().strip()
    return None


def rss(pid):
    """The resident memory of host process pid, in bytes."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def memory_of(pid):
    """(usage, limit, OOM kills so far) of the memory cgroup of host process pid (v1 or v2)."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            lines = [line.strip().split(":", 2) for line in f if line.strip()]
    except OSError:
        return 0, 1, 0

    def read(path):
        with open(path) as f:
            return f.read()

    for _, ctrls, path in lines:
        v1 = f"/sys/fs/cgroup/memory{path}"
        if "memory" in ctrls.split(",") and os.path.exists(v1):
            kills = [int(l.split()[1]) for l in read(f"{v1}/memory.oom_control").splitlines() if l.startswith("oom_kill ")]
            return (int(read(f"{v1}/memory.usage_in_bytes")), int(read(f"{v1}/memory.limit_in_bytes")),
                    kills[0] if kills else 0)
        v2 = f"/sys/fs/cgroup{path}"
        if ctrls == "" and os.path.exists(f"{v2}/memory.max"):
            kills = [int(l.split()[1]) for l in read(f"{v2}/memory.events").splitlines() if l.startswith("oom_kill ")]
            return int(read(f"{v2}/memory.current")), int(read(f"{v2}/memory.max")), kills[0] if kills else 0
    return 0, 1, 0


def thrash_memory(api, sid, pid):
    """Makes sandbox sid (pid 1: pid) thrash at its memory limit: hogs of 45 MiB
    that keep touching their memory, and `head -c 1G /dev/zero | tail` in a loop
    (tail keeps everything, as /dev/zero has no newline, until the OOM killer
    ends it). Returns once the sandbox is at its limit (reclaiming or OOM-killing)."""
    hog = ("python3 -c 'b = bytearray(45 << 20)\n"
           "while True:\n"
           "    for i in range(0, len(b), 4096): b[i] = (b[i] + 1) & 255'")
    r = api.exec(sid, f"for i in 1 2 3 4; do nohup {hog} >/dev/null 2>&1 & done; "
                      "nohup sh -c 'while :; do head -c 1G /dev/zero | tail; done' >/dev/null 2>&1 & "
                      "echo started", session="__DISABLE_SESSION__", timeout=120)
    assert r["stdout"] == "started\n", r

    def at_limit():
        usage, limit, kills = memory_of(pid)
        return usage >= limit * 0.9 or kills > 0
    wait_until(at_limit, 240, interval=0.5, what=lambda: f"no memory pressure: {memory_of(pid)}")


def benchmark_coved(binary, name):
    """Starts `binary` (this build's coved, or a baseline build to compare with)
    in a fresh state directory, for the benchmarks under bench/: (coved, api)."""
    global COVED
    COVED = binary
    base = make_base_dir(f"cove-{name}-bench-")
    coved = Coved(os.path.join(base, "state"), os.path.join(base, "coved.log"))
    coved.start()
    return coved, Api(coved)
