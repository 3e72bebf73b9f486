"""openHAB REST source against a real loopback HTTP server answering like openHAB 4."""

from __future__ import annotations

import time

import pytest

from tests.sources.conftest import Canned
from twcmaster.sources.base import Reading, SourceError, SourceTiming
from twcmaster.sources.openhab import OpenHabSource
from twcmaster.sources.registry import build_sources, check_sources

TIMING = SourceTiming(timeout_s=2.0)


def config(server, **extra) -> dict:
    return {
        "enabled": True,
        "serverIP": server.host,
        "serverPort": server.port,
        "consumptionItem": "House_Power",
        "generationItem": "PV_Power",
        **extra,
    }


def item(server, name: str, *answers) -> None:
    server.route(f"/rest/items/{name}/state", *answers)


def fetch_error(source) -> str:
    with pytest.raises(SourceError) as caught:
        source.fetch()
    return str(caught.value)


@pytest.mark.parametrize(
    ("consumption", "generation", "expected"),
    [
        ("726", "3480", Reading(consumption_w=726.0, generation_w=3480.0)),  # Number items
        ("726.5 W", "3.48 kW", Reading(consumption_w=726.5, generation_w=3480.0)),  # Number:Power
        ("0.0007 MW", "3480.0 W\n", Reading(consumption_w=700.0, generation_w=3480.0)),
        ("-150 W", "0 W", Reading(consumption_w=-150.0, generation_w=0.0)),
    ],
)
def test_reads_item_states_with_units(http_server, consumption, generation, expected):
    item(http_server, "House_Power", Canned.text(consumption))
    item(http_server, "PV_Power", Canned.text(generation))
    reading = OpenHabSource(config(http_server), TIMING).fetch()
    assert reading.consumption_w == pytest.approx(expected.consumption_w)
    assert reading.generation_w == pytest.approx(expected.generation_w)
    assert {r.path for r in http_server.requests} == {
        "/rest/items/House_Power/state",
        "/rest/items/PV_Power/state",
    }


def test_one_item_only(http_server):
    item(http_server, "PV_Power", Canned.text("2.2 kW"))
    source = OpenHabSource(config(http_server, consumptionItem=None), TIMING)
    assert source.fetch() == Reading(generation_w=2200.0)
    assert source.describe() == f"openHAB at {http_server.url}: generation PV_Power"


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("NULL", "PV_Power is NULL (never set)"),
        ("UNDEF", "PV_Power is UNDEF (undefined: its binding lost the device)"),
        ("12.5 kWh", "unit 'kWh' is not a power unit"),
        ("ON", "PV_Power: 'ON' is not a number"),
        ("", "PV_Power: '' is not a number"),
    ],
)
def test_states_without_a_power_are_errors(http_server, state, expected):
    item(http_server, "House_Power", Canned.text("100 W"))
    item(http_server, "PV_Power", Canned.text(state))
    message = fetch_error(OpenHabSource(config(http_server), TIMING))
    assert message.startswith(f"openHAB: GET {http_server.url}/rest/items/PV_Power/state:")
    assert expected in message


def test_unknown_item_404(http_server):
    body = {"error": {"message": "Item PV_Power does not exist!", "http-code": 404}}
    item(http_server, "House_Power", Canned.text("100 W"))
    item(http_server, "PV_Power", Canned.json(body, 404))
    message = fetch_error(OpenHabSource(config(http_server), TIMING))
    assert "HTTP 404" in message
    assert "Item PV_Power does not exist!" in message
    assert "check the item name" in message


def test_api_token_is_sent_and_kept_secret(http_server):
    token = "oh.twcmaster.Zm9vYmFyYmF6"
    item(http_server, "PV_Power", Canned.text("Unauthorized " + token, 401))
    source = OpenHabSource(config(http_server, consumptionItem=None, apiKey=token), TIMING)
    message = fetch_error(source)
    assert http_server.requests[0].headers["authorization"] == f"Bearer {token}"
    assert "HTTP 401" in message and "set apiKey" in message
    assert token not in message and token not in source.describe()


def test_500_timeout_refused(http_server, refused_url):
    item(http_server, "House_Power", Canned.text("boom", 500))
    assert "HTTP 500" in fetch_error(OpenHabSource(config(http_server), TIMING))

    item(http_server, "House_Power", Canned.text("1 W", delay_s=5.0))
    started = time.monotonic()
    message = fetch_error(OpenHabSource(config(http_server), SourceTiming(timeout_s=0.3)))
    assert "timed out after 0.3 s" in message
    assert time.monotonic() - started < 2.0

    host, port = refused_url.rsplit("//", 1)[1].split(":")
    source = OpenHabSource({"serverIP": host, "serverPort": port, "generationItem": "PV"}, TIMING)
    assert "connection refused" in fetch_error(source)


def test_item_names_are_quoted_in_the_url(http_server):
    item(http_server, "PV%C3%BCPower", Canned.text("1 W"))  # the server sees the raw path
    source = OpenHabSource(
        config(http_server, consumptionItem=None, generationItem="PVüPower"), TIMING
    )
    assert source.fetch() == Reading(generation_w=1.0)


def test_check():
    good = {"enabled": True, "serverIP": "192.168.1.20", "serverPort": 8080, "generationItem": "PV"}
    assert check_sources({"openHAB": good}) == []
    [source] = build_sources({"openHAB": good})
    assert isinstance(source, OpenHabSource)
    problems = check_sources({"openHAB": {"enabled": True, "serverPort": 0}})
    paths = [path for path, _ in problems]
    assert paths == ["sources.openHAB.serverIP", "sources.openHAB.serverPort", "sources.openHAB"]
    assert "consumptionItem and/or generationItem" in problems[-1][1]
    problems = check_sources({"openHAB": {**good, "generationItem": "rest/items/PV"}})
    assert problems == [
        (
            "sources.openHAB.generationItem",
            "expected an item name like House_Power, got 'rest/items/PV'",
        )
    ]
