"""/api/port-watch (waitForPort): readiness of servers started in a sandbox."""

import json

import pytest

from helpers import assert_error, sse_events

pytestmark = pytest.mark.processes


def watch(api, sid, body, timeout=60):
    r = api.request("POST", f"/v1/sandboxes/{sid}/api/port-watch", json_body=body, stream=True, timeout=timeout)
    assert r.status_code == 200, r.text
    return [json.loads(e["data"]) for e in sse_events(r)]


def test_http_server_becomes_ready(api, make_sandbox):
    sid = make_sandbox()
    api.call(sid, "process/start", {"command": "sleep 0.5; exec python3 -m http.server 8080 --bind 127.0.0.1",
                                    "processId": "web"})
    events = watch(api, sid, {"port": 8080, "mode": "http", "path": "/", "interval": 100})
    assert events[0] == {"type": "watching", "port": 8080}
    assert events[-1]["type"] == "ready" and events[-1]["port"] == 8080 and events[-1]["statusCode"] == 200


def test_http_status_range_and_tcp_mode(api, make_sandbox):
    sid = make_sandbox()
    api.call(sid, "process/start", {"command": "exec python3 -m http.server 8081 --bind 127.0.0.1",
                                    "processId": "web"})
    # /missing answers 404: ready only for a range that includes it
    events = watch(api, sid, {"port": 8081, "path": "/missing", "statusMin": 400, "statusMax": 404,
                              "interval": 100})
    assert events[-1]["type"] == "ready" and events[-1]["statusCode"] == 404
    events = watch(api, sid, {"port": 8081, "mode": "tcp", "interval": 100})
    assert events[-1] == {"type": "ready", "port": 8081}


def test_process_exit_ends_the_watch(api, make_sandbox):
    sid = make_sandbox()
    api.call(sid, "process/start", {"command": "sleep 0.3; exit 3", "processId": "dies"})
    events = watch(api, sid, {"port": 8082, "mode": "tcp", "processId": "dies", "interval": 100})
    assert events[-1] == {"type": "process_exited", "port": 8082, "exitCode": 3}


def test_bad_input(api, sb):
    url = f"/v1/sandboxes/{sb}/api/port-watch"
    for body in ({}, {"port": 0}, {"port": 70000}, {"port": "80"}, {"port": 80, "mode": "udp"},
                 {"port": 80, "statusMin": 99}):
        assert_error(api.post(url, body), 400, "VALIDATION_FAILED")
