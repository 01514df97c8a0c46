"""Fault injection (issue 10): slow and vanished clients, a full disk, a full fd
table, kill -9 of agents and of coved, all at once on one coved. Afterwards
nothing has leaked (the factory's checks) and every file that a sandbox still
alive acknowledged with a 2xx is there with its content.

Run alone with: python3 -m pytest tests/e2e -m chaos
"""

import hashlib
import os
import random
import socket
import threading
import time

import pytest

from helpers import assert_error, leaks_of, thrash_memory, unique_id, wait_until
from raw_http import SlowReader, SplitRequest, raw_request

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


class Ledger:
    """Files that sandboxes acknowledged (2xx), by sandbox, and how many writes
    they acknowledged."""

    def __init__(self):
        self.files, self.acks, self.lock = {}, {}, threading.Lock()

    def write(self, api, sid, path, content):
        r = api.post(f"/v1/sandboxes/{sid}/api/write", {"path": path, "content": content}, timeout=60)
        if r.status_code == 200:
            with self.lock:
                self.files.setdefault(sid, {})[path] = hashlib.sha256(content.encode()).hexdigest()
                self.acks[sid] = self.acks.get(sid, 0) + 1
        else:
            assert r.status_code in (404, 409, 502, 503, 507), f"write {sid}:{path}: {r.status_code} {r.text[:300]}"
        return r.status_code


def writer(api, ledger, sid, stop, tag):
    i = 0
    while not stop.is_set():
        try:
            ledger.write(api, sid, f"/workspace/{tag}-{i}.txt", f"{tag} {i} " + "x" * random.randint(0, 50000))
        except OSError:
            pass  # coved is being killed and restarted
        i += 1
        time.sleep(0.05)  # the pace of the traffic


def test_faults_together_lose_nothing_acknowledged(coved_factory):
    coved, api = coved_factory(prefix=["prlimit", "--nofile=512"])
    ledger = Ledger()
    calm, slow, full, doomed, pressed, raced = (
        unique_id(n) for n in ("calm", "slow", "full", "doomed", "pressed", "raced"))
    api.create(id=calm)
    api.create(id=slow, instanceType="lite")
    api.create(id=full, limits={"diskBytes": 64 << 20})
    api.create(id=doomed)
    api.create(id=pressed, instanceType="lite")
    api.create(id=raced)
    pressed_pid = api.info(pressed)["pid"]
    thrash_memory(api, pressed, pressed_pid)
    stop = threading.Event()
    threads = [threading.Thread(target=writer, args=(api, ledger, sid, stop, sid), daemon=True)
               for sid in (calm, slow, full)]
    for t in threads:
        t.start()

    # Slow and paused readers, and clients that leave, on `slow`.
    readers = [SlowReader(raw_request(coved, "POST", f"/v1/sandboxes/{slow}/api/execute/stream",
                                      {"command": "yes", "sessionId": f"r{i}"}), rate) for i, rate in
               enumerate((0, 100_000, 0))]
    for r in readers:
        r.start()
    leavers = [raw_request(coved, "POST", f"/v1/sandboxes/{slow}/api/execute", {"command": "sleep 300"})
               for _ in range(20)]

    # A full disk on `full`: writes beyond the quota are 507, never a partial file.
    r = api.post(f"/v1/sandboxes/{full}/api/execute",
                 {"command": "dd if=/dev/zero of=/workspace/filler bs=1M count=100 2>&1; true"}, timeout=120)
    assert r.status_code == 200, r.text
    assert ledger.write(api, full, "/workspace/after-full.txt", "y" * (1 << 20)) == 507

    # A full fd table: idle connections beyond coved's descriptor limit; the API still answers.
    hogs = []
    for _ in range(600):
        try:
            hogs.append(socket.create_connection((coved.host, coved.port), timeout=5))
        except OSError:
            break
    assert api.get("/v1/sandboxes", timeout=30).status_code == 200

    # kill -9 of an agent: its sandbox fails, the others go on.
    pid = api.info(doomed)["pid"]
    os.kill(pid, 9)
    wait_until(lambda: api.info(doomed)["state"] == "failed", 30)

    # DELETE of a sandbox thrashing at its memory limit: 200, and the rest goes in the background.
    r = api.delete(f"/v1/sandboxes/{pressed}", timeout=120)
    assert r.status_code == 200, r.text

    time.sleep(20)  # past two agent ping intervals (15 s): a stalled agent would be failed by now
    for s in leavers:
        s.close()
    for s in hogs:
        s.close()

    # Requests racing a DELETE: those that arrived before it answered get 200 or 404, never
    # 5xx, and none brings the sandbox back.
    base = f"/v1/sandboxes/{raced}/api"
    held = [SplitRequest(coved, "POST", f"{base}/execute", {"command": "true"}) for _ in range(4)] + \
           [SplitRequest(coved, "POST", f"{base}/write", {"path": f"/workspace/{i}", "content": "r"})
            for i in range(4)]
    wait_until(lambda: all(h.arrived() for h in held), 30, what="coved to read the requests' heads")
    answers = []
    racing = [threading.Thread(target=lambda h=h: answers.append(h.finish()), daemon=True) for h in held[::2]]
    for t in racing:
        t.start()
    assert api.delete(f"/v1/sandboxes/{raced}", timeout=120).status_code == 200
    for t in racing:
        t.join(60)
    late = [h.finish() for h in held[1::2]]
    for status, body in answers + late:
        assert status in (200, 404), (status, body)
    for status, body in late:
        assert status == 404 and body["code"] == "SANDBOX_NOT_FOUND", (status, body)
    assert_error(api.get(f"/v1/sandboxes/{raced}"), 404, "SANDBOX_NOT_FOUND")

    # kill -9 of coved, mid-traffic; the sandboxes are adopted by the next one.
    coved.kill9()
    time.sleep(1)  # down for a moment, the point: the writers go on against no coved
    coved.start()
    # The writers of the sandboxes that can still write get acknowledgements from the new coved.
    acked = dict(ledger.acks)
    wait_until(lambda: all(ledger.acks.get(sid, 0) >= acked.get(sid, 0) + 3 for sid in (calm, slow)), 60,
               what=lambda: f"acknowledged writes: before the restart {acked}, now {ledger.acks}")
    stop.set()
    for t in threads:
        t.join(60)
    for r in readers:
        r.stop.set()
        r.sock.close()

    # Free the full disk, then check every acknowledged file of every live sandbox.
    api.post(f"/v1/sandboxes/{full}/api/delete", {"path": "/workspace/filler"})
    for sid in (calm, slow, full):
        assert api.info(sid)["state"] == "running", api.info(sid)
        for path, digest in ledger.files.get(sid, {}).items():
            r = api.post(f"/v1/sandboxes/{sid}/api/read", {"path": path}, timeout=60)
            assert r.status_code == 200, f"{sid}:{path} acknowledged, then {r.status_code} {r.text[:200]}"
            assert hashlib.sha256(r.json()["content"].encode()).hexdigest() == digest, f"{sid}:{path} changed"
        listed = api.sh(sid, "ls -a /workspace")
        assert ".cove-" not in listed, f"temporary files left in {sid}: {listed}"
    assert sum(len(f) for f in ledger.files.values()) > 30
    for sid in (pressed, raced):
        assert_error(api.get(f"/v1/sandboxes/{sid}"), 404, "SANDBOX_NOT_FOUND")
    wait_until(lambda: not leaks_of([pressed], [pressed_pid]), 180, interval=0.5,
               what=lambda: leaks_of([pressed], [pressed_pid]))
    for sid in (calm, slow, full, doomed):
        assert api.delete(f"/v1/sandboxes/{sid}").status_code == 200
