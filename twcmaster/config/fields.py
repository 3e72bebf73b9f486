"""Typed reads of single keys: ``Section.number / whole / amps / boolean / text / hex_bytes``.

A bad value is reported (key path, the value as written, what was expected) and read back as
None, so every problem in the file is found in one pass. ``null`` means "use the default".
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from twcmaster.config.problems import Report, describe_value
from twcmaster.numbers import finite_number

# Values a setting may take when its key is absent.
REQUIRED = object()
ABSENT = object()


def section(data: Mapping[str, Any], *keys: str) -> Mapping[str, Any]:
    """``data[k1][k2]...``, or an empty mapping when absent or not a section."""
    node: Any = data
    for key in keys:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node if isinstance(node, Mapping) else {}


def _anything(_: float) -> bool:
    return True


class Section:
    """Typed reads from one section; a bad value is reported and read back as None."""

    def __init__(self, values: Mapping[str, Any], path: str, report: Report) -> None:
        self.values = values
        self.path = path
        self.report = report

    def key_path(self, key: str) -> str:
        return f"{self.path}.{key}"

    def raw(self, key: str) -> Any:
        value = self.values.get(key)
        return ABSENT if value is None else value  # null means "use the default"

    def bad(self, key: str, value: Any, expected: str) -> None:
        self.report.error(self.key_path(key), f"expected {expected}, got {describe_value(value)}")

    def number(
        self,
        key: str,
        default: Any,
        expected: str,
        valid: Callable[[float], bool] = _anything,
        from_string: bool = False,
    ) -> Any:
        """A finite number as float; ``default`` when absent (or ``REQUIRED``)."""
        value = self.raw(key)
        if value is ABSENT:
            if default is REQUIRED:
                self.report.error(self.key_path(key), f"missing; expected {expected}")
            return None if default is REQUIRED else default
        number = _as_number(value, from_string)
        if number is None or not valid(number):
            self.bad(key, value, expected)
            return None
        return float(number)

    def whole(
        self,
        key: str,
        default: Any,
        expected: str,
        valid: Callable[[float], bool] = _anything,
        from_string: bool = False,
    ) -> int | None:
        """A whole number as int; a fractional one is an error naming the key."""
        number = self.number(key, default, expected, valid, from_string)
        if number is None:
            return None
        if number != int(number):
            self.bad(key, self.raw(key), expected)
            return None
        return int(number)

    def amps(
        self, key: str, default: Any, expected: str, valid: Callable[[float], bool] = _anything
    ) -> int | None:
        """Whole amps; a fractional value is rounded down, the safe direction."""
        number = self.number(key, default, expected, valid)
        if number is None:
            return None
        if number != int(number):
            self.report.warn(
                self.key_path(key),
                f"{describe_value(number)} A rounded down to "
                f"{math.floor(number)} A (twcmaster works in whole amps)",
            )
        return math.floor(number)

    def boolean(self, key: str, default: bool) -> bool | None:
        value = self.raw(key)
        if value is ABSENT:
            return default
        if isinstance(value, bool):
            return value
        if type(value) is int and value in (0, 1):  # TWCManager's settings use 0/1
            return bool(value)
        self.bad(key, value, "true or false")
        return None

    def text(self, key: str, default: str) -> str | None:
        value = self.raw(key)
        if value is ABSENT:
            return default
        if isinstance(value, str) and value.strip():
            return value.strip()
        self.bad(key, value, "a non-empty string")
        return None

    def optional_text(self, key: str, *, secret: bool = False, strip: bool = False) -> str | None:
        """A string that may be left out: absent, null and "" read as None (TWCManager's
        sample writes "" for no user, no password). ``secret``: a bad value is not echoed."""
        value = self.values.get(key)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            self.bad(key, "(hidden)" if secret else value, "text")
            return None
        return value.strip() if strip else value

    def hex_bytes(self, key: str, default: str | None, size: int) -> int | None:
        value = self.raw(key)
        if value is ABSENT:
            value = default
        if value is None:
            return None
        digits = 2 * size
        if isinstance(value, str) and re.fullmatch(f"[0-9A-Fa-f]{{{digits}}}", value):
            return int(value, 16)
        example = "7777"[:digits]
        self.bad(key, value, f'{digits} hex digits in quotes, like "{example}"')
        return None


def _as_number(value: Any, from_string: bool) -> float | None:
    """A finite number; text only ``from_string`` (pyserial's rule: int() text, or float()
    text with a decimal point), as TWCManager configs may write a baud rate."""
    if isinstance(value, str):
        if not from_string:
            return None
        try:
            value = float(value) if "." in value else int(value)
        except ValueError:
            return None
    return finite_number(value)
