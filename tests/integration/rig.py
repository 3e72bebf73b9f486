"""A real-parts rig: the daemon opens a pty through pyserial; simulated slaves answer on the
pty's master side. Nothing is mocked: bytes cross the kernel's pty like a USB adapter's."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from itertools import pairwise

from twcmaster.config import config_from_dict
from twcmaster.daemon import Daemon
from twcmaster.demo import RealTimeCarApi
from twcmaster.outputs.console import ConsoleStatus
from twcmaster.sim.bus import SimulatedBus
from twcmaster.sim.car import SimulatedCar
from twcmaster.sim.carapi import CarApiSettings, SimulatedCarApi
from twcmaster.sim.runner import PtyBus
from twcmaster.sim.slave import SimulatedSlave

WIRING = {"wiringMaxAmpsAllTWCs": 40, "wiringMaxAmpsPerTWC": 32, "minAmpsPerTWC": 6}


def slave(
    twcid: int, protocol: int = 2, *, plugged: bool = True, max_amps: float = 32.0, seed: int = 1
) -> SimulatedSlave:
    car = SimulatedCar(seed=seed) if plugged else None
    return SimulatedSlave(
        twcid,
        0x20 + protocol,
        protocol,
        max_amps=max_amps,
        car=car,
        seed=seed,
        powered_on_s=asyncio.get_running_loop().time(),
    )


class Rig:
    def __init__(
        self,
        config: dict | None = None,
        rs485: dict | None = None,
        link_path: str | None = None,
        car_api: CarApiSettings | None = None,
        policy: object | None = None,
    ) -> None:
        self.config = {**WIRING, **(config or {})}
        self.policy = policy  # None: the fixed budget from the config
        self.car_api_settings = car_api  # None: no car API
        self.rs485 = rs485 or {}
        self.link_path = link_path
        self.lines: list[str] = []

    async def run(
        self,
        slaves: list[SimulatedSlave],
        seconds: float,
        during: Callable[[Rig], Awaitable[None]] | None = None,
    ) -> Daemon:
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.bus = SimulatedBus(slaves)
        self.sim = PtyBus(self.bus, link_path=self.link_path)
        self.sim.start()
        self.path = self.link_path or self.sim.path
        loaded = config_from_dict(
            {"config": self.config, "interface": {"RS485": {"port": self.path, **self.rs485}}},
            "/tmp",
        )
        console = ConsoleStatus(_Lines(self.lines), clock=loop.time)
        self.car_api = None
        if self.car_api_settings is not None:
            self.car_api = SimulatedCarApi(self.bus.slaves, self.car_api_settings)
        cars = RealTimeCarApi(self.car_api, loop) if self.car_api is not None else None
        self.daemon = Daemon(
            loaded.settings, console=console, cars=cars, clock=loop.time, policy=self.policy
        )
        daemon_task = asyncio.create_task(self.daemon.run())
        try:
            if during is not None:
                await asyncio.wait_for(during(self), seconds + 30)
            else:
                await asyncio.sleep(seconds)
        finally:
            daemon_task.cancel()
            await asyncio.gather(daemon_task, return_exceptions=True)
            await self.sim.close()
            self.bus.advance(loop.time())
        return self.daemon

    async def unplug_adapter(self) -> None:
        """The USB adapter goes away: its pty (and the link to it) disappears."""
        await self.sim.close()

    def replug_adapter(self) -> None:
        """A new pty appears at the same path, the simulated slaves still on it."""
        self.sim.start()

    def write_raw(self, data: bytes) -> None:
        """Bytes onto the bus as if another unit sent them."""
        self.sim.write_raw(data)


class _Lines:
    def __init__(self, sink: list[str]) -> None:
        self.sink = sink

    def write(self, text: str) -> None:
        self.sink.extend(line for line in text.splitlines() if line)

    def flush(self) -> None:
        pass


def heartbeat_gaps(s: SimulatedSlave, after_s: float = 0.0) -> list[float]:
    times = [t for t in s.stats.heartbeat_times_s if t >= after_s]
    return [b - a for a, b in pairwise(times)]
