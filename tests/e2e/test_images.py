"""Image import (tar or directory, through the API and the CLI) and listing."""

import io
import os
import shutil
import subprocess
import tarfile

import pytest

from helpers import COVE, assert_error, unique_id

pytestmark = pytest.mark.images


def minimal_rootfs(root):
    """A small root filesystem: bash, cat, ls and their libraries from the host."""
    binaries = [shutil.which(b, path="/usr/bin:/bin") for b in ("bash", "cat", "ls", "sh")]
    files = set(binaries)
    for b in binaries:
        out = subprocess.run(["ldd", b], capture_output=True, text=True).stdout
        for line in out.splitlines():
            for tok in line.split():
                if tok.startswith("/"):
                    files.add(tok)
    for f in files:
        real = os.path.realpath(f)
        dest = os.path.join(root, f.lstrip("/"))
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copy2(real, dest)
    os.symlink("usr/bin", os.path.join(root, "bin"))
    for d in ("workspace", "tmp", "etc", "proc", "dev", "root"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    with open(os.path.join(root, "etc", "image-marker"), "w") as f:
        f.write("from-imported-image\n")


def tar_bytes(root):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name in sorted(os.listdir(root)):
            t.add(os.path.join(root, name), arcname=name)
    return buf.getvalue()


def test_import_tar_then_run(api, tmp_path):
    root = tmp_path / "rootfs"
    minimal_rootfs(str(root))
    name = unique_id("img")
    r = api.request("POST", f"/v1/images/{name}", data=tar_bytes(str(root)),
                    headers={"Content-Type": "application/x-tar"}, timeout=300)
    assert r.status_code == 201, r.text
    assert r.json()["name"] == name and r.json()["createdAt"]
    assert name in [i["name"] for i in api.get("/v1/images").json()["images"]]
    sid = unique_id("fromimg")
    api.create(id=sid, image=name)
    try:
        assert api.info(sid)["image"] == name
        assert api.sh(sid, "cat /etc/image-marker") == "from-imported-image\n"
    finally:
        api.destroy(sid)


def test_import_directory_with_cli(coved, api, tmp_path):
    root = tmp_path / "rootfs"
    minimal_rootfs(str(root))
    name = unique_id("cliimg")
    env = dict(os.environ, COVE_URL=coved.url, COVE_TOKEN=coved.token)
    p = subprocess.run([COVE, "image", "import", name, str(root)], env=env, capture_output=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode().strip() == name
    p = subprocess.run([COVE, "image", "ls"], env=env, capture_output=True, timeout=60)
    assert name in p.stdout.decode()
    sid = unique_id("fromdir")
    api.create(id=sid, image=name)
    try:
        assert api.sh(sid, "cat /etc/image-marker") == "from-imported-image\n"
    finally:
        api.destroy(sid)


def test_import_rejects_garbage_and_escapes(api, tmp_path):
    name = unique_id("bad")
    r = api.request("POST", f"/v1/images/{name}", data=os.urandom(10000),
                    headers={"Content-Type": "application/x-tar"})
    assert_error(r, 400)
    # a tar whose members climb out of the image, or link out of it
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo("../../../../tmp/" + name)
        info.size = 4
        t.addfile(info, io.BytesIO(b"evil"))
        link = tarfile.TarInfo("etc/escape")
        link.type = tarfile.SYMTYPE
        link.linkname = "/tmp"
        t.addfile(link)
        through = tarfile.TarInfo("etc/escape/" + name + "-2")
        through.size = 4
        t.addfile(through, io.BytesIO(b"evil"))
    r = api.request("POST", f"/v1/images/{name}x", data=buf.getvalue(),
                    headers={"Content-Type": "application/x-tar"})
    assert r.status_code in (201, 400), r.text
    assert not os.path.exists("/tmp/" + name)
    assert not os.path.exists("/tmp/" + name + "-2")
    for bad in ("UPPER", "a/b", ".."):
        r = api.request("POST", f"/v1/images/{bad}", data=b"",
                        headers={"Content-Type": "application/x-tar"})
        assert 400 <= r.status_code < 500
