"""A smart meter's P1 port read directly on a serial line (TWCManager's ``DSMR`` source).

Config ``sources.DSMR`` (TWCManager's keys): ``serialPort`` (default ``/dev/ttyUSB2``, a P1
cable's USB serial adapter), ``baudrate`` (default 115200: DSMR 4 and 5, 8N1; 9600 means a
DSMR 2.2/3 meter, read as 7E1 as those meters send).

The meter sends a telegram every second (DSMR 5) or ten (DSMR 4)::

    /ISK5\\2M550T-1012
    <blank line>
    1-3:0.2.8(50)
    ...
    1-0:1.7.0(00.350*kW)
    1-0:2.7.0(01.920*kW)
    1-0:32.7.0(231.0*V)
    !6F3A

* ``1-0:1.7.0``, the power drawn from the grid (kW; W on some meters), is the consumption,
  and ``1-0:2.7.0``, the power fed in (kW), is reported as the generation, as TWCManager's
  DSMR-reader source does (set ``config.treatGenerationAsGridDelivery``); their difference
  is the grid (+ import / - export);
* ``1-0:32.7.0`` (L1 voltage), when the meter sends it, is the voltage.

A telegram whose CRC16 (after ``!``, over everything from ``/`` to ``!``; DSMR 4 and later)
does not match, or without the two power lines, is logged (at most once a minute) and
ignored. TWCManager's own DSMR module opened the port and read nothing; this one is a push
source: a thread reads the port and delivers each good telegram, the runner counts the
reading stale ``maxAge`` after the last one. A port that cannot be opened, or fails later
(a P1 cable unplugged), is reported and opened again every ``REOPEN_S`` seconds.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from twcmaster.logs import get_logger
from twcmaster.sources.base import Reading, Source, SourceError, SourceTiming
from twcmaster.sources.registry import Problem, check_number, read_number, read_text

DEFAULT_PORT = "/dev/ttyUSB2"
DEFAULT_BAUDRATE = 115200
OLD_METER_BAUDRATE = 9600  # DSMR 2.2 and 3: 7 data bits, even parity
READ_TIMEOUT_S = 0.2  # the reader thread wakes this often to notice stop()
REOPEN_S = 5.0
MAX_TELEGRAM_BYTES = 16 << 10  # a telegram is ~1 kB; a line noise run must not grow forever
BAD_TELEGRAM_LOG_EVERY_S = 60.0
DELIVERED = "1-0:1.7.0"
RETURNED = "1-0:2.7.0"
VOLTAGE_L1 = "1-0:32.7.0"
_OBJECT = re.compile(r"^(\d+-\d+:\d+\.\d+\.\d+)\((?P<value>[^)]*)\)", re.MULTILINE)
_QUANTITY = re.compile(r"^\s*(?P<number>[0-9]+(?:\.[0-9]+)?)\s*\*\s*(?P<unit>\w+)\s*$")


class TelegramError(ValueError):
    """A telegram that cannot be used (bad CRC, missing lines)."""


def crc16(data: bytes) -> int:
    """CRC-16/ARC (polynomial 0xA001 reflected, initial 0), as DSMR 4 and 5 sign telegrams."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def parse_telegram(telegram: bytes) -> Reading:
    """A ``Reading`` from one telegram, from ``/`` to the line after ``!``."""
    end = telegram.rfind(b"!")
    if not telegram.startswith(b"/") or end < 0:
        raise TelegramError("not a telegram (no '/' header or '!' end)")
    given = telegram[end + 1 :].strip()
    if given:  # DSMR 4 and later; DSMR 2.2/3 end with a bare '!'
        try:
            expected = int(given[:4], 16)
        except ValueError:
            raise TelegramError(f"CRC {given[:8]!r} is not hexadecimal") from None
        actual = crc16(telegram[: end + 1])
        if actual != expected:
            raise TelegramError(f"CRC mismatch: telegram says {expected:04X}, is {actual:04X}")
    text = telegram[:end].decode("ascii", errors="replace")
    values = {match.group(1): match.group("value") for match in _OBJECT.finditer(text)}
    delivered = _kw(values, DELIVERED) * 1000.0
    returned = _kw(values, RETURNED) * 1000.0
    voltage = None
    if VOLTAGE_L1 in values:
        match = _QUANTITY.match(values[VOLTAGE_L1])
        voltage = float(match.group("number")) if match else None
    return Reading(
        generation_w=returned,
        consumption_w=delivered,
        grid_w=delivered - returned,
        voltage_v=voltage or None,
    )


def _kw(values: Mapping[str, str], code: str) -> float:
    """kW from ``00.350*kW`` (or ``000000350*W``, as some Sagemcom meters write it)."""
    if code not in values:
        raise TelegramError(f"no {code} line")
    match = _QUANTITY.match(values[code])
    unit = match.group("unit") if match else None
    if unit not in ("kW", "W"):
        raise TelegramError(f"{code} is {values[code]!r}, expected '<number>*kW'")
    return float(match.group("number")) / (1000.0 if unit == "W" else 1.0)


class DsmrSource(Source):
    name = "DSMR"
    push = True

    def __init__(self, config: Mapping[str, Any], timing: SourceTiming, *, log: Any = None):
        super().__init__(config, timing)
        self.port = read_text(config, "serialPort", DEFAULT_PORT) or DEFAULT_PORT
        self.baudrate = int(read_number(config, "baudrate", DEFAULT_BAUDRATE))
        self._log = log if log is not None else get_logger(__name__, source=self.name)
        self._deliver: Callable[[Reading | BaseException], None] | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._serial: Any = None
        self._last_bad_log_s: float | None = None
        self._bad_held = 0

    @classmethod
    def check(cls, config: Mapping[str, Any]) -> list[Problem]:
        problems = check_number(config, "baudrate", minimum=1, unit="baud")
        port = config.get("serialPort")
        if port is not None and (not isinstance(port, str) or not port.strip()):
            problems.append(
                ("serialPort", f"expected a serial device such as /dev/ttyUSB0, got {port!r}")
            )
        return problems

    def describe(self) -> str:
        return f"DSMR P1 port on {self.port} at {self.baudrate} baud"

    # -- life cycle --------------------------------------------------------------------

    def start(self, deliver: Callable[[Reading | BaseException], None]) -> None:
        """Open the port (a SourceError if it cannot be: the runner retries) and start the
        reader thread."""
        if self._thread is not None:
            return
        self._deliver = deliver
        self._stopping.clear()
        self._serial = self._open()
        self._thread = threading.Thread(target=self._run, name="source:DSMR", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(READ_TIMEOUT_S * 5)
        self._close()

    # -- the reader thread -------------------------------------------------------------

    def _open(self) -> Any:
        import serial  # pyserial, as the RS-485 transport uses

        old = self.baudrate == OLD_METER_BAUDRATE
        try:
            return serial.Serial(
                self.port,
                baudrate=self.baudrate,
                bytesize=serial.SEVENBITS if old else serial.EIGHTBITS,
                parity=serial.PARITY_EVEN if old else serial.PARITY_NONE,
                stopbits=serial.STOPBITS_ONE,
                timeout=READ_TIMEOUT_S,
            )
        except (OSError, ValueError, serial.SerialException) as exc:
            raise SourceError(f"{self.name}: cannot open {self.port}: {exc}") from None

    def _close(self) -> None:
        port, self._serial = self._serial, None
        if port is not None:
            try:
                port.close()
            except Exception:  # noqa: BLE001 - a port gone with its cable: nothing to do
                pass

    def _run(self) -> None:
        buffer = b""
        while not self._stopping.is_set():
            try:
                if self._serial is None:
                    self._serial = self._open()
                chunk = self._serial.read(4096)
            except Exception as exc:  # noqa: BLE001 - a failing port never kills the thread
                self._close()
                error = exc if isinstance(exc, SourceError) else None
                self._send(error or SourceError(f"{self.name}: reading {self.port} failed: {exc}"))
                self._stopping.wait(REOPEN_S)
                buffer = b""
                continue
            if not chunk:
                continue
            buffer += chunk
            buffer = self._take_telegrams(buffer)

    def _take_telegrams(self, buffer: bytes) -> bytes:
        """Handles every complete telegram in ``buffer``; returns what is left."""
        while True:
            start = buffer.find(b"/")
            if start < 0:
                return b"" if len(buffer) > MAX_TELEGRAM_BYTES else buffer
            buffer = buffer[start:]
            end = buffer.find(b"!")
            if end < 0:
                return b"" if len(buffer) > MAX_TELEGRAM_BYTES else buffer
            line_end = buffer.find(b"\n", end)
            if line_end < 0:
                return buffer  # the CRC line is still coming
            telegram, buffer = buffer[: line_end + 1], buffer[line_end + 1 :]
            try:
                reading = parse_telegram(telegram)
            except TelegramError as exc:
                self._bad(str(exc))
                continue
            self._send(reading)

    def _bad(self, why: str) -> None:
        now = time.monotonic()
        if (
            self._last_bad_log_s is not None
            and now - self._last_bad_log_s < BAD_TELEGRAM_LOG_EVERY_S
        ):
            self._bad_held += 1
            return
        held, self._bad_held = self._bad_held, 0
        self._last_bad_log_s = now
        self._log.warning(
            "DSMR telegram ignored",
            port=self.port,
            why=why,
            **({"ignored_since_last_line": held} if held else {}),
        )

    def _send(self, item: Reading | BaseException) -> None:
        deliver = self._deliver
        if deliver is None or self._stopping.is_set():
            return
        try:
            deliver(item)
        except RuntimeError:  # the runner's loop has closed: shutting down
            pass
