#!/usr/bin/env python3
"""process_log_bench: how completely and how fast a background process's output reaches its readers.

For this build's coved and, with --baseline PATH, another coved binary, in the same run:

  follow:    a process writes 100 MB (`yes LINE | head -c`), one client (curl) follows
             /api/process/ID/stream from the moment it started: MB/s from start to
             the exit event, bytes delivered, bytes reported dropped
  late logs: once it has ended, /api/process/ID/logs: MB/s, delivered, dropped

against `yes LINE | head -c` through a pipe on the host (the ceiling), measured
three times right before each coved's runs (the median is shown, and the follower's
share of it: the machine's load moves both).

Needs root. Run: python3 bench/process_log_bench.py [--baseline /path/to/coved] [--mb 100]
"""

import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
import helpers  # noqa: E402
from helpers import benchmark_coved, sse_events, unique_id  # noqa: E402

BASELINE = sys.argv[sys.argv.index("--baseline") + 1] if "--baseline" in sys.argv else None
SIZE = int(sys.argv[sys.argv.index("--mb") + 1]) * 1_000_000 if "--mb" in sys.argv else 100_000_000
LINE = "0123456789abcdefghijklmnopqrstuvwxyz"


def host_pipe_mbps():
    t = time.perf_counter()
    out = subprocess.run(["bash", "-c", f"yes {LINE} | head -c {SIZE} | wc -c"], capture_output=True, text=True)
    return int(out.stdout) / (time.perf_counter() - t) / 1e6


def curl(api, path, out, stream=False):
    """Fetches path with curl into file `out` (a fast reader, so that the figures are
    coved's, not the client's); returns the seconds it took."""
    t = time.perf_counter()
    subprocess.run(["curl", "-sf", *(["-N"] if stream else []), "-H", "Authorization: " + api.headers["Authorization"],
                    api.url(path), "-o", out], check=True)
    return time.perf_counter() - t


def follow(api, sid, pid, tmp):
    t = time.perf_counter()
    api.post(f"/v1/sandboxes/{sid}/api/process/start", {"command": f"yes {LINE} | head -c {SIZE}", "processId": pid})
    curl(api, f"/v1/sandboxes/{sid}/api/process/{pid}/stream", tmp, stream=True)
    seconds = time.perf_counter() - t
    got = dropped = 0
    with open(tmp, encoding="utf-8") as f:
        for line in f:
            if not line.startswith("data: "):
                continue
            ev = json.loads(line[6:])
            if ev["type"] == "stdout":
                got += len(ev["data"].encode())
            elif ev["type"] == "dropped":
                dropped += ev["stdout"]
    return (got + dropped) / seconds / 1e6, got, dropped


def late_logs(api, sid, pid, tmp):
    seconds = curl(api, f"/v1/sandboxes/{sid}/api/process/{pid}/logs", tmp)
    with open(tmp, encoding="utf-8") as f:
        logs = json.load(f)
    got, dropped = len(logs["stdout"].encode()), logs["stdoutDropped"]
    return got / seconds / 1e6, got, dropped


def run(binary, label):
    pipe = sorted(host_pipe_mbps() for _ in range(3))[1]
    coved, api = benchmark_coved(binary, "proclog")
    try:
        sid = unique_id("bench-proclog")
        api.create(id=sid, instanceType="standard-3")
        api.post(f"/v1/sandboxes/{sid}/api/execute", {"command": "true"})
        tmp = os.path.join(os.path.dirname(coved.state_dir), "out")
        f_mbps, f_got, f_dropped = follow(api, sid, "follow", tmp)
        l_mbps, l_got, l_dropped = late_logs(api, sid, "follow", tmp)
        api.delete(f"/v1/sandboxes/{sid}")
    finally:
        coved.stop()
    mb = lambda n: f"{n / 1e6:.1f}"  # noqa: E731
    return [label, f"{pipe:.0f}", f"{f_mbps:.0f}", f"{100 * f_mbps / pipe:.0f}%", mb(f_got), mb(f_dropped),
            f"{l_mbps:.0f}", mb(l_got), mb(l_dropped)]


def main():
    rows = [run(helpers.COVED, "this coved")]
    if BASELINE:
        rows.append(run(BASELINE, "baseline"))
    header = ["coved", "host pipe MB/s", "follow MB/s", "of pipe", "delivered MB", "dropped MB", "late logs MB/s",
              "delivered MB", "dropped MB"]
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    print(f"a process writes {SIZE / 1e6:.0f} MB (`yes | head -c`); one client follows /stream from its start,")
    print("then reads /logs once it has ended; host pipe: `yes | head -c | wc -c`, median of 3 before each coved\n")
    for r in [header] + rows:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths)))


if __name__ == "__main__":
    main()
