"""TED's CSV export against a loopback server answering with its real text."""

from __future__ import annotations

from tests.sources.conftest import Canned
from tests.sources.http_cases import assert_http_failures, assert_refused, fetch_error
from twcmaster.sources.base import Reading, SourceTiming
from twcmaster.sources.ted import PATH, TedSource

TIMING = SourceTiming(timeout_s=1.0)
EXPORT = (
    "MTU,Time,Power,Cost,Voltage\r\n"
    "Load,06/01/2024 12:00:00,1.559,0.19,231.4\r\n"
    "Solar,06/01/2024 12:00:00,-3.480,-0.42,231.4\r\n"
    "Grid,06/01/2024 12:00:00,-1.921,-0.23,231.4\r\n"
)


def source_for(server, timing=TIMING, port=None) -> TedSource:
    return TedSource({"serverIP": "127.0.0.1", "serverPort": str(port or server.port)}, timing)


def test_solar_line_in_kw(http_server):
    http_server.route(PATH, Canned.text(EXPORT, content_type="text/csv"))

    assert source_for(http_server).fetch() == Reading(generation_w=3480.0)
    [request] = http_server.requests_to(PATH)
    assert request.query == {"T": ["1"], "D": ["0"], "M": ["1"], "C": ["1"]}


def test_no_solar_line_is_an_error(http_server):
    http_server.route(PATH, Canned.text(EXPORT.replace("Solar", "PV")))

    assert "no 'Solar,' line" in fetch_error(source_for(http_server))


def test_garbage_figure_is_an_error(http_server):
    http_server.route(PATH, Canned.text("Solar,06/01/2024 12:00:00,abc,0,231\n"))

    assert "'abc', expected a number" in fetch_error(source_for(http_server))


def test_http_failures(http_server, refused_url):
    assert_http_failures(http_server, PATH, source_for, garbage=b"\x00\xff garbage")
    assert_refused(refused_url, source_for)


def test_check():
    assert TedSource.check({"serverIP": "10.0.0.4", "serverPort": "80"}) == []
    assert [k for k, _ in TedSource.check({"serverIP": "h", "serverPort": 0})] == ["serverPort"]
