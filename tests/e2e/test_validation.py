"""Bad input on every route: each answer is a 4xx in the error envelope, never a
5xx, a hang or a crash; coved keeps serving afterwards."""

import json
import os
import select
import socket
import time

import pytest

from helpers import MiB, unique_id

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
