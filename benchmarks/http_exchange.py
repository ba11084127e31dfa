"""One keep-alive HTTP/1.1 client connection of the serving benchmark's load generator."""

from __future__ import annotations

import socket
import time


class Exchange:
    """One keep-alive client connection of the load generator (TCP_NODELAY, non-blocking).

    It sends a prepared request (head and body) and parses the reply incrementally: the
    status line, the headers (Content-Length framing) and the body. All connections of a
    phase are driven by one thread through ``selectors`` (as event-loop load generators
    such as wrk do), so that the clients neither contend for Python's GIL nor cost the
    machine, which the server shares, more than a few tens of microseconds per request;
    eight client threads cost about as much CPU as the server itself and their GIL
    hand-offs add milliseconds to the measured latencies.
    """

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60.0)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self._buf = b""
        self._out = b""
        self.started = 0.0

    def close(self) -> None:
        self.sock.close()

    def send(self, request: bytes) -> bool:
        """Start sending ``request``; True when it all went out at once."""
        self.started = time.perf_counter()
        self._out = request
        return self.flush()

    def flush(self) -> bool:
        """Send what is left of the request; True when nothing is left."""
        try:
            sent = self.sock.send(self._out)
        except BlockingIOError:
            sent = 0
        self._out = self._out[sent:]
        return not self._out

    def receive(self) -> tuple[int, bytes, bool] | None:
        """Read what arrived; (status, body, server closes) once a reply is complete."""
        try:
            data = self.sock.recv(1 << 16)
        except BlockingIOError:
            return None
        if not data:
            raise ConnectionError("the server closed the connection")
        self._buf += data
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = self._buf[:end].split(b"\r\n")
        status_line = head[0].split(None, 2)
        if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/"):
            raise ConnectionError(f"not an HTTP status line: {head[0][:100]!r}")
        length, close = None, False
        for line in head[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection":
                close = value.strip().lower() == b"close"
            elif name == b"transfer-encoding":
                raise ConnectionError(f"unexpected Transfer-Encoding: {value.strip()!r}")
        if length is None:
            raise ConnectionError("a reply without Content-Length")
        if len(self._buf) < end + 4 + length:
            return None
        body = self._buf[end + 4 : end + 4 + length]
        self._buf = self._buf[end + 4 + length :]
        return int(status_line[1]), body, close


def predict_requests(port: int, model: str, bodies: list[bytes]) -> list[bytes]:
    """Complete HTTP/1.1 predict requests (head and JSON body) for ``bodies``."""
    head = (
        f"POST /v1/models/{model}:predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n"
    )
    return [head.format(len(body)).encode("ascii") + body for body in bodies]
