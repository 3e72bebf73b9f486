"""The daemon: one asyncio loop around the sans-I/O core (``core.py``), a serial transport
and timers. This module owns the clock and the waiting; ``Core`` owns the logic.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime
from typing import Any, TextIO

from twcmaster.assembly import attach_car_module, attach_interfaces, core_outputs, tesla_cars
from twcmaster.config import AppConfig
from twcmaster.core import SERVICE_RETRY_S, Core, Snapshot
from twcmaster.logs import LogFile, TeeToLogFile, configure_logging, get_logger
from twcmaster.outputs.base import Output, Outputs, Service
from twcmaster.outputs.console import CONSOLE_AMPS_JITTER_A, ConsoleStatus
from twcmaster.settings import SETTINGS_FILE_NAME, SettingsStore
from twcmaster.transport import SerialTransport

STOP_TIMEOUT_S = 2.0  # at exit, the 0 A heartbeats to every slave must go out within this
SERVICE_START_TIMEOUT_S = 5.0  # a service (MQTT, HTTP) that takes longer is given up
SERVICE_STOP_TIMEOUT_S = 3.0


class Daemon:
    """``console``: the status console (None: none); ``cars``: a car API (anything with
    ``request(CarCommand)``), or None; ``outputs``: further outputs of the core."""

    def __init__(
        self,
        config: AppConfig,
        *,
        port: str | None = None,
        console: ConsoleStatus | None = None,
        policy: Any = None,
        sources: Any = None,
        site: Callable[[float], Any] | None = None,
        cars: Any = None,
        outputs: Sequence[Output] = (),
        services: Sequence[Service] = (),
        clock: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], datetime] = datetime.now,
        log: Any = None,
    ) -> None:
        self.config = config
        self.log = log or get_logger("twcmaster")
        self.clock = clock
        self.wallclock = wallclock
        self.sources = sources  # a SourceRunner, or None (fixed budget / no green sources)
        if site is None and sources is not None:
            site = sources.combined  # else: the demo's sky, or no green input at all
        self.site = site  # now_s -> the energy reading the policy gets (None: no sources)
        self.core = Core(config, policy=policy, car_api=cars is not None)
        # A car module with a view (the Tesla module) tells the core, with each step, which
        # cars its API can reach; one without (the demo's simulated API) always can.
        self._cars_view: Callable[[], Any] | None = getattr(cars, "view", None)
        self.outputs = Outputs(
            core_outputs(config, self.log, console=console, cars=cars, more=outputs),
            on_error=self.core.record_error,
        )
        self.services: list[Service] = list(services)
        self.port = port or config.rs485.port
        self.transport = SerialTransport(
            self.port,
            baud=config.rs485.baud,
            on_bytes=self._on_bytes,
            on_link=self._on_link,
            clock=clock,
            log=self.log,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._arrived = bytearray()  # handed over by the transport, for the next step

    def snapshot(self) -> Snapshot:
        return self.core.snapshot(self.clock())

    def add_output(self, output: Output) -> None:
        self.outputs.add(output)

    def add_service(self, service: Service) -> None:
        self.services.append(service)

    def reconsider(self) -> None:
        """The settings changed (remote control): decide again now and send the new offers
        with the next heartbeats. Event loop only."""
        self.core.request_decision()
        if self._loop is not None:
            self._service()

    async def run(self, duration_s: float | None = None) -> None:
        """Run until cancelled, or for ``duration_s`` seconds."""
        self.log.info(
            "twcmaster starting",
            port=self.port,
            master_id=f"{self.config.rs485.master_twcid:04X}",
            wiring_max_amps_all_twcs=self.config.wiring.max_amps_all_twcs,
            wiring_max_amps_per_twc=self.config.wiring.max_amps_per_twc,
            min_amps_per_twc=self.config.min_amps_per_twc,
        )
        self._loop = asyncio.get_running_loop()
        # Everything imported and built so far lives as long as the process: keep it out of
        # the garbage collector's scans, which otherwise revisit it on every full collection.
        gc.freeze()
        self.core.start(self.clock())
        self._service()
        if self.sources is not None:
            self.sources.start()  # polls in its own tasks and threads; never blocks the bus
        await self._start_services()
        transport_task = asyncio.create_task(self.transport.run(), name="serial transport")
        try:
            # Shielded: cancelling the daemon must leave the port open for the 0 A goodbye.
            await asyncio.wait_for(asyncio.shield(transport_task), duration_s)
        except TimeoutError:
            pass
        finally:
            try:
                await self._stop_slaves()
            except asyncio.CancelledError:  # a second signal: exit without waiting
                self.log.warning("stopped again: not every slave was sent 0 A")
            if self._timer is not None:
                self._timer.cancel()
            transport_task.cancel()
            await asyncio.gather(transport_task, return_exceptions=True)
            if self.sources is not None:
                await self.sources.stop()
            await self._stop_services()
            self.log.info("twcmaster stopped")

    async def _start_services(self) -> None:
        """MQTT, HTTP ...: one that fails to start is logged; the bus goes on without it."""
        for service in self.services:
            try:
                await asyncio.wait_for(service.start(), SERVICE_START_TIMEOUT_S)
            except Exception as error:  # includes TimeoutError
                self.log.error("could not start " + type(service).__name__, error=repr(error)[:300])

    async def _stop_services(self) -> None:
        for service in reversed(self.services):
            try:
                await asyncio.wait_for(service.stop(), SERVICE_STOP_TIMEOUT_S)
            except Exception as error:
                self.log.warning(
                    "could not stop " + type(service).__name__ + " cleanly",
                    error=repr(error)[:300],
                )

    async def _stop_slaves(self) -> None:
        """A 0 A heartbeat to every slave before the port closes, so the cars stop at once
        rather than when the TWCs give up on their master (about 10 s, with a fault on the
        car after 20-30 s). Bounded: a dead port or a stuck slave cannot hold up the exit."""
        now = self.clock()
        if not self.transport.is_open or not self.core.snapshot(now).slaves:
            return
        self.core.stop(now)
        self._service()
        deadline_s = now + STOP_TIMEOUT_S
        while not self.core.stopped and self.clock() < deadline_s:
            await asyncio.sleep(0.02)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.transport.drain(), max(0.1, deadline_s - self.clock()))
        # The UART still has to shift the last frame out after the OS took it.
        await asyncio.sleep(min(self.transport.wire_busy_s, 0.2))
        self.log.info("slaves sent 0 A before exit", twcids=self._twcids(), done=self.core.stopped)

    def _twcids(self) -> list[str]:
        return [slave.twcid for slave in self.snapshot().slaves]

    def _service(self) -> None:
        """Read what is waiting, send what is due, then sleep until the core next needs us (a
        timer, not a polling loop: the bus costs CPU only when something happens).

        Whatever the core raises, the timer is armed again: an exception is counted and
        logged, never the end of the heartbeats."""
        now = self.clock()
        wake_s = now + SERVICE_RETRY_S
        try:
            wake_s = self._step(now)
        except Exception as error:
            self._resume_reading_quietly()
            self.core.record_error("service step", error, now)
        finally:
            self._arm(wake_s)

    def _step(self, now: float) -> float:
        """One ``Core.service`` step; returns when the core next needs us.

        While a reply is due, reading is paused and the reply is read here when its window
        ends, in the same wake-up that sends the next heartbeat: one wake-up per exchange
        instead of two (the daemon's CPU time is mostly the cost of waking up)."""
        data = self.transport.read_now(now)
        if self._arrived:
            data = bytes(self._arrived) + data
            self._arrived.clear()
        site = self.site(now) if self.site is not None else None
        cars = self._cars_view() if self._cars_view is not None else None
        step = self.core.service(now, data, site=site, local_time=self.wallclock(), cars=cars)
        for wire in step.frames:
            self.transport.send(wire)
        if step.read_after_s is not None:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()
        self.outputs.publish(now, step.events, lambda: self.core.snapshot(now))
        return step.wake_s

    def _resume_reading_quietly(self) -> None:
        """After a failed step: bytes must wake us again, whatever state reading was left in."""
        with contextlib.suppress(Exception):
            self.transport.resume_reading()

    def _arm(self, wake_s: float) -> None:
        if self._loop is None:
            return
        if self._timer is not None:
            if abs(self._timer.when() - wake_s) < 0.0005:
                return  # already set for then
            self._timer.cancel()
        self._timer = self._loop.call_at(wake_s, self._service)

    def _on_bytes(self, data: bytes, now: float) -> None:
        self._arrived += data
        self._service()

    def _on_link(self, is_open: bool, reason: str | None) -> None:
        self.core.set_link(is_open)
        if is_open:
            # Slaves that lost us send link-ready again; a new burst announces us at once.
            self.core.start(self.clock())
            if self._loop is not None:
                self._service()


def start_outputs(config: AppConfig) -> ConsoleStatus:
    """Logging (stderr) and the status console (stdout) as the config asks; both copied to
    ``logging.FileLogger``'s rotated file when it is enabled."""
    err: TextIO = sys.stderr
    out: TextIO = sys.stdout
    log_file = _open_log_file(config.log_file_dir)
    if log_file is not None:
        err, out = TeeToLogFile(err, log_file), TeeToLogFile(out, log_file)
    configure_logging(
        config.log_level,
        config.log_format,
        stream=err,
        display_milliseconds=config.display_milliseconds,
    )
    return ConsoleStatus(
        out,
        milliseconds=config.display_milliseconds,
        amps_jitter_a=CONSOLE_AMPS_JITTER_A,
    )


def _open_log_file(folder: str | None) -> LogFile | None:
    """The log file, or None (not configured, or it cannot be opened: said on stderr, and
    the daemon runs on without it)."""
    if folder is None:
        return None
    try:
        return LogFile(folder)
    except OSError as error:
        print(
            f"twcmaster: warning: logging.FileLogger: cannot write {folder}/logfile ({error}); "
            "logging to stderr only",
            file=sys.stderr,
        )
        return None


def run_until_signalled(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main``; SIGINT (Ctrl+C), SIGTERM (``docker stop``) and SIGHUP (the terminal
    closed) cancel it cleanly: 0 A to the slaves, sources stopped, exit 0. To apply a changed
    config, restart (the container's restart policy or systemd does it after a stop)."""

    async def guarded() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(main)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(guarded())


def build_daemon(
    config: AppConfig, console: ConsoleStatus, *, port: str | None = None, cars: Any = None
) -> Daemon:
    """The daemon as ``twcmaster run`` starts it: energy sources, the policy engine with the
    runtime settings in ``<settingsPath>/settings.json``, the bus, the Tesla module (unless
    ``cars`` is given) and what the config enables of MQTT and HTTP. Call it on the running
    event loop."""
    from twcmaster.control.policy import build_policy
    from twcmaster.sources.modulevalues import module_values
    from twcmaster.sources.registry import build_sources
    from twcmaster.sources.runner import SourceRunner

    sources = build_sources(config.sources)
    wanted = config.policy_rules.module_values_read()
    for source in sources:  # what the user's policy rules read of it besides watts
        source.read_also(wanted.get(source.name, frozenset()))
    runner = SourceRunner(sources) if sources else None
    store = open_settings(config, config.settings_path)
    log = get_logger("twcmaster")
    config = charge_stop_mode_from_settings(config, store, log)
    module_value = module_values(runner) if runner is not None else None
    policy = build_policy(
        config, store, green_sources_configured=bool(sources), module_value=module_value
    )
    warn_settings_shadowing(config, store, log)
    if cars is None:
        cars = tesla_cars(config, clock=time.monotonic, wallclock=datetime.now, log=log)
    daemon = Daemon(
        config, port=port, console=console, policy=policy, sources=runner, cars=cars, log=log
    )
    attach_car_module(daemon, cars)
    attach_interfaces(daemon, config, store)
    if config.policy_rules.has_webhooks:
        from twcmaster.outputs.webhooks import PolicyWebhooks

        webhooks = PolicyWebhooks(config.policy_rules, config, log=log)
        daemon.add_output(webhooks)
        daemon.add_service(webhooks)
    return daemon


def charge_stop_mode_from_settings(config: AppConfig, store: SettingsStore, log: Any) -> AppConfig:
    """TWCManager keeps ``chargeStopMode`` in settings.json (its web page sets it): used when
    config.json sets it nowhere (config.json's wins: it is the file the user writes)."""
    raw = config.raw
    in_config = "chargeStopMode" in (raw.get("config") or {}) or "chargeStopMode" in (
        (raw.get("vehicle") or {}).get("teslaAPI") or {}
    )
    value = store.raw().get("chargeStopMode")
    if in_config or value is None:
        return config
    try:
        mode = int(str(value))
    except ValueError:
        mode = 0
    if mode not in (1, 2, 3):
        log.warning(f"settings.json: chargeStopMode {value!r} is not 1, 2 or 3: ignored")
        return config
    log.info(f"chargeStopMode {mode} from settings.json (TWCManager's web page sets it there)")
    tesla = config.tesla_api
    if tesla is not None:
        tesla = dataclasses.replace(tesla, charge_stop_mode=mode)
    return dataclasses.replace(config, charge_stop_mode=mode, tesla_api=tesla)


def warn_settings_shadowing(config: AppConfig, store: SettingsStore, log: Any) -> None:
    """settings.json wins over config.json where both set a value (it is what MQTT, HTTP or
    TWCManager set last): said at start-up, never silently."""
    in_settings = store.settings.non_scheduled_amps_max
    in_config = config.non_scheduled_amps_max
    if in_settings is not None and in_config is not None and in_settings != in_config:
        log.warning(
            f"settings.json's nonScheduledAmpsMax {in_settings:g}A wins over "
            f"config.nonScheduledAmpsMax {in_config:g}A (set it over MQTT or the HTTP API, or "
            f"remove it from {store.path})",
        )


def open_settings(config: AppConfig, folder: str) -> SettingsStore:
    """``<folder>/settings.json``, amps in it checked against the wiring limit."""
    return SettingsStore(
        os.path.join(folder, SETTINGS_FILE_NAME),
        wiring_max_amps_all_twcs=config.wiring.max_amps_all_twcs,
    )
