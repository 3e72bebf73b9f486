"""Efergy Engage's cloud API against a loopback server standing in for engage.efergy.com."""

from __future__ import annotations

import pytest

from tests.sources.conftest import Canned
from tests.sources.http_cases import (
    assert_http_failures,
    assert_refused,
    assert_unexpected_answer,
    fetch_error,
)
from twcmaster.sources.base import Reading, SourceTiming
from twcmaster.sources.efergy import PATH, EfergySource

TIMING = SourceTiming(timeout_s=1.0)
TOKEN = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6"  # made up, in Efergy's format
SUMMARY = [
    {"cid": "PWER", "data": [{"1717236000000": 1559}], "sid": "778325", "units": None, "age": 6},
    {"cid": "PWER_GAC", "data": [{"1717236000000": 3480}], "sid": "778326", "units": None},
]


def source_for(server, timing=TIMING, port=None, **config) -> EfergySource:
    settings = {"token": TOKEN, "apiURL": f"http://127.0.0.1:{port or server.port}", **config}
    return EfergySource(settings, timing)


def test_first_sensor_is_the_consumption(http_server):
    http_server.route(PATH, Canned.json(SUMMARY))

    source = source_for(http_server)

    assert source.fetch() == Reading(consumption_w=1559.0)
    assert http_server.requests_to(PATH)[0].param("token") == TOKEN
    assert TOKEN not in source.describe()


def test_error_document_without_the_token(http_server):
    http_server.route(PATH, Canned.json({"status": "error", "description": f"bad token {TOKEN}"}))

    message = fetch_error(source_for(http_server))

    assert "Efergy says: bad token" in message
    assert TOKEN not in message


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ([], "expected a non-empty list of sensors"),
        ([{"cid": "PWER", "data": []}], "the first sensor has no data point"),
        ([{"cid": "PWER"}], "missing 'data'"),
        ([{"cid": "PWER", "data": [{"1717236000000": "n/a"}]}], "[0].data[0] is 'n/a'"),
    ],
)
def test_wrong_shape(http_server, document, expected):
    assert_unexpected_answer(http_server, PATH, source_for, document, expected)


def test_http_failures(http_server, refused_url):
    assert_http_failures(http_server, PATH, source_for)
    assert_refused(refused_url, source_for)


def test_check():
    assert EfergySource.check({"token": TOKEN}) == []
    assert [k for k, _ in EfergySource.check({})] == ["token"]
    assert [k for k, _ in EfergySource.check({"token": "t", "apiURL": "x"})] == ["apiURL"]
