"""Tesla Powerwall 2 gateway: login, session reuse, re-login, battery gate, self-signed HTTPS.

A small stateful gateway runs on a loopback HTTPS server with a certificate made for the
test: it checks the login body, sets the AuthCookie/UserRecord cookies, and answers the
meters only to a request carrying the current session's cookie.
"""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from tests.sources.conftest import Canned, Recorded
from twcmaster.sources.base import Reading, SourceError, SourceTiming
from twcmaster.sources.powerwall import (
    AGGREGATES_PATH,
    GRID_STATUS_PATH,
    LOGIN_PATH,
    OPERATION_PATH,
    SOE_PATH,
    PowerwallSource,
)

TIMING = SourceTiming(interval_s=10, timeout_s=1.0, max_age_s=60)
PASSWORD = "S3cret-Gateway-Pw"

AGGREGATES = {
    "site": {
        "last_communication_time": "2024-06-01T12:00:00.1+10:00",
        "instant_power": -1920.4,
        "instant_reactive_power": -150.0,
        "instant_apparent_power": 1926.2,
        "frequency": 50.0,
        "energy_exported": 4567890.1,
        "energy_imported": 1234567.8,
        "instant_average_voltage": 241.2,
        "instant_average_current": -8.0,
        "instant_total_current": -8.0,
    },
    "battery": {
        "last_communication_time": "2024-06-01T12:00:00.1+10:00",
        "instant_power": 0.0,
        "frequency": 50.0,
        "energy_exported": 100000.0,
        "energy_imported": 120000.0,
        "instant_average_voltage": 241.0,
    },
    "load": {
        "last_communication_time": "2024-06-01T12:00:00.1+10:00",
        "instant_power": 1559.6,
        "frequency": 50.0,
        "instant_average_voltage": 241.2,
        "instant_average_current": 6.5,
    },
    "solar": {
        "last_communication_time": "2024-06-01T12:00:00.1+10:00",
        "instant_power": 3480.0,
        "frequency": 50.0,
        "energy_exported": 9876543.0,
        "instant_average_voltage": 241.3,
    },
}

READING = Reading(generation_w=3480.0, consumption_w=1559.6, grid_w=-1920.4, voltage_v=241.2)


class Gateway:
    """The gateway's login and session rules, served by a LoopbackHTTPServer."""

    def __init__(self, server, password: str = PASSWORD, unauthorised_status: int = 401) -> None:
        self.server = server
        self.password = password
        self.unauthorised_status = unauthorised_status
        self.soe_raw = 90.47
        self.aggregates = AGGREGATES
        self.session: str | None = None
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()
        server.route(LOGIN_PATH, self.login, method="POST")
        server.route(AGGREGATES_PATH, self.guarded(lambda: Canned.json(self.aggregates)))
        server.route(SOE_PATH, self.guarded(lambda: Canned.json({"percentage": self.soe_raw})))

    def expire(self) -> None:
        with self._lock:
            self.session = None

    def login(self, request: Recorded) -> Canned:
        body = request.json()
        if body != {
            "username": "customer",
            "password": self.password,
            "email": "",
            "force_sm_off": False,
        }:
            return Canned.json(
                {"code": 401, "error": "bad credentials", "message": "Login Error"}, 401
            )
        with self._lock:
            self.session = f"session-{next(self._numbers)}-token"
            token = self.session
        cookies = f"AuthCookie={token}; Path=/; Secure; HttpOnly"
        return Canned.json(
            {
                "email": "",
                "firstname": "Tesla",
                "lastname": "Energy",
                "roles": ["Home_Owner"],
                "token": token,
                "provider": "Basic",
                "loginTime": "2024-06-01T12:00:00+10:00",
            },
            headers={"Set-Cookie": cookies},
        )

    def guarded(self, answer):
        def respond(request: Recorded) -> Canned:
            with self._lock:
                session = self.session
            if session is None or f"AuthCookie={session}" not in request.headers.get("cookie", ""):
                return Canned.json(
                    {"code": self.unauthorised_status, "error": "Unable to GET to resource"},
                    self.unauthorised_status,
                )
            return answer()

        return respond

    def logins(self) -> int:
        return len(self.server.requests_to(LOGIN_PATH))


@pytest.fixture
def gateway(https_server) -> Gateway:
    return Gateway(https_server)


def source_for(server, timing=TIMING, **config) -> PowerwallSource:
    defaults = {"serverIP": server.host, "serverPort": server.port, "password": PASSWORD}
    return PowerwallSource({**defaults, **config}, timing)


def fetch_error(source) -> str:
    with pytest.raises(SourceError) as caught:
        source.fetch()
    message = str(caught.value)
    assert message.startswith("Powerwall2: ")
    assert PASSWORD not in message
    if source.token:
        assert source.token not in message
    return message


def test_login_then_meters_over_self_signed_https(gateway, https_server):
    source = source_for(https_server)

    assert source.fetch() == READING

    [login] = https_server.requests_to(LOGIN_PATH)
    assert login.method == "POST"
    assert login.json()["password"] == PASSWORD
    [meters] = https_server.requests_to(AGGREGATES_PATH)
    assert "AuthCookie=session-1-token" in meters.headers["cookie"]
    assert meters.headers["authorization"] == "Bearer session-1-token"


def test_session_is_reused(gateway, https_server):
    source = source_for(https_server)

    for _ in range(3):
        assert source.fetch() == READING

    assert gateway.logins() == 1
    assert len(https_server.requests_to(AGGREGATES_PATH)) == 3


@pytest.mark.parametrize("status", [401, 403])
def test_relogin_once_when_the_session_expires(https_server, status):
    gateway = Gateway(https_server, unauthorised_status=status)
    source = source_for(https_server)
    assert source.fetch() == READING

    gateway.expire()
    assert source.fetch() == READING

    assert gateway.logins() == 2
    assert source.token == "session-2-token"


def test_still_refused_after_relogin_is_an_error_and_not_a_loop(https_server):
    gateway = Gateway(https_server)
    https_server.route(AGGREGATES_PATH, Canned.json({"error": "Unable to GET"}, 403))
    source = source_for(https_server)

    message = fetch_error(source)

    assert "HTTP 403 Forbidden (26-byte body not shown: authenticated request)" in message
    assert gateway.logins() == 2  # the first login, and one more after the 403


def test_wrong_password(gateway, https_server):
    source = source_for(https_server, password="not-the-password")

    message = fetch_error(source)

    assert "login refused: check sources.Powerwall2.password" in message
    assert "HTTP 401 Unauthorized (" in message  # the password was on the request
    assert "Login Error" not in message
    assert "not-the-password" not in message
    assert LOGIN_PATH in message


def test_password_echoed_by_the_gateway_stays_secret(https_server):
    https_server.route(
        LOGIN_PATH, Canned.json({"error": f"password {PASSWORD} locked out"}, 429), method="POST"
    )

    message = fetch_error(source_for(https_server))

    assert "HTTP 429" in message
    assert "locked out" not in message and PASSWORD not in message
    assert "body not shown: authenticated request" in message


def test_without_password_no_login_and_a_clear_error(gateway, https_server):
    source = source_for(https_server, password=None)

    message = fetch_error(source)

    assert "needs sources.Powerwall2.password" in message
    assert gateway.logins() == 0


def test_battery_gate_with_hysteresis(gateway, https_server):
    source = source_for(https_server, minBatteryLevel=50)

    def generation(raw_pct: float) -> float:
        gateway.soe_raw = raw_pct
        return source.fetch().generation_w

    assert generation(90.47) == 3480.0  # app level 90 %
    assert generation(40.0) == 0.0  # 36.8 %: the battery first
    assert source.gated
    assert generation(52.5) == 0.0  # 50 %: at the level, not yet back
    assert generation(56.0) == 0.0  # 53.7 %: within the 5 % hysteresis
    assert generation(57.3) == 3480.0  # 55.05 %: generation counts again
    assert generation(52.5) == 3480.0  # 50 %: not below the level
    assert generation(51.9) == 0.0  # 49.4 %: below again
    assert len(https_server.requests_to(SOE_PATH)) == 7

    gateway.soe_raw = 40.0
    reading = source.fetch()
    assert (reading.consumption_w, reading.grid_w) == (1559.6, -1920.4)  # still reported


def test_no_battery_level_no_soe_request(gateway, https_server):
    source_for(https_server).fetch()
    assert https_server.requests_to(SOE_PATH) == []
    for path in (GRID_STATUS_PATH, OPERATION_PATH):  # nor the values no policy rule reads
        assert https_server.requests_to(path) == []


def test_the_values_policy_rules_read_are_asked_of_the_gateway(gateway, https_server):
    grid = {"grid_status": "SystemIslandedActive", "grid_services_active": False}
    operation = {"real_mode": "self_consumption", "backup_reserve_percent": 24.0}
    https_server.route(GRID_STATUS_PATH, gateway.guarded(lambda: Canned.json(grid)))
    https_server.route(OPERATION_PATH, gateway.guarded(lambda: Canned.json(operation)))
    source = source_for(https_server)
    source.read_also(frozenset({"gridStatus", "batteryLevel", "reservePercent"}))
    reading = source.fetch()
    assert (reading.generation_w, reading.grid_w) == (READING.generation_w, READING.grid_w)
    assert dict(reading.extras) == {
        "gridStatus": False,  # islanded: a grid outage
        "batteryLevel": pytest.approx((90.47 - 5) / 0.95),
        "reservePercent": pytest.approx((24.0 - 5) / 0.95),
    }
    grid["grid_status"] = "SystemGridConnected"
    operation["real_mode"] = "backup"
    source.read_also(frozenset({"gridStatus", "operatingMode", "reservePercent"}))
    assert dict(source.fetch().extras) == {
        "gridStatus": True, "operatingMode": "backup", "reservePercent": 96.0,
    }  # fmt: skip


def test_a_value_for_rules_that_cannot_be_read_is_left_out_and_the_watts_still_count(
    gateway, https_server
):
    https_server.route(GRID_STATUS_PATH, gateway.guarded(lambda: Canned.json({"x": 1})))
    source = source_for(https_server)
    source.read_also(frozenset({"gridStatus"}))
    reading = source.fetch()
    assert reading.extras == () and reading.generation_w == READING.generation_w


def test_tls_verification_can_be_tightened(gateway, https_server):
    assert source_for(https_server, caFile=https_server.cert_file).fetch() == READING

    message = fetch_error(source_for(https_server, verifyTLS=True))
    assert "TLS error: certificate verify failed" in message
    assert "verifyTLS false or caFile" in message


@pytest.mark.parametrize("status", [404, 500, 502, 503])
def test_http_error_statuses(gateway, https_server, status):
    https_server.route(AGGREGATES_PATH, Canned.json({"message": f"busy {status}"}, status))

    message = fetch_error(source_for(https_server))

    assert f"HTTP {status}" in message
    assert "body not shown: authenticated request" in message
    assert gateway.logins() == 1


def test_timeout(gateway, https_server):
    https_server.route(AGGREGATES_PATH, Canned.json(AGGREGATES, delay_s=5.0))
    started = time.monotonic()

    message = fetch_error(source_for(https_server, SourceTiming(timeout_s=0.3)))

    assert "timed out after 0.3 s" in message
    assert time.monotonic() - started < 2.0


def test_connection_refused(refused_url):
    port = refused_url.rsplit(":", 1)[1]
    source = PowerwallSource({"serverIP": "127.0.0.1", "serverPort": port}, TIMING)

    message = fetch_error(source)

    assert f"GET https://127.0.0.1:{port}{AGGREGATES_PATH}: cannot connect" in message


def test_malformed_json(gateway, https_server):
    https_server.route(AGGREGATES_PATH, Canned.text("<html>Gateway starting</html>"))

    assert "malformed JSON" in fetch_error(source_for(https_server))


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"site": {}, "load": {}, "battery": {}}, "missing 'solar'"),
        ({**AGGREGATES, "load": {"instant_power": None}}, "load.instant_power is null"),
        ({**AGGREGATES, "site": []}, "site is a list"),
    ],
)
def test_wrong_shape(gateway, https_server, document, expected):
    gateway.aggregates = document

    message = fetch_error(source_for(https_server))

    assert "unexpected answer" in message
    assert expected in message


def test_login_answer_without_token(https_server):
    https_server.route(LOGIN_PATH, Canned.json({"roles": ["Home_Owner"]}), method="POST")

    assert "missing 'token'" in fetch_error(source_for(https_server))


def test_check():
    assert PowerwallSource.check({"serverIP": "192.0.2.9", "password": "x"}) == []
    assert PowerwallSource.check({"serverIP": "192.0.2.9", "minBatteryLevel": 150}) == [
        ("minBatteryLevel", "150: must be at most 100 %")
    ]
