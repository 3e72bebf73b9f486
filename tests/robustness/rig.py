"""A bus in virtual time around the real ``Core``, with observers that check the safety rules.

``Rig`` drives ``twcmaster.core.Core`` the way ``daemon.Daemon._service`` does (and as
``simulate.DaySimulation`` does in virtual time): it hands the core the bytes that arrived,
puts what ``poll`` returns on the wire, leaves the reply unread until the reply window ends,
and sleeps until ``next_wakeup_s``. On the other end of the pair are the real simulated TWCs
(``twcmaster.sim``: slave + car) and ``ScriptedSlave`` units that answer with whatever state,
limit and draw a test sets, plus raw bytes injected by the test (garbage, foreign frames).

Observers, checked at every event of the loop (not only between rules):

* **offers on the wire**: every frame the core returns is a well-formed frame of an allowed
  code; every set-limit heartbeat offers whole amps, 0 or at least the floor (minAmpsPerTWC,
  and 5 A on protocol 1 / 6 A on protocol 2, §6.1), at most wiringMaxAmpsPerTWC and the slave's
  own maximum (its link-ready), with the command of its protocol (05 on P1, 09 on P2).
* **the gate** (``allocation.py`` step 3, and the README's "lower before raise"): a slave's
  *committed* amps is max(the last limit sent to it, the limit it last acknowledged in S1-S2);
  a set-limit that raises a slave's committed amps is sent only if it plus every other slave's
  committed amps fits in wiringMaxAmpsAllTWCs. A slave the master no longer heartbeats keeps
  counting until it would stop on its own (``CHARGE_FAULT_S`` after its last heartbeat, §5.1).
* **the wiring, physically**: the limits the simulated units actually apply (what they may let
  their cars draw) never add up to more than wiringMaxAmpsAllTWCs.
* **heartbeats**: every slave the master has linked (one that answered within its timeout)
  and that answered its last heartbeat gets the next at most ``MAX_HEARTBEAT_GAP_S`` (1.5 s)
  after it (or after it linked), measured on the frames ``poll`` returns; one that did not
  answer, at most ``MAX_SILENT_HEARTBEAT_GAP_S``. Not across a clock jump or a stalled
  process, and a round (``CATCH_UP_S``) more up to the second heartbeat after one; the
  time injected noise kept the line busy does not count.
* **no exception escapes the core** (counted in the tally, then re-raised).
"""

from __future__ import annotations

import math
import os
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tests.robustness.profiles import TALLY
from twcmaster.assembly import core_outputs
from twcmaster.config import config_from_dict
from twcmaster.control.carcommands import CarAction, CarCommand
from twcmaster.control.green import reading_problem
from twcmaster.control.policy import POLICY_GREEN, PolicyConfig, PolicyEngine
from twcmaster.core import Core
from twcmaster.outputs.base import Outputs
from twcmaster.protocol import codec, messages
from twcmaster.settings import SettingsStore
from twcmaster.sim.bus import SimulatedBus
from twcmaster.sim.slave import CHARGE_FAULT_S, SimulatedSlave

MASTER_ID = 0x7777
MAX_HEARTBEAT_GAP_S = 1.5  # for a linked slave that answered its last heartbeat
#: A linked slave that did not answer its last heartbeat still gets heartbeats until its
#: timeout, but each costs the bus a full reply timeout, so the master serves it after the
#: ones that answer (TWCManager: "it may still try now and then", §5.1).
MAX_SILENT_HEARTBEAT_GAP_S = 5.0
#: After injected bytes, the master waits for 50 ms of silence before it talks (a frame may
#: be arriving, ``codec.FRAME_IN_FLIGHT_SILENCE_S``), plus one such wait more when its
#: wake-up lands exactly on the boundary (float rounding: still "arriving").
NOISE_SILENCE_S = 0.11
#: After the master did not run (a stall, a frozen machine), its first round is late and
#: may spill into the next: the gaps up to each slave's second heartbeat after it may be a
#: round longer.
CATCH_UP_S = 1.0
SET_LIMIT = {1: 0x05, 2: 0x09}  # the set-limit command of each protocol (§4.1, §8 Q9)
LINKREADY_PERIOD_S = 10.0  # a unit without a master announces itself this often (§3.2)
_EPS = 1e-6
_TX_CACHE: dict[bytes, messages.Message] = {}  # the master's frames, decoded and checked


class InvariantViolation(AssertionError):
    """A safety rule broken: the message says which, when and with what numbers."""


class QuietLog:
    """Core's logger: counts warnings and errors, drops the rest (a run logs a lot)."""

    def __init__(self) -> None:
        self.problems: dict[str, int] = {}

    def debug(self, event: str, **fields: Any) -> None:
        pass

    info = debug

    def warning(self, event: str, **fields: Any) -> None:
        self.problems[event] = self.problems.get(event, 0) + 1

    error = exception = critical = warning


def settings_dir() -> str:
    """Where the settings stores live: tmpfs when there is one (each change is fsynced)."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    return tempfile.mkdtemp(prefix="twcmaster-robustness-", dir=base)


# --- units on the bus --------------------------------------------------------------------------


class ScriptedSlave:
    """A slave TWC that says what the test tells it to (same interface as ``SimulatedSlave``
    for ``SimulatedBus``): state, the limit it reports, the current its car draws, whether it
    applies the limits it gets and whether it answers at all.

    Physically it applies every set-limit it hears (as real units do, §4.1) unless
    ``apply_limits`` is off, and cuts to 0 A ``CHARGE_FAULT_S`` after its last heartbeat.
    """

    def __init__(
        self, twcid: int, sign: int, protocol: int, max_centiamps: int, now_s: float
    ) -> None:
        self.twcid = twcid
        self.sign = sign
        self.protocol = protocol
        self.max_centiamps = max_centiamps
        self.state = 0
        self.report: int | None = None  # None: report the limit applied (honest)
        self.draw_fraction: float | None = 0.9  # of the applied limit, else draw_centiamps
        self.draw_centiamps = 25
        self.apply_limits = True
        self.answers = True
        self.applied_centiamps = 0
        self.last_heartbeat_s: float | None = None
        self._next_linkready_s = now_s  # announces itself at once

    # the interface SimulatedBus uses

    def handle(self, message: messages.Message, now_s: float) -> list[messages.Message]:
        if not isinstance(message, messages.MasterHeartbeat) or message.receiver != self.twcid:
            return []
        self.advance(now_s)
        self.last_heartbeat_s = now_s
        self._next_linkready_s = now_s + LINKREADY_PERIOD_S
        if self.apply_limits and message.command in (0x05, 0x09)[: self.protocol]:
            self.applied_centiamps = message.centiamps
        if not self.answers:
            return []
        reported = self.applied_centiamps if self.report is None else self.report
        if self.draw_fraction is not None:
            actual = round(self.applied_centiamps * self.draw_fraction)
        else:
            actual = self.draw_centiamps
        reply = messages.SlaveHeartbeat.build(
            self.twcid, message.sender, self.state, reported, min(actual, 0xFFFF), self.protocol
        )
        return [reply]

    def poll(self, now_s: float) -> list[messages.Message]:
        self.advance(now_s)
        if now_s < self._next_linkready_s:
            return []
        self._next_linkready_s = now_s + LINKREADY_PERIOD_S
        return [messages.SlaveLinkReady(self.twcid, self.sign, self.max_centiamps, self.protocol)]

    def next_event_s(self) -> float | None:
        return self._next_linkready_s

    def advance(self, now_s: float) -> None:
        last = self.last_heartbeat_s
        if last is not None and now_s - last >= CHARGE_FAULT_S:
            self.applied_centiamps = 0  # no master for too long: the unit stops the car


class FakeCarApi:
    """The car API as the core sees it: requests are applied to the simulated car on that TWC
    after ``delay_s``; with ``failing`` every request raises (the core must carry on)."""

    def __init__(self, rig: Rig, *, failing: bool = False, delay_s: float = 3.0) -> None:
        self.rig = rig
        self.failing = failing
        self.delay_s = delay_s
        self.due: list[tuple[float, CarCommand]] = []
        self.requests = 0

    def request(self, command: CarCommand) -> None:
        self.requests += 1
        if self.failing:
            raise RuntimeError("car API unreachable (simulated)")
        self.due.append((command.at_s + self.delay_s, command))

    def next_due_s(self) -> float | None:
        return min((t for t, _ in self.due), default=None)

    def apply_due(self, now_s: float) -> None:
        keep = []
        for at_s, command in self.due:
            if at_s > now_s:
                keep.append((at_s, command))
                continue
            for slave in self.rig.sim_slaves():
                if slave.twcid == command.twcid and slave.car is not None:
                    slave.advance(at_s)
                    if command.action is CarAction.STOP:
                        slave.car.charge_stop()
                    else:
                        slave.car.charge_start()
        self.due = keep


class PolicyProbe:
    """The policy engine, with its last decision kept for the fail-safe check."""

    def __init__(self, engine: PolicyEngine) -> None:
        self.engine = engine
        self.last: tuple[float, Any, Any] | None = None  # (now, site, budget)
        self.decisions = 0

    def decide(self, now_s: float, local_time: datetime, site: Any, chargers: Any) -> Any:
        budget = self.engine.decide(now_s, local_time, site, chargers)
        self.last = (now_s, site, budget)
        self.decisions += 1
        return budget


# --- the rig ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RigConfig:
    wiring_all: int = 32
    wiring_per_twc: int = 32
    min_amps: int = 6
    start_stop_delay_s: float = 60.0
    slave_timeout_s: float = 26.0
    safe_amps: float = 0.0
    start_delay_s: float = 60.0
    min_on_time_s: float = 1800.0
    min_off_time_s: float = 60.0
    subtract_charger_load: bool = False
    phases: int = 1
    non_scheduled_amps_max: int | None = None
    spikes: bool = True
    green_sources: bool = True
    force_policy: str | None = None
    car_api: str = "none"  # "none", "working" or "failing"
    start_hour: float = 12.0

    def config_dict(self, settings_path: str) -> dict[str, Any]:
        config: dict[str, Any] = {
            "settingsPath": settings_path,
            "wiringMaxAmpsAllTWCs": self.wiring_all,
            "wiringMaxAmpsPerTWC": self.wiring_per_twc,
            "minAmpsPerTWC": self.min_amps,
            "startStopDelay": self.start_stop_delay_s,
            "defaultVoltage": 230,
            "numberOfPhases": self.phases,
            "greenEnergySafeAmps": self.safe_amps,
            "greenEnergyStartDelay": self.start_delay_s,
            "greenEnergyMinOnTime": self.min_on_time_s,
            "greenEnergyMinOffTime": self.min_off_time_s,
            "subtractChargerLoad": self.subtract_charger_load,
            "spikeAmpsProactively": self.spikes,
            "spikeAmpsReactively": self.spikes,
        }
        if self.non_scheduled_amps_max is not None:
            config["nonScheduledAmpsMax"] = self.non_scheduled_amps_max
        return {"config": config, "interface": {"RS485": {"slaveTimeout": self.slave_timeout_s}}}


@dataclass
class _Wire:
    """What the observers know of one TWCID from the wire (both directions)."""

    reported_centiamps: int = 0  # S1-S2 of its last reply
    sent_since_reply_centiamps: int = 0  # the highest set-limit sent to it since that reply
    last_heartbeat_s: float | None = None
    last_reply_s: float | None = None


@dataclass
class Rig:
    cfg: RigConfig
    folder: str
    now: float = 1000.0
    wall_offset_s: float = 0.0
    site: Any = None
    log: QuietLog = field(default_factory=QuietLog)

    def __post_init__(self) -> None:
        self.settings_file = os.path.join(self.folder, f"settings-{uuid.uuid4().hex}.json")
        loaded = config_from_dict(self.cfg.config_dict(self.folder), self.folder)
        self.config = loaded.settings
        # As ``twcmaster run`` builds it (daemon.build_daemon): amps above the wiring refused.
        self.store = SettingsStore(
            self.settings_file,
            log=self.log,
            wiring_max_amps_all_twcs=self.config.wiring.max_amps_all_twcs,
        )
        engine = PolicyEngine(
            PolicyConfig.from_app_config(
                self.config, green_sources_configured=self.cfg.green_sources
            ),
            self.store,
            force_policy=self.cfg.force_policy,
        )
        self.policy = PolicyProbe(engine)
        self.cars = None
        if self.cfg.car_api != "none":
            self.cars = FakeCarApi(self, failing=self.cfg.car_api == "failing")
        self.core = Core(
            self.config,
            policy=self.policy,
            car_api=self.cars is not None,
        )
        self.outputs = Outputs(core_outputs(self.config, self.log, cars=self.cars))
        self.bus = SimulatedBus([], trailer=0xFE)
        self.vanished: list[Any] = []  # units cut off the bus (they still apply their limit)
        self.to_bus: list[tuple[float, bytes]] = []  # master's bytes: (arrival, bytes)
        self.to_core: list[tuple[float, bytes]] = []  # units' and injected bytes
        self.unread = bytearray()
        self.paused = False
        self.master_free_s = -math.inf
        self.wake_s = self.now
        self.wire: dict[int, _Wire] = {}
        self.heard_as: dict[int, int] = {}  # id(unit) -> the TWCID it last heard a heartbeat as
        self.noise: list[tuple[float, float]] = []  # injected bytes: (from, line quiet again)
        self.rx_sniffer = codec.FrameParser()
        self.linked: dict[int, float] = {}  # twcid -> last heartbeat (or link) time
        # twcid -> heartbeats to come whose gap may be a round longer (after a stall or freeze)
        self.catching_up: dict[int, int] = {}
        self.wiring_all_centiamps = self.config.wiring.max_amps_all_twcs * 100
        self.call(self.core.start, self.now)
        self.service(self.now)

    # -- clocks and units

    def wallclock(self) -> datetime:
        midnight = datetime(2024, 5, 25)
        offset = timedelta(hours=self.cfg.start_hour, seconds=self.now + self.wall_offset_s)
        return midnight + offset

    def units(self) -> list[Any]:
        return [*self.bus.slaves, *self.vanished]

    def sim_slaves(self) -> list[SimulatedSlave]:
        return [u for u in self.units() if isinstance(u, SimulatedSlave)]

    # -- calling the core

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception:
            TALLY["exceptions escaped"] += 1
            raise

    def inject(self, data: bytes, spacing_s: float = 0.0) -> None:
        """Bytes on the line ``spacing_s`` from now (garbage, a foreign unit), as the master
        will read them. While they arrive, and a frame's silence after (§5.2), the master
        may rightly keep quiet: that time is taken out of the heartbeat gaps."""
        if data:
            at = self.now + spacing_s
            self.to_core.append((at, bytes(data)))
            self.to_core.sort(key=lambda item: item[0])
            self.noise.append((at, at + len(data) * codec.BYTE_TIME_S + NOISE_SILENCE_S))

    def noise_within(self, start: float, end: float) -> float:
        """How much of [start, end] injected bytes kept the line busy (their union)."""
        total, reach = 0.0, start
        for begin, until in sorted(self.noise):
            begin, until = max(begin, reach), min(until, end)
            if until > begin:
                total += until - begin
                reach = until
        return total

    def service(self, now: float) -> None:
        """``Daemon._service`` with the virtual clock: read, send, decide when to wake."""
        core = self.core
        data = bytes(self.unread)
        self.unread.clear()
        if data:
            self._sniff_rx(data, now)
        self.rx_sniffer.expire(now)
        step = self.call(
            lambda: core.service(now, data, site=self.site, local_time=self.wallclock())
        )
        for wire in step.frames:
            self._check_tx(wire, now)
            start = max(now, self.master_free_s)
            self.master_free_s = start + len(wire) * codec.BYTE_TIME_S
            self.to_bus.append((self.master_free_s, wire))
        self.paused = step.read_after_s is not None
        self.wake_s = step.wake_s
        self.outputs.publish(now, step.events, lambda: core.snapshot(now))
        self._track_links(now)

    # -- running

    def run(self, seconds: float, *, stalled: bool = False) -> None:
        """Advance the virtual clock by ``seconds``, event by event. ``stalled``: the master
        process does not run meanwhile (the OS keeps what arrives), then runs once at the end."""
        until = self.now + seconds
        TALLY["simulated seconds"] += int(seconds)
        bus = self.bus
        while True:
            bus_s = bus.next_event_s()
            car_s = self.cars.next_due_s() if self.cars is not None else None
            t = min(
                math.inf if stalled else self.wake_s,
                math.inf if bus_s is None else bus_s,
                math.inf if car_s is None else car_s,
                self.to_bus[0][0] if self.to_bus else math.inf,
                self.to_core[0][0] if self.to_core else math.inf,
            )
            if t > until:
                break
            t = max(t, self.now)  # after a freeze, what was due meanwhile happens now
            self.now = t
            if car_s is not None and car_s <= t:
                self.cars.apply_due(t)
            while self.to_bus and self.to_bus[0][0] <= t:
                self.deliver_to_units(self.to_bus.pop(0)[1], t)
            if bus_s is not None and bus_s <= t:
                data = bus.transmit(t)
                if data:
                    self.to_core.append((t + len(data) * codec.BYTE_TIME_S, data))
                    self.to_core.sort(key=lambda item: item[0])
            arrived = False
            while self.to_core and self.to_core[0][0] <= t:
                self.unread += self.to_core.pop(0)[1]
                arrived = True
            if not stalled and (t >= self.wake_s or (arrived and not self.paused)):
                self.service(t)
            self.check_physical(t)
            if not stalled:
                self.check_heartbeat_gaps(t)
        self.now = until
        if stalled:
            self.service(until)
            self.restart_gap_clocks()
        else:
            self.check_heartbeat_gaps(until)
        self.check_physical(until)

    def freeze(self, seconds: float) -> None:
        """Everything stops for ``seconds`` (a VM paused): no event in between."""
        self.now += seconds
        self.master_free_s = min(self.master_free_s, self.now)
        self.restart_gap_clocks()

    def restart_gap_clocks(self) -> None:
        """After a stall or a freeze: gaps count from now, and the gaps up to each slave's
        second heartbeat after it may be a round longer (the master's first round is late and
        may spill into the next one)."""
        for twcid in self.linked:
            self.linked[twcid] = self.now
        self.catching_up = dict.fromkeys(self.linked, 2)

    # -- observers

    def _sniff_rx(self, data: bytes, now: float) -> None:
        """Follow what the units tell the master (the same bytes, split the same way)."""
        for item in self.rx_sniffer.feed(data, now):
            if not isinstance(item, codec.Frame):
                continue
            try:
                message = messages.decode(item.body)
            except Exception:  # noqa: BLE001 - the master's own handling is under test
                continue
            if isinstance(message, messages.SlaveHeartbeat) and message.receiver == MASTER_ID:
                wire = self.wire.get(message.sender)
                if wire is not None:  # the master ignores units it never linked (§3.3)
                    wire.reported_centiamps = message.allowed_centiamps
                    wire.sent_since_reply_centiamps = 0
                    wire.last_reply_s = now

    def _track_links(self, now: float) -> None:
        slaves = self.core.master.slaves
        for twcid in slaves:
            if twcid not in self.linked:
                self.linked[twcid] = now
                self.wire.setdefault(twcid, _Wire())
        for twcid in [t for t in self.linked if t not in slaves]:
            del self.linked[twcid]

    def _fail(self, text: str) -> None:
        raise InvariantViolation(f"t={self.now:.3f}: {text}")

    def _decode_tx(self, wire_bytes: bytes) -> messages.Message:
        """The one message a frame of the master's carries (most repeat: cached)."""
        message = _TX_CACHE.get(wire_bytes)
        if message is not None:
            return message
        frames = codec.FrameParser().feed(wire_bytes, 0.0)
        if len(frames) != 1 or not isinstance(frames[0], codec.Frame):
            self._fail(f"the master sent a malformed frame {wire_bytes.hex(' ')}: {frames}")
        body = frames[0].body
        code = int.from_bytes(body[:2], "big")
        if code not in messages.MASTER_TX_CODES or code in messages.BLOCKED_CODES:
            self._fail(f"the master sent code {code:04X} ({wire_bytes.hex(' ')})")
        message = messages.decode(body)
        if len(_TX_CACHE) > 4096:
            _TX_CACHE.clear()
        _TX_CACHE[wire_bytes] = message
        return message

    def _check_tx(self, wire_bytes: bytes, now: float) -> None:
        TALLY["frames sent by the master"] += 1
        message = self._decode_tx(wire_bytes)
        if isinstance(message, messages.MasterHeartbeat):
            self._check_heartbeat(message, now)

    def _check_heartbeat(self, hb: messages.MasterHeartbeat, now: float) -> None:
        TALLY["heartbeats checked"] += 1
        twcid = hb.receiver
        slave = self.core.master.slaves.get(twcid)
        if slave is None:
            self._fail(f"heartbeat to {twcid:04X}, which the master has not linked")
        if hb.sender != MASTER_ID:
            self._fail(f"heartbeat from {hb.sender:04X}, not the master's ID")
        wire = self.wire.setdefault(twcid, _Wire())
        if wire.last_heartbeat_s is not None and now - wire.last_heartbeat_s >= CHARGE_FAULT_S:
            # No heartbeat for that long: the slave stopped on its own (§5.1); what it
            # reported before is void.
            wire.reported_centiamps = wire.sent_since_reply_centiamps = 0
        wire.last_heartbeat_s = now
        self.linked[twcid] = now
        left = self.catching_up.pop(twcid, 0) - 1
        if left > 0:
            self.catching_up[twcid] = left
        command = hb.command
        if command not in (0x00, SET_LIMIT[slave.protocol]):
            self._fail(f"heartbeat command {command:02X} to a protocol {slave.protocol} slave")
        if command == 0x00:
            return
        TALLY["set-limit offers checked"] += 1
        centiamps = hb.centiamps
        self._check_offer(twcid, centiamps, slave.protocol, slave.max_centiamps)
        self._check_gate(twcid, centiamps, now)
        wire.sent_since_reply_centiamps = max(wire.sent_since_reply_centiamps, centiamps)

    def floor_amps(self, protocol: int) -> int:
        return max(self.config.min_amps_per_twc, 5 if protocol == 1 else 6)

    def _check_offer(self, twcid: int, centiamps: int, protocol: int, max_centiamps: int) -> None:
        if centiamps == 0:
            return
        amps = centiamps / 100
        ceiling = min(self.config.wiring.max_amps_per_twc, max_centiamps // 100)
        floor = self.floor_amps(protocol)
        if centiamps % 100 or not floor <= amps <= ceiling:
            self._fail(
                f"offer {amps}A to {twcid:04X} (P{protocol}, own max {max_centiamps / 100}A): "
                f"expected 0 or whole amps from {floor} to {ceiling}"
            )

    def committed_centiamps(self, twcid: int | None, now: float) -> int:
        """What the slave with this ID may apply, as far as anyone can know from the wire: the
        larger of the limit in its last reply (S1-S2) and every limit sent to it since (the
        definition ``twcmaster.soak`` checks too), until CHARGE_FAULT_S after its last
        heartbeat: a slave that long without one has given up on its master and stopped
        (§5.1), whether or not it is linked again meanwhile."""
        wire = self.wire.get(twcid) if twcid is not None else None
        if wire is None or wire.last_heartbeat_s is None:
            return 0
        if now - wire.last_heartbeat_s >= CHARGE_FAULT_S:
            return 0
        return max(wire.sent_since_reply_centiamps, wire.reported_centiamps)

    def _check_gate(self, twcid: int, centiamps: int, now: float) -> None:
        """A set-limit that raises a slave's committed amps fits, with every other slave's
        committed amps, in wiringMaxAmpsAllTWCs ("lower first, raise once acknowledged")."""
        before = self.committed_centiamps(twcid, now)
        if centiamps <= before:
            return  # not a raise: lowering never waits
        others = {t: self.committed_centiamps(t, now) for t in self.wire if t != twcid}
        total = centiamps + sum(others.values())
        if total <= self.wiring_all_centiamps:
            return
        held = ", ".join(f"{t:04X} {c / 100:g}A" for t, c in others.items() if c)
        self._fail(
            f"raise of {twcid:04X} from {before / 100:g}A to {centiamps / 100:g}A while the "
            f"others hold {held}: {total / 100:g}A > wiringMaxAmpsAllTWCs "
            f"{self.config.wiring.max_amps_all_twcs}A"
        )

    def deliver_to_units(self, data: bytes, now: float) -> None:
        """The master's frame reaches the units; remember under which ID each heard last."""
        message = self._decode_tx(data)
        if isinstance(message, messages.MasterHeartbeat):
            for unit in self.bus.slaves:
                if unit.twcid == message.receiver:
                    self.heard_as[id(unit)] = message.receiver
        self.bus.receive(data, now)

    def applied_centiamps(self, unit: Any) -> int:
        """The limit a unit applies. Not advanced to now: a unit that gave up on its master
        (CHARGE_FAULT_S after the last heartbeat it heard) applies 0, but by then its ID no
        longer counts either (``committed_centiamps``), so ``check_physical`` needs no more."""
        if isinstance(unit, SimulatedSlave):
            return round(unit.limit_amps * 100)
        return unit.applied_centiamps

    def check_physical(self, now: float) -> None:
        """The limits the units apply add up to at most wiringMaxAmpsAllTWCs. A unit counts
        with at most what the wire says it may apply under the ID it last heard (a unit that
        applies more than the master sent it, or says less than it applies, is beyond any
        master's reach)."""
        rows = []
        for unit in self.units():
            heard_as = self.heard_as.get(id(unit))
            applied = self.applied_centiamps(unit)
            rows.append((unit, heard_as, applied))
        total = sum(min(a, self.committed_centiamps(h, now)) for _, h, a in rows)
        if total <= self.wiring_all_centiamps:
            return
        shown = ", ".join(f"{u.twcid:04X} (heard as {h or 0:04X}) {a / 100:g}A" for u, h, a in rows)
        self._fail(
            f"the units apply {total / 100:g}A in all ({shown}) > wiringMaxAmpsAllTWCs "
            f"{self.config.wiring.max_amps_all_twcs}A"
        )

    def check_heartbeat_gaps(self, now: float) -> None:
        """Every linked slave that answered its last heartbeat gets the next one at most
        MAX_HEARTBEAT_GAP_S after it; one that did not, at most MAX_SILENT_HEARTBEAT_GAP_S."""
        if self.noise:
            oldest = min(self.linked.values(), default=now)
            self.noise = [window for window in self.noise if window[1] >= oldest]
        for twcid, last in self.linked.items():
            if now - last <= MAX_HEARTBEAT_GAP_S + _EPS:
                continue
            wire = self.wire.get(twcid)
            replied = wire is not None and wire.last_reply_s is not None
            answering = replied and wire.last_reply_s >= last
            bound = MAX_HEARTBEAT_GAP_S if answering else MAX_SILENT_HEARTBEAT_GAP_S
            if twcid in self.catching_up:
                bound += CATCH_UP_S
            if self.noise:
                bound += self.noise_within(last, now)
            if now - last > bound + _EPS:
                what = "answering" if answering else "silent"
                self._fail(
                    f"slave {twcid:04X} (linked, {what}) has had no heartbeat for "
                    f"{now - last:.3f}s (since t={last:.3f}); linked: {self._linked_text(now)}"
                )

    def _linked_text(self, now: float) -> str:
        return ", ".join(
            f"{s.twcid:04X} silent {now - s.last_rx_s:.1f}s"
            for s in self.core.master.slaves.values()
        )

    def check_snapshot(self) -> None:
        snapshot = self.call(self.core.snapshot, self.now)
        wiring = self.config.wiring.max_amps_all_twcs
        for s in snapshot.slaves:
            floor = self.floor_amps(s.protocol)
            ceiling = min(self.config.wiring.max_amps_per_twc, math.floor(s.max_amps + _EPS))
            if s.offer_amps != 0 and not floor <= s.offer_amps <= ceiling:
                self._fail(f"snapshot offer {s.offer_amps}A to {s.twcid} outside 0/{floor}..")
        total = snapshot.total_offer_amps
        if total > wiring:
            self._fail(f"snapshot offers add up to {total}A > wiringMaxAmpsAllTWCs {wiring}A")
        budget = snapshot.budget.amps
        if not (math.isfinite(budget) and 0 <= budget <= wiring):
            self._fail(f"budget {budget!r} outside [0, wiringMaxAmpsAllTWCs {wiring}]")

    def check_fail_safe(self) -> None:
        """A green budget decided on an unusable reading is at most greenEnergySafeAmps."""
        if self.policy.last is None:
            return
        _, site, budget = self.policy.last
        if budget.policy != POLICY_GREEN or reading_problem(site) is None:
            return
        safe = min(self.config.green_energy_safe_amps, self.config.wiring.max_amps_all_twcs)
        if budget.amps > safe + _EPS or not budget.stale:
            self._fail(f"green budget {budget.amps}A on an unusable reading (safe {safe}A)")

    def close(self) -> None:
        for path in (self.settings_file,):
            try:
                os.unlink(path)
            except OSError:
                pass
