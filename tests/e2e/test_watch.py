"""File watching through the compatible API (/api/watch, /api/watch/check)."""

import json
import threading

import pytest

from helpers import assert_error, sse_events, wait_until

pytestmark = pytest.mark.files


def collect(api, sid, body, action, until, timeout=20):
    """Starts a watch, runs action() once it is established, returns the events
    read until until(events) is true, once action() has returned."""
    r = api.request("POST", f"/v1/sandboxes/{sid}/api/watch", json_body=body, stream=True, timeout=timeout)
    assert r.status_code == 200, r.text
    events, actions = [], []
    for e in sse_events(r):
        ev = json.loads(e["data"])
        events.append(ev)
        if ev["type"] == "watching":
            actions.append(threading.Thread(target=action))
            actions[-1].start()
        if until(events):
            break
    r.close()
    for t in actions:  # its command may still be answering: not after the sandbox is gone
        t.join()
    return events


def test_events_for_files_and_new_directories(api, make_sandbox):
    sid = make_sandbox()
    api.sh(sid, "mkdir -p /workspace/w")
    done = lambda evs: any(e.get("path") == "/workspace/w/d/e/f" and e.get("eventType") == "create" for e in evs) \
        and any(e.get("eventType") == "delete" for e in evs)
    events = collect(api, sid, {"path": "/workspace/w"},
                     lambda: api.sh(sid, "echo 1 > /workspace/w/a.txt; mkdir -p /workspace/w/d/e; "
                                         "echo 2 > /workspace/w/d/e/f; rm /workspace/w/a.txt"), done)
    assert events[0]["type"] == "watching" and events[0]["path"] == "/workspace/w"
    paths = {(e["eventType"], e["path"], e["isDirectory"]) for e in events if e["type"] == "event"}
    assert ("create", "/workspace/w/a.txt", False) in paths
    assert ("create", "/workspace/w/d", True) in paths
    assert ("create", "/workspace/w/d/e/f", False) in paths
    assert ("delete", "/workspace/w/a.txt", False) in paths


def test_include_globs_and_default_excludes(api, make_sandbox):
    sid = make_sandbox()
    api.sh(sid, "mkdir -p /workspace/g/node_modules /workspace/g/src")
    done = lambda evs: any(e.get("path", "").endswith("last.txt") for e in evs)
    events = collect(api, sid, {"path": "/workspace/g"},
                     lambda: api.sh(sid, "echo > /workspace/g/node_modules/x.js; echo > /workspace/g/src/a.js; "
                                         "echo > /workspace/g/last.txt"), done)
    seen = {e["path"] for e in events if e["type"] == "event"}
    assert "/workspace/g/src/a.js" in seen
    assert not any("node_modules" in p for p in seen)
    events = collect(api, sid, {"path": "/workspace/g", "include": ["**/*.txt"]},
                     lambda: api.sh(sid, "echo > /workspace/g/src/b.js; echo > /workspace/g/src/c.txt"),
                     lambda evs: any(e.get("path", "").endswith("c.txt") for e in evs))
    assert not any(e.get("path", "").endswith("b.js") for e in events)


def test_check_cursors(api, make_sandbox):
    sid = make_sandbox()
    api.sh(sid, "mkdir -p /workspace/c")
    url = f"/v1/sandboxes/{sid}/api/watch/check"
    v0 = api.post(url, {"path": "/workspace/c"}).json()
    assert v0["success"] is True and ":" in v0["version"]
    assert api.post(url, {"path": "/workspace/c", "since": v0["version"]}).json()["status"] == "unchanged"
    api.sh(sid, "echo x > /workspace/c/new")

    def changed_since_v0():
        r = api.post(url, {"path": "/workspace/c", "since": v0["version"]}).json()
        return r if r["status"] == "changed" else None

    changed = wait_until(changed_since_v0, 20, what="the check to see /workspace/c/new")
    assert api.post(url, {"path": "/workspace/c", "since": changed["version"]}).json()["status"] == "unchanged"
    resync = api.post(url, {"path": "/workspace/c", "since": "nope:3"}).json()
    assert resync["status"] == "resync" and resync["reason"] in ("restarted", "expired")


def test_errors(api, sb):
    url = f"/v1/sandboxes/{sb}/api/watch"
    assert_error(api.post(url, {"path": "/workspace/none-such"}), 404, "FILE_NOT_FOUND")
    assert_error(api.post(url, {}), 400, "VALIDATION_FAILED")
    assert_error(api.post(url, {"path": "/workspace", "include": ["*"], "exclude": ["x"]}), 400,
                 "VALIDATION_FAILED")
    assert_error(api.post(url, {"path": "/workspace", "include": "*.txt"}), 400, "VALIDATION_FAILED")
