"""Sealed sandbox networking, attacked from inside a sandbox.

coved runs in a network namespace of this module's own (netlab.NetLab) whose
only peer is a fake internet on documentation addresses: no packet of these
tests can leave the machine, even when sealing is broken."""

import os

import pytest

from helpers import Api, Coved, tail, unique_id, wait_until
from netlab.harness import lab_run, run, set_policy, sh_quote, start_coved, start_lab, stop_coved, stop_lab

pytestmark = pytest.mark.network


@pytest.fixture(scope="module")
def lab():
    lab, base = start_lab("cove-e2e-net-")
    yield lab
    stop_lab(lab, base)


@pytest.fixture(scope="module")
def net(lab):
    """(coved in the lab, its Api)."""
    c, api = start_coved(lab)
    yield c, api
    stop_coved(lab, c, api)


@pytest.fixture(scope="module")
def sbx(net):
    _, api = net
    sid = unique_id("net")
    api.create(id=sid)
    return sid


def test_sandbox_is_wired_to_coved_only(net, sbx):
    _, api = net
    code, out, _ = run(api, sbx, "echo $HTTP_PROXY; cat /etc/resolv.conf; cat /proc/sys/net/ipv6/conf/all/disable_ipv6")
    proxy, resolv, v6 = out.splitlines()
    assert proxy.startswith("http://10.20"), out
    gateway = proxy[len("http://"):].rsplit(":", 1)[0]
    assert resolv == f"nameserver {gateway}"
    assert v6 == "1"


def test_allowed_http_through_the_explicit_and_the_transparent_proxy(net, lab, sbx):
    _, api = net
    set_policy(api, sbx, {"enableInternet": True})
    for flags in ("", "--noproxy '*'"):
        code, out, err = run(api, sbx, f"curl -sS --max-time 10 {flags} http://allowed.test/hello?via={len(flags)}")
        assert code == 0, err
        assert '"server": "198.51.100.10"' in out
    seen = [r for r in lab.world_requests() if r.get("path", "").startswith("/hello")]
    assert {r["path"] for r in seen} == {"/hello?via=0", "/hello?via=13"}


def test_denied_host_is_refused_everywhere_and_reported(net, lab, sbx):
    _, api = net
    set_policy(api, sbx, {"enableInternet": True, "deniedHosts": ["denied.test", "198.51.100.13"]})
    code, out, _ = run(api, sbx, "curl -s -o /dev/null -w '%{http_code}' --max-time 10 http://denied.test/x")
    assert out == "403"
    code, out, _ = run(api, sbx, "getent hosts denied.test || echo nxdomain")
    assert out.strip() == "nxdomain"
    code, out, _ = run(api, sbx, "curl -s -o /dev/null -w '%{http_code}' --max-time 10 --noproxy '*' http://198.51.100.13/ip")
    assert out in ("000", "403")
    assert not [r for r in lab.world_requests() if r.get("server") == "198.51.100.13"]
    r = api.get(f"/v1/sandboxes/{sbx}/egress/denials")
    assert r.status_code == 200
    assert any("denied.test" in d["destination"] for d in r.json()["denials"]), r.json()


def test_policy_changes_apply_at_once(net, sbx):
    _, api = net
    set_policy(api, sbx, {"enableInternet": False, "allowedHosts": ["allowed.test"]})
    assert run(api, sbx, "curl -s -o /dev/null -w '%{http_code}' --max-time 10 http://allowed.test/a")[1] == "200"
    assert run(api, sbx, "curl -s -o /dev/null -w '%{http_code}' --max-time 10 http://other.test/a")[1] == "403"
    set_policy(api, sbx, {"enableInternet": False, "allowedHosts": ["other.test"]})
    assert run(api, sbx, "curl -s -o /dev/null -w '%{http_code}' --max-time 10 http://allowed.test/a")[1] == "403"
    assert run(api, sbx, "curl -s -o /dev/null -w '%{http_code}' --max-time 10 http://other.test/a")[1] == "200"
    assert api.request("DELETE", f"/v1/sandboxes/{sbx}/egress").json()["custom"] is False


@pytest.mark.parametrize("target", [
    "http://169.254.169.254/latest/meta-data/",   # cloud metadata
    "http://127.0.0.1:1/",                        # the sandbox's own loopback: nothing there
    "http://10.9.8.7/",                           # a private address
])
def test_non_global_destinations_are_denied(net, sbx, target):
    _, api = net
    for flags in ("", "--noproxy '*'"):
        code, out, _ = run(api, sbx, f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 {flags} {target}")
        # Through the explicit proxy the denial is an answer (loopback is NO_PROXY: never proxied).
        explicit = not flags and "127.0.0.1" not in target
        assert out == "403" if explicit else out in ("000", "403"), (flags, target, out)
    if "127.0.0.1" not in target:
        denials = api.get(f"/v1/sandboxes/{sbx}/egress/denials").json()["denials"]
        assert any(target.split("/")[2] in d["destination"] for d in denials), denials


def test_host_services_and_coved_api_are_unreachable(net, lab, sbx):
    c, api = net
    code, out, _ = run(api, sbx, "echo $HTTP_PROXY")
    gateway = out.strip()[len("http://"):].rsplit(":", 1)[0]
    for url in (f"http://{gateway}:{c.port}/v1/sandboxes", f"http://{lab.lab_addr}:{c.port}/v1/sandboxes",
                f"http://198.51.100.1:{c.port}/v1/sandboxes"):
        for flags in ("", "--noproxy '*'"):
            code, out, _ = run(api, sbx, f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 {flags} {url}")
            assert out in ("000", "403"), (url, flags, out)


def test_other_sandboxes_are_unreachable(net, sbx):
    _, api = net
    other = unique_id("net-b")
    api.create(id=other)
    try:
        api.exec(other, "python3 -m http.server 8000 >/dev/null 2>&1 &", session="srv")
        code, out, _ = run(api, other, "echo $HTTP_PROXY")
        addr = out.strip()[len("http://"):].rsplit(":", 1)[0]
        # The sandbox side is the gateway + 1.
        a, b, c3, d = map(int, addr.split("."))
        peer = f"{a}.{b}.{c3}.{d + 1}"
        for flags in ("", "--noproxy '*'"):
            code, out, _ = run(api, sbx, f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 {flags} http://{peer}:8000/")
            assert out in ("000", "403"), (flags, out)
    finally:
        api.delete(f"/v1/sandboxes/{other}")


def test_udp_raw_packet_sockets_and_ipv6_go_nowhere(net, lab, sbx):
    _, api = net
    script = r"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b'x', ('198.51.100.12', 9999)); print('udp-sent')
for fam, typ, proto in ((socket.AF_INET, socket.SOCK_RAW, 1), (socket.AF_PACKET, socket.SOCK_RAW, 0)):
    try:
        socket.socket(fam, typ, proto); print('raw-open')
    except PermissionError:
        print('raw-denied')
try:
    socket.create_connection(('2001:db8::1', 80), timeout=3); print('v6-connected')
except OSError:
    print('v6-failed')
"""
    code, out, err = run(api, sbx, f"python3 -c {sh_quote(script)}")
    assert out.split() == ["udp-sent", "raw-denied", "raw-denied", "v6-failed"], (out, err)
    assert not [r for r in lab.world_requests() if r.get("tcp") == 9999 or r.get("server") == "198.51.100.12"]


def test_root_in_the_sandbox_cannot_change_its_network(net, sbx):
    _, api = net
    for cmd in ("ip link set eth0 down", "ip addr add 10.200.99.1/32 dev eth0", "ip route del default",
                "nft flush ruleset", "sysctl -w net.ipv6.conf.all.disable_ipv6=0"):
        code, out, err = run(api, sbx, cmd + " 2>&1")
        assert code != 0, (cmd, out)
    code, out, _ = run(api, sbx, "curl -s -o /dev/null -w '%{http_code}' --max-time 10 http://allowed.test/still")
    assert out == "200"


def test_dns_is_answered_by_coved_only(net, lab, sbx):
    _, api = net
    set_policy(api, sbx, {"enableInternet": False, "allowedHosts": ["allowed.test"]})
    try:
        # A query sent straight to the world's DNS server is answered by coved (denied: NXDOMAIN).
        code, out, _ = run(api, sbx, "getent hosts allowed.test; getent hosts other.test || echo other-nx")
        assert "198.51.100.10" in out and "other-nx" in out
        before = len([r for r in lab.world_requests() if r.get("dns") == "tunnel.other.test"])
        script = ("import socket,struct;s=socket.socket(2,2);s.settimeout(3);"
                  "q=struct.pack('>HHHHHH',7,256,1,0,0,0)+b'\\x06tunnel\\x05other\\x04test\\x00\\x00\\x01\\x00\\x01';"
                  "s.sendto(q,('198.51.100.53',53));r=s.recv(512);print(r[3]&15)")
        code, out, _ = run(api, sbx, f"python3 -c {sh_quote(script)}")
        assert out.strip() == "3"  # NXDOMAIN from coved
        after = len([r for r in lab.world_requests() if r.get("dns") == "tunnel.other.test"])
        assert after == before  # the denied name never left coved
    finally:
        set_policy(api, sbx, {"enableInternet": True})


def test_raw_tcp_needs_a_rule_naming_host_and_port(net, lab, sbx):
    _, api = net
    echo = ("import socket;s=socket.create_connection(('ssh.test',22),timeout=5);s.sendall(b'ping');"
            "print(s.recv(4).decode())")
    set_policy(api, sbx, {"enableInternet": True})
    before = len([r for r in lab.world_requests() if r.get("tcp") == 22])
    code, out, _ = run(api, sbx, f"python3 -c {sh_quote(echo)}")
    assert "ping" not in out  # the proxy accepted the redirected connection, then closed it
    assert len([r for r in lab.world_requests() if r.get("tcp") == 22]) == before
    set_policy(api, sbx, {"enableInternet": True, "rules": [{"host": "ssh.test", "ports": [22]}]})
    code, out, err = run(api, sbx, f"python3 -c {sh_quote(echo)}")
    assert out.strip() == "ping", err
    # The rule names the host: the same port on another host stays closed.
    other = echo.replace("'ssh.test'", "'198.51.100.13'")
    code, out, _ = run(api, sbx, f"python3 -c {sh_quote(other)}")
    assert "ping" not in out
    set_policy(api, sbx, {"enableInternet": True})


def test_host_addresses_are_unreachable_even_on_allowed_ports(net, lab, sbx):
    """A server of the host on port 80 of a 'global' address: the policy would
    allow the port, the firewall refuses the proxy's upstream socket."""
    import subprocess
    _, api = net
    server = subprocess.Popen(["ip", "netns", "exec", lab.lab, "python3", "-m", "http.server", "80",
                               "--bind", lab.lab_addr], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def listening():
            assert server.poll() is None, f"the host's server exited with {server.returncode}"
            return subprocess.run(["ss", "-N", lab.lab, "-Hltn", "sport", "=", ":80"],
                                  capture_output=True, text=True).stdout.strip()

        wait_until(listening, 20, what=f"the host's server to listen on {lab.lab_addr}:80")
        for flags in ("", "--noproxy '*'"):
            code, out, _ = run(api, sbx, f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 {flags} "
                                         f"http://{lab.lab_addr}/")
            assert out in ("000", "403", "502"), (flags, out)
    finally:
        server.kill()
        server.wait()


def test_connect_tricks_are_refused(net, lab, sbx):
    _, api = net
    set_policy(api, sbx, {"enableInternet": False, "allowedHosts": ["tls.test", "allowed.test"]})
    try:
        # CONNECT to a denied host by IP literal.
        code, out, _ = run(api, sbx, "curl -s -o /dev/null -w '%{http_code}' --max-time 5 -p -k https://198.51.100.13/")
        assert out == "000"  # CONNECT answered 403: curl reports no HTTP code for the tunnelled request
        # Domain fronting: CONNECT to an allowed name, TLS SNI naming another.
        script = ("import socket,ssl,os;p=os.environ['HTTP_PROXY'][7:].rsplit(':',1);"
                  "s=socket.create_connection((p[0],int(p[1])),timeout=5);"
                  "s.sendall(b'CONNECT tls.test:443 HTTP/1.1\\r\\nHost: tls.test:443\\r\\n\\r\\n');"
                  "print(s.recv(100).split(b'\\r\\n')[0].decode());"
                  "c=ssl.create_default_context();c.check_hostname=False;c.verify_mode=ssl.CERT_NONE;"
                  "t=c.wrap_socket(s,server_hostname='other.test')\n")
        code, out, _ = run(api, sbx, f"python3 -c {sh_quote(script)}")
        assert "200" in out and code != 0, out  # tunnel opened, then cut at the fronted ClientHello
        # A relayed CONNECT inside an allowed plain-HTTP tunnel reaches only that host.
        before = len(lab.world_requests())
        relay = ("import socket,os;p=os.environ['HTTP_PROXY'][7:].rsplit(':',1);"
                 "s=socket.create_connection((p[0],int(p[1])),timeout=5);"
                 "s.sendall(b'CONNECT allowed.test:80 HTTP/1.1\\r\\nHost: allowed.test:80\\r\\n\\r\\n');"
                 "print(s.recv(100).split(b'\\r\\n')[0].decode());"
                 "s.sendall(b'CONNECT denied.test:80 HTTP/1.1\\r\\nHost: denied.test:80\\r\\n\\r\\n');"
                 "print(s.recv(300).split(b'\\r\\n')[0].decode())")
        code, out, _ = run(api, sbx, f"python3 -c {sh_quote(relay)}")
        assert out.splitlines()[0].endswith("200 Connection established") or " 200" in out.splitlines()[0], out
        new = lab.world_requests()[before:]
        assert all(r.get("server") == "198.51.100.10" for r in new if "server" in r), new
        assert not [r for r in new if r.get("server") == "198.51.100.13"]
    finally:
        set_policy(api, sbx, {"enableInternet": True})


def test_preview_urls_with_sealed_networking(net, sbx):
    """The preview listener reaches servers on the sandbox's loopback and on its eth0 only."""
    import requests
    c, api = net
    app = open(os.path.join(os.path.dirname(__file__), "apps", "preview_app.py")).read()
    api.call(sbx, "write", {"path": "/tmp/preview_app.py", "content": app})
    code, out, _ = run(api, sbx, "ip -4 -o addr show dev eth0")
    assert code == 0, out
    eth0 = out.split()[3].split("/")[0]
    api.call(sbx, "process/start", {"command": "exec python3 /tmp/preview_app.py 8000", "processId": "lo"})
    api.call(sbx, "process/start", {"command": f"exec python3 /tmp/preview_app.py 8001 {eth0}", "processId": "eth0"})
    for port in (8000, 8001):
        r = api.post(f"/v1/sandboxes/{sbx}/ports", {"port": port})
        assert r.status_code == 201, r.text
        host = r.json()["url"].split("//", 1)[1]
        assert host.endswith(f".localhost:{c.preview_port}")

        def get():
            return requests.get(f"http://{c.host}:{c.preview_port}/hello", headers={"Host": host}, timeout=30)
        wait_until(lambda: get().status_code == 200, 20, what=lambda: (port, get().status_code))
        assert get().text == "hello from the sandbox"


def test_git_checkout_through_the_egress_proxy(net, lab, sbx):
    """Issue 3's git checkout against a git server on the fake internet: the
    sandbox's git reaches it only through coved's proxy, and the policy applies."""
    import subprocess
    _, api = net
    src = os.path.join(lab.workdir, "src")
    bare = os.path.join(lab.git_root, "demo.git")
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t")
    for cmd in (["git", "init", "-q", "-b", "main", src],
                ["sh", "-c", f"echo hello-from-git > {src}/README && git -C {src} add README && "
                             f"git -C {src} commit -qm first"],
                ["git", "clone", "-q", "--bare", src, bare],
                ["git", "-C", bare, "update-server-info"]):
        subprocess.run(cmd, check=True, env=env, capture_output=True)
    set_policy(api, sbx, {"enableInternet": False, "allowedHosts": ["git.test"]})
    try:
        r = api.call(sbx, "git/checkout", {"repoUrl": "http://git.test/demo.git", "targetDir": "/workspace/demo"})
        assert r["success"] is True, r
        assert run(api, sbx, "cat /workspace/demo/README")[1] == "hello-from-git\n"
        assert any(x.get("server") == "198.51.100.14" for x in lab.world_requests())
        set_policy(api, sbx, {"enableInternet": False, "allowedHosts": ["other.test"]})
        r = api.call(sbx, "git/checkout", {"repoUrl": "http://git.test/demo.git", "targetDir": "/workspace/no"},
                     expect=None)
        assert r.get("success") is not True, r
    finally:
        set_policy(api, sbx, {"enableInternet": True})


def test_host_wide_default_policy(lab):
    """--egress-default applies to sandboxes that have no policy of their own."""
    import json as _json
    base = os.path.dirname(lab.ca_cert)
    c = Coved(os.path.join(base, "state-default"), os.path.join(base, "coved-default.log"), host=lab.lab_addr,
              prefix=lab.nsenter(), args=["--dns-server", lab.WORLD_DNS, "--egress-default",
                                          _json.dumps({"enableInternet": False, "allowedHosts": ["allowed.test"]})])
    c.start()
    api = Api(c)
    try:
        sid = unique_id("net-default")
        api.create(id=sid)
        state = api.get(f"/v1/sandboxes/{sid}/egress").json()
        assert state["custom"] is False and state["policy"]["allowedHosts"] == ["allowed.test"]
        curl = "curl -s -o /dev/null -w '%{http_code}' --max-time 10 "
        assert run(api, sid, curl + "http://allowed.test/d")[1] == "200"
        assert run(api, sid, curl + "http://other.test/d")[1] == "403"
        api.delete(f"/v1/sandboxes/{sid}")
    finally:
        assert c.stop() == 0, tail(c.log_path)


def _lab_tables(lab):
    return {line.split()[-1] for line in lab_run(lab, "nft", "list", "tables").splitlines() if "cove_" in line}


def _another_sealed_coved(lab, name):
    base = os.path.join(os.path.dirname(lab.ca_cert), name)
    os.makedirs(base, exist_ok=True)
    c = Coved(os.path.join(base, "state"), os.path.join(base, "coved.log"), host=lab.lab_addr,
              prefix=lab.nsenter(), args=["--network", "sealed", "--dns-server", lab.WORLD_DNS])
    c.start()
    return c


def test_the_table_of_a_killed_coved_is_removed_by_the_next_one(net, lab):
    """A coved killed with SIGKILL cannot delete its firewall table; the next coved
    to start (another state dir) does, and keeps the table of the coved that runs."""
    running_tables = _lab_tables(lab)
    assert running_tables, "the module's coved has a table"
    killed = _another_sealed_coved(lab, "killed")
    killed_tables = _lab_tables(lab) - running_tables
    assert len(killed_tables) == 1, killed_tables
    killed.kill9()
    assert killed_tables <= _lab_tables(lab), "nothing but the next coved removes it"
    following = _another_sealed_coved(lab, "following")
    try:
        tables = _lab_tables(lab)
        assert not killed_tables & tables, tail(following.log_path)
        assert running_tables <= tables
        with open(following.log_path) as f:
            assert "of a coved that is gone" in f.read()
    finally:
        assert following.stop() == 0, tail(following.log_path)
    assert _lab_tables(lab) == running_tables
