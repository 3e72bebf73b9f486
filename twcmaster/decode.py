"""``twcmaster decode``: frames given as hex (framed or not, escaped or not) -> JSON lines.

Never raises on bad input: every problem becomes ``{"error": ...}``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from twcmaster.protocol import codec, messages

_SEPARATORS = re.compile(r"0x|[\s:,\-_]", re.IGNORECASE)
SHOWN_INPUT_CHARS = 120  # an error echoes at most this much of its input


def shown(text: str) -> str:
    """The input as an error shows it: whole when short, else its start and its length."""
    if len(text) <= SHOWN_INPUT_CHARS:
        return text
    return f"{text[:SHOWN_INPUT_CHARS]}… ({len(text)} characters)"


def normalise_hex(text: str) -> bytes:
    """Bytes from hex written with spaces, colons, commas or 0x prefixes."""
    digits = _SEPARATORS.sub("", text)
    if not digits:
        raise ValueError("no hex digits")
    if len(digits) % 2:
        raise ValueError(f"odd number of hex digits ({len(digits)})")
    try:
        return bytes.fromhex(digits)
    except ValueError:
        bad = next(c for c in digits if c not in "0123456789abcdefABCDEF")
        raise ValueError(f"not hex: {bad!r}") from None


def inputs_from_args(args: list[str]) -> list[str]:
    """Arguments that are single bytes (``C0 FB E0 ...``) form one frame; others one each."""
    if args and all(len(_SEPARATORS.sub("", a)) == 2 for a in args):
        return [" ".join(args)]
    return args


def decode_text(text: str) -> Iterator[dict[str, Any]]:
    """One JSON-ready object per frame found in ``text`` (or one error object)."""
    try:
        data = normalise_hex(text)
    except ValueError as exc:
        yield {"error": str(exc), "input": shown(text.strip())}
        return
    if codec.FRAME_END in (data[0], data[-1]):
        yield from _decode_framed(data)
    else:
        yield _decode_body(data)


def _decode_framed(data: bytes) -> Iterator[dict[str, Any]]:
    if data[0] != codec.FRAME_END:
        data = bytes([codec.FRAME_END]) + data  # opening delimiter left out
    if data.count(codec.FRAME_END) == 1:
        data += bytes([codec.FRAME_END])  # closing delimiter left out
    parser = codec.FrameParser(accepted_lengths=codec.LENIENT_BODY_LENGTHS, keep_bad_checksums=True)
    found = False
    for item in parser.feed(data, 0.0):
        found = True
        if isinstance(item, codec.BadFrame):
            yield {"error": item.reason, "input": shown(item.raw.hex(" ").upper())}
        else:
            yield messages.describe(item.body)
    if not found:
        yield {"error": "no complete frame found", "input": shown(data.hex(" ").upper())}


def _decode_body(data: bytes) -> dict[str, Any]:
    """An unframed body, checksum included; escaped or not."""
    candidates = [data]
    if codec.ESC in data:
        try:
            candidates.append(codec.unescape(data))
        except codec.FramingError:
            pass
    for body in candidates:
        if len(body) in codec.LENIENT_BODY_LENGTHS and _checksum_ok(body):
            return messages.describe(body)
    body = candidates[-1]
    if len(body) > codec.MAX_RAW_FRAME_BYTES:
        error = f"longer than any frame ({len(body)} bytes)"
        return {"error": error, "input": shown(data.hex(" "))}
    if len(body) < 3:
        return {
            "error": f"too short for a frame ({len(body)} bytes)",
            "input": shown(data.hex(" ")),
        }
    return messages.describe(body)


def _checksum_ok(body: bytes) -> bool:
    return codec.checksum(body[:-1]) == body[-1]


def decode_all(texts: Iterable[str]) -> Iterator[dict[str, Any]]:
    for text in texts:
        if text.strip():
            yield from decode_text(text)
