"""The HTTP API on the real daemon: simulated TWCs on a pty (pyserial on the daemon's side),
the policy over a real settings store, RemoteControl deciding again at once. A POST
/api/chargeNow changes the limit the simulated TWC accepts within a heartbeat or two; the
answers show the linked TWC; /health follows the serial port."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.integration.rig import _Lines, slave
from twcmaster.config import config_from_dict
from twcmaster.config.interfaces import HttpConfig
from twcmaster.control.policy import build_policy
from twcmaster.daemon import Daemon
from twcmaster.outputs.console import ConsoleStatus
from twcmaster.outputs.http import HttpApi
from twcmaster.remote.commands import RemoteControl
from twcmaster.settings import SettingsStore
from twcmaster.sim.bus import SimulatedBus
from twcmaster.sim.runner import PtyBus

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

WIRING = {"wiringMaxAmpsAllTWCs": 40, "wiringMaxAmpsPerTWC": 32, "minAmpsPerTWC": 6}
BASE_AMPS = 8  # nonScheduledAmpsMax in settings.json: what the TWC is offered at first
CHARGE_NOW_AMPS = 20
TWCID = 0x1234
# A change is decided at once and goes out with the TWC's next heartbeat (about 1 s apart).
TAKES_EFFECT_S = 2.5
# A lower offer waits this long after a raise (allocation.py's lower hold damps flapping).
LOWER_HOLD_S = 5.0


async def until(condition, timeout_s: float, what: str) -> float:
    """Wait for ``condition()``; returns how long it took."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not condition():
        if loop.time() - start > timeout_s:
            raise AssertionError(f"{what}: not within {timeout_s}s")
        await asyncio.sleep(0.05)
    return loop.time() - start


class LiveDaemon:
    """The daemon with the HTTP API as the lead wires it, against one simulated TWC."""

    def __init__(self, tmp_path) -> None:
        self.tmp_path = tmp_path
        self.lines: list[str] = []

    async def __aenter__(self) -> LiveDaemon:
        loop = asyncio.get_running_loop()
        self.twc = slave(TWCID)
        self.sim = PtyBus(SimulatedBus([self.twc]))
        self.sim.start()
        config = config_from_dict(
            {"config": WIRING, "interface": {"RS485": {"port": self.sim.path}}}, "/tmp"
        ).settings
        self.store = SettingsStore(self.tmp_path, wiring_max_amps_all_twcs=40)
        self.store.set_non_scheduled_amps(BASE_AMPS)
        policy = build_policy(config, self.store, green_sources_configured=False)
        console = ConsoleStatus(_Lines(self.lines), clock=loop.time)
        self.daemon = Daemon(config, console=console, policy=policy, clock=loop.time)
        remote = RemoteControl(self.store, config, on_change=self.daemon.reconsider)
        self.api = HttpApi(
            HttpConfig(listen_port=0), config, snapshot=self.daemon.snapshot, remote=remote
        )
        self.daemon.add_service(self.api)
        self.task = asyncio.create_task(self.daemon.run())
        await until(lambda: self.api.bound_port is not None, 5, "the API listening")
        self.url = f"http://127.0.0.1:{self.api.bound_port}"
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.close()
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.sim.close()

    async def get(self, path: str) -> tuple[int, object]:
        async with self.http.get(self.url + path) as answer:
            return answer.status, await answer.json()

    async def post(self, path: str, body: dict | None = None) -> tuple[int, object]:
        async with self.http.post(self.url + path, json=body) as answer:
            return answer.status, await answer.json()

    def accepted_amps(self) -> float:
        return self.twc.limit_amps


def test_charge_now_over_http_changes_the_amps_the_twc_is_offered(tmp_path):
    async def scenario() -> None:
        async with LiveDaemon(tmp_path) as live:
            await until(lambda: live.accepted_amps() == BASE_AMPS, 15, f"{BASE_AMPS}A accepted")
            status, twcs = await live.get("/api/getSlaveTWCs")
            assert status == 200 and twcs["1234"]["lastAmpsOffered"] == BASE_AMPS
            assert (await live.get("/health"))[0] == 200

            body = {"chargeNowRate": CHARGE_NOW_AMPS, "chargeNowDuration": 600}
            assert await live.post("/api/chargeNow", body) == (
                200,
                {"status": "success", "rate": CHARGE_NOW_AMPS, "duration": 600},
            )
            took_s = await until(
                lambda: live.accepted_amps() == CHARGE_NOW_AMPS, TAKES_EFFECT_S, "Charge Now"
            )
            status, answer = await live.get("/api/getStatus")
            assert answer["currentPolicy"] == "Charge Now"
            assert answer["maxAmpsToDivideAmongSlaves"] == CHARGE_NOW_AMPS
            assert answer["chargeNowAmps"] == CHARGE_NOW_AMPS
            assert any(line.endswith("Policy: Charge Now: " + live.daemon.snapshot().budget.reason)
                       for line in live.lines)  # fmt: skip
            _, twcs = await live.get("/api/getSlaveTWCs")
            assert twcs["1234"]["lastAmpsOffered"] == CHARGE_NOW_AMPS

            # A bad request changes nothing, on the wire either.
            refused = await live.post("/api/chargeNow", {"chargeNowRate": 99})
            assert refused[0] == 400
            assert await live.post("/api/cancelChargeNow") == (200, {"status": "success"})
            await until(
                lambda: live.accepted_amps() == BASE_AMPS,
                LOWER_HOLD_S + TAKES_EFFECT_S,
                "cancelled",
            )
            assert took_s < TAKES_EFFECT_S

            heartbeats = len(live.twc.stats.heartbeat_times_s)
            await live.sim.close()  # the USB adapter unplugged
            await until(lambda: not live.daemon.snapshot().link_up, 5, "link lost")
            status, health = await live.get("/health")
            assert status == 503 and health["reason"] == "the serial port is not open"
            assert heartbeats > 3

    asyncio.run(scenario())
