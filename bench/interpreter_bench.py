#!/usr/bin/python3
"""interpreter_bench: what the code interpreter (/api/contexts, /api/execute/code;
docs/interpreter.md) costs, against baselines measured on the host in the same run.

  new context ready     POST /api/contexts until its reply (python: forked from the
                        sandbox's warm zygote; javascript/typescript: the warm Node spare,
                        back-to-back and spaced so the spare can refill)
  first context         the first context of a fresh sandbox (zygote / node cold start)
  1+1 round trip        POST /api/execute/code until execution_complete, existing context
  memory, idle CPU      PSS/RSS of a sandbox's zygote + idle Python contexts and of Node
                        contexts (host /proc), their CPU time over a few idle seconds
  baselines             the runners started directly on the host (tests/e2e/runner_driver.py)
                        until initialized, a host zygote fork, python3 -c pass, node -e 0,
                        the runners' own 1+1 round trip, and a Debian Jupyter kernel
                        (jupyter_client + ipykernel: start to first answer, 1+1 round trip)

The API is measured in two sandboxes: the default type (basic, cpuMillis 250 = 1/4 CPU)
and one created with limits.cpuMillis 1000 (a full CPU). It starts its own coved
(temporary state dir, free port, --network none) and talks to it over one kept-alive
HTTP connection. Needs root, build/bin/coved, python3 and node; Debian's python:

  /usr/bin/python3 bench/interpreter_bench.py [--n-create 100] [--n-rt 200] [--cold 5]
      [--idle-contexts 10] [--spacing-ms 300] [--cpu 250,1000] [--no-jupyter]
"""

import argparse
import http.client
import json
import math
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))
from helpers import Coved, descendants, make_base_dir  # noqa: E402
from runner_driver import Runner, Zygote  # noqa: E402

PY_RUNNER = os.path.join(REPO, "interpreter", "python_runner.py")
NODE_RUNNER = os.path.join(REPO, "interpreter", "node_runner.js")
PYTHON = "/usr/bin/python3"
NODE = "/usr/bin/node"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def now_ms():
    return time.perf_counter() * 1000.0


def pct(values, p):
    v = sorted(values)
    return v[max(0, min(len(v) - 1, math.ceil(p / 100.0 * len(v)) - 1))]


def fmt(values):
    if not values:
        return "-"
    return f"{pct(values, 50):.2f} / {pct(values, 99):.2f}"


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- API client

class Client:
    """One kept-alive HTTP/1.1 connection to coved (http.client: little client overhead)."""

    def __init__(self, coved):
        self.host, self.port = coved.host, coved.port
        self.headers = {"Authorization": f"Bearer {coved.token}", "Content-Type": "application/json"}
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
        self.reconnects = 0

    def request(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        for attempt in (0, 1):
            try:
                self.conn.request(method, path, body=data, headers=self.headers)
                r = self.conn.getresponse()
                payload = r.read()  # SSE: until the stream ends (after execution_complete)
                if r.will_close:
                    self.reconnects += 1
                return r.status, payload
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                if attempt:
                    raise
                self.conn.close()
                self.reconnects += 1

    def ok(self, method, path, body=None, expect=(200, 201)):
        status, payload = self.request(method, path, body)
        if status not in expect:
            raise RuntimeError(f"{method} {path} {body}: {status} {payload[:500]!r}")
        return payload

    # -- sandboxes and contexts
    def create_sandbox(self, sid, cpu_millis=None):
        body = {"id": sid}
        if cpu_millis is not None:
            body["limits"] = {"cpuMillis": cpu_millis}
        return json.loads(self.ok("POST", "/v1/sandboxes", body))

    def delete_sandbox(self, sid):
        self.ok("DELETE", f"/v1/sandboxes/{sid}")

    def create_context(self, sid, language):
        return json.loads(self.ok("POST", f"/v1/sandboxes/{sid}/api/contexts", {"language": language}))["contextId"]

    def delete_context(self, sid, ctx):
        self.ok("DELETE", f"/v1/sandboxes/{sid}/api/contexts/{ctx}")

    def contexts(self, sid):
        return json.loads(self.ok("GET", f"/v1/sandboxes/{sid}/api/contexts"))["contexts"]

    def run(self, sid, ctx, code):
        payload = self.ok("POST", f"/v1/sandboxes/{sid}/api/execute/code", {"context_id": ctx, "code": code})
        events = [json.loads(line[6:]) for line in payload.decode().split("\n") if line.startswith("data: ")]
        if not events or events[-1].get("type") != "execution_complete":
            raise RuntimeError(f"run {code!r}: no execution_complete: {payload[:500]!r}")
        return events


# ---------------------------------------------------------------- /proc

def proc_cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def proc_ns_pid(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    return pid


def proc_mem_kib(pid):
    """(PSS, RSS, private) in KiB from smaps_rollup."""
    pss = rss = priv = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
            elif line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith(("Private_Clean:", "Private_Dirty:")):
                priv += int(line.split()[1])
    return pss, rss, priv


def cpu_throttled(pid):
    """nr_throttled of the CPU cgroup of pid (v1 cpu controller or v2), or None."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            lines = [line.strip().split(":", 2) for line in f]
    except OSError:
        return None
    for _, ctrl, path in lines:
        if "cpu" in ctrl.split(","):
            candidates = [f"/sys/fs/cgroup/{ctrl}{path}", f"/sys/fs/cgroup/cpu{path}"]
            break
    else:
        candidates = [f"/sys/fs/cgroup{p}" for _, c, p in lines if c == ""]
    for d in candidates:
        try:
            with open(os.path.join(d, "cpu.stat")) as f:
                for line in f:
                    if line.startswith("nr_throttled"):
                        return int(line.split()[1])
        except OSError:
            continue
    return None


def proc_cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def runner_processes(sandbox_pid, client, sid):
    """Host pids of the sandbox's runners: {'zygote', 'python', 'python_spare', 'node', 'node_spare': [..]}."""
    ctx_ns_pids = {c.get("pid"): c["language"] for c in client.contexts(sid) if c.get("pid")}
    out = {"zygote": [], "python": [], "python_spare": [], "node": [], "node_spare": []}
    for pid in descendants(sandbox_pid):
        cmd = proc_cmdline(pid)
        ns = proc_ns_pid(pid) if cmd else None
        if "python_runner.py" in cmd:
            if ns in ctx_ns_pids:
                out["python"].append(pid)
            else:  # the zygote, or the spare it forked (same command line)
                with open(f"/proc/{pid}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                out["python_spare" if "python_runner.py" in proc_cmdline(ppid) else "zygote"].append(pid)
        elif "node_runner.js" in cmd:
            out["node" if ns in ctx_ns_pids else "node_spare"].append(pid)
    return out


# ---------------------------------------------------------------- host baselines

def time_cmd(argv, n):
    out = []
    for _ in range(n):
        t0 = now_ms()
        subprocess.run(argv, check=True, stdin=subprocess.DEVNULL)
        out.append(now_ms() - t0)
    return out


def runner_start(argv, n):
    """Spawn to 'initialized' (what the agent waits for before a context is ready)."""
    out, mem = [], []
    for _ in range(n):
        t0 = now_ms()
        r = Runner(argv)
        m = r.init("/tmp", dict(os.environ))
        out.append(now_ms() - t0)
        assert m["type"] == "initialized", m
        mem.append(proc_mem_kib(r.pid))
        r.close()
    return out, mem


def runner_round_trips(argv, n, code="1+1", language=None):
    r = Runner(argv)
    r.init("/tmp", dict(os.environ))
    out = []
    try:
        for i in range(n + 5):
            t0 = now_ms()
            ex = r.execute(code, language)
            dt = now_ms() - t0
            assert ex.results and ex.results[0].get("text") == "2", ex.events
            if i >= 5:
                out.append(dt)
    finally:
        r.close()
    return out


def zygote_cold(n):
    """A zygote started on the host until its first forked runner is initialized
    (what the first Python context of a sandbox waits for)."""
    out = []
    for _ in range(n):
        t0 = now_ms()
        z = Zygote([PYTHON, PY_RUNNER, "--zygote"])
        r = z.fork()
        m = r.init("/tmp", dict(os.environ))
        out.append(now_ms() - t0)
        assert m["type"] == "initialized", m
        r.close()
        z.close()
    return out


def zygote_forks(n):
    z = Zygote([PYTHON, PY_RUNNER, "--zygote"])
    out = []
    try:
        for _ in range(n):
            t0 = now_ms()
            r = z.fork()
            m = r.init("/tmp", dict(os.environ))
            out.append(now_ms() - t0)
            assert m["type"] == "initialized", m
            r.close()
    finally:
        z.close()
    return out


def jupyter(n):
    """(start-to-first-answer ms list, 1+1 round trips, kernel (PSS, RSS) KiB) or a reason string."""
    try:
        os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # ipykernel's debugpy warning
        from jupyter_client import KernelManager
    except Exception as e:  # noqa: BLE001
        return f"jupyter_client cannot be imported: {e}"
    starts, rts, mem = [], [], None
    try:
        for rep in range(3):
            t0 = now_ms()
            km = KernelManager(kernel_name="python3")
            km.start_kernel(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            kc = km.client()
            kc.start_channels()
            try:
                kc.wait_for_ready(timeout=60)
                reply = kc.execute_interactive("1+1", timeout=60, output_hook=lambda m: None)
                starts.append(now_ms() - t0)
                assert reply["content"]["status"] == "ok", reply
                if rep == 0:
                    results = []

                    def hook(msg):
                        if msg["msg_type"] == "execute_result":
                            results.append(msg["content"]["data"]["text/plain"])
                    for i in range(n + 5):
                        t1 = now_ms()
                        kc.execute_interactive("1+1", timeout=60, output_hook=hook)
                        if i >= 5:
                            rts.append(now_ms() - t1)
                    assert results and all(r == "2" for r in results), results[:3]
                    time.sleep(1)
                    mem = proc_mem_kib(km.provisioner.process.pid)
            finally:
                kc.stop_channels()
                km.shutdown_kernel(now=True)
    except Exception as e:  # noqa: BLE001
        return f"Jupyter kernel failed: {type(e).__name__}: {e}"
    return starts, rts, mem


# ---------------------------------------------------------------- API measurements

def creates(client, sid, language, n, spacing_ms=0):
    out = []
    for _ in range(n):
        if spacing_ms:
            time.sleep(spacing_ms / 1000.0)
        t0 = now_ms()
        ctx = client.create_context(sid, language)
        out.append(now_ms() - t0)
        client.delete_context(sid, ctx)  # not timed
    return out


def first_runs(client, sid, language, n, spacing_ms=0):
    """Create a context (not timed), then time its first `1+1`."""
    out = []
    for _ in range(n):
        if spacing_ms:
            time.sleep(spacing_ms / 1000.0)
        ctx = client.create_context(sid, language)
        t0 = now_ms()
        client.run(sid, ctx, "1+1")
        out.append(now_ms() - t0)
        client.delete_context(sid, ctx)
    return out


def api_round_trips(client, sid, ctx, n):
    out = []
    for i in range(n + 5):
        t0 = now_ms()
        events = client.run(sid, ctx, "1+1")
        dt = now_ms() - t0
        res = [e for e in events if e.get("type") == "result"]
        assert res and res[0].get("text") == "2", events
        if i >= 5:
            out.append(dt)
    return out


def first_contexts(client, cpu, language, reps, tag):
    out = []
    for i in range(reps):
        sid = f"ib-{tag}-cold-{language[:2]}-{i}"
        client.create_sandbox(sid, cpu)
        try:
            time.sleep(0.2)  # let the fresh sandbox settle (not timed)
            t0 = now_ms()
            client.create_context(sid, language)
            out.append(now_ms() - t0)
        finally:
            client.delete_sandbox(sid)
    return out


def memory_and_idle(client, sid, sandbox_pid, k, idle_s):
    for c in client.contexts(sid):
        client.delete_context(sid, c["id"])
    time.sleep(0.5)
    py = [client.create_context(sid, "python") for _ in range(k)]
    js = client.create_context(sid, "javascript")
    for ctx in py + [js]:
        client.run(sid, ctx, "1+1")
    time.sleep(3)  # the new Node spare finishes starting, the contexts settle
    procs = runner_processes(sandbox_pid, client, sid)
    mem = {kind: [proc_mem_kib(p) for p in pids] for kind, pids in procs.items()}
    all_pids = [p for pids in procs.values() for p in pids]
    t0 = {p: proc_cpu_ticks(p) for p in all_pids + [sandbox_pid]}
    time.sleep(idle_s)
    cpu = {p: proc_cpu_ticks(p) - t0[p] for p in t0}
    idle_runner_ms = sum(cpu[p] for p in all_pids) * 1000.0 / CLK_TCK
    idle_agent_ms = cpu[sandbox_pid] * 1000.0 / CLK_TCK
    for ctx in py + [js]:
        client.delete_context(sid, ctx)
    return {"procs": {k2: len(v) for k2, v in procs.items()}, "mem": mem,
            "idle_runner_ms": idle_runner_ms, "idle_agent_ms": idle_agent_ms}


def measure_sandbox(client, cpu, args, tag):
    res = {}
    sid = f"ib-{tag}"
    info = client.create_sandbox(sid, cpu)
    res["limits"] = info["limits"]
    sandbox_pid = info["pid"]
    try:
        log(f"[{tag}] warm up: first python and javascript contexts")
        for lang in ("python", "javascript"):
            ctx = client.create_context(sid, lang)
            client.run(sid, ctx, "1+1")
            client.delete_context(sid, ctx)
        time.sleep(1.5)
        log(f"[{tag}] new python contexts x{args.n_create}")
        res["new_python"] = creates(client, sid, "python", args.n_create)
        for lang in ("javascript", "typescript"):
            time.sleep(2)
            log(f"[{tag}] new {lang} contexts back-to-back x{args.n_create}")
            res[f"new_{lang}_b2b"] = creates(client, sid, lang, args.n_create)
            time.sleep(2)
            log(f"[{tag}] new {lang} contexts spaced {args.spacing_ms} ms x{args.n_create}")
            res[f"new_{lang}_spaced"] = creates(client, sid, lang, args.n_create, args.spacing_ms)
            if args.n_long:
                log(f"[{tag}] new {lang} contexts spaced {args.long_spacing_ms} ms x{args.n_long}")
                res[f"new_{lang}_long"] = creates(client, sid, lang, args.n_long, args.long_spacing_ms)
        log(f"[{tag}] first 1+1 in new python / javascript contexts x{args.n_first}")
        res["first_run_python"] = first_runs(client, sid, "python", args.n_first)
        res["first_run_javascript"] = first_runs(client, sid, "javascript", args.n_first, args.long_spacing_ms)
        for lang in ("python", "javascript", "typescript"):
            log(f"[{tag}] {lang} 1+1 round trips x{args.n_rt}")
            ctx = client.create_context(sid, lang)
            th0 = cpu_throttled(sandbox_pid)
            res[f"rt_{lang}"] = api_round_trips(client, sid, ctx, args.n_rt)
            th1 = cpu_throttled(sandbox_pid)
            res[f"throttled_{lang}"] = None if th0 is None or th1 is None else th1 - th0
            client.delete_context(sid, ctx)
        time.sleep(1.5)
        log(f"[{tag}] memory of the zygote + {args.idle_contexts} python contexts + 1 node context, "
            f"CPU over {args.idle_seconds} s idle")
        res["idle"] = memory_and_idle(client, sid, sandbox_pid, args.idle_contexts, args.idle_seconds)
    finally:
        client.delete_sandbox(sid)
    for lang in ("python", "javascript", "typescript"):
        log(f"[{tag}] first {lang} context in a fresh sandbox x{args.cold}")
        res[f"first_{lang}"] = first_contexts(client, cpu, lang, args.cold, tag)
    return res


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-create", type=int, default=100)
    ap.add_argument("--n-rt", type=int, default=200)
    ap.add_argument("--cold", type=int, default=5, help="fresh sandboxes per language for the first context")
    ap.add_argument("--idle-contexts", type=int, default=10)
    ap.add_argument("--idle-seconds", type=float, default=5)
    ap.add_argument("--spacing-ms", type=int, default=300)
    ap.add_argument("--long-spacing-ms", type=int, default=2000)
    ap.add_argument("--n-long", type=int, default=20, help="creates at --long-spacing-ms (0: skip)")
    ap.add_argument("--n-first", type=int, default=10, help="new contexts whose first `1+1` is timed")
    ap.add_argument("--cpu", default="250,1000", help="cpuMillis of the benchmark sandboxes (250 = the default type)")
    ap.add_argument("--no-jupyter", action="store_true")
    args = ap.parse_args()
    cpus = [int(x) for x in args.cpu.split(",") if x]

    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    log("host baselines")
    base = {}
    base["py_pass"] = time_cmd([PYTHON, "-c", "pass"], 20)
    base["node_0"] = time_cmd([NODE, "-e", "0"], 20)
    base["py_runner"], base["py_runner_mem"] = runner_start([PYTHON, PY_RUNNER], 5)
    base["node_runner"], base["node_runner_mem"] = runner_start([NODE, NODE_RUNNER], 10)
    base["zygote_fork"] = zygote_forks(args.n_create)
    base["zygote_cold"] = zygote_cold(5)
    base["rt_python"] = runner_round_trips([PYTHON, PY_RUNNER], args.n_rt)
    base["rt_javascript"] = runner_round_trips([NODE, NODE_RUNNER], args.n_rt)
    base["rt_typescript"] = runner_round_trips([NODE, NODE_RUNNER], args.n_rt, language="typescript")
    if args.no_jupyter:
        base["jupyter"] = "skipped (--no-jupyter)"
    else:
        log("jupyter kernel")
        base["jupyter"] = jupyter(args.n_rt)

    tmp = make_base_dir("cove-interpreter-bench-")
    c = Coved(os.path.join(tmp, "state"), os.path.join(tmp, "coved.log"), args=["--network", "none"])
    c.start()
    client = Client(c)
    results = {}
    try:
        for cpu in cpus:
            results[cpu] = measure_sandbox(client, None if cpu == 250 else cpu, args, f"cpu{cpu}")
    finally:
        try:
            for s in json.loads(client.ok("GET", "/v1/sandboxes"))["sandboxes"]:
                client.delete_sandbox(s["id"])
        finally:
            c.stop()
    log(f"coved log: {c.log_path}; reconnects: {client.reconnects}")
    report(started, args, cpus, base, results)


def report(started, args, cpus, base, results):
    jup = base["jupyter"]
    jup_ok = not isinstance(jup, str)
    load = open("/proc/loadavg").read().split()[:3]
    print(f"\nRun of {started}, load average {' '.join(load)} at the end; "
          f"cove columns: sandbox cpuMillis {' / '.join(map(str, cpus))}\n")
    cove_hdr = " | ".join(f"cove cpu {c} p50 / p99 ms" for c in cpus)
    print(f"| measure | n | {cove_hdr} | baseline (host) | baseline p50 / p99 ms |")
    print("|---|---|" + "---|" * len(cpus) + "---|---|")

    def row(what, key, base_name="", base_vals=None):
        vals = [results[c].get(key, []) if key else [] for c in cpus]
        n = max((len(v) for v in vals), default=0)
        cells = " | ".join(fmt(v) if key else "" for v in vals)
        print(f"| {what} | {n if key else ''} | {cells} | {base_name} | {fmt(base_vals) if base_vals else ''} |")

    row("new python context (zygote fork), back-to-back", "new_python", "zygote fork + init (runner_driver)", base["zygote_fork"])
    row("new javascript context, back-to-back", "new_javascript_b2b", "node node_runner.js to initialized",
        base["node_runner"])
    row(f"new javascript context, {args.spacing_ms} ms apart", "new_javascript_spaced", "node -e 0", base["node_0"])
    if args.n_long:
        row(f"new javascript context, {args.long_spacing_ms} ms apart", "new_javascript_long")
    row("new typescript context, back-to-back", "new_typescript_b2b")
    row(f"new typescript context, {args.spacing_ms} ms apart", "new_typescript_spaced")
    if args.n_long:
        row(f"new typescript context, {args.long_spacing_ms} ms apart", "new_typescript_long")
    row("first python context, fresh sandbox", "first_python", "zygote start + first fork to initialized",
        base["zygote_cold"])
    row("", None, "python3 python_runner.py (no zygote) to initialized", base["py_runner"])
    row("first javascript context, fresh sandbox", "first_javascript", "python3 -c pass", base["py_pass"])
    row("first typescript context, fresh sandbox", "first_typescript",
        "Jupyter python3 kernel: start to first answer" if jup_ok else "", jup[0] if jup_ok else None)
    row("`1+1` python, existing context", "rt_python", "python_runner.py direct (runner protocol)", base["rt_python"])
    row("`1+1` javascript, existing context", "rt_javascript", "node_runner.js direct", base["rt_javascript"])
    row("`1+1` typescript, existing context", "rt_typescript", "node_runner.js direct (typescript)",
        base["rt_typescript"])
    row("first `1+1` in a new python context", "first_run_python")
    row("first `1+1` in a new javascript context", "first_run_javascript")
    if jup_ok:
        row("`1+1` python, existing context", "rt_python", "Jupyter python3 kernel (execute_interactive)", jup[1])
    else:
        print(f"\nJupyter baseline: {jup}")
    print("\nCPU-throttled periods of the sandbox's cgroup during the round trips (python / javascript / "
          "typescript): " + "; ".join(f"cpu {c}: " + " / ".join(str(results[c].get(f"throttled_{l}"))
                                                              for l in ("python", "javascript", "typescript"))
                                      for c in cpus))

    print("\n| memory and idle CPU | " + " | ".join(f"cpu {c}" for c in cpus) + " |")
    print("|---|" + "---|" * len(cpus))

    def mrow(what, fn):
        print(f"| {what} | " + " | ".join(fn(results[c]["idle"]) for c in cpus) + " |")

    def mib(kib):
        return f"{kib / 1024:.1f}"
    k = args.idle_contexts
    mrow("processes found (zygote / python ctx / python spare / node ctx / node spare)",
         lambda r: " / ".join(str(r["procs"][x]) for x in ("zygote", "python", "python_spare", "node", "node_spare")))
    mrow("zygote PSS / RSS MiB", lambda r: " / ".join(mib(sum(m[i] for m in r["mem"]["zygote"])) for i in (0, 1)))
    mrow("python spare PSS / RSS MiB",
         lambda r: " / ".join(mib(sum(m[i] for m in r["mem"]["python_spare"])) for i in (0, 1)))
    mrow("per idle python context PSS / RSS MiB (mean)",
         lambda r: " / ".join(mib(sum(m[i] for m in r["mem"]["python"]) / max(1, len(r["mem"]["python"])))
                              for i in (0, 1)))
    mrow(f"zygote + {k} python contexts PSS / RSS-sum MiB",
         lambda r: " / ".join(mib(sum(m[i] for m in r["mem"]["zygote"] + r["mem"]["python"])) for i in (0, 1)))
    mrow("per idle python context private (not shared with the zygote) MiB (mean)",
         lambda r: mib(sum(m[2] for m in r["mem"]["python"]) / max(1, len(r["mem"]["python"]))))
    mrow("idle node context PSS / RSS MiB",
         lambda r: " / ".join(mib(sum(m[i] for m in r["mem"]["node"])) for i in (0, 1)))
    mrow("node spare PSS / RSS MiB",
         lambda r: " / ".join(mib(sum(m[i] for m in r["mem"]["node_spare"])) for i in (0, 1)))
    mrow(f"CPU time of all runners over {args.idle_seconds:g} s idle, ms",
         lambda r: f"{r['idle_runner_ms']:.0f}")
    mrow(f"CPU time of cove-agent over the same {args.idle_seconds:g} s, ms",
         lambda r: f"{r['idle_agent_ms']:.0f}")
    pm, nm = base["py_runner_mem"], base["node_runner_mem"]
    print(f"\nHost references: python_runner.py started alone PSS {mib(sum(m[0] for m in pm) / len(pm))} / "
          f"RSS {mib(sum(m[1] for m in pm) / len(pm))} MiB; node_runner.js alone PSS "
          f"{mib(sum(m[0] for m in nm) / len(nm))} / RSS {mib(sum(m[1] for m in nm) / len(nm))} MiB"
          + (f"; Jupyter python3 kernel PSS {mib(jup[2][0])} / RSS {mib(jup[2][1])} MiB" if jup_ok and jup[2]
             else "") + ".")
    print("Goal: new python context ready <= 10 ms p50. Cloudflare: `1+1` python 4.1 ms / JS 0.7 ms in an "
          "existing context; new context from a warm pool 2-3 ms, without 632 ms (python).")


if __name__ == "__main__":
    main()
