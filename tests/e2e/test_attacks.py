"""Attacks run as commands inside a sandbox through the API. Each must fail, and
afterwards coved and another sandbox (the witness) still answer."""

import os
import platform
import secrets

import pytest

from helpers import MiB, comm, descendants, host_uids, pid_alive, processes_matching, unique_id, wait_until

pytestmark = pytest.mark.attack

NOSESSION = "__DISABLE_SESSION__"


def run(api, sid, command, timeout=120, **extra):
    return api.exec(sid, command, session=NOSESSION, timeout=timeout, **extra)


@pytest.fixture
def victim(api, make_sandbox, witness):
    """The attacking sandbox; after the test coved and the witness must answer."""
    sid = make_sandbox()
    yield sid
    api.alive(witness)


@pytest.fixture
def markers(coved, request):
    """Files with a secret content on the host: in coved's state dir, /root, /home,
    the project tree and /tmp."""
    secret = "HOST-SECRET-" + secrets.token_hex(12)
    repo = os.path.abspath(os.path.join(os.path.dirname(__file__)))
    dirs = [coved.state_dir, "/root", "/tmp", repo]
    if os.path.isdir("/home"):
        dirs.append("/home")
    paths = []
    for d in dirs:
        p = os.path.join(d, f".cove-attack-{secrets.token_hex(4)}")
        with open(p, "w") as f:
            f.write(secret)
        paths.append(p)
    yield secret, paths
    for p in paths:
        os.unlink(p)


def test_host_files_are_invisible(api, victim, markers, coved):
    secret, paths = markers
    dirs = sorted({os.path.dirname(p) for p in paths} | {"/root", "/home", "/work"})
    r = run(api, victim,
            f"cat {' '.join(paths)} 2>/dev/null; "
            f"for d in {' '.join(dirs)}; do ls -A $d 2>/dev/null; done; "
            "find / -xdev -name '.cove-attack-*' 2>/dev/null; "
            "grep -rs HOST-SECRET- /root /home /tmp /workspace /etc /var /opt 2>/dev/null | head")
    out = r["stdout"] + r["stderr"]
    assert secret not in out
    for p in paths:
        assert os.path.basename(p) not in out, f"{p} is listed in the sandbox"
    assert "api-token" not in out
    assert coved.token not in out
    for p in paths:
        for route in ("read", "read/stream", "list-files"):
            resp = api.post(f"/v1/sandboxes/{victim}/api/{route}",
                            {"path": p if route != "list-files" else os.path.dirname(p)})
            assert secret not in resp.text
            assert route != "list-files" or os.path.basename(p) not in resp.text
    # the project tree is not in the image
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    r = run(api, victim, f"test -e {repo}/CMakeLists.txt || test -e /work/main/CMakeLists.txt; "
                         "echo $?")
    assert r["stdout"].strip() == "1"


def test_environment_holds_no_secrets(api, victim, coved):
    r = run(api, victim, "cat /proc/1/environ /proc/self/environ | tr '\\0' '\\n'; env")
    assert coved.token not in r["stdout"]
    assert coved.state_dir not in r["stdout"]


def test_host_and_other_sandbox_processes_are_invisible(api, victim, make_sandbox, coved):
    other = make_sandbox()
    tag = unique_id("proc")
    api.exec(other, f"nohup bash -c 'exec -a {tag} sleep 600' >/dev/null 2>&1 &", session="bg")
    r = run(api, victim, "for p in /proc/[0-9]*; do printf '%s ' \"${p#/proc/}\"; "
                         "tr '\\0' ' ' < $p/cmdline; echo; done")
    out = r["stdout"]
    assert tag not in out, "a process of another sandbox is visible"
    assert "coved" not in out, "coved is visible"
    assert "systemd" not in out and "sshd" not in out
    pids = [int(line.split()[0]) for line in out.splitlines() if line.strip()]
    assert 1 in pids
    assert len(pids) < 20, f"{len(pids)} processes visible: {out[:2000]}"


def test_cannot_signal_or_trace_coved(api, victim, coved):
    pid = coved.pid
    r = run(api, victim,
            f"kill -9 {pid}; echo kill=$?; kill -STOP {pid}; echo stop=$?; "
            "python3 - <<'PY'\n"
            "import ctypes, os\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            f"print('ptrace', libc.ptrace(16, {pid}, 0, 0))\n"   # PTRACE_ATTACH
            "print('ptrace1', libc.ptrace(16, 1, 0, 0))\n"
            "try:\n"
            f"    os.kill({pid}, 9); print('oskill ok')\n"
            "except OSError as e: print('oskill', e.errno)\n"
            "PY\n"
            "kill -9 -1 2>/dev/null; echo done")
    out = r["stdout"]
    assert "kill=0" not in out or pid == 1
    assert "stop=0" not in out or pid == 1
    assert "ptrace -1" in out, out
    assert "oskill ok" not in out
    assert coved.alive(), "coved died"
    api.alive(victim)


def test_cannot_mount_or_remount(api, victim):
    r = run(api, victim,
            "mkdir -p /tmp/m; mount -t tmpfs none /tmp/m && echo MOUNTED; "
            "mount -o remount,rw /usr 2>/dev/null && echo REMOUNTED-USR; "
            "mount -o remount,rw /proc/sys 2>/dev/null && echo REMOUNTED-PROCSYS; "
            "mount -t proc proc /tmp/m 2>/dev/null && echo MOUNTED-PROC; "
            "mount --bind / /tmp/m 2>/dev/null && echo BOUND; "
            "python3 - <<'PY'\n"
            "import ctypes\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            "r = libc.mount(b'none', b'/tmp/m', b'tmpfs', 0, None)\n"
            "print('MOUNTED-SYSCALL' if r == 0 else 'mount-syscall-failed')\n"
            "r = libc.unshare(0x00020000 | 0x10000000)\n"   # CLONE_NEWNS | CLONE_NEWUSER
            "print('unshare', r)\n"
            "PY\n"
            "touch /usr/cove-attack-file /usr/bin/cove-attack-file; true")
    out = r["stdout"]
    for bad in ("MOUNTED", "REMOUNTED", "BOUND"):
        assert bad not in out, out
    assert "mount-syscall-failed" in out
    # The sandbox's /usr is writable, its own: nothing reaches the host's.
    assert not os.path.exists("/usr/cove-attack-file")
    assert not os.path.exists("/usr/bin/cove-attack-file")


def test_cannot_load_modules(api, victim):
    nr = {"x86_64": 313, "aarch64": 273}.get(platform.machine())
    if nr is None:
        pytest.skip("finit_module syscall number unknown here")
    r = run(api, victim,
            "modprobe dummy 2>/dev/null && echo LOADED; insmod /nonexistent.ko 2>/dev/null; "
            "python3 - <<'PY'\n"
            "import ctypes, os\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            "fd = os.open('/bin/true', os.O_RDONLY)\n"
            f"r = libc.syscall({nr}, fd, b'', 0)\n"
            "print('finit', r, ctypes.get_errno())\n"
            "PY")
    out = r["stdout"]
    assert "LOADED" not in out
    assert "finit -1" in out, out
    # EPERM (1) or ENOSYS (38) from seccomp: never the ELF parser's ENOEXEC (8)
    assert "finit -1 8" not in out, out


def read_host(path):
    with open(path) as f:
        return f.read().strip()


def test_cannot_write_proc_sys_or_sys(api, victim):
    targets = {"/proc/sys/kernel/printk_ratelimit": None, "/proc/sys/vm/overcommit_ratio": None,
               "/proc/sys/kernel/core_pattern": None}
    for t in targets:
        targets[t] = read_host(t)
    script = "; ".join(f"echo {v!r} > {t} 2>/dev/null && echo WROTE {t}"
                       for t, v in targets.items())
    script += ("; echo > /sys/kernel/uevent_helper 2>/dev/null && echo WROTE-SYS; "
               "mkdir /sys/fs/cgroup/cove-attack 2>/dev/null && echo MKDIR-CGROUP; "
               "mkdir /sys/fs/cgroup/memory/cove-attack 2>/dev/null && echo MKDIR-CGROUP; "
               "echo 1 > /proc/sysrq-trigger 2>/dev/null && echo SYSRQ; "
               "echo 3 > /proc/sys/vm/drop_caches 2>/dev/null && echo DROPPED; true")
    out = run(api, victim, script)["stdout"]
    for bad in ("WROTE", "MKDIR-CGROUP", "SYSRQ", "DROPPED"):
        assert bad not in out, out
    for t, v in targets.items():
        assert read_host(t) == v
    for p in ("/sys/fs/cgroup/cove-attack", "/sys/fs/cgroup/memory/cove-attack"):
        assert not os.path.exists(p)


def test_cannot_reach_coved_api(api, victim, coved):
    port = coved.port
    r = run(api, victim,
            f"curl -s -m 3 -o /dev/null -w 'HTTP %{{http_code}}' http://127.0.0.1:{port}/ "
            f"2>/dev/null; echo; "
            "python3 - <<'PY'\n"
            "import socket\n"
            f"for host in ('127.0.0.1', 'localhost', '::1'):\n"
            "    try:\n"
            f"        s = socket.create_connection((host, {port}), timeout=3)\n"
            "        print('CONNECTED', host)\n"
            "    except OSError as e:\n"
            "        print('refused', host, e.errno)\n"
            "PY")
    out = r["stdout"]
    assert "CONNECTED" not in out, out
    assert "HTTP 2" not in out and "HTTP 4" not in out, out
    assert "refused 127.0.0.1" in out, out


def test_sandbox_root_is_not_host_root(api, victim):
    api.exec(victim, "nohup sleep 300 >/dev/null 2>&1 &", session="bg")
    assert run(api, victim, "id -u")["stdout"] == "0\n"
    pid = api.info(victim)["pid"]
    procs = descendants(pid)
    assert len(procs) >= 2, procs
    for p in procs:
        uids = host_uids(p)
        if uids is None:
            continue  # exited meanwhile
        assert 0 not in uids, f"host pid {p} runs with host uids {uids}"


def test_two_sandboxes_have_different_host_ids(api, victim, make_sandbox):
    other = make_sandbox()
    a = host_uids(api.info(victim)["pid"])
    b = host_uids(api.info(other)["pid"])
    assert a and b and a[0] != b[0], (a, b)


@pytest.mark.slow
def test_fork_bomb_stops_at_pids_limit(api, make_sandbox, witness):
    sid = make_sandbox(limits={"pids": 64, "memoryBytes": 512 * MiB, "cpuMillis": 500,
                               "diskBytes": 1_000_000_000})
    r = run(api, sid,
            "python3 - <<'PY'\n"
            "import os, time\n"
            "n = 0\n"
            "try:\n"
            "    while n < 10000:\n"
            "        pid = os.fork()\n"
            "        if pid == 0:\n"
            "            time.sleep(5); os._exit(0)\n"
            "        n += 1\n"
            "except OSError as e:\n"
            "    print('stopped', n, e.errno)\n"
            "PY", timeout=120, timeoutMs=60000)
    out = r["stdout"]
    assert out.startswith("stopped"), r
    n = int(out.split()[1])
    assert n < 64, f"{n} forks succeeded with a pids limit of 64"
    # the forks' children (each sleeps 5 s) are gone: the pids are free again
    wait_until(lambda: not any(comm(p) == "python3" for p, _ in processes_matching([sid], None)), 30,
               what="the fork test's children to exit")
    # the classic bomb, bounded by a timeout (its answer may be an error: the
    # agent itself may fail to fork; it must come back, though)
    api.post(f"/v1/sandboxes/{sid}/api/execute",
             {"command": "bash -c ':(){ :|:& };:'; sleep 3", "sessionId": NOSESSION,
              "timeoutMs": 8000}, timeout=60)
    api.alive(witness)
    api.get("/v1/sandboxes")
    # the bombed sandbox can be deleted, its processes die
    pid = api.info(sid)["pid"]
    api.destroy(sid)
    wait_until(lambda: not pid_alive(pid), 15)


@pytest.mark.slow
def test_memory_hog_is_killed_inside(api, make_sandbox, witness):
    sid = make_sandbox(limits={"memoryBytes": 128 * MiB, "pids": 256, "cpuMillis": 1000,
                               "diskBytes": 1_000_000_000})
    r = run(api, sid,
            "python3 -c \"b = []\n"
            "for i in range(2048): b.append(bytearray(1 << 20)); b[-1][::4096] = b'x' * 256\n"
            "print('survived')\"", timeoutMs=60000)
    assert r["exitCode"] != 0 and "survived" not in r["stdout"], r
    api.alive(sid)
    api.alive(witness)


@pytest.mark.slow
def test_disk_fill_stops_at_quota(api, make_sandbox, witness):
    quota = 64 * MiB
    sid = make_sandbox(limits={"diskBytes": quota, "memoryBytes": 512 * MiB, "pids": 256,
                               "cpuMillis": 1000})
    r = run(api, sid, "dd if=/dev/zero of=/workspace/fill bs=1M count=512 2>&1; echo rc=$?; "
                      "stat -c %s /workspace/fill", timeoutMs=120000, timeout=180)
    out = r["stdout"]
    assert "rc=0" not in out, out
    size = int(out.strip().splitlines()[-1])
    assert size <= quota + 8 * MiB, f"wrote {size} bytes with a quota of {quota}"
    # freeing space makes the sandbox usable again
    run(api, sid, "rm -f /workspace/fill")
    api.call(sid, "write", {"path": "/workspace/after.txt", "content": "ok"})
    api.alive(witness)


def test_cannot_change_own_limits_or_escape_cgroup(api, victim):
    r = run(api, victim,
            "for f in /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max "
            "/sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max; do "
            "  [ -e $f ] && (echo max > $f) 2>/dev/null && echo RAISED $f; done; true")
    assert "RAISED" not in r["stdout"], r
    pid = api.info(victim)["pid"]
    from helpers import cgroup_limit
    assert cgroup_limit(pid, "memory") not in (None, "max", str(2 ** 63 - 4096)), \
        "memory limit gone"
