"""Slow readers, vanished clients and big outputs (issue 10, items 1-3).

Each stream of the agent protocol has its own credit window: a client that
reads slowly, or not at all, stalls only the command it reads, never the
sandbox's other calls or its liveness pings. A client that leaves a
non-streamed command stops it. coved's memory stays bounded by what is in
flight, whatever the readers do.
"""

import base64
import os
import socket
import time

import pytest

from helpers import assert_error, rss, unique_id, wait_until
from raw_http import SlowReader, raw_request, unread_by_server

pytestmark = pytest.mark.exec

# coved's RSS may grow by at most this much while 20 readers stream `yes` as
# fast as they can (docs/architecture.md, "Memory").
RSS_BOUND_20_READERS = 160 << 20


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def ws_pty(coved, sid, session):
    s = socket.create_connection((coved.host, coved.port), timeout=30)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /v1/sandboxes/{sid}/ws/pty?sessionId={session}&token={coved.token} HTTP/1.1\r\n"
               f"Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


def ws_send_binary(s, data):
    mask = os.urandom(4)
    assert len(data) < 126
    s.sendall(bytes([0x82, 0x80 | len(data)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))


@pytest.mark.slow
def test_slow_and_paused_readers_stall_only_their_stream(api, coved):
    """Readers at 100 KB/s and paused readers of every streaming route, for 60 s,
    on a lite sandbox: the sandbox survives (its agent keeps answering pings every
    15 s), round trips on it keep working, and its files are intact."""
    sid = unique_id("slow")
    api.create(id=sid, instanceType="lite")
    api.sh(sid, "head -c 30000000 /dev/urandom > /workspace/big && echo kept > /workspace/mark")
    proc = api.call(sid, "process/start", {"command": "yes"})["processId"]
    readers = [
        SlowReader(raw_request(coved, "POST", f"/v1/sandboxes/{sid}/api/execute/stream", {"command": "yes"}), 100_000),
        SlowReader(raw_request(coved, "POST", f"/v1/sandboxes/{sid}/api/execute/stream",
                               {"command": "yes", "sessionId": "paused"}), 0),
        SlowReader(raw_request(coved, "GET", f"/v1/sandboxes/{sid}/api/process/{proc}/stream"), 0),
        SlowReader(raw_request(coved, "POST", f"/v1/sandboxes/{sid}/api/read/stream", {"path": "/workspace/big"}), 0),
    ]
    pty = ws_pty(coved, sid, "term")
    ws_send_binary(pty, b"yes\n")
    readers.append(SlowReader(pty, 0))
    for r in readers:
        r.start()
    try:
        end = time.monotonic() + 60
        rounds = 0
        while time.monotonic() < end:
            out = api.exec(sid, "echo ok", session="__DISABLE_SESSION__", timeout=20)
            assert out["stdout"] == "ok\n", out
            rounds += 1
            time.sleep(0.5)  # the pace of the checks over the 60 s
        assert rounds > 20
        assert readers[0].got > 1_000_000, "the 100 KB/s reader got too little"
        info = api.info(sid)
        assert info["state"] == "running", info
        assert api.sh(sid, "cat /workspace/mark") == "kept\n"
        assert api.sh(sid, "stat -c %s /workspace/big") == "30000000\n"
    finally:
        for r in readers:
            r.stop.set()
            r.sock.close()
    # The command that fed the paused stream is stopped with it: its session is free.
    assert api.exec(sid, "echo free", session="paused", timeout=30)["stdout"] == "free\n"
    api.call(sid, f"process/{proc}", method="DELETE")
    api.destroy(sid)


@pytest.mark.slow
def test_memory_is_bounded_with_20_fast_readers(api, coved):
    """20 clients stream `yes` as fast as they can read: coved's RSS grows by less
    than a documented bound, and gives the memory back afterwards."""
    sid = unique_id("mem")
    api.create(id=sid, instanceType="standard-3")
    api.alive(sid)
    base = rss(coved.pid)
    socks = [raw_request(coved, "POST", f"/v1/sandboxes/{sid}/api/execute/stream",
                         {"command": "yes", "sessionId": f"r{i}"}) for i in range(20)]
    readers = [SlowReader(s, 1 << 30) for s in socks]
    for r in readers:
        r.start()
    peak = base
    try:
        end = time.monotonic() + 15
        while time.monotonic() < end:
            peak = max(peak, rss(coved.pid))
            time.sleep(0.1)  # the sampling period
        assert sum(r.got for r in readers) > 20 << 20, "the readers got too little"
    finally:
        for r in readers:
            r.stop.set()
            r.sock.close()
    assert peak - base < RSS_BOUND_20_READERS, f"coved grew from {base >> 20} to {peak >> 20} MiB"
    wait_until(lambda: rss(coved.pid) - base < 64 << 20, 20,
               what=lambda: f"coved still holds {(rss(coved.pid) - base) >> 20} MiB more than before")
    api.destroy(sid)


def test_non_streamed_output_over_the_limit_is_a_clear_error(api, sb):
    """More than 16 MiB of output from /api/execute: 413 OUTPUT_TOO_LARGE, the
    command is stopped, and its session goes on."""
    s = unique_id("s")
    r = api.post(f"/v1/sandboxes/{sb}/api/execute",
                 {"command": "head -c 20000000 /dev/zero | tr '\\0' y; sleep 600", "sessionId": s})
    assert_error(r, 413, "OUTPUT_TOO_LARGE")
    assert "16777216" in r.json()["message"]
    # Stopped: the next command of the session does not wait for the sleep.
    assert api.exec(sb, "echo next", session=s, timeout=60)["stdout"] == "next\n"
    # Just under the limit is whole.
    r = api.exec(sb, "head -c 16000000 /dev/zero | tr '\\0' y", session=s)
    assert len(r["stdout"]) == 16000000


def test_a_client_that_leaves_stops_its_command(api, coved, sb):
    """Clients that close their connection while /api/execute runs stop their
    commands: no process, socket or fd stays behind, and the session is free."""
    api.alive(sb)
    fds_before = open_fds(coved.pid)
    socks = [raw_request(coved, "POST", f"/v1/sandboxes/{sb}/api/execute",
                         {"command": "sleep 300"}) for i in range(50)]
    # They queue in the default session: one runs, 49 wait.
    wait_until(lambda: "sleep 300" in api.sh(sb, "ps -eo args"), 20)
    wait_until(lambda: all(unread_by_server(s) == 0 for s in socks), 30, what="coved to read the 50 requests")
    for s in socks:
        s.close()
    wait_until(lambda: "sleep 300" not in api.sh(sb, "ps -eo args"), 60, what=lambda: api.sh(sb, "ps -eo args"))
    out = api.exec(sb, "echo free", timeout=30)  # the default session, where they queued
    assert out["stdout"] == "free\n"
    wait_until(lambda: open_fds(coved.pid) <= fds_before + 5, 20,
               what=lambda: f"coved has {open_fds(coved.pid)} fds, had {fds_before}")
