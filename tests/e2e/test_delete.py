"""DELETE of a sandbox under load: it answers 200 once the sandbox is unreachable,
whatever its processes do; the rest is removed in the background (docs/api.md,
"Deleting")."""

import os
import subprocess

import pytest

from helpers import assert_error, leaks_of, processes_matching, unique_id, wait_until

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
    hog = ("python3 -c 'b = bytearray(45 << 20)\n"
           "while True:\n"
           "    for i in range(0, len(b), 4096): b[i] = (b[i] + 1) & 255'")
    r = api.exec(sid, f"for i in 1 2 3 4; do nohup {hog} >/dev/null 2>&1 & done; "
                      "nohup sh -c 'while :; do head -c 1G /dev/zero | tail; done' >/dev/null 2>&1 & "
                      "echo started", session="__DISABLE_SESSION__", timeout=120)
    assert r["stdout"] == "started\n", r
    # Let the pressure build until the sandbox is at its memory limit (reclaiming, or OOM-killing).
    def at_limit():
        usage, limit, kills = memory_of(pid)
        return usage >= limit * 0.9 or kills > 0
    assert wait_until(at_limit, 240, interval=0.5), f"no memory pressure: {memory_of(pid)}"

    r = api.delete(f"/v1/sandboxes/{sid}", timeout=300)
    assert r.status_code == 200, r.text
    assert r.json() == {"id": sid, "deleted": True}
    assert_error(api.get(f"/v1/sandboxes/{sid}"), 404, "SANDBOX_NOT_FOUND")
    assert sid not in api.list_ids()
    # The rest goes in the background, however long the processes take to die.
    assert wait_until(lambda: not remains(api, sid, pid), 180, interval=0.5), remains(api, sid, pid)
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
        assert wait_until(lambda: "D" in states_in(sid), 30), states_in(sid)
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
    assert wait_until(lambda: not remains(api, sid, pid), 120, interval=0.5), remains(api, sid, pid)
    # The id can be used again.
    api.create(id=sid)
    assert api.sh(sid, "echo again") == "again\n"
    api.destroy(sid)


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
