"""coved killed (SIGKILL) or stopped (SIGTERM) and started again on the same state
dir: running sandboxes are adopted with their files, processes and sessions; dead
ones are reported failed or cleaned up, and nothing leaks."""

import os
import signal
import threading

import requests

import pytest

from helpers import leaks_of, pid_alive, unique_id, wait_until

pytestmark = [pytest.mark.restart, pytest.mark.slow]


def find_tagged(api, sid, tag):
    out = api.sh(sid, "for p in /proc/[0-9]*; do "
                      "if tr '\\0' ' ' < $p/cmdline 2>/dev/null | grep -q '^" + tag + "'; then "
                      "echo ${p#/proc/}; fi; done")
    return sorted(int(x) for x in out.split())


def prepare(api):
    sid = unique_id("rst")
    api.create(id=sid)
    tag = unique_id("sleeper")
    r = api.exec(sid, f"nohup bash -c 'exec -a {tag} sleep 1000' >/dev/null 2>&1 &",
                 session="bg")
    assert r["exitCode"] == 0, r
    inner = wait_until(lambda: find_tagged(api, sid, tag), 20, what="the background sleep to start")
    api.call(sid, "write", {"path": "/workspace/persist.txt", "content": "kept across restart"})
    api.exec(sid, "export SURVIVE=yes; cd /tmp", session="keep")
    return sid, tag, inner, api.info(sid)["pid"]


def check_adopted(api, sid, tag, inner, host_pid):
    s = api.info(sid)
    assert s["state"] == "running", s
    assert s["pid"] == host_pid, s
    assert sid in api.list_ids()
    r = api.call(sid, "read", {"path": "/workspace/persist.txt"})
    assert r["content"] == "kept across restart"
    assert find_tagged(api, sid, tag) == inner
    r = api.exec(sid, 'echo "$SURVIVE"; pwd', session="keep")
    assert r["stdout"] == "yes\n/tmp\n", r
    assert api.sh(sid, "echo fresh") == "fresh\n"


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_running_sandbox_survives_restart(coved_factory, how):
    coved, api = coved_factory()
    sid, tag, inner, host_pid = prepare(api)
    other = unique_id("rst2")
    api.create(id=other)
    if how == "SIGKILL":
        coved.kill9()
    else:
        assert coved.stop(signal.SIGTERM) == 0
    assert pid_alive(host_pid), "the sandbox died with coved"
    coved.start()
    check_adopted(api, sid, tag, inner, host_pid)
    assert api.info(other)["state"] == "running"
    # and a second restart in a row
    coved.kill9()
    coved.start()
    check_adopted(api, sid, tag, inner, host_pid)
    api.destroy(sid)
    wait_until(lambda: not pid_alive(host_pid), 10)
    # new sandboxes work after adoption
    third = unique_id("rst3")
    api.create(id=third)
    assert api.sh(third, "echo ok") == "ok\n"


def test_sandbox_killed_while_coved_down(coved_factory):
    coved, api = coved_factory()
    dead = unique_id("dead")
    api.create(id=dead)
    alive = unique_id("alive")
    api.create(id=alive)
    dead_pid = api.info(dead)["pid"]
    coved.kill9()
    os.kill(dead_pid, signal.SIGKILL)
    wait_until(lambda: not pid_alive(dead_pid), 10)
    coved.start()
    r = api.get(f"/v1/sandboxes/{dead}")
    if r.status_code == 200:
        assert r.json()["state"] == "failed", r.json()
        # its compatible API answers with an error, without hanging
        e = api.post(f"/v1/sandboxes/{dead}/api/execute", {"command": "true"}, timeout=30)
        assert e.status_code >= 400, e.text
        api.destroy(dead)
    else:
        assert r.status_code == 404 and r.json()["code"] == "SANDBOX_NOT_FOUND", r.text
    assert dead not in api.list_ids()
    wait_until(lambda: not leaks_of([dead], [dead_pid]), 10, what=lambda: leaks_of([dead], [dead_pid]))
    assert api.info(alive)["state"] == "running"
    assert api.sh(alive, "echo ok") == "ok\n"


def test_sandbox_killed_while_coved_runs(coved_factory):
    coved, api = coved_factory()
    sid = unique_id("crash")
    api.create(id=sid)
    pid = api.info(sid)["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: api.info(sid)["state"] == "failed", 20, what=lambda: api.info(sid))
    assert api.info(sid).get("failure"), "no failure reason"
    assert "pid" not in api.info(sid), "a failed sandbox shows the pid of a dead process"
    # It failed at run time: its record stays (the reason) and get-or-create does not replace it.
    e = api.post(f"/v1/sandboxes/{sid}/api/execute", {"command": "true"}, timeout=30)
    assert e.status_code == 502 and e.json()["code"] == "SANDBOX_FAILED", e.text
    assert api.info(sid)["state"] == "failed"
    api.destroy(sid)
    wait_until(lambda: not leaks_of([sid], [pid]), 10, what=lambda: leaks_of([sid], [pid]))


def kill_coved_mid_create(coved, api, tries=30):
    """Starts creates until coved is killed with SIGKILL while one is under way;
    returns that sandbox's id (coved is left stopped)."""
    for _ in range(tries):
        sid = unique_id("midcreate")
        api.seen_ids.add(sid)

        def create():
            try:
                requests.post(api.url("/v1/sandboxes"), json={"id": sid}, headers=api.headers, timeout=60)
            except requests.RequestException:
                pass  # coved died under it

        t = threading.Thread(target=create)
        t.start()
        killed = False
        while t.is_alive() and not killed:
            r = requests.get(api.url(f"/v1/sandboxes/{sid}"), headers=api.headers, timeout=60)
            if r.status_code == 200 and r.json()["state"] == "creating":
                coved.kill9()
                killed = True
        t.join()
        if killed:
            return sid
        api.destroy(sid)  # the create won the race: try again
    pytest.fail(f"no create was caught under way in {tries} tries")


def test_create_interrupted_by_a_crash_is_replaced(coved_factory):
    """A create cut short by kill -9 leaves a failed record; the next get-or-create of
    the id (a compatible route) replaces it with a running sandbox."""
    coved, api = coved_factory()
    sid = kill_coved_mid_create(coved, api)
    coved.start()
    s = api.info(sid)
    assert s["state"] == "failed" and "being created" in s["failure"], s
    assert "pid" not in s, s
    r = api.exec(sid, "echo replaced", session="__DISABLE_SESSION__", timeout=120)
    assert r["stdout"] == "replaced\n", r
    s = api.info(sid)
    assert s["state"] == "running" and "failure" not in s and s["pid"] > 0, s
    api.destroy(sid)
    wait_until(lambda: not leaks_of([sid], [s["pid"]]), 30, what=lambda: leaks_of([sid], [s["pid"]]))
