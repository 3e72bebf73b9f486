"""Wire framing of the TWC Gen2 RS-485 protocol (sans-I/O).

Knows bytes only: SLIP-style escaping, the 8-bit checksum, frame delimiters, the trailer byte
real TWCs send after a frame, and how to find frames in a noisy byte stream. Message layouts
live in ``messages.py``. Section numbers refer to ``shared/protocol/twc-rs485.md``.

A *body* is a frame after un-escaping, without its two ``C0`` delimiters; its last byte is the
checksum. A *payload* is a body without the checksum (what message classes build).
"""

from __future__ import annotations

from dataclasses import dataclass

BAUD = 9600  # every TWC talks 9600 8N1 (§1)
BITS_PER_BYTE = 10  # 8N1: a start bit, 8 data bits, a stop bit
BYTE_TIME_S = BITS_PER_BYTE / BAUD  # one byte on the wire, about 1.04 ms (§5.1)

FRAME_END = 0xC0  # opens and closes every frame (SLIP END)
ESC = 0xDB  # escape introducer (SLIP ESC)
ESC_END = 0xDC  # DB DC on the wire stands for a C0 body byte
ESC_ESC = 0xDD  # DB DD on the wire stands for a DB body byte

#: Body lengths (checksum included) real units send: 14 = protocol 1, 16 = protocol 2,
#: 20 = firmware 4.5.3 extended replies (§2.5).
VALID_BODY_LENGTHS = frozenset({14, 16, 20})
#: Lengths the lenient decoder (``twcmaster decode``) also accepts: TWCManager sends 15-byte VIN
#: and kWh requests and ESP32 masters 13-byte ones (§2.5, vector T27).
LENIENT_BODY_LENGTHS = frozenset({13, 14, 15, 16, 20})

#: A closing C0 after fewer raw bytes than the shortest accepted body + 1 (the opening C0)
#: cannot end a real frame: it is taken as the opening of a new one (§2.4 step 2). With the
#: standard lengths that is 15, as in TWCManager.
#: Longest plausible raw frame (20-byte body, every byte escaped would be 42, plus delimiters).
MAX_RAW_FRAME_BYTES = 48
#: A partial frame that gets no byte for this long is dropped (§2.4 step 3).
PARTIAL_FRAME_TIMEOUT_S = 2.0
#: A frame being sent at 9600 baud brings a byte every ~1 ms (a USB adapter may batch a few
#: ms). A partial frame silent for longer is noise that opened with a C0, not a frame in
#: flight: the master may talk over it rather than wait for the 2 s timeout.
FRAME_IN_FLIGHT_SILENCE_S = 0.05
#: The longest a real frame takes from its opening C0 to its closing one: 48 raw bytes at
#: 9600 baud 8N1 (~50 ms), plus as much again for an adapter's batching. A partial frame
#: open for longer is a babbling line, not a frame in flight: the master may talk over it,
#: or a unit sending a byte every 40 ms would silence the master for good (§5.2).
MAX_FRAME_IN_FLIGHT_S = 2 * MAX_RAW_FRAME_BYTES * BYTE_TIME_S
#: Byte strings a parser remembers the frames of (bounded: noise must not grow the memory).
WHOLE_FRAMES_MEMO_MAX = 64


class FramingError(ValueError):
    """Bytes that cannot be a TWC frame."""


def checksum(payload: bytes) -> int:
    """8-bit sum of every payload byte except the first (type) byte (§2.3)."""
    return sum(payload[1:]) & 0xFF


def escape(body: bytes) -> bytes:
    """SLIP-escape a body: C0 -> DB DC, DB -> DB DD (§2.2)."""
    return body.replace(bytes([ESC]), bytes([ESC, ESC_ESC])).replace(
        bytes([FRAME_END]), bytes([ESC, ESC_END])
    )


def unescape(raw: bytes) -> bytes:
    """Reverse ``escape``. A DB followed by anything else than DC/DD is corrupt (§2.2)."""
    if ESC not in raw:  # the usual frame: nothing escaped
        return bytes(raw)
    out = bytearray()
    it = iter(raw)
    for byte in it:
        if byte != ESC:
            out.append(byte)
            continue
        follower = next(it, None)
        if follower == ESC_END:
            out.append(FRAME_END)
        elif follower == ESC_ESC:
            out.append(ESC)
        else:
            shown = "end of frame" if follower is None else f"{follower:02X}"
            raise FramingError(f"bad escape: DB followed by {shown}")
    return bytes(out)


def frame(payload: bytes, trailer: int | None = None) -> bytes:
    """Wire bytes for a payload: checksum appended, escaped, delimited, optional trailer.

    This is the raw framing layer; it checks nothing about what the payload means. The daemon
    sends through ``messages.encode_for_tx``, which applies the allow-list.
    """
    body = payload + bytes([checksum(payload)])
    wire = bytes([FRAME_END]) + escape(body) + bytes([FRAME_END])
    if trailer is not None:
        wire += bytes([trailer])
    return wire


@dataclass(frozen=True, slots=True)
class Frame:
    """A complete frame found on the wire, already un-escaped and length-checked."""

    body: bytes  # checksum included

    @property
    def payload(self) -> bytes:
        return self.body[:-1]

    @property
    def checksum_ok(self) -> bool:
        return checksum(self.payload) == self.body[-1]


@dataclass(frozen=True, slots=True)
class BadFrame:
    """Bytes that looked like a frame but were rejected; reported for diagnostics only."""

    raw: bytes  # as received, delimiters included
    reason: str


class FrameParser:
    """Finds frames in a byte stream, resynchronising on garbage (§2.4).

    Feed it whatever the serial port returned, with the time it arrived; it returns the
    complete frames (and rejected candidates) in order. Frames with a bad checksum are rejected
    unless ``keep_bad_checksums`` is set (the decoder shows them with ``checksum_ok: false``).
    """

    def __init__(
        self,
        *,
        accepted_lengths: frozenset[int] = VALID_BODY_LENGTHS,
        keep_bad_checksums: bool = False,
        partial_timeout_s: float = PARTIAL_FRAME_TIMEOUT_S,
    ) -> None:
        self._accepted_lengths = accepted_lengths
        self._keep_bad_checksums = keep_bad_checksums
        self._partial_timeout_s = partial_timeout_s
        self._min_collected = min(accepted_lengths) + 1
        self._collected = bytearray()  # raw bytes since the opening C0 (included); empty = idle
        self._last_byte_s = 0.0
        self._opened_s = 0.0  # when the partial frame's opening C0 arrived
        # Byte strings that held only whole, good frames, fed while idle -> those frames.
        self._whole: dict[bytes, tuple[Frame, ...]] = {}

    @property
    def receiving(self) -> bool:
        """True while a frame is half received (§5.2)."""
        return bool(self._collected)

    def receiving_at(self, now_s: float) -> bool:
        """True while a frame is arriving now: the master must not talk (§5.2)."""
        return (
            bool(self._collected)
            and now_s - self._last_byte_s < FRAME_IN_FLIGHT_SILENCE_S
            and now_s - self._opened_s < MAX_FRAME_IN_FLIGHT_S
        )

    def expire(self, now_s: float) -> None:
        """Drop a partial frame that has been silent for too long."""
        if self._collected and now_s - self._last_byte_s > self._partial_timeout_s:
            self._collected.clear()

    def feed(self, data: bytes, now_s: float) -> list[Frame | BadFrame]:
        self.expire(now_s)
        self._last_byte_s = now_s
        collected = self._collected
        idle = not collected
        if idle:
            # Whole frames the parser found in these very bytes before, from idle to idle:
            # the same again (a bus repeats its heartbeats every second).
            known = self._whole.get(data) if type(data) is bytes else None
            if known is not None:
                self._opened_s = now_s
                return list(known)
        events = self._feed(data, now_s, collected)
        if idle and not collected and events and type(data) is bytes:
            if all(type(event) is Frame for event in events):
                if len(self._whole) >= WHOLE_FRAMES_MEMO_MAX:
                    self._whole.clear()
                self._whole[data] = tuple(events)  # type: ignore[arg-type]
        return events

    def _feed(self, data: bytes, now_s: float, collected: bytearray) -> list[Frame | BadFrame]:
        events: list[Frame | BadFrame] = []
        position, end = 0, len(data)
        # Work from delimiter to delimiter (bytes.find) rather than byte by byte: this runs
        # for every reply, and the per-byte loop was the daemon's largest single cost.
        while position < end:
            delimiter = data.find(FRAME_END, position)
            if not collected:  # idle: everything but an opening C0 is trailer or noise
                if delimiter < 0:
                    break
                collected.append(FRAME_END)
                self._opened_s = now_s
                position = delimiter + 1
                continue
            stop = end if delimiter < 0 else delimiter
            collected += data[position:stop]
            if len(collected) > MAX_RAW_FRAME_BYTES:
                events.append(BadFrame(bytes(collected), "too long, no closing C0"))
                collected.clear()
                position = stop  # what follows is looked at again from idle
                continue
            if delimiter < 0:
                break
            position = delimiter + 1
            events += self._close(collected)
            if collected:  # the C0 that closed nothing opens the next candidate
                self._opened_s = now_s
        return events

    def _close(self, collected: bytearray) -> list[Frame | BadFrame]:
        """A C0 arrived while collecting: a frame's end, or the start of a new one."""
        if len(collected) < self._min_collected:
            # Too short to be an end: we started mid-frame or saw C0 C0. Start again here.
            collected[:] = bytes([FRAME_END])
            return []
        event = self._check(bytes(collected) + bytes([FRAME_END]))
        # After a rejected candidate the closing C0 may really be the opening of the next
        # frame (noise that began with C0): keep it as an opening.
        collected[:] = b"" if isinstance(event, Frame) else bytes([FRAME_END])
        return [event]

    def _check(self, raw: bytes) -> Frame | BadFrame:
        try:
            body = unescape(raw[1:-1])
        except FramingError as exc:
            return BadFrame(raw, str(exc))
        if len(body) not in self._accepted_lengths:
            return BadFrame(raw, f"body length {len(body)} is not one of 14, 16, 20")
        candidate = Frame(body)
        if not candidate.checksum_ok and not self._keep_bad_checksums:
            return BadFrame(
                raw, f"checksum {body[-1]:02X} != {checksum(candidate.payload):02X} computed"
            )
        return candidate
