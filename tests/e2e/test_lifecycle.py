"""Native lifecycle: create, list, info, delete; ids; instance types and limits."""

import datetime
import os
import re
import signal
import subprocess
import threading
import time

import pytest

from helpers import GiB, MiB, assert_error, cgroup_limit, comm, descendants, pid_alive, unique_id, wait_until

pytestmark = pytest.mark.lifecycle

TYPES = {  # docs/api.md: Cloudflare's instance types
    "lite": (1 / 16, 256 * MiB, 2_000_000_000),
    "basic": (1 / 4, 1 * GiB, 4_000_000_000),
    "standard-1": (1 / 2, 4 * GiB, 8_000_000_000),
    "standard-2": (1, 6 * GiB, 12_000_000_000),
    "standard-3": (2, 8 * GiB, 16_000_000_000),
    "standard-4": (4, 12 * GiB, 20_000_000_000),
}


def parse_iso(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))


def check_sandbox_shape(s, sid=None):
    assert set(s) >= {"id", "state", "image", "instanceType", "limits", "labels", "createdAt",
                      "pid"}, s
    if sid:
        assert s["id"] == sid
    assert s["state"] in ("running", "failed", "stopped")
    assert set(s["limits"]) >= {"cpuMillis", "memoryBytes", "pids", "diskBytes"}, s
    for k in ("cpuMillis", "memoryBytes", "pids", "diskBytes"):
        assert isinstance(s["limits"][k], int) and s["limits"][k] > 0, s
    created = parse_iso(s["createdAt"])
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs((now - created).total_seconds()) < 3600, s["createdAt"]


def test_create_without_id(api):
    s = api.create()
    try:
        assert re.fullmatch(r"sb-[0-9a-f]{12}", s["id"]), s["id"]
        check_sandbox_shape(s)
        assert s["state"] == "running"
        assert s["image"] == "default"
        assert s["instanceType"] == "basic"
        assert isinstance(s["pid"], int) and s["pid"] > 1 and pid_alive(s["pid"])
    finally:
        api.destroy(s["id"])


def test_create_with_id_list_info_delete(api):
    sid = unique_id("life")
    s = api.create(id=sid, labels={"team": "e2e", "k": "v"})
    check_sandbox_shape(s, sid)
    assert s["labels"] == {"team": "e2e", "k": "v"}
    assert sid in api.list_ids()
    listed = [x for x in api.get("/v1/sandboxes").json()["sandboxes"] if x["id"] == sid][0]
    check_sandbox_shape(listed, sid)
    info = api.info(sid)
    check_sandbox_shape(info, sid)
    assert info["state"] == "running"
    assert info["createdAt"] == s["createdAt"]
    assert info["labels"] == {"team": "e2e", "k": "v"}
    pid = info["pid"]
    assert pid_alive(pid)

    gone = api.destroy(sid)
    assert gone["id"] == sid and gone["deleted"] is True, gone
    assert_error(api.get(f"/v1/sandboxes/{sid}"), 404, "SANDBOX_NOT_FOUND")
    assert sid not in api.list_ids()
    wait_until(lambda: not pid_alive(pid), 10, what=f"pid {pid} survived the delete")


def test_delete_is_idempotent(api):
    sid = unique_id("gone")
    for _ in range(3):
        r = api.delete(f"/v1/sandboxes/{sid}")
        assert r.status_code == 200, r.text
        assert r.json()["id"] == sid and r.json()["deleted"] is True


def test_env_of_create_reaches_commands(api, make_sandbox):
    sid = make_sandbox(env={"GREETING": "hello world", "EMPTY": ""})
    out = api.sh(sid, 'printf "%s|%s|" "$GREETING" "${EMPTY-unset}"')
    assert out == "hello world||"


@pytest.mark.parametrize("bad", ["UPPER", "a" * 64, "", "../x", "a_b", "a b", "a/b", "ü", "a.b", "x\n"])
def test_invalid_ids_are_rejected(api, bad):
    r = api.post("/v1/sandboxes", {"id": bad})
    body = assert_error(r, 400, "VALIDATION_FAILED")
    assert len(body["message"]) > 5
    assert bad not in api.list_ids() or bad == ""


def test_longest_valid_id(api):
    sid = unique_id("x") + "-" + "a" * 40
    sid = sid[:63]
    s = api.create(id=sid)
    assert s["id"] == sid
    api.destroy(sid)


def test_duplicate_id_is_409(api, make_sandbox):
    sid = make_sandbox()
    before = api.info(sid)
    assert_error(api.post("/v1/sandboxes", {"id": sid}), 409, "SANDBOX_ALREADY_EXISTS")
    after = api.info(sid)
    assert after["pid"] == before["pid"] and after["state"] == "running"


def test_get_unknown_is_404(api):
    body = assert_error(api.get(f"/v1/sandboxes/{unique_id('none')}"), 404, "SANDBOX_NOT_FOUND")
    assert body["message"]


@pytest.mark.parametrize("itype", list(TYPES))
def test_instance_type_limits_reported(api, itype):
    cpu, mem, disk = TYPES[itype]
    sid = unique_id("type")
    s = api.create(id=sid, instanceType=itype)
    try:
        assert s["instanceType"] == itype
        lim = s["limits"]
        assert abs(lim["cpuMillis"] - cpu * 1000) <= 1, lim
        assert lim["memoryBytes"] == mem, lim
        assert lim["diskBytes"] == disk, lim
        assert api.info(sid)["limits"] == lim
    finally:
        api.destroy(sid)


def test_instance_type_limits_applied_on_the_host(api, make_sandbox):
    sid = make_sandbox(instanceType="lite")
    s = api.info(sid)
    pid = s["pid"]
    mem = cgroup_limit(pid, "memory")
    assert mem is not None and int(mem) == 256 * MiB, f"memory limit of pid {pid}: {mem}"
    pids = cgroup_limit(pid, "pids")
    assert pids is not None and pids != "max" and int(pids) == s["limits"]["pids"], pids
    cpu = cgroup_limit(pid, "cpu")
    assert cpu is not None, "no cpu limit found"
    quota, period = cpu.split()
    assert quota != "max" and int(quota) > 0
    assert abs(int(quota) / int(period) - 1 / 16) < 0.01, cpu


def test_explicit_limits_override_type(api, make_sandbox):
    sid = make_sandbox(instanceType="basic",
                       limits={"memoryBytes": 128 * MiB, "pids": 100, "cpuMillis": 500,
                               "diskBytes": 1_000_000_000})
    s = api.info(sid)
    assert s["limits"] == {"memoryBytes": 128 * MiB, "pids": 100, "cpuMillis": 500,
                           "diskBytes": 1_000_000_000}
    assert int(cgroup_limit(s["pid"], "memory")) == 128 * MiB
    assert int(cgroup_limit(s["pid"], "pids")) == 100


def test_unknown_instance_type_and_image(api):
    sid = unique_id("bad")
    assert_error(api.post("/v1/sandboxes", {"id": sid, "instanceType": "huge"}), 400,
                 "VALIDATION_FAILED")
    assert_error(api.post("/v1/sandboxes", {"id": sid, "image": "no-such-image"}), 400,
                 "VALIDATION_FAILED")
    assert sid not in api.list_ids()


def test_auto_create_on_first_compatible_call(api):
    sid = unique_id("auto")
    api.seen_ids.add(sid)
    assert_error(api.get(f"/v1/sandboxes/{sid}"), 404, "SANDBOX_NOT_FOUND")
    try:
        r = api.exec(sid, "echo made; hostname")
        assert r["exitCode"] == 0
        assert r["stdout"].startswith("made\n")
        s = api.info(sid)
        assert s["state"] == "running"
        assert s["instanceType"] == "basic" and s["image"] == "default"
    finally:
        api.destroy(sid)


def test_auto_create_rejects_invalid_id(api):
    r = api.post("/v1/sandboxes/NOT_VALID/api/execute", {"command": "true"})
    assert_error(r, 400, "VALIDATION_FAILED")
    assert "NOT_VALID" not in api.list_ids()


def test_concurrent_creates_of_one_id(api):
    """Ten parallel creates of one id: exactly one 201, the others 409."""
    import concurrent.futures
    sid = unique_id("race")
    api.seen_ids.add(sid)
    with concurrent.futures.ThreadPoolExecutor(10) as ex:
        codes = list(ex.map(lambda _: api.post("/v1/sandboxes", {"id": sid}).status_code,
                            range(10)))
    try:
        assert sorted(codes) == [201] + [409] * 9, codes
        assert api.info(sid)["state"] == "running"
    finally:
        api.destroy(sid)


def test_create_to_first_command_is_quick(api):
    sid = unique_id("quick")
    t0 = time.monotonic()
    api.create(id=sid)
    api.sh(sid, "true")
    took = time.monotonic() - t0
    api.destroy(sid)
    assert took < 10, f"create + first command took {took:.2f}s"


def queued_to_agent(coved_pid, agent_pid):
    """Bytes coved sent the agent agent_pid that it has not read yet: the Send-Q of
    coved's unix sockets whose peer is one of the agent's."""
    inodes = set()
    for fd in os.listdir(f"/proc/{agent_pid}/fd"):
        try:
            link = os.readlink(f"/proc/{agent_pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[len("socket:["):-1])
    out = subprocess.run(["ss", "-xpH"], capture_output=True, text=True, check=True).stdout
    rows = [line.split() for line in out.splitlines() if f"pid={coved_pid}," in line]
    return sum(int(r[3]) for r in rows if r[7] in inodes)


def test_requests_in_flight_when_the_agent_dies_are_502_sandbox_failed(api, make_sandbox):
    """Killed during a command or during a file write: one answer."""
    sid = make_sandbox()
    pid = api.info(sid)["pid"]
    url = f"/v1/sandboxes/{sid}/api"
    answers = {}

    def call(name, route, body):
        answers[name] = api.post(f"{url}/{route}", body, timeout=120)

    execute = threading.Thread(target=call, args=("execute", "execute", {"command": "sleep 30"}))
    execute.start()
    wait_until(lambda: any(comm(p) == "sleep" for p in descendants(pid)), 10, what="sleep did not start")
    # Stopped, the agent reads nothing: the write is certainly in flight when it dies.
    os.kill(pid, signal.SIGSTOP)
    write = threading.Thread(target=call, args=("write", "write",
                                                 {"path": "/workspace/big", "content": "x" * (30 * MiB)}))
    write.start()
    wait_until(lambda: queued_to_agent(api.coved.pid, pid) > 64 << 10, 30,
               what="coved to send the 30 MiB write to the stopped agent")
    os.kill(pid, signal.SIGKILL)
    execute.join(60)
    write.join(60)
    for name in ("execute", "write"):
        body = assert_error(answers[name], 502, "SANDBOX_FAILED")
        assert "agent" in body["message"] and "died" in body["message"], (name, body)
        assert "delete it to start over" not in body["message"], f"{name} was not in flight: {body}"
    info = api.info(sid)
    assert info["state"] == "failed" and "died" in info["failure"], info
    assert_error(api.post(f"{url}/execute", {"command": "true"}), 502, "SANDBOX_FAILED")
