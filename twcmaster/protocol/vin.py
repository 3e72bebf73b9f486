"""VIN check digit (ISO 3779 / North American scheme), used by the master to validate the
VIN a TWC reports (§5.4) and by the simulator to make valid ones."""

from __future__ import annotations

VIN_LENGTH = 17
#: Position weights of the check digit sum; position 9 (the check digit itself) weighs 0 (§5.4).
VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)
#: Letter values of the transliteration table; I, O and Q never appear in a VIN.
VIN_LETTER_VALUES = dict(zip("ABCDEFGH", range(1, 9), strict=True))
VIN_LETTER_VALUES |= dict(zip("JKLMN", range(1, 6), strict=True)) | {"P": 7, "R": 9}
VIN_LETTER_VALUES |= dict(zip("STUVWXYZ", range(2, 10), strict=True))
VIN_ALPHABET = "0123456789" + "".join(sorted(VIN_LETTER_VALUES))
CHECK_DIGIT_INDEX = 8  # position 9, counting from 1


def _vin_value(char: str) -> int:
    if char.isdigit():
        return int(char)
    return VIN_LETTER_VALUES[char]  # KeyError for I, O, Q and anything else


def vin_check_digit(vin: str) -> str:
    """The check digit (position 9) a 17-character VIN must carry: ``0``..``9`` or ``X``."""
    if len(vin) != VIN_LENGTH:
        raise ValueError(f"a VIN has {VIN_LENGTH} characters, not {len(vin)}")
    total = sum(_vin_value(c) * w for c, w in zip(vin.upper(), VIN_WEIGHTS, strict=True))
    remainder = total % 11
    return "X" if remainder == 10 else str(remainder)


def vin_check_digit_ok(vin: str) -> bool:
    """True when ``vin`` is 17 valid characters whose position 9 is the right check digit."""
    try:
        return vin_check_digit(vin) == vin.upper()[CHECK_DIGIT_INDEX]
    except (ValueError, KeyError):
        return False
