"""The bus master: the TWC conversation, sans-I/O (h11 style).

Feed it received bytes (``receive``) and ask it what to send (``poll``), always with the current
time; it returns wire bytes and events, and says when it next needs to run (``next_wakeup_s``).
It knows link-ready bursts, the slave registry, per-slave heartbeats, half-duplex gaps,
timeouts, collisions, foreign masters and slow queries (energy, VIN). It knows nothing of solar
or policy: offers come in through ``set_offer``. Section numbers refer to
``shared/protocol/twc-rs485.md``.
"""

from __future__ import annotations

import functools
import math
from collections import deque
from dataclasses import dataclass, field

from twcmaster.protocol import codec
from twcmaster.protocol import messages as m
from twcmaster.protocol.gate import (
    GateInput,
    WiringLimits,
    committed_centiamps,
    protocol_min_amps,
    wire_amps,
)
from twcmaster.protocol.messages import CENTIAMPS_PER_AMP, Code
from twcmaster.protocol.vinquery import (
    VIN_MAX_ATTEMPTS,
    VIN_RETRY_S,
    PartAnswer,
    PartVerdict,
    VinQuery,
)
from twcmaster.quickinit import quick_init

LINKREADY_COPIES = 5  # 5 x FC E1 then 5 x FB E2 (§3.2, §8 Q15)
ECHO_WINDOW_S = 1.0  # a frame we sent coming back this soon is the adapter's echo
CHARGING_AMPS = 1.0  # a car drawing at least this is charging (§6.2, §5.4 VIN polling)
# A slave announcing our own ID gets a new link-ready burst (§5.4) at most this often: a real
# slave moves after the first one; a device that keeps using our ID must not fill the bus.
COLLISION_REBURST_S = 30.0
# A dropped slave may still be drawing up to its last limit until it gives up on its master
# (about 10 s without a heartbeat, §5.1): the amps gate keeps counting it this long.
DEPARTED_HOLD_S = 30.0
# A query and its reply on the wire, at the longest body length (§2.5).
QUERY_EXCHANGE_WIRE_S = 2 * max(codec.VALID_BODY_LENGTHS) * codec.BYTE_TIME_S
FIRST_ENERGY_POLL_S = 5.0  # a new slave's first FB EB comes this long after its link-ready
# FC B1 / FC B2 exist only from this firmware on (§3.5); older units ignore them. FD EC's bytes
# are read as major, minor, revision, extended (JN); SM names them release, major, minor,
# patch, which would read lower: the safe direction (no relay command is sent).
RELAY_COMMAND_MIN_FIRMWARE = (4, 5, 3)
# The firmware question (FB EC) when the relay stop mode needs the answer: first asked this
# long after the link-ready, then again after FIRMWARE_RETRY_S, at most FIRMWARE_ATTEMPTS
# times (an older unit never answers it, §3.4).
FIRST_FIRMWARE_ASK_S = 3.0
FIRMWARE_RETRY_S = 30.0
FIRMWARE_ATTEMPTS = 3
TX_MEMO_MAX = 64  # messages whose wire bytes the master keeps (see BusMaster._tx_memo)


@dataclass(frozen=True)
class MasterSettings:
    master_twcid: int = m.TWCMANAGER_MASTER_ID
    master_sign: int = 0x77
    slave_timeout_s: float = 26.0  # drop a slave silent this long (§5.1, §8 Q13)
    heartbeat_interval_s: float = 1.0  # to EACH slave, like a real master (§5.1)
    max_slaves: int = 6  # real masters handle 3; more only if bus time allows (see README)
    linkready_spacing_s: float = 0.1  # >= 100 ms between link-ready copies (§8 Q15)
    # Leave a slave at least this long to answer a request before we talk again (§5.2), and
    # give up waiting for its reply after reply_timeout_s.
    reply_window_s: float = 0.1
    reply_timeout_s: float = 0.25
    gap_after_rx_s: float = 0.02  # quiet time after an unsolicited frame before we talk
    # After the reply we waited for (and the reply window), the line is ours once the reply's
    # trailer byte is through: real TWCs send one after the closing C0 (§2.1), and a frame
    # started on top of it collides (§5.2). Three byte times at 9600 baud.
    gap_after_reply_s: float = 0.003
    energy_poll_interval_s: float = 60.0  # FB EB per slave at most this often (§5.1)
    vin_retry_s: float = VIN_RETRY_S  # start the VIN sequence over after this (§5.4)
    vin_max_attempts: int = VIN_MAX_ATTEMPTS  # first try + 5 retries (§5.4)
    trailer_byte: int | None = None  # byte sent after each closing C0 (§8 Q1): none by default
    # Ask P2 slaves their firmware (FB EC): only the relay stop mode needs it (chargeStopMode 3).
    ask_firmware: bool = False
    # The wiring limits the amps gate applies to every heartbeat (protocol/gate.py).
    limits: WiringLimits = field(default_factory=WiringLimits)


# --- events -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    pass


@dataclass(frozen=True)
class SlaveLinked(Event):
    twcid: int
    protocol: int
    max_amps: float


@dataclass(frozen=True)
class SlaveLost(Event):
    twcid: int
    silent_s: float


@quick_init
@dataclass(frozen=True)
class HeartbeatExchanged(Event):
    """A slave answered its heartbeat: what the console prints and the controller needs."""

    twcid: int
    slave_data: bytes
    master_data: bytes  # the data block of the heartbeat this reply answers
    state: int
    allowed_amps: float
    actual_amps: float


@dataclass(frozen=True)
class EnergyReported(Event):
    twcid: int
    lifetime_kwh: int
    voltages: tuple[int, int, int]


@dataclass(frozen=True)
class VinReported(Event):
    twcid: int
    vin: str | None  # None: the car gives no VIN (non-Tesla, CAN off)


@dataclass(frozen=True)
class Alarm(Event):
    """Something the user must fix or know: logged loudly and shown in the status."""

    kind: str  # "foreign_master", "id_collision", "too_many_slaves", "slave_error", ...
    message: str
    twcid: int | None = None


@dataclass(frozen=True)
class FirmwareReported(Event):
    twcid: int
    version: tuple[int, int, int, int]


@dataclass(frozen=True)
class HeartbeatsResumed(Event):
    """The first heartbeat to a slave after its pause (chargeStopMode 2) went out."""

    twcid: int
    offer_centiamps: int  # what it carried


@dataclass(frozen=True)
class RelayAcknowledged(Event):
    """A slave acknowledged FC B1 (``started``) or FC B2 (§3.5)."""

    twcid: int
    started: bool


@dataclass(frozen=True)
class FrameRejected(Event):
    raw: bytes
    reason: str


@dataclass(frozen=True)
class DispatchFailed(Event):
    """Handling a received frame raised (a bug): the frame is dropped, the master goes on."""

    raw: bytes
    error: BaseException


@dataclass(frozen=True)
class Ignored(Event):
    message: m.Message
    reason: str


@dataclass(frozen=True)
class Sent(Event):
    """A frame went out (for debug logs and statistics)."""

    message: m.Message
    wire: bytes


# --- slave registry ---------------------------------------------------------------------------


@dataclass
class Slave:
    """What the master knows of one linked slave (mutable; owned by the master)."""

    twcid: int
    sign: int
    protocol: int
    max_centiamps: int
    linked_s: float
    last_rx_s: float
    next_heartbeat_s: float
    state: int = 0
    allowed_centiamps: int = 0
    actual_centiamps: int = 0
    slave_data: bytes = b""
    master_data: bytes = b""  # the last heartbeat data block sent
    offer_amps: int = 0  # what the controller asks for (set_offer)
    sent_centiamps: int = 0  # what the last heartbeat carried, after the amps gate
    # The highest limit sent since the slave last answered: it may have heard any of them.
    unacked_centiamps: int = 0
    heartbeat_tx_s: deque = field(default_factory=lambda: deque(maxlen=4096))
    lifetime_kwh: int | None = None
    voltages: tuple[int, int, int] | None = None
    next_energy_poll_s: float = 0.0
    vin: str | None = None  # set from what vin_query answers
    vin_query: VinQuery = field(default_factory=VinQuery)  # the VIN sequence (§5.4)
    firmware: tuple[int, int, int, int] | None = None  # from FD EC
    firmware_asks: int = 0  # FB EC sent so far
    next_firmware_ask_s: float = math.inf  # inf: not to be asked
    # No heartbeats (nor anything else) to it before this: chargeStopMode 2 lets the slave
    # notice it lost its master, which stops the car (§5.1, §6.7).
    paused_until_s: float = -math.inf
    resume_to_report: bool = False  # paused, and its first heartbeat since not yet sent
    relay_command: Code | None = None  # FC B1 / FC B2 waiting for a free slot
    gate_input: GateInput | None = None  # what the amps gate last saw of it (_gated_amps)

    def paused(self, now_s: float) -> bool:
        return now_s < self.paused_until_s

    @property
    def heartbeat_due_s(self) -> float:
        return max(self.next_heartbeat_s, self.paused_until_s)

    @property
    def relay_commands_supported(self) -> bool:
        firmware = self.firmware
        return (
            self.protocol == 2
            and firmware is not None
            and (tuple(firmware[:3]) >= RELAY_COMMAND_MIN_FIRMWARE)
        )

    @property
    def min_amps_supported(self) -> int:
        return protocol_min_amps(self.protocol)  # §6.1

    @property
    def committed_centiamps(self) -> int:
        """What it may be drawing now: its reported limit, or any limit sent since it last
        answered (a lost reply does not mean a lost command)."""
        sent = max(self.sent_centiamps, self.unacked_centiamps)
        return committed_centiamps(sent, self.allowed_centiamps)

    @property
    def answered_last_heartbeat(self) -> bool:
        return not self.heartbeat_tx_s or self.last_rx_s >= self.heartbeat_tx_s[-1]

    @property
    def actual_amps(self) -> float:
        return self.actual_centiamps / CENTIAMPS_PER_AMP

    @property
    def allowed_amps(self) -> float:
        return self.allowed_centiamps / CENTIAMPS_PER_AMP


@quick_init
@dataclass(frozen=True)
class SlaveView:
    """A slave as the layers above the bus master may see it: a frozen copy, so nothing
    outside ``protocol/`` can change the registry (read with ``BusMaster.slave_views``)."""

    twcid: int
    protocol: int
    state: int
    allowed_amps: float  # the limit it reports applying
    actual_amps: float  # what its car draws
    offer_amps: int  # what the controller last asked for it (``set_offer``)
    max_amps: float  # its own maximum, from its link-ready frame
    vin: str | None
    lifetime_kwh: int | None
    voltages: tuple[int, int, int] | None
    last_rx_s: float  # when it last answered (the master's clock)
    firmware: tuple[int, int, int, int] | None = None  # None: not (yet) reported
    paused_until_s: float = -math.inf  # heartbeats paused until then (chargeStopMode 2)
    relay_commands_supported: bool = False  # P2 with firmware >= 4.5.3: FC B1/B2 allowed


def _view(slave: Slave) -> SlaveView:
    return SlaveView(
        twcid=slave.twcid,
        protocol=slave.protocol,
        state=slave.state,
        allowed_amps=slave.allowed_amps,
        actual_amps=slave.actual_amps,
        offer_amps=slave.offer_amps,
        max_amps=slave.max_centiamps / CENTIAMPS_PER_AMP,
        vin=slave.vin,
        lifetime_kwh=slave.lifetime_kwh,
        voltages=slave.voltages,
        last_rx_s=slave.last_rx_s,
        firmware=slave.firmware,
        paused_until_s=slave.paused_until_s,
        relay_commands_supported=slave.relay_commands_supported,
    )


# --- the master -------------------------------------------------------------------------------


@dataclass
class _Pending:
    """A transmission that expects a reply from ``twcid`` (or none, for broadcasts)."""

    twcid: int | None
    until_s: float


class BusMaster:
    def __init__(self, settings: MasterSettings | None = None) -> None:
        self.settings = settings or MasterSettings()
        self.slaves: dict[int, Slave] = {}
        self.foreign_master_seen_s: float | None = None
        self._parser = codec.FrameParser()
        self._burst_left = 0  # link-ready frames still to send
        self._bus_free_s = 0.0  # earliest time we may transmit
        self._window_end_s = 0.0  # end of the reply window of our last request
        self._round_anchor_s = 0.0  # heartbeat rounds start at anchor + k * interval
        self._pending: _Pending | None = None
        self._recent_tx: deque[tuple[float, bytes]] = deque(maxlen=16)
        self._started = False
        self._collision_burst_s = -math.inf  # when an ID collision last restarted the burst
        self._stopping_s: float | None = None  # set by stop(): only 0 A from then on
        # Dropped slaves still counted by the amps gate: twcid -> (until_s, centiamps).
        self._departed: dict[int, tuple[float, int]] = {}
        # Messages sent lately -> (wire bytes, payload, its Sent event): the same heartbeats
        # go out every second, encoded once (bounded: TX_MEMO_MAX). All three are immutable,
        # so one Sent serves every time the message goes out.
        self._tx_memo: dict[m.Message, tuple[bytes, bytes, Sent]] = {}
        self._expired_s = -math.inf  # when poll last expired timeouts

    # -- reading

    def slave_views(self) -> tuple[SlaveView, ...]:
        """Every linked slave, frozen, in the order they linked."""
        return tuple(_view(slave) for slave in self.slaves.values())

    # -- control from the daemon

    def start(self, now_s: float) -> None:
        """Begin with the link-ready burst (§5.3 STARTUP)."""
        self._started = True
        self._burst_left = 2 * LINKREADY_COPIES
        self._bus_free_s = now_s
        self._round_anchor_s = now_s

    def set_offer(self, twcid: int, amps: int) -> None:
        """The whole amps to offer this slave from its next heartbeat on (what goes on the
        wire is decided by the amps gate when the heartbeat is built)."""
        slave = self.slaves.get(twcid)
        if slave is None:
            return
        amps = max(0, int(amps))
        ceiling = self.settings.limits.max_amps_per_twc
        if ceiling is not None:
            amps = min(amps, math.floor(ceiling))
        slave.offer_amps = min(amps, slave.max_centiamps // CENTIAMPS_PER_AMP)

    def pause_heartbeats(self, twcid: int, until_s: float) -> bool:
        """Send this slave nothing until ``until_s`` (chargeStopMode 2): it stops the car on
        its own about 30 s after its last heartbeat (§5.1, §6.7). It stays linked and its
        committed amps keep counting against the others until it reports a lower limit.
        False: no such slave, or the master is stopping (then every slave gets its 0 A)."""
        slave = self.slaves.get(twcid)
        if slave is None or self._stopping_s is not None:
            return False
        slave.paused_until_s = max(slave.paused_until_s, until_s)
        slave.resume_to_report = True
        self._expired_s = -math.inf  # the timeouts changed: expire at the next poll
        return True

    def send_relay_command(self, twcid: int, start: bool) -> bool:
        """Queue FC B1 (``start``) or FC B2 for this slave's next free slot (chargeStopMode 3).
        Refused (False) unless it is a P2 slave whose firmware is known to be >= 4.5.3
        (§3.5): older units do not know the codes, and unknown codes can upset a TWC."""
        slave = self.slaves.get(twcid)
        if slave is None or not slave.relay_commands_supported or self._stopping_s is not None:
            return False
        slave.relay_command = Code.START_CHARGING if start else Code.STOP_CHARGING
        return True

    def stop(self, now_s: float) -> None:
        """Before exiting: a 0 A heartbeat to every slave at once, so the cars stop now rather
        than at the TWC's master timeout; no more link-ready frames or queries."""
        self._stopping_s = now_s
        self._burst_left = 0
        self._expired_s = -math.inf  # pauses end below: expire at the next poll
        for slave in self.slaves.values():  # the amps gate sends 0 A from now on
            slave.next_heartbeat_s = now_s
            slave.paused_until_s = -math.inf  # a 0 A heartbeat is the safe last word
            slave.relay_command = None
            slave.vin_query.on_master_stopping()
            slave.next_energy_poll_s = math.inf

    @property
    def stopped(self) -> bool:
        """After ``stop``: every slave has been sent its 0 A heartbeat."""
        since_s = self._stopping_s
        return since_s is not None and all(
            s.heartbeat_tx_s and s.heartbeat_tx_s[-1] >= since_s for s in self.slaves.values()
        )

    # -- receiving

    @property
    def receiving(self) -> bool:
        return self._parser.receiving

    @property
    def awaiting_reply(self) -> bool:
        """A request is out and its reply has not come yet."""
        return self._pending is not None

    @property
    def reply_window_end_s(self) -> float:
        """When the reply to the last request is due (see ``next_wakeup_s``)."""
        return self._window_end_s

    def receive(self, data: bytes, now_s: float) -> list[Event]:
        events: list[Event] = []
        for item in self._parser.feed(data, now_s):
            if isinstance(item, codec.BadFrame):
                events.append(FrameRejected(item.raw, item.reason))
                continue
            awaited = self._pending
            try:
                events += self._dispatch(item.body, now_s)
            except Exception as error:  # one frame must never silence the master
                events.append(DispatchFailed(item.body, error))
            if awaited is not None and self._pending is None:  # the reply we waited for
                gap_s = self.settings.gap_after_reply_s
                self._bus_free_s = max(self._window_end_s, now_s + gap_s)
            else:
                self._bus_free_s = max(self._bus_free_s, now_s + self.settings.gap_after_rx_s)
        return events

    def _dispatch(self, body: bytes, now_s: float) -> list[Event]:
        if body[0] != 0xFD and self._is_echo(body[:-1], now_s):  # FD: slaves', never ours
            return []
        message = m.decode(body)
        if type(message) is m.SlaveHeartbeat:  # the usual frame, first
            return self._on_slave_heartbeat(message, now_s)
        payload = body[:-1]
        if isinstance(message, m.SlaveLinkReady):
            return self._on_slave_linkready(message, now_s)
        if isinstance(message, m.SlaveHeartbeat):
            return self._on_slave_heartbeat(message, now_s)
        if isinstance(message, m.EnergyReport):
            return self._on_energy(message, now_s)
        if isinstance(message, m.VinPart):
            return self._on_vin_part(message, now_s)
        if isinstance(message, m.MasterLinkReady | m.MasterHeartbeat) or (
            isinstance(message, m.Unknown)
            and message.code in (Code.FOREIGN_MASTER_FC_E2, Code.FOREIGN_MASTER_FB_E1)
        ):
            return self._on_foreign_master(message, payload, now_s)
        if isinstance(message, m.FirmwareVersion):
            return self._on_firmware(message, now_s)
        if isinstance(message, m.SlaveReply) and message.kind in RELAY_ACKS:
            return self._on_relay_ack(message, now_s)
        if isinstance(message, m.SlaveReply | m.SerialNumber):
            self._mark_rx(message.sender, now_s)
            return [Ignored(message, "informational")]
        if isinstance(message, m.UnaddressedMessage) and message.kind == Code.IDLE:
            return [Ignored(message, "idle message")]
        return [Ignored(message, "not handled")]

    def _is_echo(self, payload: bytes, now_s: float) -> bool:
        if payload[0] == 0xFD:  # slaves' frames: never ours
            return False
        return any(p == payload and now_s - t <= ECHO_WINDOW_S for t, p in self._recent_tx)

    def _mark_rx(self, twcid: int | None, now_s: float) -> Slave | None:
        slave = self.slaves.get(twcid) if twcid is not None else None
        if slave is not None:
            slave.last_rx_s = now_s
            if self._pending is not None and self._pending.twcid == twcid:
                self._pending = None
        return slave

    def _on_slave_linkready(self, msg: m.SlaveLinkReady, now_s: float) -> list:
        if msg.sender == self.settings.master_twcid:
            # The slave must move, not us: a new burst makes it pick another ID (§5.4, §5.5).
            # Heartbeats go on during the burst (see _next_message).
            if now_s - self._collision_burst_s >= COLLISION_REBURST_S:
                self._collision_burst_s = now_s
                self._burst_left = 2 * LINKREADY_COPIES
            return [Alarm("id_collision", "a slave uses the master's ID: asking it to move")]
        slave = self.slaves.get(msg.sender)
        if slave is not None:
            events: list[Event] = []
            if slave.sign != msg.sign:
                text = f"two slaves seem to use ID {msg.sender:04X} (signs differ)"
                events.append(Alarm("slave_id_clash", text, msg.sender))
                slave.sign = msg.sign
            if slave.max_centiamps != msg.max_centiamps:
                # Restarted with another maximum: the gate caps at what it says now, and the
                # core hears of it as of a new link (its log, its per-TWC cap).
                slave.max_centiamps = msg.max_centiamps
                max_amps = msg.max_centiamps / CENTIAMPS_PER_AMP
                events.append(SlaveLinked(msg.sender, slave.protocol, max_amps))
            # A known slave announcing itself lost us: heartbeat it right away, but never
            # later than it was due (min): during link-ready bursts from several slaves,
            # resetting to "now" let the first one starve the others.
            slave.last_rx_s = now_s
            slave.next_heartbeat_s = min(slave.next_heartbeat_s, now_s)
            return events
        if len(self.slaves) >= self.settings.max_slaves:
            text = f"slave {msg.sender:04X} ignored: already {len(self.slaves)} slaves linked"
            return [Alarm("too_many_slaves", text, msg.sender)]
        # Back within the departed hold: it may still apply the limit it had, until its
        # first reply says otherwise.
        _, departed_centiamps = self._departed.pop(msg.sender, (0.0, 0))
        self.slaves[msg.sender] = Slave(
            twcid=msg.sender,
            sign=msg.sign,
            protocol=msg.protocol,  # from the body length (§2.6)
            max_centiamps=msg.max_centiamps,
            linked_s=now_s,
            last_rx_s=now_s,
            next_heartbeat_s=now_s,  # answer right away (§5.4)
            next_energy_poll_s=now_s + FIRST_ENERGY_POLL_S,
            unacked_centiamps=departed_centiamps,
            vin_query=VinQuery(self.settings.vin_retry_s, self.settings.vin_max_attempts),
        )
        if self.settings.ask_firmware and msg.protocol == 2:
            self.slaves[msg.sender].next_firmware_ask_s = now_s + FIRST_FIRMWARE_ASK_S
        events = [SlaveLinked(msg.sender, msg.protocol, msg.max_centiamps / CENTIAMPS_PER_AMP)]
        if len(self.slaves) > 3:
            text = f"{len(self.slaves)} slaves: real TWC masters support at most 3"
            events.append(Alarm("many_slaves", text))
        return events

    def _on_slave_heartbeat(self, msg: m.SlaveHeartbeat, now_s: float) -> list[Event]:
        if msg.receiver != self.settings.master_twcid:
            # A slave answering another master's heartbeat: that master is on the bus (§5.4).
            ignored = Ignored(msg, f"addressed to master {msg.receiver:04X}, not us")
            return [ignored, self._foreign_master(msg.receiver, now_s)]
        slave = self._mark_rx(msg.sender, now_s)
        if slave is None:
            return [Ignored(msg, "unknown slave: waiting for its link-ready")]
        exchanged, allowed, actual = _exchanged(slave.twcid, msg, slave.master_data)
        state = exchanged.state
        slave.state = state
        slave.allowed_centiamps = allowed
        slave.unacked_centiamps = 0  # its limit now is what it reports (plus sent_centiamps)
        slave.actual_centiamps = actual
        slave.slave_data = msg.data
        self._track_charging(slave, now_s)
        events: list[Event] = [exchanged]
        if state == m.SlaveState.ERROR:
            text = f"slave {slave.twcid:04X} reports an error state"
            events.append(Alarm("slave_error", text, slave.twcid))
        return events

    def _track_charging(self, slave: Slave, now_s: float) -> None:
        """Start the VIN sequence when a car starts drawing; forget the VIN after it stops."""
        if slave.protocol != 2:
            return  # P1 firmware predates the data queries
        if slave.actual_amps >= CHARGING_AMPS:
            slave.vin_query.on_charging(now_s)
        elif slave.vin_query.on_not_charging(now_s):
            slave.vin = None

    def _on_energy(self, msg: m.EnergyReport, now_s: float) -> list[Event]:
        slave = self._mark_rx(msg.sender, now_s)
        if slave is None:
            return [Ignored(msg, "energy report from an unknown unit")]
        slave.lifetime_kwh = msg.counter
        slave.voltages = msg.voltages
        return [EnergyReported(slave.twcid, msg.counter, msg.voltages)]

    def _on_vin_part(self, msg: m.VinPart, now_s: float) -> list[Event]:
        slave = self._mark_rx(msg.sender, now_s)
        if slave is None:
            return _vin_part_events(msg, PartAnswer(PartVerdict.NOT_ASKED_FOR))
        answer = slave.vin_query.on_part_received(msg.part, msg.text, now_s)
        if answer.verdict in (PartVerdict.VIN, PartVerdict.NO_VIN):
            slave.vin = answer.vin
        return _vin_part_events(msg, answer)

    def _on_firmware(self, msg: m.FirmwareVersion, now_s: float) -> list[Event]:
        slave = self._mark_rx(msg.sender, now_s)
        if slave is None:
            return [Ignored(msg, "firmware version from an unknown unit")]
        slave.firmware = msg.version
        slave.next_firmware_ask_s = math.inf
        return [FirmwareReported(slave.twcid, msg.version)]

    def _on_relay_ack(self, msg: m.SlaveReply, now_s: float) -> list[Event]:
        slave = self._mark_rx(msg.sender, now_s)
        if slave is None:
            return [Ignored(msg, "start/stop acknowledgement from an unknown unit")]
        return [RelayAcknowledged(slave.twcid, msg.kind == Code.ACK_START)]

    def _on_foreign_master(self, msg: m.Message, payload: bytes, now_s: float) -> list:
        sender = int.from_bytes(payload[2:4], "big") if len(payload) >= 4 else None
        return [self._foreign_master(sender, now_s)]

    def _foreign_master(self, twcid: int | None, now_s: float) -> Alarm:
        """Another master is on the bus: heard itself, or through a slave answering it."""
        self.foreign_master_seen_s = now_s
        named = "" if twcid is None else f" ({twcid:04X})"
        text = (
            f"another master{named} is on the bus: set every TWC's rotary switch to F "
            "and run only one master"
        )
        return Alarm("foreign_master", text, twcid)

    # -- transmitting

    def poll(self, now_s: float) -> tuple[bytes | None, list[Event]]:
        """What to transmit now (at most one frame), and the events of housekeeping."""
        # Expiring again at the same instant changes nothing (the core polls until nothing
        # is left to send: twice per frame).
        events = self._expire(now_s) if now_s != self._expired_s else []
        self._expired_s = now_s
        if not self._started or not self._may_transmit(now_s):
            return None, events
        message, expects_reply_from = self._next_message(now_s)
        if message is None:
            return None, events
        encoded = self._tx_memo.get(message)
        if encoded is None:  # a message not sent lately (a heartbeat repeats every second)
            wire = m.encode_for_tx(message, self.settings.trailer_byte)
            encoded = (wire, message.to_payload(), Sent(message, wire))
            if len(self._tx_memo) >= TX_MEMO_MAX:
                self._tx_memo.clear()
            self._tx_memo[message] = encoded
        wire, payload, sent = encoded
        self._recent_tx.append((now_s, payload))
        tx_end_s = now_s + len(wire) * codec.BYTE_TIME_S
        if expects_reply_from is None:
            self._bus_free_s = tx_end_s + self.settings.linkready_spacing_s
        else:
            self._window_end_s = max(tx_end_s, now_s + self.settings.reply_window_s)
            self._bus_free_s = self._window_end_s
            self._pending = _Pending(expects_reply_from, tx_end_s + self.settings.reply_timeout_s)
        events += self._resumed(message)
        events.append(sent)
        return wire, events

    def next_wakeup_s(self, now_s: float) -> float:
        """When ``poll`` may next have something to do (never later than 1 s from now)."""
        if not self._started:
            return now_s + 1.0
        # (max() written out: this runs at every step of the bus)
        free_s = self._bus_free_s
        until_s = self._pending.until_s if self._pending else 0.0
        if until_s > free_s:
            free_s = until_s
        if self._parser.receiving_at(now_s):
            arriving_s = now_s + codec.FRAME_IN_FLIGHT_SILENCE_S  # a frame is arriving
            if arriving_s > free_s:
                free_s = arriving_s
        # The soonest of the candidates, kept as we go (this runs at every step of the bus).
        soonest = now_s + 1.0
        timeout_s = self.settings.slave_timeout_s
        slaves = self.slaves.values()
        heartbeat_due_s = math.inf  # the first heartbeat due
        for s in slaves:  # one pass: when a silent slave is dropped, when one is due
            paused_s = s.paused_until_s
            lost_s = (s.last_rx_s if s.last_rx_s >= paused_s else paused_s) + timeout_s
            if lost_s < soonest:
                soonest = lost_s
            due_s = s.next_heartbeat_s if s.next_heartbeat_s >= paused_s else paused_s
            if due_s < heartbeat_due_s:
                heartbeat_due_s = due_s
        if self._pending is not None and now_s < self._window_end_s < soonest:
            # The reply is due by then: a caller that reads the port on its own schedule
            # (to save a wake-up per reply) looks then; the next request may follow at once.
            soonest = self._window_end_s
        if self._burst_left and free_s < soonest:
            soonest = free_s
        if slaves:
            heartbeat_s = free_s if free_s >= heartbeat_due_s else heartbeat_due_s
            if heartbeat_s < soonest:
                soonest = heartbeat_s
            # A query (or relay command) could go at free_s: only looked for when sooner.
            if (
                free_s < soonest
                and self._query_fits(free_s)
                and any(self._has_query(s, free_s) or s.relay_command is not None for s in slaves)
            ):
                soonest = free_s
        return soonest if soonest > now_s else now_s

    def _may_transmit(self, now_s: float) -> bool:
        if self._parser.receiving_at(now_s) or now_s < self._bus_free_s:
            return False
        return self._pending is None or now_s >= self._pending.until_s

    def _expire(self, now_s: float) -> list[Event]:
        self._parser.expire(now_s)
        if self._pending is not None and now_s >= self._pending.until_s:
            self._pending = None
        events: list[Event] = []
        timeout_s = self.settings.slave_timeout_s
        # A paused slave is silent because we are: it is dropped only if it stays silent for
        # the timeout after its heartbeats resume. (A loop, not a list: this runs at every
        # poll, and a slave is almost never lost.)
        lost = None
        for twcid, slave in self.slaves.items():
            heard_s = slave.last_rx_s
            if slave.paused_until_s > heard_s:
                heard_s = slave.paused_until_s
            if now_s - heard_s > timeout_s:
                if lost is None:
                    lost = []
                lost.append((twcid, now_s - heard_s))
        for twcid, silent_s in lost or ():
            slave = self.slaves.pop(twcid)
            self._departed[twcid] = (now_s + DEPARTED_HOLD_S, slave.committed_centiamps)
            events.append(SlaveLost(twcid, silent_s))
        if self._departed:
            for twcid, (until_s, _) in list(self._departed.items()):
                if now_s >= until_s:
                    del self._departed[twcid]
        return events

    def _next_message(self, now_s: float) -> tuple[m.Message | None, int | None]:
        # Heartbeats first, even during a link-ready burst (a port reopening, an ID
        # collision): linked slaves must never go a second without one.
        # Slaves that answered their last heartbeat go first (a silent one costs the reply
        # timeout, and several of them must not push the others past their second); among
        # those, the one waiting longest since its last heartbeat.
        due = [s for s in self.slaves.values() if s.heartbeat_due_s <= now_s]
        if due:
            slave = due[0] if len(due) == 1 else min(due, key=_heartbeat_priority)
            return self._heartbeat(slave, now_s), slave.twcid
        if self._burst_left:
            return self._linkready(), None
        if self._stopping_s is not None:
            return None, None
        relay = self._relay_message(now_s)
        if relay is not None:
            return relay
        for slave in sorted(self.slaves.values(), key=lambda s: s.next_heartbeat_s):
            if slave.paused(now_s):
                continue  # not a word to it: it must notice that it lost its master
            query = self._query(slave, now_s)
            if query is not None:
                return query, slave.twcid
        return None, None

    def _relay_message(self, now_s: float) -> tuple[m.Message, int] | None:
        """A queued FC B1 / FC B2, in the first free slot (before any query), only if its
        exchange ends before a heartbeat falls due."""
        if all(s.relay_command is None for s in self.slaves.values()):
            return None  # the usual case, the cheaper test first
        if not self._query_fits(now_s):
            return None
        for slave in self.slaves.values():
            if slave.relay_command is not None and not slave.paused(now_s):
                code, slave.relay_command = slave.relay_command, None
                me = self.settings.master_twcid
                return m.AddressedRequest(code, me, slave.twcid, m.P2_BODY_LENGTH), slave.twcid
        return None

    def _resumed(self, message: m.Message) -> list[Event]:
        """HeartbeatsResumed when ``message`` is the first heartbeat to a slave after a pause."""
        slave = self.slaves.get(message.receiver) if message.receiver is not None else None
        if not isinstance(message, m.MasterHeartbeat) or slave is None:
            return []
        if not slave.resume_to_report:
            return []
        slave.resume_to_report = False
        return [HeartbeatsResumed(slave.twcid, message.centiamps)]

    def _linkready(self) -> m.Message:
        which = 1 if self._burst_left > LINKREADY_COPIES else 2
        self._burst_left -= 1
        return m.MasterLinkReady(which, self.settings.master_twcid, self.settings.master_sign)

    def _heartbeat(self, slave: Slave, now_s: float) -> m.MasterHeartbeat:
        # Due again at the round after the one it was due in: served late in an overlong
        # round, it must not wait for the end of the round after that.
        next_s = self._next_round_s(min(slave.next_heartbeat_s, now_s))
        slave.next_heartbeat_s = next_s if next_s > now_s else self._next_round_s(now_s)
        slave.heartbeat_tx_s.append(now_s)
        centiamps = self._gated_amps(slave) * CENTIAMPS_PER_AMP
        message = _heartbeat_message(self.settings.master_twcid, slave, centiamps)
        slave.sent_centiamps = centiamps
        if message.command != m.HeartbeatCommand.NO_CHANGE:
            slave.unacked_centiamps = max(slave.unacked_centiamps, centiamps)
        slave.master_data = message.data
        return message

    def _gated_amps(self, slave: Slave) -> int:
        """The amps this slave's heartbeat carries: through the gate, the only way."""
        others = [o.committed_centiamps for o in self.slaves.values() if o is not slave]
        if self._departed:
            others += [centiamps for _, centiamps in self._departed.values()]
        request = slave.gate_input  # rebuilt only when the offer changed (its other fields
        if request is None or request.requested_amps != slave.offer_amps:  # are the slave's)
            request = GateInput(slave.offer_amps, slave.max_centiamps, slave.min_amps_supported)
            slave.gate_input = request
        stopping = self._stopping_s is not None
        return wire_amps(request, others, self.settings.limits, stopping=stopping)

    def _next_round_s(self, now_s: float) -> float:
        """Start of the heartbeat round after ``now_s``. Every slave is due at the start of
        each round and served one after the other, each as soon as the previous one answered,
        so a round costs one timer wake-up plus one per reply, and each slave keeps its place
        in the round: a steady 1 s interval per slave (§5.1)."""
        interval = self.settings.heartbeat_interval_s
        rounds = math.floor((now_s - self._round_anchor_s) / interval) + 1
        return self._round_anchor_s + rounds * interval

    def _has_query(self, slave: Slave, now_s: float) -> bool:
        if slave.protocol != 2 or slave.paused(now_s):
            return False  # P1 firmware predates the data queries
        return (
            slave.vin_query.asking
            or now_s >= slave.next_energy_poll_s
            or now_s >= slave.next_firmware_ask_s
        )

    def _query_fits(self, at_s: float) -> bool:
        """A query exchange started at ``at_s`` ends before any heartbeat falls due."""
        exchange_s = QUERY_EXCHANGE_WIRE_S + self.settings.reply_timeout_s
        return all(s.heartbeat_due_s >= at_s + exchange_s for s in self.slaves.values())

    def _query(self, slave: Slave, now_s: float) -> m.Message | None:
        """One housekeeping query, only if it fits before the next heartbeat (§5.3 step 3)."""
        if not self._has_query(slave, now_s) or not self._query_fits(now_s):
            return None
        me = self.settings.master_twcid
        if now_s >= slave.next_firmware_ask_s:
            return self._firmware_request(slave, now_s)
        if slave.vin_query.asking:
            part = slave.vin_query.on_query_slot(now_s)
            if part is not None:
                code = m.VIN_REQUEST_CODES[part - 1]
                return m.AddressedRequest(code, me, slave.twcid, m.P2_BODY_LENGTH)
            # The slave does not answer VIN requests: the sequence waits (§5.4).
            if not now_s >= slave.next_energy_poll_s:
                return None
        slave.next_energy_poll_s = now_s + self.settings.energy_poll_interval_s
        return m.AddressedRequest(Code.REQUEST_ENERGY, me, slave.twcid, m.P2_BODY_LENGTH)

    def _firmware_request(self, slave: Slave, now_s: float) -> m.Message:
        slave.firmware_asks += 1
        more = slave.firmware_asks < FIRMWARE_ATTEMPTS
        slave.next_firmware_ask_s = now_s + FIRMWARE_RETRY_S if more else math.inf
        me = self.settings.master_twcid
        return m.AddressedRequest(Code.REQUEST_FIRMWARE, me, slave.twcid, m.P2_BODY_LENGTH)


RELAY_ACKS = frozenset({Code.ACK_START, Code.ACK_STOP})


def _vin_part_events(msg: m.VinPart, answer: PartAnswer) -> list[Event]:
    """What a received VIN part shows: the reason texts of the VIN sequence's verdicts."""
    match answer.verdict:
        case PartVerdict.NOT_ASKED_FOR:
            return [Ignored(msg, "VIN part not asked for")]
        case PartVerdict.STORED:
            return []
        case PartVerdict.VIN | PartVerdict.NO_VIN:
            return [VinReported(msg.sender, answer.vin)]
        case PartVerdict.BAD_CHECK_DIGIT:
            return [Ignored(msg, f"VIN {answer.vin!r} fails its check digit: will ask again")]


@functools.lru_cache(maxsize=TX_MEMO_MAX)  # a steady exchange repeats every second
def _exchanged(
    twcid: int, reply: m.SlaveHeartbeat, master_data: bytes
) -> tuple[HeartbeatExchanged, int, int]:
    """The event of ``reply`` answering the heartbeat that carried ``master_data``, and the
    reply's allowed and actual centiamps (a pure function of immutable values: each distinct
    exchange is decoded once)."""
    allowed, actual = reply.allowed_centiamps, reply.actual_centiamps
    event = HeartbeatExchanged(
        twcid,
        reply.data,
        master_data,
        reply.state,
        allowed / CENTIAMPS_PER_AMP,
        actual / CENTIAMPS_PER_AMP,
    )
    return event, allowed, actual


def _heartbeat_priority(slave: Slave) -> tuple[bool, float, float]:
    last_tx_s = slave.heartbeat_tx_s[-1] if slave.heartbeat_tx_s else -math.inf
    return (not slave.answered_last_heartbeat, slave.next_heartbeat_s, last_tx_s)


def _heartbeat_message(master_twcid: int, slave: Slave, offer_centiamps: int) -> m.MasterHeartbeat:
    """The heartbeat carrying ``offer_centiamps``, which the amps gate decided (§6.6).

    A set-limit command when the offer differs from what the slave reports, and always at 0 A
    (a constant ``05 00 00`` stops the relay chatter of "no change" at 0 A); otherwise
    "no change". ``05`` on protocol 1, ``09`` on protocol 2 (§8 Q9).
    """
    # A limit sent since the slave last answered may have been heard: say the new one
    # explicitly rather than "no change" against a report that may be stale.
    unconfirmed = slave.unacked_centiamps != 0
    if offer_centiamps != slave.allowed_centiamps or offer_centiamps == 0 or unconfirmed:
        command = m.set_limit_command(slave.protocol)
    else:
        command = m.HeartbeatCommand.NO_CHANGE
    key = (master_twcid, slave.twcid, int(command), offer_centiamps, slave.protocol)
    message = _HEARTBEATS.get(key)
    if message is None:  # the same few heartbeats repeat all day: each is built once
        message = m.MasterHeartbeat.build(*key)
        if len(_HEARTBEATS) >= TX_MEMO_MAX:
            _HEARTBEATS.clear()
        _HEARTBEATS[key] = message
    return message


#: (master ID, slave ID, command, centiamps, protocol) -> the heartbeat (frozen, so shared).
_HEARTBEATS: dict[tuple[int, int, int, int, int], m.MasterHeartbeat] = {}
