"""Who may steer the charger over HTTP: the bearer token (POSTs, GETs when configured), the
refusal to listen beyond loopback without one, requests from elsewhere refused when there is
no token, and no secret in any answer or log line (``getConfig`` with canary secrets)."""

from __future__ import annotations

import json
import socket

import pytest
import requests
from structlog.testing import capture_logs

from tests.http.served import TOKEN, WIRING, app_config, moment, serve
from twcmaster.config.interfaces import HttpConfig
from twcmaster.outputs.http import HttpApi, UnsafeBindError
from twcmaster.outputs.public_config import config_without_secrets

TIMEOUT_S = 5
CHARGE = json.dumps({"chargeNowRate": 16, "chargeNowDuration": 60})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_with_a_token_every_post_needs_it(tmp_path):
    with serve(tmp_path, http=HttpConfig(listen_port=0, token=TOKEN)) as served:
        url = served.url + "/api/chargeNow"
        for headers in ({}, bearer("wrong-token-0123456789"), {"Authorization": TOKEN},
                        {"Authorization": f"Basic {TOKEN}"}, bearer(TOKEN + "x")):  # fmt: skip
            refused = requests.post(url, data=CHARGE, headers=headers, timeout=TIMEOUT_S)
            assert refused.status_code == 401, headers
            assert refused.json()["field"] == "Authorization"
            assert refused.headers["WWW-Authenticate"].startswith("Bearer")
        # Refused before anything else: an unknown path or a bad body says nothing more.
        nowhere = requests.post(served.url + "/api/x", data="{", timeout=TIMEOUT_S)
        assert nowhere.status_code == 401
        ok = requests.post(url, data=CHARGE, headers=bearer(TOKEN), timeout=TIMEOUT_S)
        assert ok.status_code == 200
        lower = {"Authorization": f"bearer  {TOKEN}"}  # the scheme in any case, spaces around
        assert requests.post(url, data=CHARGE, headers=lower, timeout=TIMEOUT_S).ok
        # GETs stay open unless tokenRequiredForGet.
        assert requests.get(served.url + "/api/getStatus", timeout=TIMEOUT_S).ok


def test_token_required_for_get_except_health(tmp_path):
    http = HttpConfig(listen_port=0, token=TOKEN, token_required_for_get=True)
    with serve(tmp_path, http=http) as served:
        for path in ("/api/getStatus", "/api/getConfig", "/api/v1/snapshot", "/api/nothing"):
            assert requests.get(served.url + path, timeout=TIMEOUT_S).status_code == 401, path
            with_token = requests.get(served.url + path, headers=bearer(TOKEN), timeout=TIMEOUT_S)
            assert with_token.status_code in (200, 404), path
        assert requests.get(served.url + "/health", timeout=TIMEOUT_S).status_code == 200


def test_refuses_to_listen_beyond_loopback_without_a_token(tmp_path):
    for http in (
        HttpConfig(listen_ip="0.0.0.0", listen_port=0),
        HttpConfig(listen_ip="192.0.2.10", listen_port=0),
        HttpConfig(listen_ip="::", listen_port=0),
        HttpConfig(listen_port=0, token_required_for_get=True),  # a lock without a key
    ):
        served = serve(tmp_path, http=http)
        with pytest.raises(UnsafeBindError):
            with served:
                pass
        assert served.api.bound_port is None


def test_any_address_with_a_token_serves(tmp_path):
    with serve(tmp_path, http=HttpConfig(listen_ip="0.0.0.0", listen_port=0, token=TOKEN)) as s:
        assert s.api.bound_port
        answer = requests.post(
            s.url + "/api/cancelChargeNow", headers=bearer(TOKEN), timeout=TIMEOUT_S
        )
        assert answer.ok


def test_without_a_token_only_this_machine_may_ask(tmp_path):
    with serve(tmp_path) as served:
        url = served.url + "/api/chargeNow"
        # DNS rebinding: the browser sends the attacker's name as Host.
        rebound = requests.post(url, data=CHARGE, headers={"Host": "evil.example"}, timeout=5)
        assert rebound.status_code == 403 and rebound.json()["field"] == "Host"
        # A page elsewhere posting through a browser on this machine.
        for origin in ("http://evil.example", "null", "https://192.168.1.20:8123"):
            foreign = requests.post(url, data=CHARGE, headers={"Origin": origin}, timeout=5)
            assert foreign.status_code == 403 and foreign.json()["field"] == "Origin", origin
        for host in ("localhost:8080", "127.0.0.1", "[::1]:8080", "LOCALHOST"):
            assert requests.get(served.url + "/health", headers={"Host": host}, timeout=5).ok
        same = {"Origin": served.url}
        assert requests.post(url, data=CHARGE, headers=same, timeout=TIMEOUT_S).ok


def test_a_port_in_use_is_logged_not_raised(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with capture_logs() as logs, serve(tmp_path, http=HttpConfig(listen_port=port)) as s:
            assert s.api.bound_port is None
    assert any(entry["event"] == "HTTP API not started: cannot listen" for entry in logs)


# ----------------------------------------------------------------------------- secrets

CANARIES = {
    "sources.HASS.apiKey": "CANARY-hass-apikey",
    "sources.Powerwall2.password": "CANARY-pw2-password",
    "sources.Enphase.token": "CANARY-enphase-token",
    "sources.URL.headers.Authorization": "Bearer CANARY-url-header",
    "sources.URL.headers.X-Api-Key": "CANARY-url-xapikey",
    "sources.URL.url": "CANARY-url-userinfo",
    "sources.URL.url?apikey": "CANARY-url-query",
    "control.MQTT.password": "CANARY-mqtt-password",
    "control.HTTP.token": "CANARY-http-token-0123456789",
    "config.teslaApiClientSecret": "CANARY-tesla-secret",
    "vehicle.TeslaMate.db_pass": "CANARY-teslamate-dbpass",
    "vehicle.TeslaMate.encryption_key": "CANARY-teslamate-key",
    "vehicle.HomeAssistant.longLivedToken": "CANARY-ha-token",
    "logging.Sentry.DSN": "https://CANARY-sentry@o1.ingest.sentry.io/1",
    "policy.extend.webhooks": "https://hooks.example/CANARY-webhook",
    "sources.OpenWeatherMap.APIKey": "CANARY-owm",
}


def canary_config() -> dict:
    c = CANARIES
    return {
        "config": {**WIRING, "teslaApiClientSecret": c["config.teslaApiClientSecret"]},
        "sources": {
            "HASS": {"enabled": False, "serverIP": "10.0.0.2", "apiKey": c["sources.HASS.apiKey"]},
            "Powerwall2": {"enabled": False, "password": c["sources.Powerwall2.password"]},
            "Enphase": {"enabled": False, "token": c["sources.Enphase.token"]},
            "OpenWeatherMap": {"enabled": False, "APIKey": c["sources.OpenWeatherMap.APIKey"]},
            "URL": {
                "enabled": False,
                "url": f"http://meter:{c['sources.URL.url']}@10.0.0.3/data"
                f"?apikey={c['sources.URL.url?apikey']}&site=7",
                "headers": {
                    "Authorization": c["sources.URL.headers.Authorization"],
                    "X-Api-Key": c["sources.URL.headers.X-Api-Key"],
                },
            },
        },
        "control": {
            "MQTT": {"enabled": False, "username": "twc", "password": c["control.MQTT.password"]},
            "HTTP": {"enabled": True, "token": c["control.HTTP.token"]},
        },
        "vehicle": {
            "TeslaMate": {
                "enabled": False,
                "syncTokens": True,
                "db_pass": c["vehicle.TeslaMate.db_pass"],
                "encryption_key": c["vehicle.TeslaMate.encryption_key"],
            },
            "HomeAssistant": {
                "enabled": False,
                "longLivedToken": c["vehicle.HomeAssistant.longLivedToken"],
            },
        },
        "logging": {"Sentry": {"enabled": False, "DSN": c["logging.Sentry.DSN"]}},
        "policy": {"extend": {"webhooks": {"Charge Now": {"start": c["policy.extend.webhooks"]}}}},
    }


def test_get_config_shows_no_secret(tmp_path):
    app = app_config(**canary_config())
    with capture_logs() as logs, serve(tmp_path, app=app) as served:
        text = requests.get(served.url + "/api/getConfig", timeout=TIMEOUT_S).text
    assert "CANARY" not in text
    assert "CANARY" not in repr(logs)
    shown = json.loads(text)
    # What is not secret is still there, and a secret's key says it is set.
    assert shown["sources"]["HASS"]["serverIP"] == "10.0.0.2"
    assert shown["sources"]["HASS"]["apiKey"] == "***"
    assert shown["control"]["MQTT"]["username"] == "twc"
    assert shown["vehicle"]["TeslaMate"]["syncTokens"] is True  # a switch, not a secret
    assert shown["config"]["wiringMaxAmpsAllTWCs"] == 32
    assert shown["sources"]["URL"]["url"] == "http://meter:***@10.0.0.3/data?apikey=***&site=7"


def test_secret_masking_covers_every_shape():
    masked = config_without_secrets(
        {
            "list": [{"password": 1234}, {"token": ["a", "b"]}, "http://u:p4ss@h/"],
            "empty": {"password": "", "apiKey": None, "secret": False},
        }
    )
    assert masked == {
        "list": [{"password": "***"}, {"token": "***"}, "http://u:***@h/"],
        "empty": {"password": "", "apiKey": None, "secret": False},
    }


def test_no_token_in_any_log_line(tmp_path):
    with capture_logs() as logs, serve(tmp_path, http=HttpConfig(listen_port=0, token=TOKEN)) as s:
        url = s.url + "/api/chargeNow"
        requests.post(url, data=CHARGE, headers=bearer(TOKEN[:-1] + "!"), timeout=TIMEOUT_S)
        requests.post(url, data=CHARGE, headers=bearer(TOKEN), timeout=TIMEOUT_S)
    text = repr(logs)
    assert "refused" in text and "Charge Now at 16A" in text  # both were logged...
    assert TOKEN[:-1] not in text  # ...without the token, right or wrong


def test_the_api_object_never_shows_its_token():
    api = HttpApi(
        HttpConfig(listen_port=0, token=TOKEN), app_config(), snapshot=moment(), remote=None
    )
    assert TOKEN not in repr(api.config) and TOKEN not in repr(vars(api))
