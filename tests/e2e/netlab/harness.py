"""Shared set-up of the network test modules: a NetLab, and coved running
in it (sealed networking, the world's DNS, optional extra options)."""

import os
import shlex
import shutil
import subprocess

import pytest

from helpers import Api, Coved, make_base_dir, tail
from netlab.lab import NetLab


def start_lab(prefix):
    if os.geteuid() != 0 or not shutil.which("nsenter"):
        pytest.fail("network tests need root and nsenter")
    base = make_base_dir(prefix)
    return NetLab(base).up(), base


def stop_lab(lab, base):
    lab.down()
    shutil.rmtree(base, ignore_errors=True)


def lab_run(lab, *cmd):
    return subprocess.run(["ip", "netns", "exec", lab.lab, *cmd], capture_output=True, text=True).stdout


def start_coved(lab, args=()):
    base = os.path.dirname(lab.ca_cert)
    c = Coved(os.path.join(base, "state"), os.path.join(base, "coved.log"), host=lab.lab_addr,
              prefix=lab.nsenter(), args=["--network", "sealed", "--dns-server", lab.WORLD_DNS, *args])
    c.start()
    return c, Api(c)


def stop_coved(lab, c, api):
    for sid in api.list_ids():
        api.delete(f"/v1/sandboxes/{sid}")
    rc = c.stop()
    assert rc == 0, tail(c.log_path)
    # Nothing of coved's is left in the lab: no veth, no firewall table.
    links = lab_run(lab, "ip", "-o", "link")
    assert " cv" not in links, links
    assert "cove_" not in lab_run(lab, "nft", "list", "tables")


def run(api, sid, command, timeout=60):
    r = api.exec(sid, command, session="__DISABLE_SESSION__", timeout=timeout)
    return r["exitCode"], r["stdout"], r["stderr"]


def set_policy(api, sid, policy):
    r = api.request("PUT", f"/v1/sandboxes/{sid}/egress", json_body=policy)
    assert r.status_code == 200, r.text
    return r.json()


sh_quote = shlex.quote
