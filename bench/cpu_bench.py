#!/usr/bin/env python3
"""cpu_bench: how long a sandbox at its CPU quota stalls, and what that does to exec.

For this build's coved and, with --baseline PATH, another coved binary (e.g. one
built before the 10 ms CFS period), in the same run, on a `basic` sandbox (a
quarter CPU):

  stall:        a process inside spins for 3 s and records every gap between two
                reads of the clock over 0.5 ms: the longest (the throttling stall)
                and how many
  session idle: exec round trips of `true` in a session, nothing else running,
                sent 0-50 ms apart at random (not back to back: those would
                mostly run right after the quota refills and hide the stalls)
  session busy: the same while a busy loop in the sandbox uses up its quota
  sessionless:  exec round trips of `true` without a session (a new bash each)

Needs root. Run: python3 bench/cpu_bench.py [--baseline /path/to/coved] [--count 200]
"""

import json
import os
import random
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
import helpers  # noqa: E402
from helpers import benchmark_coved, unique_id  # noqa: E402

COUNT = int(sys.argv[sys.argv.index("--count") + 1]) if "--count" in sys.argv else 200
BASELINE = sys.argv[sys.argv.index("--baseline") + 1] if "--baseline" in sys.argv else None

PROBE = """
import json, time
gaps, last = [], time.monotonic()
end = last + 3
while last < end:
    now = time.monotonic()
    if now - last > 0.0005:
        gaps.append(now - last)
    last = now
print(json.dumps({"max": max(gaps, default=0) * 1000, "count": len(gaps)}))
"""


def round_trips(api, sid, session):
    """COUNT round trips sent at random moments (0-50 ms apart), as an agent's
    commands come: back to back, most would land right after the quota refill."""
    times = []
    for _ in range(COUNT):
        time.sleep(random.uniform(0, 0.05))
        t = time.perf_counter()
        r = api.post(f"/v1/sandboxes/{sid}/api/execute", {"command": "true", "sessionId": session}, timeout=60)
        assert r.status_code == 200, r.text
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return f"{times[len(times) // 2]:.1f} / {times[int(len(times) * 0.99)]:.1f}"


def run(binary, label):
    coved, api = benchmark_coved(binary, "cpu")
    sid = unique_id("bench-cpu")
    try:
        api.create(id=sid, instanceType="basic")
        api.post(f"/v1/sandboxes/{sid}/api/write", {"path": "/tmp/probe.py", "content": PROBE})
        stall = json.loads(api.sh(sid, "python3 /tmp/probe.py"))
        idle = round_trips(api, sid, "s")
        api.sh(sid, "nohup sh -c 'while :; do :; done' >/dev/null 2>&1 & echo $! > /tmp/busy.pid")
        busy = round_trips(api, sid, "s")
        api.sh(sid, "kill $(cat /tmp/busy.pid)")
        sessionless = round_trips(api, sid, "__DISABLE_SESSION__")
        api.delete(f"/v1/sandboxes/{sid}")
    finally:
        coved.stop()
    return [label, f"{stall['max']:.1f}", str(stall["count"]), idle, busy, sessionless]


def main():
    rows = [run(helpers.COVED, "this coved")]
    if BASELINE:
        rows.append(run(BASELINE, "baseline"))
    header = ["coved", "longest stall ms", "stalls in 3 s", "session idle p50 / p99",
              "session busy p50 / p99", "sessionless p50 / p99"]
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    print(f"a `basic` sandbox (0.25 CPU): a spinning probe's stalls; {COUNT} exec round trips of `true`, "
          "0-50 ms apart (ms)\n")
    for r in [header] + rows:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths)))


if __name__ == "__main__":
    main()
