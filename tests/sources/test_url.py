"""URL source: TWCManager's plain-text items (Node-RED) and twcmaster's JSON paths, against a
real loopback HTTP server."""

from __future__ import annotations

import base64
import time

import pytest

from tests.sources.conftest import Canned
from twcmaster.sources.base import Reading, SourceError, SourceTiming
from twcmaster.sources.http import ShapeError
from twcmaster.sources.registry import build_sources, check_sources
from twcmaster.sources.url import UrlSource, parse_unit, power_w

TIMING = SourceTiming(timeout_s=2.0)

# A Fronius-like document, as a home-made JSON endpoint might pass it on.
POWER_FLOW = {
    "Body": {"Data": {"Site": {"P_PV": 3480.5, "P_Load": -726.0, "P_Grid": -2754.5}}},
    "Head": {"Status": {"Code": 0}, "Timestamp": "2024-06-01T12:00:00+02:00"},
}


def fetch_error(source) -> str:
    with pytest.raises(SourceError) as caught:
        source.fetch()
    return str(caught.value)


# ------------------------------------------------------------------- TWCManager's items


def test_node_red_plain_text_items(http_server):
    http_server.route("/energy/consumption", Canned.text("726.4"))
    http_server.route("/energy/generation", Canned.text("3480\n"))
    cfg = {
        "enabled": True,
        "url": f"{http_server.url}/energy",
        "consumptionItem": "consumption",
        "generationItem": "generation",
    }
    source = UrlSource(cfg, TIMING)
    assert source.fetch() == Reading(consumption_w=726.4, generation_w=3480.0)
    assert [r.path for r in http_server.requests] == ["/energy/consumption", "/energy/generation"]
    assert check_sources({"URL": cfg}) == []


@pytest.mark.parametrize(
    ("body", "content_type", "unit", "watts"),
    [
        ("3480", "application/json", None, 3480.0),  # Node-RED: msg.payload a number
        ('"3480.5"', "application/json", None, 3480.5),  # ... or a string
        ("3.48 kW", "text/plain", None, 3480.0),  # TWCManager would read 3.48
        ("3480W", "text/plain", None, 3480.0),
        ("3.48", "text/plain", "kW", 3480.0),
        ("3480 W", "text/plain", "kW", 3480.0),  # a unit in the text wins
    ],
)
def test_plain_values_and_units(http_server, body, content_type, unit, watts):
    http_server.route("/pv", Canned.text(body, content_type=content_type))
    cfg = {"url": http_server.url + "/", "generationItem": "/pv"}
    if unit:
        cfg["unit"] = unit
    assert UrlSource(cfg, TIMING).fetch() == Reading(generation_w=watts)


@pytest.mark.parametrize("body", ["unavailable", "", "{}", "12,5", "null", "true"])
def test_non_numeric_text_is_an_error(http_server, body):
    http_server.route("/pv", Canned.text(body))
    message = fetch_error(UrlSource({"url": http_server.url, "generationItem": "pv"}, TIMING))
    assert message.startswith(f"URL: GET {http_server.url}/pv: unexpected answer: ")
    assert "is not a number" in message


# ----------------------------------------------------------------- twcmaster's JSON paths


def test_json_paths_into_one_document_fetch_it_once(http_server):
    http_server.route("/status.json", Canned.json(POWER_FLOW))
    cfg = {
        "url": f"{http_server.url}/status.json",
        "generationPath": "$.Body.Data.Site.P_PV",
        "consumptionPath": "$.Body.Data.Site.P_Load",
    }
    source = UrlSource(cfg, TIMING)
    assert source.fetch() == Reading(generation_w=3480.5, consumption_w=-726.0)
    assert len(http_server.requests) == 1
    assert "at $.Body.Data.Site.P_PV" in source.describe()


def test_paths_with_items_lists_quoted_keys_kw_and_headers(http_server):
    meter = {"data": [{"name": "house", "power": {"now in kW": "0.73"}}]}
    http_server.route("/api/meter", Canned.json(meter))
    http_server.route("/api/pv", Canned.json({"value": 3.5}))
    cfg = {
        "url": f"{http_server.url}/api",
        "consumptionItem": "meter",
        "consumptionPath": 'data[0].power["now in kW"]',
        "generationItem": "pv",
        "generationPath": "value",
        "unit": "kW",
        "headers": {"Authorization": "Bearer sekrit-token", "Accept": "application/json"},
    }
    assert check_sources({"URL": {"enabled": True, **cfg}}) == []
    reading = UrlSource(cfg, TIMING).fetch()
    assert reading == Reading(consumption_w=pytest.approx(730.0), generation_w=3500.0)
    assert all(r.headers["authorization"] == "Bearer sekrit-token" for r in http_server.requests)


@pytest.mark.parametrize(
    ("document", "path", "expected"),
    [
        (POWER_FLOW, "$.Body.Data.Site.P_Solar", "no key 'P_Solar' at $.Body.Data.Site"),
        ({"data": []}, "data[0].value", "[0] is out of range at $.data (a list of 0)"),
        ({"value": None}, "value", "at value: the value is null"),
        ({"value": "unavailable"}, "value", "'unavailable' is not a number"),
        ({"value": True}, "value", "the value is true"),
        ({"value": {"w": 1}}, "value", "the value is dict"),
    ],
)
def test_paths_that_lead_nowhere(http_server, document, path, expected):
    http_server.route("/j", Canned.json(document))
    message = fetch_error(
        UrlSource({"url": f"{http_server.url}/j", "generationPath": path}, TIMING)
    )
    assert expected in message


def test_malformed_json(http_server):
    http_server.route("/j", Canned.text('{"value": 3', content_type="application/json"))
    message = fetch_error(
        UrlSource({"url": f"{http_server.url}/j", "generationPath": "value"}, TIMING)
    )
    assert "malformed JSON" in message
    assert "'{\"value\": 3'" in message


def test_secret_header_values_stay_out_of_messages(http_server):
    token = "Bearer sekrit-token"
    http_server.route("/j", Canned.text(f"bad token {token}", 401))
    cfg = {
        "url": f"{http_server.url}/j",
        "generationPath": "value",
        "headers": {"Authorization": token},
    }
    source = UrlSource(cfg, TIMING)
    message = fetch_error(source)
    assert "HTTP 401" in message
    assert "sekrit" not in message and "sekrit" not in source.describe()


def test_password_in_the_url_is_basic_auth_and_kept_secret(http_server):
    http_server.route("/pv", Canned.text("no", 403))
    url = http_server.url.replace("http://", "http://node:pa55word@")
    source = UrlSource({"url": url, "generationItem": "pv"}, TIMING)
    message = fetch_error(source)
    assert http_server.requests[0].headers["authorization"] == "Basic bm9kZTpwYTU1d29yZA=="
    assert "HTTP 403" in message
    assert "pa55word" not in message and "pa55word" not in source.describe()
    assert "node:***@" in source.describe()


def test_http_errors_timeout_refused(http_server, refused_url):
    http_server.route("/pv", Canned.text("not here", 404))
    assert "HTTP 404" in fetch_error(
        UrlSource({"url": http_server.url, "generationItem": "pv"}, TIMING)
    )
    http_server.route("/pv", Canned.text("Internal Server Error", 500))
    assert "HTTP 500" in fetch_error(
        UrlSource({"url": http_server.url, "generationItem": "pv"}, TIMING)
    )

    http_server.route("/pv", Canned.text("1", delay_s=5.0))
    started = time.monotonic()
    slow = UrlSource({"url": http_server.url, "generationItem": "pv"}, SourceTiming(timeout_s=0.3))
    assert "timed out after 0.3 s" in fetch_error(slow)
    assert time.monotonic() - started < 2.0

    gone = UrlSource({"url": refused_url, "generationItem": "pv"}, TIMING)
    assert "cannot connect: connection refused" in fetch_error(gone)


# ---------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("cfg", "expected"),
    [
        ({"generationItem": "pv"}, ("sources.URL.url", "required")),
        ({"url": "nodered:1880/x", "generationItem": "pv"}, ("sources.URL.url", "http://")),
        ({"url": "http://h"}, ("sources.URL", "consumptionItem and/or generationItem")),
        (
            {"url": "http://h", "generationPath": "a..b"},
            ("sources.URL.generationPath", "at character 3"),
        ),
        (
            {"url": "http://h", "generationItem": "pv", "unit": "kWh"},
            ("sources.URL.unit", "not a power unit"),
        ),
        (
            {"url": "http://h", "generationItem": "pv", "unit": "mw"},
            ("sources.URL.unit", "ambiguous"),
        ),
        (
            {"url": "http://h", "generationItem": "pv", "headers": "x"},
            ("sources.URL.headers", "a section"),
        ),
        (
            {"url": "http://h", "generationItem": 5},
            ("sources.URL.generationItem", "non-empty text"),
        ),
    ],
)
def test_check_names_the_key(cfg, expected):
    problems = check_sources({"URL": {"enabled": True, **cfg}})
    assert any(path == expected[0] and expected[1] in message for path, message in problems), (
        problems
    )


def test_builds_from_the_registry():
    [source] = build_sources(
        {"URL": {"enabled": True, "url": "http://h:1880/e", "generationItem": "pv"}}
    )
    assert isinstance(source, UrlSource)
    assert source.describe() == "URL: generation from http://h:1880/e/pv (bare numbers in W)"


# ---------------------------------------------------------------------- the value rules


@pytest.mark.parametrize(
    ("value", "unit", "watts"),
    [
        (3480, "W", 3480.0),
        (3.48, "kW", 3480.0),
        ("  -1.5e3 ", "W", -1500.0),
        ("2 MW", "W", 2e6),
        ("500 mW", "W", 0.5),
        (".5", "kw", 500.0),
        ("7", "KW", 7000.0),
    ],
)
def test_power_w(value, unit, watts):
    assert power_w(value, unit) == pytest.approx(watts)


@pytest.mark.parametrize(
    "value", [None, True, "inf", "nan", "1e999", float("nan"), [], "3 4", "1 kWh"]
)
def test_power_w_rejects(value):
    with pytest.raises(ShapeError):
        power_w(value)


def test_parse_unit():
    assert parse_unit(" kW ") == 1000.0
    for unit in ("mw", "kWh", "", None, 1000):
        with pytest.raises(ShapeError):
            parse_unit(unit)


def test_a_percent_encoded_url_password_is_masked_as_sent(http_server):
    # "p%40ss%2Fword" in the URL is sent as the password "p@ss/word": that form, and the
    # Base64 of "node:p@ss/word" on the wire, are the ones a server echoes.
    sent = base64.b64encode(b"node:p@ss/word").decode()
    http_server.route("/pv", Canned.json({"value": f"p@ss/word Basic {sent}"}))
    url = http_server.url.replace("http://", "http://node:p%40ss%2Fword@") + "/pv"
    source = UrlSource({"url": url, "generationPath": "value"}, TIMING)

    message = fetch_error(source)

    assert http_server.requests[0].headers["authorization"] == f"Basic {sent}"
    assert "'*** Basic ***' is not a number" in message


def test_malformed_json_of_an_authenticated_request_is_not_shown(http_server):
    http_server.route("/j", Canned.text('{"echo": "Basic bm9kZTpwYTU1d29yZA=="', status=200))
    url = http_server.url.replace("http://", "http://node:pa55word@") + "/j"

    message = fetch_error(UrlSource({"url": url, "generationPath": "value"}, TIMING))

    assert "malformed JSON" in message
    assert "37-character body not shown: authenticated request" in message
    assert "echo" not in message


def test_a_bad_url_is_named_without_its_password():
    problems = check_sources(
        {"URL": {"enabled": True, "url": "nodered:s3cr3t-pw@host/x", "generationItem": "pv"}}
    )
    [(path, message)] = [p for p in problems if p[0] == "sources.URL.url"]
    assert message == "'nodered:***@host/x': expected an http:// or https:// URL"
