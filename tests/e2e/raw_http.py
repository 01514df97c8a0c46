"""HTTP on a socket of its own, for what `requests` cannot do: send a request and
not read its answer, read it at a chosen rate, or send a body in two steps.
Used by the e2e suite and by the benchmarks under bench/."""

import json
import socket
import threading


def raw_request(coved, method, path, body=None, close=False):
    """Sends one request on a new socket and returns the socket, unread."""
    s = socket.create_connection((coved.host, coved.port), timeout=30)
    s.sendall(request_bytes(coved, method, path, body, close))
    return s


def unread_by_server(sock):
    """How many of the bytes sent on sock (a TCP connection to a server of this
    network namespace) the server has not read yet: the receive queue of its end,
    from /proc/net/tcp; None if that end is not found (closed)."""
    mine, theirs = sock.getsockname()[1], sock.getpeername()[1]
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                local, remote, _, queues = line.split()[1:5]
                if int(local.rsplit(":", 1)[1], 16) == theirs and int(remote.rsplit(":", 1)[1], 16) == mine:
                    return int(queues.split(":")[1], 16)
    return None


def request_bytes(coved, method, path, body=None, close=False):
    data = json.dumps(body).encode() if body is not None else b""
    head = (f"{method} {path} HTTP/1.1\r\nHost: cove\r\nAuthorization: Bearer {coved.token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
            + ("Connection: close\r\n" if close else "") + "\r\n")
    return head.encode() + data


class SlowReader(threading.Thread):
    """Reads a socket at `rate` bytes per second (0: not at all; None: as fast as
    it can) until stopped or the peer closes; `got` counts the bytes read."""

    def __init__(self, sock, rate):
        super().__init__(daemon=True)
        self.sock, self.rate, self.got, self.stop = sock, rate, 0, threading.Event()

    def run(self):
        self.sock.settimeout(1)
        while not self.stop.is_set():
            if self.rate == 0:
                self.stop.wait(0.5)
                continue
            try:
                n = len(self.sock.recv(1 << 20 if self.rate is None else min(self.rate // 10, 1 << 20)))
            except socket.timeout:
                continue
            except OSError:
                return
            if n == 0:
                return
            self.got += n
            if self.rate is not None:
                self.stop.wait(n / self.rate)


class SplitRequest:
    """One request on its own connection, written in two steps: the head (and the
    first byte of the body) now, the rest later. coved reads the head at once, so
    the request has arrived, but cannot act on it before the body is complete."""

    def __init__(self, coved, method, path, body):
        data = request_bytes(coved, method, path, body, close=True)
        self.sock = socket.create_connection((coved.host, coved.port), timeout=120)
        split = data.index(b"\r\n\r\n") + 5
        self.sock.sendall(data[:split])
        self.rest = data[split:]

    def arrived(self):
        """coved has read what was sent so far (the head)."""
        return unread_by_server(self.sock) == 0

    def finish(self):
        """Sends the rest of the body; returns (status, parsed JSON body)."""
        self.sock.sendall(self.rest)
        data = b""
        while chunk := self.sock.recv(65536):
            data += chunk
        self.sock.close()
        head, _, body = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        return status, json.loads(body) if body.startswith(b"{") else body
