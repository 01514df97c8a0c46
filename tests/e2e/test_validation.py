"""Bad input on every route: each answer is a 4xx in the error envelope, never a
5xx, a hang or a crash; coved keeps serving afterwards."""

import json
import os
import select
import socket
import time
from urllib.parse import quote

import pytest

from helpers import MiB, unique_id, wait_until

pytestmark = pytest.mark.validation

# Compatible routes that take a JSON body, with one valid body each.
JSON_ROUTES = {
    "execute": {"command": "true"},
    "execute/stream": {"command": "true"},
    "read": {"path": "/workspace/v.txt"},
    "read/stream": {"path": "/workspace/v.txt"},
    "write": {"path": "/workspace/v.txt", "content": "v"},
    "delete": {"path": "/workspace/v-del.txt"},
    "rename": {"oldPath": "/workspace/v1", "newPath": "/workspace/v2"},
    "move": {"sourcePath": "/workspace/v1", "destinationPath": "/workspace/v2"},
    "mkdir": {"path": "/workspace/vdir"},
    "list-files": {"path": "/workspace"},
    "exists": {"path": "/workspace"},
    "session/create": {"id": "v-session"},
    "session/delete": {"sessionId": "v-session"},
}

REQUIRED = {
    "execute": ["command"], "execute/stream": ["command"], "read": ["path"],
    "read/stream": ["path"], "write": ["path", "content"], "delete": ["path"],
    "rename": ["oldPath", "newPath"], "move": ["sourcePath", "destinationPath"],
    "mkdir": ["path"], "list-files": ["path"], "exists": ["path"],
    "session/delete": ["sessionId"],
}

WRONG_TYPES = {
    "execute": [{"command": 123}, {"command": ["ls"]}, {"command": "true", "timeoutMs": "x"},
                {"command": "true", "env": "A=1"}, {"command": "true", "env": {"A": 1}},
                {"command": "true", "cwd": 5}, {"command": "true", "sessionId": 7},
                {"command": "true", "timeoutMs": -5}],
    "read": [{"path": []}, {"path": "/x", "encoding": "klingon"}, {"path": None}],
    "write": [{"path": "/workspace/w", "content": 5},
              {"path": "/workspace/w", "content": "x", "encoding": "rot13"},
              {"path": "/workspace/w", "content": "%%%not base64%%%", "encoding": "base64"}],
    "mkdir": [{"path": "/workspace/m", "recursive": "yes"}],
    "list-files": [{"path": "/workspace", "options": "all"},
                   {"path": "/workspace", "options": {"recursive": "deep"}}],
    "session/create": [{"id": 5}, {"id": "s", "env": []}, {"id": "s", "cwd": {}}],
    "rename": [{"oldPath": 1, "newPath": 2}],
}

NATIVE_BAD_BODIES = [
    {"id": 5}, {"env": []}, {"env": {"A": 1}}, {"labels": {"a": 1}}, {"labels": "x"},
    {"limits": {"memoryBytes": "x"}}, {"limits": {"memoryBytes": -1}},
    {"limits": {"memoryBytes": 2 ** 70}}, {"limits": {"pids": 0}}, {"limits": "big"},
    {"limits": {"cpuMillis": 1e300}}, {"instanceType": 3}, {"image": ["x"]},
    {"user": "admin"}, {"id": "x" * 10000},
    # misspelt fields are refused, not ignored (a sandbox of another type would be made)
    {"type": "lite"}, {"instance_type": "lite"}, {"limits": {"cpu": 100}}, {"\u202e\x00" * 100: 1},
]


@pytest.fixture(scope="module")
def vsb(api):
    sid = unique_id("valid")
    api.create(id=sid)
    yield sid
    api.delete(f"/v1/sandboxes/{sid}")


def check_4xx(r, status=400, code="VALIDATION_FAILED"):
    assert 400 <= r.status_code < 500, f"{r.status_code}: {r.text[:300]}"
    body = r.json()
    assert body["httpStatus"] == r.status_code and body["message"], body
    if status is not None:
        assert r.status_code == status, f"{r.status_code}: {r.text[:300]}"
    if code is not None:
        assert body["code"] == code, body
    return body


@pytest.mark.parametrize("route", sorted(REQUIRED))
def test_missing_fields(api, vsb, route):
    for field in REQUIRED[route]:
        body = dict(JSON_ROUTES[route])
        del body[field]
        r = api.post(f"/v1/sandboxes/{vsb}/api/{route}", body)
        msg = check_4xx(r)["message"]
        assert field in msg, f"message does not name {field}: {msg}"


@pytest.mark.parametrize("route", sorted(WRONG_TYPES))
def test_wrong_types(api, vsb, route):
    for body in WRONG_TYPES[route]:
        r = api.post(f"/v1/sandboxes/{vsb}/api/{route}", body)
        check_4xx(r, status=400, code=None)


@pytest.mark.parametrize("route", sorted(JSON_ROUTES))
@pytest.mark.parametrize("payload", [
    b"\xff\xfe\x00garbage\x80\x81", b"{", b'{"command": "true"', b"[]", b'"string"', b"1",
    b"null", b"", b'{"a":' * 5000,
], ids=["binary", "open-brace", "truncated", "array", "string", "number", "null", "empty",
        "deep-nesting"])
def test_garbage_bodies(api, vsb, route, payload):
    r = api.request("POST", f"/v1/sandboxes/{vsb}/api/{route}", data=payload,
                    headers={"Content-Type": "application/json"})
    if route == "session/create" and payload == b"" and r.status_code == 200:
        return  # every field is optional there: an empty body may count as {}
    check_4xx(r)


@pytest.mark.parametrize("body", NATIVE_BAD_BODIES, ids=lambda b: json.dumps(b)[:40])
def test_native_create_bad_bodies(api, body):
    before = set(api.list_ids())
    r = api.post("/v1/sandboxes", body)
    check_4xx(r, status=400, code="VALIDATION_FAILED")
    assert set(api.list_ids()) == before


def test_native_create_names_an_unknown_field(api):
    r = api.post("/v1/sandboxes", {"id": unique_id("typo"), "type": "lite"})
    check_4xx(r, status=400, code="VALIDATION_FAILED")
    assert 'unknown field "type"' in r.json()["message"] and "instanceType" in r.json()["message"]


def test_native_create_garbage(api):
    for payload in (b"\x00\x01\x02", b"[1,2]", b"{", b"nul"):
        r = api.request("POST", "/v1/sandboxes", data=payload,
                        headers={"Content-Type": "application/json"})
        check_4xx(r)


def test_huge_values(api, vsb):
    for body in ({"command": "true", "timeoutMs": 1e300},
                 {"command": "true", "timeoutMs": 2 ** 80},
                 {"command": "true", "env": {"A" * 100_000: "x"}},
                 {"command": "true", "env": {"BAD=KEY": "x"}},
                 {"command": "true", "env": {"": "x"}}):
        r = api.post(f"/v1/sandboxes/{vsb}/api/execute", body)
        assert r.status_code == 400, f"{str(body)[:80]}: {r.status_code} {r.text[:200]}"
        check_4xx(r, status=400, code=None)
    r = api.post(f"/v1/sandboxes/{vsb}/api/read", {"path": "/workspace/" + "a" * 100_000})
    check_4xx(r, status=None, code=None)
    r = api.post(f"/v1/sandboxes/{vsb}/api/write", {"path": "/workspace/z\0y", "content": "x"})
    check_4xx(r, status=400, code=None)
    api.alive(vsb)


@pytest.mark.parametrize("bad", ["UPPER", "a" * 64, "../x", "a_b", "%2e%2e", "a%20b", "sb.1"])
def test_invalid_ids_in_paths(api, bad):
    for route in ("execute", "read", "session/create"):
        r = api.post(f"/v1/sandboxes/{bad}/api/{route}", {"command": "true", "path": "/x"})
        if r.status_code == 404 and r.json().get("code") == "NOT_FOUND":
            continue  # the path did not even match a route: acceptable for "../x"
        check_4xx(r, status=400, code="VALIDATION_FAILED")
    r = api.get(f"/v1/sandboxes/{bad}")
    check_4xx(r, status=None, code=None)
    assert not any(i.lower() == bad.lower() for i in api.list_ids())


def test_unknown_routes(api, vsb):
    for method, path in (("GET", "/v1/nope"), ("GET", "/v2/sandboxes"), ("GET", "/"),
                         ("POST", f"/v1/sandboxes/{vsb}/api/nope"),
                         ("GET", f"/v1/sandboxes/{vsb}/nope"),
                         ("GET", f"/v1/sandboxes/{vsb}/api/execute/stream/extra")):
        r = api.request(method, path)
        check_4xx(r, status=404, code=None)
    check_4xx(api.get("/v1/nope"), status=404, code="NOT_FOUND")


def test_wrong_methods(api, vsb):
    for method, path in (("PUT", "/v1/sandboxes"), ("PATCH", f"/v1/sandboxes/{vsb}"),
                         ("DELETE", "/v1/sandboxes"), ("GET", f"/v1/sandboxes/{vsb}/api/execute"),
                         ("DELETE", "/v1/images")):
        r = api.request(method, path)
        check_4xx(r, status=405, code=None)


def raw_oversized(coved, path, total, content_type="application/json"):
    """Sends a request announcing `total` bytes and streams zeros until the server
    answers (or total is sent); returns the status line."""
    s = socket.create_connection(("127.0.0.1", coved.port), timeout=60)
    try:
        s.sendall((f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {coved.token}\r\n"
                   f"Content-Type: {content_type}\r\nContent-Length: {total}\r\n\r\n").encode())
        chunk = b"0" * MiB
        sent = 0
        deadline = time.monotonic() + 120
        while sent < total and time.monotonic() < deadline:
            r, _, _ = select.select([s], [], [], 0)
            if r:
                break
            try:
                s.sendall(chunk[:min(len(chunk), total - sent)])
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        s.settimeout(30)
        data = b""
        try:
            while b"\r\n" not in data:
                more = s.recv(4096)
                if not more:
                    break
                data += more
        except (ConnectionResetError, socket.timeout):
            pass
        return data.split(b"\r\n", 1)[0].decode(errors="replace")
    finally:
        s.close()


@pytest.mark.slow
def test_oversized_bodies_are_413(coved, api, vsb):
    for path in (f"/v1/sandboxes/{vsb}/api/write", f"/v1/sandboxes/{vsb}/api/execute",
                 "/v1/sandboxes"):
        status = raw_oversized(coved, path, 1 << 30)
        assert " 413 " in status + " ", f"{path}: {status!r}"
    api.alive(vsb)


def test_headers_and_urls_out_of_bounds(coved, api):
    s = socket.create_connection(("127.0.0.1", coved.port), timeout=30)
    s.sendall(b"GET /v1/sandboxes HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20) +
              b"\r\n\r\n")
    s.settimeout(30)
    try:
        status = s.recv(4096).split(b"\r\n", 1)[0]
    except (ConnectionResetError, socket.timeout):
        status = b""
    s.close()
    assert not status.startswith(b"HTTP/1.1 2") and not status.startswith(b"HTTP/1.1 5"), status
    r = api.get("/v1/sandboxes/" + "a" * 100_000)
    assert 400 <= r.status_code < 500
    api.alive()


def test_slow_and_broken_clients_do_not_block(coved, api):
    """A client that sends half a request and stalls does not stop others."""
    stalled = socket.create_connection(("127.0.0.1", coved.port), timeout=30)
    stalled.sendall(b"POST /v1/sandboxes HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
    garbage = socket.create_connection(("127.0.0.1", coved.port), timeout=30)
    garbage.sendall(os.urandom(4096))
    t0 = time.monotonic()
    api.alive()
    assert time.monotonic() - t0 < 5
    stalled.close()
    garbage.close()


# ---------------------------------------------------------------- ids a client names

# Each is refused wherever a client names an id (docs/api.md, "Ids").
BAD_IDS = {
    "nul": "s\u0000x", "newline": "s\nx", "tab": "s\tx", "del": "s\u007fx", "c1": "s\u0085x",
    "bidi-override": "s\u202ex", "bidi-isolate": "s\u2066x", "zero-width": "s\u200bx",
    "line-separator": "s\u2028x", "bom": "\ufeffs", "tag": "s\U000e0041x", "overlong": "s" * 10_000,
    "257-bytes": "s" * 257,
}


@pytest.mark.parametrize("name", sorted(BAD_IDS))
def test_bad_ids_are_refused(api, vsb, name):
    bad = BAD_IDS[name]
    cases = [
        ("execute", {"command": "touch /tmp/bad-id", "sessionId": bad}, "sessionId"),
        ("execute/stream", {"command": "touch /tmp/bad-id", "sessionId": bad}, "sessionId"),
        ("execute", {"command": "touch /tmp/bad-id", "background": True, "processId": bad}, "processId"),
        ("session/create", {"id": bad}, "id"),
        ("session/delete", {"sessionId": bad}, "sessionId"),
        ("process/start", {"command": "touch /tmp/bad-id", "sessionId": bad}, "sessionId"),
        ("process/start", {"command": "touch /tmp/bad-id", "processId": bad}, "processId"),
        ("write", {"path": "/tmp/bad-id", "content": "x", "sessionId": bad}, "sessionId"),
        ("execute/code", {"code": "1", "context_id": bad}, "context_id"),
        ("execute/code", {"code": "1", "contextId": bad}, "contextId"),
        ("port-watch", {"port": 8080, "processId": bad}, "processId"),
        ("watch", {"path": "/tmp", "sessionId": bad}, "sessionId"),
        ("git/checkout", {"repoUrl": "https://example.com/r.git", "sessionId": bad}, "sessionId"),
    ]
    for route, body, field in cases:
        r = api.post(f"/v1/sandboxes/{vsb}/api/{route}", body)
        msg = check_4xx(r)["message"]
        assert f"'{field}'" in msg, f"{route}: message does not name {field}: {msg}"
    r = api.get(f"/v1/sandboxes/{vsb}/api/contexts/{quote(bad, safe='')}")
    assert "'contextId'" in check_4xx(r)["message"]
    r = api.get(f"/v1/sandboxes/{vsb}/ws/pty?sessionId={quote(bad, safe='')}",
                headers={"Upgrade": "websocket", "Connection": "Upgrade"})
    assert "'sessionId'" in check_4xx(r)["message"]
    # Nothing reached the sandbox.
    assert api.sh(vsb, "test -e /tmp/bad-id && echo yes || echo no") == "no\n"
    sessions = api.call(vsb, "session/list", method="GET")["data"]
    assert bad not in sessions and not any(len(s) > 256 for s in sessions), sessions


def test_unusual_but_valid_ids_work(api, vsb):
    for sid in ("s" * 256, "sessão ünïcode 1", "日本語-セッション", "emoji-\U0001f600"):
        out = api.exec(vsb, "echo $((40+2))", session=sid)
        assert out["exitCode"] == 0 and out["stdout"] == "42\n", (sid, out)
        assert out["sessionId"] == sid
    api.call(vsb, "session/delete", {"sessionId": "s" * 256})


# ---------------------------------------------------------------- command size

COMMAND_LIMIT = 1 << 20  # bytes (docs/api.md)


def command_of(size, marker):
    """A command of exactly `size` bytes that prints `marker`."""
    head = f"echo {marker} #"
    return head + "x" * (size - len(head))


def test_command_at_the_limit_runs_on_every_path(api, vsb):
    cmd = command_of(COMMAND_LIMIT, "sessionless")
    assert api.sh(vsb, cmd) == "sessionless\n"
    out = api.exec(vsb, command_of(COMMAND_LIMIT, "in-session"), session="big-commands")
    assert out["exitCode"] == 0 and out["stdout"] == "in-session\n", {k: str(v)[:200] for k, v in out.items()}
    # A long command in the middle of the range argv alone could not carry either.
    assert api.sh(vsb, command_of(200_000, "mid")) == "mid\n"
    api.call(vsb, "process/start", {"command": command_of(COMMAND_LIMIT, "background"),
                                    "processId": "big-command"})
    logs = f"/v1/sandboxes/{vsb}/api/process/big-command/logs"
    wait_until(lambda: api.get(logs).json().get("stdout") == "background\n", 20, what=lambda: api.get(logs).text[:300])
    # The staged script is not left open to the command.
    assert api.sh(vsb, command_of(100_000, "fd") + "\nls /proc/self/fd | grep -qx 9 && echo open || echo closed") \
        == "fd\nclosed\n"


@pytest.mark.parametrize("size", [COMMAND_LIMIT + 1, 10 * MiB])
def test_command_over_the_limit_is_400(api, vsb, size):
    for route, extra in (("execute", {"sessionId": "__DISABLE_SESSION__"}), ("execute", {}),
                         ("execute/stream", {}), ("process/start", {}), ("execute", {"background": True})):
        r = api.post(f"/v1/sandboxes/{vsb}/api/{route}", {"command": command_of(size, "no"), **extra})
        msg = check_4xx(r)["message"]
        assert f"command is {size} bytes; the limit is {COMMAND_LIMIT} bytes" in msg, (route, msg)
    api.alive(vsb)


# ---------------------------------------------------------------- request smuggling

# Framing headers a server in front of another could read differently (RFC 9112
# §6): each must be a 400 that closes the connection, whatever follows.
SMUGGLING = {
    "te-gzip": "Transfer-Encoding: gzip\r\n",
    "te-identity": "Transfer-Encoding: identity\r\n",
    "te-xchunked": "Transfer-Encoding: xchunked\r\n",
    "te-chunked-identity": "Transfer-Encoding: chunked, identity\r\n",
    "te-chunked-twice": "Transfer-Encoding: chunked, chunked\r\n",
    "te-gzip-then-chunked": "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
    "te-and-cl": "Transfer-Encoding: gzip\r\nContent-Length: {n}\r\n",
    "cl-twice": "Content-Length: {n}\r\nContent-Length: {n}\r\n",
    "cl-list": "Content-Length: {n}, {n}\r\n",
    "http10-te": "Transfer-Encoding: chunked\r\n",
}


def read_responses(s, timeout=10):
    """Reads from s until the server closes it; returns (data, closed)."""
    s.settimeout(timeout)
    data = b""
    try:
        while True:
            more = s.recv(65536)
            if not more:
                return data, True
            data += more
    except ConnectionResetError:
        return data, True
    except socket.timeout:
        return data, False


@pytest.mark.parametrize("name", sorted(SMUGGLING))
def test_request_smuggling_is_refused(coved, api, vsb, name):
    marker = f"/tmp/smuggled-{name}"
    inner = json.dumps({"command": f"touch {marker}", "sessionId": "__DISABLE_SESSION__"})
    smuggled = (f"POST /v1/sandboxes/{vsb}/api/execute HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {coved.token}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(inner)}\r\n\r\n{inner}")
    version = "HTTP/1.0" if name == "http10-te" else "HTTP/1.1"
    framing = SMUGGLING[name].format(n=len(smuggled))
    outer = (f"POST /v1/sandboxes/{vsb}/api/execute {version}\r\nHost: x\r\n"
             f"Authorization: Bearer {coved.token}\r\nContent-Type: application/json\r\n"
             f"Connection: keep-alive\r\n{framing}\r\n{smuggled}")
    s = socket.create_connection(("127.0.0.1", coved.port), timeout=30)
    try:
        s.sendall(outer.encode())
        data, closed = read_responses(s)
    finally:
        s.close()
    assert data.startswith(b"HTTP/1.1 400 "), data[:300]
    assert data.count(b"HTTP/1.1 ") == 1, f"more than one answer: {data[:600]!r}"
    assert closed, "the connection stayed open"
    assert json.loads(data.partition(b"\r\n\r\n")[2])["code"] == "BAD_REQUEST", data[:300]
    assert api.sh(vsb, f"test -e {marker} && echo smuggled || echo clean") == "clean\n"
