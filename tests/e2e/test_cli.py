"""The cove CLI against the real coved."""

import json
import os
import secrets
import subprocess

import pytest

from helpers import COVE, unique_id

pytestmark = pytest.mark.cli


@pytest.fixture(scope="module")
def cove(coved):
    if not os.path.exists(COVE):
        pytest.fail(f"{COVE} does not exist: build it first (ninja -C build cove)")

    def run(*args, env_token=True, input=None, check=None, extra_env=None):
        env = {k: v for k, v in os.environ.items() if not k.startswith("COVE_")}
        env["COVE_URL"] = coved.url
        if env_token:
            env["COVE_TOKEN"] = coved.token
        env.update(extra_env or {})
        p = subprocess.run([COVE, *args], env=env, input=input, capture_output=True,
                           timeout=300)
        if check is not None:
            assert p.returncode == check, f"cove {args}: rc {p.returncode}\n{p.stderr.decode()}"
        return p
    return run


def test_create_ls_info_rm(cove, api):
    sid = unique_id("cli")
    api.seen_ids.add(sid)
    p = cove("create", "--id", sid, "--label", "who=cli", "--env", "CLIVAR=yes", check=0)
    assert p.stdout.decode().strip() == sid
    assert p.stderr == b""
    ls = cove("ls", check=0).stdout.decode()
    assert ls.splitlines()[0].split()[:2] == ["ID", "STATE"]
    row = [line.split() for line in ls.splitlines() if line.startswith(sid)]
    assert row and row[0][1] == "running", ls
    info = cove("info", sid, check=0).stdout.decode()
    assert "state:" in info and "running" in info and "who=cli" in info
    assert cove("exec", sid, "--", "printenv", "CLIVAR", check=0).stdout == b"yes\n"
    assert cove("rm", sid, check=0).stdout.decode().strip() == sid
    p = cove("info", sid)
    assert p.returncode == 1
    assert p.stderr.decode() == f'cove: sandbox "{sid}" not found (SANDBOX_NOT_FOUND)\n'
    assert p.stdout == b""


def test_create_generated_id_and_json(cove, api):
    p = cove("--json", "create", check=0)
    body = json.loads(p.stdout)
    api.seen_ids.add(body["id"])
    assert body["state"] == "running" and body["id"].startswith("sb-")
    listed = json.loads(cove("ls", "--json", check=0).stdout)
    assert body["id"] in [s["id"] for s in listed["sandboxes"]]
    info = json.loads(cove("info", body["id"], "--json", check=0).stdout)
    assert info["id"] == body["id"] and "limits" in info
    gone = json.loads(cove("rm", body["id"], "--json", check=0).stdout)
    assert gone["deleted"] is True


def test_create_errors(cove, make_sandbox):
    sid = make_sandbox()
    p = cove("create", "--id", sid)
    assert p.returncode == 1
    assert p.stderr.decode() == f'cove: sandbox "{sid}" already exists (SANDBOX_ALREADY_EXISTS)\n'
    p = cove("create", "--id", "Bad_Id")
    assert p.returncode == 1 and b"(VALIDATION_FAILED)" in p.stderr
    assert len(p.stderr.decode().strip().splitlines()) == 1
    p = cove("create", "--type", "lite", "--env", "novalue")
    assert p.returncode == 1 and b"KEY=VALUE" in p.stderr


def test_exec_exit_code_streams_and_quoting(cove, make_sandbox):
    sid = make_sandbox()
    p = cove("exec", sid, "--", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert p.returncode == 7
    assert p.stdout == b"out\n" and p.stderr == b"err\n"
    args = ["a b", "it's", "$HOME", "", "*", "semi;colon", "new\nline"]
    p = cove("exec", sid, "--", "printf", "[%s]", *args, check=0)
    assert p.stdout.decode() == "".join(f"[{a}]" for a in args)
    p = cove("exec", "--cwd", "/tmp", "--env", "A=1 2", sid, "--", "sh", "-c", 'pwd; echo "$A"',
             check=0)
    assert p.stdout == b"/tmp\n1 2\n"
    cove("exec", "--session", "clis", sid, "--", "cd", "/usr", check=0)
    assert cove("exec", "--session", "clis", sid, "--", "pwd", check=0).stdout == b"/usr\n"
    p = cove("exec", "--timeout", "500", sid, "--", "sleep", "30")
    assert p.returncode != 0
    p = cove("--json", "exec", sid, "--", "sh", "-c", "echo j; exit 3")
    assert p.returncode == 3
    assert json.loads(p.stdout)["stdout"] == "j\n"


def test_exec_large_output(cove, make_sandbox):
    sid = make_sandbox()
    p = cove("exec", sid, "--", "seq", "1", "300000", check=0)
    assert p.stdout.decode().split() == [str(i) for i in range(1, 300001)]


def test_exec_unknown_sandbox_does_not_create_it(cove, api):
    sid = unique_id("nocli")
    p = cove("exec", sid, "--", "true")
    assert p.returncode == 255
    assert p.stderr.decode() == f'cove: sandbox "{sid}" not found (SANDBOX_NOT_FOUND)\n'
    assert sid not in api.list_ids()


def test_cp_both_ways_binary(cove, make_sandbox, tmp_path):
    sid = make_sandbox()
    data = secrets.token_bytes(3 * 1024 * 1024 + 17)
    src = tmp_path / "blob.bin"
    src.write_bytes(data)
    cove("cp", str(src), f"{sid}:/workspace/blob.bin", check=0)
    sha = cove("exec", sid, "--", "sha256sum", "/workspace/blob.bin", check=0).stdout.split()[0]
    import hashlib
    assert sha.decode() == hashlib.sha256(data).hexdigest()
    back = tmp_path / "back.bin"
    cove("cp", f"{sid}:/workspace/blob.bin", str(back), check=0)
    assert back.read_bytes() == data
    # into a directory, both ways
    cove("cp", str(src), f"{sid}:/tmp/", check=0)
    cove("cp", str(src), f"{sid}:/workspace", check=0)  # existing directory
    outdir = tmp_path / "out"
    outdir.mkdir()
    cove("cp", f"{sid}:/tmp/blob.bin", str(outdir), check=0)
    assert (outdir / "blob.bin").read_bytes() == data
    # text, and stdin/stdout
    cove("cp", "-", f"{sid}:/workspace/t.txt", input=b"hello\n", check=0)
    assert cove("cp", f"{sid}:/workspace/t.txt", "-", check=0).stdout == b"hello\n"
    assert sorted(os.listdir(tmp_path)) == ["back.bin", "blob.bin", "out"]


def test_cp_errors_leave_no_partial_file(cove, make_sandbox, tmp_path):
    sid = make_sandbox()
    p = cove("cp", f"{sid}:/workspace/missing", str(tmp_path / "x"))
    assert p.returncode == 1 and b"(FILE_NOT_FOUND)" in p.stderr, p.stderr
    assert os.listdir(tmp_path) == []
    p = cove("cp", str(tmp_path / "nope"), f"{sid}:/workspace/x")
    assert p.returncode == 1 and b"No such file" in p.stderr
    p = cove("cp", "a", "b")
    assert p.returncode == 1 and b"ID:PATH" in p.stderr


def test_token_from_state_dir(cove, coved):
    p = cove("--state-dir", coved.state_dir, "ls", env_token=False, check=0)
    assert p.stdout.startswith(b"ID")
    p = cove("ls", env_token=False, extra_env={"COVE_STATE_DIR": "/nonexistent"})
    assert p.returncode == 1 and b"(UNAUTHORIZED)" in p.stderr
    p = cove("--token", "wrong", "ls")
    assert p.returncode == 1 and b"(UNAUTHORIZED)" in p.stderr


def test_unreachable_daemon(cove):
    p = cove("--url", "http://127.0.0.1:1", "ls")
    assert p.returncode == 1 and b"cannot reach coved" in p.stderr
    assert len(p.stderr.splitlines()) == 1


def test_image_ls(cove, api):
    listed = json.loads(cove("--json", "image", "ls", check=0).stdout)
    assert listed == api.get("/v1/images").json()
    assert cove("image", "ls", check=0).stdout.startswith(b"NAME")
