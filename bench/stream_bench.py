#!/usr/bin/env python3
"""stream_bench: what slow and fast stream readers cost a sandbox and coved.

For this build's coved and, with --baseline PATH, another coved binary (e.g.
one built from the commit before flow control), in the same run:

  paused reader:  a lite sandbox runs `yes` into /api/execute/stream whose client
                  reads nothing; exec round trips on the same sandbox meanwhile
                  (p50 / p99 / failures over 40 s) and the sandbox's state after
  1 fast reader:  MB/s of `yes` delivered through /api/execute/stream, against
                  `yes | head -c` through a pipe on the host (the ceiling)
  20 fast readers: MB/s in all, coved's RSS growth at the peak and 5 s after

Needs root. Run: python3 bench/stream_bench.py [--baseline /path/to/coved] [--seconds 10]
"""

import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
import helpers  # noqa: E402
from helpers import benchmark_coved, rss, unique_id  # noqa: E402
from raw_http import SlowReader, raw_request  # noqa: E402

SECONDS = int(sys.argv[sys.argv.index("--seconds") + 1]) if "--seconds" in sys.argv else 10
BASELINE = sys.argv[sys.argv.index("--baseline") + 1] if "--baseline" in sys.argv else None


def open_stream(coved, sid, body):
    return raw_request(coved, "POST", f"/v1/sandboxes/{sid}/api/execute/stream", body)


def paused_reader(api, coved):
    sid = unique_id("bench-paused")
    api.create(id=sid, instanceType="lite")
    s = open_stream(coved, sid, {"command": "yes", "sessionId": "paused"})
    times, failures = [], 0
    end = time.monotonic() + 40
    while time.monotonic() < end:
        t = time.perf_counter()
        try:
            r = api.post(f"/v1/sandboxes/{sid}/api/execute",
                         {"command": "true", "sessionId": "__DISABLE_SESSION__"}, timeout=20)
            if r.status_code == 200:
                times.append((time.perf_counter() - t) * 1000)
            else:
                failures += 1
        except Exception:
            failures += 1
        time.sleep(0.05)
    state = api.get(f"/v1/sandboxes/{sid}").json().get("state")
    s.close()
    api.delete(f"/v1/sandboxes/{sid}")
    times.sort()
    p = (lambda q: times[min(len(times) - 1, int(q * len(times)))]) if times else (lambda q: float("nan"))
    return p(0.5), p(0.99), failures, state


def fast_readers(api, coved, n):
    sid = unique_id("bench-fast")
    api.create(id=sid, instanceType="standard-3")
    api.post(f"/v1/sandboxes/{sid}/api/execute", {"command": "true"})
    base = rss(coved.pid)
    socks = [open_stream(coved, sid, {"command": "yes", "sessionId": f"r{i}"}) for i in range(n)]
    readers = [SlowReader(s, None) for s in socks]
    for r in readers:
        r.start()
    peak, end = base, time.monotonic() + SECONDS
    while time.monotonic() < end:
        peak = max(peak, rss(coved.pid))
        time.sleep(0.1)
    for r in readers:
        r.stop.set()
        r.join()
    for s in socks:
        s.close()
    time.sleep(5)
    after = rss(coved.pid)
    api.delete(f"/v1/sandboxes/{sid}")
    return sum(r.got for r in readers) / SECONDS / 1e6, (peak - base) / 2**20, (after - base) / 2**20


def host_pipe_mbps():
    t = time.perf_counter()
    out = subprocess.run(["bash", "-c", f"yes | head -c {2 << 30} | wc -c"], capture_output=True, text=True)
    return int(out.stdout) / (time.perf_counter() - t) / 1e6


def run(binary, label):
    coved, api = benchmark_coved(binary, "stream")
    try:
        p50, p99, failures, state = paused_reader(api, coved)
        one, _, _ = fast_readers(api, coved, 1)
        many, peak, held = fast_readers(api, coved, 20)
    finally:
        coved.stop()
    return [label, f"{p50:.1f}", f"{p99:.1f}", str(failures), state, f"{one:.0f}", f"{many:.0f}",
            f"{peak:.0f}", f"{held:.0f}"]


def main():
    rows = [run(helpers.COVED, "this coved")]
    if BASELINE:
        rows.append(run(BASELINE, "baseline"))
    header = ["coved", "exec p50 ms", "exec p99 ms", "exec failed", "state after 40 s",
              "1 reader MB/s", "20 readers MB/s", "RSS peak +MiB", "RSS after +MiB"]
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    print("paused reader of `yes` on a lite sandbox, exec round trips on it for 40 s; then fast readers")
    print(f"for {SECONDS} s each (host pipe `yes | head`: {host_pipe_mbps():.0f} MB/s)\n")
    for r in [header] + rows:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths)))


if __name__ == "__main__":
    main()
