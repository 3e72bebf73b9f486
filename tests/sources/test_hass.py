"""Home Assistant REST source against a real loopback HTTP server with HA's state JSON."""

from __future__ import annotations

import time

import pytest

from tests.sources.conftest import Canned
from twcmaster.sources.base import Reading, SourceError, SourceTiming
from twcmaster.sources.hass import HassSource
from twcmaster.sources.registry import build_sources, check_sources

TOKEN = "eyJhbGciOiJIUzI1NiJ9.long-lived-token.sig"
TIMING = SourceTiming(timeout_s=2.0)


def state(entity: str, value: str, unit: str | None = "W", **attributes) -> dict:
    """An /api/states/<entity> answer as Home Assistant 2024.x sends it."""
    attrs = {"state_class": "measurement", "device_class": "power", **attributes}
    attrs["friendly_name"] = entity.split(".")[1].replace("_", " ").title()
    if unit is not None:
        attrs["unit_of_measurement"] = unit
    stamp = "2024-06-01T02:00:00.000000+00:00"
    return {
        "entity_id": entity,
        "state": value,
        "attributes": attrs,
        "last_changed": stamp,
        "last_reported": stamp,
        "last_updated": stamp,
        "context": {"id": "01HZX4G3T2K8Q9W7E6R5T4Y3U2", "parent_id": None, "user_id": None},
    }


def config(server, **extra) -> dict:
    return {
        "enabled": True,
        "serverIP": server.host,
        "serverPort": str(server.port),  # TWCManager's sample config quotes it
        "useHttps": False,
        "apiKey": TOKEN,
        "hassEntityConsumption": "sensor.house_power",
        "hassEntityGeneration": "sensor.inverter_power_live",
        **extra,
    }


def route(server, entity: str, *answers) -> None:
    server.route(f"/api/states/{entity}", *answers)


def fetch_error(source) -> str:
    with pytest.raises(SourceError) as caught:
        source.fetch()
    message = str(caught.value)
    assert TOKEN not in message
    return message


def test_reads_both_entities_with_the_token(http_server):
    route(http_server, "sensor.house_power", Canned.json(state("sensor.house_power", "726.4")))
    route(
        http_server,
        "sensor.inverter_power_live",
        Canned.json(state("sensor.inverter_power_live", "3480.0")),
    )
    source = HassSource(config(http_server), TIMING)
    assert source.fetch() == Reading(generation_w=3480.0, consumption_w=726.4)
    requests = http_server.requests
    assert {r.path for r in requests} == {
        "/api/states/sensor.house_power",
        "/api/states/sensor.inverter_power_live",
    }
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in requests)
    assert TOKEN not in source.describe()
    assert "sensor.house_power" in source.describe()


@pytest.mark.parametrize(
    ("value", "unit", "watts"),
    [("3.48", "kW", 3480.0), ("0.0042", "MW", 4200.0), ("3480", None, 3480.0), ("-12", "W", -12)],
)
def test_honours_the_unit_of_measurement(http_server, value, unit, watts):
    route(http_server, "sensor.inverter_power_live", Canned.json(state("sensor.x", value, unit)))
    source = HassSource(config(http_server, hassEntityConsumption=None), TIMING)
    reading = source.fetch()
    assert reading.generation_w == pytest.approx(watts)
    assert reading.consumption_w is None  # not configured: not measured


def test_generation_only_or_consumption_only(http_server):
    route(http_server, "sensor.house_power", Canned.json(state("sensor.house_power", "1.2", "kW")))
    source = HassSource(config(http_server, hassEntityGeneration=""), TIMING)
    assert source.fetch() == Reading(consumption_w=1200.0)
    assert [r.path for r in http_server.requests] == ["/api/states/sensor.house_power"]


@pytest.mark.parametrize("value", ["unavailable", "unknown"])
def test_unavailable_and_unknown_are_errors_not_zero(http_server, value):
    route(http_server, "sensor.house_power", Canned.json(state("sensor.house_power", "500")))
    route(
        http_server,
        "sensor.inverter_power_live",
        Canned.json(state("sensor.inverter_power_live", value)),
    )
    message = fetch_error(HassSource(config(http_server), TIMING))
    assert message.startswith("HASS: GET http://127.0.0.1:")
    assert f"sensor.inverter_power_live is '{value}' in Home Assistant" in message


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        ("on", "W", "state 'on' is not a number"),
        ("12.5", "kWh", "is measured in 'kWh', not in a power unit"),
        ("16", "A", "is measured in 'A'"),
        ("nan", "W", "'nan' is not a number"),
    ],
)
def test_values_that_are_not_a_power(http_server, value, unit, expected):
    route(http_server, "sensor.house_power", Canned.json(state("sensor.house_power", value, unit)))
    source = HassSource(config(http_server, hassEntityGeneration=None), TIMING)
    assert expected in fetch_error(source)


def test_missing_state_key(http_server):
    route(http_server, "sensor.house_power", Canned.json({"entity_id": "sensor.house_power"}))
    source = HassSource(config(http_server, hassEntityGeneration=None), TIMING)
    assert "no 'state' in the answer" in fetch_error(source)


@pytest.mark.parametrize(
    "answer",
    [
        Canned.json({"message": "Unauthorized"}, 401),
        Canned.text("401: Unauthorized", 401),  # what aiohttp in HA actually sends
    ],
)
def test_401_says_check_the_token(http_server, answer):
    route(http_server, "sensor.house_power", answer)
    message = fetch_error(HassSource(config(http_server), TIMING))
    assert "HTTP 401" in message
    assert "Unauthorized" in message
    assert "check apiKey" in message


def test_404_names_the_entity(http_server):
    route(http_server, "sensor.house_power", Canned.json({"message": "Entity not found."}, 404))
    message = fetch_error(HassSource(config(http_server), TIMING))
    assert "/api/states/sensor.house_power: HTTP 404" in message
    assert "body not shown: authenticated request" in message  # the token is on it
    assert "check the entity id" in message


def test_500(http_server):
    route(http_server, "sensor.house_power", Canned.text("500 Internal Server Error", 500))
    assert "HTTP 500" in fetch_error(HassSource(config(http_server), TIMING))


def test_malformed_json(http_server):
    route(http_server, "sensor.house_power", Canned.text('{"state": "12', content_type="text/json"))
    assert "malformed JSON" in fetch_error(HassSource(config(http_server), TIMING))


def test_timeout_is_bounded(http_server):
    body = state("sensor.house_power", "1")
    route(http_server, "sensor.house_power", Canned.json(body, delay_s=5.0))
    source = HassSource(config(http_server), SourceTiming(timeout_s=0.3))
    started = time.monotonic()
    message = fetch_error(source)
    assert time.monotonic() - started < 2.0
    assert "timed out after 0.3 s" in message


def test_connection_refused(refused_url):
    host, port = refused_url.rsplit("//", 1)[1].split(":")
    source = HassSource(
        {
            "serverIP": host,
            "serverPort": int(port),
            "apiKey": TOKEN,
            "hassEntityGeneration": "sensor.pv",
        },
        TIMING,
    )
    assert "cannot connect: connection refused" in fetch_error(source)


def test_https_with_a_ca_file(https_server):
    route(https_server, "sensor.pv", Canned.json(state("sensor.pv", "2.5", "kW")))
    cfg = config(
        https_server,
        useHttps=True,
        caFile=https_server.cert_file,
        hassEntityConsumption=None,
        hassEntityGeneration="sensor.pv",
    )
    assert HassSource(cfg, TIMING).fetch() == Reading(generation_w=2500.0)
    # The same server without the CA: a TLS error that says what to do.
    del cfg["caFile"]
    assert "certificate verify failed" in fetch_error(HassSource(cfg, TIMING))


def test_check_accepts_twcmanager_config():
    cfg = {
        "enabled": True,
        "serverIP": "192.168.1.10",
        "serverPort": "8123",
        "useHttps": False,
        "apiKey": TOKEN,
        "hassEntityConsumption": "sensor.house_power",
        "hassEntityGeneration": "sensor.pv_power",
    }
    assert HassSource.check(cfg) == []
    assert check_sources({"HASS": cfg}) == []
    [source] = build_sources({"HASS": cfg})
    assert isinstance(source, HassSource)
    assert source.describe() == (
        "Home Assistant at http://192.168.1.10:8123: "
        "consumption sensor.house_power, generation sensor.pv_power"
    )


@pytest.mark.parametrize(
    ("cfg", "expected"),
    [
        (
            {"apiKey": TOKEN, "hassEntityGeneration": "sensor.pv"},
            ("sources.HASS.serverIP", "required"),
        ),
        (
            {"serverIP": "ha", "hassEntityGeneration": "sensor.pv"},
            ("sources.HASS.apiKey", "long-lived"),
        ),
        ({"serverIP": "ha", "apiKey": TOKEN}, ("sources.HASS", "hassEntityConsumption and/or")),
        (
            {"serverIP": "ha", "apiKey": TOKEN, "hassEntityGeneration": "Inverter power"},
            ("sources.HASS.hassEntityGeneration", "is not an entity id"),
        ),
        (
            {
                "serverIP": "ha",
                "apiKey": TOKEN,
                "hassEntityGeneration": "sensor.pv",
                "serverPort": "x",
            },
            ("sources.HASS.serverPort", "port number"),
        ),
        (
            {
                "serverIP": "ha",
                "apiKey": TOKEN,
                "hassEntityGeneration": "sensor.pv",
                "useHttps": "yes",
            },
            ("sources.HASS.useHttps", "true or false"),
        ),
        (
            {"serverIP": "http://ha:8123", "apiKey": TOKEN, "hassEntityGeneration": "sensor.pv"},
            ("sources.HASS.serverIP", "not a URL"),
        ),
    ],
)
def test_check_names_the_key(cfg, expected):
    problems = check_sources({"HASS": {"enabled": True, **cfg}})
    assert any(path == expected[0] and expected[1] in message for path, message in problems), (
        problems
    )
