"""Background processes through the compatible API (reference routes #20-#26)."""

import hashlib
import json
import time

import pytest

from helpers import assert_error, sse_events, unique_id, wait_until

pytestmark = pytest.mark.processes


def proc_url(sid, rest=""):
    return f"/v1/sandboxes/{sid}/api/process{rest}"


def get_process(api, sid, pid):
    r = api.get(proc_url(sid, f"/{pid}"))
    assert r.status_code == 200, r.text
    return r.json()["process"]


def wait_status(api, sid, pid, statuses, timeout=20):
    wait_until(lambda: get_process(api, sid, pid)["status"] in statuses, timeout,
               what=lambda: get_process(api, sid, pid))


def test_start_logs_and_status(api, sb):
    r = api.call(sb, "process/start", {"command": "echo out; echo err >&2; exit 3", "processId": "p-logs"})
    assert r["processId"] == "p-logs" and r["pid"] > 0 and r["command"].startswith("echo out")
    wait_status(api, sb, "p-logs", {"failed"})
    p = get_process(api, sb, "p-logs")
    assert p["exitCode"] == 3 and p["startTime"] and p["endTime"]
    logs = api.get(proc_url(sb, "/p-logs/logs")).json()
    assert logs["stdout"] == "out\n" and logs["stderr"] == "err\n"
    assert logs["stdoutDropped"] == 0
    ok = api.call(sb, "process/start", {"command": "true"})
    assert ok["processId"].startswith("proc_")
    wait_status(api, sb, ok["processId"], {"completed"})


def test_duplicate_process_id_is_409(api, sb):
    api.call(sb, "process/start", {"command": "sleep 30", "processId": "p-dup"})
    r = api.post(f"/v1/sandboxes/{sb}/api/process/start", {"command": "echo second", "processId": "p-dup"})
    assert_error(r, 409, "PROCESS_ALREADY_EXISTS")
    assert api.delete(proc_url(sb, "/p-dup")).status_code == 200
    wait_status(api, sb, "p-dup", {"killed"})
    assert get_process(api, sb, "p-dup")["exitCode"] == 143


def test_kill_leaves_no_orphans(api, make_sandbox):
    sid = make_sandbox()
    api.call(sid, "process/start", {"command": "sleep 1001 & setsid sleep 1002 & sleep 1003", "processId": "tree"})
    count = "ps -eo args | grep -c '^sleep 100[123]$' || true"  # (grep's own args don't start with sleep)
    wait_until(lambda: api.sh(sid, count).strip() == "3", 10)
    assert api.delete(proc_url(sid, "/tree")).status_code == 200
    wait_status(api, sid, "tree", {"killed"})
    wait_until(lambda: api.sh(sid, count).strip() == "0", 10)


def test_list_and_kill_all(api, make_sandbox):
    sid = make_sandbox()
    for i in range(3):
        api.call(sid, "process/start", {"command": "sleep 60", "processId": f"s{i}"})
    api.call(sid, "process/start", {"command": "true", "processId": "quick"})
    wait_status(api, sid, "quick", {"completed"})
    listed = api.get(proc_url(sid, "/list")).json()["processes"]
    assert {p["id"] for p in listed} >= {"s0", "s1", "s2", "quick"}
    running = api.get(proc_url(sid, "/list?status=running")).json()["processes"]
    assert {p["id"] for p in running} == {"s0", "s1", "s2"}
    r = api.delete(proc_url(sid, "/kill-all"))
    assert r.status_code == 200 and r.json()["cleanedCount"] == 3
    for i in range(3):
        wait_status(api, sid, f"s{i}", {"killed"})


def test_stream_replays_then_follows_then_exits(api, sb):
    api.call(sb, "process/start", {"command": "echo first; sleep 0.5; echo second; exit 4", "processId": "p-stream"})
    r = api.get(proc_url(sb, "/p-stream/stream"), stream=True, timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(e["data"]) for e in sse_events(r)]
    assert events[0]["type"] == "process_info" and events[0]["processId"] == "p-stream"
    out = "".join(e["data"] for e in events if e["type"] == "stdout")
    assert out == "first\nsecond\n"
    assert events[-1]["type"] == "exit" and events[-1]["exitCode"] == 4
    # after the exit: the buffer, then exit at once
    again = [json.loads(e["data"]) for e in sse_events(api.get(proc_url(sb, "/p-stream/stream"), stream=True))]
    assert "".join(e["data"] for e in again if e["type"] == "stdout") == "first\nsecond\n"
    assert again[-1]["type"] == "exit"


def test_background_execute_and_timeout(api, sb):
    r = api.exec(sb, "sleep 100", background=True, processId="bg-timeout", timeoutMs=300)
    assert r["processId"] == "bg-timeout" and r["pid"] > 0
    wait_status(api, sb, "bg-timeout", {"killed"}, timeout=10)


def test_process_survives_session_deletion(api, sb):
    s = unique_id("s")
    api.call(sb, "session/create", {"id": s, "cwd": "/tmp"})
    api.call(sb, "process/start", {"command": "pwd; sleep 2; echo done", "sessionId": s, "processId": "p-sess"})
    api.call(sb, "session/delete", {"sessionId": s})
    wait_status(api, sb, "p-sess", {"completed"})
    assert api.get(proc_url(sb, "/p-sess/logs")).json()["stdout"] == "/tmp\ndone\n"


LINE = b"0123456789abcdefghijklmnopqrstuvwxyz\n"
LOG_LIMIT = 128 << 20  # agent/process_log.h kProcessLogDiskLimit


def yes_output(n):
    """What `yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c n` writes."""
    return (LINE * (n // len(LINE) + 1))[:n]


def stream_output(api, sid, pid):
    """Follows /stream from the start: (stdout bytes, dropped stdout bytes, last event)."""
    r = api.get(proc_url(sid, f"/{pid}/stream"), stream=True, timeout=600)
    assert r.status_code == 200
    parts, dropped, last = [], 0, None
    for e in sse_events(r):
        last = json.loads(e["data"])
        if last["type"] == "stdout":
            parts.append(last["data"])
        elif last["type"] == "dropped":
            dropped += last["stdout"]
    return "".join(parts).encode(), dropped, last


def test_flood_is_kept_whole_for_late_readers(api, sb):
    # 100 MB written while nobody reads: a late /logs and a /stream from the
    # start get every byte (memory, then the spill file on the sandbox's disk).
    n = 100_000_000
    api.call(sb, "process/start", {"command": f"yes {LINE.decode().strip()} | head -c {n}", "processId": "flood"})
    wait_status(api, sb, "flood", {"completed"}, timeout=120)
    want = hashlib.sha256(yes_output(n)).hexdigest()
    r = api.get(proc_url(sb, "/flood/logs"), timeout=600)
    assert r.status_code == 200
    logs = r.json()
    assert logs["success"] is True and logs["processId"] == "flood"
    assert logs["stdoutDropped"] == 0 and logs["stderrDropped"] == 0 and logs["stderr"] == ""
    out = logs["stdout"].encode()
    del logs
    assert len(out) == n and hashlib.sha256(out).hexdigest() == want
    out, dropped, last = stream_output(api, sb, "flood")
    assert dropped == 0 and len(out) == n and hashlib.sha256(out).hexdigest() == want
    assert last["type"] == "exit" and last["exitCode"] == 0
    assert api.exec(sb, "echo alive")["stdout"] == "alive\n"


def test_past_the_log_limit_the_dropped_count_is_exact(api, sb):
    n = LOG_LIMIT + 20_000_000
    api.call(sb, "process/start", {"command": f"yes {LINE.decode().strip()} | head -c {n}", "processId": "over"})
    wait_status(api, sb, "over", {"completed"}, timeout=120)
    written = yes_output(n)
    logs = api.get(proc_url(sb, "/over/logs"), timeout=600).json()
    dropped, out = logs["stdoutDropped"], logs["stdout"].encode()
    del logs
    # the oldest spill segment (1/8 of the limit) goes at a time
    assert 0 < dropped <= n - LOG_LIMIT * 7 // 8 and len(out) + dropped == n
    assert hashlib.sha256(out).digest() == hashlib.sha256(written[dropped:]).digest()
    out, dropped, last = stream_output(api, sb, "over")
    assert dropped > 0 and len(out) + dropped == n
    assert hashlib.sha256(out).digest() == hashlib.sha256(written[dropped:]).digest()


def test_errors(api, sb):
    assert_error(api.get(proc_url(sb, "/nope")), 404, "PROCESS_NOT_FOUND")
    assert_error(api.get(proc_url(sb, "/nope/logs")), 404, "PROCESS_NOT_FOUND")
    assert_error(api.get(proc_url(sb, "/nope/stream")), 404, "PROCESS_NOT_FOUND")
    assert_error(api.delete(proc_url(sb, "/nope")), 404, "PROCESS_NOT_FOUND")
    assert_error(api.post(f"/v1/sandboxes/{sb}/api/process/start", {}), 400, "VALIDATION_FAILED")
    assert_error(api.post(f"/v1/sandboxes/{sb}/api/process/start", {"command": 5}), 400, "VALIDATION_FAILED")
    assert_error(api.get(proc_url(sb, "/start")), 405, "METHOD_NOT_ALLOWED")
    assert_error(api.post(f"/v1/sandboxes/{sb}/api/process/list", {}), 405, "METHOD_NOT_ALLOWED")
    assert_error(api.get(proc_url(sb, "/a/b/c")), 404, "NOT_FOUND")
