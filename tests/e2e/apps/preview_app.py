"""A test server run inside a sandbox by tests/e2e/test_preview.py (stdlib only).

Serves on 127.0.0.1:PORT (argv[1]; argv[2]: another address to bind), HTTP/1.1 with keep-alive:
  GET /hello        "hello from the sandbox", with the request's X-Forwarded-* and
                    Connection headers echoed as JSON in the X-Seen header
  GET /chunked      three chunks, 0.3 s apart (Transfer-Encoding: chunked)
  GET /sse          five Server-Sent Events, 0.5 s apart
  POST /echo        the request body back (Content-Length or chunked request)
  GET /conn         the id of the TCP connection (to see keep-alive upstream)
  GET /ws           WebSocket echo (text frames, prefixed with "echo:")
  GET /             a page whose script opens /ws on its own origin, sends a
                    message and shows the echo in #out (the Chromium test)
"""
import base64
import hashlib
import json
import socketserver
import struct
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer


PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>preview</title></head>
<body><div id="out">waiting</div>
<script>
const out = document.getElementById('out');
const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws');
ws.onopen = () => ws.send('hello-from-page');
ws.onmessage = (e) => { out.textContent = e.data; };
ws.onerror = () => { out.textContent = 'websocket error'; };
</script></body></html>
"""


class Server(socketserver.ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_body(self, body, ctype="text/plain", extra=()):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/":
            self.send_body(PAGE, "text/html; charset=utf-8")
        elif self.path == "/hello":
            seen = {k: self.headers.get(k) for k in ("X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto",
                                                     "Connection", "Keep-Alive", "Host")}
            self.send_body(b"hello from the sandbox", extra=[("X-Seen", json.dumps(seen))])
        elif self.path == "/conn":
            self.send_body(str(id(self.connection)).encode())
        elif self.path == "/chunked":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(3):
                data = f"part{i};".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
                time.sleep(0.3)  # the point: chunks spread over time
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/sse":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            for i in range(5):
                self.wfile.write(f"data: event{i} {time.time()}\n\n".encode())
                self.wfile.flush()
                time.sleep(0.5)  # the point: events spread over time
            self.close_connection = True
        elif self.path == "/ws":
            self.websocket()
        else:
            self.send_error(404)

    def do_POST(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_body(body, "application/octet-stream")

    def websocket(self):
        key = self.headers.get("Sec-WebSocket-Key", "")
        accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept.decode())
        self.end_headers()
        self.wfile.flush()
        while True:
            head = self.rfile.read(2)
            if len(head) < 2:
                break
            op, n = head[0] & 0x0F, head[1] & 0x7F
            if n == 126:
                n = struct.unpack(">H", self.rfile.read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self.rfile.read(8))[0]
            mask = self.rfile.read(4) if head[1] & 0x80 else b"\0\0\0\0"
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(n)))
            if op == 8:
                self.wfile.write(b"\x88\x00")
                self.wfile.flush()
                break
            if op == 1:
                out = b"echo:" + data
                hdr = bytes([0x81, len(out)]) if len(out) < 126 else bytes([0x81, 126]) + struct.pack(">H", len(out))
                self.wfile.write(hdr + out)
                self.wfile.flush()
        self.close_connection = True


if __name__ == "__main__":
    Server((sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
