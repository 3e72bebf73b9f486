"""``vehicle.teslaAPI`` in config.json: defaults, TWCManager's own keys as fallbacks, and bad
values named by their key path (a token never echoed)."""

from __future__ import annotations

import json
import os

import pytest

from tests.tesla.test_client import self_signed
from tests.test_config import errors_of, load, paths
from twcmaster.config import ConfigError
from twcmaster.config.vehicle import FLEET_AUTH_URL

HOME = {"homeLatitude": 47.0, "homeLongitude": 7.0}


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


def test_twcmanagers_keys_carry_over(tmp_path):
    cert, _ = self_signed(tmp_path, "proxy")
    loaded = load(
        {"teslaApiClientID": "cid", "teslaProxy": "https://localhost:4443/",
         "teslaProxyCert": str(cert), "wakeDelayMins": 2},
        vehicle={"teslaAPI": {"enabled": True, **HOME}},
    )  # fmt: skip
    t = loaded.settings.tesla_api
    assert (t.client_id, t.base_url, t.proxy_cert) == (
        "cid",
        "https://localhost:4443",
        str(cert),
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


def test_no_home_location_is_a_warning_naming_what_to_set():
    loaded = load(vehicle={"teslaAPI": {"enabled": True}})
    assert paths(loaded.warnings) == ["vehicle.teslaAPI.homeLatitude"]
    assert "no VIN" in loaded.warnings[0].message
    assert load(vehicle={"teslaAPI": {"enabled": True, **HOME}}).warnings == ()


NOBODY = 65534


def problems_as_nobody(**sections) -> list[tuple[str, str]]:
    """``load(**sections)``'s problems (key path, message), loaded in a child process that
    has given up root, for which no file is unreadable."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never back into pytest
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            try:
                load(**sections)
                found = []
            except ConfigError as error:
                found = [(p.key_path, p.message) for p in error.problems]
            os.write(write_end, json.dumps(found).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as answer:
        found = json.loads(answer.read() or b"null")
    os.waitpid(pid, 0)
    assert found, "the child found no problem"
    return [tuple(item) for item in found]


@pytest.mark.parametrize("key", ["privateKeyFile", "proxyCert"])
@pytest.mark.parametrize("content", ["missing", "unreadable", "junk", "swapped"])
def test_key_and_certificate_files_are_loaded_by_check_config(tmp_path, key, content):
    """Missing, unreadable or not what it should be (a key where a certificate goes and the
    other way round): an error by key path, at load, as check-config and run both load."""
    cert, ec_key = self_signed(tmp_path, "app")
    path = tmp_path / "file.pem"
    if content == "unreadable":
        path.write_bytes(ec_key.read_bytes())
        path.chmod(0)
        if os.access(path, os.R_OK):  # root reads any file: load as nobody instead
            [(key_path, message)] = problems_as_nobody(vehicle={"teslaAPI": {
                "enabled": True, **HOME, key: str(path)}})  # fmt: skip
            assert key_path == f"vehicle.teslaAPI.{key}" and str(path) in message
            assert "Permission denied" in message, message
            return
    elif content == "junk":
        path.write_text("-----BEGIN NOTHING-----\n")
    elif content == "swapped":
        path.write_bytes((ec_key if key == "proxyCert" else cert).read_bytes())
    with pytest.raises(ConfigError) as error:
        load(vehicle={"teslaAPI": {"enabled": True, **HOME, key: str(path)}})
    [problem] = error.value.problems
    assert problem.key_path == f"vehicle.teslaAPI.{key}" and str(path) in problem.message
    good = {"privateKeyFile": str(ec_key), "proxyCert": str(cert)}[key]
    assert load(vehicle={"teslaAPI": {"enabled": True, **HOME, key: good}}).warnings == ()
