"""Volkszähler's data.txt API against a loopback server answering with its real text."""

from __future__ import annotations

from tests.sources.conftest import ANY_PATH, Canned
from tests.sources.http_cases import assert_http_failures, assert_refused, fetch_error
from twcmaster.sources.base import Reading, SourceTiming
from twcmaster.sources.volkszahler import PATH, VolkszahlerSource

TIMING = SourceTiming(timeout_s=1.0)
PV = "82c0c870-e1a3-11e3-8f10-3d6d0fd5a6a9"
GRID = "a5bcd3b0-e1a3-11e3-9c25-7b1b8a1e2b0f"


def source_for(server, timing=TIMING, port=None, **config) -> VolkszahlerSource:
    settings = {
        "serverIP": "127.0.0.1",
        "serverPort": str(port or server.port),
        "uuidPhotovoltaikW": PV,
        "uuidTotalGridW": GRID,
        **config,
    }
    return VolkszahlerSource(settings, timing)


def by_uuid(values):
    return lambda request: Canned.text(values[request.param("uuid")])


def test_pv_and_grid(http_server):
    http_server.route(PATH, by_uuid({PV: "3480.2 W", GRID: "-1920.4 W"}))

    reading = source_for(http_server).fetch()

    assert reading.generation_w == 3480.2
    assert round(reading.consumption_w, 1) == 1559.8
    assert reading.grid_w == -1920.4
    assert all(r.param("from") == "now" for r in http_server.requests_to(PATH))


def test_night_importing(http_server):
    http_server.route(PATH, by_uuid({PV: "-3 W", GRID: "450 W"}))

    assert source_for(http_server).fetch() == Reading(
        generation_w=0.0, consumption_w=447.0, grid_w=450.0
    )


def test_grid_only(http_server):
    """At the grid meter, like the other grid-meter sources: import is the house's load and
    export the generation. (A bare grid figure left the house at 0 W: green tracking never
    started and the grid cap took the house as empty.)"""
    http_server.route(PATH, by_uuid({GRID: "450 W"}))
    only_grid = source_for(http_server, uuidPhotovoltaikW=None)
    assert only_grid.fetch() == Reading(generation_w=0.0, consumption_w=450.0, grid_w=450.0)
    http_server.route(PATH, by_uuid({GRID: "-1200 W"}))
    assert only_grid.fetch() == Reading(generation_w=1200.0, consumption_w=0.0, grid_w=-1200.0)


def test_unexpected_text(http_server):
    http_server.route(PATH, by_uuid({PV: "3480 kWh", GRID: "1 W"}))
    assert "expected '<number> W'" in fetch_error(source_for(http_server))
    http_server.route(PATH, by_uuid({PV: "n/a W", GRID: "1 W"}))
    assert "'n/a', expected a number" in fetch_error(source_for(http_server))


def test_http_failures(http_server, refused_url):
    http_server.route(ANY_PATH, Canned(404))
    assert_http_failures(http_server, PATH, source_for, garbage=b"<html>")
    assert_refused(refused_url, source_for)


def test_check():
    assert VolkszahlerSource.check({"serverIP": "h", "uuidTotalGridW": GRID}) == []
    assert [k for k, _ in VolkszahlerSource.check({"serverIP": "h"})] == ["uuidTotalGridW"]
