"""A simulated Gen2 TWC on rotary switch ``F`` (slave), sans-I/O.

``SimulatedSlave.handle(message, now_s)`` is what the unit does with a frame it hears (every
frame on the bus: it filters by its own ID like a real unit); ``poll(now_s)`` is what it says on
its own (link-ready while it has no master). Neither sleeps; the caller owns the clock.

The unit behaves as the protocol notes describe real slaves, not as our master expects: it
copies any limit it is given (§4.1), ignores a P2 ``05`` once the car charges, announces itself
every 10 s without a master, stops the car after ~30 s without heartbeats, moves to a new ID
when a master announces its own, and locks up on heartbeat command ``02``.
Section numbers refer to ``shared/protocol/twc-rs485.md``.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field

from twcmaster.protocol import codec, messages
from twcmaster.protocol.messages import CENTIAMPS_PER_AMP, TWCMANAGER_MASTER_ID, Code, Message
from twcmaster.sim.car import CarPhase, SimulatedCar

# --- timing (§5.1, §3.2) ------------------------------------------------------------------------

#: A slave with no master sends a link-ready every 10 s (§3.2, §5.1).
LINKREADY_PERIOD_S = 10.0
#: First link-ready after power-up: shortly after, with a per-unit jitter so that several units
#: powered together do not announce at the same instant (assumption; no source times it).
FIRST_LINKREADY_DELAY_S = 1.0
FIRST_LINKREADY_JITTER_S = 1.0
#: About 10 s without a heartbeat: the slave considers its master lost (§5.1).
MASTER_LOST_S = 10.0
#: A charging car faults/stops after about 20-30 s without heartbeats; TM docs say 30 s (§5.1).
CHARGE_FAULT_S = 30.0
#: §3.2: a slave ignores the first master link-ready 2 and answers the second about 0.2 s
#: later with five link-ready messages. Their spacing is not recorded; 0.1 s is a guess.
LINKREADY_BURST_DELAY_S = 0.2
LINKREADY_BURST_COUNT = 5
LINKREADY_BURST_SPACING_S = 0.1
#: LR2 frames further apart than this belong to different bursts (masters space them 0.125 s
#: (TM) to 1 s (JN/EW), §5.1).
LINKREADY2_BURST_GAP_S = 2.0
#: State 03 "briefly after plug-in" (§4.2).
PLUG_IN_SETTLE_S = 1.0
#: ``FC A1`` silences a TWC for about 5 s (§3.1).
SILENCE_FC_A1_S = 5.0

# --- wire values ---------------------------------------------------------------------------------

#: Some units report ~0.25 A (``00 19``) with no current flowing: a calibration offset (§4.2).
IDLE_OFFSET_AMPS = 0.25
#: Firmware 4.5.3 adds the 20-byte extended replies, FB EC/ED, VIN and FC B1/B2 (§2.6, §3.5).
EXTENDED_FIRMWARE = (4, 5, 3)
DEFAULT_P2_FIRMWARE = (4, 5, 3, 0)
#: No source records a P1 firmware number; this placeholder is below 4.5.3 on purpose.
DEFAULT_P1_FIRMWARE = (1, 0, 0, 0)
#: Simulated slaves never take TWCMANAGER_MASTER_ID, the fake master ID TWCManager uses (§1.2).
#: Bytes that would need escaping in an ID (§1.2: legal but awkward); real IDs may have them,
#: simulated ones avoid them so that captures stay readable.
ESCAPED_BYTES = frozenset({codec.FRAME_END, codec.ESC})
#: Model string for the old-form ``FB 1A`` query; real strings are not recorded (§3.4).
SIM_MODEL = "TWC2-SIM"
#: Codes that damage or lock a real unit (§3.1, §3.5): the simulator goes silent until reset.
BRICKING_CODES = frozenset({0xFC19, 0xFC1A, 0xFBE8})


#: Heartbeat replies built lately, by their fields (frozen messages, shared by all units).
REPLIES_MEMO_MAX = 64
_REPLIES: dict[tuple[int, int, int, int, int, int], messages.SlaveHeartbeat] = {}

#: Frames that name the one unit they are for (the others ignore them).
_ADDRESSED = (messages.MasterHeartbeat, messages.AddressedRequest)

#: S0 of the slave heartbeat (§4.2); the simulator reports READY, CHARGING, ERROR,
#: DO_NOT_CHARGE, READY_TO_CHARGE and STARTING.
State = messages.SlaveState


class P2ZeroOffer(enum.Enum):
    """What a P2 slave does with ``09 00 00`` while its car charges. §6.7 says only "not
    reliable"; DV's README: no way was found to stop newer TWCs "without risking putting the
    car into an error state where it will not charge again until the TWC is re-plugged"."""

    #: Default: the car stops (~0 A, state 03) and the cut counts as an interruption: after
    #: ``CarConfig.max_interruptions`` of them the car refuses until re-plugged.
    STOP = "stop"
    #: The slave keeps its previous limit and the car keeps charging (S1-S2 unchanged).
    IGNORE = "ignore"


@dataclass(frozen=True, slots=True)
class SlaveOptions:
    """Behaviour switches; the defaults follow the protocol notes."""

    #: §3.2 LR2 behaviour: ignore the first FB E2 of a burst, answer the second with 5 LRs.
    answer_second_linkready2: bool = True
    p2_zero_offer: P2ZeroOffer = P2ZeroOffer.STOP
    idle_offset_amps: float = IDLE_OFFSET_AMPS
    linkready_period_s: float = LINKREADY_PERIOD_S
    master_lost_s: float = MASTER_LOST_S
    charge_fault_s: float = CHARGE_FAULT_S
    #: Lifetime energy counter at power-up (kWh, TM's reading of FD EB, §8 Q7); None = random.
    lifetime_kwh: int | None = None
    #: 11-character serial (FD ED); None = made up from the TWCID as DV reads it (§3.4).
    serial: str | None = None


@dataclass
class SlaveStats:
    """What tests and benchmarks assert on."""

    heartbeat_times_s: list[float] = field(default_factory=list)  # FB E0 addressed to us
    max_limit_centiamps: int = 0  # highest limit ever accepted (it trusts the master, §4.1)
    unknown_codes: int = 0  # frames whose code or layout a slave does not know
    blocked_codes: int = 0  # never-send codes (§3.5) heard on the bus
    unknown_commands: int = 0  # heartbeat M0 values it does not act on (06, 07, 09 on P1, ...)
    error_commands: int = 0  # heartbeat command 02 addressed to us (§4.1)
    ignored_limits: int = 0  # P2 05 while charging; P2 09 00 00 in IGNORE mode
    unsupported_requests: int = 0  # queries its firmware does not answer
    linkreadies_sent: int = 0
    replies_sent: int = 0
    id_changes: int = 0

    def heartbeat_intervals_s(self) -> list[float]:
        times = self.heartbeat_times_s
        return [b - a for a, b in zip(times, times[1:], strict=False)]


def random_twcid(rng: random.Random, avoid: Iterable[int] = ()) -> int:
    """A random TWCID: never 0000 or 7777, no C0/DB byte, not in ``avoid`` (§1.2)."""
    taken = set(avoid) | {0x0000, TWCMANAGER_MASTER_ID}
    while True:
        twcid = rng.randrange(0x10000)
        if twcid not in taken and not {twcid >> 8, twcid & 0xFF} & ESCAPED_BYTES:
            return twcid


def random_sign(rng: random.Random) -> int:
    """A random sign byte (§1.2), without the bytes that need escaping."""
    while (sign := rng.randrange(0x100)) in ESCAPED_BYTES:
        pass
    return sign


def distinct_twcids(count: int, rng: random.Random) -> list[int]:
    ids: list[int] = []
    for _ in range(count):
        ids.append(random_twcid(rng, avoid=ids))
    return ids


def make_serial(twcid: int, rng: random.Random) -> str:
    """An 11-character serial as DV reads them: "A" + 2-digit year + period letter + 3 digits
    + the TWCID in hex at characters 8-11 (§3.4)."""
    year = rng.randrange(16, 20)
    period = rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ")
    return f"A{year:02d}{period}{rng.randrange(1000):03d}{twcid:04X}"


class SimulatedSlave:
    """One TWC in slave mode, with an optional car at its connector."""

    def __init__(
        self,
        twcid: int,
        sign: int,
        protocol: int = 2,
        *,
        max_amps: float = 32.0,
        car: SimulatedCar | None = None,
        voltage_v: tuple[int, int, int] = (230, 0, 0),
        firmware: tuple[int, int, int, int] | None = None,
        seed: int | None = None,
        powered_on_s: float = 0.0,
        options: SlaveOptions | None = None,
    ) -> None:
        if protocol not in (1, 2):
            raise ValueError(f"protocol must be 1 or 2, not {protocol!r}")
        self.twcid = twcid
        self.sign = sign
        self.protocol = protocol
        self.max_amps = max_amps
        self.car = car
        self.voltage_v = voltage_v
        self.firmware = firmware or (DEFAULT_P2_FIRMWARE if protocol == 2 else DEFAULT_P1_FIRMWARE)
        self.options = options or SlaveOptions()
        self.stats = SlaveStats()
        self._rng = random.Random(seed)
        self.serial = self.options.serial or make_serial(twcid, self._rng)
        start_kwh = self.options.lifetime_kwh
        self._lifetime_kwh = float(self._rng.randrange(2000) if start_kwh is None else start_kwh)

        self._now_s = powered_on_s
        self._limit_centiamps = 0  # the last limit accepted (S1-S2 while a car is plugged)
        self._stopped = False  # told to stop (0 A), or cut off: 03 until a new limit arrives
        self._relay_open = False  # FC B2 (§3.5)
        self._silent_until_s = -math.inf  # error state, bricked, or FC A1
        self._error = False
        self._plugged_at_s = powered_on_s
        self._master_id: int | None = None
        self._last_heartbeat_s: float | None = None
        self._fault_applied = False
        jitter_s = self._rng.uniform(0.0, FIRST_LINKREADY_JITTER_S)
        self._next_linkready_s = powered_on_s + FIRST_LINKREADY_DELAY_S + jitter_s
        self._burst_times_s: list[float] = []  # pending link-readies answering an LR2 burst
        self._supply_of: tuple[int, ...] | None = None  # the voltage_v _supply_cached is of
        self._supply_cached = (230.0, 1)
        self._lr2_count = 0
        self._last_lr2_s = -math.inf

    # --- what tests and displays read ---------------------------------------------------------

    @property
    def limit_amps(self) -> float:
        return self._limit_centiamps / CENTIAMPS_PER_AMP

    @property
    def actual_amps(self) -> float:
        return self.car.actual_amps if self._car_present else 0.0

    @property
    def lifetime_kwh(self) -> float:
        return self._lifetime_kwh

    @property
    def master_id(self) -> int | None:
        return self._master_id

    @property
    def error(self) -> bool:
        return self._error

    @property
    def relay_closed(self) -> bool:
        return not self._relay_open

    def has_master(self, now_s: float) -> bool:
        last = self._last_heartbeat_s
        return last is not None and now_s - last < self.options.master_lost_s

    def state(self, now_s: float) -> State:
        """S0 as the next heartbeat reply would report it (§4.2)."""
        if self._error:
            return State.ERROR
        if not self._car_present:
            return State.READY
        phase = self.car.phase
        if now_s - self._plugged_at_s < PLUG_IN_SETTLE_S or self._stopped or self._relay_open:
            return State.DO_NOT_CHARGE
        if phase in (CarPhase.FULL, CarPhase.REFUSING, CarPhase.STOPPED):
            return State.DO_NOT_CHARGE  # §4.2: 03 "stays there after the car's own stop"
        if self._limit_centiamps == 0:
            return State.READY_TO_CHARGE  # asking for an allocation (§4.2)
        if phase is CarPhase.STARTING:
            return State.STARTING
        if phase is CarPhase.CHARGING:
            return State.CHARGING
        return State.DO_NOT_CHARGE  # a limit below what the car accepts (§6.1)

    # --- plug ---------------------------------------------------------------------------------

    def plug(self, now_s: float, car: SimulatedCar | None = None) -> SimulatedCar:
        """Plug a car in (``car`` replaces the one at the connector; default: the same car)."""
        self.advance(now_s)
        if car is not None:
            self.car = car
        if self.car is None:
            self.car = SimulatedCar(seed=self._rng.randrange(2**32), plugged=False)
        self.car.plug(now_s)
        self._plugged_at_s = now_s
        self._stopped = False
        return self.car

    def unplug(self, now_s: float) -> None:
        self.advance(now_s)
        if self.car is not None:
            self.car.unplug(now_s)
        self._stopped = False

    def reset(self, now_s: float) -> None:
        """Hold the reset button: the unit restarts, leaves the error state and talks again
        (§4.1). The car stays plugged."""
        self.advance(now_s)
        self._error = False
        self._silent_until_s = -math.inf
        self._limit_centiamps = 0
        self._stopped = False
        self._relay_open = False
        self._last_heartbeat_s = None
        self._next_linkready_s = now_s + FIRST_LINKREADY_DELAY_S

    # --- the sans-I/O interface ---------------------------------------------------------------

    def handle(self, message: Message, now_s: float) -> list[Message]:
        """React to a frame heard on the bus; return the replies to send."""
        if self._addressed_to_another(message):
            return []  # the common case on a shared bus: nothing to do, not even the clock
        self.advance(now_s)
        if isinstance(message, messages.Unknown):
            self._on_unknown(message, now_s)
            return []
        if isinstance(message, messages.MasterHeartbeat):
            return self._on_heartbeat(message, now_s)
        if self._silent(now_s):
            return []
        if isinstance(message, messages.MasterLinkReady):
            self._on_master_linkready(message, now_s)
        elif isinstance(message, messages.AddressedRequest):
            return self._on_request(message, now_s)
        elif isinstance(message, messages.UnaddressedMessage):
            return self._on_unaddressed(message)
        return []  # other slaves' frames: not for us

    def poll(self, now_s: float) -> list[Message]:
        """What the unit says on its own by ``now_s`` (link-ready messages)."""
        self.advance(now_s)
        if self._silent(now_s):
            return []
        out: list[Message] = []
        while self._burst_times_s and self._burst_times_s[0] <= now_s:
            self._burst_times_s.pop(0)
            out.append(self._linkready())
        if now_s >= self._next_linkready_s:
            out.append(self._linkready())
            period = self.options.linkready_period_s
            self._next_linkready_s += period
            if self._next_linkready_s <= now_s:  # polled late: one message, not a catch-up
                self._next_linkready_s = now_s + period
        return out

    def next_event_s(self) -> float | None:
        """When ``poll`` next has something to say (None: never, e.g. in the error state)."""
        if self._silent_until_s == math.inf:
            return None
        due = self._next_linkready_s
        if self._burst_times_s and self._burst_times_s[0] < due:
            due = self._burst_times_s[0]
        return due if due >= self._silent_until_s else self._silent_until_s

    def advance(self, now_s: float) -> None:
        """Run the car and the timeouts up to ``now_s`` (time never goes backwards)."""
        if now_s <= self._now_s:
            return  # nothing has happened since
        last_s = self._last_heartbeat_s  # _charge_fault_at_s, inline (this runs per frame)
        if last_s is not None and not self._fault_applied:
            fault_at_s = last_s + self.options.charge_fault_s
            if now_s >= fault_at_s:
                self._step_car(fault_at_s)
                self._on_heartbeats_lost_too_long()
        self._step_car(now_s)
        self._now_s = now_s

    # --- heartbeats (§3.3, §4) ----------------------------------------------------------------

    def _on_heartbeat(self, heartbeat: messages.MasterHeartbeat, now_s: float) -> list[Message]:
        if heartbeat.sender == self.twcid:
            return []
        self.stats.heartbeat_times_s.append(now_s)
        if now_s < self._silent_until_s:
            return []
        self._master_id = heartbeat.sender
        self._last_heartbeat_s = now_s
        self._fault_applied = False
        self._next_linkready_s = now_s + self.options.master_lost_s
        self._apply_command(heartbeat.command, heartbeat.centiamps, now_s)
        self._step_car(now_s)  # zero-length step: the car sees the new offer at once
        return [self._heartbeat_reply(now_s)]

    def _apply_command(self, command: int, centiamps: int, now_s: float) -> None:
        """M0 semantics of §4.1."""
        if command == messages.HeartbeatCommand.NO_CHANGE:
            return
        if command == messages.HeartbeatCommand.ERROR:
            self._enter_error()
        elif command == messages.HeartbeatCommand.SET_LIMIT_P1:
            if self.protocol == 2 and self._car_charging:
                self.stats.ignored_limits += 1  # P2: 05 only counts before charging (§4.1)
            else:
                self._set_limit(centiamps)
        elif command == messages.HeartbeatCommand.ACK_STOPPED:
            if centiamps:  # "carries an amp value the slave may use" (§4.1)
                self._set_limit(centiamps)
        elif command == messages.HeartbeatCommand.SET_LIMIT_P2 and self.protocol == 2:
            self._set_limit(centiamps)
        else:
            self.stats.unknown_commands += 1  # 06/07 (not modelled), 09 on P1, anything else

    def _set_limit(self, centiamps: int) -> None:
        """Copy the limit, however absurd (§4.1: 655.35 A was accepted)."""
        if centiamps == 0:
            self._set_zero_limit()
            return
        self.stats.max_limit_centiamps = max(self.stats.max_limit_centiamps, centiamps)
        self._limit_centiamps = centiamps
        self._stopped = False

    def _set_zero_limit(self) -> None:
        """0 A: P1 stops the car cleanly (state 03, §6.6/§6.7); P2 per ``P2ZeroOffer``."""
        drawing = self._car_present and self.car.phase in (CarPhase.STARTING, CarPhase.CHARGING)
        if self.protocol == 2 and drawing:
            if self.options.p2_zero_offer is P2ZeroOffer.IGNORE:
                self.stats.ignored_limits += 1
                return
            self.car.interrupt()
        self._limit_centiamps = 0
        self._stopped = self._car_present

    def _enter_error(self) -> None:
        """Command 02: answer once with state 02, then stay silent until reset (§4.1)."""
        self.stats.error_commands += 1
        self._cut_power()
        self._error = True

    def _heartbeat_reply(self, now_s: float) -> messages.SlaveHeartbeat:
        state = self.state(now_s)
        if self._error:
            self._silent_until_s = math.inf  # this reply is the last thing it says
        allowed = self._limit_centiamps if self._car_present else 0  # CP: 0 without a car
        actual = self.actual_amps
        if self.options.idle_offset_amps > actual:
            actual = self.options.idle_offset_amps
        self.stats.replies_sent += 1
        key = (
            self.twcid,
            self._master_id or 0,
            int(state),
            allowed,
            round(actual * CENTIAMPS_PER_AMP),
            self.protocol,
        )
        reply = _REPLIES.get(key)
        if reply is None:  # a steady car gives the same reply every second: built once
            reply = messages.SlaveHeartbeat.build(*key)
            if len(_REPLIES) >= REPLIES_MEMO_MAX:
                _REPLIES.clear()
            _REPLIES[key] = reply
        return reply

    def _charge_fault_at_s(self) -> float | None:
        if self._last_heartbeat_s is None or self._fault_applied:
            return None
        return self._last_heartbeat_s + self.options.charge_fault_s

    def _on_heartbeats_lost_too_long(self) -> None:
        """§5.1: ~30 s without heartbeats stops the car; a new limit is needed to restart."""
        self._fault_applied = True
        self._cut_power()

    def _cut_power(self) -> None:
        if self._car_present:
            self.car.interrupt()
            self._stopped = True
        self._limit_centiamps = 0

    # --- link-ready and IDs (§3.2, §5.5) ------------------------------------------------------

    def _linkready(self) -> messages.SlaveLinkReady:
        self.stats.linkreadies_sent += 1
        max_centiamps = round(self.max_amps * CENTIAMPS_PER_AMP)
        return messages.SlaveLinkReady(self.twcid, self.sign, max_centiamps, self.protocol)

    def _on_master_linkready(self, message: messages.MasterLinkReady, now_s: float) -> None:
        if message.sender == self.twcid:
            self._change_id(avoid=message.sender)
        if message.which == 2 and self.options.answer_second_linkready2:
            self._count_linkready2(now_s)

    def _change_id(self, avoid: int) -> None:
        """§5.5: a slave that hears a master announce its own ID picks a new ID and sign."""
        self.twcid = random_twcid(self._rng, avoid=(avoid,))
        self.sign = random_sign(self._rng)
        self.stats.id_changes += 1

    def _count_linkready2(self, now_s: float) -> None:
        if now_s - self._last_lr2_s > LINKREADY2_BURST_GAP_S:
            self._lr2_count = 0  # a new burst
        self._last_lr2_s = now_s
        self._lr2_count += 1
        if self._lr2_count == 2:
            first = now_s + LINKREADY_BURST_DELAY_S
            spacing = LINKREADY_BURST_SPACING_S
            self._burst_times_s = [first + i * spacing for i in range(LINKREADY_BURST_COUNT)]

    # --- queries (§3.4, §3.5) -----------------------------------------------------------------

    def _on_request(self, request: messages.AddressedRequest, now_s: float) -> list[Message]:
        code = request.request
        if code == Code.REQUEST_ENERGY:
            return [self._energy_report()]
        if not self._extended:
            self.stats.unsupported_requests += 1  # older firmware: no answer (§3.4)
            return []
        if code in messages.VIN_REQUEST_CODES:
            return [self._vin_part(messages.VIN_REQUEST_CODES.index(code) + 1)]
        if code == Code.REQUEST_SERIAL:
            return [messages.SerialNumber(self.twcid, self.serial)]
        if code == Code.REQUEST_FIRMWARE:
            return [messages.FirmwareVersion(self.twcid, self.firmware)]
        if code == Code.REQUEST_PLUG_STATE:
            return [self._plug_state()]
        if code in (Code.START_CHARGING, Code.STOP_CHARGING):
            reply = self._start_stop(code)
            self._step_car(now_s)
            return [reply]
        return []

    def _energy_report(self) -> messages.EnergyReport:
        """FD EB: 16 bytes, or 20 with phase currents on firmware 4.5.3 (§3.4)."""
        halves = None
        if self._extended:
            live = [v > 0 for v in self.voltage_v]
            half_amps = min(255, round(self.actual_amps * 2))  # 0.5 A steps
            halves = tuple(half_amps if on else 0 for on in live)
        counter = int(self._lifetime_kwh)
        return messages.EnergyReport(self.twcid, counter, self.voltage_v, halves)

    def _vin_part(self, part: int) -> messages.VinPart:
        """All zero without a car or for a car that gives no VIN (§1.1, §3.4)."""
        vin = self.car.vin if self._car_present else None
        if not vin:
            return messages.VinPart(part, self.twcid, "")
        start = sum(messages.VIN_PART_LENGTHS[: part - 1])
        end = start + messages.VIN_PART_LENGTHS[part - 1]
        return messages.VinPart(part, self.twcid, vin[start:end])

    def _plug_state(self) -> messages.SlaveReply:
        """FD B4: 00 unplugged, 01 charging, 03 plugged in but not charging (§3.4)."""
        if not self._car_present:
            value = 0x00
        elif self.car.phase is CarPhase.CHARGING and not self._relay_open:
            value = 0x01
        else:
            value = 0x03
        return messages.SlaveReply(Code.PLUG_STATE, self.twcid, bytes([value]))

    def _start_stop(self, code: Code) -> messages.SlaveReply:
        """FC B1 closes, FC B2 opens the relay without telling the car (§3.5)."""
        if code == Code.STOP_CHARGING:
            if self._car_present and not self._relay_open:
                self.car.interrupt()
            self._relay_open = True
            return messages.SlaveReply(Code.ACK_STOP, self.twcid)
        self._relay_open = False
        return messages.SlaveReply(Code.ACK_START, self.twcid)

    def _on_unaddressed(self, message: messages.UnaddressedMessage) -> list[Message]:
        """Old-form queries carry no ID: every unit answers (§3.4, §8 Q19). FC 1D: ignored."""
        length = 14 if self.protocol == 1 else 16
        if message.kind == Code.REQUEST_OLD_FIRMWARE:
            data = bytes(self.firmware[:3])
        elif message.kind == Code.REQUEST_OLD_SERIAL:
            data = self.serial.encode("ascii")
        elif message.kind == Code.REQUEST_MODEL:
            data = SIM_MODEL.encode("ascii")
        else:
            return []
        reply = {
            Code.REQUEST_OLD_FIRMWARE: Code.OLD_FIRMWARE,
            Code.REQUEST_OLD_SERIAL: Code.OLD_SERIAL,
            Code.REQUEST_MODEL: Code.MODEL,
        }[message.kind]
        return [messages.OldFormReply(reply, data, length)]

    def _on_unknown(self, message: messages.Unknown, now_s: float) -> None:
        """Count what a slave does not know; the dangerous codes do to it what they do to a
        real unit (§3.1): FC A1 silences it ~5 s, the flash-writing/crashing ones lock it."""
        if message.raw_code not in messages.BLOCKED_CODES:
            self.stats.unknown_codes += 1
            return
        self.stats.blocked_codes += 1
        if message.raw_code in BRICKING_CODES:
            self._cut_power()
            self._silent_until_s = math.inf
        elif message.raw_code == 0xFCA1:
            self._silent_until_s = max(self._silent_until_s, now_s + SILENCE_FC_A1_S)

    # --- helpers ------------------------------------------------------------------------------

    def _addressed_to_another(self, message: Message) -> bool:
        return isinstance(message, _ADDRESSED) and message.receiver != self.twcid

    @property
    def _car_present(self) -> bool:
        return self.car is not None and self.car.plugged

    @property
    def _car_charging(self) -> bool:
        return self._car_present and not self._stopped and self.car.phase is CarPhase.CHARGING

    @property
    def _extended(self) -> bool:
        return self.protocol == 2 and tuple(self.firmware[:3]) >= EXTENDED_FIRMWARE

    def _silent(self, now_s: float) -> bool:
        return now_s < self._silent_until_s

    def _effective_allowed_amps(self) -> float:
        if self._stopped or self._relay_open or self._error:
            return 0.0
        return self._limit_centiamps / CENTIAMPS_PER_AMP

    def _phases(self) -> int:
        return max(1, sum(1 for v in self.voltage_v if v > 0))

    def _supply(self) -> tuple[float, int]:
        """(volts, live phases) of ``voltage_v``, worked out again only when it changes (the
        car steps several times a second)."""
        voltage = self.voltage_v
        if voltage is not self._supply_of:
            self._supply_of = voltage
            self._supply_cached = (float(voltage[0] or 230), self._phases())
        return self._supply_cached

    def _step_car(self, now_s: float) -> None:
        car = self.car
        if car is None:
            return
        before_kwh = car.energy_kwh
        volts, phases = self._supply()
        car.step(now_s, self._effective_allowed_amps(), voltage_v=volts, phases=phases)
        self._lifetime_kwh += car.energy_kwh - before_kwh
