"""The fake internet of the network tests: runs inside a network namespace of
the test's own, on documentation addresses, and serves

  HTTP  on 198.51.100.10:80 and 198.51.100.13:80 (answers with what it got, as JSON)
  HTTPS on 198.51.100.11:443 (certificate from the test's CA, names in ZONE)
  TCP echo on 198.51.100.12:22
  DNS on 198.51.100.53:53 (UDP) for the names in ZONE
  static files of GIT_ROOT on 198.51.100.14:80 (git.test: bare repositories over git's dumb HTTP;
    packages.test: a Debian repository)

Every request is appended to LOG (one JSON line, header values included), so
a test can prove what an upstream received. The answer echoes header NAMES
with a sha256 of each value (and of the query), never the values: an echo
would otherwise hand a secret the proxy injected back to the sandbox.  Usage: world.py CERT KEY LOG GIT_ROOT
"""

import hashlib
import http.server
import json
import socket
import socketserver
import ssl
import struct
import sys
import threading

ZONE = {
    "allowed.test": "198.51.100.10",
    "other.test": "198.51.100.13",
    "denied.test": "198.51.100.13",
    "tls.test": "198.51.100.11",
    "api.tls.test": "198.51.100.11",
    "wrong.tls.test": "198.51.100.11",  # not in the certificate: verification fails
    "ssh.test": "198.51.100.12",
    "private.test": "10.9.8.7",
    "metadata.test": "169.254.169.254",
    "bench.test": "198.51.100.20",
    "git.test": "198.51.100.14",  # bench/egress_bench.py's nginx
    "packages.test": "198.51.100.14",  # a Debian repository a test puts under GIT_ROOT
}

CERT, KEY, LOG, GIT_ROOT = sys.argv[1:5]
log_lock = threading.Lock()


def record(entry):
    with log_lock, open(LOG, "a") as f:
        f.write(json.dumps(entry) + "\n")


class Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def handle_one(self):
        body = b""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
        elif self.headers.get("Content-Length"):
            body = self.rfile.read(int(self.headers["Content-Length"]))
        entry = {"server": self.server.server_address[0], "tls": isinstance(self.connection, ssl.SSLSocket),
                 "method": self.command, "path": self.path, "headers": dict(self.headers.items()),
                 "body": body.decode(errors="replace")}
        record(entry)
        path, _, query = self.path.partition("?")
        entry = dict(entry, headers={k: "sha256:" + hashlib.sha256(v.encode()).hexdigest()
                                     for k, v in self.headers.items()},
                     path=path + ("?sha256:" + hashlib.sha256(query.encode()).hexdigest() if query else ""))
        if self.path.startswith("/stream"):
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(5):
                chunk = f"part{i}\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
            return
        out = json.dumps(entry).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = handle_one

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve_http(addr, port, tls=False):
    srv = Server((addr, port), Echo)
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(CERT, KEY)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()


def serve_echo(addr, port):
    s = socket.create_server((addr, port), reuse_port=True)

    def one(c):
        with c:
            while data := c.recv(65536):
                c.sendall(data)

    def loop():
        while True:
            c, peer = s.accept()
            record({"server": addr, "tcp": port, "peer": peer[0]})
            threading.Thread(target=one, args=(c,), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()


def dns_answer(query):
    qid, flags, qd = struct.unpack(">HHH", query[:6])
    pos, labels = 12, []
    while query[pos]:
        n = query[pos]
        labels.append(query[pos + 1:pos + 1 + n].decode().lower())
        pos += 1 + n
    qtype = struct.unpack(">H", query[pos + 1:pos + 3])[0]
    question = query[12:pos + 5]
    name = ".".join(labels)
    record({"dns": name, "qtype": qtype})
    addr = ZONE.get(name)
    if addr is None:
        return struct.pack(">HHHHHH", qid, 0x8183, 1, 0, 0, 0) + question  # NXDOMAIN
    if qtype != 1:
        return struct.pack(">HHHHHH", qid, 0x8180, 1, 0, 0, 0) + question
    answer = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + socket.inet_aton(addr)
    return struct.pack(">HHHHHH", qid, 0x8180, 1, 1, 0, 0) + question + answer


def serve_dns(addr):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, 53))

    def loop():
        while True:
            q, peer = s.recvfrom(4096)
            try:
                s.sendto(dns_answer(q), peer)
            except Exception:
                pass
    threading.Thread(target=loop, daemon=True).start()


serve_http("198.51.100.10", 80)
serve_http("198.51.100.13", 80)


class Files(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *args, **kw):
        super().__init__(*args, directory=GIT_ROOT, **kw)

    def log_message(self, *args):
        record({"server": "198.51.100.14", "path": self.path})


git_server = Server(("198.51.100.14", 80), Files)
threading.Thread(target=git_server.serve_forever, daemon=True).start()
serve_http("198.51.100.11", 443, tls=True)
serve_echo("198.51.100.12", 22)
serve_dns("198.51.100.53")
print("ready", flush=True)
threading.Event().wait()
