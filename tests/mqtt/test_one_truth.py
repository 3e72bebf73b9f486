"""Every way of watching shows the same thing, and the commands a user types start it all:

* the console, ``/api/getStatus`` (and ``/api/getSlaveTWCs``), the MQTT topics and the JSON
  snapshot topic give the same policy, budget, green figures and offers for one moment;
* ``twcmaster demo`` with MQTT configured shows the TWC devices to a subscriber within 5 s,
  takes a Charge Now over MQTT and shows it on the console and over HTTP;
* ``twcmaster run`` starts the HTTP API and MQTT status from its config file.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.integration.rig import slave
from tests.mosquitto import free_port
from tests.mqtt.conftest import control_config, eventually, retained, status_config
from twcmaster.config import config_from_dict
from twcmaster.config.interfaces import HttpConfig
from twcmaster.control.green import SiteReading
from twcmaster.control.policy import build_policy
from twcmaster.daemon import Daemon
from twcmaster.outputs.console import ConsoleStatus
from twcmaster.outputs.http import HttpApi
from twcmaster.outputs.mqtt import MqttStatus
from twcmaster.remote.commands import RemoteControl
from twcmaster.settings import SettingsStore
from twcmaster.sim.bus import SimulatedBus
from twcmaster.sim.runner import PtyBus

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

REPO = Path(__file__).resolve().parents[2]
WIRING = {"wiringMaxAmpsAllTWCs": 32, "wiringMaxAmpsPerTWC": 32, "minAmpsPerTWC": 6}
GREEN_NOW = {"greenEnergyStartDelay": 0, "defaultVoltage": 230}
SUN_W, HOUSE_W = 5000.0, 400.0  # a steady sky: the figures cannot move between the reads
DISCOVERY_WITHIN_S = 5.0  # the promise for `twcmaster demo`


def steady_sky(now_s: float) -> SiteReading:
    return SiteReading(SUN_W, HOUSE_W, None, None, now_s, False, "", ("test meter",))


class Watched:
    """The daemon with the console (to a buffer), MQTT status and the HTTP API, on two
    simulated TWCs, tracking a steady sun."""

    async def start(self, broker, tmp_path: Path) -> None:
        loop = asyncio.get_running_loop()
        self.bus = SimulatedBus([slave(0x2118, seed=1), slave(0x3C4D, seed=2)])
        self.sim = PtyBus(self.bus)
        self.sim.start()
        config = config_from_dict(
            {"config": WIRING | GREEN_NOW, "interface": {"RS485": {"port": self.sim.path}}},
            "/tmp",
        ).settings
        store = SettingsStore(tmp_path, wiring_max_amps_all_twcs=32)
        store.set_sun_hours(0, 24)  # green all day, whatever time the test runs
        self.console_text = io.StringIO()
        console = ConsoleStatus(self.console_text)
        self.daemon = Daemon(
            config,
            console=console,
            policy=build_policy(config, store),
            site=steady_sky,
            clock=loop.time,
        )
        remote = RemoteControl(store, config, on_change=self.daemon.reconsider)
        self.status = MqttStatus(
            status_config(broker, ratelimit_s=0), config, control=control_config(broker)
        )
        self.api = HttpApi(
            HttpConfig(listen_port=0), config, snapshot=self.daemon.snapshot, remote=remote
        )
        self.daemon.add_output(self.status)
        self.daemon.add_service(self.status)
        self.daemon.add_service(self.api)
        self.task = asyncio.create_task(self.daemon.run())

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.sim.close()

    def get(self, path: str) -> dict:
        url = f"http://127.0.0.1:{self.api.bound_port}{path}"
        return requests.get(url, timeout=5).json()

    def settled(self) -> bool:
        """Both cars charging at the offers the budget gives."""
        snap = self.daemon.snapshot()
        return len(snap.slaves) == 2 and all(s.car_charging for s in snap.slaves)


def console_limits(text: str) -> dict[str, float]:
    """The limit each TWC last said it applies, on the console's heartbeat lines ("SHB 2118:
    01 09.14/10.00A": drawing 9.14 A of the 10 A it was offered)."""
    limits = {}
    for twcid, amps in re.findall(r"SHB (\w{4}): \w\w \d\d\.\d\d/(\d\d\.\d\d)A", text):
        limits[twcid] = float(amps)
    return limits


def test_console_http_and_mqtt_show_the_same_moment(mosquitto, tmp_path):
    watched = Watched()

    async def scenario():
        await watched.start(mosquitto, tmp_path)
        try:
            await eventually(watched.settled, 30, "both cars charging")
            await asyncio.sleep(3.0)  # offers settle: the sky does not move
            snap = watched.daemon.snapshot()
            topics = await asyncio.to_thread(retained, mosquitto, "TWC/#")
            status = await asyncio.to_thread(watched.get, "/api/getStatus")
            twcs = await asyncio.to_thread(watched.get, "/api/getSlaveTWCs")
            return snap, topics, status, twcs, watched.console_text.getvalue()
        finally:
            await watched.close()

    snap, topics, status, twcs, console = asyncio.run(scenario())
    state = json.loads(topics["TWC/all/snapshot"])
    budget = snap.budget
    assert budget.policy == "Track Green Energy" and budget.green is not None

    # Policy and budget: console, HTTP, MQTT topics, the JSON topic.
    assert f"Policy: {budget.policy}" in console
    assert status["currentPolicy"] == topics["TWC/all/currentPolicy"] == budget.policy
    assert state["policy"] == budget.policy
    assert float(status["maxAmpsToDivideAmongSlaves"]) == state["budget"]["amps"]
    assert float(topics["TWC/all/maxAmpsForSlaves"]) == state["budget"]["amps"]
    # The green figures: the console's last green lines as the JSON has them (the charger
    # load in the first line is reprinted only once a minute: TWCManager's habit).
    first, *amps_lines = state["budget"]["console_lines"]
    last_printed = console[console.rindex("Green energy generates") :].splitlines()
    assert [line.strip() for line in last_printed[1:3]] == amps_lines
    sun_and_house = first[: first.index(", Charger Load")]
    assert last_printed[0].startswith(sun_and_house)
    assert float(status["generationWatts"]) == state["green"]["generation_w"] == SUN_W
    assert int(topics["TWC/all/generationW"]) == state["green"]["generation_w"]
    assert float(status["consumptionWatts"]) == state["green"]["consumption_w"]
    assert int(topics["TWC/all/consumptionW"]) == state["green"]["consumption_w"]

    # Each TWC's offer: on the console's heartbeat line, over HTTP and MQTT, in the JSON.
    shown = console_limits(console)
    for twc in state["slaves"]:
        twcid = twc["twcid"]
        assert shown[twcid] == twc["offer_amps"] > 0, console[-800:]
        assert float(twcs[twcid]["lastAmpsOffered"]) == twc["offer_amps"]
        assert int(topics[f"TWC/{twcid}/ampsOffered"]) == twc["offer_amps"]
        assert int(topics[f"TWC/{twcid}/state"]) == twc["state"] == twcs[twcid]["state"]
        assert topics[f"TWC/{twcid}/carsCharging"] == "1"
    # (Offers may pass the budget for a while, a spike or a hold; never the wiring.)
    assert sum(t["offer_amps"] for t in state["slaves"]) <= WIRING["wiringMaxAmpsAllTWCs"]


# ------------------------------------------------------------------ the user's commands


def write_config(tmp_path: Path, broker, *, http_port: int, port: str | None = None) -> Path:
    config = {
        "config": WIRING | GREEN_NOW | {"settingsPath": str(tmp_path)},
        "status": {"MQTT": {"enabled": True, "brokerIP": broker.host,
                            "brokerPort": broker.port, "ratelimit": 0}},
        "control": {
            "MQTT": {"enabled": True, "brokerIP": broker.host, "brokerPort": broker.port},
            "HTTP": {"enabled": True, "listenPort": http_port},
        },
    }  # fmt: skip
    if port is not None:
        config["interface"] = {"RS485": {"port": port}}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


def start(*args: str, cwd: Path) -> subprocess.Popen:
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "twcmaster", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(process: subprocess.Popen) -> tuple[str, str]:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=20)
    return out, err


def wait_http(url: str, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return requests.get(url, timeout=2).json()
        except (requests.ConnectionError, ValueError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_the_demo_shows_its_twcs_in_home_assistant_within_5_s_and_obeys_mqtt(
    mosquitto, subscribers, tmp_path
):
    http_port = free_port()
    config = write_config(tmp_path, mosquitto, http_port=http_port)
    watcher = subscribers(mosquitto, "homeassistant/#")
    started_s = time.monotonic()
    demo = start("demo", "--config", str(config), "--seconds", "40", cwd=tmp_path)
    try:
        # One device per TWC: a discovery config carrying a TWC's device block.
        def twc_devices(sub):
            names = set()
            for message in sub.messages:
                if message.payload:
                    device = json.loads(message.payload).get("device", {})
                    names.update(re.findall(r"^TWC ([0-9A-F]{4})$", device.get("name", "")))
            return names

        seen = watcher.wait_for(lambda s: len(twc_devices(s)) == 2, DISCOVERY_WITHIN_S + 5)
        took_s = time.monotonic() - started_s
        assert took_s <= DISCOVERY_WITHIN_S, f"TWC devices {seen} after {took_s:.1f}s"
        print(f"\n[demo] both TWC devices seen by a subscriber {took_s:.2f} s after start")

        # Charge Now over MQTT: the console says so, and the HTTP API.
        api = f"http://127.0.0.1:{http_port}"
        wait_http(api + "/api/getStatus", 10)
        # (Sent again each second: control subscribes on its own connection, which may come
        # up a moment after status's, and a command nobody is subscribed to is lost.)
        deadline = time.monotonic() + 10
        while wait_http(api + "/api/getStatus", 5)["currentPolicy"] != "Charge Now":
            assert time.monotonic() < deadline, "Charge Now not in force over HTTP"
            mosquitto.publish("TWC/control/chargeNow", "20,600")
            time.sleep(1.0)
        policy = {"TWC/all/currentPolicy": "Charge Now"}
        while retained(mosquitto, "TWC/all/currentPolicy") != policy:
            assert time.monotonic() < deadline, "Charge Now not in force over MQTT"
            time.sleep(0.2)
    finally:
        out, err = stop(demo)
    assert demo.returncode == 0, err[-2000:]
    assert "Policy: Charge Now" in out
    assert retained(mosquitto, "TWC/availability") == {"TWC/availability": "offline"}


def test_run_starts_what_its_config_enables(mosquitto, tmp_path):
    """``twcmaster run`` against simulated TWCs on a pty (another process, as a real bus)."""
    http_port = free_port()
    link = tmp_path / "ttyTWC"
    sim = start("slave-sim", "--pty", str(link), "--count", "1", cwd=tmp_path)
    try:
        deadline = time.monotonic() + 10
        while not link.exists():
            assert time.monotonic() < deadline, "slave-sim made no pty"
            time.sleep(0.05)
        config = write_config(tmp_path, mosquitto, http_port=http_port, port=str(link))
        daemon = start("run", "--config", str(config), cwd=tmp_path)
        try:
            api = f"http://127.0.0.1:{http_port}"
            wait_healthy(api, 20)
            twcids = list(wait_http(api + "/api/getSlaveTWCs", 5))
            twcid = next(t for t in twcids if t != "total")
            # MQTT connects on its own thread, beside the bus: its topics follow shortly.
            deadline = time.monotonic() + 10
            while not {f"TWC/{twcid}/state", f"TWC/{twcid}/availability"} <= set(
                held := retained(mosquitto, f"TWC/{twcid}/#")
            ):
                assert time.monotonic() < deadline, f"no MQTT topics for TWC {twcid}: {held}"
                time.sleep(0.2)
            assert held[f"TWC/{twcid}/availability"] == "online"
        finally:
            _, err = stop(daemon)
        assert daemon.returncode == 0, err[-2000:]
    finally:
        stop(sim)


def wait_healthy(api: str, timeout_s: float) -> None:
    """Until ``/health`` answers 200: the bus linked and a TWC answering."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if requests.get(api + "/health", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        assert time.monotonic() < deadline, "no healthy daemon"
        time.sleep(0.2)
