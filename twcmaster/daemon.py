"""The daemon: one asyncio loop wiring the serial transport, the bus master, the controller
and the outputs together.

Data flows one way (design.md): serial bytes -> bus master -> controller -> offers -> bus
master -> serial bytes, and every output reads the same snapshot. The sans-I/O parts never see
asyncio; this module owns the clock and the waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from twcmaster.config import AppConfig
from twcmaster.control.allocation import AllocationSettings, Controller, Offer, SlaveReading
from twcmaster.control.policy import Budget, FixedBudget, fixed_budget_from_config
from twcmaster.logs import configure_logging, get_logger
from twcmaster.outputs.console import ConsoleStatus
from twcmaster.protocol import master as bm
from twcmaster.protocol.messages import SLAVE_STATE_NAMES
from twcmaster.transport import SerialTransport

ALARM_REPEAT_S = 60.0  # the same alarm is logged again at most this often
# The allocation re-runs when a slave's state or acknowledged limit changes, when a car's draw
# moved by this much, and otherwise at this cadence (for its hold timers).
ALLOCATE_EVERY_S = 2.0
REALLOCATE_ON_DRAW_CHANGE_A = 0.5


@dataclass(frozen=True)
class SlaveSnapshot:
    twcid: str  # 4 upper-case hex digits, as TWCManager shows it
    protocol: int
    state: int
    state_name: str
    allowed_amps: float
    actual_amps: float
    offer_amps: int
    offer_reason: str
    max_amps: float
    vin: str | None
    lifetime_kwh: int | None
    voltages: tuple[int, int, int] | None
    seconds_since_reply: float


@dataclass(frozen=True)
class Snapshot:
    """What every output shows for one moment, so they never disagree."""

    budget: Budget
    slaves: tuple[SlaveSnapshot, ...]
    link_up: bool
    alarms: tuple[str, ...]

    @property
    def total_actual_amps(self) -> float:
        return sum(s.actual_amps for s in self.slaves)

    @property
    def total_offer_amps(self) -> int:
        return sum(s.offer_amps for s in self.slaves)


def master_settings(config: AppConfig) -> bm.MasterSettings:
    rs485 = config.rs485
    return bm.MasterSettings(
        master_twcid=rs485.master_twcid,
        master_sign=rs485.master_sign,
        slave_timeout_s=rs485.slave_timeout_s,
        trailer_byte=rs485.trailer_byte,
        max_offer_amps=config.wiring.max_amps_per_twc,
    )


def allocation_settings(config: AppConfig) -> AllocationSettings:
    return AllocationSettings(
        wiring_max_amps_all_twcs=config.wiring.max_amps_all_twcs,
        wiring_max_amps_per_twc=config.wiring.max_amps_per_twc,
        min_amps_per_twc=config.min_amps_per_twc,
        spike_amps_proactively=config.spike_amps_proactively,
        spike_amps_reactively=config.spike_amps_reactively,
        spike_amps=config.spike_amps,
        stop_hold_s=config.start_stop_delay_s,
    )


class Daemon:
    def __init__(
        self,
        config: AppConfig,
        *,
        port: str | None = None,
        console: ConsoleStatus | None = None,
        policy: FixedBudget | None = None,
        clock: Callable[[], float] = time.monotonic,
        log=None,
    ) -> None:
        self.config = config
        self.log = log or get_logger("twcmaster")
        self.clock = clock
        self.master = bm.BusMaster(master_settings(config))
        self.controller = Controller(allocation_settings(config))
        self.policy = policy or fixed_budget_from_config(
            config.non_scheduled_amps_max, config.wiring.max_amps_all_twcs
        )
        self.console = console
        self.port = port or config.rs485.port
        self.transport = SerialTransport(
            self.port,
            baud=config.rs485.baud,
            on_bytes=self._on_bytes,
            on_link=self._on_link,
            clock=clock,
            log=self.log,
        )
        self.budget = self.policy.decide(clock())
        self.offers: dict[int, Offer] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._allocated_s = -math.inf
        self._last_seen: dict[int, tuple[int, float, float]] = {}
        self._alarms: dict[str, tuple[float, str]] = {}
        self._log_frames = config.log_level <= 10

    # -- running

    async def run(self, duration_s: float | None = None) -> None:
        """Run until cancelled, or for ``duration_s`` seconds."""
        self.log.info(
            "twcmaster starting",
            port=self.port,
            master_id=f"{self.master.settings.master_twcid:04X}",
            wiring_max_amps_all_twcs=self.config.wiring.max_amps_all_twcs,
            wiring_max_amps_per_twc=self.config.wiring.max_amps_per_twc,
            min_amps_per_twc=self.config.min_amps_per_twc,
            budget=self.budget.reason,
        )
        self._loop = asyncio.get_running_loop()
        # Everything imported and built so far lives as long as the process: keep it out of
        # the garbage collector's scans, which otherwise revisit it on every full collection.
        gc.freeze()
        self.master.start(self.clock())
        self._service()
        transport_task = asyncio.create_task(self.transport.run(), name="serial transport")
        try:
            await asyncio.wait_for(transport_task, duration_s)
        except TimeoutError:
            pass
        finally:
            if self._timer is not None:
                self._timer.cancel()
            transport_task.cancel()
            await asyncio.gather(transport_task, return_exceptions=True)
            self.log.info("twcmaster stopped")

    def _service(self) -> None:
        """Read what is waiting, send what the master has due, then sleep until it next needs
        us (a timer, not a polling loop: the bus costs CPU only when something happens).

        While a reply is due, reading is paused and the reply is read here when its window
        ends, in the same wake-up that sends the next heartbeat: one wake-up per exchange
        instead of two (the daemon's CPU time is mostly the cost of waking up)."""
        now = self.clock()
        data = self.transport.read_now(now)
        if data:
            self._feed(data, now)
        while True:
            wire, events = self.master.poll(now)
            self._handle(events, now)
            if wire is None:
                break
            self.transport.send(wire)
        if self.master.awaiting_reply and now < self.master.reply_window_end_s:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()
        wake_s = max(self.master.next_wakeup_s(now), now + 0.001)
        if self._timer is not None:
            if abs(self._timer.when() - wake_s) < 0.0005:
                return  # already set for then
            self._timer.cancel()
        self._timer = self._loop.call_at(wake_s, self._service)

    def _on_bytes(self, data: bytes, now: float) -> None:
        self._feed(data, now)
        self._service()

    def _feed(self, data: bytes, now: float) -> None:
        if self._log_frames:
            self.log.debug("rx", bytes=data.hex(" "))
        self._handle(self.master.receive(data, now), now)

    def _on_link(self, is_open: bool, reason: str | None) -> None:
        if is_open:
            # Slaves that lost us send link-ready again; a new burst announces us at once.
            self.master.start(self.clock())
            if self._loop is not None:
                self._service()

    # -- events

    def _handle(self, events: list[bm.Event], now: float) -> None:
        for event in events:
            handler = self._handlers.get(type(event))
            if handler is not None:
                handler(self, event, now)

    def _on_heartbeat(self, event: bm.HeartbeatExchanged, now: float) -> None:
        # Allocation needs fresh readings, not one run per reply (it is the costliest step of
        # an exchange): at once when something moved, else every ALLOCATE_EVERY_S.
        seen = self._last_seen.get(event.twcid)
        changed = (
            seen is None
            or seen[:2] != (event.state, event.allowed_amps)
            or abs(seen[2] - event.actual_amps) >= REALLOCATE_ON_DRAW_CHANGE_A
        )
        if changed or now - self._allocated_s >= ALLOCATE_EVERY_S:
            self._allocate(now)
        if changed:
            self._last_seen[event.twcid] = (event.state, event.allowed_amps, event.actual_amps)
        if self.console is not None:
            self.console.heartbeat(event.twcid, event.slave_data, event.master_data)

    def _on_linked(self, event: bm.SlaveLinked, now: float) -> None:
        self.log.info(
            "slave linked",
            twcid=f"{event.twcid:04X}",
            protocol=event.protocol,
            max_amps=event.max_amps,
        )
        if event.max_amps < self.config.wiring.max_amps_per_twc:
            self.log.warning(
                "slave's own maximum is below wiringMaxAmpsPerTWC: offers are capped at it",
                twcid=f"{event.twcid:04X}",
                slave_max_amps=event.max_amps,
                wiring_max_amps_per_twc=self.config.wiring.max_amps_per_twc,
            )
        self._allocate(now)

    def _on_lost(self, event: bm.SlaveLost, now: float) -> None:
        self.controller.forget(event.twcid)
        self._last_seen.pop(event.twcid, None)
        self.offers.pop(event.twcid, None)
        self.log.warning(
            "slave lost", twcid=f"{event.twcid:04X}", silent_s=round(event.silent_s, 1)
        )

    def _on_alarm(self, event: bm.Alarm, now: float) -> None:
        key = f"{event.kind}:{event.twcid}"
        last = self._alarms.get(key)
        self._alarms[key] = (now, event.message)
        if last is None or now - last[0] >= ALARM_REPEAT_S:
            self.log.error(event.message, alarm=event.kind)
            if self.console is not None:
                self.console.line(f"ALARM: {event.message}")

    def _on_energy(self, event: bm.EnergyReported, now: float) -> None:
        self.log.info(
            "energy report",
            twcid=f"{event.twcid:04X}",
            lifetime_kwh=event.lifetime_kwh,
            voltages=list(event.voltages),
        )

    def _on_vin(self, event: bm.VinReported, now: float) -> None:
        self.log.info("vehicle", twcid=f"{event.twcid:04X}", vin=event.vin or "none")

    def _on_sent(self, event: bm.Sent, now: float) -> None:
        if self._log_frames:
            self.log.debug("tx", frame=event.wire.hex(" "), message=event.message.name)

    def _on_rejected(self, event: bm.FrameRejected, now: float) -> None:
        if self._log_frames:
            self.log.debug("frame rejected", raw=event.raw.hex(" "), reason=event.reason)

    def _on_ignored(self, event: bm.Ignored, now: float) -> None:
        if self._log_frames:
            self.log.debug("ignored", message=event.message.name, reason=event.reason)

    _handlers = {
        bm.HeartbeatExchanged: _on_heartbeat,
        bm.SlaveLinked: _on_linked,
        bm.SlaveLost: _on_lost,
        bm.Alarm: _on_alarm,
        bm.EnergyReported: _on_energy,
        bm.VinReported: _on_vin,
        bm.Sent: _on_sent,
        bm.FrameRejected: _on_rejected,
        bm.Ignored: _on_ignored,
    }

    # -- allocation

    def _allocate(self, now: float) -> None:
        self._allocated_s = now
        self.budget = self.policy.decide(now)
        readings = [
            SlaveReading(
                twcid=s.twcid,
                protocol=s.protocol,
                link_max_amps=s.max_centiamps / 100,
                state=s.state,
                reported_allowed_amps=s.allowed_amps,
                actual_amps=s.actual_amps,
            )
            for s in self.master.slaves.values()
        ]
        self.offers = self.controller.allocate(self.budget.amps, readings, now)
        for twcid, offer in self.offers.items():
            self.master.set_offer(twcid, offer.offer_amps)

    # -- status

    def snapshot(self) -> Snapshot:
        now = self.clock()
        slaves = tuple(
            SlaveSnapshot(
                twcid=f"{s.twcid:04X}",
                protocol=s.protocol,
                state=s.state,
                state_name=SLAVE_STATE_NAMES.get(s.state, "unknown"),
                allowed_amps=s.allowed_amps,
                actual_amps=s.actual_amps,
                offer_amps=s.offer_amps,
                offer_reason=self.offers[s.twcid].reason if s.twcid in self.offers else "",
                max_amps=s.max_centiamps / 100,
                vin=s.vin,
                lifetime_kwh=s.lifetime_kwh,
                voltages=s.voltages,
                seconds_since_reply=round(now - s.last_rx_s, 3),
            )
            for s in self.master.slaves.values()
        )
        recent = tuple(text for at, text in self._alarms.values() if now - at < 2 * ALARM_REPEAT_S)
        return Snapshot(self.budget, slaves, self.transport.is_open, recent)


def start_outputs(config: AppConfig) -> ConsoleStatus:
    """Logging (stderr) and the status console (stdout) as the config asks."""
    configure_logging(
        config.log_level,
        config.log_format,
        stream=sys.stderr,
        display_milliseconds=config.display_milliseconds,
    )
    # Like TWCManager: a line that only differs by < 1 A of actual draw is not reprinted.
    return ConsoleStatus(sys.stdout, milliseconds=config.display_milliseconds, amps_jitter_a=1.0)


def run_until_signalled(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main``; SIGINT (Ctrl+C) and SIGTERM (``docker stop``) cancel it cleanly."""

    async def guarded() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(main)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(guarded())
