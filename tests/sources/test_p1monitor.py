"""P1 Monitor's phase API against a loopback server answering with its real records."""

from __future__ import annotations

import pytest

from tests.sources.conftest import Canned
from tests.sources.http_cases import (
    assert_http_failures,
    assert_refused,
    assert_unexpected_answer,
)
from twcmaster.sources.base import Reading, SourceTiming
from twcmaster.sources.p1monitor import PATH, P1MonitorSource, trimmed_mean

TIMING = SourceTiming(timeout_s=1.0)


def record(c=(0, 0, 0), p=(0, 0, 0), v=(231, 229, 232), at="2024-06-01 12:00:10"):
    return {
        "TIMESTAMP_lOCAL": at,
        "TIMESTAMP_UTC": 1717236010,
        "CONSUMPTION_L1_W": c[0],
        "CONSUMPTION_L2_W": c[1],
        "CONSUMPTION_L3_W": c[2],
        "PRODUCTION_L1_W": p[0],
        "PRODUCTION_L2_W": p[1],
        "PRODUCTION_L3_W": p[2],
        "L1_V": v[0],
        "L2_V": v[1],
        "L3_V": v[2],
        "L1_A": 2.0,
        "L2_A": 1.0,
        "L3_A": 0.0,
    }


def source_for(server, timing=TIMING, port=None, **config) -> P1MonitorSource:
    settings = {"serverIP": "127.0.0.1", "serverPort": port or server.port, **config}
    return P1MonitorSource(settings, timing)


def test_three_phases_exporting(http_server):
    http_server.route(PATH, Canned.json([record(c=(0, 120, 0), p=(640, 0, 650))]))

    reading = source_for(http_server).fetch()

    # The busiest phase (120 W) times 3 phases; production summed.
    assert reading == Reading(generation_w=1290.0, consumption_w=360.0, voltage_v=231.0)
    [request] = http_server.requests_to(PATH)
    assert request.query == {"limit": ["1"], "json": ["object"], "round": ["on"]}


def test_single_phase_meter(http_server):
    http_server.route(PATH, Canned.json([record(c=(450, 0, 0), v=(230, 0, 0))]))

    reading = source_for(http_server).fetch()

    assert reading.consumption_w == 450.0
    assert reading.generation_w == 0.0


def test_samples_are_averaged_with_trimming(http_server):
    records = [record(p=(1000 + i, 0, 0), v=(230, 0, 0)) for i in range(9)]
    records.append(record(p=(9000, 0, 0), v=(230, 0, 0)))  # a spike: trimmed off
    http_server.route(PATH, Canned.json(records))

    reading = source_for(http_server, samples=10).fetch()

    assert reading.generation_w == pytest.approx(
        trimmed_mean([1000 + i for i in range(9)] + [9000])
    )
    assert reading.generation_w == pytest.approx(1004.5)
    assert http_server.requests_to(PATH)[0].param("limit") == "10"


def test_values_as_strings(http_server):
    doc = [record(c=("12.0", "0", "0"), p=("0", "0", "0"), v=("230.1", "0", "0"))]
    http_server.route(PATH, Canned.json(doc))

    assert source_for(http_server).fetch().consumption_w == 12.0


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ([], "the list of phase records is empty"),
        ({"error": "no data"}, "expected a list of phase records"),
        ([{"CONSUMPTION_L1_W": 1}], "record 0 has no 'CONSUMPTION_L2_W'"),
        ([record(c=("n/a", 0, 0))], "[0].CONSUMPTION_L1_W is 'n/a', expected a number"),
    ],
)
def test_wrong_shape(http_server, document, expected):
    assert_unexpected_answer(http_server, PATH, source_for, document, expected)


def test_http_failures(http_server, refused_url):
    assert_http_failures(http_server, PATH, source_for)
    assert_refused(refused_url, source_for)


def test_check():
    assert P1MonitorSource.check({"serverIP": "192.168.1.5", "samples": 5}) == []
    assert [k for k, _ in P1MonitorSource.check({"serverIP": "h", "samples": 11})] == ["samples"]
    assert [k for k, _ in P1MonitorSource.check({"serverIP": "h", "samples": 2.5})] == ["samples"]
    assert [k for k, _ in P1MonitorSource.check({})] == ["serverIP"]
    assert P1MonitorSource({"serverIP": "192.0.2.1"}, TIMING).url.startswith("http://192.0.2.1:80/")
