"""A root file system writable everywhere (issue 12): every path of a sandbox of
the default image is writable, its writes are copied up into the sandbox's own
quota'd layer, and nothing reaches the host's /usr or another sandbox.

The package-manager tests install what the test itself makes: a wheel for
pip, an npm tarball, and (on the test's own fake internet, netlab) a Debian
repository for apt."""

import hashlib
import os
import subprocess

import pytest

from helpers import unique_id
from netlab.harness import run, set_policy, start_coved, start_lab, stop_coved, stop_lab

NOSESSION = "__DISABLE_SESSION__"
MiB = 1 << 20
# A file of the host's /usr that every Debian has, changed inside a sandbox.
HOST_FILE = "/usr/share/common-licenses/GPL-3"


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_every_path_is_writable_and_the_writes_stay_in_the_sandbox(api, make_sandbox):
    before = sha256(HOST_FILE)
    a, b = make_sandbox(), make_sandbox()
    api.sh(a, "set -e; for d in /usr/local/bin /usr/bin /usr/lib /etc /opt /var/lib /root /srv; do "
               "  echo mine > $d/cove-writable-test; done; "
               f"echo changed > {HOST_FILE}; rm /usr/bin/xargs; mkdir -p /usr/share/cove-new/a/b; "
               "ln -s /usr/bin/true /usr/local/bin/mytrue; mytrue")
    out = api.sh(a, f"cat /usr/local/bin/cove-writable-test /opt/cove-writable-test {HOST_FILE}; "
                     "test -e /usr/bin/xargs || echo xargs-gone; stat -c %U /usr/local/bin/cove-writable-test")
    assert out == "mine\nmine\nchanged\nxargs-gone\nroot\n"
    # The host's /usr is unchanged, byte for byte where the sandbox wrote over it.
    assert sha256(HOST_FILE) == before
    assert os.path.exists("/usr/bin/xargs")
    for d in ("/usr/local/bin", "/usr/bin", "/usr/lib", "/usr/share/cove-new"):
        assert not os.path.exists(os.path.join(d, "cove-writable-test")), d
    assert not os.path.exists("/usr/share/cove-new")
    # Another sandbox of the same image sees the image, not the first one's writes.
    out = api.exec(b, f"ls /usr/local/bin/cove-writable-test 2>&1; sha256sum {HOST_FILE}; "
                      "command -v xargs", session=NOSESSION)["stdout"]
    assert "No such file" in out and before in out and "/usr/bin/xargs" in out, out


def test_writes_under_usr_count_in_the_disk_quota(api, make_sandbox):
    quota = 64 * MiB
    sid = make_sandbox(limits={"diskBytes": quota, "memoryBytes": 512 * MiB, "pids": 256, "cpuMillis": 1000})
    r = api.exec(sid, "dd if=/dev/zero of=/usr/local/fill bs=1M count=256 2>&1; echo rc=$?; "
                      "stat -c %s /usr/local/fill", session=NOSESSION, timeoutMs=120000, timeout=180)
    out = r["stdout"]
    assert "rc=0" not in out, out
    assert int(out.strip().splitlines()[-1]) <= quota + 8 * MiB, out
    api.sh(sid, "rm /usr/local/fill && echo ok > /usr/local/after")


def test_pip_installs_into_usr_local(api, make_sandbox):
    sid = make_sandbox()
    # A wheel made in the sandbox from a one-module project (no index, no network).
    out = api.sh(sid, """set -e
mkdir -p /tmp/w/covehello && cd /tmp/w
echo 'def hello(): return "hello from a wheel"' > covehello/__init__.py
cat > setup.py <<'EOF'
from setuptools import setup
setup(name="covehello", version="1.0", packages=["covehello"])
EOF
python3 -m pip wheel --no-deps --no-build-isolation --no-index -q -w dist . >/dev/null 2>&1
python3 -m pip install --break-system-packages --no-index -q dist/covehello-1.0-*.whl 2>&1 | grep -v WARNING || true
cd / && python3 -c 'import covehello; print(covehello.hello(), covehello.__file__)'
""", timeout=180)
    assert "hello from a wheel /usr/local/lib/python3" in out, out
    assert not os.path.exists("/usr/local/lib/python3.11/dist-packages/covehello")


def test_npm_installs_globally_from_a_tarball(api, make_sandbox):
    sid = make_sandbox()
    out = api.sh(sid, """set -e
mkdir -p /tmp/p && cd /tmp/p
echo '{"name":"cove-hello-cli","version":"1.0.0","bin":{"cove-hello":"cli.js"}}' > package.json
printf '#!/usr/bin/env node\\nconsole.log("hello from npm")\\n' > cli.js
npm pack --silent >/dev/null
npm install -g --offline --no-audit --no-fund ./cove-hello-cli-1.0.0.tgz >/dev/null 2>&1
cd / && cove-hello && command -v cove-hello
""", timeout=180)
    assert out.splitlines()[0] == "hello from npm", out
    prefix = out.splitlines()[1]
    assert prefix.startswith("/usr/"), out
    assert not os.path.exists(prefix)


def test_what_a_sandbox_makes_in_its_root_gives_it_nothing(api, make_sandbox):
    """Attacks through the writable root: a setuid copy gives no privilege (the
    overlays are nosuid and every process has no_new_privs), device nodes
    cannot be made, and a hard link to an image file is the sandbox's own copy."""
    before = sha256("/usr/bin/id")
    sid = make_sandbox()
    out = api.exec(sid, """
cp /usr/bin/id /usr/local/bin/suid-id && chmod 4755 /usr/local/bin/suid-id
setpriv --reuid=65534 --regid=65534 --clear-groups /usr/local/bin/suid-id -u
mknod /usr/local/dev-null c 1 3 2>/dev/null && echo MKNOD
ln /usr/bin/id /usr/local/id-link && echo junk >> /usr/local/id-link && echo linked-write
tail -c 5 /usr/bin/id
""", session=NOSESSION)["stdout"]
    assert out == "65534\nlinked-write\njunk\n", out
    assert sha256("/usr/bin/id") == before
    assert not os.path.exists("/usr/local/bin/suid-id")


def make_debian_repository(root):
    """A flat Debian repository of one package, cove-hello (a shell script in
    /usr/bin), under root: the .deb, Packages and an unsigned Release."""
    os.makedirs(root)
    pkg = os.path.join(root, "build")
    os.makedirs(os.path.join(pkg, "DEBIAN"))
    os.makedirs(os.path.join(pkg, "usr", "bin"))
    control = ("Package: cove-hello\nVersion: 1.0\nArchitecture: all\nMaintainer: cove <cove@example.test>\n"
               "Description: says hello from a Debian package\n")
    with open(os.path.join(pkg, "DEBIAN", "control"), "w") as f:
        f.write(control)
    script = os.path.join(pkg, "usr", "bin", "cove-hello")
    with open(script, "w") as f:
        f.write("#!/bin/sh\necho hello from a Debian package\n")
    os.chmod(script, 0o755)
    deb = os.path.join(root, "cove-hello_1.0_all.deb")
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", pkg, deb], check=True, capture_output=True)
    data = open(deb, "rb").read()
    packages = (control + f"Filename: ./cove-hello_1.0_all.deb\nSize: {len(data)}\n"
                f"SHA256: {hashlib.sha256(data).hexdigest()}\n\n").encode()
    with open(os.path.join(root, "Packages"), "wb") as f:
        f.write(packages)
    with open(os.path.join(root, "Release"), "w") as f:
        f.write(f"Date: Thu, 01 Jan 2026 00:00:00 UTC\nSHA256:\n"
                f" {hashlib.sha256(packages).hexdigest()} {len(packages)} Packages\n")


@pytest.fixture(scope="module")
def lab():
    lab, base = start_lab("cove-e2e-root-")
    yield lab
    stop_lab(lab, base)


@pytest.mark.network
def test_apt_get_installs_from_a_repository_the_policy_allows(lab):
    """apt-get update and install in a sandbox of the default image, from a
    Debian repository on the test's own fake internet (packages.test), reached
    through coved's egress proxy; the host's /usr and package database are
    unchanged."""
    make_debian_repository(os.path.join(lab.git_root, "debian"))
    status_before = sha256("/var/lib/dpkg/status")
    c, api = start_coved(lab)
    try:
        sid = unique_id("apt")
        api.create(id=sid)
        set_policy(api, sid, {"enableInternet": False, "allowedHosts": ["packages.test"]})
        apt = ("apt-get -q -o Dir::Etc::sourcelist=/etc/apt/sources.list.d/cove-test.list "
               "-o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0")
        code, out, err = run(api, sid, "echo 'deb [trusted=yes] http://packages.test/debian/ ./' "
                                       "> /etc/apt/sources.list.d/cove-test.list && "
                                       f"{apt} update 2>&1 && {apt} install -y cove-hello 2>&1 && "
                                       "cove-hello && dpkg -s cove-hello | grep Status", timeout=300)
        assert code == 0, out + err
        assert "hello from a Debian package\nStatus: install ok installed\n" in out, out
        assert any(r.get("path", "").endswith("cove-hello_1.0_all.deb") for r in lab.world_requests())
        assert not os.path.exists("/usr/bin/cove-hello")
        assert sha256("/var/lib/dpkg/status") == status_before
        # The policy decides: with the repository not allowed, apt cannot reach it.
        set_policy(api, sid, {"enableInternet": False, "allowedHosts": ["other.test"]})
        code, out, _ = run(api, sid, f"{apt} clean; {apt} update 2>&1; {apt} install -y --reinstall cove-hello 2>&1", timeout=300)
        assert "Unable to fetch" in out or "Failed to fetch" in out or "Could not" in out, out
    finally:
        stop_coved(lab, c, api)
