"""DELETE of a sandbox under load and under races: it answers 200 once the sandbox
is unreachable, whatever its processes do; the rest is removed in the background;
requests in flight get one answer (404); a deleted id stays deleted for every
request that arrived before the DELETE answered (docs/api.md, "Deleting")."""

import concurrent.futures
import os
import subprocess
import threading

import pytest

from helpers import assert_error, leaks_of, processes_matching, thrash_memory, unique_id, wait_until
from raw_http import SplitRequest

pytestmark = pytest.mark.lifecycle


def zombie_children(parent):
    """Zombie processes whose parent is `parent` (a dead pid 1 nobody reaped)."""
    found = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == parent:
            found.append(int(p))
    return found


def remains(api, sid, pid):
    """What is left on the host of deleted sandbox sid (pid: its pid 1)."""
    problems = leaks_of([sid], [pid])
    layer = os.path.join(api.coved.state_dir, "layers", sid)
    if os.path.exists(layer):
        problems.append(f"layer left: {layer}")
    if pid in zombie_children(api.coved.pid):
        problems.append(f"pid 1 ({pid}) is a zombie of coved")
    return problems


@pytest.mark.slow
def test_delete_under_memory_pressure(api):
    """A lite sandbox (1/16 CPU, 256 MiB) thrashing at its memory limit: memory hogs
    that keep touching their memory, and `head -c 1G /dev/zero | tail` in a loop (tail
    keeps everything, as /dev/zero has no newline, until the OOM killer ends it).
    Killed processes must still free their memory, throttled at 1/16 CPU: seconds."""
    sid = unique_id("mempress")
    api.create(id=sid, instanceType="lite")
    pid = api.info(sid)["pid"]
    thrash_memory(api, sid, pid)

    r = api.delete(f"/v1/sandboxes/{sid}", timeout=300)
    assert r.status_code == 200, r.text
    assert r.json() == {"id": sid, "deleted": True}
    assert_error(api.get(f"/v1/sandboxes/{sid}"), 404, "SANDBOX_NOT_FOUND")
    assert sid not in api.list_ids()
    # The rest goes in the background, however long the processes take to die.
    wait_until(lambda: not remains(api, sid, pid), 180, interval=0.5, what=lambda: remains(api, sid, pid))
    # The id is free again.
    api.create(id=sid, instanceType="lite")
    assert api.sh(sid, "echo again") == "again\n"
    api.destroy(sid)


def layers_mount(state_dir):
    """The mount point of coved's layer file system (every sandbox's writable layer)."""
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f if line.split()[4] == os.path.join(state_dir, "layers")]
    assert points, "no layer file system mounted"
    return points[0]


def states_in(sid):
    """The scheduler states (R, S, D...) of the host processes of sandbox sid."""
    out = []
    for pid, _ in processes_matching([sid], None):
        try:
            with open(f"/proc/{pid}/stat") as f:
                out.append(f.read().rsplit(")", 1)[1].split()[0])
        except OSError:
            pass
    return out


@pytest.mark.slow
@pytest.mark.parametrize("restart", [False, True], ids=["coved-running", "coved-restarted"])
def test_delete_of_a_sandbox_slow_to_die(coved_factory, restart):
    """A sandbox whose processes cannot die for a while (here: stuck writing to its
    frozen layer file system, uninterruptible, as a process can be in the kernel):
    the DELETE answers 200 at once anyway; the rest is reaped when they can die,
    pid 1 included (coved is its parent: no zombie), also across a coved crash."""
    coved, api = coved_factory()
    sid = unique_id("slowdie")
    api.create(id=sid)
    pid = api.info(sid)["pid"]
    api.exec(sid, "nohup sh -c 'while :; do echo x >> /workspace/w; done' >/dev/null 2>&1 &",
             session="__DISABLE_SESSION__")
    mount = layers_mount(coved.state_dir)
    subprocess.run(["fsfreeze", "--freeze", mount], check=True)
    try:
        wait_until(lambda: "D" in states_in(sid), 30, what=lambda: states_in(sid))
        r = api.delete(f"/v1/sandboxes/{sid}", timeout=120)
        assert r.status_code == 200, r.text
        assert_error(api.get(f"/v1/sandboxes/{sid}"), 404, "SANDBOX_NOT_FOUND")
        assert sid not in api.list_ids()
        assert "D" in states_in(sid), "nothing was left to reap: the test proves nothing"
        if restart:
            coved.kill9()
    finally:
        subprocess.run(["fsfreeze", "--unfreeze", mount], check=True)
    if restart:
        coved.start()  # the record says "deleting": the reaper goes on
        assert_error(api.get(f"/v1/sandboxes/{sid}"), 404, "SANDBOX_NOT_FOUND")
    wait_until(lambda: not remains(api, sid, pid), 120, interval=0.5, what=lambda: remains(api, sid, pid))
    # The id can be used again.
    api.create(id=sid)
    assert api.sh(sid, "echo again") == "again\n"
    api.destroy(sid)


# ---------------------------------------------------------------- requests racing a DELETE

def post(api, path, body):
    """A request on a fresh connection (threads cannot share the Api's session)."""
    import requests
    r = requests.post(api.url(path), json=body, headers=api.headers, timeout=120)
    return r.status_code, r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text


def test_requests_racing_a_delete(api):
    """Rounds of: commands in flight (`sleep 10` running in the sandbox, `true` sent just
    before the DELETE, and requests whose head arrived but whose body comes only after
    the DELETE answered), then the DELETE. Every request gets 2xx or 404, never 5xx, and
    none of them brings the sandbox back; a request sent after the DELETE answered does."""
    for round_ in range(4):
        sid = unique_id(f"race{round_}")
        api.create(id=sid)
        execute = f"/v1/sandboxes/{sid}/api/execute"
        answers = []
        lock = threading.Lock()

        def run(body):
            status, out = post(api, execute, body)
            with lock:
                answers.append((body["command"], status, out))

        with concurrent.futures.ThreadPoolExecutor(24) as pool:
            sleepers = [pool.submit(run, {"command": "sleep 10", "sessionId": f"s{i}"}) for i in range(6)]
            # The sleeps are running in the sandbox.
            count = "pgrep -xc sleep || true"
            wait_until(lambda: api.sh(sid, count).strip() == "6", 30, what=lambda: api.sh(sid, "ps -ef"))
            held = [SplitRequest(api.coved, "POST", execute, {"command": "echo held"}) for _ in range(3)]
            quick = [SplitRequest(api.coved, "POST", execute, {"command": "true"}) for _ in range(8)]
            deleted = pool.submit(api.destroy, sid)
            finished = [pool.submit(q.finish) for q in quick]
            assert deleted.result(timeout=300) == {"id": sid, "deleted": True}
            # After the DELETE answered: gone, and the held requests (arrived before) cannot revive it.
            assert_error(api.get(f"/v1/sandboxes/{sid}"), 404, "SANDBOX_NOT_FOUND")
            for h in held:
                status, body = h.finish()
                assert status == 404, (status, body)
                assert body["code"] == "SANDBOX_NOT_FOUND" and "deleted" in body["message"], body
            for f in finished:
                status, body = f.result(timeout=120)
                answers.append(("true", status, body))
            for s in sleepers:
                s.result(timeout=120)
        for command, status, body in answers:
            assert status == 200 or status == 404, (command, status, body)
            if status == 404:
                assert body["code"] == "SANDBOX_NOT_FOUND" and "deleted" in body["message"], body
        assert any(status == 404 for command, status, _ in answers if command == "sleep 10"), answers
        # Still deleted: nothing that was sent before the DELETE answered re-created it.
        assert_error(api.get(f"/v1/sandboxes/{sid}"), 404, "SANDBOX_NOT_FOUND")
        assert sid not in api.list_ids()
        # A request sent now creates it again, as Cloudflare's getSandbox does.
        assert api.sh(sid, "echo back") == "back\n"
        assert api.info(sid)["state"] == "running"
        api.destroy(sid)
