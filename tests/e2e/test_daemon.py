"""coved's own start-up checks and what a sandbox can learn about the host."""

import os
import shutil
import subprocess
import tempfile

import pytest

from helpers import COVED, free_port, unique_id

pytestmark = pytest.mark.lifecycle


def test_state_dir_behind_private_parent_is_refused():
    base = tempfile.mkdtemp(prefix="cove-private-")
    os.chmod(base, 0o700)
    try:
        p = subprocess.run([COVED, "--listen", f"127.0.0.1:{free_port()}",
                            "--state-dir", os.path.join(base, "state")],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode != 0
        assert "not searchable by others" in p.stderr and base in p.stderr
        assert not os.path.exists(os.path.join(base, "state", "api-token"))
    finally:
        shutil.rmtree(base)


def test_agent_binary_path_is_not_visible_inside(api):
    sid = unique_id("exe")
    api.create(id=sid)
    try:
        r = api.exec(sid, "readlink /proc/1/exe; ls -l /proc/1/exe; cat /proc/1/maps | head -3",
                     session="__DISABLE_SESSION__")
        out = r["stdout"] + r["stderr"]
        # The agent is not dumpable, so /proc/1 hides its exe; and it is a sealed
        # in-memory copy anyway: no host path may show.
        assert "Permission denied" in out or out.startswith("/memfd:cove-agent"), out
        assert os.readlink(f"/proc/{api.info(sid)['pid']}/exe").startswith("/memfd:cove-agent")
        assert os.path.dirname(COVED) not in out and "cove-agent " not in out.replace("memfd:cove-agent", "")
    finally:
        api.destroy(sid)


def _group_name(state_dir):
    """coved's cgroup group for a state dir: "cove-" + FNV-1a of the path, folded to 32 bits."""
    h = 1469598103934665603
    for c in state_dir.rstrip("/").encode():
        h = ((h ^ c) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return "cove-%08x" % ((h ^ (h >> 32)) & 0xFFFFFFFF)


def _group_dirs(name):
    found = []
    for root, dirs, _ in os.walk("/sys/fs/cgroup"):
        if name in dirs:
            found.append(os.path.join(root, name))
        dirs[:] = [d for d in dirs if not d.startswith("cove")] if root.count("/") > 6 else dirs
    return found


def test_idle_coved_leaves_nothing_on_stop(coved_factory):
    coved, api = coved_factory()
    group = _group_name(coved.state_dir)
    sid = unique_id("idle")
    api.create(id=sid)
    assert _group_dirs(group), f"coved's cgroup group {group} should exist while a sandbox runs"
    api.destroy(sid)
    assert coved.stop() == 0
    with open("/proc/self/mountinfo") as f:
        assert coved.state_dir not in f.read()
    assert not _group_dirs(group)
