"""Fixtures: the real coved on a free port with a temporary state dir.

One coved serves the whole session (`coved`, `api`); tests that restart or kill
it get their own (`coved_factory`). At the end every sandbox is deleted, coved is
stopped with SIGTERM, and the host is checked for leftovers (mounts naming the
state dir, cgroups or processes of the sandboxes seen, live sandbox pids).
"""

import os
import signal

import pytest

import shutil

from helpers import Api, Coved, WaitTimeout, leaks, make_base_dir, tail, unique_id, unmount_under, wait_until

_ACTIVE = []  # Coved instances whose logs are attached to failures


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for c in _ACTIVE:
            rep.sections.append((f"coved log {c.log_path} (tail)", tail(c.log_path, 40)))


def _shutdown_and_check(coved, api):
    problems = []
    if coved.alive():
        try:
            for sid in api.list_ids():
                api.seen_ids.add(sid)
            for sid in sorted(api.seen_ids):
                r = api.delete(f"/v1/sandboxes/{sid}")
                if r.status_code != 200:
                    problems.append(f"DELETE {sid}: {r.status_code} {r.text[:200]}")
        except Exception as e:  # report, and still stop and look for leaks
            problems.append(f"cleanup through the API failed: {e!r}")
        rc = coved.stop(signal.SIGTERM)
        if rc != 0:
            problems.append(f"coved exited with status {rc} on SIGTERM")
    try:
        wait_until(lambda: not leaks(coved.state_dir, api.seen_ids, api.seen_pids), 20)
    except WaitTimeout:
        problems += leaks(coved.state_dir, api.seen_ids, api.seen_pids)
        unmount_under(coved.state_dir)
    return problems


@pytest.fixture(scope="session")
def coved():
    base = make_base_dir("cove-e2e-")
    # Three io threads whatever the CPU count (the default is half the CPUs):
    # every test crosses between connection, home and sandbox shards.
    c = Coved(os.path.join(base, "state"), os.path.join(base, "coved.log"), args=("--io-threads", "3"))
    c.start()
    c._api = Api(c)
    _ACTIVE.append(c)
    yield c
    api = c._api
    _ACTIVE.remove(c)
    problems = _shutdown_and_check(c, api)
    if not problems:
        shutil.rmtree(base, ignore_errors=True)
    assert not problems, "after the session:\n" + "\n".join(problems) + \
        f"\n--- coved log ({c.log_path}) ---\n" + tail(c.log_path)


@pytest.fixture(scope="session")
def api(coved):
    return coved._api


@pytest.fixture(scope="session")
def witness(api):
    """A sandbox that must keep answering whatever other sandboxes do."""
    sid = unique_id("witness")
    api.create(id=sid)
    return sid


@pytest.fixture
def make_sandbox(api):
    """make_sandbox(**fields) -> id; deleted at the end of the test."""
    made = []

    def make(**fields):
        fields.setdefault("id", unique_id())
        body = api.create(**fields)
        made.append(body["id"])
        return body["id"]

    yield make
    for sid in made:
        api.delete(f"/v1/sandboxes/{sid}")


@pytest.fixture(scope="module")
def sb(api):
    """One sandbox shared by the tests of a module."""
    sid = unique_id("mod")
    api.create(id=sid)
    yield sid
    api.delete(f"/v1/sandboxes/{sid}")


@pytest.fixture
def coved_factory():
    """Private coveds for tests that kill or restart the daemon.

    factory(args=(), prefix=()) -> (coved, api), args: more coved options,
    prefix: a command coved runs under (e.g. prlimit); at the end each is
    cleaned and checked like the session one."""
    made = []
    base = make_base_dir("cove-e2e-restart-")

    def factory(args=(), prefix=()):
        c = Coved(os.path.join(base, f"state{len(made)}"),
                  os.path.join(base, f"coved{len(made)}.log"), args=args, prefix=prefix)
        c.start()
        a = Api(c)
        made.append((c, a))
        _ACTIVE.append(c)
        return c, a

    yield factory
    problems = []
    for c, a in made:
        _ACTIVE.remove(c)
        if not c.alive():
            # A test left it stopped: start it again so the API can clean up.
            try:
                c.start()
            except RuntimeError as e:
                problems.append(str(e))
        problems += _shutdown_and_check(c, a)
    if not problems:
        shutil.rmtree(base, ignore_errors=True)
    assert not problems, "\n".join(problems)


def pytest_report_header(config):
    from helpers import COVED
    return f"coved: {COVED} ({'present' if os.path.exists(COVED) else 'MISSING'})"
