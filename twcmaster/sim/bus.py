"""The RS-485 pair between a master and simulated slaves, sans-I/O.

``SimulatedBus.receive(data, now_s)`` takes whatever bytes a master wrote; every slave hears
every frame (they filter by ID themselves, like real units). ``transmit(now_s)`` returns the
slaves' bytes that are due by then, framed like real units (a trailer byte after each frame,
§2.1) and spaced so that no two frames overlap on the half-duplex pair (§5.2).
``next_event_s()`` says when to call ``transmit`` next, so an event loop can sleep exactly that
long. Section numbers refer to ``shared/protocol/twc-rs485.md``.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from twcmaster.protocol import codec, messages
from twcmaster.sim.car import CarConfig, SimulatedCar
from twcmaster.sim.slave import SimulatedSlave, distinct_twcids, random_sign

#: Real units send one byte after the closing C0; FE is what TM/DV comments and the TM dummy
#: simulator show (§2.1, §8 Q1). None sends no trailer.
DEFAULT_TRAILER = 0xFE
#: How long a slave takes to start its reply after a request; not recorded anywhere, 20 ms is
#: well inside the >= 100 ms reply window masters leave (§5.1, §5.2).
DEFAULT_REPLY_DELAY_S = 0.02


@dataclass
class BusStats:
    frames_received: int = 0  # well-formed frames from the master
    bad_frames: int = 0  # rejected by the parser (checksum, escape, length)
    frames_sent: int = 0


class SimulatedBus:
    """Glue between a master's bytes and a list of ``SimulatedSlave``."""

    def __init__(
        self,
        slaves: Iterable[SimulatedSlave],
        *,
        trailer: int | None = DEFAULT_TRAILER,
        reply_delay_s: float = DEFAULT_REPLY_DELAY_S,
    ) -> None:
        self.slaves = list(slaves)
        self.trailer = trailer
        self.reply_delay_s = reply_delay_s
        self.stats = BusStats()
        # Real slaves answer TM's 15-byte and ESP32 masters' 13-byte requests (§2.5).
        self._parser = codec.FrameParser(accepted_lengths=codec.LENIENT_BODY_LENGTHS)
        self._queue: deque[tuple[float, bytes]] = deque()  # (due, wire bytes), due ascending
        self._free_at_s = -math.inf  # the pair is busy with a frame until then
        self._now_s = -math.inf  # latest time seen, for ``plug`` without a time

    def receive(self, data: bytes, now_s: float) -> None:
        """Bytes from the master; replies are queued ``reply_delay_s`` after each frame."""
        # (max() written out here and below: these run for every frame)
        if now_s > self._now_s:
            self._now_s = now_s
        if now_s > self._free_at_s:
            self._free_at_s = now_s  # the master was talking until now
        for event in self._parser.feed(data, now_s):
            if isinstance(event, codec.BadFrame):
                self.stats.bad_frames += 1
                continue
            self.stats.frames_received += 1
            message = messages.decode(event.body)
            for slave in self.slaves:  # each ignores a frame addressed to another
                for reply in slave.handle(message, now_s):
                    self._enqueue(reply, now_s + self.reply_delay_s)

    def transmit(self, now_s: float) -> bytes:
        """The slaves' bytes due by ``now_s`` (link-readies included), in wire order."""
        if now_s > self._now_s:
            self._now_s = now_s
        for slave in self.slaves:
            due_s = slave.next_event_s()
            if due_s is not None and due_s <= now_s:
                for message in slave.poll(now_s):
                    self._enqueue(message, now_s)
        out = bytearray()
        while self._queue and self._queue[0][0] <= now_s:
            out += self._queue.popleft()[1]
        return bytes(out)

    def advance(self, now_s: float) -> None:
        """Bring every slave and car up to ``now_s`` (for displays; ``transmit`` and
        ``receive`` only advance the slaves they involve)."""
        self._now_s = max(self._now_s, now_s)
        for slave in self.slaves:
            slave.advance(now_s)

    def next_event_s(self) -> float | None:
        """When ``transmit`` next returns something (None: nothing will ever be said)."""
        first = self._queue[0][0] if self._queue else None
        for slave in self.slaves:  # runs for every simulated event: no lists
            t = slave.next_event_s()
            if t is not None and (first is None or t < first):
                first = t
        return first

    def plug(self, index: int, plugged: bool, now_s: float | None = None) -> None:
        """Plug the car at slave ``index`` in or out (a new car if it has none)."""
        at_s = self._now_s if now_s is None else now_s
        at_s = 0.0 if at_s == -math.inf else at_s
        slave = self.slaves[index]
        if plugged:
            slave.plug(at_s)
        else:
            slave.unplug(at_s)

    @property
    def busy(self) -> bool:
        """True while frames wait to be sent."""
        return bool(self._queue)

    def _enqueue(self, message: messages.Message, wanted_s: float) -> None:
        """Half duplex: a frame starts no earlier than the end of the previous one."""
        wire = messages.encode_for_tx(message, self.trailer, messages.SLAVE_TX_CODES)
        due_s = self._free_at_s if self._free_at_s > wanted_s else wanted_s
        self._free_at_s = due_s + len(wire) * codec.BYTE_TIME_S
        self._queue.append((due_s, wire))
        self.stats.frames_sent += 1


def make_slaves(
    count: int = 1,
    *,
    protocol: int = 2,
    plugged: bool = True,
    max_amps: float = 32.0,
    voltage_v: float | tuple[int, int, int] = 230,
    seed: int | None = None,
    powered_on_s: float = 0.0,
) -> list[SimulatedSlave]:
    """``count`` slaves with distinct random IDs from ``seed`` (never 0000 or 7777, no C0/DB
    byte), each with a car when ``plugged``. A single ``voltage_v`` means one live phase."""
    rng = random.Random(seed)
    volts = voltage_v if isinstance(voltage_v, tuple) else (round(voltage_v), 0, 0)
    slaves = []
    for twcid in distinct_twcids(count, rng):
        car = SimulatedCar(seed=rng.randrange(2**32)) if plugged else None
        slave = SimulatedSlave(
            twcid,
            random_sign(rng),
            protocol,
            max_amps=max_amps,
            car=car,
            voltage_v=volts,
            seed=rng.randrange(2**32),
            powered_on_s=powered_on_s,
        )
        slaves.append(slave)
    return slaves


# --- demo: cars come and go --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DemoConfig:
    """How often cars come and go in the demo (each stay/absence: 0.5x .. 1.5x the mean)."""

    mean_stay_s: float = 30 * 60.0
    mean_away_s: float = 10 * 60.0
    non_tesla_share: float = 0.15  # cars that give no VIN (§1.1)
    battery_kwh: tuple[float, float] = (50.0, 100.0)
    soc_start: tuple[float, float] = (0.2, 0.7)
    soc_limit: tuple[float, float] = (0.8, 0.9)


class DemoScenario:
    """Seeded arrivals and departures: a car leaves after a while, another one arrives later.

    ``step(now_s)`` applies what is due and returns one line per change; ``next_event_s()``
    says when the next change happens.
    """

    def __init__(
        self,
        bus: SimulatedBus,
        *,
        seed: int = 0,
        start_s: float = 0.0,
        config: DemoConfig | None = None,
    ) -> None:
        self.bus = bus
        self.config = config or DemoConfig()
        self._rng = random.Random(seed)
        self._next_s = [start_s + self._stay_or_away(slave) for slave in bus.slaves]

    def next_event_s(self) -> float:
        return min(self._next_s)

    def step(self, now_s: float) -> list[str]:
        changes = []
        for index, slave in enumerate(self.bus.slaves):
            if self._next_s[index] > now_s:
                continue
            changes.append(self._toggle(slave, now_s))
            self._next_s[index] = now_s + self._stay_or_away(slave)
        return changes

    def _toggle(self, slave: SimulatedSlave, now_s: float) -> str:
        if slave.car is not None and slave.car.plugged:
            slave.unplug(now_s)
            return f"car left TWC {slave.twcid:04X}"
        car = slave.plug(now_s, car=self._new_car())
        return f"car {car.vin or '(no VIN)'} arrived at TWC {slave.twcid:04X}"

    def _new_car(self) -> SimulatedCar:
        rng, cfg = self._rng, self.config
        config = CarConfig(
            battery_kwh=rng.uniform(*cfg.battery_kwh),
            soc_start=rng.uniform(*cfg.soc_start),
            soc_limit=rng.uniform(*cfg.soc_limit),
        )
        tesla = rng.random() >= cfg.non_tesla_share
        return SimulatedCar(config, tesla=tesla, plugged=False, seed=rng.randrange(2**32))

    def _stay_or_away(self, slave: SimulatedSlave) -> float:
        present = slave.car is not None and slave.car.plugged
        mean = self.config.mean_stay_s if present else self.config.mean_away_s
        return self._rng.uniform(0.5, 1.5) * mean
