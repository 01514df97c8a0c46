"""A sandbox created with user "user" runs its commands as uid 1000, in
sessions and sessionless; root stays the default otherwise."""

import pytest

from helpers import unique_id

pytestmark = pytest.mark.exec


def test_user_sandbox_runs_as_user(api):
    sid = unique_id("usr")
    api.create(id=sid, user="user")
    try:
        assert api.info(sid)["user"] == "user"
        r = api.exec(sid, "id -u; id -g; echo $HOME", session="__DISABLE_SESSION__")
        assert r["stdout"] == "1000\n1000\n/home/user\n"
        r = api.exec(sid, "id -un; cd ~ && pwd", session=unique_id("s"))
        assert r["stdout"] == "user\n/home/user\n"
        # user cannot write where only root may
        r = api.exec(sid, "touch /root/x", session="__DISABLE_SESSION__")
        assert r["exitCode"] != 0
    finally:
        api.destroy(sid)


def test_default_sandbox_runs_as_root(api):
    sid = unique_id("root")
    api.create(id=sid)
    try:
        assert api.exec(sid, "id -u", session="__DISABLE_SESSION__")["stdout"] == "0\n"
        assert api.exec(sid, "id -u", session=unique_id("s"))["stdout"] == "0\n"
    finally:
        api.destroy(sid)


def test_session_can_ask_for_user(api):
    sid = unique_id("sess")
    api.create(id=sid)
    try:
        api.call(sid, "session/create", {"id": "as-user", "user": "user"})
        assert api.exec(sid, "id -u", session="as-user")["stdout"] == "1000\n"
        assert api.exec(sid, "id -u", session="other")["stdout"] == "0\n"
        r = api.call(sid, "session/create", {"id": "bad", "user": "admin"}, expect=400)
        assert r["code"] == "VALIDATION_FAILED"
    finally:
        api.destroy(sid)
