"""The shared HTTP client at its limits, against a real loopback server: a total deadline
per request (a trickling body cannot hold a fetch), a capped body (a 100 MB answer is never
read), and secrets kept out of messages in every form a server may echo them."""

from __future__ import annotations

import base64
import re
import time
import urllib.parse
from pathlib import Path

import pytest

from tests.sources.conftest import Canned, endless, trickle
from twcmaster.sources.base import SourceError, SourceTiming
from twcmaster.sources.http import MAX_BODY_BYTES, HttpClient
from twcmaster.sources.secrets import excerpt, redact, register, register_basic_auth
from twcmaster.sources.url import UrlSource

pytestmark = pytest.mark.timeout(30)  # a hang (the bug) fails in seconds, not minutes

HUGE_BYTES = 100 << 20  # what a broken endpoint sent in the field: 100 MB of digits
RSS_GROWTH_LIMIT_KB = 10 << 10


def error_of(call) -> tuple[str, float]:
    started = time.monotonic()
    with pytest.raises(SourceError) as caught:
        call()
    return str(caught.value), time.monotonic() - started


# -------------------------------------------------------------------- total deadline


@pytest.mark.parametrize("length", [None, 10_000], ids=["chunked", "content-length"])
def test_a_trickling_body_times_out_at_the_total_deadline(http_server, length):
    # One byte every 0.2 s never trips a per-read timeout of 1 s: only a total deadline ends it.
    http_server.route("/pv", Canned.streamed(trickle(b"1", every_s=0.2), length=length))
    client = HttpClient("Test", SourceTiming(timeout_s=1.0))

    message, took_s = error_of(lambda: client.get_text(f"{http_server.url}/pv"))

    assert message == f"Test: GET {http_server.url}/pv: timed out after 1 s"
    assert 0.9 <= took_s < 1.5


def test_a_slow_but_steady_body_within_the_deadline_is_read(http_server):
    pieces = iter([b"34", b"80"])

    def two_pieces(stopping):
        for piece in pieces:
            yield piece
            stopping.wait(0.1)

    http_server.route("/pv", Canned.streamed(two_pieces))
    client = HttpClient("Test", SourceTiming(timeout_s=2.0))
    assert client.get_text(f"{http_server.url}/pv") == "3480"


# ----------------------------------------------------------------------- body cap


def _rss_kb(field: str) -> int:
    status = Path("/proc/self/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+) kB", status).group(1))


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: VmHWM back to VmRSS
    except OSError:
        return False
    return True


@pytest.mark.parametrize("length", [None, HUGE_BYTES], ids=["chunked", "content-length"])
def test_a_huge_body_is_refused_at_the_cap_without_reading_it(http_server, length):
    http_server.route("/pv", Canned.streamed(endless(b"7", total_bytes=HUGE_BYTES), length=length))
    client = HttpClient("Test", SourceTiming(timeout_s=10.0))
    if not _reset_peak_rss():
        pytest.skip("needs Linux's /proc/self/clear_refs to measure the peak RSS")
    before_kb = _rss_kb("VmRSS")

    message, took_s = error_of(lambda: client.get_text(f"{http_server.url}/pv"))

    growth_kb = _rss_kb("VmHWM") - before_kb
    assert message == f"Test: GET {http_server.url}/pv: answer larger than 1 MiB"
    assert took_s < 1.0
    assert growth_kb < RSS_GROWTH_LIMIT_KB, f"peak RSS grew by {growth_kb} kB"


def test_a_body_at_the_cap_is_read(http_server):
    body = b"1" + b" " * (MAX_BODY_BYTES - 1)
    http_server.route("/pv", Canned(200, body))
    client = HttpClient("Test", SourceTiming(timeout_s=5.0))
    assert client.get_text(f"{http_server.url}/pv").strip() == "1"


def test_a_huge_error_body_gives_a_short_message(http_server):
    http_server.route("/pv", Canned.streamed(endless(b"x", total_bytes=HUGE_BYTES), status=500))
    client = HttpClient("Test", SourceTiming(timeout_s=10.0))

    message, took_s = error_of(lambda: client.get_text(f"{http_server.url}/pv"))

    assert message.startswith(f"Test: GET {http_server.url}/pv: HTTP 500 Internal Server Error")
    assert len(message) < 400
    assert took_s < 1.0


def test_a_huge_numeric_answer_of_the_url_source_is_refused(http_server):
    """The field report: 100 MB of digits from a URL source. Before the cap: 1.5 GB RSS and
    a log line of 104 million characters."""
    http_server.route("/pv", Canned.streamed(endless(b"9", total_bytes=HUGE_BYTES)))
    source = UrlSource({"url": http_server.url, "generationItem": "pv"}, SourceTiming())

    message, _ = error_of(source.fetch)

    assert message == f"URL: GET {http_server.url}/pv: answer larger than 1 MiB"


@pytest.mark.parametrize("digits", [400, 300_000])
def test_a_long_numeric_text_gives_a_short_message(http_server, digits):
    # Below the cap, but its float is inf: the message shows an excerpt, not the value.
    http_server.route("/pv", Canned.text("9" * digits))
    source = UrlSource({"url": http_server.url, "generationItem": "pv"}, SourceTiming())

    message, _ = error_of(source.fetch)

    assert "unexpected answer" in message
    assert len(message) < 300, len(message)


# ------------------------------------------------------------------------ secrets


def test_every_encoded_form_of_a_secret_is_masked():
    register("CANARY-3f9a1c")
    register_basic_auth("twcuser", "CANARY-pw77")
    forms = [
        "CANARY-3f9a1c",
        base64.b64encode(b"CANARY-3f9a1c").decode(),
        base64.b64encode(b"twcuser:CANARY-pw77").decode(),
        base64.b64encode(b"CANARY-pw77").decode(),
        urllib.parse.quote("twcuser:CANARY-pw77", safe=""),
        urllib.parse.quote("twcuser:CANARY-pw77", safe="").lower(),
        b"CANARY-3f9a1c".hex(),
        b"CANARY-3f9a1c".hex().upper(),
    ]
    for form in forms:
        assert redact(f"echo: Authorization: Basic {form}.") == "echo: Authorization: Basic ***."


def test_an_excerpt_never_cuts_a_secret_in_half():
    register("CANARY-0123456789abcdef")
    for start in range(0, 40):
        text = "x" * start + "CANARY-0123456789abcdef" + "y" * 50
        shown = excerpt(text, 40)
        assert "CANARY" not in shown and "0123456789" not in shown, shown
        assert len(shown) <= 41


def test_an_authenticated_request_shows_no_error_body(http_server):
    # The server echoes the request's Authorization header: Base64 of user:password.
    def echo(request):
        return Canned.text(f"denied for {request.headers['authorization']}", 401)

    http_server.route("/pv", echo)
    url = http_server.url.replace("http://", "http://twcuser:CANARY-url-5e1d@")
    source = UrlSource({"url": url, "generationItem": "pv"}, SourceTiming())

    message, _ = error_of(source.fetch)

    encoded = base64.b64encode(b"twcuser:CANARY-url-5e1d").decode()
    assert http_server.requests[0].headers["authorization"] == f"Basic {encoded}"
    assert "HTTP 401 Unauthorized" in message
    assert "body not shown" in message
    assert encoded not in message and "denied" not in message


def test_the_token_of_an_authorization_header_is_masked_alone(http_server):
    # The header's value is "Bearer <token>"; the server echoes the token alone.
    http_server.route("/pv", Canned.json({"value": "CANARY-tok-81f0"}))
    source = UrlSource(
        {
            "url": http_server.url + "/pv",
            "generationPath": "value",
            "headers": {"Authorization": "Bearer CANARY-tok-81f0"},
        },
        SourceTiming(),
    )

    message, _ = error_of(source.fetch)

    assert "'***' is not a number" in message


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"String": "Site not found"}', "HTTP 404 Not Found: Site not found"),
        (b"<html><body>Oops</body></html>", "HTTP 404 Not Found: Oops"),
        (b"x" * 5000, "HTTP 404 Not Found: " + "x" * 200 + "…"),
    ],
)
def test_an_unauthenticated_error_body_is_shown_in_short(http_server, body, expected):
    http_server.route("/pv", Canned(404, body))
    client = HttpClient("Test", SourceTiming())

    message, _ = error_of(lambda: client.get_json(f"{http_server.url}/pv"))

    assert message == f"Test: GET {http_server.url}/pv: {expected}"
