"""``twcmaster demo``: the real daemon against simulated TWCs with cars, no hardware.

The simulated bus is served on the master side of a pty pair and the daemon opens the pty's
slave path through its ordinary serial transport, so the demo runs the very code path of
``twcmaster run`` with a USB adapter: pyserial, framing, timing and all. The simulated cars
are Teslas the daemon starts and stops through a simulated car API (§6.7, protocol 2).
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from datetime import datetime, timedelta

from twcmaster.assembly import attach_car_module, attach_interfaces, tesla_cars
from twcmaster.config import LoadedConfig, config_from_dict
from twcmaster.control.carcommands import CarCommand
from twcmaster.daemon import (
    Daemon,
    build_daemon,
    open_settings,
    run_until_signalled,
    start_outputs,
)
from twcmaster.logs import get_logger
from twcmaster.outputs.console import ConsoleStatus
from twcmaster.sim.bus import DemoScenario, SimulatedBus
from twcmaster.sim.carapi import SimulatedCarApi
from twcmaster.sim.runner import serve_simulated_twcs

#: The built-in demo circuit: a 40 A breaker (32 A continuous) shared by every TWC, each TWC
#: on its own 13 A breaker (10 A continuous), 230 V single phase; cars may start as soon as the
#: sun allows (no start delay) so the demo shows charging within seconds. As the sun rises the
#: surplus goes to one car up to its 10 A, then to a second, then to a third.
DEMO_CONFIG = {
    "config": {
        "wiringMaxAmpsAllTWCs": 32,
        "wiringMaxAmpsPerTWC": 10,
        "minAmpsPerTWC": 6,
        "defaultVoltage": 230,
        "greenEnergyStartDelay": 0,
    },
    # The HTTP API on loopback, so `twcmaster status` and curl can watch and steer the demo.
    "control": {"HTTP": {"enabled": True, "listenPort": 8080}},
}
DEMO_SKY_START_S = 6 * 3600 + 45 * 60  # the sky starts at 06:45, before the cars can charge
DEMO_SKY_SPEED = 20.0  # the sky runs this many times faster than the bus: a morning in minutes


def demo_config() -> LoadedConfig:
    return config_from_dict(DEMO_CONFIG, tempfile.gettempdir())


def run_demo(
    loaded: LoadedConfig,
    *,
    slaves: int = 2,
    protocol: int = 2,
    seconds: float | None = None,
    seed: int | None = None,
) -> None:
    console = start_outputs(loaded.settings)
    run_until_signalled(_demo(loaded, console, slaves, protocol, seconds, seed))


async def _demo(
    loaded: LoadedConfig,
    console: ConsoleStatus,
    count: int,
    protocol: int,
    seconds: float | None,
    seed: int | None,
) -> None:
    loop = asyncio.get_running_loop()
    sim = serve_simulated_twcs(count, protocol=protocol, seed=seed, now_s=loop.time())
    bus, tty_path = sim.bus, sim.path
    ids = ", ".join(f"{s.twcid:04X}" for s in bus.slaves)
    console.line(f"Demo: {count} simulated TWC(s) {ids} (protocol {protocol}) on {tty_path}")
    daemon = _demo_daemon(loaded, tty_path, console, loop, bus)
    comings = asyncio.create_task(_scenario(bus, console, seed, loop), name="demo cars")
    try:
        await daemon.run(seconds)
    finally:
        comings.cancel()
        await asyncio.gather(comings, return_exceptions=True)
        await sim.close()
        _summary(daemon, bus, console, loop.time())


class RealTimeCarApi:
    """The simulated car API in real time: each request takes effect on the event loop after
    its delay (the simulated slaves run on the loop's clock)."""

    def __init__(self, api: SimulatedCarApi, loop: asyncio.AbstractEventLoop) -> None:
        self.api = api
        self.loop = loop

    def request(self, command: CarCommand) -> None:
        self.api.request(command)
        due_s = self.api.next_due_s()
        if due_s is not None:
            self.loop.call_at(due_s, lambda: self.api.apply_due(self.loop.time()))


def _demo_daemon(
    loaded: LoadedConfig,
    tty_path: str,
    console: ConsoleStatus,
    loop: asyncio.AbstractEventLoop,
    bus: SimulatedBus,
) -> Daemon:
    """With an energy source enabled in the config, the daemon exactly as ``twcmaster run``
    builds it; otherwise the built-in sky (a fair-weather day from 06:45 on, 20x faster)
    feeds the policy, so the demo shows charging from the sun without any hardware. Its
    clock for the schedule is the sky's (06:45 at start: inside the green hours whatever the
    real time), and MQTT / HTTP start as the config enables them, steering the demo. The
    simulated cars answer a simulated car API, unless the config enables the Tesla module:
    then the real one runs (and lists the account's cars at start, as ``run`` does)."""
    config = loaded.settings
    wallclock = sky_wallclock(loop)
    cars = tesla_cars(config, clock=loop.time, wallclock=wallclock, log=get_logger("twcmaster"))
    if cars is None:
        cars = RealTimeCarApi(SimulatedCarApi(bus.slaves), loop)
    if config.sources:
        return build_daemon(config, console, port=tty_path, cars=cars)
    from twcmaster.control.policy import build_policy
    from twcmaster.sim.sky import Sky, demo_profile

    sky = Sky(demo_profile(), wrap=True)
    site = sky.clocked(loop.time(), start_s=DEMO_SKY_START_S, speed=DEMO_SKY_SPEED)
    # The demo's own settings unless the user gave a config (then its settingsPath).
    folder = config.settings_path if loaded.path else tempfile.mkdtemp(prefix="twcmaster-demo-")
    store = open_settings(config, folder)
    policy = build_policy(config, store)
    console.line(
        f"Demo sky: {sky_description()} from 06:45, {DEMO_SKY_SPEED:g}x faster than real time"
    )
    daemon = Daemon(
        config,
        port=tty_path,
        console=console,
        policy=policy,
        site=site,
        cars=cars,
        clock=loop.time,
        wallclock=wallclock,
    )
    attach_car_module(daemon, cars)
    attach_interfaces(daemon, config, store)
    return daemon


def sky_wallclock(loop: asyncio.AbstractEventLoop) -> Callable[[], datetime]:
    """Today at 06:45 (the sky's start) plus the sky's time since the demo started."""
    started_s = loop.time()
    today = datetime.now().replace(hour=0, minute=0, second=0, microsecond=0)
    start = today + timedelta(seconds=DEMO_SKY_START_S)
    return lambda: start + timedelta(seconds=(loop.time() - started_s) * DEMO_SKY_SPEED)


def sky_description() -> str:
    return "built-in fair-weather cumulus day (10 kWp PV, a household)"


async def _scenario(
    bus: SimulatedBus, console: ConsoleStatus, seed: int | None, loop: asyncio.AbstractEventLoop
) -> None:
    """Cars come and go now and then, as in a real driveway."""
    scenario = DemoScenario(bus, seed=seed or 0, start_s=loop.time())
    while True:
        await asyncio.sleep(max(0.0, scenario.next_event_s() - loop.time()))
        for change in scenario.step(loop.time()):
            console.line(change)


def _summary(daemon: Daemon, bus: SimulatedBus, console: ConsoleStatus, now_s: float) -> None:
    bus.advance(now_s)
    snapshot = daemon.snapshot()
    console.line(
        f"Demo stopped: budget {snapshot.budget.amps:g}A ({snapshot.budget.reason}), "
        f"{len(snapshot.slaves)} slave(s) linked"
    )
    for slave in bus.slaves:
        car = slave.car
        energy = f"{car.energy_kwh:.3f} kWh" if car is not None else "no car"
        stats = slave.stats
        intervals = stats.heartbeat_intervals_s()
        worst = f", longest heartbeat gap {max(intervals):.2f}s" if intervals else ""
        console.line(
            f"  TWC {slave.twcid:04X}: {len(stats.heartbeat_times_s)} heartbeats{worst}, "
            f"highest limit accepted {stats.max_limit_centiamps / 100:.2f}A, charged {energy}"
        )
