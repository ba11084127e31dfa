"""The HTTP/1.1 transport of the development server: keep-alive connections, one thread each.

Built on the standard library's ``http.server``, not on werkzeug's development server
(which TensorBoard brings): that one answers every request with ``Connection: close``
(it cannot drain a request body before the next request line), so every client would
reconnect per request and the batcher, which expects one request in flight per open
connection, would lose its count. The tuning here: a reply leaves in one send with
``TCP_NODELAY``, the ``Date`` header is formatted once a second, the listen backlog
holds 128 connections, a body over ``max_request_bytes`` is read and dropped so that
the 400 reply arrives on a healthy connection, and ``Expect: 100-continue`` is answered
before the body is read.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from export.devserver.routing import ModelServer

DEFAULT_PORT = 8501
# Over-limit bodies up to this size are read and dropped, so the client gets the 400
# reply on a healthy connection; larger ones get the reply and the connection closes.
_MAX_DRAIN_BYTES = 64 * 1024 * 1024


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "feseq-dev-model-server"
    server: _HTTPServer

    # Buffer the reply: its status line, headers and body leave in one send when
    # handle_one_request flushes (not one send for the headers and one for the body).
    wbufsize = 64 * 1024

    def setup(self) -> None:
        super().setup()
        # One small reply per request: send it at once (no Nagle delay).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.model_server.connection_opened()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.model_server.connection_closed()

    def handle_expect_100(self) -> bool:
        ok = super().handle_expect_100()
        self.wfile.flush()  # the client waits for "100 Continue" before the body
        return ok

    _date: tuple[int, str] = (0, "")

    def date_time_string(self, timestamp: float | None = None) -> str:
        if timestamp is not None:
            return super().date_time_string(timestamp)
        now = int(time.time())
        second, text = _Handler._date
        if second != now:  # format the Date header once a second, not once a request
            text = super().date_time_string(now)
            _Handler._date = (now, text)
        return text

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        limit = self.server.model_server.max_request_bytes
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self._reply(
                400,
                {"error": "Chunked request bodies are not supported: send Content-Length."},
                close=True,
            )
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length < 0:
                raise ValueError
        except ValueError:
            self._reply(400, {"error": "Invalid Content-Length header."}, close=True)
            return
        if length > limit:
            message = (
                f"The request body has {length} bytes, more than the limit of {limit} bytes "
                "(--max-request-bytes); split the batch into smaller requests."
            )
            drained = length <= limit + _MAX_DRAIN_BYTES and self._drain(length)
            self._reply(400, {"error": message}, close=not drained)
            return
        body = self.rfile.read(length) if length else b""
        status, reply = self.server.model_server.handle(method, self.path, body)
        self._reply(status, reply)

    def _drain(self, length: int) -> bool:
        remaining = length
        while remaining:
            chunk = self.rfile.read(min(remaining, 1 << 20))
            if not chunk:
                return False
            remaining -= len(chunk)
        return True

    def _reply(self, status: int, payload: dict[str, Any], close: bool = False) -> None:
        body = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if self.server.verbose:
            super().log_message(format, *args)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's listen backlog of 5 drops the SYNs of clients that connect
    # together beyond it, which then retry after a 1 s timeout.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], model_server: ModelServer, verbose: bool = False):
        super().__init__(address, _Handler)
        self.model_server = model_server
        self.verbose = verbose


def make_http_server(
    model_server: ModelServer,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    verbose: bool = False,
) -> ThreadingHTTPServer:
    """An HTTP server (not yet serving) for ``model_server``; ``port=0`` picks a free port."""
    return _HTTPServer((host, port), model_server, verbose=verbose)


class BackgroundServer:
    """The development server running in a background thread of this process (for
    notebooks and tests); also a context manager that stops it on exit.

    Args:
        base_path: str. The model's base path (numbered version directories).
        name: str or None. Model name in the URLs (default: the base path's name).
        host: str. Address to listen on. Defaults to ``"127.0.0.1"``.
        port: int. Port; 0 picks a free one. Defaults to 0.
        **kwargs: passed to :meth:`ModelServer.from_base_path` (``batching``,
            ``max_request_bytes``, ``max_batch_size``...).

    Attributes:
        url: str. ``http://host:port``.

    Example:
    >>> server = BackgroundServer("exported/feseq")
    >>> ServingClient(server.url).status()
    >>> server.stop()
    """

    def __init__(
        self,
        base_path: str,
        name: str | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        **kwargs: Any,
    ):
        self.model_server = ModelServer.from_base_path(base_path, name, **kwargs)
        self._httpd = make_http_server(self.model_server, host, port)
        self.url = f"http://{host}:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="feseq-dev-server", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._thread.is_alive():
            self._httpd.shutdown()
            self._thread.join()
            self._httpd.server_close()
            self.model_server.close()

    def __enter__(self) -> BackgroundServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


@contextlib.contextmanager
def running_server(base_path: str, name: str | None = None, **kwargs: Any) -> Iterator[str]:
    """Serve the latest version under ``base_path`` in a background thread; yields the
    server's URL (``http://host:port``) and stops the server on exit."""
    with BackgroundServer(base_path, name, **kwargs) as server:
        yield server.url
