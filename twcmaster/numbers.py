"""One way to read a number from untrusted data (config files, settings.json, meter payloads,
views built by other code): every module that coerces goes through ``finite_number``.

TWCManager's files and many meters write numbers as text ("16", " 230.5"), so numeric
strings count; booleans do not (``True`` is not 1 A), nor do NaN and infinity (a broken
reading must never look like a huge one).
"""

from __future__ import annotations

import math
from numbers import Real

__all__ = ["finite_number", "finite_or", "non_negative", "whole_count"]


def finite_number(value: object) -> float | None:
    """``value`` as a finite float, or None for None, booleans, non-numeric text, NaN, inf."""
    if type(value) is float:  # the common case, without the checks below
        return value if math.isfinite(value) else None  # type: ignore[return-value]
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    elif isinstance(value, int | Real):  # int first: no ABC look-up for the common kind
        try:
            number = float(value)
        except OverflowError:  # an integer beyond any float (10**309): not a usable reading
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def finite_or(value: object, default: float) -> float:
    """``finite_number(value)``, or ``default`` when there is none."""
    number = finite_number(value)
    return default if number is None else number


def non_negative(value: object) -> float:
    """A finite number above 0, else 0.0 (amps or watts where garbage must mean nothing)."""
    number = finite_number(value)
    return number if number is not None and number > 0 else 0.0


def whole_count(value: object) -> int:
    """A count (of cars, of slaves) from anything: its whole part, garbage and below 0 as 0."""
    return int(non_negative(value))
