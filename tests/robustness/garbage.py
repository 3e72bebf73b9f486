"""What a noisy RS-485 pair can carry, for the fuzzers: garbage of every kind the framing
notes (§2) talk about, and valid frames to interleave with it.

One generator serves three drivers through a tiny ``Source`` interface (``integer``,
``binary``, ``choice``): Hypothesis (``DrawSource``: shrinkable examples), ``random.Random``
(``RandomSource``: long runs, bounded memory checks) and atheris (``atheris_fuzz.py``).

Kinds of garbage (``PIECE_KINDS``): random bytes (with and without C0), frames cut short or
started in the middle, bad escapes (DB followed by anything but DC/DD, a DB at the end),
wrong checksums, wrong lengths with a valid checksum, valid-checksum garbage of the valid
lengths 14/16/20 (random codes, and the codes that matter: VIN parts and the serial with
bytes >= 0x80, heartbeats, link-ready, energy reports, foreign masters), over-long frames
without a closing C0, runs of C0, trailer bytes, and the master's own frames (an echo).
Section numbers refer to ``shared/protocol/twc-rs485.md``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from hypothesis import strategies as st

from twcmaster.protocol import codec, messages
from twcmaster.protocol.messages import Code

MASTER_ID = 0x7777
TRAILERS = (0xFE, 0xFC, 0xF8, 0xFF)  # what real units send after the closing C0 (§2.1)
VALID_LENGTHS = (14, 16, 20)  # body lengths, checksum included (§2.5)
#: 20-byte replies that carry ASCII text (§3.4): VIN parts 1-3 and the serial number.
TEXT_CODES = (Code.VIN1, Code.VIN2, Code.VIN3, Code.SERIAL)
#: Codes worth aiming at: every code the catalogue lists, the blocked ones, foreign masters.
KNOWN_CODES = tuple(int(c) for c in Code) + tuple(sorted(messages.BLOCKED_CODES))


class Source(Protocol):
    def integer(self, lo: int, hi: int) -> int: ...  # lo <= n <= hi

    def binary(self, lo: int, hi: int) -> bytes: ...  # lo <= len <= hi

    def choice(self, options: Sequence[Any]) -> Any: ...


class DrawSource:
    """Hypothesis: every choice is a draw, so examples shrink."""

    def __init__(self, draw: Callable[[st.SearchStrategy], Any]) -> None:
        self._draw = draw

    def integer(self, lo: int, hi: int) -> int:
        return self._draw(st.integers(lo, hi))

    def binary(self, lo: int, hi: int) -> bytes:
        return self._draw(st.binary(min_size=lo, max_size=hi))

    def choice(self, options: Sequence[Any]) -> Any:
        return self._draw(st.sampled_from(options))


class RandomSource:
    """``random.Random``: long runs without Hypothesis's per-example size limits."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def integer(self, lo: int, hi: int) -> int:
        return self._rng.randint(lo, hi)

    def binary(self, lo: int, hi: int) -> bytes:
        return self._rng.randbytes(self._rng.randint(lo, hi))

    def choice(self, options: Sequence[Any]) -> Any:
        return self._rng.choice(options)


# --- building blocks -----------------------------------------------------------------------------


def body_of(payload: bytes) -> bytes:
    """A body: the payload and its checksum (§2.3)."""
    return payload + bytes([codec.checksum(payload)])


def wire_of(body: bytes, trailer: int | None = None) -> bytes:
    """A body escaped and delimited exactly as a transmitter would, checksum untouched."""
    wire = bytes([codec.FRAME_END]) + codec.escape(body) + bytes([codec.FRAME_END])
    return wire if trailer is None else wire + bytes([trailer])


def slave_wire(message: messages.Message, trailer: int | None = 0xFE) -> bytes:
    return messages.encode_for_tx(message, trailer, messages.SLAVE_TX_CODES)


def random_payload(src: Source) -> bytes:
    """A payload (checksum to be added) of a valid body length with a chosen or random code:
    random, a VIN/serial reply (bytes >= 0x80 included: issue 7 finding 1), or any code of
    the catalogue."""
    length = src.choice(VALID_LENGTHS)
    how = src.integer(0, 9)
    if how <= 2:
        code = src.integer(0, 0xFFFF)
    elif how <= 5:
        code = int(src.choice(TEXT_CODES))
        length = 20 if how <= 4 else length
    else:
        code = src.choice(KNOWN_CODES)
    rest = src.binary(length - 3, length - 3)
    if src.integer(0, 2) == 0:  # a sender we know, so the master looks closer
        rest = src.choice((b"\x12\x34", b"\x77\x77", b"\x00\x00")) + rest[2:]
    if src.integer(0, 2) == 0:  # zero padding after a few bytes, as real layouts have
        keep = src.integer(0, len(rest))
        rest = rest[:keep] + bytes(len(rest) - keep)
    return code.to_bytes(2, "big") + rest


def valid_message_wire(src: Source, known_ids: Sequence[int]) -> bytes:
    """A well-formed frame a real bus could carry, from a slave we know or an unknown unit."""
    sender = src.choice([*known_ids, 0x0000, 0x1111, 0xC0DB, src.integer(0, 0xFFFF)])
    protocol = src.choice((1, 2))
    kind = src.integer(0, 7)
    if kind == 0:
        message: messages.Message = messages.SlaveHeartbeat.build(
            sender,
            src.choice((MASTER_ID, 0x0000, src.integer(0, 0xFFFF))),
            src.integer(0, 255),
            src.integer(0, 0xFFFF),
            src.integer(0, 0xFFFF),
            protocol,
        )
    elif kind == 1:
        message = messages.SlaveLinkReady(
            sender, src.integer(0, 255), src.integer(0, 0xFFFF), protocol
        )
    elif kind == 2:
        volts = (src.integer(0, 300), src.integer(0, 300), src.integer(0, 300))
        halves = None if protocol == 1 else (src.integer(0, 255),) * 3
        message = messages.EnergyReport(sender, src.integer(0, 2**32 - 1), volts, halves)
    elif kind == 3:
        part = src.integer(1, 3)
        text = "".join(src.choice("0123456789ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(7))
        message = messages.VinPart(part, sender, text[: messages.VIN_PART_LENGTHS[part - 1]])
    elif kind == 4:
        # Another master on the bus (§3.1): its link-ready or heartbeat.
        message = messages.MasterLinkReady(src.integer(1, 2), sender, src.integer(0, 255))
        return codec.frame(message.to_payload(), src.choice((None, *TRAILERS)))
    elif kind == 5:
        message = messages.MasterHeartbeat.build(
            sender, src.choice(known_ids or [0x1234]), 0x09, src.integer(0, 0xFFFF), 2
        )
        return codec.frame(message.to_payload(), src.choice((None, *TRAILERS)))
    elif kind == 6:
        message = messages.SlaveReply(
            src.choice((Code.PLUG_STATE, Code.ACK_START, Code.ACK_STOP)),
            sender,
            bytes([src.integer(0, 4)]),
        )
    else:
        message = messages.FirmwareVersion(sender, tuple(src.binary(4, 4)))
    return codec.frame(message.to_payload(), src.choice((None, *TRAILERS)))


PIECE_KINDS = (
    "random",
    "random_with_c0",
    "truncated",
    "mid_frame",
    "bad_escape",
    "bad_checksum",
    "bad_length",
    "valid_checksum_garbage",
    "overlong",
    "c0_run",
    "trailer",
    "valid_message",
)


def piece(src: Source, known_ids: Sequence[int] = ()) -> tuple[str, bytes]:
    """One piece of line noise: (its kind, its bytes)."""
    kind = src.choice(PIECE_KINDS)
    payload = lambda: random_payload(src)  # noqa: E731
    if kind == "random":
        return kind, src.binary(0, 40)
    if kind == "random_with_c0":
        data = bytearray(src.binary(1, 40))
        for _ in range(src.integer(1, 4)):
            data.insert(src.integer(0, len(data)), codec.FRAME_END)
        return kind, bytes(data)
    if kind in ("truncated", "mid_frame"):
        full = wire_of(body_of(payload()))
        cut = src.integer(1, len(full) - 1)
        return kind, full[:cut] if kind == "truncated" else full[cut:]
    if kind == "bad_escape":
        escaped = bytearray(codec.escape(body_of(payload())))
        follower = src.choice([b for b in range(256) if b not in (codec.ESC_END, codec.ESC_ESC)])
        where = src.integer(0, len(escaped))
        if src.integer(0, 3) == 0:
            escaped.append(codec.ESC)  # DB right before the closing C0
        elif follower == codec.FRAME_END:
            escaped[where:where] = bytes([codec.ESC, codec.FRAME_END])
        else:
            escaped[where:where] = bytes([codec.ESC, follower])
        return kind, bytes([codec.FRAME_END]) + bytes(escaped) + bytes([codec.FRAME_END])
    if kind == "bad_checksum":
        data = payload()
        wrong = (codec.checksum(data) + src.integer(1, 255)) & 0xFF
        return kind, wire_of(data + bytes([wrong]), src.choice((None, *TRAILERS)))
    if kind == "bad_length":
        length = src.choice([n for n in range(1, 46) if n not in VALID_LENGTHS])
        data = src.binary(length - 1, length - 1)
        return kind, wire_of(body_of(data) if length > 1 else data)
    if kind == "valid_checksum_garbage":
        return kind, wire_of(body_of(payload()), src.choice((None, *TRAILERS)))
    if kind == "overlong":
        filler = bytes(b for b in src.binary(40, 120) if b != codec.FRAME_END)
        return kind, bytes([codec.FRAME_END]) + filler + bytes(49)
    if kind == "c0_run":
        return kind, bytes([codec.FRAME_END]) * src.integer(1, 5)
    if kind == "trailer":
        return kind, bytes([src.choice(TRAILERS)])
    return kind, valid_message_wire(src, known_ids)


def chunks(src: Source, data: bytes, max_chunk: int = 24) -> list[bytes]:
    """``data`` as a serial port might return it: in pieces of random sizes."""
    out, position = [], 0
    while position < len(data):
        size = src.integer(1, max_chunk)
        out.append(data[position : position + size])
        position += size
    return out


# --- Hypothesis strategies -----------------------------------------------------------------------


@st.composite
def pieces(draw, known_ids: Sequence[int] = ()):
    return piece(DrawSource(draw), known_ids)


@st.composite
def chunked(draw, data: bytes, max_chunk: int = 24) -> list[bytes]:
    return chunks(DrawSource(draw), data, max_chunk)
