"""File routes of the compatible API (#10-#18), limits, paths and symlink escapes."""

import base64
import hashlib
import os
import secrets
import socket

import pytest

from helpers import MiB, assert_error, rss, unique_id, wait_until
from raw_http import request_bytes, unread_by_server

pytestmark = pytest.mark.files

NOSESSION = "__DISABLE_SESSION__"


def b64(data):
    return base64.b64encode(data).decode()


def test_write_read_utf8(api, sb):
    text = "héllo wörld ✓\nline 2\n"
    r = api.call(sb, "write", {"path": "/workspace/u.txt", "content": text})
    assert r["success"] is True and r["path"] == "/workspace/u.txt"
    r = api.call(sb, "read", {"path": "/workspace/u.txt"})
    assert r["content"] == text
    assert r["encoding"] == "utf-8" and r["isBinary"] is False
    assert r["size"] == len(text.encode())
    assert r["mimeType"].startswith("text/")
    assert api.sh(sb, "cat /workspace/u.txt") == text


def test_write_read_base64_round_trip(api, sb):
    data = secrets.token_bytes(200_000) + bytes(range(256))
    api.call(sb, "write", {"path": "/workspace/bin.dat", "content": b64(data),
                           "encoding": "base64"})
    r = api.call(sb, "read", {"path": "/workspace/bin.dat", "encoding": "base64"})
    assert r["encoding"] == "base64"
    assert base64.b64decode(r["content"]) == data
    assert r["size"] == len(data)
    # without an encoding, binary content is detected and sent as base64
    r = api.call(sb, "read", {"path": "/workspace/bin.dat"})
    assert r["isBinary"] is True and r["encoding"] == "base64"
    assert base64.b64decode(r["content"]) == data
    assert api.sh(sb, "sha256sum /workspace/bin.dat").split()[0] == \
        __import__("hashlib").sha256(data).hexdigest()


def test_32_mib_binary_round_trip_via_base64(api, sb):
    """The largest file the API takes, both ways through base64, checked by sha256
    inside the sandbox and after the read."""
    data = os.urandom(32 * MiB)
    digest = hashlib.sha256(data).hexdigest()
    api.call(sb, "write", {"path": "/workspace/big.bin", "content": b64(data), "encoding": "base64"},
             timeout=300)
    assert api.sh(sb, "sha256sum /workspace/big.bin").split()[0] == digest
    r = api.call(sb, "read", {"path": "/workspace/big.bin"}, timeout=300)
    assert r["encoding"] == "base64" and r["isBinary"] is True and r["size"] == 32 * MiB
    assert hashlib.sha256(base64.b64decode(r["content"], validate=True)).hexdigest() == digest
    api.sh(sb, "rm /workspace/big.bin")


def test_agent_returns_transfer_memory_when_idle(api):
    """The agent keeps large transfer buffers while busy, and gives them back once idle:
    thousands of idle sandboxes must stay small. A sandbox of its own, so that its idle
    size is not what earlier tests left."""
    sid = unique_id("idle-mem")
    agent = api.create(id=sid)["pid"]
    try:
        api.sh(sid, "true")
        idle = rss(agent)
        data = os.urandom(16 * MiB)
        for _ in range(2):
            api.call(sid, "write", {"path": "/workspace/t16.bin", "content": b64(data), "encoding": "base64"},
                     timeout=300)
            assert len(api.call(sid, "read", {"path": "/workspace/t16.bin"}, timeout=300)["content"]) > 16 * MiB
        assert wait_until(lambda: rss(agent) - idle < 4 * MiB, 30,
                          what="the agent's memory back within 4 MiB of its idle size")
    finally:
        api.destroy(sid)


def test_1_mib_text_round_trip_keeps_every_character(api, sb):
    text = "".join(f'\tline {i}: "quoted" \\ back, café ∑ 🦊 \x01\x1f\n' for i in range(20000))
    api.call(sb, "write", {"path": "/workspace/t1m.txt", "content": text})
    assert api.sh(sb, "sha256sum /workspace/t1m.txt").split()[0] == \
        hashlib.sha256(text.encode()).hexdigest()
    r = api.call(sb, "read", {"path": "/workspace/t1m.txt"})
    assert r["encoding"] == "utf-8" and r["isBinary"] is False and r["content"] == text


def test_invalid_utf8_read_as_utf8_is_repaired(api, sb):
    api.call(sb, "write", {"path": "/workspace/bad.txt", "content": b64(b"ok \xff\xfe end \xe2\x82"),
                           "encoding": "base64"})
    r = api.call(sb, "read", {"path": "/workspace/bad.txt", "encoding": "utf-8"})
    assert r["encoding"] == "utf-8" and r["isBinary"] is True
    assert r["content"] == "ok \ufffd\ufffd end \ufffd"


@pytest.mark.parametrize("content", ["Zm9v!mFy", "Zm9vYmE", "Zm9v\nYmFy", "Zg==Zg==", "=Zg=", "\u00e9\u00e9\u00e9\u00e9"])
def test_invalid_base64_is_400_and_writes_nothing(api, sb, content):
    body = assert_error(api.post(f"/v1/sandboxes/{sb}/api/write",
                                 {"path": "/workspace/never.bin", "content": content, "encoding": "base64"}),
                        400, "VALIDATION_FAILED")
    assert "base64" in body["message"]
    assert api.call(sb, "exists", {"path": "/workspace/never.bin"})["exists"] is False


def test_text_read_as_base64(api, sb):
    api.call(sb, "write", {"path": "/workspace/t64.txt", "content": "abc"})
    r = api.call(sb, "read", {"path": "/workspace/t64.txt", "encoding": "base64"})
    assert r["encoding"] == "base64" and base64.b64decode(r["content"]) == b"abc"


def test_empty_file(api, sb):
    api.call(sb, "write", {"path": "/workspace/empty", "content": ""})
    r = api.call(sb, "read", {"path": "/workspace/empty"})
    assert r["content"] == "" and r["size"] == 0


def test_read_stream(api, sb):
    data = secrets.token_bytes(300_000)
    api.call(sb, "write", {"path": "/workspace/s.bin", "content": b64(data),
                           "encoding": "base64"})
    events = api.stream(sb, "read/stream", {"path": "/workspace/s.bin"})
    assert events[0]["type"] == "metadata"
    assert events[0]["isBinary"] is True and events[0]["size"] == len(data)
    assert events[-1]["type"] == "complete" and events[-1]["bytesRead"] == len(data)
    chunks = [e for e in events if e["type"] == "chunk"]
    assert len(chunks) >= 2
    got = b"".join(base64.b64decode(c["data"]) for c in chunks)
    assert got == data

    text = "x" * 100_000 + "é\n"
    api.call(sb, "write", {"path": "/workspace/s.txt", "content": text})
    events = api.stream(sb, "read/stream", {"path": "/workspace/s.txt"})
    assert events[0]["type"] == "metadata" and events[0]["isBinary"] is False
    assert "".join(e["data"] for e in events if e["type"] == "chunk") == text


def test_read_stream_missing_file(api, sb):
    r = api.post(f"/v1/sandboxes/{sb}/api/read/stream", {"path": "/workspace/none"})
    if r.status_code == 200:
        events = [__import__("json").loads(line[6:]) for line in r.text.split("\n")
                  if line.startswith("data: ")]
        assert events[-1]["type"] == "error", events
    else:
        assert_error(r, 404, "FILE_NOT_FOUND")


def test_read_missing_is_404(api, sb):
    body = assert_error(api.post(f"/v1/sandboxes/{sb}/api/read", {"path": "/workspace/missing"}),
                        404, "FILE_NOT_FOUND")
    assert "/workspace/missing" in body["message"]


def test_read_limit_is_32_mib(api, sb):
    api.sh(sb, "yes abcdefgh | head -c 34000000 > /workspace/big.txt")
    assert_error(api.post(f"/v1/sandboxes/{sb}/api/read", {"path": "/workspace/big.txt"}), 413,
                 "FILE_TOO_LARGE")
    # just under the limit is fine (text, so the encoded size is the size)
    api.sh(sb, "truncate -s 30000000 /workspace/big.txt")
    r = api.call(sb, "read", {"path": "/workspace/big.txt"}, timeout=120)
    assert r["size"] == 30_000_000
    api.sh(sb, "rm /workspace/big.txt")


def test_write_creates_parents(api, sb):
    api.call(sb, "write", {"path": "/workspace/p/q/r/file.txt", "content": "deep"})
    assert api.sh(sb, "cat /workspace/p/q/r/file.txt") == "deep"


def test_mkdir_list_exists_rename_move_delete(api, sb):
    base = "/workspace/" + unique_id("tree")
    r = api.call(sb, "mkdir", {"path": base + "/a/b", "recursive": True})
    assert r["success"] is True and r["recursive"] is True
    # without recursive, a missing parent is an error
    r = api.post(f"/v1/sandboxes/{sb}/api/mkdir", {"path": base + "/x/y"})
    assert r.status_code >= 400
    api.call(sb, "mkdir", {"path": base + "/c"})
    api.call(sb, "write", {"path": base + "/a/f.txt", "content": "12345"})
    api.call(sb, "write", {"path": base + "/.hidden", "content": "h"})
    api.sh(sb, f"ln -s a/f.txt {base}/link")

    r = api.call(sb, "list-files", {"path": base})
    names = {f["name"]: f for f in r["files"]}
    assert set(names) == {"a", "c", "link"}, names
    assert r["count"] == 3
    assert names["a"]["type"] == "directory"
    assert names["link"]["type"] == "symlink"
    assert names["a"]["absolutePath"] == base + "/a"
    for f in r["files"]:
        assert set(f) >= {"name", "absolutePath", "relativePath", "type", "size", "modifiedAt",
                          "mode", "permissions"}, f
    r = api.call(sb, "list-files", {"path": base, "options": {"includeHidden": True,
                                                              "recursive": True}})
    rel = {f["relativePath"]: f for f in r["files"]}
    assert ".hidden" in rel
    deep = [f for f in r["files"] if f["name"] == "f.txt"]
    assert deep and deep[0]["type"] == "file" and deep[0]["size"] == 5

    assert api.call(sb, "exists", {"path": base + "/a/f.txt"})["exists"] is True
    assert api.call(sb, "exists", {"path": base + "/nope"})["exists"] is False

    r = api.call(sb, "rename", {"oldPath": base + "/a/f.txt", "newPath": base + "/a/g.txt"})
    assert r["success"] is True
    assert api.call(sb, "exists", {"path": base + "/a/f.txt"})["exists"] is False
    assert api.call(sb, "read", {"path": base + "/a/g.txt"})["content"] == "12345"

    r = api.call(sb, "move", {"sourcePath": base + "/a/g.txt",
                              "destinationPath": base + "/c/h.txt"})
    assert r["success"] is True
    assert api.call(sb, "read", {"path": base + "/c/h.txt"})["content"] == "12345"

    r = api.call(sb, "delete", {"path": base + "/c/h.txt"})
    assert r["success"] is True
    assert api.call(sb, "exists", {"path": base + "/c/h.txt"})["exists"] is False
    assert_error(api.post(f"/v1/sandboxes/{sb}/api/delete", {"path": base + "/c/h.txt"}), 404,
                 "FILE_NOT_FOUND")
    # a directory is not deleted by /api/delete
    r = api.post(f"/v1/sandboxes/{sb}/api/delete", {"path": base + "/a"})
    assert r.status_code == 400 and r.json()["code"] == "IS_DIRECTORY", r.text
    assert_error(api.post(f"/v1/sandboxes/{sb}/api/list-files", {"path": base + "/nope"}), 404,
                 "FILE_NOT_FOUND")


def test_read_a_directory_is_an_error(api, sb):
    r = api.post(f"/v1/sandboxes/{sb}/api/read", {"path": "/workspace"})
    assert r.status_code == 400 and r.json()["code"] == "IS_DIRECTORY", r.text


def test_relative_paths_follow_session_cwd(api, sb):
    s = unique_id("s")
    d = "/workspace/" + unique_id("rel")
    api.sh(sb, f"mkdir -p {d}")
    api.exec(sb, f"cd {d}", session=s)
    api.call(sb, "write", {"path": "r.txt", "content": "rel", "sessionId": s})
    assert api.sh(sb, f"cat {d}/r.txt") == "rel"
    assert api.call(sb, "read", {"path": "r.txt", "sessionId": s})["content"] == "rel"
    assert api.call(sb, "exists", {"path": "r.txt", "sessionId": s})["exists"] is True
    # without a session, relative paths are relative to /workspace
    api.call(sb, "write", {"path": "rel-root.txt", "content": "w"})
    assert api.sh(sb, "cat /workspace/rel-root.txt") == "w"


@pytest.fixture
def host_marker(coved):
    """A file on the host, outside any image, with a random content; removed after."""
    content = "HOST-SECRET-" + secrets.token_hex(16)
    paths = []
    for d in ("/root", coved.state_dir, "/tmp"):
        p = os.path.join(d, f"cove-e2e-marker-{secrets.token_hex(4)}")
        with open(p, "w") as f:
            f.write(content)
        paths.append(p)
    yield content, paths
    for p in paths:
        os.unlink(p)


def test_symlink_escape_reads_nothing_of_the_host(api, make_sandbox, host_marker):
    content, paths = host_marker
    sid = make_sandbox()
    responses, listings = [], []
    for i, p in enumerate(paths):
        d = os.path.dirname(p)
        rel = "../../../../../../../.." + p
        api.sh(sid, f"ln -s {rel} /workspace/esc{i}; ln -s ../../../../../../../..{d} "
                    f"/workspace/escdir{i}; ln -s {p} /workspace/abs{i}")
        for path in (f"/workspace/esc{i}", f"/workspace/abs{i}",
                     f"/workspace/escdir{i}/{os.path.basename(p)}", p):
            responses.append(api.post(f"/v1/sandboxes/{sid}/api/read", {"path": path}).text)
            responses.append(api.post(f"/v1/sandboxes/{sid}/api/read",
                                      {"path": path, "encoding": "base64"}).text)
            responses.append(api.post(f"/v1/sandboxes/{sid}/api/read/stream",
                                      {"path": path}).text)
        listing = api.post(f"/v1/sandboxes/{sid}/api/list-files",
                           {"path": f"/workspace/escdir{i}"}).text
        responses.append(listing)
        listings.append(listing)
        listings.append(api.exec(sid, f"ls -A /workspace/escdir{i}/ {d}",
                                 session="__DISABLE_SESSION__")["stdout"])
        responses.append(api.exec(sid, f"cat /workspace/esc{i} /workspace/escdir{i}/* {p}",
                                  session="__DISABLE_SESSION__")["stdout"])
    b64_content = base64.b64encode(content.encode()).decode()
    for text in responses:
        assert content not in text
        assert b64_content[:20] not in text
    for p in paths:  # (error messages may name the path; listings must not show it)
        assert os.path.basename(p) not in "".join(listings), "host directory listed"


def test_symlink_escape_writes_nothing_on_the_host(api, make_sandbox, tmp_path):
    sid = make_sandbox()
    target = tmp_path / "written-from-sandbox"
    api.sh(sid, f"ln -s ../../../../../../../..{target} /workspace/wesc; "
                f"ln -s {tmp_path} /workspace/wdir")
    for path in ("/workspace/wesc", f"/workspace/wdir/{target.name}", str(target)):
        api.post(f"/v1/sandboxes/{sid}/api/write", {"path": path, "content": "pwned"})
        api.post(f"/v1/sandboxes/{sid}/api/mkdir", {"path": path + ".d", "recursive": True})
    api.post(f"/v1/sandboxes/{sid}/api/rename", {"oldPath": "/workspace/wesc",
                                                  "newPath": str(tmp_path / "renamed")})
    assert sorted(os.listdir(tmp_path)) == [], os.listdir(tmp_path)


def test_file_routes_on_unknown_session_create_it(api, sb):
    s = unique_id("fs")
    r = api.call(sb, "write", {"path": "/workspace/sess.txt", "content": "x", "sessionId": s})
    assert r["success"] is True


@pytest.mark.slow
def test_full_disk_quota_is_507_and_nothing_is_left_behind(api, make_sandbox):
    sid = make_sandbox(limits={"diskBytes": 64 * MiB, "memoryBytes": 512 * MiB, "pids": 256,
                               "cpuMillis": 1000})
    api.call(sid, "write", {"path": "/workspace/keep.txt", "content": "old content"})
    api.sh(sid, "head -c 1048576 /dev/zero > /workspace/pad")
    out = api.exec(sid, "dd if=/dev/zero of=/workspace/fill bs=1M count=512; sync", session=NOSESSION,
                   timeoutMs=120000, timeout=180)
    assert "quota" in out["stderr"] or "space" in out["stderr"], out
    for path in ("/workspace/keep.txt", "/workspace/new.txt"):
        r = api.post(f"/v1/sandboxes/{sid}/api/write", {"path": path, "content": "x" * MiB})
        body = assert_error(r, 507, "DISK_QUOTA_EXCEEDED")
        assert body["context"]["path"] == path, body
    # A long command of a session is staged in a file: the same answer.
    r = api.post(f"/v1/sandboxes/{sid}/api/execute", {"command": "echo staged #" + "x" * 20000})
    assert_error(r, 507, "DISK_QUOTA_EXCEEDED")
    # Sessionless commands stage long scripts in memory: they still run.
    assert api.sh(sid, "echo in-memory #" + "x" * 200_000) == "in-memory\n"
    # With a little room the temporary file is made, and the write into it fails.
    api.sh(sid, "rm /workspace/pad; sync")
    r = api.post(f"/v1/sandboxes/{sid}/api/write", {"path": "/workspace/keep.txt", "content": "x" * (8 * MiB)})
    assert "cannot write" in assert_error(r, 507, "DISK_QUOTA_EXCEEDED")["message"]
    assert api.call(sid, "read", {"path": "/workspace/keep.txt"})["content"] == "old content"
    assert api.sh(sid, "ls -A /workspace") == "fill\nkeep.txt\n", "a temporary file was left"

    api.sh(sid, "rm /workspace/fill; sync")
    # (the quota's accounting may lag the delete by a transaction commit)
    wait_until(lambda: api.post(f"/v1/sandboxes/{sid}/api/write",
                                {"path": "/workspace/keep.txt", "content": "new content"}).status_code == 200, 20)
    assert api.call(sid, "read", {"path": "/workspace/keep.txt"})["content"] == "new content"
    out = api.exec(sid, "echo staged #" + "x" * 20000)
    assert out["exitCode"] == 0 and out["stdout"] == "staged\n"


def _write_temps(api, sid):
    """file.write's temporary files (".NAME.cove-XXXXXX") left in /workspace."""
    return [n for n in api.sh(sid, "ls -A /workspace").split() if ".cove-" in n]


def test_streamed_32_mib_utf8_write_is_byte_exact(api, sb):
    """A 32 MiB write crosses to the agent in many Data frames, cut anywhere (inside
    multi-byte characters too): the file is the text's exact bytes, checked inside
    the sandbox and read back; replacing it again leaves no temporary file."""
    line = "\tcafé ∑ 🦊 \"quoted\" \\ back\\slash line\n"
    text = (line * (32 * MiB // len(line.encode()) + 1))
    text = text.encode()[:32 * MiB].decode("utf-8", "ignore")
    data = text.encode()
    digest = hashlib.sha256(data).hexdigest()
    for _ in range(2):  # a new file, then replacing it
        r = api.call(sb, "write", {"path": "/workspace/stream.txt", "content": text}, timeout=300)
        assert r["success"] is True
        assert api.sh(sb, "sha256sum /workspace/stream.txt").split()[0] == digest
    r = api.call(sb, "read", {"path": "/workspace/stream.txt"}, timeout=300)
    assert r["encoding"] == "utf-8" and r["size"] == len(data)
    assert hashlib.sha256(r["content"].encode()).hexdigest() == digest
    assert _write_temps(api, sb) == []
    api.sh(sb, "rm /workspace/stream.txt")


def _until_closed(s):
    """Reads what coved still sends on s until it closes the connection: then it
    is done with the request (and so is the agent: coved answers after it)."""
    s.settimeout(120)
    while s.recv(65536):
        pass
    s.close()


def test_write_aborted_mid_body_leaves_no_file(api, coved, sb):
    """A client that sends half of a 32 MiB write and goes away: no file, no
    temporary file, and the old content of a replaced file stays."""
    api.call(sb, "write", {"path": "/workspace/kept.txt", "content": "old"})
    for path in ("/workspace/aborted.txt", "/workspace/kept.txt"):
        data = request_bytes(coved, "POST", f"/v1/sandboxes/{sb}/api/write",
                             {"path": path, "content": "y" * (32 * MiB)}, close=True)
        s = socket.create_connection((coved.host, coved.port), timeout=60)
        s.sendall(data[:len(data) // 2])
        s.shutdown(socket.SHUT_WR)
        _until_closed(s)
    assert api.call(sb, "exists", {"path": "/workspace/aborted.txt"})["exists"] is False
    assert api.call(sb, "read", {"path": "/workspace/kept.txt"})["content"] == "old"
    assert _write_temps(api, sb) == []


def test_write_whose_client_leaves_before_the_answer_is_whole_or_absent(api, coved, sb):
    """The client sends a whole 32 MiB write and hangs up at once: coved cancels
    the agent's write wherever it is. The file is then either absent or
    complete, never partial, and no temporary file remains."""
    content = "z" * (32 * MiB)
    for i in range(3):
        path = f"/workspace/left{i}.txt"
        s = socket.create_connection((coved.host, coved.port), timeout=60)
        s.sendall(request_bytes(coved, "POST", f"/v1/sandboxes/{sb}/api/write",
                                {"path": path, "content": content}, close=True))
        s.shutdown(socket.SHUT_WR)
        _until_closed(s)
        size = api.sh(sb, f"stat -c %s {path} 2>/dev/null || echo absent").strip()
        assert size in ("absent", str(32 * MiB)), size
        assert _write_temps(api, sb) == []
