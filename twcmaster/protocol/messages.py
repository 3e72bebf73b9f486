"""TWC Gen2 message layouts: typed, frozen messages with from/to payload (sans-I/O).

Every message class builds its payload (body without checksum) with ``to_payload`` and is
parsed by ``decode``. Decoding is checked by re-encoding: a body whose padding or length does
not match the documented layout comes back as ``Unknown``, so what ``decode`` returns always
re-encodes to the very same bytes. Amps are integer centiamps (0.01 A) as on the wire.

Nothing reaches the wire without ``encode_for_tx``, which enforces the allow-list of §3.5:
codes that write flash, crash or silence a TWC cannot be encoded at all.
Section numbers refer to ``shared/protocol/twc-rs485.md``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, ClassVar

from twcmaster.protocol import codec

#: Amps on the wire are u16 centiamps, 0.01 A (§4.1, §4.2).
CENTIAMPS_PER_AMP = 100
#: The fixed ID TWCManager's fake master uses, our default too (§1.2).
TWCMANAGER_MASTER_ID = 0x7777
#: Body lengths (checksum included) of link-readies, heartbeats and requests on protocol 1
#: and 2 (§2.5, §2.6).
P1_BODY_LENGTH = 14
P2_BODY_LENGTH = 16


def protocol_of_length(body_length: int) -> int:
    """The protocol a link-ready or heartbeat body of this length speaks: 14 -> 1, else 2."""
    return 1 if body_length == P1_BODY_LENGTH else 2


class Code(IntEnum):
    """Type byte and command byte of a message, as one big-endian 16-bit number (§3.1)."""

    MASTER_LINKREADY1 = 0xFCE1
    MASTER_LINKREADY2 = 0xFBE2
    SLAVE_LINKREADY = 0xFDE2
    MASTER_HEARTBEAT = 0xFBE0
    SLAVE_HEARTBEAT = 0xFDE0
    REQUEST_ENERGY = 0xFBEB
    ENERGY_REPORT = 0xFDEB
    REQUEST_VIN1 = 0xFBEE
    REQUEST_VIN2 = 0xFBEF
    REQUEST_VIN3 = 0xFBF1
    VIN1 = 0xFDEE
    VIN2 = 0xFDEF
    VIN3 = 0xFDF1
    REQUEST_SERIAL = 0xFBED
    SERIAL = 0xFDED
    REQUEST_FIRMWARE = 0xFBEC
    FIRMWARE = 0xFDEC
    REQUEST_OLD_FIRMWARE = 0xFB1B
    OLD_FIRMWARE = 0xFD1B
    REQUEST_OLD_SERIAL = 0xFB19
    OLD_SERIAL = 0xFD19
    REQUEST_MODEL = 0xFB1A
    MODEL = 0xFD1A
    REQUEST_PLUG_STATE = 0xFBB4
    PLUG_STATE = 0xFDB4
    START_CHARGING = 0xFCB1
    STOP_CHARGING = 0xFCB2
    ACK_START = 0xFDB1
    ACK_STOP = 0xFDB2
    IDLE = 0xFC1D
    # Only ever received: another unit acting as master (§3.1, §8 Q10).
    FOREIGN_MASTER_FC_E2 = 0xFCE2
    FOREIGN_MASTER_FB_E1 = 0xFBE1


#: Codes that must never be sent, whatever the payload (§3.5): FC 19 / FC 1A write flash,
#: FB E8 crashes the TWC, FC A1 silences it, FB A4 is unknown.
BLOCKED_CODES = frozenset({0xFC19, 0xFC1A, 0xFBE8, 0xFCA1, 0xFBA4})

#: What a master may send (§3.1 safe codes). FC B1/B2 are allowed by the codec; the daemon
#: only sends them when the user enables that stop mode.
MASTER_TX_CODES = frozenset(
    {
        Code.MASTER_LINKREADY1,
        Code.MASTER_LINKREADY2,
        Code.MASTER_HEARTBEAT,
        Code.REQUEST_ENERGY,
        Code.REQUEST_VIN1,
        Code.REQUEST_VIN2,
        Code.REQUEST_VIN3,
        Code.REQUEST_SERIAL,
        Code.REQUEST_FIRMWARE,
        Code.REQUEST_OLD_FIRMWARE,
        Code.REQUEST_OLD_SERIAL,
        Code.REQUEST_MODEL,
        Code.REQUEST_PLUG_STATE,
        Code.START_CHARGING,
        Code.STOP_CHARGING,
    }
)
#: What the slave simulator may send.
SLAVE_TX_CODES = frozenset(
    {
        Code.SLAVE_LINKREADY,
        Code.SLAVE_HEARTBEAT,
        Code.ENERGY_REPORT,
        Code.VIN1,
        Code.VIN2,
        Code.VIN3,
        Code.SERIAL,
        Code.FIRMWARE,
        Code.OLD_FIRMWARE,
        Code.OLD_SERIAL,
        Code.MODEL,
        Code.PLUG_STATE,
        Code.ACK_START,
        Code.ACK_STOP,
    }
)


class HeartbeatCommand(IntEnum):
    """M0 of the master heartbeat data block (§4.1)."""

    NO_CHANGE = 0x00
    ERROR = 0x02  # locks the slave until a manual reset: never sent
    SET_LIMIT_P1 = 0x05  # P1 set limit; P2 initial limit
    RAISE_2A = 0x06
    LOWER_2A = 0x07
    ACK_STOPPED = 0x08
    SET_LIMIT_P2 = 0x09


#: Heartbeat commands the master may send. 06/07 are not used and 02 is dangerous (§4.1).
SAFE_HEARTBEAT_COMMANDS = frozenset(
    {
        HeartbeatCommand.NO_CHANGE,
        HeartbeatCommand.SET_LIMIT_P1,
        HeartbeatCommand.ACK_STOPPED,
        HeartbeatCommand.SET_LIMIT_P2,
    }
)
#: Heartbeat commands whose M1-M2 carry amps (§4.1).
LIMIT_COMMANDS = frozenset(
    {HeartbeatCommand.SET_LIMIT_P1, HeartbeatCommand.ACK_STOPPED, HeartbeatCommand.SET_LIMIT_P2}
)


def set_limit_command(protocol: int) -> HeartbeatCommand:
    """The command that sets a slave's limit: ``05`` on protocol 1, ``09`` on protocol 2
    (§2.6, §4.1, §8 Q9)."""
    return HeartbeatCommand.SET_LIMIT_P1 if protocol == 1 else HeartbeatCommand.SET_LIMIT_P2


class SlaveState(IntEnum):
    """S0 of the slave heartbeat (§4.2). Names are labels only (§8 Q8)."""

    READY = 0x00
    CHARGING = 0x01
    ERROR = 0x02
    DO_NOT_CHARGE = 0x03
    READY_TO_CHARGE = 0x04
    BUSY = 0x05
    RAISING_2A = 0x06
    LOWERING_2A = 0x07
    STARTING = 0x08
    LIMIT_ACKNOWLEDGED = 0x09
    ADJUSTMENT_DONE = 0x0A
    UNKNOWN_0F = 0x0F


SLAVE_STATE_NAMES = {
    SlaveState.READY: "ready",
    SlaveState.CHARGING: "charging",
    SlaveState.ERROR: "error",
    SlaveState.DO_NOT_CHARGE: "plugged in, do not charge",
    SlaveState.READY_TO_CHARGE: "plugged in, ready",
    SlaveState.BUSY: "busy",
    SlaveState.RAISING_2A: "raising 2A",
    SlaveState.LOWERING_2A: "lowering 2A",
    SlaveState.STARTING: "starting to charge",
    SlaveState.LIMIT_ACKNOWLEDGED: "limit acknowledged",
    SlaveState.ADJUSTMENT_DONE: "amp adjustment done",
    SlaveState.UNKNOWN_0F: "unknown 0F",
}


class DangerousMessageError(ValueError):
    """Raised instead of encoding a message the protocol notes forbid sending."""


def _u16(value: int) -> bytes:
    return struct.pack(">H", value)


def _id(value: int | None) -> str | None:
    return None if value is None else f"{value:04X}"


def _zeros(count: int) -> bytes:
    return bytes(count)


def _ascii(raw: bytes) -> str:
    """Text for display: a byte that is no ASCII shows as U+FFFD."""
    return raw.rstrip(b"\x00").decode("ascii", errors="replace")


def _ascii_field(raw: bytes) -> str:
    """Text of a VIN or serial field; a byte that is no ASCII raises UnicodeDecodeError, so
    the frame decodes as ``Unknown`` (a corrupted frame that passed the 1-byte checksum)."""
    return raw.rstrip(b"\x00").decode("ascii")


class Message:
    """Base of every message. ``code`` is a ``Code`` (or int for unknown codes)."""

    name: ClassVar[str] = "message"

    @property
    def code(self) -> int:  # pragma: no cover - overridden
        raise NotImplementedError

    # Every subclass has ``sender`` and ``receiver`` fields (None where the layout has no ID).
    sender: int | None
    receiver: int | None

    def to_payload(self) -> bytes:  # pragma: no cover - overridden
        raise NotImplementedError

    def fields(self) -> dict[str, Any]:
        """Decoded fields for people and JSON (amps in A, kWh, volts)."""
        return {}


def _code_bytes(code: int) -> bytes:
    return _u16(code)


@dataclass(frozen=True, slots=True)
class MasterLinkReady(Message):
    """``FC E1`` / ``FB E2``: a master announces its ID and sign (§3.2)."""

    which: int  # 1 or 2
    sender: int
    sign: int
    # The 16-byte form (ESP32 masters) carries a 2-byte field before the zeros (§3.2, §8 Q4).
    extra: bytes | None = None
    receiver: None = None
    # The 8 bytes that follow, as received when they are not all zero: what a real master puts
    # there is not recorded (§8 Q4, Q10), and another master must be recognised whatever it is.
    padding: bytes | None = None

    name: ClassVar[str] = "master link-ready"

    @property
    def code(self) -> Code:
        return Code.MASTER_LINKREADY1 if self.which == 1 else Code.MASTER_LINKREADY2

    def to_payload(self) -> bytes:
        head = _code_bytes(self.code) + _u16(self.sender) + bytes([self.sign])
        return head + (self.extra or b"") + _padding(self.padding, 8)

    def fields(self) -> dict[str, Any]:
        return {"which": self.which, "sign": f"{self.sign:02X}", **_padding_field(self.padding)}


@dataclass(frozen=True, slots=True)
class SlaveLinkReady(Message):
    """``FD E2``: a slave with no master announces itself every 10 s (§3.2)."""

    sender: int
    sign: int
    max_centiamps: int
    protocol: int = 2  # 14-byte body = protocol 1, 16 = protocol 2 (§2.6)
    receiver: None = None
    # The bytes after max amps, as received when they are not all zero. Documented as zero, but
    # one source reports slaves carrying data there (§8 Q10) and TWCManager, which links real
    # slaves, checks only the first 6: a slave is linked whatever they hold.
    padding: bytes | None = None

    name: ClassVar[str] = "slave link-ready"
    code: ClassVar[Code] = Code.SLAVE_LINKREADY

    def to_payload(self) -> bytes:
        head = _code_bytes(self.code) + _u16(self.sender) + bytes([self.sign])
        zeros = 6 if self.protocol == 1 else 8
        return head + _u16(self.max_centiamps) + _padding(self.padding, zeros)

    def fields(self) -> dict[str, Any]:
        return {
            "sign": f"{self.sign:02X}",
            "max_amps": self.max_centiamps / CENTIAMPS_PER_AMP,
            "protocol": self.protocol,
            **_padding_field(self.padding),
        }


def _padding(padding: bytes | None, zeros: int) -> bytes:
    """A link-ready's padding: as received, or the documented zeros."""
    if padding is None:
        return _zeros(zeros)
    if len(padding) != zeros:
        raise ValueError(f"link-ready padding of {len(padding)} bytes, expected {zeros}")
    return padding


def _padding_field(padding: bytes | None) -> dict[str, str]:
    return {} if padding is None else {"padding": padding.hex(" ").upper()}


def _received_padding(tail: bytes) -> bytes | None:
    """None for the documented all-zero padding, else the bytes as received."""
    return tail if any(tail) else None


@dataclass(frozen=True, slots=True)
class MasterHeartbeat(Message):
    """``FB E0``: master to slave, about once a second; data M0..M6 (P1) or M0..M8 (P2)."""

    sender: int
    receiver: int
    data: bytes  # 7 bytes for P1, 9 for P2

    name: ClassVar[str] = "master heartbeat"
    code: ClassVar[Code] = Code.MASTER_HEARTBEAT

    @classmethod
    def build(
        cls, sender: int, receiver: int, command: int, centiamps: int, protocol: int
    ) -> MasterHeartbeat:
        amps = _u16(centiamps) if command in LIMIT_COMMANDS else b"\x00\x00"
        data = bytes([command]) + amps + _zeros(4 if protocol == 1 else 6)
        return cls(sender, receiver, data)

    @property
    def command(self) -> int:
        return self.data[0]

    @property
    def centiamps(self) -> int:
        return int.from_bytes(self.data[1:3], "big")

    def to_payload(self) -> bytes:
        return _code_bytes(self.code) + _u16(self.sender) + _u16(self.receiver) + self.data

    def fields(self) -> dict[str, Any]:
        try:
            command_name = HeartbeatCommand(self.command).name.lower()
        except ValueError:
            command_name = "unknown"
        return {
            "command": f"{self.command:02X}",
            "command_name": command_name,
            "amps": self.centiamps / CENTIAMPS_PER_AMP,
            "master_has_car": self.data[3] == 1,
            "data": self.data.hex(" ").upper(),
        }


@dataclass(frozen=True, slots=True)
class SlaveHeartbeat(Message):
    """``FD E0``: a slave's reply to a heartbeat addressed to it (§3.3, §4.2)."""

    sender: int
    receiver: int
    data: bytes  # S0..S6 (P1) or S0..S8 (P2)

    name: ClassVar[str] = "slave heartbeat"
    code: ClassVar[Code] = Code.SLAVE_HEARTBEAT

    @classmethod
    def build(
        cls,
        sender: int,
        receiver: int,
        state: int,
        allowed_centiamps: int,
        actual_centiamps: int,
        protocol: int,
    ) -> SlaveHeartbeat:
        data = bytes([state]) + _u16(allowed_centiamps) + _u16(actual_centiamps)
        return cls(sender, receiver, data + _zeros(2 if protocol == 1 else 4))

    @property
    def state(self) -> int:
        return self.data[0]

    @property
    def allowed_centiamps(self) -> int:
        return int.from_bytes(self.data[1:3], "big")

    @property
    def actual_centiamps(self) -> int:
        return int.from_bytes(self.data[3:5], "big")

    def to_payload(self) -> bytes:
        return _code_bytes(self.code) + _u16(self.sender) + _u16(self.receiver) + self.data

    def fields(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "state_name": SLAVE_STATE_NAMES.get(self.state, "unknown"),
            "allowed_amps": self.allowed_centiamps / CENTIAMPS_PER_AMP,
            "actual_amps": self.actual_centiamps / CENTIAMPS_PER_AMP,
            "data": self.data.hex(" ").upper(),
        }


@dataclass(frozen=True, slots=True)
class AddressedRequest(Message):
    """Master request or command with IDs and zero padding: ``FB EB/EE/EF/F1/ED/EC/B4``,
    ``FC B1`` / ``FC B2`` (§3.4, §3.5). ``length`` is the body length (14 P1, 16 P2)."""

    request: Code
    sender: int
    receiver: int
    length: int = 16

    name: ClassVar[str] = "request"

    @property
    def code(self) -> Code:
        return self.request

    def to_payload(self) -> bytes:
        head = _code_bytes(self.code) + _u16(self.sender) + _u16(self.receiver)
        return head + _zeros(self.length - 1 - len(head))

    def fields(self) -> dict[str, Any]:
        return {"request": self.request.name.lower()}


@dataclass(frozen=True, slots=True)
class UnaddressedMessage(Message):
    """A code followed by zeros only: the idle message ``FC 1D`` and the old-form queries
    ``FB 19/1A/1B`` (§3.4, §3.6)."""

    kind: Code
    length: int = 14
    sender: None = None
    receiver: None = None

    name: ClassVar[str] = "unaddressed"

    @property
    def code(self) -> Code:
        return self.kind

    def to_payload(self) -> bytes:
        return _code_bytes(self.code) + _zeros(self.length - 3)

    def fields(self) -> dict[str, Any]:
        return {"kind": self.kind.name.lower()}


@dataclass(frozen=True, slots=True)
class EnergyReport(Message):
    """``FD EB``: lifetime energy counter, voltages, and (20-byte form) phase currents (§3.4).

    The counter's unit is disputed (§8 Q7): TWCManager reads kWh; one real capture suggests
    otherwise. It is kept raw; ``kwh`` is the TWCManager reading.
    """

    sender: int
    counter: int
    voltages: tuple[int, int, int]
    # 20-byte form only: L1..L3 currents in 0.5 A steps, "approximate" (§8 Q7).
    phase_half_amps: tuple[int, int, int] | None = None
    receiver: None = None

    name: ClassVar[str] = "energy report"
    code: ClassVar[Code] = Code.ENERGY_REPORT

    def to_payload(self) -> bytes:
        head = _code_bytes(self.code) + _u16(self.sender) + struct.pack(">I", self.counter)
        volts = b"".join(_u16(v) for v in self.voltages)
        if self.phase_half_amps is None:
            return head + volts + _zeros(1)
        return head + volts + bytes(self.phase_half_amps) + _zeros(2)

    def fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kwh": self.counter,
            "voltage_phase_a": self.voltages[0],
            "voltage_phase_b": self.voltages[1],
            "voltage_phase_c": self.voltages[2],
        }
        if self.phase_half_amps is not None:
            out["approx_phase_amps"] = [v / 2 for v in self.phase_half_amps]
        return out


VIN_PART_CODES = (Code.VIN1, Code.VIN2, Code.VIN3)
VIN_REQUEST_CODES = (Code.REQUEST_VIN1, Code.REQUEST_VIN2, Code.REQUEST_VIN3)
VIN_PART_LENGTHS = (7, 7, 3)  # characters in part 1, 2, 3 (§3.4)


@dataclass(frozen=True, slots=True)
class VinPart(Message):
    """``FD EE`` / ``FD EF`` / ``FD F1``: 7, 7 and 3 VIN characters (§3.4)."""

    part: int  # 1..3
    sender: int
    text: str  # "" when the car gives no VIN (all zero)
    receiver: None = None

    name: ClassVar[str] = "VIN part"

    @property
    def code(self) -> Code:
        return VIN_PART_CODES[self.part - 1]

    def to_payload(self) -> bytes:
        raw = self.text.encode("ascii").ljust(15, b"\x00")
        return _code_bytes(self.code) + _u16(self.sender) + raw

    def fields(self) -> dict[str, Any]:
        return {"part": self.part, "vin_part": self.text}


@dataclass(frozen=True, slots=True)
class SerialNumber(Message):
    """``FD ED``: 11 ASCII characters (§3.4)."""

    sender: int
    text: str
    receiver: None = None

    name: ClassVar[str] = "serial number"
    code: ClassVar[Code] = Code.SERIAL

    def to_payload(self) -> bytes:
        raw = self.text.encode("ascii").ljust(15, b"\x00")
        return _code_bytes(self.code) + _u16(self.sender) + raw

    def fields(self) -> dict[str, Any]:
        return {"serial": self.text}


@dataclass(frozen=True, slots=True)
class FirmwareVersion(Message):
    """``FD EC``: four version bytes (§3.4)."""

    sender: int
    version: tuple[int, int, int, int]
    receiver: None = None

    name: ClassVar[str] = "firmware version"
    code: ClassVar[Code] = Code.FIRMWARE

    def to_payload(self) -> bytes:
        return _code_bytes(self.code) + _u16(self.sender) + bytes(self.version) + _zeros(7)

    def fields(self) -> dict[str, Any]:
        return {"firmware": ".".join(str(v) for v in self.version)}


@dataclass(frozen=True, slots=True)
class OldFormReply(Message):
    """``FD 1B`` (major, minor, revision), ``FD 19`` (serial), ``FD 1A`` (model): the code is
    followed directly by the data, no sender ID (§3.4)."""

    kind: Code
    data: bytes
    length: int = 16
    sender: None = None
    receiver: None = None

    name: ClassVar[str] = "old-form reply"

    @property
    def code(self) -> Code:
        return self.kind

    def to_payload(self) -> bytes:
        return _code_bytes(self.code) + self.data.ljust(self.length - 3, b"\x00")

    def fields(self) -> dict[str, Any]:
        if self.kind == Code.OLD_FIRMWARE:
            return {"firmware": ".".join(str(b) for b in self.data[:3])}
        return {"text": _ascii(self.data[:11])}


@dataclass(frozen=True, slots=True)
class SlaveReply(Message):
    """``FD B4`` plug state and ``FD B1`` / ``FD B2`` start/stop acknowledgements: sender plus
    data bytes (§3.4, §3.5)."""

    kind: Code
    sender: int
    data: bytes = b""
    length: int = 16
    receiver: None = None

    name: ClassVar[str] = "slave reply"

    @property
    def code(self) -> Code:
        return self.kind

    def to_payload(self) -> bytes:
        head = _code_bytes(self.code) + _u16(self.sender)
        return head + self.data.ljust(self.length - 1 - len(head), b"\x00")

    def fields(self) -> dict[str, Any]:
        if self.kind == Code.PLUG_STATE:
            states = {0: "unplugged", 1: "charging", 2: "unknown", 3: "plugged, not charging"}
            state = self.data[0] if self.data else 0
            return {"plug_state": state, "plug_state_name": states.get(state, "unknown")}
        return {"ack": "start" if self.kind == Code.ACK_START else "stop"}


@dataclass(frozen=True, slots=True)
class Unknown(Message):
    """Anything else, kept as bytes so it can be logged (§5.4 "log as unknown")."""

    raw_code: int
    payload: bytes
    note: str = "unknown code"
    sender: None = None
    receiver: None = None

    name: ClassVar[str] = "unknown"

    @property
    def code(self) -> int:
        return self.raw_code

    def to_payload(self) -> bytes:
        return self.payload

    def fields(self) -> dict[str, Any]:
        return {"note": self.note, "payload": self.payload.hex(" ").upper()}


# --- decoding ----------------------------------------------------------------------------


def _decode_fields(code: int, p: bytes) -> Message | None:
    """Parse a payload by its code; None when the layout does not fit."""
    n = len(p) + 1  # body length, checksum included
    u16 = lambda off: int.from_bytes(p[off : off + 2], "big")  # noqa: E731
    if code in (Code.MASTER_LINKREADY1, Code.MASTER_LINKREADY2) and n in (14, 16):
        which = 1 if code == Code.MASTER_LINKREADY1 else 2
        extra = p[5:7] if n == 16 else None
        padding = _received_padding(p[7:] if n == 16 else p[5:])
        return MasterLinkReady(which, u16(2), p[4], extra, padding=padding)
    if code == Code.SLAVE_LINKREADY and n in (14, 16):
        padding = _received_padding(p[7:])
        return SlaveLinkReady(u16(2), p[4], u16(5), protocol_of_length(n), padding=padding)
    if code == Code.MASTER_HEARTBEAT and n in (14, 16):
        return MasterHeartbeat(u16(2), u16(4), p[6:])
    if code == Code.SLAVE_HEARTBEAT and n in (14, 16):
        return SlaveHeartbeat(u16(2), u16(4), p[6:])
    if code in _ADDRESSED_REQUESTS and n in codec.LENIENT_BODY_LENGTHS:
        return AddressedRequest(Code(code), u16(2), u16(4), n)
    if code in _UNADDRESSED and n in codec.LENIENT_BODY_LENGTHS:
        return UnaddressedMessage(Code(code), n)
    if code == Code.ENERGY_REPORT and n == 16:
        return EnergyReport(u16(2), int.from_bytes(p[4:8], "big"), (u16(8), u16(10), u16(12)))
    if code == Code.ENERGY_REPORT and n == 20:
        volts = (u16(8), u16(10), u16(12))
        return EnergyReport(u16(2), int.from_bytes(p[4:8], "big"), volts, tuple(p[14:17]))
    if code in VIN_PART_CODES and n == 20:
        part = VIN_PART_CODES.index(code) + 1
        return VinPart(part, u16(2), _ascii_field(p[4:]))
    if code == Code.SERIAL and n == 20:
        return SerialNumber(u16(2), _ascii_field(p[4:]))
    if code == Code.FIRMWARE and n == 16:
        return FirmwareVersion(u16(2), tuple(p[4:8]))
    if code in (Code.OLD_FIRMWARE, Code.OLD_SERIAL, Code.MODEL) and n in (14, 16):
        return OldFormReply(Code(code), p[2:].rstrip(b"\x00"), n)
    if code in (Code.PLUG_STATE, Code.ACK_START, Code.ACK_STOP) and n in (14, 16):
        return SlaveReply(Code(code), u16(2), p[4:].rstrip(b"\x00"), n)
    return None


_ADDRESSED_REQUESTS = frozenset(
    {
        Code.REQUEST_ENERGY,
        Code.REQUEST_VIN1,
        Code.REQUEST_VIN2,
        Code.REQUEST_VIN3,
        Code.REQUEST_SERIAL,
        Code.REQUEST_FIRMWARE,
        Code.REQUEST_PLUG_STATE,
        Code.START_CHARGING,
        Code.STOP_CHARGING,
    }
)
_UNADDRESSED = frozenset(
    {Code.IDLE, Code.REQUEST_OLD_FIRMWARE, Code.REQUEST_OLD_SERIAL, Code.REQUEST_MODEL}
)


#: ``decode`` and ``encode_for_tx`` are pure and their results immutable, and on a bus the same
#: few frames come back every second (heartbeats whose amps did not change): both remember
#: their results, up to this many each (then they start again from empty). Small: a bus has
#: a handful of distinct frames at a time, and noise must not make the memory grow (the
#: fuzz test allows 64 KiB over a long run); frames that decode to ``Unknown`` are not kept.
_MEMO_MAX = 64
_decoded: dict[bytes, Message] = {}
_encoded: dict[tuple[Message, int | None, frozenset[int]], bytes] = {}


def decode(body: bytes) -> Message:
    """A message from a body (checksum included; the checksum itself is not checked here).

    Never raises for any input of 3 bytes or more: what does not fit a documented layout is
    ``Unknown``. The result re-encodes to exactly ``body[:-1]``.
    """
    key = bytes(body)
    message = _decoded.get(key)
    if message is None:
        message = _decode(key)
        if not isinstance(message, Unknown):
            if len(_decoded) >= _MEMO_MAX:
                _decoded.clear()
            _decoded[key] = message
    return message


def _decode(body: bytes) -> Message:
    payload = bytes(body[:-1])
    if len(payload) < 2:
        return Unknown(0, payload, "too short")
    code = int.from_bytes(payload[:2], "big")
    try:
        message = _decode_fields(code, payload)
        # Re-encoding inside the guard: a field that decodes but cannot encode again is a
        # layout the notes do not document, not an error for the caller.
        reencodes = message is None or message.to_payload() == payload
    except (ValueError, UnicodeError, IndexError, struct.error):
        message, reencodes = None, False
    if message is None and reencodes:
        note = "blocked code" if code in BLOCKED_CODES else "unknown code or length"
        if code in (Code.FOREIGN_MASTER_FC_E2, Code.FOREIGN_MASTER_FB_E1):
            note = "another master"
        return Unknown(code, payload, note)
    if not reencodes:
        return Unknown(code, payload, "unexpected padding or layout")
    return message


# --- encoding for the wire -----------------------------------------------------------------


def check_tx_allowed(payload: bytes, allowed_codes: frozenset[int] = MASTER_TX_CODES) -> None:
    """Raise ``DangerousMessageError`` unless the payload may be sent (§3.5, Appendix A.2)."""
    if len(payload) < 2:
        raise DangerousMessageError("payload too short")
    code = int.from_bytes(payload[:2], "big")
    if code in BLOCKED_CODES:
        raise DangerousMessageError(f"code {code:04X} is on the never-send list (§3.5)")
    if code not in allowed_codes:
        raise DangerousMessageError(f"code {code:04X} is not on the allow-list")
    if code == Code.MASTER_HEARTBEAT and payload[6] not in SAFE_HEARTBEAT_COMMANDS:
        raise DangerousMessageError(f"heartbeat command {payload[6]:02X} is never sent (§4.1)")


def encode_for_tx(
    message: Message,
    trailer: int | None = None,
    allowed_codes: frozenset[int] = MASTER_TX_CODES,
) -> bytes:
    """Wire bytes for a message, after the allow-list check. The only way to the wire."""
    key = (message, trailer, allowed_codes)
    try:
        wire = _encoded.get(key)
    except TypeError:  # a message with an unhashable field: not remembered
        key, wire = None, None
    if wire is not None:
        return wire  # checked against the same allow-list when it was first encoded
    payload = message.to_payload()
    check_tx_allowed(payload, allowed_codes)
    wire = codec.frame(payload, trailer)
    if key is not None:
        if len(_encoded) >= _MEMO_MAX:
            _encoded.clear()
        _encoded[key] = wire
    return wire


def describe(body: bytes) -> dict[str, Any]:
    """A JSON-ready description of a body (checksum included), as ``twcmaster decode`` prints."""
    message = decode(body)
    payload = bytes(body[:-1])
    code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 0
    out: dict[str, Any] = {
        "code": f"{code:04X}",
        "name": message.name if not isinstance(message, Unknown) else message.note,
        "sender": _id(message.sender),
        "receiver": _id(message.receiver),
        "checksum_ok": len(body) >= 2 and codec.checksum(payload) == body[-1],
        "length": len(body),
        "standard_length": len(body) in codec.VALID_BODY_LENGTHS,
    }
    if isinstance(message, SlaveLinkReady | SlaveHeartbeat | MasterHeartbeat):
        out["protocol"] = protocol_of_length(len(body))
    out.update(message.fields())
    return out
