"""Enphase Envoy / IQ Gateway (local) against loopback HTTP and HTTPS servers."""

from __future__ import annotations

import copy
import time

import pytest

from tests.sources.conftest import Canned
from twcmaster.sources.base import Reading, SourceError, SourceTiming
from twcmaster.sources.enphase import PRODUCTION_PATH, EnphaseSource

TIMING = SourceTiming(interval_s=10, timeout_s=1.0, max_age_s=60)
# An owner JWT's shape (header.payload.signature); made up.
TOKEN = (
    "eyJraWQiOiI3ZDEwMDA1ZC03ODk5LTRkMGQtYmNiNC0yNDRmOThlZTE1NmIifQ.eyJhdWQiOiIxMjIy.c2lnbmF0dXJl"
)

PRODUCTION = {
    "production": [
        {
            "type": "inverters",
            "activeCount": 20,
            "readingTime": 1717236000,
            "wNow": 3410,
            "whLifetime": 12345678,
        },
        {
            "type": "eim",
            "activeCount": 1,
            "measurementType": "production",
            "readingTime": 1717236001,
            "wNow": 3480.2,
            "whLifetime": 12400000.1,
            "rmsCurrent": 15.1,
            "rmsVoltage": 241.3,
            "reactPwr": 120.5,
            "apprntPwr": 3650.2,
            "pwrFactor": 0.95,
            "whToday": 12345.0,
            "whLastSevenDays": 98765.0,
        },
    ],
    "consumption": [
        {
            "type": "eim",
            "activeCount": 1,
            "measurementType": "total-consumption",
            "readingTime": 1717236001,
            "wNow": 1559.6,
            "whLifetime": 8000000.0,
            "rmsCurrent": 6.5,
            "rmsVoltage": 241.1,
            "pwrFactor": 0.9,
        },
        {
            "type": "eim",
            "activeCount": 1,
            "measurementType": "net-consumption",
            "readingTime": 1717236001,
            "wNow": -1920.6,
            "whLifetime": 1500000.0,
            "rmsCurrent": 8.0,
            "rmsVoltage": 241.1,
            "pwrFactor": -0.98,
        },
    ],
    "storage": [
        {"type": "acb", "activeCount": 0, "readingTime": 0, "wNow": 0, "whNow": 0, "state": "idle"}
    ],
}

# An Envoy-S Standard without CTs: the eim entries are there but idle.
PRODUCTION_NO_CT = copy.deepcopy(PRODUCTION)
for _entry in PRODUCTION_NO_CT["production"][1:] + PRODUCTION_NO_CT["consumption"]:
    _entry.update(activeCount=0, wNow=0.0, rmsVoltage=0.0)

# Older firmware without CTs: no eim entries at all.
PRODUCTION_INVERTERS_ONLY = {"production": [PRODUCTION["production"][0]], "consumption": []}


def source_for(server, timing=TIMING, **config) -> EnphaseSource:
    return EnphaseSource({"serverIP": server.host, "serverPort": server.port, **config}, timing)


def fetch_error(source, secret: str | None = None) -> str:
    with pytest.raises(SourceError) as caught:
        source.fetch()
    message = str(caught.value)
    assert message.startswith("Enphase: ")
    if secret:
        assert secret not in message
    return message


def test_with_cts(http_server):
    http_server.route(PRODUCTION_PATH, Canned.json(PRODUCTION))

    reading = source_for(http_server).fetch()

    assert reading == Reading(
        generation_w=3480.2, consumption_w=1559.6, grid_w=-1920.6, voltage_v=241.1
    )
    [request] = http_server.requests
    assert request.query == {"details": ["1"]}
    assert "authorization" not in request.headers


def test_without_cts_activecount_zero_uses_inverters(http_server):
    http_server.route(PRODUCTION_PATH, Canned.json(PRODUCTION_NO_CT))

    reading = source_for(http_server).fetch()

    assert reading == Reading(generation_w=3410.0)


def test_without_eim_entries_uses_inverters(http_server):
    http_server.route(PRODUCTION_PATH, Canned.json(PRODUCTION_INVERTERS_ONLY))

    assert source_for(http_server).fetch() == Reading(generation_w=3410.0)


def test_night_ct_standby_draw_is_no_generation(http_server):
    night = copy.deepcopy(PRODUCTION)
    night["production"][0]["wNow"] = 0
    night["production"][1]["wNow"] = -4.2
    night["consumption"][0]["wNow"] = 630.0
    night["consumption"][1]["wNow"] = 634.2
    http_server.route(PRODUCTION_PATH, Canned.json(night))

    reading = source_for(http_server).fetch()

    assert reading.generation_w == 0.0
    assert reading.consumption_w == 630.0
    assert reading.grid_w == 634.2


def test_token_over_https_with_self_signed_certificate(https_server):
    https_server.route(PRODUCTION_PATH, Canned.json(PRODUCTION))
    source = source_for(https_server, token=TOKEN)

    assert source.fetch().generation_w == 3480.2

    [request] = https_server.requests
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert source.url.startswith("https://")
    assert TOKEN not in source.describe()


def test_https_verified_with_ca_file(https_server):
    https_server.route(PRODUCTION_PATH, Canned.json(PRODUCTION))

    source = source_for(https_server, token=TOKEN, caFile=https_server.cert_file)
    assert source.fetch().generation_w == 3480.2

    strict = source_for(https_server, token=TOKEN, verifyTLS=True)
    assert "certificate verify failed" in fetch_error(strict, TOKEN)


def test_expired_token(https_server):
    https_server.route(PRODUCTION_PATH, Canned.json({"message": "token expired"}, 401))

    message = fetch_error(source_for(https_server, token=TOKEN), TOKEN)

    assert "HTTP 401 Unauthorized (28-byte body not shown: authenticated request)" in message
    assert "entrez.enphaseenergy.com" in message


def test_token_echoed_in_error_body_is_not_shown(https_server):
    # An authenticated request's error body never reaches a message: only its size.
    https_server.route(PRODUCTION_PATH, Canned.text(f"bad token {TOKEN}", 403))

    message = fetch_error(source_for(https_server, token=TOKEN), TOKEN)

    assert "HTTP 403 Forbidden (" in message and "body not shown" in message
    assert "bad token" not in message


def test_https_port_80_from_a_twcmanager_config_means_443():
    source = EnphaseSource({"serverIP": "192.0.2.7", "serverPort": "80", "token": TOKEN}, TIMING)
    assert source.url == "https://192.0.2.7:443/production.json"
    plain = EnphaseSource({"serverIP": "192.0.2.7"}, TIMING)
    assert plain.url == "http://192.0.2.7:80/production.json"
    forced = EnphaseSource({"serverIP": "192.0.2.7", "token": TOKEN, "useHttps": False}, TIMING)
    assert forced.url == "http://192.0.2.7:80/production.json"


# ------------------------------------------------------------------ Enlighten cloud API v2

CLOUD_KEY = "3b6f0c2e9d8a7b6c5d4e3f2a1b0c9d8e"  # made up, in Enphase's format
CLOUD_USER = "4d7a5a4e5a413d3d0a"
SUMMARY_PATH = "/api/v2/systems/67/summary"
SUMMARY = {
    "system_id": 67,
    "modules": 35,
    "size_w": 6270,
    "current_power": 3480,
    "energy_today": 21671,
    "energy_lifetime": 55294490,
    "summary_date": "2024-06-01",
    "source": "microinverters",
    "status": "normal",
    "operational_at": 1201362300,
    "last_report_at": 1717236000,
    "last_interval_end_at": 1717235700,
}


def cloud_for(server, timing=TIMING, **config) -> EnphaseSource:
    settings = {
        "apiKey": CLOUD_KEY,
        "systemID": 67,
        "userID": CLOUD_USER,
        "apiURL": server.url,
        **config,
    }
    return EnphaseSource(settings, timing)


def test_cloud_summary_current_power(http_server):
    http_server.route(SUMMARY_PATH, Canned.json(SUMMARY))

    source = cloud_for(http_server)

    assert source.fetch() == Reading(generation_w=3480.0)
    [request] = http_server.requests_to(SUMMARY_PATH)
    assert (request.param("key"), request.param("user_id")) == (CLOUD_KEY, CLOUD_USER)
    assert CLOUD_KEY not in source.describe()
    assert EnphaseSource.interval_default({"apiKey": "k", "systemID": 1, "userID": "u"}) == 60
    assert EnphaseSource.interval_default({"serverIP": "192.0.2.7"}) == 10


@pytest.mark.parametrize(
    ("status", "hint"),
    [(401, "API v2 is closed"), (404, "check systemID"), (409, "request limit")],
)
def test_cloud_errors_name_the_cause_without_the_key(http_server, status, hint):
    body = f'{{"reason": "bad", "message": ["key {CLOUD_KEY}"]}}'.encode()
    http_server.route(SUMMARY_PATH, Canned(status, body))

    message = fetch_error(cloud_for(http_server), CLOUD_KEY)

    assert hint in message


@pytest.mark.parametrize(
    ("document", "expected"),
    [({"system_id": 67}, "missing 'current_power'"), ({"current_power": "x"}, "'x'")],
)
def test_cloud_wrong_shape(http_server, document, expected):
    http_server.route(SUMMARY_PATH, Canned.json(document))

    message = fetch_error(cloud_for(http_server), CLOUD_KEY)

    assert "unexpected answer" in message
    assert expected in message


def test_cloud_timeout_and_refused(http_server, refused_url):
    http_server.route(SUMMARY_PATH, Canned.json(SUMMARY, delay_s=3.0))
    started = time.monotonic()
    message = fetch_error(cloud_for(http_server, SourceTiming(timeout_s=0.3)), CLOUD_KEY)
    assert "timed out after 0.3 s" in message
    assert time.monotonic() - started < 2.0
    source = EnphaseSource(
        {"apiKey": CLOUD_KEY, "systemID": 67, "userID": CLOUD_USER, "apiURL": refused_url},
        TIMING,
    )
    assert "connection refused" in fetch_error(source, CLOUD_KEY)


def test_cloud_check():
    config = {"apiKey": "k" * 32, "systemID": "12345", "userID": "u" * 16}
    assert EnphaseSource.check(config) == []
    assert [k for k, _ in EnphaseSource.check({"apiKey": "k"})] == ["systemID", "userID"]
    bad_url = {**config, "apiURL": "api.enphaseenergy.com"}
    assert [k for k, _ in EnphaseSource.check(bad_url)] == ["apiURL"]


@pytest.mark.parametrize("status", [403, 404, 429, 500, 503])
def test_http_error_statuses(http_server, status):
    http_server.route(PRODUCTION_PATH, Canned.text(f"gateway says {status}", status))

    message = fetch_error(source_for(http_server))

    assert f"HTTP {status}" in message
    assert f"gateway says {status}" in message


def test_timeout(http_server):
    http_server.route(PRODUCTION_PATH, Canned.json(PRODUCTION, delay_s=5.0))
    started = time.monotonic()

    assert "timed out after 0.3 s" in fetch_error(
        source_for(http_server, SourceTiming(timeout_s=0.3))
    )
    assert time.monotonic() - started < 2.0


def test_connection_refused(refused_url):
    port = refused_url.rsplit(":", 1)[1]
    source = EnphaseSource({"serverIP": "127.0.0.1", "serverPort": port}, TIMING)

    assert "cannot connect: connection refused" in fetch_error(source)


def test_malformed_json(http_server):
    http_server.route(PRODUCTION_PATH, Canned(200, b'{"production": [{"type": "inverters",'))

    assert "malformed JSON" in fetch_error(source_for(http_server))


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"consumption": []}, "missing 'production'"),
        ({"production": {}}, "production is an object, expected a list of objects"),
        ({"production": [{"type": "acb", "wNow": 1}]}, "neither an 'inverters' nor"),
        ({"production": [{"type": "inverters"}]}, "inverters entry has no 'wNow'"),
        ({"production": [{"type": "inverters", "wNow": None}]}, "inverters.wNow is null"),
    ],
)
def test_wrong_shape(http_server, document, expected):
    http_server.route(PRODUCTION_PATH, Canned.json(document))

    message = fetch_error(source_for(http_server))

    assert "unexpected answer" in message
    assert expected in message
