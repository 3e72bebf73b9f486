"""EmonCMS's feed API against a loopback server answering with its real documents."""

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
from twcmaster.sources.emoncms import EmonCmsSource

TIMING = SourceTiming(timeout_s=1.0)
API_KEY = "0f4a7c1e9b2d3c5e6f708192a3b4c5d6"  # made up, in EmonCMS's format
PATH = "/emoncms/feed/fetch.json"


def source_for(server, timing=TIMING, port=None, **config) -> EmonCmsSource:
    settings = {
        "serverIP": "127.0.0.1",
        "serverPort": str(port or server.port),
        "serverPath": "/emoncms",
        "apiKey": API_KEY,
        "consumptionFeed": "12",
        "generationFeed": 15,
        **config,
    }
    return EmonCmsSource(settings, timing)


def test_both_feeds_in_the_order_asked(http_server):
    http_server.route(PATH, Canned.json([1559.6, 3480]))

    source = source_for(http_server)

    assert source.fetch() == Reading(consumption_w=1559.6, generation_w=3480.0)
    [request] = http_server.requests_to(PATH)
    assert request.param("ids") == "12,15"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert API_KEY not in source.describe()


def test_one_feed(http_server):
    http_server.route(PATH, Canned.json(["3480.5"]))

    reading = source_for(http_server, consumptionFeed=None).fetch()

    assert reading == Reading(generation_w=3480.5)
    assert http_server.requests_to(PATH)[0].param("ids") == "15"


def test_wrong_key_message(http_server):
    http_server.route(
        PATH, Canned.json({"success": False, "message": "Username or password empty"})
    )

    assert "EmonCMS says: Username or password empty" in fetch_error(source_for(http_server))


def test_401_hint_and_no_key_in_messages(http_server):
    http_server.route(PATH, Canned(401, API_KEY.encode()))

    message = fetch_error(source_for(http_server))

    assert "check apiKey" in message
    assert API_KEY not in message


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ([None, 3480], "feed 12 (consumption) has no value (null)"),
        ([1], "expected a list of 2 feed value(s)"),
        ([1, "abc"], "feed 15 (generation) is 'abc'"),
    ],
)
def test_wrong_shape(http_server, document, expected):
    assert_unexpected_answer(http_server, PATH, source_for, document, expected)


def test_http_failures(http_server, refused_url):
    assert_http_failures(http_server, PATH, lambda s, t, **kw: source_for(s, t, apiKey=None, **kw))
    assert_refused(refused_url, source_for)


def test_check():
    assert EmonCmsSource.check({"serverIP": "h", "generationFeed": 3}) == []
    assert [k for k, _ in EmonCmsSource.check({"serverIP": "h"})] == [""]
    problems = EmonCmsSource.check(
        {"serverIP": "h", "serverPath": "emoncms", "useHttps": "no", "generationFeed": 1}
    )
    assert [k for k, _ in problems] == ["useHttps", "serverPath"]
    source = EmonCmsSource({"serverIP": "emoncms.org", "useHttps": True, "serverPort": 443,
                            "generationFeed": 1}, TIMING)  # fmt: skip
    assert source.url == "https://emoncms.org:443/feed/fetch.json"
