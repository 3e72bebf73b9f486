"""The failures every HTTP source must turn into a clear ``SourceError``: an error status, a
device that does not answer in time, nothing listening, a dropped connection, and a body that
is not what the device sends. Each source's tests call these with its own request path."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.sources.conftest import Canned
from twcmaster.sources.base import Source, SourceError, SourceTiming

MakeSource = Callable[..., Source]  # make(server_or_None, timing, port=...) -> Source


def fetch_error(source: Source) -> str:
    with pytest.raises(SourceError) as caught:
        source.fetch()
    return str(caught.value)


def assert_unexpected_answer(
    server, path: str, make: MakeSource, document: object, expected: str
) -> None:
    """``document`` answered as JSON at ``path``: an "unexpected answer" saying ``expected``."""
    server.route(path, Canned.json(document))
    message = fetch_error(make(server))
    assert "unexpected answer" in message, message
    assert expected in message, message


def assert_http_failures(
    server, path: str, make: MakeSource, *, method: str = "GET", garbage: bytes = b'{"x": '
):
    """Runs the shared failure cases against ``server`` routed at ``path``."""
    name = make(server, SourceTiming(timeout_s=1.0)).name

    server.route(path, Canned(503, b"busy updating"), method=method)
    message = fetch_error(make(server, SourceTiming(timeout_s=1.0)))
    assert message.startswith(f"{name}: {method} http://127.0.0.1:"), message
    assert "HTTP 503 Service Unavailable" in message

    server.route(path, Canned(200, garbage), method=method)
    message = fetch_error(make(server, SourceTiming(timeout_s=1.0)))
    assert "malformed JSON" in message or "unexpected answer" in message, message

    server.route(path, Canned(drop=True), method=method)
    assert "cannot connect" in fetch_error(make(server, SourceTiming(timeout_s=1.0)))

    server.route(path, Canned(200, b"{}", delay_s=3.0), method=method)
    started = time.monotonic()
    message = fetch_error(make(server, SourceTiming(timeout_s=0.3)))
    assert "timed out after 0.3 s" in message, message
    assert time.monotonic() - started < 2.0


def assert_refused(refused_url: str, make: MakeSource) -> None:
    port = int(refused_url.rsplit(":", 1)[1])
    message = fetch_error(make(None, SourceTiming(timeout_s=1.0), port=port))
    assert "cannot connect: connection refused" in message, message
