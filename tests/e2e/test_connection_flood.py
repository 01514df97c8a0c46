"""Connection floods against coved's HTTP listeners (the API and the preview
listener), with coved under a low descriptor limit (prlimit --nofile=300).

400 connections that send nothing, or only part of a request head, are held
open; meanwhile a fresh request must be answered, coved must not burn the CPU,
and its log must stay small: the accept loop sheds the longest-idle
connections (over its caps, or out of descriptors) and waits instead of
retrying a failing accept at once, and logs accept failures at most once per
interval. Each flood runs with the caps coved derives from its descriptor
limit, and with caps above that limit, so that accept(2) itself fails with
EMFILE.
"""

import os
import socket
import time

import pytest
import requests

from helpers import MiB, proc_stat, unique_id, wait_until

pytestmark = pytest.mark.slow

FLOOD = 400
LOW_FD_LIMIT = ["prlimit", "--nofile=300"]
CAPS = {
    "derived-caps": [],
    "caps-above-fd-limit": ["--max-connections-per-listener", "1000", "--max-connections-per-address", "1000"],
}
PAYLOADS = {
    "silent": b"",
    "partial-head": b"GET /v1/sandboxes HTTP/1.1\r\nHost: flood\r\nX-Slow: ",
}
HOLD_SECONDS = 4


def cpu_seconds(pid):
    """User + system CPU time of a process, all threads (/proc/PID/stat fields 14 and 15)."""
    fields = proc_stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_flood(port, payload):
    socks = []
    for _ in range(FLOOD):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        if payload:
            s.sendall(payload)
        socks.append(s)
    return socks


def check_survives_flood(coved, port, payload, probe):
    """Floods `port`; probe() must succeed during the flood; bounds CPU and log."""
    log_before = os.path.getsize(coved.log_path)
    cpu_before, wall_before = cpu_seconds(coved.pid), time.monotonic()
    socks = open_flood(port, payload)
    try:
        probe()
        time.sleep(HOLD_SECONDS)  # the point: the flood held open for a while
        probe()
        cpu = cpu_seconds(coved.pid) - cpu_before
        wall = time.monotonic() - wall_before
    finally:
        for s in socks:
            s.close()
    assert cpu < 0.5 * wall, f"coved used {cpu:.2f} s of CPU in {wall:.2f} s of flood"
    logged = os.path.getsize(coved.log_path) - log_before
    assert logged < 1 * MiB, f"coved logged {logged} bytes during the flood"
    assert coved.alive()


@pytest.fixture(params=list(CAPS), ids=list(CAPS))
def low_fd_coved(request, coved_factory):
    c, _ = coved_factory(args=["--network", "none"] + CAPS[request.param], prefix=LOW_FD_LIMIT)
    return c


@pytest.mark.parametrize("payload", list(PAYLOADS.values()), ids=list(PAYLOADS))
def test_api_answers_during_a_connection_flood(low_fd_coved, payload):
    c = low_fd_coved

    def probe():
        r = requests.get(c.url + "/v1/sandboxes", headers={"Authorization": f"Bearer {c.token}"}, timeout=10)
        assert r.status_code == 200, r.text

    check_survives_flood(c, c.port, payload, probe)


@pytest.mark.parametrize("payload", list(PAYLOADS.values()), ids=list(PAYLOADS))
def test_preview_answers_during_a_connection_flood(low_fd_coved, payload):
    c = low_fd_coved

    def probe():
        # No such preview host: the listener's own answer, 404.
        r = requests.get(f"http://127.0.0.1:{c.preview_port}/", headers={"Host": "8000-nope-tok.localhost"},
                         timeout=10)
        assert r.status_code == 404, r.text

    check_survives_flood(c, c.preview_port, payload, probe)


def test_over_the_address_cap_with_nothing_idle_the_api_answers_503(coved_factory):
    """Connections past their request head are never shed: with an address's
    every slot busy (streaming commands), a new connection from it is refused
    with 503 TOO_MANY_CONNECTIONS and Connection: close."""
    c, a = coved_factory(args=["--network", "none", "--max-connections-per-address", "4"])
    sid = unique_id("cap")
    a.create(id=sid)
    auth = {"Authorization": f"Bearer {c.token}"}
    streams = []
    try:
        for _ in range(4):
            r = requests.post(f"{c.url}/v1/sandboxes/{sid}/api/execute/stream", json={"command": "sleep 600"},
                              headers=auth, stream=True, timeout=60)
            assert r.status_code == 200, r.text
            streams.append(r)
        r = requests.get(c.url + "/v1/sandboxes", headers=auth, timeout=10)
        assert r.status_code == 503, r.text
        assert r.headers.get("Connection", "").lower() == "close"
        body = r.json()
        assert body["code"] == "TOO_MANY_CONNECTIONS" and body["httpStatus"] == 503, body
    finally:
        for r in streams:
            r.close()
    # The streams' clients went away: their slots are free again.
    wait_until(lambda: requests.get(c.url + "/v1/sandboxes", headers=auth, timeout=10).status_code == 200, 30)
