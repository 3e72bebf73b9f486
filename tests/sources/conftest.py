"""A real HTTP(S) server on loopback standing in for a vendor's device or cloud.

Fixtures:

* ``http_server`` / ``https_server``: one ``LoopbackHTTPServer`` (the HTTPS one uses a
  self-signed certificate made at test time with the ``openssl`` CLI; ``server.cert_file`` is
  its PEM, to test ``caFile``);
* ``make_server(tls=False)``: more servers in one test (several inverters, several sources);
* ``refused_url``: an ``http://127.0.0.1:<port>`` where nothing listens.

Canned answers are set per path (the query string is not part of the match)::

    server.route("/api/states/sensor.pv", Canned.json({"state": "3480"}))
    server.route("/x", Canned.json(first), Canned(status=503, body=b"busy"))  # then 503 forever
    server.route("/slow", Canned.json(doc, delay_s=2.0))
    server.route("/login", lambda request: Canned.json({"token": "t"}), method="POST")
    server.route("/trickle", Canned.streamed(trickle(b"1", every_s=0.5)))  # never ends
    server.route("/huge", Canned.streamed(endless(b"7", total_bytes=100 << 20)))

A streamed answer's body comes from a generator, written as it is produced (chunked, or with
``length`` as Content-Length): it stands in for a device that trickles or never stops, and is
never held in memory.

A path holds a queue: each request takes the next answer, and the last one repeats. A
callable answer gets the ``Recorded`` request and returns a ``Canned``. Unrouted paths answer
404, unless ``route(ANY_PATH, ...)`` gave answers for every path without a route of its
own. Every request is recorded (``server.requests``, ``server.requests_to(path)``) with its
method, path, query, headers (lower-case names), body and arrival time.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.realparts import missing
from tests.sources.modbus_fake import make_modbus_server, raw_tcp_server  # noqa: F401 (fixtures)

Chunks = Callable[[threading.Event], Iterator[bytes]]
ANY_PATH = "*"  # route(ANY_PATH, ...): the answer for every path without its own route


@dataclass(frozen=True)
class Canned:
    """One answer: status, headers, body bytes; after ``delay_s``; or ``drop`` the
    connection without answering."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    drop: bool = False
    chunks: Chunks | None = None  # a streamed body (see ``streamed``), instead of ``body``
    length: int | None = None  # with ``chunks``: the Content-Length announced, else chunked

    @classmethod
    def streamed(
        cls,
        chunks: Chunks,
        status: int = 200,
        *,
        length: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> Canned:
        """A body written piece by piece as ``chunks(stopping)`` yields it; ``stopping`` is
        set when the server closes, so an endless generator must watch it."""
        return cls(status, b"", dict(headers or {}), chunks=chunks, length=length)

    @classmethod
    def json(
        cls,
        document: Any,
        status: int = 200,
        *,
        headers: dict[str, str] | None = None,
        delay_s: float = 0.0,
    ) -> Canned:
        return cls(
            status,
            json.dumps(document).encode(),
            {"Content-Type": "application/json", **(headers or {})},
            delay_s,
        )

    @classmethod
    def text(
        cls,
        text: str,
        status: int = 200,
        *,
        content_type: str = "text/plain; charset=utf-8",
        headers: dict[str, str] | None = None,
        delay_s: float = 0.0,
    ) -> Canned:
        return cls(
            status, text.encode(), {"Content-Type": content_type, **(headers or {})}, delay_s
        )


@dataclass(frozen=True)
class Recorded:
    """A request as the server saw it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes
    at_s: float = 0.0  # time.monotonic() when it arrived

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def json(self) -> Any:
        return json.loads(self.body)


Answer = Canned | Callable[[Recorded], Canned]


def trickle(piece: bytes = b"1", *, every_s: float = 0.5) -> Chunks:
    """``piece`` every ``every_s``, until the server closes: a device that never finishes."""

    def chunks(stopping: threading.Event) -> Iterator[bytes]:
        while True:
            yield piece
            if stopping.wait(every_s):
                return

    return chunks


def endless(piece: bytes = b"7", *, total_bytes: int, chunk_bytes: int = 64 << 10) -> Chunks:
    """``total_bytes`` of ``piece`` repeated, made as it is sent (one chunk in memory)."""
    block = (piece * (chunk_bytes // len(piece) + 1))[:chunk_bytes]

    def chunks(stopping: threading.Event) -> Iterator[bytes]:
        sent = 0
        while sent < total_bytes and not stopping.is_set():
            part = block[: total_bytes - sent]
            yield part
            sent += len(part)

    return chunks


class LoopbackHTTPServer:
    """A threaded HTTP/1.1 server on loopback (a free port unless given), until ``close()``."""

    def __init__(
        self, *, tls: tuple[Path, Path] | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self._lock = threading.Lock()
        self._routes: dict[tuple[str, str], list[Answer]] = {}
        self._requests: list[Recorded] = []
        self._connections: set[socket.socket] = set()
        self.stopping = threading.Event()
        self.cert_file = str(tls[0]) if tls else None
        context = None
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls[0]), str(tls[1]))
        self._httpd = _Server((host, port), _Handler, self, context)
        self.host = host
        self.port = self._httpd.server_address[1]
        self.scheme = "https" if tls else "http"
        self.url = f"{self.scheme}://{self.host}:{self.port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()

    # -- set-up --------------------------------------------------------------------

    def route(self, path: str, *answers: Answer, method: str | None = None) -> LoopbackHTTPServer:
        """Answers for ``path`` (any method unless ``method``), in order; the last repeats."""
        if not answers:
            raise ValueError("route() needs at least one answer")
        with self._lock:
            self._routes[(method or "*", path)] = list(answers)
        return self

    # -- inspection ----------------------------------------------------------------

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._requests)

    def requests_to(self, path: str) -> list[Recorded]:
        return [request for request in self.requests if request.path == path]

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def close(self) -> None:
        self.stopping.set()  # wakes answers sleeping on their delay
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=2)

    # -- called by the handler threads --------------------------------------------

    def _answer(self, request: Recorded) -> Canned:
        with self._lock:
            self._requests.append(request)
            queue = (
                self._routes.get((request.method, request.path))
                or self._routes.get(("*", request.path))
                or self._routes.get(("*", ANY_PATH))
            )
            if queue is None:
                answer: Answer = Canned.json(
                    {"message": f"no canned answer for {request.method} {request.path}"}, 404
                )
            else:
                answer = queue.pop(0) if len(queue) > 1 else queue[0]
        return answer(request) if callable(answer) else answer

    def _track(self, connection: socket.socket, add: bool) -> None:
        with self._lock:
            (self._connections.add if add else self._connections.discard)(connection)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # close() must not wait for an answer still sleeping
    allow_reuse_address = True

    def __init__(self, address, handler, owner: LoopbackHTTPServer, context) -> None:
        self.owner = owner
        self.tls_context = context
        super().__init__(address, handler)

    def finish_request(self, request, client_address) -> None:
        # TLS handshake here, in the connection's thread, never in the accept loop.
        if self.tls_context is not None:
            try:
                request = self.tls_context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return  # e.g. the client refused our self-signed certificate
        self.owner._track(request, True)
        try:
            super().finish_request(request, client_address)
        finally:
            self.owner._track(request, False)

    def handle_error(self, request, client_address) -> None:
        pass  # clients that time out and hang up are part of the tests


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms stall
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        owner = self.server.owner
        parts = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = Recorded(
            method=self.command,
            path=parts.path,
            query=urllib.parse.parse_qs(parts.query, keep_blank_values=True),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
            at_s=time.monotonic(),
        )
        canned = owner._answer(request)
        if canned.delay_s and owner.stopping.wait(canned.delay_s):
            self.close_connection = True
            return
        if canned.drop:
            self.close_connection = True
            return
        try:
            self.send_response(canned.status)
            for name, value in canned.headers.items():
                self.send_header(name, value)
            if canned.chunks is not None:
                self._stream(canned)
                return
            self.send_header("Content-Length", str(len(canned.body)))
            self.end_headers()
            self.wfile.write(canned.body)
        except OSError:
            self.close_connection = True  # the client gave up (timeout test)

    def _stream(self, canned: Canned) -> None:
        chunked = canned.length is None
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(canned.length))
        self.end_headers()
        self.close_connection = True  # a streamed answer may end early: never reuse
        assert canned.chunks is not None
        for piece in canned.chunks(self.server.owner.stopping):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            self.wfile.flush()
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory) -> tuple[Path, Path]:
    """(cert.pem, key.pem): self-signed for 127.0.0.1, made now, never committed."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    command = [
        "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
    ]  # fmt: skip
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=30)
    except FileNotFoundError:
        missing("the openssl command is needed to make a test certificate")
    return cert, key


@pytest.fixture
def make_server(request) -> Iterator[Callable[..., LoopbackHTTPServer]]:
    """``make_server(tls=False, host="127.0.0.1", port=0)`` -> a started server; all are
    closed after the test. Another loopback address (127.0.0.2) with the same port stands in
    for a second device that shares the first one's port."""
    servers: list[LoopbackHTTPServer] = []

    def make(tls: bool = False, host: str = "127.0.0.1", port: int = 0) -> LoopbackHTTPServer:
        cert = request.getfixturevalue("tls_cert") if tls else None
        server = LoopbackHTTPServer(tls=cert, host=host, port=port)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def http_server(make_server) -> LoopbackHTTPServer:
    return make_server()


@pytest.fixture
def https_server(make_server) -> LoopbackHTTPServer:
    return make_server(tls=True)


@pytest.fixture
def refused_url() -> str:
    """A loopback URL whose port had a listener a moment ago and has none now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"
