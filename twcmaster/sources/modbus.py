"""One small Modbus TCP helper for the sources that read registers (SunSpec, SolarEdge
local, Kostal, Victron).

``ModbusReader`` wraps one ``pymodbus`` synchronous TCP client per source, connected on first
use and kept open between polls (devices such as SolarEdge inverters allow one client at a
time, and a reconnect per poll is slow). ``read(address, count, unit)`` reads holding
registers (function 3) and returns them as a list of 16-bit integers; every failure comes
back as a ``SourceError`` naming the source, the device, the registers and the cause in words
a user can act on::

    SunSpec: 192.168.1.50:502 unit 1, registers 40000-40001: timed out after 5 s

A failed read closes the connection, so the next poll starts clean (a half-read answer left
in the socket would be taken for the next one). Reads longer than the protocol's 125
registers are split. ``pymodbus`` is imported on first use, not at import time, so checking a
configuration never loads it; its own log lines (one per failed connect or read) are
silenced below CRITICAL: the ``SourceError`` says the same, and the runner logs an outage
once, not every poll.

The decoders below turn registers into numbers the SunSpec way: signed and unsigned 16 and
32 bit integers, IEEE floats, and "not implemented" markers (``0x8000`` for a signed value,
``0xFFFF`` for an unsigned one, NaN for a float) as None.
"""

from __future__ import annotations

import logging
import math
import struct
import time
from typing import Any

from twcmaster.sources.base import SourceError, SourceTiming

MAX_REGISTERS = 125  # the most one read-holding-registers request may ask for
NOT_IMPLEMENTED_INT16 = 0x8000
NOT_IMPLEMENTED_UINT16 = 0xFFFF
NOT_IMPLEMENTED_INT32 = 0x80000000
NOT_IMPLEMENTED_UINT32 = 0xFFFFFFFF

# Modbus exception codes, with what they usually mean for a user.
EXCEPTION_CODES = {
    1: "illegal function (the device does not read holding registers)",
    2: "illegal data address (the device has no such registers)",
    3: "illegal data value",
    4: "device failure",
    6: "device busy",
    10: "gateway path unavailable (no device answers behind this unit id)",
    11: "gateway target failed to respond (no device answers behind this unit id)",
}


class ModbusReader:
    """Holding registers of one Modbus TCP device (several unit ids behind one address)."""

    def __init__(self, name: str, host: str, port: int, timing: SourceTiming) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.timeout_s = timing.timeout_s
        self._client: Any = None

    def describe(self) -> str:
        return f"{self.host}:{self.port}"

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - closing a broken socket: nothing to do
                pass

    def read(self, address: int, count: int, unit: int, *, inputs: bool = False) -> list[int]:
        """``count`` holding (or input) registers from ``address`` of device ``unit``."""
        registers: list[int] = []
        while count > 0:
            size = min(count, MAX_REGISTERS)
            registers += self._read_once(address, size, unit, inputs)
            address += size
            count -= size
        return registers

    def _read_once(self, address: int, count: int, unit: int, inputs: bool) -> list[int]:
        kind = "input registers" if inputs else "registers"
        where = f"unit {unit}, {kind} {address}-{address + count - 1}"
        client = self._connect(where)
        from pymodbus.exceptions import ModbusException

        started_s = time.monotonic()
        reader = client.read_input_registers if inputs else client.read_holding_registers
        try:
            answer = reader(address, count=count, device_id=unit)
        except ModbusException as exc:
            self.close()
            elapsed_s = time.monotonic() - started_s
            raise self.error(where, _exception_cause(exc, elapsed_s, self.timeout_s)) from None
        except (OSError, ValueError, struct.error) as exc:
            self.close()
            raise self.error(where, f"garbled answer or broken connection ({exc})") from None
        if answer.isError():
            code = getattr(answer, "exception_code", None)
            cause = EXCEPTION_CODES.get(code, f"Modbus exception {code}")
            raise self.error(where, f"device answered with an error: {cause}")
        values = list(getattr(answer, "registers", None) or [])
        if len(values) < count:
            self.close()
            raise self.error(where, f"short answer: {len(values)} of {count} registers")
        return values[:count]

    def _connect(self, where: str) -> Any:
        if self._client is not None and self._client.connected:
            return self._client
        self.close()
        from pymodbus.client import ModbusTcpClient

        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

        client = ModbusTcpClient(
            self.host, port=self.port, timeout=self.timeout_s, retries=0, reconnect_delay=0
        )
        try:
            connected = client.connect()
        except OSError as exc:  # pragma: no cover - pymodbus reports failures as False
            connected = False
            detail = str(exc)
        else:
            detail = ""
        if not connected:
            client.close()
            cause = "cannot connect (refused, unreachable or timed out)"
            raise self.error(where, cause + (f": {detail}" if detail else ""))
        self._client = client
        return client

    def error(self, where: str, cause: str) -> SourceError:
        return SourceError(f"{self.name}: {self.describe()} {where}: {cause}")


def _exception_cause(exc: BaseException, elapsed_s: float, timeout_s: float) -> str:
    text = str(exc)
    lowered = text.lower()
    if "no response" in lowered or "timeout" in lowered or elapsed_s >= timeout_s * 0.9:
        return f"timed out after {timeout_s:g} s"
    if "connection" in lowered and ("closed" in lowered or "lost" in lowered):
        return "connection closed by the device"
    return f"garbled answer or broken connection ({text})"


# --------------------------------------------------------------------------- decoders


def uint16(value: int) -> int | None:
    return None if value == NOT_IMPLEMENTED_UINT16 else value


def int16(value: int) -> int | None:
    if value == NOT_IMPLEMENTED_INT16:
        return None
    return value - 0x10000 if value & 0x8000 else value


def uint32(high: int, low: int) -> int | None:
    value = (high << 16) | low
    return None if value == NOT_IMPLEMENTED_UINT32 else value


def int32(high: int, low: int) -> int | None:
    value = (high << 16) | low
    if value == NOT_IMPLEMENTED_INT32:
        return None
    return value - 0x100000000 if value & 0x80000000 else value


def float32(high: int, low: int) -> float | None:
    """An IEEE float, high word first; NaN (not implemented) and infinities are None."""
    value = struct.unpack(">f", struct.pack(">HH", high, low))[0]
    return value if math.isfinite(value) else None


def scaled(value: int | None, scale: int | None) -> float | None:
    """``value`` times 10 to the ``scale``; None when either is not implemented."""
    if value is None or scale is None:
        return None
    if not -10 <= scale <= 10:  # a scale factor beyond this is garbage, not a unit
        return None
    return value * 10.0**scale
