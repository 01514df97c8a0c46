"""Commands through the compatible API: output, env, cwd, sessions, timeouts, streaming."""

import json
import time

import pytest

from helpers import assert_error, sse_events, unique_id, wait_until

pytestmark = pytest.mark.exec

NOSESSION = "__DISABLE_SESSION__"


def test_stdout_stderr_exit_code(api, sb):
    r = api.exec(sb, "sh -c 'echo out; echo err >&2; exit 5'")
    assert r["stdout"] == "out\n"
    assert r["stderr"] == "err\n"
    assert r["exitCode"] == 5
    assert r["success"] is False
    assert r["command"] == "sh -c 'echo out; echo err >&2; exit 5'"
    assert isinstance(r["timestamp"], str)
    ok = api.exec(sb, "true")
    assert ok["exitCode"] == 0 and ok["success"] is True and ok["stdout"] == ""


def test_output_is_exact_bytes(api, sb):
    r = api.exec(sb, r"printf 'a\tb\n\n  c  \nno-newline-é'")
    assert r["stdout"] == "a\tb\n\n  c  \nno-newline-é"


def test_large_output_is_complete(api, sb):
    r = api.exec(sb, "seq 1 200000")
    lines = r["stdout"].split("\n")
    assert lines[:-1] == [str(i) for i in range(1, 200001)]


def test_env_applies_to_one_command(api, sb):
    s = unique_id("s")
    r = api.exec(sb, 'echo "$FOO|$BAR"', session=s, env={"FOO": "bar baz", "BAR": "$HOME"})
    assert r["stdout"] == "bar baz|$HOME\n"
    r = api.exec(sb, 'echo "${FOO-unset}"', session=s)
    assert r["stdout"] == "unset\n"


def test_cwd_applies_to_one_command(api, sb):
    s = unique_id("s")
    assert api.exec(sb, "pwd", session=s, cwd="/tmp")["stdout"] == "/tmp\n"
    assert api.exec(sb, "pwd", session=s)["stdout"] == "/workspace\n"
    assert api.exec(sb, "pwd", session=NOSESSION, cwd="/usr")["stdout"] == "/usr\n"


def test_session_state_persists(api, sb):
    s = unique_id("s")
    api.exec(sb, "cd /tmp && export X=persisted && greet() { echo \"hi $1\"; } && Y=local",
             session=s)
    r = api.exec(sb, 'pwd; echo "$X"; greet you; echo "$Y"', session=s)
    assert r["stdout"] == "/tmp\npersisted\nhi you\nlocal\n"
    # another session does not see it
    r = api.exec(sb, 'pwd; echo "${X-unset}"', session=unique_id("s"))
    assert r["stdout"] == "/workspace\nunset\n"


def test_session_create_with_env_and_cwd_then_delete(api, sb):
    s = unique_id("s")
    api.sh(sb, "mkdir -p /workspace/sess-dir")
    r = api.call(sb, "session/create", {"id": s, "env": {"SESS": "yes"}, "cwd": "/workspace/sess-dir"})
    assert r["success"] is True
    assert api.exec(sb, 'echo "$SESS"; pwd', session=s)["stdout"] == "yes\n/workspace/sess-dir\n"
    assert_error(api.post(f"/v1/sandboxes/{sb}/api/session/create", {"id": s}), 409,
                 "SESSION_ALREADY_EXISTS")
    r = api.call(sb, "session/delete", {"sessionId": s})
    assert r["success"] is True and r["sessionId"] == s
    # used again, it is a fresh session
    assert api.exec(sb, 'echo "${SESS-unset}"; pwd', session=s)["stdout"] == "unset\n/workspace\n"


def test_sessionless_keeps_no_state(api, sb):
    api.exec(sb, "cd /tmp; export Z=1", session=NOSESSION)
    r = api.exec(sb, 'pwd; echo "${Z-unset}"', session=NOSESSION)
    assert r["stdout"] == "/workspace\nunset\n"


def test_timeout_kills_command_and_session_survives(api, sb):
    s = unique_id("s")
    marker = unique_id("sleeper")
    api.exec(sb, "export KEEP=me", session=s)
    t0 = time.monotonic()
    r = api.post(f"/v1/sandboxes/{sb}/api/execute",
                 {"command": f"echo started; bash -c 'exec -a {marker} sleep 60'", "sessionId": s,
                  "timeoutMs": 1000})
    took = time.monotonic() - t0
    assert took < 10, f"timeout of 1 s took {took:.1f}s"
    # cove answers 200 with a failing exit code (124), like a sessionless timeout
    assert r.status_code == 200, r.text
    assert r.json()["exitCode"] != 0, r.json()
    # the session lives on, with its state, and the command is gone
    after = api.exec(sb, 'echo "$KEEP"', session=s)
    assert after["stdout"] == "me\n", after
    ps = api.sh(sb, "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '")
    assert marker not in ps, "the timed-out command is still running"


def test_sessionless_timeout(api, sb):
    t0 = time.monotonic()
    r = api.exec(sb, "sleep 60", session=NOSESSION, timeoutMs=500)
    assert time.monotonic() - t0 < 10
    assert r["exitCode"] != 0, r


def test_exit_returns_code_and_a_fresh_session_follows(api, sb):
    s = unique_id("s")
    api.exec(sb, "export GONE=1; cd /tmp", session=s)
    r = api.exec(sb, "exit 3", session=s)
    assert r["exitCode"] == 3, r
    after = api.exec(sb, 'echo "${GONE-unset}"; pwd', session=s)
    assert after["exitCode"] == 0
    assert after["stdout"] == "unset\n/workspace\n"


def test_stream_events(api, sb):
    events = api.stream(sb, "execute/stream",
                        {"command": "for i in 1 2 3; do echo $i; done; echo e >&2; exit 0",
                         "sessionId": NOSESSION})
    types = [e["type"] for e in events]
    assert types[0] == "start", types
    assert types[-1] == "complete", types
    assert set(types) <= {"start", "stdout", "stderr", "complete"}, types
    assert "".join(e["data"] for e in events if e["type"] == "stdout") == "1\n2\n3\n"
    assert "".join(e["data"] for e in events if e["type"] == "stderr") == "e\n"
    assert events[-1]["exitCode"] == 0


def test_stream_in_session_ends_with_complete(api, sb):
    s = unique_id("s")
    events = api.stream(sb, "execute/stream", {"command": "seq 1 50000; sh -c 'exit 4'",
                                               "sessionId": s}, timeout=60)
    assert events[-1]["type"] == "complete" and events[-1]["exitCode"] == 4
    out = "".join(e["data"] for e in events if e["type"] == "stdout")
    assert out == "".join(f"{i}\n" for i in range(1, 50001))


def test_stream_exit_in_session_completes(api, sb):
    """Cloudflare's server hangs here; cove must end the stream."""
    s = unique_id("s")
    events = api.stream(sb, "execute/stream", {"command": "echo bye; exit 4", "sessionId": s},
                        timeout=30)
    assert events[-1]["type"] == "complete" and events[-1]["exitCode"] == 4
    assert api.exec(sb, "echo again", session=s)["stdout"] == "again\n"


def test_stream_is_live(api, sb):
    r = api.request("POST", f"/v1/sandboxes/{sb}/api/execute/stream", stream=True,
                    json_body={"command": "echo first; sleep 3; echo second",
                               "sessionId": NOSESSION})
    assert r.status_code == 200
    t0 = time.monotonic()
    first_at = None
    for ev in sse_events(r):
        e = json.loads(ev["data"])
        if e["type"] == "stdout" and "first" in e["data"] and first_at is None:
            first_at = time.monotonic() - t0
        if e["type"] == "complete":
            break
    assert first_at is not None and first_at < 2.0, f"first output after {first_at}s"


def test_many_sessions_and_commands_in_parallel(api, sb):
    import concurrent.futures

    def run(i):
        return api.exec(sb, f"echo {i}", session=f"par-{i % 4}")["stdout"]

    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        outs = list(ex.map(run, range(40)))
    assert outs == [f"{i}\n" for i in range(40)]


def test_exec_rejects_bad_requests(api, sb):
    assert_error(api.post(f"/v1/sandboxes/{sb}/api/execute", {}), 400, "VALIDATION_FAILED")
    assert_error(api.post(f"/v1/sandboxes/{sb}/api/execute", {"command": ""}), 400)


def test_stream_client_leaving_kills_the_command(api, make_sandbox):
    """A client that disconnects from /api/execute/stream cancels the command."""
    sid = make_sandbox()
    r = api.request("POST", f"/v1/sandboxes/{sid}/api/execute/stream",
                    json_body={"command": "echo started; sleep 1234", "sessionId": "__DISABLE_SESSION__"},
                    stream=True, timeout=30)
    chunks = r.iter_content(chunk_size=None)  # kept: dropping the iterator closes the connection
    seen = b""
    while b'"data":"started' not in seen:
        seen += next(chunks)
    count = "ps -eo args | grep -c '^sleep 1234$' || true"
    wait_until(lambda: api.sh(sid, count).strip() == "1", 10)
    r.close()
    wait_until(lambda: api.sh(sid, count).strip() == "0", 20, what="the command outlived its client")
