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
"""

from __future__ import annotations

import base64
import itertools
import json
import secrets
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

from tests.daemonproc import Master, slave_sim, write_config
from tests.mosquitto import Mosquitto
from tests.sources.conftest import (
    ANY_PATH,
    Canned,
    LoopbackHTTPServer,
    Recorded,
    tls_cert,  # noqa: F401  (a pytest fixture)
)

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
