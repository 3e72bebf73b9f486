"""Canary secrets: no credential of any energy source ever reaches the daemon's output.

The real daemon (`twcmaster run`, logLevel 10: every debug line, urllib3's included) runs
against `twcmaster slave-sim` over a pty with every source that takes credentials enabled,
each credential a distinct random canary. Loopback servers stand in for the devices and
clouds and answer by echoing the request back (headers, query and body; raw, Base64 and
URL-quoted), alternating error statuses with 200 answers that carry the echo as the values
the source reads; the MQTT source's broker is the test mosquitto, whose topics get payloads
quoting the password. After a few polls of each source, SIGTERM; then stdout, stderr and
every file the daemon wrote (its settingsPath and its TMPDIR) are searched for each canary
in every form: raw, Base64 (of the secret and of ``user:secret``), URL-quoted, hex.

The Tesla module likewise, through ``twcmaster demo`` as a subprocess (its own stdout and
stderr, not the test session's log capture): every token the loopback Fleet API fake issued,
a login_required answer quoting the refresh token included, is searched in the console, the
log, every MQTT message on '#', the HTTP snapshot and every file under settingsPath.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import random
import secrets
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from aiohttp import web

from tests.daemonproc import Master, slave_sim, write_config
from tests.mosquitto import Mosquitto, free_port
from tests.mqtt.conftest import Subscriber
from tests.sources.conftest import (
    ANY_PATH,
    Canned,
    LoopbackHTTPServer,
    Recorded,
    tls_cert,  # noqa: F401  (a pytest fixture)
)
from tests.tesla.fakefleet import FakeCar, FakeFleet
from twcmaster.sim.car import random_vin

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

POLL_INTERVAL_S = 0.3
MIN_REQUESTS = 3  # per source: each must have polled more than twice
RUN_AT_MOST_S = 12.0  # until every source has polled enough
URL_USER = "twcuser"  # user names are shown (http://twcuser:***@host); passwords never
MQTT_USER = "twcsource"
POWERWALL_USER = "customer"  # the gateway's fixed login name
TOPIC = "home/pv/power_w"
STATUSES = itertools.cycle([401, 403, 500, 429])
# Header values a server echoes first, so they fall inside a message's excerpt.
CREDENTIAL_HEADERS = ("authorization", "x-api-key")


def canary() -> str:
    # "+/=" are quoted in URLs and query strings: the URL-quoted forms differ from the raw.
    return f"CANARY-{secrets.token_hex(8)}+/="


def forms(secret: str, user: str | None = None) -> set[str]:
    """Every form of ``secret`` the output must not hold."""
    texts = [secret] + ([f"{user}:{secret}"] if user else [])
    found: set[str] = set()
    for text in texts:
        raw = text.encode()
        b64 = base64.b64encode(raw).decode()
        urlsafe = base64.urlsafe_b64encode(raw).decode()
        quoted = urllib.parse.quote(text, safe="")
        found |= {
            text,
            b64,
            b64.rstrip("="),
            urlsafe.rstrip("="),
            quoted,
            quoted.lower(),
            urllib.parse.quote_plus(text),
            raw.hex(),
            raw.hex().upper(),
            raw.hex(" ").upper(),  # how the log renders bytes values
        }
    # The random part alone: a secret cut in half must not show either.
    found.add(secret.removeprefix("CANARY-")[:12])
    return found


def echo_server(make: LoopbackHTTPServer) -> LoopbackHTTPServer:
    """A server answering every request with the request itself: an error status and the
    echo, then a 200 whose every value is the echo, in turn."""
    turn = itertools.count()

    def answer(request: Recorded) -> Canned:
        values = [request.headers[h] for h in CREDENTIAL_HEADERS if h in request.headers]
        values += [v for vs in request.query.values() for v in vs]
        values += [request.body.decode("utf-8", "replace")] if request.body else []
        values += [v for h, v in request.headers.items() if h not in CREDENTIAL_HEADERS]
        words = [w for v in values for w in v.split()]
        echo = " ".join(values)
        document = {
            "message": f"denied: {echo}",
            "echo": echo,
            "base64": [base64.b64encode(w.encode()).decode() for w in [*values, *words]],
            "quoted": [urllib.parse.quote(w, safe="") for w in [*values, *words]],
        }
        if next(turn) % 2 == 0:
            return Canned.json(document, next(STATUSES))
        every_value = dict.fromkeys(["state", "value", "token", "unit", "percentage"], echo)
        return Canned.json({**document, **every_value})

    make.route(ANY_PATH, answer)
    return make


@pytest.fixture
def servers(tls_cert):  # noqa: F811
    started = {
        "SolarEdge": LoopbackHTTPServer(),
        "Enphase": LoopbackHTTPServer(),
        "Powerwall2": LoopbackHTTPServer(tls=tls_cert),  # the gateway speaks HTTPS only
        "HASS": LoopbackHTTPServer(),
        "openHAB": LoopbackHTTPServer(),
        "URL": LoopbackHTTPServer(),
    }
    for server in started.values():
        echo_server(server)
    yield started
    for server in started.values():
        server.close()


def source_sections(servers, broker: Mosquitto, canaries: dict[str, str]) -> dict:
    def at(name: str) -> dict:
        server = servers[name]
        return {
            "enabled": True,
            "serverIP": server.host,
            "serverPort": server.port,
            "interval": POLL_INTERVAL_S,
            "timeout": 2,
        }

    url = servers["URL"]
    quoted_password = urllib.parse.quote(canaries["url.password"], safe="")
    timing = {"interval": POLL_INTERVAL_S, "timeout": 2}
    return {
        "SolarEdge": {
            "enabled": True,
            "apiKey": canaries["solaredge.apiKey"],
            "siteID": "4242",
            "apiURL": servers["SolarEdge"].url,
            **timing,
        },
        "Enphase": {**at("Enphase"), "token": canaries["enphase.token"], "useHttps": False},
        "Powerwall2": {**at("Powerwall2"), "password": canaries["powerwall.password"]},
        "HASS": {
            **at("HASS"),
            "apiKey": canaries["hass.apiKey"],
            "hassEntityGeneration": "sensor.pv_power",
        },
        "openHAB": {**at("openHAB"), "apiKey": canaries["openhab.apiKey"], "generationItem": "PV"},
        "URL": {
            "enabled": True,
            "url": f"http://{URL_USER}:{quoted_password}@{url.host}:{url.port}/energy",
            "generationItem": "pv",
            "headers": {"X-Api-Key": canaries["url.apiKey"]},
            **timing,
        },
        "MQTT": {
            "enabled": True,
            "brokerIP": broker.host,
            "brokerPort": broker.port,
            "username": MQTT_USER,
            "password": canaries["mqtt.password"],
            "topicGeneration": TOPIC,
        },
    }


def daemon_output(master: Master, written: list[Path]) -> dict[str, str]:
    texts = {"stdout": master.stdout, "stderr": master.stderr}
    for directory in written:
        for path in directory.rglob("*"):
            if path.is_file():
                texts[str(path)] = path.read_bytes().decode("utf-8", "replace")
    return texts


def test_no_source_credential_reaches_any_output(tmp_path, servers):
    canaries = {
        key: canary()
        for key in (
            "solaredge.apiKey",
            "enphase.token",
            "powerwall.password",
            "hass.apiKey",
            "openhab.apiKey",
            "url.password",
            "url.apiKey",
            "mqtt.password",
        )
    }
    users = {"url.password": URL_USER, "mqtt.password": MQTT_USER}
    users["powerwall.password"] = POWERWALL_USER
    etc, state, tmp = tmp_path / "etc", tmp_path / "state", tmp_path / "tmp"
    for directory in (etc, state, tmp):
        directory.mkdir()

    with Mosquitto(tmp_path / "mosquitto") as broker:
        config = write_config(
            etc,
            sources=source_sections(servers, broker, canaries),
            settingsPath=str(state),
            logLevel=10,
        )
        with slave_sim(etc / "ttyTWC"):
            master = Master.start(config, env={"TMPDIR": str(tmp)})
            publisher = _Publisher(broker, canaries["mqtt.password"])
            try:
                _run_until_every_source_polled(master, servers, broker, publisher)
            finally:
                publisher.stop()
                exit_s = master.stop()
        broker_log = broker.log()

    # Not vacuous: the daemon ran, logged at debug, and every source reached its server.
    assert exit_s is not None and master.returncode == 0, master.stderr[-2000:]
    err = master.stderr
    assert "twcmaster starting" in err and "twcmaster stopped" in err
    assert "Starting new HTTP connection" in err  # urllib3's debug lines are in
    assert "energy source failed" in err
    for name, server in servers.items():
        assert len(server.requests) >= MIN_REQUESTS, (name, len(server.requests))
    assert "twcmaster-source-" in broker_log  # the MQTT source connected
    assert "MQTT payload ignored" in err  # and logged a payload quoting its password

    leaks = []
    for key, secret in canaries.items():
        for form in forms(secret, users.get(key)):
            for where, text in daemon_output(master, [state, tmp]).items():
                if form in text:
                    at = text.index(form)
                    leaks.append(f"{key} as {form!r} in {where}: …{text[at - 80 : at + 80]}…")
    assert leaks == [], "\n".join(leaks)


class _Publisher:
    """Publishes payloads quoting the MQTT password (raw and Base64) every 0.3 s."""

    def __init__(self, broker: Mosquitto, password: str) -> None:
        pair = base64.b64encode(f"{MQTT_USER}:{password}".encode()).decode()
        self.payloads = itertools.cycle([f"echo {password}", f"auth {pair}", json.dumps(password)])
        self.broker = broker
        self.published = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.wait(0.3):
            try:
                self.broker.publish(TOPIC, next(self.payloads))
                self.published += 1
            except Exception:  # the broker is going away at the end of the test
                return

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(10)


def _run_until_every_source_polled(master, servers, broker, publisher) -> None:
    deadline = time.monotonic() + RUN_AT_MOST_S
    while time.monotonic() < deadline:
        assert master.process.poll() is None, master.stderr[-2000:]
        polled = all(len(s.requests) >= MIN_REQUESTS for s in servers.values())
        if polled and publisher.published >= 3 and "MQTT payload ignored" in master.stderr:
            time.sleep(POLL_INTERVAL_S)  # one more round of each
            return
        time.sleep(0.1)


# --- The Tesla module: `twcmaster demo` with vehicle.teslaAPI on ---------------------------

DEMO_SECONDS = 7.0
TESLA_HOME = (47.0, 7.0)


class _EchoingFleet(FakeFleet):
    """The loopback Fleet API fake, made to echo secrets once ``echo`` is set: the token
    endpoint answers 401 ``login_required`` quoting the refresh token posted (and every
    form field), the API answers its 401s quoting the Authorization header."""

    echo = False

    async def _token(self, request: web.Request) -> web.Response:
        if not self.echo:
            return await super()._token(request)
        form = await request.post()
        posted = " ".join(f"{k}={v}" for k, v in form.items())
        body = {"error": "login_required",
                "error_description": f"The refresh_token is invalid: {posted}"}  # fmt: skip
        return web.json_response(body, status=401)

    def _check_access(self, auth: str) -> web.Response | None:
        refused = super()._check_access(auth)
        if refused is not None and self.echo:
            body = {"response": None, "error": f"token expired (401): {auth}"}
            return web.json_response(body, status=401)
        return refused


def _tesla_secret_forms(fleet, refresh_canary: str) -> set[str]:
    found = forms(refresh_canary)
    for token in fleet.tokens_issued():
        found |= {token, urllib.parse.quote(token, safe=""), token.encode().hex()}
        found |= {part for part in token.split(".")[1:] if len(part) >= 16}  # payload, signature
        found.add(token[-16:])
    return found


def _run_demo(config: Path, http_port: int, until: str) -> tuple[str, str, dict]:
    """``twcmaster demo --config`` for DEMO_SECONDS: its stdout (console), stderr (log) and
    the HTTP snapshot once the car module's state is ``until``."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "twcmaster", "demo", "--config", str(config),
         "--seconds", str(DEMO_SECONDS), "--slaves", "2", "--seed", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    snapshot: dict = {}
    deadline = time.monotonic() + DEMO_SECONDS
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            url = f"http://127.0.0.1:{http_port}/api/v1/snapshot"
            with urllib.request.urlopen(url, timeout=2) as answer:
                snapshot = json.loads(answer.read())
            if (snapshot.get("cars") or {}).get("state") == until:
                break
        except OSError:
            pass
        time.sleep(0.2)
    out, err = proc.communicate(timeout=DEMO_SECONDS + 20)
    assert proc.returncode == 0, err[-2000:]
    return out, err, snapshot


def test_no_tesla_token_reaches_any_output_of_the_demo(tmp_path):
    """`twcmaster demo` (a subprocess: its stdout is the console, its stderr the log at
    debug) with vehicle.teslaAPI on against the loopback Fleet API fake, MQTT status to a
    real mosquitto (a subscriber on '#'), the HTTP API polled. Run 1: a canary refresh
    token, refreshed (rotated) at start, the account's two cars listed (the console says
    so). Run 2, same settingsPath: the access token has expired, and Tesla answers the
    refresh with login_required quoting the refresh token posted, its 401s quoting the
    access token. Every token issued, in several forms, must be nowhere: not on stdout,
    stderr, MQTT, HTTP, nor in any file under settingsPath but the token file."""
    rng = random.Random(11)
    vins = [random_vin(rng), random_vin(rng)]
    home = {"latitude": TESLA_HOME[0], "longitude": TESLA_HOME[1]}
    cars = [FakeCar(vin, name=f"car{i}", **home) for i, vin in enumerate(vins)]
    fleet = _EchoingFleet(cars, access_lifetime_s=3600)
    refresh_canary = "rt-" + canary().replace("+/=", "")
    state = tmp_path / "state"
    state.mkdir()
    http_port = free_port()
    with Mosquitto(tmp_path / "mosquitto") as broker, fleet.running():
        fleet.tokens.refresh_live.add(refresh_canary)  # what the user's login gave
        subscriber = Subscriber(broker, "#")
        config = tmp_path / "config.json"
        config.write_text(json.dumps({
            "config": {"wiringMaxAmpsAllTWCs": 40, "wiringMaxAmpsPerTWC": 32,
                       "minAmpsPerTWC": 6, "settingsPath": str(state), "logLevel": 10},
            "status": {"MQTT": {"enabled": True, "brokerIP": broker.host,
                                "brokerPort": broker.port, "ratelimit": 0}},
            "control": {"HTTP": {"enabled": True, "listenPort": http_port}},
            "vehicle": {"teslaAPI": {
                "enabled": True, "baseURL": fleet.url, "authURL": fleet.auth_url,
                "clientID": "twcmaster-test", "refreshToken": refresh_canary,
                "homeLatitude": TESLA_HOME[0], "homeLongitude": TESLA_HOME[1],
            }},
        }))  # fmt: skip
        out1, err1, snap1 = _run_demo(config, http_port, "ok")
        fleet.expire_access_tokens()
        fleet.echo = True
        out2, err2, snap2 = _run_demo(config, http_port, "login_required")
        time.sleep(0.3)
        subscriber.close()
        messages = list(subscriber.messages)

    # Not vacuous: both runs logged, printed console lines, published, answered HTTP.
    assert fleet.refreshes >= 1 and len(fleet.tokens_issued()) >= 3
    assert len(fleet.requests_to("/oauth2/v3/token")) > fleet.refreshes  # an echoing answer
    console1 = out1.splitlines()
    listed = [line for line in console1 if "Tesla API: ok: 2 car(s): " in line]
    assert listed and all(vin in listed[0] for vin in vins), out1[-3000:]  # at start-up
    assert any(f"Car {vins[0]} (car0): " in line for line in console1), out1[-3000:]
    assert "Tesla account" in err1 and "Tesla token refreshed" in err1, err1[-2000:]
    assert "Tesla API: login_required" in out2, out2[-3000:]
    assert "login_required" in err2, err2[-2000:]
    assert len(err1.splitlines()) > 20 and len(console1) > 10
    assert snap1["cars"]["state"] == "ok" and snap2["cars"]["state"] == "login_required"
    assert len(messages) > 20, len(messages)
    token_file = state / "tesla-tokens.json"
    assert token_file.is_file() and any(t in token_file.read_text() for t in fleet.tokens_issued())

    outputs = {"run 1 stdout": out1, "run 1 stderr": err1, "run 2 stdout": out2,
               "run 2 stderr": err2, "run 1 HTTP": json.dumps(snap1),
               "run 2 HTTP": json.dumps(snap2)}  # fmt: skip
    outputs["MQTT"] = "\n".join(f"{m.topic} {m.payload.decode('utf-8', 'replace')}"
                                for m in messages)  # fmt: skip
    files = [p for p in state.rglob("*") if p.is_file() and p != token_file]
    assert files, "the demo wrote nothing under settingsPath"
    for path in files:
        outputs[str(path)] = path.read_bytes().decode("utf-8", "replace")
    leaks = [
        f"{form!r} in {where}: …{text[text.index(form) - 80 : text.index(form) + 80]}…"
        for form in _tesla_secret_forms(fleet, refresh_canary)
        for where, text in outputs.items()
        if form in text
    ]
    assert leaks == [], "\n".join(leaks)
