"""SolarEdge monitoring API against a loopback server standing in for the cloud."""

from __future__ import annotations

import copy
import logging
import time

import pytest

from tests.sources.conftest import Canned
from tests.sources.sunspec_maps import common, inverter_int, meter_int, sunspec_map
from twcmaster.sources.base import Reading, SourceError, SourceTiming
from twcmaster.sources.solaredge import SolarEdgeSource

API_KEY = "L4QLVQ1LOKCQX2193VSEICXW61NP6B1O"  # made up, in SolarEdge's format
SITE = "1234567"
FLOW_PATH = f"/site/{SITE}/currentPowerFlow"
OVERVIEW_PATH = f"/site/{SITE}/overview"
TIMING = SourceTiming(interval_s=90, timeout_s=1.0, max_age_s=270)

POWER_FLOW_KW = {
    "siteCurrentPowerFlow": {
        "updateRefreshRate": 3,
        "unit": "kW",
        "connections": [{"from": "PV", "to": "Load"}, {"from": "Load", "to": "Grid"}],
        "GRID": {"status": "Active", "currentPower": 1.92},
        "LOAD": {"status": "Active", "currentPower": 1.56},
        "PV": {"status": "Active", "currentPower": 3.48},
        "STORAGE": {"status": "Idle", "currentPower": 0.0, "chargeLevel": 80, "critical": False},
    }
}

# Evening, in watts, importing: the grid feeds the load.
POWER_FLOW_W_IMPORT = {
    "siteCurrentPowerFlow": {
        "updateRefreshRate": 3,
        "unit": "W",
        "connections": [{"from": "GRID", "to": "Load"}, {"from": "PV", "to": "Load"}],
        "GRID": {"status": "Active", "currentPower": 900.0},
        "LOAD": {"status": "Active", "currentPower": 1200.0},
        "PV": {"status": "Active", "currentPower": 300.0},
    }
}

# A site without a consumption meter: no LOAD, no GRID.
POWER_FLOW_NO_METER = {
    "siteCurrentPowerFlow": {
        "updateRefreshRate": 3,
        "unit": "kW",
        "connections": [],
        "PV": {"status": "Active", "currentPower": 3.4},
    }
}

OVERVIEW = {
    "overview": {
        "lastUpdateTime": "2024-06-01 12:00:00",
        "lifeTimeData": {"energy": 12345678.0, "revenue": 1234.5},
        "lastYearData": {"energy": 2345678.0},
        "lastMonthData": {"energy": 345678.0},
        "lastDayData": {"energy": 12345.0},
        "currentPower": {"power": 3480.0},
        "measuredBy": "INVERTER",
    }
}


def source_for(server, timing=TIMING, **config) -> SolarEdgeSource:
    return SolarEdgeSource(
        {"apiKey": API_KEY, "siteID": SITE, "apiURL": server.url, **config}, timing
    )


def fetch_error(source) -> str:
    with pytest.raises(SourceError) as caught:
        source.fetch()
    message = str(caught.value)
    assert API_KEY not in message
    assert message.startswith("SolarEdge: GET ")
    return message


def test_power_flow_in_kw_exporting(http_server):
    http_server.route(FLOW_PATH, Canned.json(POWER_FLOW_KW))

    reading = source_for(http_server).fetch()

    assert reading.generation_w == pytest.approx(3480.0)
    assert reading.consumption_w == pytest.approx(1560.0)
    assert reading.grid_w == pytest.approx(-1920.0)  # Load -> Grid: export
    [request] = http_server.requests
    assert request.param("api_key") == API_KEY


def test_power_flow_in_w_importing(http_server):
    http_server.route(FLOW_PATH, Canned.json(POWER_FLOW_W_IMPORT))

    reading = source_for(http_server).fetch()

    assert reading == Reading(generation_w=300.0, consumption_w=1200.0, grid_w=900.0)


def test_grid_direction_is_case_insensitive_and_unknown_without_connection(http_server):
    document = copy.deepcopy(POWER_FLOW_W_IMPORT)
    document["siteCurrentPowerFlow"]["connections"] = [{"from": "grid", "to": "load"}]
    http_server.route(FLOW_PATH, Canned.json(document))
    assert source_for(http_server).fetch().grid_w == 900.0

    document["siteCurrentPowerFlow"]["connections"] = [{"from": "PV", "to": "Load"}]
    http_server.route(FLOW_PATH, Canned.json(document))
    assert source_for(http_server).fetch().grid_w is None


def test_no_load_meter_falls_back_to_overview_for_good(http_server):
    http_server.route(FLOW_PATH, Canned.json(POWER_FLOW_NO_METER))
    http_server.route(OVERVIEW_PATH, Canned.json(OVERVIEW))
    source = source_for(http_server)

    assert source.fetch() == Reading(generation_w=3480.0)
    assert source.fetch() == Reading(generation_w=3480.0)

    assert len(http_server.requests_to(FLOW_PATH)) == 1  # quota: not asked again
    assert len(http_server.requests_to(OVERVIEW_PATH)) == 2
    assert source.overview_only


def test_unknown_unit(http_server):
    document = copy.deepcopy(POWER_FLOW_KW)
    document["siteCurrentPowerFlow"]["unit"] = "hp"
    http_server.route(FLOW_PATH, Canned.json(document))

    assert "unknown unit 'hp'" in fetch_error(source_for(http_server))


def test_rate_limited_and_the_key_stays_secret(http_server):
    # The cloud echoes the request; the key must not reach the message.
    body = f'{{"String": "Too many requests: /site/{SITE}/currentPowerFlow?api_key={API_KEY}"}}'
    http_server.route(FLOW_PATH, Canned(429, body.encode()))

    message = fetch_error(source_for(http_server))

    assert "HTTP 429" in message
    assert "rate limited" in message
    assert "body not shown: authenticated request" in message and API_KEY not in message
    assert f"{http_server.url}{FLOW_PATH}:" in message  # the URL, without the key


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (401, b"", "HTTP 401 Unauthorized"),
        # The key is on every request: a body (which may echo it) is never shown.
        (403, b"Invalid token", "HTTP 403 Forbidden (13-byte body not shown: authenticated "),
        (403, b"", "HTTP 403 Forbidden (the API key was refused"),
        (404, b'{"String": "Site not found"}', "HTTP 404 Not Found (28-byte body not shown"),
        (500, b"<html><body>Oops</body></html>", "HTTP 500 Internal Server Error (30-byte"),
        (503, b"Service Unavailable", "HTTP 503 Service Unavailable"),
    ],
)
def test_http_error_statuses(http_server, status, body, expected):
    http_server.route(FLOW_PATH, Canned(status, body))

    assert expected in fetch_error(source_for(http_server))


def test_timeout(http_server):
    http_server.route(FLOW_PATH, Canned.json(POWER_FLOW_KW, delay_s=5.0))
    started = time.monotonic()

    message = fetch_error(source_for(http_server, SourceTiming(timeout_s=0.3)))

    assert "timed out after 0.3 s" in message
    assert time.monotonic() - started < 2.0


def test_connection_refused_does_not_leak_the_key(refused_url):
    source = SolarEdgeSource({"apiKey": API_KEY, "siteID": SITE, "apiURL": refused_url}, TIMING)

    message = fetch_error(source)

    assert "cannot connect: connection refused" in message
    assert message.startswith(f"SolarEdge: GET {refused_url}{FLOW_PATH}: ")


def test_malformed_json(http_server):
    http_server.route(FLOW_PATH, Canned.text("<html>maintenance</html>", content_type="text/html"))

    assert "malformed JSON" in fetch_error(source_for(http_server))


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"overview": {}}, "missing 'siteCurrentPowerFlow'"),
        ({"siteCurrentPowerFlow": {"LOAD": {"currentPower": 1}}}, "missing 'unit'"),
        (
            {"siteCurrentPowerFlow": {"unit": "W", "LOAD": {"status": "Active"}}},
            "missing 'currentPower' in LOAD",
        ),
        ({"siteCurrentPowerFlow": "none"}, "is the text 'none'"),
    ],
)
def test_wrong_shape(http_server, document, expected):
    http_server.route(FLOW_PATH, Canned.json(document))

    message = fetch_error(source_for(http_server))

    assert "unexpected answer" in message
    assert expected in message


def test_overview_wrong_shape(http_server):
    http_server.route(FLOW_PATH, Canned.json(POWER_FLOW_NO_METER))
    http_server.route(OVERVIEW_PATH, Canned.json({"overview": {"currentPower": {}}}))

    assert "missing 'power' in overview.currentPower" in fetch_error(source_for(http_server))


def test_describe_and_check():
    source = SolarEdgeSource({"apiKey": API_KEY, "siteID": 1234567}, TIMING)
    assert API_KEY not in source.describe()
    assert source.site_url == "https://monitoringapi.solaredge.com/site/1234567"
    assert SolarEdgeSource.default_interval_s == 90


def test_urllib3_debug_lines_do_not_carry_the_key(http_server, caplog):
    http_server.route(FLOW_PATH, Canned.json(POWER_FLOW_KW))
    caplog.set_level(logging.DEBUG, logger="urllib3")

    source_for(http_server).fetch()

    lines = [record.getMessage() for record in caplog.records]
    assert any(f"{FLOW_PATH}?api_key=***" in line for line in lines), lines
    assert not any(API_KEY in line for line in lines)


# ------------------------------------------------------------ local Modbus TCP (SunSpec)


def solaredge_registers(*meters, inverter_w=3480, inverter_sf=0):
    """A SolarEdge inverter's map behind unit 1: common model, inverter 103 at 40069, then
    one common model + meter 203 per meter on its bus (the first at 40121/40188)."""
    models = [
        common("SolarEdge ", "SE8K-RWS48BEN4"),
        inverter_int(103, w=inverter_w, w_sf=inverter_sf),
    ]
    for meter_w in meters:
        models += [common("SolarEdge ", "SE-MTR-3Y-400V-A"), meter_int(203, w=meter_w)]
    return {1: sunspec_map(*models)}


def local_source(server, *meters, timing=TIMING, **config) -> SolarEdgeSource:
    settings = {"inverterHost": server.host, "inverterPort": server.port, **config}
    if meters:
        settings["smartMeters"] = [{"name": name, "type": kind} for name, kind in meters]
    return SolarEdgeSource(settings, timing)


def test_local_inverter_only(make_modbus_server):
    server = make_modbus_server(solaredge_registers(inverter_w=3480, inverter_sf=0))
    source = local_source(server)

    reading = source.fetch()

    assert reading.generation_w == 3480.0
    assert reading.consumption_w is None
    assert "Modbus TCP" in source.describe()
    source.close()


def test_local_export_meter(make_modbus_server):
    # The export meter reads +1920 W going to the grid: the house uses 3480 - 1920.
    server = make_modbus_server(solaredge_registers(1920))

    reading = local_source(server, ("Meter1", "export")).fetch()

    assert reading.generation_w == 3480.0
    assert reading.consumption_w == 1560.0
    assert reading.grid_w == -1920.0


def test_local_export_meter_importing_and_consumption_meter(make_modbus_server):
    # Evening: the export meter reads -900 (import), a consumption meter 400 W (a heat pump).
    server = make_modbus_server(solaredge_registers(-900, 400, inverter_w=300))

    reading = local_source(server, ("Meter1", "export"), ("Meter2", "consumption")).fetch()

    assert reading.generation_w == 300.0
    assert reading.consumption_w == 400.0 + 300.0 + 900.0
    assert reading.grid_w == 900.0


def test_local_consumption_meter_only(make_modbus_server):
    server = make_modbus_server(solaredge_registers(1234))

    reading = local_source(server, ("Meter1", "consumption")).fetch()

    assert reading.consumption_w == 1234.0
    assert reading.grid_w is None


def test_local_meter_not_found_is_an_error(make_modbus_server):
    server = make_modbus_server(solaredge_registers(100))

    with pytest.raises(SourceError, match="smart meter Meter2 not found: .* 1 meter"):
        local_source(server, ("Meter2", "export")).fetch()


def test_local_power_scale_factor(make_modbus_server):
    server = make_modbus_server(solaredge_registers(inverter_w=34800 // 10, inverter_sf=-1))

    assert local_source(server).fetch().generation_w == pytest.approx(348.0)


def test_local_silent_inverter_times_out(raw_tcp_server):
    server = raw_tcp_server(lambda request: None)

    started = time.monotonic()
    with pytest.raises(SourceError, match=r"timed out after 0\.3 s"):
        local_source(server, timing=SourceTiming(timeout_s=0.3)).fetch()
    assert time.monotonic() - started < 2.0


def test_local_refused(refused_url):
    port = int(refused_url.rsplit(":", 1)[1])
    source = SolarEdgeSource({"inverterHost": "127.0.0.1", "inverterPort": port}, TIMING)

    with pytest.raises(SourceError, match=r"SolarEdge: 127\.0\.0\.1:\d+ .*cannot connect"):
        source.fetch()


def test_local_garbage(raw_tcp_server):
    server = raw_tcp_server(lambda request: b"HTTP/1.1 400 Bad Request\r\n\r\n")

    with pytest.raises(SourceError, match="SolarEdge: 127.0.0.1"):
        local_source(server, timing=SourceTiming(timeout_s=0.3)).fetch()


def test_local_mode_wins_polls_every_10_s_and_is_checked():
    local = {"inverterHost": "192.0.2.7", "apiKey": API_KEY, "siteID": SITE}
    assert SolarEdgeSource.check(local) == []
    assert SolarEdgeSource.interval_default(local) == 10
    assert SolarEdgeSource.interval_default({"apiKey": API_KEY, "siteID": SITE}) == 90
    assert SolarEdgeSource(local, TIMING).modbus.port == 1502
    meters = [{"name": "Meter1", "type": "export"}, {"name": "Meter4"}, "Meter2"]
    problems = dict(
        SolarEdgeSource.check({"inverterHost": "x", "inverterPort": "abc", "smartMeters": meters})
    )
    assert set(problems) == {
        "inverterPort",
        "smartMeters[1].name",
        "smartMeters[1].type",
        "smartMeters[2]",
    }
    assert "consumption or export" in problems["smartMeters[1].type"]
    assert SolarEdgeSource.check({"inverterHost": "x", "smartMeters": {}})[0][0] == "smartMeters"


def test_poll_mode(http_server):
    http_server.route(FLOW_PATH, Canned.json(POWER_FLOW_KW))
    http_server.route(OVERVIEW_PATH, Canned.json(OVERVIEW))

    source_for(http_server, pollMode=1).fetch()
    assert http_server.requests_to(FLOW_PATH) == []
    assert SolarEdgeSource.check({"apiKey": "k", "siteID": 1, "pollMode": 3})[0][0] == "pollMode"

    http_server.route(FLOW_PATH, Canned.json(POWER_FLOW_NO_METER))
    with pytest.raises(SourceError, match="pollMode is 2"):
        source_for(http_server, pollMode=2).fetch()
