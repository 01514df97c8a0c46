"""Preview URLs: exposed ports (/v1/sandboxes/ID/ports) and coved's preview listener.

A stdlib test server (apps/preview_app.py) runs in the sandbox on 127.0.0.1 (the
sandbox has loopback only: coved runs with --network none); requests go to the
preview listener on 127.0.0.1 with the preview host name in the Host header.
"""

import base64
import http.client
import os
import re
import socket
import subprocess
import time

import pytest
import requests

from helpers import COVE, assert_error, unique_id, wait_until

pytestmark = pytest.mark.preview

APP = open(os.path.join(os.path.dirname(__file__), "apps", "preview_app.py")).read()


def start_app(api, sid, port=8000):
    api.call(sid, "write", {"path": "/tmp/preview_app.py", "content": APP})
    api.call(sid, "process/start", {"command": f"exec python3 /tmp/preview_app.py {port}",
                                    "processId": f"app{port}"})
    api.stream(sid, "port-watch", {"port": port, "mode": "tcp", "interval": 100})


def expose(api, sid, port, expect=201, **fields):
    r = api.post(f"/v1/sandboxes/{sid}/ports", {"port": port, **fields})
    assert r.status_code == expect, r.text
    return r.json()


def host_of(url):
    return re.match(r"^http://([^/]+)$", url).group(1)


def get(coved, host, path, **kw):
    return requests.get(f"http://127.0.0.1:{coved.preview_port}{path}", headers={"Host": host},
                        timeout=kw.pop("timeout", 30), **kw)


@pytest.fixture(scope="module")
def app(api, coved):
    sid = unique_id("pv")
    api.create(id=sid)
    start_app(api, sid)
    e = expose(api, sid, 8000, name="web")
    yield sid, host_of(e["url"]), e
    api.delete(f"/v1/sandboxes/{sid}")


def test_expose_and_get(api, coved, app):
    sid, host, e = app
    assert e["port"] == 8000 and e["name"] == "web"
    assert re.fullmatch(r"[a-z0-9]{16}", e["token"])
    assert e["url"] == f"http://8000-{sid}-{e['token']}.localhost:{coved.preview_port}"
    r = get(coved, host, "/hello")
    assert r.status_code == 200 and r.text == "hello from the sandbox"
    seen = __import__("json").loads(r.headers["X-Seen"])
    assert seen["X-Forwarded-For"] == "127.0.0.1"
    assert seen["X-Forwarded-Host"] == host
    assert seen["X-Forwarded-Proto"] == "http"
    assert seen["Host"] == host
    assert seen["Keep-Alive"] is None and seen["Connection"] is None  # hop-by-hop headers stripped
    listed = api.get(f"/v1/sandboxes/{sid}/ports").json()["ports"]
    assert [(p["port"], p["name"], p["url"]) for p in listed] == [(8000, "web", e["url"])]


def test_validation(api, app):
    sid, _, _ = app
    url = f"/v1/sandboxes/{sid}/ports"
    for body in ({}, {"port": 80}, {"port": 1023}, {"port": 65536}, {"port": "8080"}, {"port": 8080.5}):
        assert_error(api.post(url, body), 400, "INVALID_PORT")
    for token in ("", "UPPER", "a-b", "x" * 17, "dot.ted", 5):
        assert_error(api.post(url, {"port": 8090, "token": token}), 400, "VALIDATION_FAILED")
    assert_error(api.post(url, {"port": 8000}), 409, "PORT_ALREADY_EXPOSED")
    assert_error(api.post(f"/v1/sandboxes/{unique_id('nope')}/ports", {"port": 8000}), 404, "SANDBOX_NOT_FOUND")
    assert_error(api.delete(f"{url}/8999"), 404, "PORT_NOT_EXPOSED")
    assert_error(api.delete(f"{url}/80"), 400, "INVALID_PORT")
    e = expose(api, sid, 8090, token="my_token1")
    assert e["token"] == "my_token1" and e["name"] == ""
    assert api.delete(f"{url}/8090").json() == {"port": 8090, "deleted": True}


def test_keep_alive(coved, app):
    _, host, _ = app
    conn = http.client.HTTPConnection("127.0.0.1", coved.preview_port, timeout=30)
    ids = []
    for _ in range(3):
        conn.request("GET", "/conn", headers={"Host": host})
        r = conn.getresponse()
        assert r.status == 200
        ids.append(r.read())
        sock = conn.sock
        assert sock is not None  # the client connection stayed open
    conn.request("GET", "/hello", headers={"Host": host})
    assert conn.getresponse().read() == b"hello from the sandbox"
    assert conn.sock is sock
    assert len(set(ids)) == 1, ids  # and so did the upstream one
    conn.close()


def test_chunked_response_streams(coved, app):
    _, host, _ = app
    t0 = time.monotonic()
    r = get(coved, host, "/chunked", stream=True)
    assert r.headers["Transfer-Encoding"] == "chunked"
    arrivals, body = [], b""
    for piece in r.iter_content(chunk_size=None):
        arrivals.append(time.monotonic() - t0)
        body += piece
    assert body == b"part0;part1;part2;"
    # Each part as it was written (0.3 s apart), not all at once at the end.
    assert len(arrivals) >= 3 and arrivals[-1] - arrivals[0] >= 0.45, arrivals


def test_sse_arrives_incrementally(coved, app):
    _, host, _ = app
    t0 = time.monotonic()
    r = get(coved, host, "/sse", stream=True)
    assert r.headers["Content-Type"] == "text/event-stream"
    events = []
    for line in r.iter_lines(chunk_size=1):
        if line.startswith(b"data: "):
            events.append((time.monotonic() - t0, line))
    assert len(events) == 5
    # The first event arrived long before the server finished (2 s later), not buffered.
    assert events[-1][0] - events[0][0] >= 1.5, events


def test_request_bodies(coved, app):
    _, host, _ = app
    data = os.urandom(1 << 20)
    r = requests.post(f"http://127.0.0.1:{coved.preview_port}/echo", data=data, headers={"Host": host}, timeout=30)
    assert r.status_code == 200 and r.content == data
    r = requests.post(f"http://127.0.0.1:{coved.preview_port}/echo", data=(data[i:i + 65536] for i in range(0, len(data), 65536)),
                      headers={"Host": host}, timeout=30)  # a generator: chunked
    assert r.status_code == 200 and r.content == data


def ws_connect(port, host, path="/ws"):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        if not chunk:
            break
        head += chunk
    return s, head.decode("latin-1")


def ws_send(s, text):
    data = text.encode()
    mask = os.urandom(4)
    s.sendall(bytes([0x81, 0x80 | len(data)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))


def recv_exact(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise EOFError
        out += chunk
    return out


def ws_recv(s):
    b0, b1 = recv_exact(s, 2)
    return recv_exact(s, b1 & 0x7F).decode()


def test_websocket_round_trip(coved, app):
    _, host, _ = app
    s, head = ws_connect(coved.preview_port, host)
    assert head.startswith("HTTP/1.1 101"), head
    assert "sec-websocket-accept" in head.lower()
    for text in ("hi", "again"):
        ws_send(s, text)
        assert ws_recv(s) == "echo:" + text
    s.close()


def test_not_found_is_always_the_same(api, coved, app):
    sid, host, e = app
    token = e["token"]
    other = "a" * 16 if token != "a" * 16 else "b" * 16
    hosts = [f"8000-{sid}-{other}.localhost", f"8001-{sid}-{token}.localhost",
             f"8000-{unique_id('ghost')}-{token}.localhost", "localhost", "127.0.0.1",
             f"8000-{sid}-{token}.example.com", f"8000-{sid}-{token[:-1]}.localhost"]
    answers = set()
    for h in hosts:
        r = get(coved, h, "/hello")
        assert r.status_code == 404, h
        answers.add((r.text, r.headers["Content-Type"], r.headers["Content-Length"]))
    assert len(answers) == 1, answers


def test_delete_stops_exposure_and_connections(api, coved, make_sandbox):
    sid = make_sandbox()
    start_app(api, sid, 8100)
    host = host_of(expose(api, sid, 8100)["url"])
    s, head = ws_connect(coved.preview_port, host)
    assert head.startswith("HTTP/1.1 101"), head
    assert get(coved, host, "/hello").status_code == 200
    api.delete(f"/v1/sandboxes/{sid}/ports/8100")
    assert get(coved, host, "/hello").status_code == 404
    s.settimeout(10)
    assert s.recv(100) == b""  # the open WebSocket was closed
    assert api.get(f"/v1/sandboxes/{sid}/ports").json() == {"ports": []}


def test_destroying_the_sandbox_ends_exposure(api, coved, make_sandbox):
    sid = make_sandbox()
    start_app(api, sid, 8200)
    host = host_of(expose(api, sid, 8200)["url"])
    s, head = ws_connect(coved.preview_port, host)
    assert head.startswith("HTTP/1.1 101"), head
    api.delete(f"/v1/sandboxes/{sid}")
    s.settimeout(10)
    try:
        assert s.recv(100) == b""
    except ConnectionResetError:
        pass
    assert get(coved, host, "/hello").status_code == 404


def test_server_on_a_port_nobody_listens_is_502(api, coved, app):
    sid, _, _ = app
    e = expose(api, sid, 8300)
    r = get(coved, host_of(e["url"]), "/")
    assert r.status_code == 502
    api.delete(f"/v1/sandboxes/{sid}/ports/8300")


@pytest.mark.restart
def test_exposure_survives_a_restart(coved_factory):
    c, a = coved_factory()
    sid = unique_id("pvr")
    a.create(id=sid)
    start_app(a, sid, 8400)
    e = expose(a, sid, 8400, name="kept")
    host = host_of(e["url"])
    assert get(c, host, "/hello").status_code == 200
    assert c.stop() == 0
    c.start()
    assert a.get(f"/v1/sandboxes/{sid}/ports").json()["ports"][0]["url"] == e["url"]
    r = get(c, host, "/hello")
    assert r.status_code == 200 and r.text == "hello from the sandbox"


def test_cli(api, coved, app):
    sid, _, _ = app
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVE_")}
    env.update(COVE_URL=coved.url, COVE_TOKEN=coved.token)

    def cove(*args):
        p = subprocess.run([COVE, *args], env=env, capture_output=True, text=True, timeout=60)
        return p.returncode, p.stdout, p.stderr

    rc, out, err = cove("port", "expose", sid, "8500", "--name", "cli", "--token", "clitoken")
    assert rc == 0, err
    assert out.strip() == f"http://8500-{sid}-clitoken.localhost:{coved.preview_port}"
    rc, out, err = cove("port", "ls", sid)
    assert rc == 0 and "8500" in out and "cli" in out and "clitoken" in out, out
    rc, out, err = cove("port", "expose", sid, "8500")
    assert rc == 1 and "PORT_ALREADY_EXPOSED" in err
    rc, out, err = cove("port", "rm", sid, "8500")
    assert rc == 0, err
    rc, out, err = cove("port", "ls", unique_id("nope"))
    assert rc == 1 and "not found" in err


def test_tls_listener(coved_factory, tmp_path):
    """--preview-tls-cert/--preview-tls-key: the listener speaks TLS with that certificate."""
    import ssl
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=preview.test",
                    "-addext", "subjectAltName=DNS:*.preview.test",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    c, a = coved_factory(args=["--preview-tls-cert", str(cert), "--preview-tls-key", str(key),
                               "--preview-domain", "preview.test"])
    sid = unique_id("pvt")
    a.create(id=sid)
    start_app(a, sid, 8600)
    e = expose(a, sid, 8600)
    assert e["url"] == f"https://8600-{sid}-{e['token']}.preview.test:{c.preview_port}"
    host = e["url"].split("//", 1)[1]
    ctx = ssl.create_default_context(cafile=str(cert))
    conn = http.client.HTTPSConnection("127.0.0.1", c.preview_port, context=ctx, timeout=30)
    conn.sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", c.preview_port), timeout=30),
                                server_hostname=host.split(":")[0])
    conn.request("GET", "/hello", headers={"Host": host})
    r = conn.getresponse()
    assert r.status == 200 and r.read() == b"hello from the sandbox"
    seen = __import__("json").loads(r.getheader("X-Seen"))
    assert seen["X-Forwarded-Proto"] == "https"
    conn.close()
    # Plain HTTP on the TLS listener gets nowhere.
    s = socket.create_connection(("127.0.0.1", c.preview_port), timeout=10)
    s.sendall(f"GET /hello HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    try:
        assert b"hello from the sandbox" not in s.recv(4096)
    except ConnectionResetError:
        pass
    s.close()
