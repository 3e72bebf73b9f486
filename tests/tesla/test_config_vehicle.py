"""``vehicle.teslaAPI`` in config.json: defaults, TWCManager's own keys as fallbacks, and bad
values named by their key path (a token never echoed)."""

from __future__ import annotations

import pytest

from tests.test_config import errors_of, load, paths
from twcmaster.config.vehicle import FLEET_AUTH_URL


def tesla(**keys):
    return load(vehicle={"teslaAPI": {"enabled": True, **keys}}).settings.tesla_api


def test_off_unless_its_section_is_there_and_on_as_in_twcmanager_when_enabled_is_absent():
    assert load().settings.tesla_api is None
    assert load(vehicle={"teslaAPI": {"enabled": False}}).settings.tesla_api is None
    assert load(vehicle={"teslaAPI": {"clientID": "x"}}).settings.tesla_api is not None


def test_defaults_are_frugal_and_local():
    t = tesla(clientID="app")
    assert (t.base_url, t.auth_url, t.token_file) == (None, FLEET_AUTH_URL, "tesla-tokens.json")
    assert (t.daily_call_budget, t.daily_wake_budget, t.wake_delay_s) == (60, 10, 180.0)
    assert t.home_radius_m == 150.0 and not t.has_home and t.charge_stop_mode == 1


def test_twcmanagers_keys_carry_over():
    loaded = load(
        {"teslaApiClientID": "cid", "teslaProxy": "https://localhost:4443/",
         "teslaProxyCert": "/etc/proxy.pem", "wakeDelayMins": 2},
        vehicle={"teslaAPI": {"enabled": True}},
    )  # fmt: skip
    t = loaded.settings.tesla_api
    assert (t.client_id, t.base_url, t.proxy_cert) == (
        "cid",
        "https://localhost:4443",
        "/etc/proxy.pem",
    )
    assert t.wake_delay_s == 120.0
    assert loaded.warnings == ()
    assert tesla(clientID="own", wakeDelayS=30).wake_delay_s == 30.0


@pytest.mark.parametrize(
    "keys, path",
    [
        ({"baseURL": "fleet-api.example"}, "baseURL"),
        ({"homeLatitude": 91, "homeLongitude": 7}, "homeLatitude"),
        ({"homeLatitude": 47}, "homeLongitude"),
        ({"homeRadiusM": 5}, "homeRadiusM"),
        ({"dailyCallBudget": 0}, "dailyCallBudget"),
        ({"dailyWakeBudget": 2.5}, "dailyWakeBudget"),
        ({"wakeDelayS": -1}, "wakeDelayS"),
        ({"timeoutS": 0}, "timeoutS"),
        ({"refreshTokn": "x"}, "refreshTokn"),
    ],
)
def test_a_bad_value_names_its_key(keys, path):
    problems = errors_of(vehicle={"teslaAPI": {"enabled": True, **keys}})
    assert paths(problems) == [f"vehicle.teslaAPI.{path}"]


def test_a_refresh_token_is_never_echoed():
    canary = "CANARY-refresh-0123456789"
    assert canary not in repr(tesla(refreshToken=canary))
    problems = errors_of(vehicle={"teslaAPI": {"enabled": True, "refreshToken": [canary]}})
    assert paths(problems) == ["vehicle.teslaAPI.refreshToken"]
    assert canary not in problems[0].message
