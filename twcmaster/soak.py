"""``make soak``: long robustness runs of the master under injected faults (issue 7).

Two parts, each selectable (default: both):

* ``--virtual``: the whole core (``Core``: bus master, controller, the policy engine on Track
  Green Energy) against three simulated TWCs with cars for ``--hours`` of virtual time, driven
  by ``simulate.DaySimulation`` and fed by the built-in sky or ``--profile FILE.csv``. Faults
  arrive at ``--fault-rate`` per second (a Poisson process from ``--seed``), each kind equally
  likely: garbage bytes on the line; a reply with bits flipped; frames whose checksum is valid
  but whose content is not (random bodies, replies corrupted with the checksum fixed, VIN or
  serial frames with bytes >= 0x80); a dropped reply; a slave vanishing from the line for
  30-60 s; a slave changing ID; a device sending link-ready with the master's own ID for
  10-20 s; energy readings stale, negative, NaN or huge for 10-300 s; the wall clock jumping
  forward; the monotonic clock jumping forward (the core not run for 2-10 s, as a suspended
  process). Injected bytes reach the master and the slaves alike (one shared pair), so no
  random frame carries a code that locks a TWC up (§3.5): no master could help that. The cars
  also come and go (plugged 1-4 h, away 10-60 min).
* ``--realtime``: ``twcmaster run`` as its own process (as ``bench.py`` runs it) with its port
  on a pty whose other side this process serves with three simulated slaves, while noise
  (garbage, corrupted frames) is written into the pty at ``--noise-rate`` per second, for
  ``--seconds``; then SIGTERM. The noise reaches the master only, so every heartbeat gap the
  slaves see is the master's doing.

What is checked, from the master's frames decoded with ``protocol.messages``:

* **Heartbeats missed**: a live slave not heartbeated within 1.5 s of its previous heartbeat.
  Virtual: the heartbeats ``Core`` emits, per simulated slave under its current ID; the time a
  fault silenced that slave (vanished, then re-linked; a new ID, until it announces it; its
  link-ready spoiled, until the next) or the core (clock jump) is taken out of a gap before it
  is compared. Real time: the heartbeats each slave heard, from its first one plus a warm-up.
* **Invariant violations**, on every set-limit heartbeat (``05``/``08``/``09`` with amps): an
  offer above ``wiringMaxAmpsPerTWC`` or above the slave's own maximum (its link-ready), an
  offer between 0 and the floor (``max(minAmpsPerTWC, 5 A P1 / 6 A P2)``), and the sum of
  committed amps above ``wiringMaxAmpsAllTWCs``. A TWCID's committed amps are what it may
  apply: the larger of the limit in its last reply (S1-S2) and every limit sent to it since;
  they count until 30 s after its last heartbeat (when a slave stops the car on its own, §5.1).
  Replies are read as the slaves sent them (before any fault), so a dropped acknowledgement
  never makes the check stricter than the truth. Apart, the sum of the limits the simulated
  slaves really apply (``SimulatedSlave.limit_amps``) against ``wiringMaxAmpsAllTWCs``.

* **Exceptions**: virtual, any exception escaping ``Core`` (caught here, counted, the run goes
  on) and the errors ``Core`` caught itself (``internal_errors``); real time, the daemon's
  "internal error" log events.
* Energy charged, memory (RSS, and ``--tracemalloc`` for the core's own allocations), CPU time;
  real time: heartbeat intervals per slave, the daemon's exit code after SIGTERM, its RSS and
  CPU seconds.

Prints one table per part, or one JSON object with ``--json``. Exit status 1 when any
violation, exception, missed heartbeat or non-zero exit code occurred, so it can gate.

    python -m twcmaster.soak [--virtual] [--realtime] [--hours 24] [--fault-rate 0.01]
        [--seed 1] [--profile FILE.csv] [--start HH:MM] [--seconds 300] [--noise-rate 2]
        [--json] [--tracemalloc]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

from twcmaster.config import AppConfig, config_from_dict
from twcmaster.core import SERVICE_RETRY_S, Step
from twcmaster.logs import configure_logging
from twcmaster.protocol import codec, messages
from twcmaster.protocol.gate import protocol_min_amps
from twcmaster.protocol.messages import Code
from twcmaster.sim.bus import DEFAULT_TRAILER, SimulatedBus, make_slaves
from twcmaster.sim.runner import PtyBus
from twcmaster.sim.sky import Profile, ProfileError, Sky, builtin_profile, load_profile
from twcmaster.sim.slave import (
    CHARGE_FAULT_S,
    LINKREADY_PERIOD_S,
    MASTER_LOST_S,
    SimulatedSlave,
    random_sign,
    random_twcid,
)
from twcmaster.simulate import DaySimulation
from twcmaster.simulate_command import parse_clock_s

# --- what is run --------------------------------------------------------------------------------

HEARTBEAT_MISSED_S = 1.5  # a live slave must be heartbeated again within this
HEARTBEAT_INTERVAL_S = 1.0  # the master's round (MasterSettings.heartbeat_interval_s)

SLAVES = 3
#: A 40 A circuit shared by TWCs on 16 A branches: three cars at the floor fit, two at their
#: maximum do not, so the all-TWC limit binds whenever the budget is high.
WIRING = {"wiringMaxAmpsAllTWCs": 40, "wiringMaxAmpsPerTWC": 16, "minAmpsPerTWC": 6}
SITE = {"defaultVoltage": 230, "numberOfPhases": 1}
#: One TWC reports this maximum in its link-ready (below the branch), so the slave-maximum
#: check bites.
LOW_MAX_AMPS = 12.0
SET_LIMIT_COMMANDS = frozenset({0x05, 0x08, 0x09})  # heartbeat commands carrying a limit
MAX_EXAMPLES = 10  # examples kept per finding, for the report

# Virtual part.
DEFAULT_HOURS = 24.0
DEFAULT_FAULT_RATE_PER_S = 0.01
VANISH_S = (30.0, 60.0)
FOREIGN_S = (10.0, 20.0)
FOREIGN_PERIOD_S = (0.5, 2.0)  # the foreign device repeats its link-ready this often
ENERGY_FAULT_S = (10.0, 300.0)
WALLCLOCK_JUMP_S = (1.0, 900.0)
MONOTONIC_JUMP_S = (2.0, 10.0)  # below the slaves' 10 s master-lost time
PLUGGED_S = (3600.0, 4 * 3600.0)
AWAY_S = (600.0, 3600.0)
#: A slave that announces itself is linked and heartbeated within this (link-ready, first
#: heartbeat), so a fault that silences it is excused this much longer.
RELINK_S = 2.0

# Real-time part.
DEFAULT_SECONDS = 300.0
DEFAULT_NOISE_RATE_PER_S = 2.0
WARMUP_S = 2.0  # heartbeats count from each slave's first one plus this (link-up)
RSS_SETTLE_S = 10.0  # the daemon's "start" RSS is read this long after it started
STOP_TIMEOUT_S = 15.0  # SIGTERM to exit; then SIGKILL


def soak_config_dict(port: str | None = None, directory: str | None = None) -> dict[str, Any]:
    """The configuration both parts use (``port`` and ``directory`` for ``twcmaster run``)."""
    config: dict[str, Any] = {"config": {**WIRING, **SITE}}
    if directory is not None:
        config["config"]["settingsPath"] = directory
        config["logging"] = {"format": "json"}
    if port is not None:
        config["interface"] = {"RS485": {"port": port}}
    return config


# --- the wire checks ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """The config's wiring limits and floor, as the checks apply them."""

    all_twcs_amps: float
    per_twc_amps: float
    min_amps_per_twc: float

    @classmethod
    def from_config(cls, config: AppConfig) -> Limits:
        wiring = config.wiring
        return cls(wiring.max_amps_all_twcs, wiring.max_amps_per_twc, config.min_amps_per_twc)

    def floor_amps(self, protocol: int) -> float:
        return max(self.min_amps_per_twc, protocol_min_amps(protocol))


@dataclass
class _Line:
    """What one TWCID may apply, as the wire shows it."""

    reported_centiamps: int = 0  # S1-S2 of its last reply
    sent_centiamps: int = 0  # the highest limit sent to it since that reply
    heartbeat_s: float = -math.inf  # the master's last heartbeat to it

    @property
    def committed_centiamps(self) -> int:
        return max(self.reported_centiamps, self.sent_centiamps)


#: The sum as the wire shows it: what the master cannot rule out the slaves apply.
SUM_COMMITTED = "sum of committed amps above wiringMaxAmpsAllTWCs"
#: The sum of the limits the simulated slaves really apply (a subset of the above).
SUM_APPLIED = "sum of applied limits above wiringMaxAmpsAllTWCs"


def applied_amps(slaves: list[SimulatedSlave]) -> Callable[[], float]:
    """The limits the simulated slaves apply now, summed (a cut-off car's is 0)."""
    return lambda: sum(slave.limit_amps for slave in slaves)


class WireMonitor:
    """Checks every limit the master sends against the wiring, the floor and the slave."""

    def __init__(
        self,
        limits: Limits,
        slave_max_amps: dict[int, float],
        applied_amps: Callable[[], float] | None = None,
    ) -> None:
        self.limits = limits
        self.slave_max_amps = slave_max_amps  # the simulated slaves' own, by every ID they had
        self.applied_amps = applied_amps  # the truth: the limits the slaves apply, summed
        self.heard_max_amps: dict[int, float] = {}  # other link-readies the master may have heard
        self.lines: dict[int, _Line] = {}
        self.set_limits = 0
        self.violations: Counter[str] = Counter()
        self.examples: list[str] = []

    def master_frame(self, message: messages.Message, now_s: float) -> None:
        if not isinstance(message, messages.MasterHeartbeat):
            return
        line = self.lines.setdefault(message.receiver, _Line())
        line.heartbeat_s = now_s
        if message.command not in SET_LIMIT_COMMANDS or (
            message.command == 0x08 and not message.centiamps  # 08 00 00 changes nothing
        ):
            return
        self.set_limits += 1
        line.sent_centiamps = max(line.sent_centiamps, message.centiamps)
        self._check_offer(message, now_s)
        self._check_sum(now_s)

    def slave_frame(self, message: messages.Message, now_s: float) -> None:
        if isinstance(message, messages.SlaveHeartbeat):
            line = self.lines.get(message.sender)
            if line is not None:  # it has applied this limit; later ones are pending
                line.reported_centiamps = message.allowed_centiamps
                line.sent_centiamps = 0
        elif isinstance(message, messages.SlaveLinkReady):
            self.linkready_heard(message.sender, message.max_centiamps)

    def linkready_heard(self, twcid: int, max_centiamps: int) -> None:
        """A link-ready the master may register (the first one counts, as in the master)."""
        self.heard_max_amps.setdefault(twcid, max_centiamps / 100)

    def _check_offer(self, message: messages.MasterHeartbeat, now_s: float) -> None:
        amps = message.centiamps / 100
        twcid = message.receiver
        protocol = 1 if len(message.data) == 7 else 2
        slave_max = self.slave_max_amps.get(twcid, self.heard_max_amps.get(twcid))
        if amps > self.limits.per_twc_amps:
            self._violation("offer above wiringMaxAmpsPerTWC", now_s, twcid, amps)
        if slave_max is not None and amps > slave_max:
            self._violation("offer above the slave's maximum", now_s, twcid, amps)
        if 0 < amps < self.limits.floor_amps(protocol):
            self._violation("offer between 0 and the floor", now_s, twcid, amps)

    def _check_sum(self, now_s: float) -> None:
        expired = [t for t, line in self.lines.items() if now_s - line.heartbeat_s > CHARGE_FAULT_S]
        for twcid in expired:
            del self.lines[twcid]  # without heartbeats, the slave has stopped its car by now
        total_amps = sum(line.committed_centiamps for line in self.lines.values()) / 100
        if total_amps > self.limits.all_twcs_amps:
            detail = ", ".join(
                f"{t:04X}: {line.committed_centiamps / 100:g}" for t, line in self.lines.items()
            )
            self._violation(SUM_COMMITTED, now_s, None, total_amps, f" ({detail})")
        applied_amps = self.applied_amps() if self.applied_amps is not None else 0.0
        if applied_amps > self.limits.all_twcs_amps:
            self._violation(SUM_APPLIED, now_s, None, applied_amps)

    def _violation(
        self, kind: str, now_s: float, twcid: int | None, amps: float, detail: str = ""
    ) -> None:
        self.violations[kind] += 1
        if len(self.examples) < MAX_EXAMPLES:
            who = f"TWC {twcid:04X} " if twcid is not None else ""
            self.examples.append(f"t={now_s:.2f}s {kind}: {who}{amps:g} A{detail}")


def decoded(parser: codec.FrameParser, data: bytes, now_s: float) -> Iterator[messages.Message]:
    """The messages of the complete, valid frames in ``data``."""
    for item in parser.feed(data, now_s):
        if isinstance(item, codec.Frame):
            yield messages.decode(item.body)


class HeartbeatWatch:
    """Times the heartbeats each slave gets; gaps over 1.5 s are missed unless excused."""

    def __init__(self, missed_after_s: float = HEARTBEAT_MISSED_S) -> None:
        self.missed_after_s = missed_after_s
        self.last_s: dict[Any, float] = {}
        self.excusals: list[tuple[Any, float, float]] = []  # (key or None for all, from, to)
        self.heartbeats = 0
        self.missed = 0
        self.worst_gap_s = 0.0  # the longest gap not excused
        self.examples: list[str] = []

    def finish(self, end_s: float) -> None:
        """The run ends: a slave not heartbeated since long before missed those heartbeats."""
        for key, last_s in list(self.last_s.items()):
            self._check_gap(key, last_s, end_s)

    def excuse(self, key: Any, from_s: float, to_s: float) -> None:
        """A fault silences ``key`` (None: every slave) from ``from_s`` to ``to_s``."""
        self.excusals.append((key, from_s, to_s))

    def beat(self, key: Any, now_s: float) -> None:
        self.heartbeats += 1
        previous_s = self.last_s.get(key)
        self.last_s[key] = now_s
        if previous_s is not None:
            self._check_gap(key, previous_s, now_s)

    def _check_gap(self, key: Any, from_s: float, to_s: float) -> None:
        gap_s = to_s - from_s
        if gap_s > self.missed_after_s:
            gap_s -= self._excused_s(key, from_s, to_s)  # what the master is to blame for
        self.worst_gap_s = max(self.worst_gap_s, gap_s)
        if gap_s > self.missed_after_s:
            self.missed += 1
            if len(self.examples) < MAX_EXAMPLES:
                self.examples.append(f"slave {key}: {gap_s:.2f} s from t={from_s:.2f}s")

    def _excused_s(self, key: Any, from_s: float, to_s: float) -> float:
        """How much of ``from_s .. to_s`` the excusals for ``key`` cover."""
        spans = sorted(
            (max(a, from_s), min(b, to_s))
            for k, a, b in self.excusals
            if k in (None, key) and a < to_s and b > from_s
        )
        covered_s, reach_s = 0.0, from_s
        for a, b in spans:
            covered_s += max(0.0, b - max(a, reach_s))
            reach_s = max(reach_s, b)
        return covered_s


def interval_stats(gaps_s: list[float]) -> dict[str, float | int | None]:
    """Count, median, p99 and max of heartbeat intervals (None without any)."""
    if not gaps_s:
        return {"count": 0, "median_s": None, "p99_s": None, "max_s": None}
    ordered = sorted(gaps_s)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "count": len(ordered),
        "median_s": round(statistics.median(ordered), 4),
        "p99_s": round(p99, 4),
        "max_s": round(ordered[-1], 4),
    }


# --- faulty bytes -------------------------------------------------------------------------------

ASCII_TEXT = b"ABCDEFGHJKLMNPRSTUVWXYZ0123456789"


def garbage(rng: random.Random) -> bytes:
    """1-64 random bytes, half of them opening like a frame (a C0 first)."""
    data = rng.randbytes(rng.randint(1, 64))
    return bytes([codec.FRAME_END]) + data if rng.random() < 0.5 else data


def flip_bits(rng: random.Random, wire: bytes, count: int | None = None) -> bytes:
    """``wire`` with 1-3 (or ``count``) random bits flipped."""
    out = bytearray(wire)
    for _ in range(count or rng.randint(1, 3)):
        out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def corrupt_keeping_checksum(rng: random.Random, wire: bytes) -> bytes:
    """The first frame in ``wire`` with one bit of its body flipped and the checksum made to
    match: what a 1-byte checksum lets through once in 256 corruptions."""
    parser = codec.FrameParser(accepted_lengths=codec.LENIENT_BODY_LENGTHS)
    frames = [item for item in parser.feed(wire, 0.0) if isinstance(item, codec.Frame)]
    if not frames:
        return flip_bits(rng, wire)
    payload = bytearray(frames[0].payload)
    payload[rng.randrange(len(payload))] ^= 1 << rng.randrange(8)
    return codec.frame(bytes(payload), DEFAULT_TRAILER)


def checksum_valid_garbage(rng: random.Random) -> bytes:
    """A frame of a standard length with a valid checksum and a random body. Never one of the
    codes that lock a TWC up (§3.5): the slaves hear it too, and no master could help that."""
    length = rng.choice(sorted(codec.VALID_BODY_LENGTHS))
    while True:
        payload = bytes([rng.choice((0xFB, 0xFC, 0xFD))]) + rng.randbytes(length - 2)
        if int.from_bytes(payload[:2], "big") not in messages.BLOCKED_CODES:
            return codec.frame(payload, DEFAULT_TRAILER)


def non_ascii_text_frame(rng: random.Random, sender: int) -> bytes:
    """A VIN part or serial frame from ``sender`` with 1-3 bytes >= 0x80, checksum valid."""
    code = rng.choice((Code.VIN1, Code.VIN2, Code.VIN3, Code.SERIAL))
    text = bytearray(rng.choice(ASCII_TEXT) for _ in range(15))
    for _ in range(rng.randint(1, 3)):
        text[rng.randrange(len(text))] = rng.randrange(0x80, 0x100)
    payload = code.to_bytes(2, "big") + sender.to_bytes(2, "big") + bytes(text)
    return codec.frame(payload, DEFAULT_TRAILER)


def master_id_linkready(rng: random.Random, master_twcid: int, as_slave: bool) -> bytes:
    """A link-ready carrying the master's own ID: a slave's (``FD E2``, an ID collision) or a
    master's (``FC E1``/``FB E2``, another master using our ID)."""
    if as_slave:
        message: messages.Message = messages.SlaveLinkReady(master_twcid, random_sign(rng), 3200, 2)
    else:
        message = messages.MasterLinkReady(rng.choice((1, 2)), master_twcid, random_sign(rng))
    return codec.frame(message.to_payload(), DEFAULT_TRAILER)


# --- the virtual day: the faulty parts around DaySimulation ------------------------------------


class CoreProbe:
    """``Core`` as ``DaySimulation`` drives it, with three additions: exceptions escaping it are
    caught and counted (the run goes on, as the daemon's service loop would), every frame it
    sends goes to ``on_frame``, and a clock jump (``stall``) keeps it from running, the bytes
    that arrive meanwhile held for it as the OS would."""

    def __init__(self, core: Any, on_frame: Callable[[bytes, float], None]) -> None:
        self.core = core
        self.on_frame = on_frame
        self.escaped: Counter[str] = Counter()
        self.examples: list[str] = []
        self.stalled_until_s = -math.inf
        self._held = bytearray()

    def stall(self, now_s: float, duration_s: float) -> None:
        self.stalled_until_s = max(self.stalled_until_s, now_s + duration_s)

    def start(self, now: float) -> None:
        self._call("start", self.core.start, now)

    def service(self, now: float, data: bytes = b"", **inputs: Any) -> Step:
        if now < self.stalled_until_s:
            self._held += data
            return Step((), (), self.stalled_until_s, None)
        if self._held:
            data = bytes(self._held) + data
            self._held.clear()
        step = self._call("service", lambda: self.core.service(now, data, **inputs))
        if step is None:
            return Step((), (), now + SERVICE_RETRY_S, None)
        for wire in step.frames:
            self.on_frame(wire, now)
        return step

    def snapshot(self, now: float) -> Any:
        return self.core.snapshot(now)

    def _call(self, where: str, method: Callable, *args: Any) -> Any:
        try:
            return method(*args)
        except Exception as error:
            self._escaped(where, error)
            return None

    def _escaped(self, where: str, error: Exception) -> None:
        self.escaped[where] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"{where}: {error!r}"[:300])


class EnergyFaults:
    """Spoils the site readings the policy gets for a while: stale, negative, NaN or huge."""

    FIELDS = ("generation_w", "consumption_w", "grid_w", "voltage_v")

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.kind: str | None = None
        self.until_s = -math.inf
        self._field = ""
        self._value = 0.0

    def start(self, kind: str, now_s: float, duration_s: float) -> None:
        self.kind, self.until_s = kind, now_s + duration_s
        self._field = self.rng.choice(self.FIELDS)
        self._value = {
            "energy_negative": -self.rng.uniform(1.0, 20_000.0),
            "energy_nan": math.nan,
            "energy_huge": self.rng.choice((1e6, 1e9, 1e18, 1e308, math.inf)),
        }.get(kind, 0.0)

    def wrap(self, site: Callable[[float], Any]) -> Callable[[float], Any]:
        def faulty_site(now_s: float) -> Any:
            reading = site(now_s)
            if self.kind is None or now_s >= self.until_s:
                return reading
            if self.kind == "energy_stale":
                reason = "soak: the source stopped answering"
                return dataclasses.replace(reading, stale=True, reason=reason, sources=())
            return dataclasses.replace(reading, **{self._field: self._value})

        return faulty_site


class WallClock:
    """The wall clock the policy reads, jumping forward by ``offset_s`` in all."""

    def __init__(self) -> None:
        self.offset_s = 0.0

    def wrap(self, wallclock: Callable[[], datetime]) -> Callable[[], datetime]:
        return lambda: wallclock() + timedelta(seconds=self.offset_s)


class FaultyBus:
    """The simulated bus behind a faulty line, in place of it in ``DaySimulation``.

    What the slaves send is shown to the monitor as they sent it, then spoiled as armed
    (dropped, bits flipped, corrupted with a valid checksum); injected bytes reach the master
    and the slaves alike (one shared pair); a vanished slave hears and says nothing but its car
    goes on (a broken wire). Timed things (faults, returns, the foreign device, the cars'
    comings and goings) are ``timers``: objects with ``next_s()`` and ``run_due(now_s)``.
    """

    def __init__(self, inner: SimulatedBus, monitor: WireMonitor, rng: random.Random) -> None:
        self.inner = inner
        self.slaves = list(inner.slaves)  # every slave, vanished or not
        self.monitor = monitor
        self.rng = rng
        self.timers: list[Any] = []
        self.vanished: dict[int, float] = {}  # slave index -> when it returns
        self._present = list(self.slaves)
        self._armed: list[str] = []  # spoil the next reply this way
        self._to_master = bytearray()
        self._said = codec.FrameParser()
        # Called with the TWCIDs whose link-ready a fault spoiled, and the time.
        self.on_announcement_lost: Callable[[list[int], float], None] | None = None

    # -- what DaySimulation calls

    def receive(self, data: bytes, now_s: float) -> None:
        with self._only_present():
            self.inner.receive(data, now_s)

    def transmit(self, now_s: float) -> bytes:
        for timer in self.timers:
            if timer.next_s() <= now_s:
                timer.run_due(now_s)
        self._return_vanished(now_s)
        with self._only_present():
            data = self.inner.transmit(now_s)
        if data:
            said = list(decoded(self._said, data, now_s))
            for message in said:
                self.monitor.slave_frame(message, now_s)
            if self._armed:
                data = self._spoil(data)
                self._announcements_lost(said, now_s)
        out = bytes(self._to_master) + data
        self._to_master.clear()
        return out

    def next_event_s(self) -> float | None:
        with self._only_present():
            due_s = self.inner.next_event_s()
        times = [timer.next_s() for timer in self.timers]
        times += [*self.vanished.values(), math.inf if due_s is None else due_s]
        return min(times)

    def advance(self, now_s: float) -> None:
        self.inner.advance(now_s)  # every car goes on, the vanished ones too

    # -- faults

    def inject(self, data: bytes, now_s: float) -> None:
        """Bytes on the line from another device: the master and the slaves hear them."""
        self._to_master += data
        self.receive(data, now_s)

    def arm(self, kind: str) -> None:
        self._armed.append(kind)

    def vanish(self, index: int, now_s: float, duration_s: float) -> None:
        self.vanished[index] = now_s + duration_s
        self._refresh_present()

    def present_indices(self) -> list[int]:
        return [i for i in range(len(self.slaves)) if i not in self.vanished]

    def _return_vanished(self, now_s: float) -> None:
        back = [i for i, until_s in self.vanished.items() if until_s <= now_s]
        for index in back:
            del self.vanished[index]
        if back:
            self._refresh_present()

    def _refresh_present(self) -> None:
        self._present = [self.slaves[i] for i in self.present_indices()]

    @contextlib.contextmanager
    def _only_present(self) -> Iterator[None]:
        self.inner.slaves = self._present
        try:
            yield
        finally:
            self.inner.slaves = self.slaves

    def _announcements_lost(self, said: list[messages.Message], now_s: float) -> None:
        senders = [m.sender for m in said if isinstance(m, messages.SlaveLinkReady)]
        if senders and self.on_announcement_lost is not None:
            self.on_announcement_lost(senders, now_s)

    def _spoil(self, data: bytes) -> bytes:
        kind = self._armed.pop(0)
        if kind == "dropped_reply":
            return b""
        if kind == "bit_flip":
            return flip_bits(self.rng, data)
        return corrupt_keeping_checksum(self.rng, data)


class ForeignDevice:
    """A device that sends link-ready with the master's own ID every 0.5-2 s while active."""

    def __init__(self, bus: FaultyBus, master_twcid: int, rng: random.Random) -> None:
        self.bus = bus
        self.master_twcid = master_twcid
        self.rng = rng
        self.until_s = -math.inf
        self._next_s = math.inf
        self._as_slave = True

    def start(self, now_s: float, duration_s: float) -> None:
        if self._next_s == math.inf:
            self._as_slave = self.rng.random() < 0.5
            self._next_s = now_s
        self.until_s = max(self.until_s, now_s + duration_s)

    def next_s(self) -> float:
        return self._next_s

    def run_due(self, now_s: float) -> None:
        if now_s >= self.until_s:
            self._next_s = math.inf
            return
        frame = master_id_linkready(self.rng, self.master_twcid, self._as_slave)
        self.bus.inject(frame, now_s)
        self._next_s = now_s + self.rng.uniform(*FOREIGN_PERIOD_S)


class CarChurn:
    """The cars come and go: plugged 1-4 h, away 10-60 min (the same car comes back)."""

    def __init__(self, slaves: list[SimulatedSlave], rng: random.Random, start_s: float):
        self.slaves = slaves
        self.rng = rng
        self.due_s = [start_s + rng.uniform(*PLUGGED_S) for _ in slaves]
        self.changes = 0

    def next_s(self) -> float:
        return min(self.due_s)

    def run_due(self, now_s: float) -> None:
        for index, slave in enumerate(self.slaves):
            if self.due_s[index] > now_s:
                continue
            if slave.car is not None and slave.car.plugged:
                slave.unplug(now_s)
                self.due_s[index] = now_s + self.rng.uniform(*AWAY_S)
            else:
                slave.plug(now_s)
                self.due_s[index] = now_s + self.rng.uniform(*PLUGGED_S)
            self.changes += 1


FAULT_KINDS = (
    "garbage",
    "bit_flip",
    "checksum_valid_garbage",
    "checksum_fixed_corruption",
    "non_ascii_vin",
    "dropped_reply",
    "slave_vanish",
    "slave_id_change",
    "master_id_linkready",
    "energy_stale",
    "energy_negative",
    "energy_nan",
    "energy_huge",
    "wallclock_jump",
    "monotonic_jump",
)


@dataclass
class FaultTargets:
    """Everything a fault acts on."""

    bus: FaultyBus
    foreign: ForeignDevice
    energy: EnergyFaults
    wallclock: WallClock
    probe: CoreProbe
    watch: HeartbeatWatch
    owners: dict[int, int]  # TWCID -> simulated slave index, for the heartbeat watch
    master_twcid: int


class FaultInjector:
    """Starts one fault of a random kind at random times: a Poisson process of ``rate_per_s``."""

    def __init__(
        self, targets: FaultTargets, rng: random.Random, rate_per_s: float, start_s: float
    ) -> None:
        self.t = targets
        self.rng = rng
        self.rate_per_s = rate_per_s
        self.counts: Counter[str] = Counter()
        self._next_s = start_s + self._interval_s()

    def next_s(self) -> float:
        return self._next_s

    def run_due(self, now_s: float) -> None:
        while self._next_s <= now_s:
            kind = self.rng.choice(FAULT_KINDS)
            if _STARTERS[kind](self, now_s) is not False:
                self.counts[kind] += 1
            self._next_s += self._interval_s()

    def _interval_s(self) -> float:
        return self.rng.expovariate(self.rate_per_s) if self.rate_per_s > 0 else math.inf

    # -- one method per kind (False: nothing to act on now)

    def _garbage(self, now_s: float) -> None:
        self.t.bus.inject(garbage(self.rng), now_s)

    def _valid_garbage(self, now_s: float) -> None:
        self.t.bus.inject(checksum_valid_garbage(self.rng), now_s)

    def _non_ascii_vin(self, now_s: float) -> None:
        sender = self.rng.choice(self.t.bus.slaves).twcid
        self.t.bus.inject(non_ascii_text_frame(self.rng, sender), now_s)

    def _vanish(self, now_s: float) -> bool:
        present = self.t.bus.present_indices()
        if not present:
            return False
        index = self.rng.choice(present)
        duration_s = self.rng.uniform(*VANISH_S)
        self.t.bus.vanish(index, now_s, duration_s)
        self.t.watch.excuse(index, now_s, now_s + duration_s + RELINK_S)
        return True

    def _change_id(self, now_s: float) -> None:
        """§5.5: a slave moves to a new ID (and sign); it announces it once it misses us."""
        index = self.rng.randrange(len(self.t.bus.slaves))
        slave = self.t.bus.slaves[index]
        known = self.t.bus.monitor.slave_max_amps  # every ID a simulated slave ever had
        del self.t.owners[slave.twcid]  # heartbeats to the old ID no longer reach it
        slave.twcid = random_twcid(self.rng, avoid={*known, self.t.master_twcid})
        slave.sign = random_sign(self.rng)
        self.t.owners[slave.twcid] = index
        known[slave.twcid] = slave.max_amps
        # It announces the new ID once it has missed heartbeats for MASTER_LOST_S.
        self.t.watch.excuse(index, now_s, now_s + MASTER_LOST_S + RELINK_S)

    def _foreign(self, now_s: float) -> None:
        self.t.foreign.start(now_s, self.rng.uniform(*FOREIGN_S))

    def _wallclock_jump(self, now_s: float) -> None:
        self.t.wallclock.offset_s += self.rng.uniform(*WALLCLOCK_JUMP_S)

    def _monotonic_jump(self, now_s: float) -> None:
        duration_s = self.rng.uniform(*MONOTONIC_JUMP_S)
        self.t.probe.stall(now_s, duration_s)
        # The first round after it is a catch-up: the overdue slaves at once, in a new order.
        self.t.watch.excuse(None, now_s, now_s + duration_s + HEARTBEAT_INTERVAL_S)


def _arming(kind: str) -> Callable[[FaultInjector, float], None]:
    """A fault that spoils the next reply (dropped, bits flipped, checksum fixed)."""
    return lambda injector, now_s: injector.t.bus.arm(kind)


def _energy_fault(kind: str) -> Callable[[FaultInjector, float], None]:
    def start(injector: FaultInjector, now_s: float) -> None:
        injector.t.energy.start(kind, now_s, injector.rng.uniform(*ENERGY_FAULT_S))

    return start


_STARTERS: dict[str, Callable[[FaultInjector, float], Any]] = {
    "garbage": FaultInjector._garbage,
    "bit_flip": _arming("bit_flip"),
    "checksum_valid_garbage": FaultInjector._valid_garbage,
    "checksum_fixed_corruption": _arming("checksum_fixed_corruption"),
    "non_ascii_vin": FaultInjector._non_ascii_vin,
    "dropped_reply": _arming("dropped_reply"),
    "slave_vanish": FaultInjector._vanish,
    "slave_id_change": FaultInjector._change_id,
    "master_id_linkready": FaultInjector._foreign,
    "energy_stale": _energy_fault("energy_stale"),
    "energy_negative": _energy_fault("energy_negative"),
    "energy_nan": _energy_fault("energy_nan"),
    "energy_huge": _energy_fault("energy_huge"),
    "wallclock_jump": FaultInjector._wallclock_jump,
    "monotonic_jump": FaultInjector._monotonic_jump,
}
assert set(_STARTERS) == set(FAULT_KINDS)


# --- the virtual day: running it ---------------------------------------------------------------


@dataclass(frozen=True)
class VirtualOptions:
    hours: float = DEFAULT_HOURS
    fault_rate_per_s: float = DEFAULT_FAULT_RATE_PER_S
    seed: int = 1
    profile: Profile | None = None  # None: the built-in sky (a cumulus day)
    start_s: float = 0.0  # time of day the run starts at
    trace_memory: bool = False  # tracemalloc the core's allocations (about 5x slower)


@dataclass
class VirtualReport:
    hours: float
    profile: str
    slaves: int
    fault_rate_per_s: float
    seed: int
    faults: dict[str, int]
    car_plug_changes: int
    heartbeats: int
    heartbeats_missed: int
    longest_heartbeat_gap_s: float  # of the gaps not excused by a fault
    missed_examples: list[str]
    set_limits_checked: int
    violations: dict[str, int]
    violation_examples: list[str]
    exceptions_escaped: dict[str, int]  # by the Core method they escaped from
    exception_examples: list[str]
    internal_errors: int  # errors Core caught itself (they should stay 0 too)
    last_internal_error: str
    charged_kwh: float
    charged_from_surplus_kwh: float
    grid_import_for_charging_kwh: float
    car_interruptions: int  # power cuts under a charging car (a vanished slave's, mostly)
    rss_start_mb: float | None
    rss_after_first_hour_mb: float | None
    rss_end_mb: float | None
    core_traced_after_first_hour_kb: float | None  # --tracemalloc: core, protocol, control
    core_traced_end_kb: float | None
    cpu_s: float
    wall_s: float
    warnings: list[str]  # what Core logged at warning level or above, most frequent first

    def failures(self) -> list[str]:
        return _failures(
            "virtual",
            missed=self.heartbeats_missed,
            violations=sum(self.violations.values()),
            exceptions=sum(self.exceptions_escaped.values()),
            internal_errors=self.internal_errors,
        )

    def title(self) -> str:
        return (
            f"soak, virtual time: {self.hours:g} h of {self.profile}, {self.slaves} TWCs, "
            f"faults at {self.fault_rate_per_s:g}/s, seed {self.seed}"
        )

    def rows(self) -> list[tuple[str, str]]:
        faults = sorted(self.faults.items(), key=lambda item: FAULT_KINDS.index(item[0]))
        return [
            ("faults injected", str(sum(self.faults.values()))),
            *((f"  {kind}", str(count)) for kind, count in faults),
            ("cars plugged in / out", str(self.car_plug_changes)),
            ("heartbeats sent", str(self.heartbeats)),
            ("heartbeats missed (> 1.5 s)", str(self.heartbeats_missed)),
            ("longest heartbeat gap (not excused)", f"{self.longest_heartbeat_gap_s:.2f} s"),
            ("set-limit heartbeats checked", str(self.set_limits_checked)),
            ("invariant violations", _counts(self.violations)),
            ("exceptions escaped from Core", _counts(self.exceptions_escaped)),
            ("errors caught inside Core", str(self.internal_errors)),
            ("warnings logged by Core (distinct)", str(len(self.warnings))),
            (
                "energy charged",
                f"{self.charged_kwh:.2f} kWh (from surplus {self.charged_from_surplus_kwh:.2f}, "
                f"grid {self.grid_import_for_charging_kwh:.2f})",
            ),
            ("car interruptions", str(self.car_interruptions)),
            (
                "RSS start / after 1 h / end",
                " / ".join(
                    _mb(v)
                    for v in (self.rss_start_mb, self.rss_after_first_hour_mb, self.rss_end_mb)
                ),
            ),
            (
                "core allocations after 1 h / end",
                " / ".join(
                    _kb(v) for v in (self.core_traced_after_first_hour_kb, self.core_traced_end_kb)
                ),
            ),
            ("CPU time", f"{self.cpu_s:.1f} s (wall {self.wall_s:.1f} s)"),
        ]


class VirtualSoak:
    """One virtual run: ``DaySimulation`` with its bus, core, site and wall clock made faulty."""

    def __init__(self, options: VirtualOptions) -> None:
        self.options = options
        config = config_from_dict(soak_config_dict(), tempfile.gettempdir()).settings
        profile = options.profile or builtin_profile()
        end_s = options.start_s + options.hours * 3600.0
        sky = Sky(profile, wrap=end_s > profile.end_s)  # longer runs repeat the day
        self.sim = DaySimulation(
            config, sky, slaves=SLAVES, seed=options.seed, start_s=options.start_s, end_s=end_s
        )
        slaves = self.sim.bus.slaves
        slaves[-1].max_amps = LOW_MAX_AMPS
        limits = Limits.from_config(config)
        max_amps = {slave.twcid: slave.max_amps for slave in slaves}
        self.monitor = WireMonitor(limits, max_amps, applied_amps(slaves))
        self.watch = HeartbeatWatch()
        self.owners = {slave.twcid: index for index, slave in enumerate(slaves)}
        self.core = self.sim.core
        self._parser = codec.FrameParser()
        self._decoded: dict[bytes, list[messages.Message]] = {}
        self._wire_faults(config.rs485.master_twcid)

    def _wire_faults(self, master_twcid: int) -> None:
        rng = random.Random(self.options.seed)
        self.bus = FaultyBus(self.sim.bus, self.monitor, rng)
        self.probe = CoreProbe(self.core, self._on_frame)
        energy, wallclock = EnergyFaults(rng), WallClock()
        self.sim._site = energy.wrap(self.sim._site)  # type: ignore[method-assign]
        self.sim._wallclock = wallclock.wrap(self.sim._wallclock)  # type: ignore[method-assign]
        foreign = ForeignDevice(self.bus, master_twcid, rng)
        self.churn = CarChurn(self.bus.slaves, rng, self.options.start_s)
        targets = FaultTargets(
            self.bus, foreign, energy, wallclock, self.probe, self.watch, self.owners, master_twcid
        )
        rate = self.options.fault_rate_per_s
        self.injector = FaultInjector(targets, rng, rate, self.options.start_s)
        self.bus.timers = [self.injector, foreign, self.churn]
        self.bus.on_announcement_lost = self._announcement_lost
        self.sim.bus = self.bus  # type: ignore[assignment]
        self.sim.core = self.probe  # type: ignore[assignment]

    def _announcement_lost(self, twcids: list[int], now_s: float) -> None:
        """A slave's link-ready was spoiled: the master cannot know it until the next one."""
        for twcid in twcids:
            key = self.owners.get(twcid)
            if key is not None:
                self.watch.excuse(key, now_s, now_s + LINKREADY_PERIOD_S + RELINK_S)

    def _on_frame(self, wire: bytes, now_s: float) -> None:
        """Every frame the core sends: checked, and its heartbeats timed per slave."""
        found = self._decoded.get(wire)
        if found is None:  # most heartbeats repeat the previous one: decode each kind once
            found = list(decoded(self._parser, wire, now_s))
            if len(self._decoded) > 4096:
                self._decoded.clear()
            self._decoded[wire] = found
        for message in found:
            self.monitor.master_frame(message, now_s)
            if isinstance(message, messages.MasterHeartbeat):
                key = self.owners.get(message.receiver)
                if key is not None:
                    self.watch.beat(key, now_s)

    def run(self, progress: Callable[[float], None] | None = None) -> VirtualReport:
        sim = self.sim
        memory = _MemoryLog(self.options.trace_memory)
        cpu_start_s, wall_start_s = time.process_time(), time.perf_counter()
        t = sim.start_s
        while t < sim.end_s:
            t = min(sim.end_s, t + 3600.0)
            sim.run_until(t)
            self._trim()
            if t - sim.start_s <= 3600.0:
                memory.sample("first_hour")
            if progress is not None:
                progress(t - sim.start_s)
        memory.sample("end")
        self.watch.finish(sim.end_s)
        cpu_s, wall_s = time.process_time() - cpu_start_s, time.perf_counter() - wall_start_s
        memory.stop()
        return self._report(memory, cpu_s, wall_s)

    def _trim(self) -> None:
        """The simulated slaves log every heartbeat time; this run times them itself, so the
        lists are cut to keep RSS about the core, not the harness."""
        for slave in self.bus.slaves:
            del slave.stats.heartbeat_times_s[:-2]

    def _report(self, memory: _MemoryLog, cpu_s: float, wall_s: float) -> VirtualReport:
        result = self.sim.result()
        problems = sorted(self.sim.log.problems.items(), key=lambda item: -item[1])
        return VirtualReport(
            hours=self.options.hours,
            profile=result.profile,
            slaves=SLAVES,
            fault_rate_per_s=self.options.fault_rate_per_s,
            seed=self.options.seed,
            faults=dict(self.injector.counts),
            car_plug_changes=self.churn.changes,
            heartbeats=self.watch.heartbeats,
            heartbeats_missed=self.watch.missed,
            longest_heartbeat_gap_s=round(self.watch.worst_gap_s, 3),
            missed_examples=self.watch.examples,
            set_limits_checked=self.monitor.set_limits,
            violations=dict(self.monitor.violations),
            violation_examples=self.monitor.examples,
            exceptions_escaped=dict(self.probe.escaped),
            exception_examples=self.probe.examples,
            internal_errors=self.core.internal_errors,
            last_internal_error=self.core.snapshot(self.sim.now).last_internal_error,
            charged_kwh=round(result.charged_kwh, 3),
            charged_from_surplus_kwh=round(result.charged_from_surplus_kwh, 3),
            grid_import_for_charging_kwh=round(result.grid_import_for_charging_kwh, 3),
            car_interruptions=result.car_interruptions,
            rss_start_mb=memory.rss_mb["start"],
            rss_after_first_hour_mb=memory.rss_mb.get("first_hour"),
            rss_end_mb=memory.rss_mb.get("end"),
            core_traced_after_first_hour_kb=memory.traced_kb.get("first_hour"),
            core_traced_end_kb=memory.traced_kb.get("end"),
            cpu_s=round(cpu_s, 2),
            wall_s=round(wall_s, 2),
            warnings=[text if n == 1 else f"{text} (x{n})" for text, n in problems][:20],
        )


def run_virtual(
    options: VirtualOptions, progress: Callable[[float], None] | None = None
) -> VirtualReport:
    """Part 1: ``options.hours`` of virtual time under faults; ``progress(simulated_s)``
    is called every simulated hour."""
    return VirtualSoak(options).run(progress)


#: tracemalloc patterns of the core's own modules (the simulators and this harness excluded).
CORE_MODULES = ("*/twcmaster/core.py", "*/twcmaster/protocol/*", "*/twcmaster/control/*")


class _MemoryLog:
    """RSS (and with ``trace`` the core's traced allocations) at named moments."""

    def __init__(self, trace: bool) -> None:
        self.trace = trace
        self.rss_mb: dict[str, float | None] = {"start": rss_mb()}
        self.traced_kb: dict[str, float] = {}
        if trace:
            tracemalloc.start()

    def sample(self, name: str) -> None:
        self.rss_mb[name] = rss_mb()
        if self.trace:
            snapshot = tracemalloc.take_snapshot()
            filters = [tracemalloc.Filter(True, pattern) for pattern in CORE_MODULES]
            stats = snapshot.filter_traces(filters).statistics("filename")
            self.traced_kb[name] = round(sum(stat.size for stat in stats) / 1024, 1)

    def stop(self) -> None:
        if self.trace:
            tracemalloc.stop()


def rss_mb(pid: int | str = "self", field: str = "VmRSS") -> float | None:
    """Resident set size of a process (``VmHWM``: its peak), from /proc; None when it cannot
    be read."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(f"{field}:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


# --- the real-time run -------------------------------------------------------------------------


class ObservedBus(SimulatedBus):
    """The simulated bus that shows the monitor every frame as the slaves heard or said it."""

    def __init__(self, slaves: list[SimulatedSlave], monitor: WireMonitor) -> None:
        super().__init__(slaves)
        self.monitor = monitor
        self.last_reply = b""  # the latest bytes the slaves sent (to corrupt copies of)
        self._heard = codec.FrameParser()
        self._said = codec.FrameParser()

    def receive(self, data: bytes, now_s: float) -> None:
        for message in decoded(self._heard, data, now_s):
            self.monitor.master_frame(message, now_s)
        super().receive(data, now_s)

    def transmit(self, now_s: float) -> bytes:
        data = super().transmit(now_s)
        if data:
            self.last_reply = data
            for message in decoded(self._said, data, now_s):
                self.monitor.slave_frame(message, now_s)
        return data


NOISE_KINDS = (
    "garbage",
    "bit_flip",
    "checksum_valid_garbage",
    "checksum_fixed_corruption",
    "non_ascii_vin",
)


class NoiseMaker:
    """Writes noise towards the master at ``rate_per_s`` (a Poisson process): garbage, copies
    of the slaves' latest frame with bits flipped (checksum broken, or fixed), random frames
    with a valid checksum, VIN/serial frames with bytes >= 0x80."""

    def __init__(
        self,
        bus: ObservedBus,
        write: Callable[[bytes], None],
        rng: random.Random,
        rate_per_s: float,
    ) -> None:
        self.bus = bus
        self.write = write
        self.rng = rng
        self.rate_per_s = rate_per_s
        self.counts: Counter[str] = Counter()

    async def run(self) -> None:
        if self.rate_per_s <= 0:
            return
        while True:
            await asyncio.sleep(self.rng.expovariate(self.rate_per_s))
            kind = self.rng.choice(NOISE_KINDS)
            data = self.make(kind)
            try:
                self.write(data)
            except BlockingIOError:
                self.counts["not written (pty full)"] += 1
                continue
            self.counts[kind] += 1
            for message in decoded(codec.FrameParser(), data, 0.0):
                if isinstance(message, messages.SlaveLinkReady):  # a phantom slave
                    self.bus.monitor.linkready_heard(message.sender, message.max_centiamps)

    def make(self, kind: str) -> bytes:
        rng, reply = self.rng, self.bus.last_reply
        if kind == "bit_flip" and reply:
            return flip_bits(rng, reply)
        if kind == "checksum_fixed_corruption" and reply:
            return corrupt_keeping_checksum(rng, reply)
        if kind == "checksum_valid_garbage":
            return checksum_valid_garbage(rng)
        if kind == "non_ascii_vin":
            return non_ascii_text_frame(rng, rng.choice(self.bus.slaves).twcid)
        return garbage(rng)


@dataclass(frozen=True)
class RealtimeOptions:
    seconds: float = DEFAULT_SECONDS
    noise_rate_per_s: float = DEFAULT_NOISE_RATE_PER_S
    seed: int = 1


@dataclass
class RealtimeReport:
    seconds: float
    noise_rate_per_s: float
    seed: int
    noise: dict[str, int]
    slaves: dict[str, dict[str, Any]]  # TWCID -> heartbeat interval stats and missed
    heartbeats_missed: int
    set_limits_checked: int
    violations: dict[str, int]
    violation_examples: list[str]
    exit_code: int | None  # after SIGTERM (or on its own, when it died early)
    exited_early: bool
    rss_start_mb: float | None  # RSS_SETTLE_S after the start
    rss_end_mb: float | None
    peak_rss_mb: float | None  # VmHWM before the SIGTERM
    cpu_s: float
    errors_logged: dict[str, int]  # error-level log events by name (alarms included)
    internal_errors: int  # the daemon's "internal error" count, from its log

    def failures(self) -> list[str]:
        out = _failures(
            "real time",
            missed=self.heartbeats_missed,
            violations=sum(self.violations.values()),
            exceptions=0,
            internal_errors=self.internal_errors,
        )
        if self.exited_early:
            out.append(f"real time: the daemon exited on its own (exit code {self.exit_code})")
        elif self.exit_code != 0:
            out.append(f"real time: the daemon's exit code after SIGTERM was {self.exit_code}")
        return out

    def title(self) -> str:
        return (
            f"soak, real time: twcmaster run vs {len(self.slaves)} simulated TWCs on a pty, "
            f"{self.seconds:g} s, noise at {self.noise_rate_per_s:g}/s, seed {self.seed}"
        )

    def rows(self) -> list[tuple[str, str]]:
        rows = [("noise written", _counts(self.noise))]
        for twcid, stats in self.slaves.items():
            if not stats["count"]:
                rows.append((f"heartbeats to {twcid}", "none"))
                continue
            rows.append(
                (
                    f"heartbeats to {twcid}",
                    f"n={stats['count']} median {stats['median_s']:.3f} s, p99 "
                    f"{stats['p99_s']:.3f} s, max {stats['max_s']:.3f} s, missed {stats['missed']}",
                )
            )
        return rows + [
            ("heartbeats missed (> 1.5 s)", str(self.heartbeats_missed)),
            ("set-limit heartbeats checked", str(self.set_limits_checked)),
            ("invariant violations", _counts(self.violations)),
            ("internal errors (daemon log)", str(self.internal_errors)),
            ("error-level log events", _counts(self.errors_logged)),
            (
                "exit code after SIGTERM",
                "exited early" if self.exited_early else str(self.exit_code),
            ),
            (
                "RSS start / end / peak",
                f"{_mb(self.rss_start_mb)} / {_mb(self.rss_end_mb)} / {_mb(self.peak_rss_mb)}",
            ),
            ("CPU time", f"{self.cpu_s:.2f} s"),
        ]


@dataclass
class _DaemonRun:
    exit_code: int | None
    exited_early: bool
    rss_start_mb: float | None
    rss_end_mb: float | None
    peak_rss_mb: float | None
    cpu_s: float
    stopped_s: float
    # loop time of the SIGTERM
    errors_logged: dict[str, int]
    internal_errors: int


async def run_realtime(options: RealtimeOptions) -> RealtimeReport:
    """Part 2: ``twcmaster run`` as its own process against simulated slaves on a pty, with
    noise, for ``options.seconds``; then SIGTERM."""
    loop = asyncio.get_running_loop()
    rng = random.Random(options.seed)
    slaves = make_slaves(SLAVES, plugged=True, seed=options.seed, powered_on_s=loop.time())
    slaves[-1].max_amps = LOW_MAX_AMPS
    config = config_from_dict(soak_config_dict(), tempfile.gettempdir()).settings
    max_amps = {slave.twcid: slave.max_amps for slave in slaves}
    monitor = WireMonitor(Limits.from_config(config), max_amps, applied_amps(slaves))
    bus = ObservedBus(slaves, monitor)
    sim = PtyBus(bus)
    sim.start()
    noise = NoiseMaker(bus, sim.write_raw, rng, options.noise_rate_per_s)
    try:
        with tempfile.TemporaryDirectory() as directory:
            run = await _run_daemon(sim.path, directory, noise, options.seconds)
    finally:
        await sim.close()
    per_slave = {f"{s.twcid:04X}": _heartbeat_stats(s, run.stopped_s) for s in slaves}
    return RealtimeReport(
        seconds=options.seconds,
        noise_rate_per_s=options.noise_rate_per_s,
        seed=options.seed,
        noise=dict(noise.counts),
        slaves=per_slave,
        heartbeats_missed=sum(stats["missed"] for stats in per_slave.values()),
        set_limits_checked=monitor.set_limits,
        violations=dict(monitor.violations),
        violation_examples=monitor.examples,
        exit_code=run.exit_code,
        exited_early=run.exited_early,
        rss_start_mb=run.rss_start_mb,
        rss_end_mb=run.rss_end_mb,
        peak_rss_mb=run.peak_rss_mb,
        cpu_s=run.cpu_s,
        errors_logged=run.errors_logged,
        internal_errors=run.internal_errors,
    )


def _heartbeat_stats(slave: SimulatedSlave, stopped_s: float) -> dict[str, Any]:
    """Intervals from the slave's first heartbeat + WARMUP_S; a slave never heartbeated, or
    not since long before the stop, missed them too."""
    times = slave.stats.heartbeat_times_s
    if not times:
        return {**interval_stats([]), "missed": 1}
    times = [t for t in times if t >= times[0] + WARMUP_S] or times[-1:]
    gaps = [b - a for a, b in pairwise(times)]
    missed = sum(gap > HEARTBEAT_MISSED_S for gap in [*gaps, stopped_s - times[-1]])
    return {**interval_stats(gaps), "missed": missed}


async def _run_daemon(port: str, directory: str, noise: NoiseMaker, seconds: float) -> _DaemonRun:
    config_path = os.path.join(directory, "config.json")
    with open(config_path, "w") as handle:
        json.dump(soak_config_dict(port, directory), handle)
    log_path = os.path.join(directory, "out.log")
    with open(log_path, "w") as out:
        child = subprocess.Popen(
            [sys.executable, "-m", "twcmaster", "run", "--config", config_path],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        noise_task = asyncio.create_task(noise.run(), name="soak noise")
        try:
            settle_s = min(RSS_SETTLE_S, seconds / 3)
            alive = await _alive_for(child.pid, settle_s)
            rss_start = rss_mb(child.pid)
            alive = alive and await _alive_for(child.pid, seconds - settle_s)
            rss_end = rss_mb(child.pid) if alive else None
            # Not wait4's ru_maxrss: Linux keeps it across exec, so it would include the copy
            # of this (larger) process the child was forked from.
            peak_rss = rss_mb(child.pid, "VmHWM") if alive else None
        finally:
            noise_task.cancel()
            await asyncio.gather(noise_task, return_exceptions=True)
            stopped_s = asyncio.get_running_loop().time()
            exit_code, usage = await _stop(child)
    errors, internal = _logged_errors(log_path)
    return _DaemonRun(
        exit_code=exit_code,
        exited_early=not alive,
        rss_start_mb=rss_start,
        rss_end_mb=rss_end,
        peak_rss_mb=peak_rss,
        cpu_s=round(usage.ru_utime + usage.ru_stime, 3),
        stopped_s=stopped_s,
        errors_logged=errors,
        internal_errors=internal,
    )


def _exited(pid: int) -> bool:
    """True once the child is a zombie (exited, not yet reaped) or gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


async def _alive_for(pid: int, seconds: float) -> bool:
    """Sleep ``seconds``; False as soon as the process exits."""
    deadline_s = time.monotonic() + seconds
    while (left_s := deadline_s - time.monotonic()) > 0:
        if _exited(pid):
            return False
        await asyncio.sleep(min(1.0, left_s))
    return not _exited(pid)


async def _stop(child: subprocess.Popen) -> tuple[int, Any]:
    """SIGTERM, then the exit code and resource usage; SIGKILL after STOP_TIMEOUT_S."""
    with contextlib.suppress(ProcessLookupError):
        child.send_signal(signal.SIGTERM)
    deadline_s = time.monotonic() + STOP_TIMEOUT_S
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            child.returncode = os.waitstatus_to_exitcode(status)
            return child.returncode, usage
        if time.monotonic() > deadline_s:
            child.kill()
        await asyncio.sleep(0.05)


INTERNAL_ERROR_EVENT = "internal error, carrying on"  # Core.record_error's log event


def _logged_errors(path: str) -> tuple[dict[str, int], int]:
    """Error-level events in the daemon's JSON log by name, and its internal error count."""
    events: Counter[str] = Counter()
    internal = 0
    with open(path, errors="replace") as handle:
        for line in handle:
            if not line.startswith("{"):
                continue  # the console's status lines
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("level") in ("error", "critical"):
                name = (str(record.get("event")).splitlines() or [""])[0]
                events[name[:80]] += 1

            if record.get("event") == INTERNAL_ERROR_EVENT:
                internal = max(internal, int(record.get("count", 1)))
    return dict(events), internal


# --- report helpers ----------------------------------------------------------------------------


def _failures(
    part: str, *, missed: int, violations: int, exceptions: int, internal_errors: int
) -> list[str]:
    out = []
    if missed:
        out.append(f"{part}: {missed} heartbeat(s) missed")
    if violations:
        out.append(f"{part}: {violations} invariant violation(s)")
    if exceptions:
        out.append(f"{part}: {exceptions} exception(s) escaped from Core")
    if internal_errors:
        out.append(f"{part}: {internal_errors} internal error(s) caught")
    return out


def _counts(counts: dict[str, int]) -> str:
    if not counts:
        return "0"
    parts = ", ".join(f"{name} {n}" for name, n in sorted(counts.items(), key=lambda i: -i[1]))
    return f"{sum(counts.values())} ({parts})"


def _mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} MB"


def _kb(value: float | None) -> str:
    return "n/a (--tracemalloc)" if value is None else f"{value:.1f} kB"


def print_table(title: str, rows: Iterable[tuple[str, str]], out: Any = None) -> None:
    out = out or sys.stdout
    print(title, file=out)
    print("what | value", file=out)
    print("--- | ---", file=out)
    for name, value in rows:
        print(f"{name} | {value}", file=out)
    print(file=out, flush=True)


# --- command line ------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m twcmaster.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--virtual", action="store_true", help="run the virtual-time part")
    parser.add_argument("--realtime", action="store_true", help="run the real-time part")
    parser.add_argument("--hours", type=float, default=DEFAULT_HOURS, help="virtual hours")
    parser.add_argument(
        "--fault-rate", type=float, default=DEFAULT_FAULT_RATE_PER_S, help="faults per second"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", metavar="FILE.csv", help="site profile (default: the sky)")
    parser.add_argument("--start", default="0", help="time of day to start at (HH:MM)")
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="real-time run")
    parser.add_argument(
        "--noise-rate", type=float, default=DEFAULT_NOISE_RATE_PER_S, help="noise per second"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--tracemalloc", action="store_true", help="trace the core's allocations (slower)"
    )
    return parser


def _options(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> tuple[VirtualOptions, RealtimeOptions]:
    if not args.hours > 0 or not args.fault_rate >= 0 or not args.noise_rate >= 0:
        parser.error("--hours must be > 0, --fault-rate and --noise-rate >= 0")
    if not args.seconds >= 5:
        parser.error("--seconds must be at least 5")
    try:
        start_s = parse_clock_s(args.start)
        profile = load_profile(args.profile) if args.profile else None
    except (ValueError, OSError, ProfileError) as exc:
        parser.error(str(exc))
    virtual = VirtualOptions(
        hours=args.hours,
        fault_rate_per_s=args.fault_rate,
        seed=args.seed,
        profile=profile,
        start_s=start_s,
        trace_memory=args.tracemalloc,
    )
    realtime = RealtimeOptions(args.seconds, args.noise_rate, args.seed)
    return virtual, realtime


def _progress(hours: float) -> Callable[[float], None] | None:
    if not sys.stderr.isatty():
        return None

    def show(simulated_s: float) -> None:
        end = "\n" if simulated_s >= hours * 3600 else ""
        print(f"\r  simulated {simulated_s / 3600:5.1f} h", end=end, file=sys.stderr, flush=True)

    return show


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    virtual_options, realtime_options = _options(parser, args)
    both = not (args.virtual or args.realtime)
    configure_logging(30, "console", stream=sys.stderr)
    reports: dict[str, Any] = {}
    if args.virtual or both:
        progress = None if args.json else _progress(virtual_options.hours)
        reports["virtual"] = run_virtual(virtual_options, progress)
        if not args.json:  # each table as soon as its part is done
            print_table(reports["virtual"].title(), reports["virtual"].rows())
    if args.realtime or both:
        reports["realtime"] = asyncio.run(run_realtime(realtime_options))
        if not args.json:
            print_table(reports["realtime"].title(), reports["realtime"].rows())
    failures = [text for report in reports.values() for text in report.failures()]
    if args.json:
        out = {name: dataclasses.asdict(report) for name, report in reports.items()}
        print(json.dumps({**out, "failures": failures, "ok": not failures}))
    else:
        print("\n".join(f"FAILED: {text}" for text in failures) or "OK: no failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
