"""coved against its written contract, api/openapi.yaml.

Every route of the spec is called on the real coved with valid and invalid
input; each answer's status must be listed for that route and its body (JSON,
text, or every event of an SSE stream) must match the listed schema. Response
schemas are closed (additionalProperties: false, every always-present field
required), so renaming, adding or dropping a field fails here. The last test
checks that every route and status class of the spec was exercised and that
the schemas really reject a renamed field.
"""

import copy
import io
import json
import os
import re
import select
import socket
import tarfile

import jsonschema
import pytest
import yaml

from helpers import REPO, sse_events, unique_id, wait_until
from test_images import minimal_rootfs, tar_bytes

SPEC_PATH = os.path.join(REPO, "api", "openapi.yaml")
METHODS = ("get", "put", "post", "delete", "patch")
PARAM = re.compile(r"\{([A-Za-z]+)\}")


def fill(template, sid, name="default", process="p1"):
    """A concrete path for a spec template."""
    values = {"id": sid, "name": name, "processId": process, "asset": "xterm.js", "port": "8000",
              "contextId": "ctx-none"}
    return PARAM.sub(lambda m: values[m.group(1)], template)


# ---------------------------------------------------------------- the contract

def _resolve(spec, node):
    while isinstance(node, dict) and "$ref" in node and len(node) == 1:
        ref = node["$ref"]
        assert ref.startswith("#/"), ref
        node = spec
        for part in ref[2:].split("/"):
            node = node[part]
    return node


class Contract:
    """Validates answers against the spec and records what was checked."""

    def __init__(self, spec):
        self.spec = spec
        self.checked = set()     # (template, method, status)
        self.samples = {}        # schema $ref -> a valid 2xx JSON body
        self._patterns = []
        for template in spec["paths"]:
            rx = "^" + re.sub(r"\\\{[A-Za-z]+\\\}", "[^/]+", re.escape(template)) + "$"
            self._patterns.append((re.compile(rx), template))

    def template_of(self, path):
        """The spec template of a path; as in OpenAPI, a concrete path
        (/process/list) wins over a templated one (/process/{processId})."""
        path = path.split("?", 1)[0]
        matches = [t for rx, t in self._patterns if rx.match(path)]
        assert matches, f"{path}: no spec template"
        fewest = min(len(PARAM.findall(t)) for t in matches)
        matches = [t for t in matches if len(PARAM.findall(t)) == fewest]
        assert len(matches) == 1, f"{path}: spec templates {matches}"
        return matches[0]

    def validate(self, instance, schema, what):
        root = dict(schema)
        root["components"] = self.spec["components"]
        errors = sorted(jsonschema.Draft202012Validator(root).iter_errors(instance), key=str)
        assert not errors, f"{what}: {errors[0].message} at {list(errors[0].absolute_path)}\n" \
                           f"body: {json.dumps(instance)[:800]}"

    def check(self, r, method, path=None, events=None):
        """Checks a requests response; returns its parsed JSON body (or the
        list of SSE event objects, or the text)."""
        path = path or r.request.path_url
        template = self.template_of(path)
        op = self.spec["paths"][template].get(method.lower())
        assert op, f"{method} {template} is not in the spec"
        status = str(r.status_code)
        assert status in op["responses"], \
            f"{method} {path}: status {status} is not listed in the spec ({sorted(op['responses'])}): {r.text[:300]}"
        resp = _resolve(self.spec, op["responses"][status])
        ctype = r.headers.get("content-type", "").split(";")[0].strip()
        assert ctype in resp.get("content", {}), \
            f"{method} {path}: {status} with content type {ctype!r}, spec has {list(resp.get('content', {}))}"
        media = resp["content"][ctype]
        what = f"{method} {path} -> {status}"
        self.checked.add((template, method.lower(), status))
        if ctype == "application/json":
            body = r.json()
            self.validate(body, media["schema"], what)
            if r.status_code >= 400:
                assert body["httpStatus"] == r.status_code, body
            elif "$ref" in media["schema"]:
                self.samples.setdefault(media["schema"]["$ref"], body)
            return body
        if ctype == "text/event-stream":
            if events is None:
                events = [json.loads(e["data"]) for e in sse_events(r)]
            assert events, f"{what}: empty event stream"
            for ev in events:
                self.validate(ev, media["x-sse-event"], what + " event")
            return events
        self.validate(r.text, media["schema"], what)
        return r.text


@pytest.fixture(scope="module")
def spec():
    with open(SPEC_PATH) as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def contract(spec):
    return Contract(spec)


def call(api, contract, method, path, body=None, *, raw=None, expect=None, headers=None,
         auth=True, stream=False):
    """One request, checked against the contract; returns (status, body)."""
    kw = {"auth": auth, "headers": headers, "stream": stream}
    if raw is not None:
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        kw["headers"] = h
        r = api.request(method, path, data=raw, **kw)
    elif body is not None:
        r = api.request(method, path, json_body=body, **kw)
    else:
        r = api.request(method, path, **kw)
    out = contract.check(r, method, path)
    if expect is not None:
        assert r.status_code == expect, f"{method} {path} {body or raw!r}: {r.status_code} {r.text[:500]}"
    return r.status_code, out


def code_of(out):
    return out.get("code") if isinstance(out, dict) else None


# ---------------------------------------------------------------- the spec itself

def test_spec_is_well_formed(spec):
    assert spec["openapi"].startswith("3.1")
    refs = []

    def walk(node, where):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "$ref":
                    refs.append((v, where))
                else:
                    walk(v, where + "/" + str(k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{where}/{i}")

    walk(spec, "")
    for ref, where in refs:
        try:
            _resolve(spec, {"$ref": ref})
        except (KeyError, AssertionError):
            pytest.fail(f"{where}: unresolvable $ref {ref}")
    for name, schema in spec["components"]["schemas"].items():
        root = dict(schema)
        root["components"] = spec["components"]
        jsonschema.Draft202012Validator.check_schema(root)
    for template, item in spec["paths"].items():
        params = set(PARAM.findall(template))
        declared = {_resolve(spec, p)["name"] for p in item.get("parameters", [])}
        assert params == declared, f"{template}: path parameters {params} vs declared {declared}"
        for method in METHODS:
            if method not in item:
                continue
            op = item[method]
            assert op.get("responses"), f"{method} {template} has no responses"
            if op.get("security") != []:  # public: the terminal page's assets
                assert "401" in op["responses"], f"{method} {template}: every route can answer 401"
            for status, resp in op["responses"].items():
                resp = _resolve(spec, resp)
                assert resp.get("description"), f"{method} {template} {status}: no description"
                assert resp.get("content"), f"{method} {template} {status}: no content"


def test_every_route_refuses_a_missing_or_wrong_token(api, contract, spec):
    for template, item in spec["paths"].items():
        path = fill(template, "openapi-noauth", "openapi-noauth", "openapi-noauth")
        for method in METHODS:
            if method not in item or item[method].get("security") == []:
                continue
            body = {} if method in ("post", "put", "patch") else None
            for headers in (None, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
                status, out = call(api, contract, method.upper(), path, body, auth=False,
                                   headers=headers, expect=401)
                assert out["code"] == "UNAUTHORIZED"
    assert "openapi-noauth" not in api.list_ids()


# ---------------------------------------------------------------- native routes

def test_sandbox_lifecycle(api, contract):
    sid = unique_id("oa")
    api.seen_ids.add(sid)
    try:
        body = {"id": sid, "image": "default", "instanceType": "lite", "user": "root",
                "limits": {"cpuMillis": 500, "pids": 256}, "env": {"OA": "1"},
                "labels": {"suite": "openapi"}}
        _, created = call(api, contract, "POST", "/v1/sandboxes", body, expect=201)
        assert created["id"] == sid and created["state"] == "running"
        assert created["labels"] == {"suite": "openapi"}
        assert created["limits"]["cpuMillis"] == 500 and created["limits"]["pids"] == 256
        _, out = call(api, contract, "POST", "/v1/sandboxes", {"id": sid}, expect=409)
        assert out["code"] == "SANDBOX_ALREADY_EXISTS"

        _, listing = call(api, contract, "GET", "/v1/sandboxes", expect=200)
        assert sid in [s["id"] for s in listing["sandboxes"]]
        _, info = call(api, contract, "GET", f"/v1/sandboxes/{sid}", expect=200)
        assert info == created or info["id"] == sid

        for method in ("PUT", "DELETE", "PATCH"):
            _, out = call(api, contract, method, "/v1/sandboxes", {}, expect=405)
            assert out["code"] == "METHOD_NOT_ALLOWED"
        for method in ("POST", "PUT", "PATCH"):
            call(api, contract, method, f"/v1/sandboxes/{sid}", {}, expect=405)

        _, out = call(api, contract, "DELETE", f"/v1/sandboxes/{sid}", expect=200)
        assert out == {"id": sid, "deleted": True}
        call(api, contract, "DELETE", f"/v1/sandboxes/{sid}", expect=200)   # idempotent
        _, out = call(api, contract, "GET", f"/v1/sandboxes/{sid}", expect=404)
        assert out["code"] == "SANDBOX_NOT_FOUND"
    finally:
        api.delete(f"/v1/sandboxes/{sid}")


def test_sandbox_with_a_generated_id(api, contract):
    _, created = call(api, contract, "POST", "/v1/sandboxes", expect=201)
    api.seen_ids.add(created["id"])
    try:
        assert re.fullmatch(r"sb-[0-9a-f]{12}", created["id"]), created
        assert created["instanceType"] == "basic" and created["image"] == "default"
    finally:
        call(api, contract, "DELETE", f"/v1/sandboxes/{created['id']}", expect=200)


@pytest.mark.parametrize("raw", [
    "[]", "{", "null", '"x"', '{"id": "UPPER"}', '{"id": ""}', '{"id": 7}',
    '{"instanceType": "huge"}', '{"image": "no-such-image"}', '{"user": "admin"}',
    '{"limits": {"cpuMillis": 1}}', '{"limits": {"memoryBytes": 1.5}}', '{"limits": []}',
    '{"env": {"A": 1}}', '{"env": {"9X": "y"}}', '{"labels": ["x"]}', '{"id": "' + "a" * 64 + '"}',
])
def test_create_refuses_bad_bodies(api, contract, raw):
    _, out = call(api, contract, "POST", "/v1/sandboxes", raw=raw, expect=400)
    assert out["code"] == "VALIDATION_FAILED" and out["message"]


def test_bad_ids_are_400_on_every_sandbox_route(api, contract, spec):
    for template, item in spec["paths"].items():
        if "{id}" not in template:
            continue
        path = fill(template, "Bad_Id")
        for method in METHODS:
            if method in item and "400" in item[method]["responses"]:
                body = {} if method == "post" else None
                _, out = call(api, contract, method.upper(), path, body, expect=400)
                assert out["code"] == "VALIDATION_FAILED" and out["context"] == {"id": "Bad_Id"}, out


def _tiny_rootfs_tar():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for d in ("etc", "workspace", "tmp"):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            t.addfile(info)
        data = b"openapi\n"
        info = tarfile.TarInfo("etc/marker")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_images(api, contract):
    tar_headers = {"Content-Type": "application/x-tar"}
    name = unique_id("oa-img")
    _, out = call(api, contract, "POST", f"/v1/images/{name}", raw=_tiny_rootfs_tar(),
                  headers=tar_headers, expect=201)
    assert out["name"] == name
    _, out = call(api, contract, "POST", f"/v1/images/{name}", raw=_tiny_rootfs_tar(),
                  headers=tar_headers, expect=409)
    assert out["code"] == "IMAGE_ALREADY_EXISTS"
    _, out = call(api, contract, "POST", "/v1/images/default", raw=_tiny_rootfs_tar(),
                  headers=tar_headers, expect=409)
    _, out = call(api, contract, "POST", f"/v1/images/{unique_id('oa-bad')}", raw=b"not a tar",
                  headers=tar_headers, expect=400)
    assert out["code"] == "VALIDATION_FAILED"
    _, out = call(api, contract, "POST", "/v1/images/Bad_Name", raw=_tiny_rootfs_tar(),
                  headers=tar_headers, expect=400)
    _, listing = call(api, contract, "GET", "/v1/images", expect=200)
    names = [i["name"] for i in listing["images"]]
    assert "default" in names and name in names
    for method in ("GET", "PUT", "DELETE"):
        _, out = call(api, contract, method, f"/v1/images/{name}", expect=405)
        assert out["code"] == "METHOD_NOT_ALLOWED"
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        call(api, contract, method, "/v1/images", {}, expect=405)


def test_secrets(api, contract):
    call(api, contract, "PUT", "/v1/secrets/OPENAPI_T", {"value": "v"}, expect=200)
    _, out = call(api, contract, "PUT", "/v1/secrets/OPENAPI_P",
                  {"value": "v", "placeholder": True, "hosts": ["api.example.test"]}, expect=200)
    assert out["placeholder"].startswith("cove-placeholder-")
    _, listing = call(api, contract, "GET", "/v1/secrets", expect=200)
    assert {"OPENAPI_T", "OPENAPI_P"} <= {s["name"] for s in listing["secrets"]}
    call(api, contract, "GET", "/v1/secrets/OPENAPI_P", expect=200)
    call(api, contract, "GET", "/v1/secrets/lower", expect=400)
    call(api, contract, "GET", "/v1/secrets/OPENAPI_NONE", expect=404)
    call(api, contract, "PUT", "/v1/secrets/OPENAPI_T", {"value": 1}, expect=400)
    call(api, contract, "PUT", "/v1/secrets/OPENAPI_T", {"value": "v", "hosts": ["x.test"]}, expect=400)
    call(api, contract, "DELETE", "/v1/secrets/OPENAPI_T", expect=200)
    call(api, contract, "DELETE", "/v1/secrets/OPENAPI_P", expect=200)
    call(api, contract, "DELETE", "/v1/secrets/OPENAPI_T", expect=404)
    call(api, contract, "DELETE", "/v1/secrets/a-b", expect=400)


# ---------------------------------------------------------------- compatible API

def compat(sid, route):
    return f"/v1/sandboxes/{sid}/api/{route}"


def test_root_ping_and_version(api, contract, sb):
    _, text = call(api, contract, "GET", f"/v1/sandboxes/{sb}/", expect=200)
    assert sb in text
    _, out = call(api, contract, "GET", compat(sb, "ping"), expect=200)
    assert out["status"] == "healthy"
    _, out = call(api, contract, "GET", compat(sb, "version"), expect=200)
    # coved answers these itself: no sandbox is created for them.
    ghost = unique_id("oa-ghost")
    call(api, contract, "GET", compat(ghost, "ping"), expect=200)
    call(api, contract, "GET", compat(ghost, "version"), expect=200)
    assert ghost not in api.list_ids()


def test_sessions(api, contract, sb):
    sid = unique_id("s")
    _, out = call(api, contract, "POST", compat(sb, "session/create"),
                  {"id": sid, "env": {"OA_VAR": "v"}, "cwd": "/tmp", "commandTimeoutMs": 60000}, expect=200)
    assert out["id"] == sid and out["data"] == {"id": sid}
    _, out = call(api, contract, "POST", compat(sb, "session/create"), {"id": sid}, expect=409)
    assert out["code"] == "SESSION_ALREADY_EXISTS"
    _, out = call(api, contract, "POST", compat(sb, "session/create"),
                  {"id": unique_id("s"), "cwd": "/no/such/dir"}, expect=404)
    assert out["code"] == "FILE_NOT_FOUND"
    _, as_user = call(api, contract, "POST", compat(sb, "session/create"),
                      {"id": unique_id("s"), "user": "user"}, expect=200)
    call(api, contract, "POST", compat(sb, "session/delete"), {"sessionId": as_user["id"]}, expect=200)
    _, generated = call(api, contract, "POST", compat(sb, "session/create"), {}, expect=200)
    assert generated["id"].startswith("session_")
    for bad in ({"env": {"A": 1}}, {"env": "x"}, {"env": {"1BAD": "x"}}, {"env": {"A-B": "x"}},
                {"env": {"A": "nul\u0000"}}, {"commandTimeoutMs": 0}, {"cwd": 5}, {"id": []},
                {"user": "admin"}, {"user": 1}):
        _, out = call(api, contract, "POST", compat(sb, "session/create"), bad, expect=400)
        assert out["code"] == "VALIDATION_FAILED", (bad, out)

    _, out = call(api, contract, "GET", compat(sb, "session/list"), expect=200)
    assert sid in out["data"] and generated["id"] in out["data"]

    _, out = call(api, contract, "POST", compat(sb, "session/delete"), {"sessionId": sid}, expect=200)
    assert out["sessionId"] == sid
    call(api, contract, "POST", compat(sb, "session/delete"), {"sessionId": generated["id"]}, expect=200)
    call(api, contract, "POST", compat(sb, "session/delete"), {"sessionId": unique_id("s")}, expect=200)
    for bad in ({}, {"sessionId": ""}, {"sessionId": 3}):
        _, out = call(api, contract, "POST", compat(sb, "session/delete"), bad, expect=400)
        assert out["code"] == "VALIDATION_FAILED"
    _, out = call(api, contract, "GET", compat(sb, "session/list"), expect=200)
    assert sid not in out["data"]


def test_execute(api, contract, sb):
    _, out = call(api, contract, "POST", compat(sb, "execute"),
                  {"command": "echo out; echo err >&2", "env": {"X": "1"}, "cwd": "/tmp"}, expect=200)
    assert out["stdout"] == "out\n" and out["stderr"] == "err\n" and out["exitCode"] == 0
    assert out["success"] is True and out["sessionId"] == "default"
    _, out = call(api, contract, "POST", compat(sb, "execute"),
                  {"command": "exit 3", "sessionId": "__DISABLE_SESSION__"}, expect=200)
    assert out["exitCode"] == 3 and out["success"] is False
    _, out = call(api, contract, "POST", compat(sb, "execute"),
                  {"command": "sleep 5", "sessionId": "__DISABLE_SESSION__", "timeoutMs": 300}, expect=200)
    assert out["exitCode"] == 124 and "timed out" in out["stderr"]
    # background: starts a process and answers like /api/process/start.
    pid = unique_id("oa-bg")
    _, out = call(api, contract, "POST", compat(sb, "execute"),
                  {"command": "echo bg", "background": True, "processId": pid}, expect=200)
    contract.validate(out, {"$ref": "#/components/schemas/ProcessStartResponse"}, "execute background")
    assert out["processId"] == pid and out["command"] == "echo bg" and out["pid"] > 0
    wait_until(lambda: call(api, contract, "GET", compat(sb, f"process/{pid}"),
                            expect=200)[1]["process"]["status"] == "completed", 20)
    _, out = call(api, contract, "POST", compat(sb, "execute"),
                  {"command": "true", "background": True, "processId": pid}, expect=409)
    assert out["code"] == "PROCESS_ALREADY_EXISTS"
    _, out = call(api, contract, "POST", compat(sb, "execute"),
                  {"command": "true", "background": True, "processId": "a/b"}, expect=400)
    assert out["code"] == "VALIDATION_FAILED"
    for raw in ("{", "[1]", "{}", '{"command": ""}', '{"command": 1}', '{"command": "true", "env": {"A": []}}',
                '{"command": "true", "timeoutMs": "5"}', '{"command": "true", "timeoutMs": -1}',
                '{"command": "true", "background": "yes"}', '{"command": "true", "cwd": false}',
                '{"command": "true", "env": {"": "x"}}', '{"command": "true", "env": {"A=B": "x"}}'):
        _, out = call(api, contract, "POST", compat(sb, "execute"), raw=raw, expect=400)
        assert out["code"] == "VALIDATION_FAILED", (raw, out)


def test_execute_stream(api, contract, sb):
    path = compat(sb, "execute/stream")
    r = api.request("POST", path, json_body={"command": "echo a; echo b >&2; exit 4"}, stream=True)
    events = contract.check(r, "POST", path)
    types = [e["type"] for e in events]
    assert types[0] == "start" and types[-1] == "complete", types
    assert events[-1]["exitCode"] == 4
    assert "".join(e["data"] for e in events if e["type"] == "stdout") == "a\n"
    assert "".join(e["data"] for e in events if e["type"] == "stderr") == "b\n"
    for body in ({}, {"command": 5}):
        _, out = call(api, contract, "POST", path, body, expect=400)
        assert out["code"] == "VALIDATION_FAILED"
    # background is ignored: the command runs as a stream all the same.
    r = api.request("POST", path, json_body={"command": "echo fg", "background": True}, stream=True)
    events = contract.check(r, "POST", path)
    assert events[-1]["type"] == "complete" and events[-1]["exitCode"] == 0, events
    assert "".join(e["data"] for e in events if e["type"] == "stdout") == "fg\n"


def test_files(api, contract, sb):
    d = f"/tmp/{unique_id('oa')}"
    c = lambda route: compat(sb, route)  # noqa: E731

    _, out = call(api, contract, "POST", c("mkdir"), {"path": d + "/sub/deep", "recursive": True}, expect=200)
    assert out["recursive"] is True
    _, out = call(api, contract, "POST", c("mkdir"), {"path": d + "/sub"}, expect=409)
    assert out["code"] == "FILE_EXISTS"
    _, out = call(api, contract, "POST", c("mkdir"), {"path": d + "/missing/x"}, expect=404)
    assert out["code"] == "FILE_NOT_FOUND"

    _, out = call(api, contract, "POST", c("write"), {"path": d + "/a.txt", "content": "hello\n"}, expect=200)
    assert out["path"] == d + "/a.txt"
    call(api, contract, "POST", c("write"),
         {"path": d + "/b.bin", "content": "AAEC/w==", "encoding": "base64"}, expect=200)
    for body, code in (({"path": d + "/x", "content": "***", "encoding": "base64"}, "VALIDATION_FAILED"),
                       ({"path": d + "/x"}, "VALIDATION_FAILED"),
                       ({"content": "x"}, "VALIDATION_FAILED"),
                       ({"path": d + "/x", "content": "x", "encoding": "latin1"}, "VALIDATION_FAILED"),
                       ({"path": d + "/x", "content": 5}, "VALIDATION_FAILED")):
        _, out = call(api, contract, "POST", c("write"), body, expect=400)
        assert out["code"] == code, (body, out)
    _, out = call(api, contract, "POST", c("write"), {"path": d + "/big", "content": "x" * ((32 << 20) + 1)},
                  expect=413)
    assert out["code"] == "FILE_TOO_LARGE" and out["context"] == {"path": d + "/big"}

    _, out = call(api, contract, "POST", c("read"), {"path": d + "/a.txt"}, expect=200)
    assert out["content"] == "hello\n" and out["encoding"] == "utf-8" and out["isBinary"] is False
    _, out = call(api, contract, "POST", c("read"), {"path": d + "/b.bin"}, expect=200)
    assert out["content"] == "AAEC/w==" and out["encoding"] == "base64" and out["isBinary"] is True
    _, out = call(api, contract, "POST", c("read"), {"path": d + "/a.txt", "encoding": "base64"}, expect=200)
    assert out["content"] == "aGVsbG8K"
    _, out = call(api, contract, "POST", c("read"), {"path": d + "/none"}, expect=404)
    assert out["code"] == "FILE_NOT_FOUND"
    _, out = call(api, contract, "POST", c("read"), {"path": d}, expect=400)
    assert out["code"] == "IS_DIRECTORY"
    call(api, contract, "POST", c("read"), {"path": d + "/a.txt", "encoding": "ebcdic"}, expect=400)
    call(api, contract, "POST", c("read"), {}, expect=400)

    r = api.request("POST", c("read/stream"), json_body={"path": d + "/a.txt"}, stream=True)
    events = contract.check(r, "POST", c("read/stream"))
    assert [e["type"] for e in events] == ["metadata", "chunk", "complete"], events
    assert events[1]["data"] == "hello\n" and events[2]["bytesRead"] == 6
    r = api.request("POST", c("read/stream"), json_body={"path": d + "/none"}, stream=True)
    events = contract.check(r, "POST", c("read/stream"))
    assert events[-1]["type"] == "error" and events[-1]["code"] == "FILE_NOT_FOUND", events
    call(api, contract, "POST", c("read/stream"), {"path": 1}, expect=400)

    _, out = call(api, contract, "POST", c("exists"), {"path": d + "/a.txt"}, expect=200)
    assert out["exists"] is True
    _, out = call(api, contract, "POST", c("exists"), {"path": d + "/none"}, expect=200)
    assert out["exists"] is False
    call(api, contract, "POST", c("exists"), {}, expect=400)

    _, out = call(api, contract, "POST", c("list-files"), {"path": d, "options": {"recursive": True}}, expect=200)
    names = sorted(f["relativePath"] for f in out["files"])
    assert names == ["a.txt", "b.bin", "sub", "sub/deep"], names
    assert out["count"] == 4
    kinds = {f["relativePath"]: f["type"] for f in out["files"]}
    assert kinds["sub"] == "directory" and kinds["a.txt"] == "file"
    call(api, contract, "POST", c("list-files"), {"path": d, "options": "all"}, expect=400)
    call(api, contract, "POST", c("list-files"), {"path": d, "options": {"recursive": 1}}, expect=400)
    _, out = call(api, contract, "POST", c("list-files"), {"path": d + "/none"}, expect=404)

    _, out = call(api, contract, "POST", c("rename"), {"oldPath": d + "/a.txt", "newPath": d + "/c.txt"},
                  expect=200)
    assert out["path"] == d + "/a.txt" and out["newPath"] == d + "/c.txt"
    call(api, contract, "POST", c("rename"), {"oldPath": d + "/a.txt", "newPath": d + "/c.txt"}, expect=404)
    call(api, contract, "POST", c("rename"), {"oldPath": d + "/c.txt"}, expect=400)
    _, out = call(api, contract, "POST", c("move"),
                  {"sourcePath": d + "/c.txt", "destinationPath": d + "/sub/c.txt"}, expect=200)
    assert out["newPath"] == d + "/sub/c.txt"
    call(api, contract, "POST", c("move"), {"sourcePath": d + "/c.txt", "destinationPath": d + "/x"}, expect=404)
    call(api, contract, "POST", c("move"), {"destinationPath": d + "/x"}, expect=400)

    _, out = call(api, contract, "POST", c("delete"), {"path": d + "/sub/c.txt"}, expect=200)
    assert out["path"] == d + "/sub/c.txt"
    _, out = call(api, contract, "POST", c("delete"), {"path": d + "/sub/c.txt"}, expect=404)
    _, out = call(api, contract, "POST", c("delete"), {"path": d + "/sub"}, expect=400)
    assert out["code"] == "IS_DIRECTORY"
    call(api, contract, "POST", c("delete"), {"path": ""}, expect=400)
    api.sh(sb, f"rm -rf {d}")


def test_compat_routes_refuse_bodies_that_are_not_json_objects(api, contract, sb, spec):
    for template, item in spec["paths"].items():
        if "/api/" not in template or "200" not in item.get("post", {}).get("responses", {}):
            continue
        path = fill(template, sb)
        for raw in ("{", "[]", "true", '{"path": "/x"} trailing'):
            _, out = call(api, contract, "POST", path, raw=raw, expect=400)
            assert out["code"] == "VALIDATION_FAILED", (path, raw, out)


def test_processes(api, contract, make_sandbox):
    sb = make_sandbox()   # its own sandbox: list and kill-all see only this test's processes
    p = lambda rest: compat(sb, "process/" + rest)  # noqa: E731

    def status_of(pid):
        return call(api, contract, "GET", p(pid), expect=200)[1]["process"]["status"]

    # start: with every field; a generated id; a duplicate id; bad input.
    _, out = call(api, contract, "POST", p("start"),
                  {"command": "echo out; echo err >&2; echo $OA_VAR; pwd; exit 3", "processId": "oa-done",
                   "env": {"OA_VAR": "v"}, "cwd": "/tmp", "sessionId": "__DISABLE_SESSION__",
                   "encoding": "utf-8", "autoCleanup": True}, expect=200)
    assert out["processId"] == "oa-done" and out["pid"] > 0 and out["command"].startswith("echo out")
    _, gen = call(api, contract, "POST", p("start"), {"command": "true"}, expect=200)
    assert re.fullmatch(r"proc_[0-9]+_[a-z0-9]{6}", gen["processId"]), gen
    _, run = call(api, contract, "POST", p("start"),
                  {"command": "sleep 60", "processId": "oa-run", "sessionId": "oa-s", "timeoutMs": 120000},
                  expect=200)
    _, out = call(api, contract, "POST", p("start"), {"command": "true", "processId": "oa-run"}, expect=409)
    assert out["code"] == "PROCESS_ALREADY_EXISTS"
    for raw in ("{}", '{"command": ""}', '{"command": 1}', '{"command": "true", "processId": ""}',
                '{"command": "true", "processId": "a b"}', '{"command": "true", "processId": "a/b"}',
                '{"command": "true", "processId": 5}', '{"command": "true", "processId": "' + "x" * 129 + '"}',
                '{"command": "true", "timeoutMs": 0}', '{"command": "true", "env": {"A": 1}}',
                '{"command": "true", "cwd": 1}', '{"command": "true", "autoCleanup": "yes"}',
                '{"command": "true", "encoding": 8}', '{"command": "true", "sessionId": []}'):
        _, out = call(api, contract, "POST", p("start"), raw=raw, expect=400)
        assert out["code"] == "VALIDATION_FAILED", (raw, out)
    # A process that cannot start is 500 and listed with status error.
    _, out = call(api, contract, "POST", p("start"),
                  {"command": "true", "processId": "oa-nocwd", "cwd": "/no/such/dir"}, expect=500)
    _, out = call(api, contract, "GET", p("oa-nocwd"), expect=200)
    assert out["process"]["status"] == "error" and out["process"]["pid"] == 0, out

    # get and logs of a finished process, and of a running one.
    wait_until(lambda: status_of("oa-done") == "failed", 20, what=lambda: status_of("oa-done"))
    wait_until(lambda: status_of(gen["processId"]) == "completed", 20)
    _, out = call(api, contract, "GET", p("oa-done"), expect=200)
    done = out["process"]
    assert done["id"] == "oa-done" and done["exitCode"] == 3 and done["endTime"] >= done["startTime"], done
    _, logs = call(api, contract, "GET", p("oa-done/logs"), expect=200)
    assert logs["processId"] == "oa-done" and logs["stdout"] == "out\nv\n/tmp\n" and logs["stderr"] == "err\n"
    assert logs["stdoutDropped"] == 0 and logs["stderrDropped"] == 0
    _, out = call(api, contract, "GET", p("oa-run"), expect=200)
    assert out["process"]["status"] == "running" and out["process"]["pid"] == run["pid"]
    assert "exitCode" not in out["process"] and "endTime" not in out["process"]
    _, logs = call(api, contract, "GET", p("oa-run/logs"), expect=200)
    assert logs["stdout"] == "" and logs["stderr"] == ""

    # list, all and by status.
    _, out = call(api, contract, "GET", p("list"), expect=200)
    assert sorted(x["id"] for x in out["processes"]) == sorted(["oa-done", gen["processId"], "oa-run", "oa-nocwd"])
    _, out = call(api, contract, "GET", p("list?status=running"), expect=200)
    assert [x["id"] for x in out["processes"]] == ["oa-run"]
    _, out = call(api, contract, "GET", p("list?status=failed"), expect=200)
    assert [x["id"] for x in out["processes"]] == ["oa-done"]
    for bad in ("bogus", "RUNNING", ""):
        status, out = call(api, contract, "GET", p(f"list?status={bad}"))
        if bad == "":
            assert status == 200, out   # an empty filter is no filter
        else:
            assert status == 400 and out["code"] == "VALIDATION_FAILED", (bad, out)

    # stream: a finished process gives its held output and exit at once; a
    # running one its output live, then exit.
    r = api.request("GET", p("oa-done/stream"), stream=True)
    events = contract.check(r, "GET", p("oa-done/stream"))
    assert events[0]["type"] == "process_info" and events[0]["processId"] == "oa-done", events
    assert events[0]["status"] == "failed" and events[0]["command"] == done["command"]
    assert events[-1]["type"] == "exit" and events[-1]["exitCode"] == 3, events
    assert events[-1]["data"] == "Process completed with exit code 3"
    assert "".join(e["data"] for e in events if e["type"] == "stdout") == "out\nv\n/tmp\n"
    assert "".join(e["data"] for e in events if e["type"] == "stderr") == "err\n"
    call(api, contract, "POST", p("start"), {"command": "echo a; sleep 0.5; echo b >&2", "processId": "oa-live"},
         expect=200)
    r = api.request("GET", p("oa-live/stream"), stream=True)
    events = contract.check(r, "GET", p("oa-live/stream"))
    assert [e["type"] for e in events if e["type"] != "dropped"] == ["process_info", "stdout", "stderr", "exit"], events
    assert events[-1]["exitCode"] == 0

    # timeoutMs kills the process: killed, exit code 124.
    call(api, contract, "POST", p("start"), {"command": "sleep 60", "processId": "oa-timeout", "timeoutMs": 300},
         expect=200)
    wait_until(lambda: status_of("oa-timeout") == "killed", 20, what=lambda: status_of("oa-timeout"))
    assert call(api, contract, "GET", p("oa-timeout"), expect=200)[1]["process"]["exitCode"] == 124

    # kill one: 200 at once, then killed with exit code 143; again (already ended): 200.
    _, out = call(api, contract, "DELETE", p("oa-run"), expect=200)
    assert out["processId"] == "oa-run"
    wait_until(lambda: status_of("oa-run") == "killed", 20, what=lambda: status_of("oa-run"))
    assert call(api, contract, "GET", p("oa-run"), expect=200)[1]["process"]["exitCode"] == 143
    call(api, contract, "DELETE", p("oa-run"), expect=200)
    call(api, contract, "DELETE", p("oa-done"), expect=200)

    # kill-all: counts the running processes only.
    for pid in ("oa-k1", "oa-k2"):
        call(api, contract, "POST", p("start"), {"command": "sleep 60", "processId": pid}, expect=200)
    _, out = call(api, contract, "DELETE", p("kill-all"), expect=200)
    assert out["cleanedCount"] == 2, out
    wait_until(lambda: status_of("oa-k1") == "killed" and status_of("oa-k2") == "killed", 20)
    _, out = call(api, contract, "DELETE", p("kill-all"), expect=200)
    assert out["cleanedCount"] == 0, out
    _, out = call(api, contract, "GET", p("list?status=running"), expect=200)
    assert out["processes"] == []

    # unknown processes: 404 PROCESS_NOT_FOUND on every per-process route.
    for method, rest in (("GET", "nope"), ("DELETE", "nope"), ("GET", "nope/logs"), ("GET", "nope/stream")):
        _, out = call(api, contract, method, p(rest), expect=404)
        assert out["code"] == "PROCESS_NOT_FOUND" and out["context"] == {"processId": "nope"}, (method, rest, out)

    # other methods: 405 METHOD_NOT_ALLOWED (before the sandbox is asked).
    for method, rest in (("GET", "start"), ("DELETE", "start"), ("POST", "list"), ("DELETE", "list"),
                         ("GET", "kill-all"), ("POST", "kill-all"), ("POST", "oa-done"), ("PUT", "oa-done"),
                         ("DELETE", "oa-done/logs"), ("POST", "oa-done/stream"), ("PATCH", "nope/logs")):
        _, out = call(api, contract, method, p(rest), {} if method != "GET" else None, expect=405)
        assert out["code"] == "METHOD_NOT_ALLOWED", (method, rest, out)
    api.alive(sb)


# ---------------------------------------------------------------- code interpreter

def _run_code(api, contract, sb, body):
    """POST /api/execute/code; returns (status, events or error body)."""
    path = compat(sb, "execute/code")
    r = api.request("POST", path, json_body=body, stream=True)
    return r.status_code, contract.check(r, "POST", path)


def test_code_interpreter(api, contract, make_sandbox):
    sb = make_sandbox()   # its own sandbox: the context list is this test's only
    c = lambda route: compat(sb, route)  # noqa: E731

    _, health = call(api, contract, "GET", c("interpreter/health"), expect=200)
    assert health["status"] == "healthy" and health["contexts"] == 0, health
    assert health["languages"] == {"python": True, "javascript": True, "typescript": True}, health

    # create: defaults, every field, aliases; bad input.
    _, py = call(api, contract, "POST", c("contexts"), expect=200)
    assert py["language"] == "python" and py["cwd"] == "/workspace", py
    api.sh(sb, "mkdir -p /tmp/oa-ctx")
    _, js = call(api, contract, "POST", c("contexts"),
                 {"language": "js", "cwd": "/tmp/oa-ctx", "env_vars": {"OA_CTX": "v"}}, expect=200)
    assert js["language"] == "javascript" and js["cwd"] == "/tmp/oa-ctx", js
    _, ts = call(api, contract, "POST", c("contexts"), {"language": "ts"}, expect=200)
    assert ts["language"] == "typescript"
    for body in ({"language": "cobol"}, {"language": 3}, {"cwd": "/no/such/dir"}, {"cwd": 5},
                 {"env_vars": {"A": 1}}, {"env_vars": {"1BAD": "x"}}, {"env_vars": "x"}):
        _, out = call(api, contract, "POST", c("contexts"), body, expect=400)
        assert out["code"] == "VALIDATION_FAILED", (body, out)

    # list and get.
    _, out = call(api, contract, "GET", c("contexts"), expect=200)
    assert sorted(x["id"] for x in out["contexts"]) == sorted([py["contextId"], js["contextId"], ts["contextId"]])
    _, out = call(api, contract, "GET", c(f"contexts/{py['contextId']}"), expect=200)
    info = out["context"]
    assert info["id"] == py["contextId"] and info["status"] == "ready" and info["executionCount"] == 0, info
    assert info["pid"] > 0 and "error" not in info

    # execute: output, results, an error; state persists.
    status, events = _run_code(api, contract, sb, {"context_id": py["contextId"],
                                                   "code": "import sys\nx = 41\nprint('out')\n"
                                                           "print('err', file=sys.stderr)\n{'a': x + 1}"})
    assert status == 200
    types = [e["type"] for e in events]
    assert types == ["stdout", "stderr", "result", "execution_complete"], events
    assert events[0]["text"] == "out\n" and events[1]["text"] == "err\n"
    assert events[2]["json"] == {"a": 42} and events[3]["execution_count"] == 1, events
    _, events = _run_code(api, contract, sb, {"contextId": py["contextId"], "code": "x + 1", "language": "python"})
    assert [e["type"] for e in events] == ["result", "execution_complete"] and events[0]["text"] == "42", events
    _, events = _run_code(api, contract, sb, {"context_id": py["contextId"], "code": "1 / 0"})
    assert [e["type"] for e in events] == ["error", "execution_complete"], events
    assert events[0]["ename"] == "ZeroDivisionError" and events[0]["traceback"], events
    assert not any("\x1b[" in line for line in events[0]["traceback"])
    _, events = _run_code(api, contract, sb, {"context_id": js["contextId"],
                                              "code": "console.log(process.cwd(), process.env.OA_CTX); [1, 2]"})
    assert events[0] == {**events[0], "type": "stdout", "text": "/tmp/oa-ctx v\n"}, events
    assert events[1]["type"] == "result" and events[1]["json"] == [1, 2], events
    _, events = _run_code(api, contract, sb, {"context_id": ts["contextId"],
                                              "code": "const n: number = 2; n * 3", "language": "typescript"})
    assert events[0]["type"] == "result" and events[0]["text"] == "6", events

    # timeout_ms interrupts and keeps the state.
    _, events = _run_code(api, contract, sb, {"context_id": py["contextId"], "code": "import time\ntime.sleep(60)",
                                              "timeout_ms": 300})
    assert events[-2]["type"] == "error" and events[-2]["ename"] == "TimeoutError", events
    assert events[-1]["type"] == "execution_complete" and events[-1]["timed_out"] is True, events
    _, events = _run_code(api, contract, sb, {"context_id": py["contextId"], "code": "x"})
    assert events[0]["text"] == "41", events

    # interrupt: idle, then while a run is under way.
    _, out = call(api, contract, "POST", c(f"contexts/{py['contextId']}/interrupt"), expect=200)
    assert out == {**out, "contextId": py["contextId"], "interrupted": False}, out
    path = c("execute/code")
    r = api.request("POST", path, json_body={"context_id": py["contextId"],
                                             "code": "import time\nprint('go', flush=True)\ntime.sleep(60)"},
                    stream=True)
    assert r.status_code == 200, r.text
    it = sse_events(r)
    first = json.loads(next(it)["data"])
    assert first["type"] == "stdout" and first["text"] == "go\n", first
    _, out = call(api, contract, "POST", c(f"contexts/{py['contextId']}/interrupt"), {}, expect=200)
    assert out["interrupted"] is True, out
    events = contract.check(r, "POST", path, events=[first] + [json.loads(e["data"]) for e in it])
    assert events[-2]["type"] == "error" and events[-2]["ename"] == "KeyboardInterrupt", events
    assert events[-1]["type"] == "execution_complete" and "timed_out" not in events[-1]

    # refused before the stream: plain JSON errors.
    for body in ({}, {"code": "1"}, {"context_id": "", "code": "1"}, {"context_id": py["contextId"]},
                 {"context_id": py["contextId"], "code": 5}, {"context_id": py["contextId"], "code": "1",
                                                              "timeout_ms": 0},
                 {"context_id": py["contextId"], "code": "1", "timeout_ms": "5"},
                 {"context_id": py["contextId"], "code": "1", "language": "javascript"}):
        status, out = _run_code(api, contract, sb, body)
        assert status == 400 and out["code"] == "VALIDATION_FAILED", (body, status, out)
    status, out = _run_code(api, contract, sb, {"context_id": "ctx-none", "code": "1"})
    assert status == 404 and out["code"] == "CONTEXT_NOT_FOUND", out

    # a crashed context: listed with its error, refused (409), restarted empty.
    _, events = _run_code(api, contract, sb, {"context_id": py["contextId"], "code": "import os\nos._exit(7)"})
    assert events[-1]["type"] == "execution_complete", events
    _, out = call(api, contract, "GET", c(f"contexts/{py['contextId']}"), expect=200)
    assert out["context"]["status"] == "crashed" and out["context"]["error"] and "pid" not in out["context"], out
    status, out = _run_code(api, contract, sb, {"context_id": py["contextId"], "code": "1"})
    assert status == 409 and out["code"] == "CONTEXT_CRASHED", out
    _, out = call(api, contract, "POST", c(f"contexts/{py['contextId']}/restart"), expect=200)
    assert out["contextId"] == py["contextId"] and out["language"] == "python", out
    _, events = _run_code(api, contract, sb, {"context_id": py["contextId"], "code": "'x' in globals()"})
    assert events[0]["text"] == "False", events
    _, out = call(api, contract, "GET", c(f"contexts/{py['contextId']}"), expect=200)
    assert out["context"]["status"] == "ready" and out["context"]["executionCount"] == 1, out

    # unknown contexts: 404 CONTEXT_NOT_FOUND on every per-context route.
    for method, rest in (("GET", "ctx-none"), ("DELETE", "ctx-none"), ("POST", "ctx-none/restart"),
                         ("POST", "ctx-none/interrupt")):
        _, out = call(api, contract, method, c(f"contexts/{rest}"), expect=404)
        assert out["code"] == "CONTEXT_NOT_FOUND", (method, rest, out)

    # delete.
    for ctx in (py, js, ts):
        _, out = call(api, contract, "DELETE", c(f"contexts/{ctx['contextId']}"), expect=200)
        assert out["contextId"] == ctx["contextId"]
    call(api, contract, "DELETE", c(f"contexts/{py['contextId']}"), expect=404)
    _, out = call(api, contract, "GET", c("contexts"), expect=200)
    assert out["contexts"] == []
    _, health = call(api, contract, "GET", c("interpreter/health"), expect=200)
    assert health["contexts"] == 0
    api.alive(sb)


def test_code_interpreter_without_interpreters(api, contract, tmp_path):
    """An image without python3 and node: 501 on create, health unhealthy."""
    root = tmp_path / "rootfs"
    minimal_rootfs(str(root))
    name = unique_id("oa-noint")
    _, out = call(api, contract, "POST", f"/v1/images/{name}", raw=tar_bytes(str(root)),
                  headers={"Content-Type": "application/x-tar"}, expect=201)
    sid = unique_id("oa-noint")
    api.seen_ids.add(sid)
    try:
        call(api, contract, "POST", "/v1/sandboxes", {"id": sid, "image": name}, expect=201)
        for language, code in (("python", "PYTHON_NOT_AVAILABLE"), ("javascript", "JAVASCRIPT_NOT_AVAILABLE"),
                               ("typescript", "JAVASCRIPT_NOT_AVAILABLE")):
            _, out = call(api, contract, "POST", compat(sid, "contexts"), {"language": language}, expect=501)
            assert out["code"] == code, (language, out)
        _, health = call(api, contract, "GET", compat(sid, "interpreter/health"), expect=200)
        assert health["status"] == "unhealthy" and health["contexts"] == 0, health
        assert health["languages"] == {"python": False, "javascript": False, "typescript": False}, health
        _, out = call(api, contract, "GET", compat(sid, "contexts"), expect=200)
        assert out["contexts"] == []
    finally:
        call(api, contract, "DELETE", f"/v1/sandboxes/{sid}", expect=200)


# ---------------------------------------------------------------- terminal page

def test_exposed_ports(api, contract, sb):
    base = f"/v1/sandboxes/{sb}/ports"
    _, out = call(api, contract, "POST", base, {"port": 8765, "name": "web"}, expect=201)
    assert out["port"] == 8765 and out["name"] == "web" and f"-{sb}-{out['token']}." in out["url"]
    _, out = call(api, contract, "POST", base, {"port": 8765}, expect=409)
    assert out["code"] == "PORT_ALREADY_EXPOSED"
    _, out = call(api, contract, "POST", base, {"port": 22}, expect=400)
    assert out["code"] == "INVALID_PORT"
    _, listing = call(api, contract, "GET", base, expect=200)
    assert [p["port"] for p in listing["ports"]] == [8765]
    ghost = f"/v1/sandboxes/{unique_id('oa-ghost')}/ports"
    call(api, contract, "GET", ghost, expect=404)
    call(api, contract, "POST", ghost, {"port": 8765}, expect=404)
    call(api, contract, "DELETE", ghost + "/8765", expect=404)
    _, out = call(api, contract, "DELETE", f"{base}/8765", expect=200)
    assert out == {"port": 8765, "deleted": True}
    _, out = call(api, contract, "DELETE", f"{base}/8765", expect=404)
    assert out["code"] == "PORT_NOT_EXPOSED"
    _, out = call(api, contract, "DELETE", f"{base}/x", expect=400)
    assert out["code"] == "INVALID_PORT"


def test_terminal_page(api, contract, sb):
    _, html = call(api, contract, "GET", f"/v1/sandboxes/{sb}/terminal?session=s1", expect=200)
    assert "/v1/terminal/terminal.js" in html and sb not in html
    # A browser's navigation carries the token in the query instead of a header.
    _, html = call(api, contract, "GET", f"/v1/sandboxes/{sb}/terminal?token={api.coved.token}", auth=False,
                   expect=200)
    assert api.coved.token not in html
    for name in ("xterm.js", "xterm.css", "addon-fit.js", "terminal.js", "terminal.css"):
        call(api, contract, "GET", f"/v1/terminal/{name}", auth=False, expect=200)
    _, out = call(api, contract, "GET", "/v1/terminal/terminal.html", auth=False, expect=404)
    assert out["code"] == "NOT_FOUND"


def test_egress(api, contract, sb):
    _, out = call(api, contract, "GET", f"/v1/sandboxes/{sb}/egress", expect=200)
    assert out["custom"] is False
    policy = {"enableInternet": False, "allowedHosts": ["*.example.com"], "deniedHosts": ["10.0.0.0/8"],
              "rules": [{"host": "git.example.com", "ports": [22]}]}
    _, out = call(api, contract, "PUT", f"/v1/sandboxes/{sb}/egress", policy, expect=200)
    assert out["custom"] is True and out["policy"]["allowedHosts"] == ["*.example.com"]
    _, out = call(api, contract, "PUT", f"/v1/sandboxes/{sb}/egress", {"enableInternet": "yes"}, expect=400)
    assert "enableInternet" in out["message"]
    _, out = call(api, contract, "PUT", f"/v1/sandboxes/{sb}/egress", {"rules": [{"host": "x", "ports": [0]}]},
                  expect=400)
    _, out = call(api, contract, "GET", f"/v1/sandboxes/{sb}/egress/denials", expect=200)
    assert out["total"] == len(out["denials"])
    _, out = call(api, contract, "DELETE", f"/v1/sandboxes/{sb}/egress", expect=200)
    assert out["custom"] is False
    _, out = call(api, contract, "GET", "/v1/sandboxes/no-such-sandbox-here/egress", expect=404)


# ---------------------------------------------------------------- outside the routes

def test_wrong_methods_are_405(api, contract, sb, spec):
    for template, item in spec["paths"].items():
        path = fill(template, sb)
        for method in METHODS:
            if method in item and "405" in item[method]["responses"]:
                _, out = call(api, contract, method.upper(), path, {} if method != "get" else None, expect=405)
                assert out["code"] == "METHOD_NOT_ALLOWED", (method, path, out)
    api.alive(sb)


def test_unknown_routes_are_404(api, contract, sb):
    envelope = {"$ref": "#/components/schemas/ErrorEnvelope"}
    for method, path in (("GET", "/v1/nothing"), ("GET", "/"), ("POST", compat(sb, "no-such-route")),
                         ("GET", compat(sb, "commands")), ("POST", f"/v1/sandboxes/{sb}/"),
                         ("GET", f"/v1/sandboxes/{sb}/other"), ("GET", "/v1/images/x/y"),
                         ("GET", compat(sb, "process/a/b")), ("DELETE", compat(sb, "process/a/b")),
                         ("GET", compat(sb, "process/p1/logs/x")), ("GET", compat(sb, "process/")),
                         ("POST", compat(sb, "process/start/x")), ("POST", compat(sb, "contexts/c/other")),
                         ("GET", compat(sb, "contexts/c/restart/x")), ("POST", compat(sb, "contexts//restart")),
                         ("GET", compat(sb, "interpreter"))):
        r = api.request(method, path, json_body={} if method == "POST" else None)
        assert r.status_code == 404, (method, path, r.status_code, r.text)
        body = r.json()
        contract.validate(body, envelope, f"{method} {path}")
        assert body["code"] == "NOT_FOUND" and body["httpStatus"] == 404


def _raw_http(coved, head, body_size=0):
    """Sends a raw request head, then up to body_size zero bytes until the server
    answers; returns (status, response head, response body)."""
    s = socket.create_connection(("127.0.0.1", coved.port), timeout=30)
    try:
        s.sendall(head)
        chunk, sent = b"0" * (1 << 20), 0
        while sent < body_size and not select.select([s], [], [], 0)[0]:
            try:
                s.sendall(chunk[:body_size - sent])
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        data = b""
        while True:
            try:
                more = s.recv(65536)
            except ConnectionResetError:
                break
            if not more:
                break
            data += more
            top, sep, rest = data.partition(b"\r\n\r\n")
            m = re.search(rb"content-length: *(\d+)", top, re.I)
            if sep and m and len(rest) >= int(m.group(1)):
                break
        top, _, rest = data.partition(b"\r\n\r\n")
        return int(top.split(b" ")[1]), top, rest
    finally:
        s.close()


def test_transport_errors(coved, api, contract, sb):
    transport = {"$ref": "#/components/schemas/TransportError"}
    status, head, body = _raw_http(coved, b"NOT AN HTTP REQUEST\r\n\r\n")
    assert status == 400 and b"application/json" in head.lower()
    contract.validate(json.loads(body), transport, "malformed request")
    # A JSON body over the 64 MiB limit is refused as soon as its length is announced.
    path = compat(sb, "execute")
    size = (64 << 20) + 1
    status, head, body = _raw_http(coved, (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {coved.token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n").encode(), size)
    assert status == 413
    out = json.loads(body)
    contract.validate(out, transport, "oversized body")
    assert out["code"] == "PAYLOAD_TOO_LARGE" and out["httpStatus"] == 413
    assert "413" in contract.spec["paths"][contract.template_of(path)]["post"]["responses"]
    api.alive(sb)


# ---------------------------------------------------------------- coverage and strictness

def test_zz_every_route_was_exercised_and_schemas_are_strict(request, contract, spec):
    module = request.module
    defined = {n for n, f in vars(module).items() if n.startswith("test_") and callable(f)}
    selected = [i for i in request.session.items if i.module is module]
    if {getattr(i, "originalname", i.name) for i in selected} != defined or \
            any(i.name not in _RAN for i in selected if i is not request.node):
        pytest.skip("only meaningful after the whole module ran")
    missing = []
    for template, item in spec["paths"].items():
        for method in METHODS:
            if method not in item:
                continue
            listed = item[method]["responses"]
            seen = {s for (t, m, s) in contract.checked if t == template and m == method}
            if any(s.startswith("2") for s in listed) and not any(s.startswith("2") for s in seen):
                missing.append(f"{method.upper()} {template}: no success answer checked")
            errors = {s for s in listed if s.startswith("4") and s != "401"}
            if errors and not errors & seen:
                missing.append(f"{method.upper()} {template}: none of {sorted(errors)} checked")
    assert not missing, "\n".join(missing)

    # A renamed, dropped or added field must fail validation.
    assert len(contract.samples) >= 15, sorted(contract.samples)
    for ref, body in contract.samples.items():
        if not isinstance(body, dict):
            continue
        schema = {"$ref": ref}
        for key in body:
            renamed = {(k + "X" if k == key else k): v for k, v in body.items()}
            with pytest.raises(AssertionError):
                contract.validate(renamed, schema, f"{ref} with {key} renamed")
        extra = copy.deepcopy(body)
        extra["unexpectedField"] = 1
        with pytest.raises(AssertionError):
            contract.validate(extra, schema, f"{ref} with an added field")


_RAN = set()


@pytest.fixture(autouse=True)
def _record_ran(request):
    yield
    _RAN.add(request.node.name)
