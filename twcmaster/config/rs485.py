"""``interface.RS485`` (and TWCManager's older homes of its keys, ``config.rs485adapter`` and
``config.baud``) -> ``RS485Config``: the port, the line speed and the master's identity."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from twcmaster.config.defaults import DEFAULTS
from twcmaster.config.fields import ABSENT, Section, section
from twcmaster.config.limits import MAX_BAUD, MAX_WAIT_S
from twcmaster.config.model import RS485Config
from twcmaster.config.problems import Report
from twcmaster.protocol.codec import BAUD, ESC, FRAME_END

_PYSERIAL_URL_SCHEMES = ("socket", "rfc2217", "loop", "spy", "alt", "hwgrep", "cp2110")


def parse_rs485(data: Mapping[str, Any], report: Report) -> RS485Config | None:
    bus = Section(section(data, "interface", "RS485"), "interface.RS485", report)
    legacy = Section(section(data, "config"), "config", report)
    port = _parse_port(bus, legacy)
    baud = _parse_baud(bus, legacy)
    twcid = bus.hex_bytes("masterTWCID", DEFAULTS["interface.RS485.masterTWCID"], size=2)
    trailer = bus.hex_bytes("trailerByte", DEFAULTS["interface.RS485.trailerByte"], size=1)
    fields = dict(
        enabled=bus.boolean("enabled", DEFAULTS["interface.RS485.enabled"]),
        port=port,
        baud=baud,
        slave_timeout_s=bus.number(
            "slaveTimeout",
            DEFAULTS["interface.RS485.slaveTimeout"],
            f"seconds > 0, at most {MAX_WAIT_S:g} (a day)",
            lambda x: 0 < x <= MAX_WAIT_S,
        ),  # fmt: skip
        master_twcid=_check_master_twcid(bus, twcid),
        master_sign=bus.hex_bytes("masterSign", DEFAULTS["interface.RS485.masterSign"], size=1),
        trailer_byte=trailer,
    )
    if trailer == FRAME_END:
        report.error(bus.key_path("trailerByte"), '"C0" would open a new frame; use "FE" or null')
        return None
    if any(value is None for key, value in fields.items() if key != "trailer_byte"):
        return None
    return RS485Config(**fields)


def _parse_port(bus: Section, legacy: Section) -> str | None:
    source, key = _port_key(bus, legacy)
    if source is legacy and legacy.raw(key) is not ABSENT:
        legacy.report.warn(
            legacy.key_path(key), "old place for the port; move it to interface.RS485.port"
        )
    port = source.text(key, DEFAULTS["interface.RS485.port"])
    if port is None:
        return None
    if "://" not in port:
        if port.startswith("/"):
            return port
        source.bad(key, port, "a device path like /dev/ttyUSB0 or a URL like socket://host:port")
        return None
    problem = _port_url_problem(port)
    if problem:
        source.bad(key, port, problem)
        return None
    return port


def _port_key(bus: Section, legacy: Section) -> tuple[Section, str]:
    """Where the port is written: interface.RS485.port; else "device", the name TWCManager's
    interface docs give it (its code never read it: the user meant the port, so it is
    used); else the legacy config.rs485adapter."""
    if bus.raw("port") is not ABSENT:
        if bus.raw("device") is not ABSENT:
            bus.report.warn(bus.key_path("device"), "ignored: interface.RS485.port is set")
        return bus, "port"
    if bus.raw("device") is not ABSENT:
        bus.report.warn(
            bus.key_path("device"),
            "used as the port (TWCManager's docs call it so, but TWCManager itself read only "
            "interface.RS485.port and ignored this); rename it to port",
        )
        return bus, "device"
    return legacy, "rs485adapter"


def _port_url_problem(url: str) -> str | None:
    """Why pyserial would refuse this URL, or None."""
    parts = urlsplit(url)
    if parts.scheme not in _PYSERIAL_URL_SCHEMES:
        return f"a device path or a pyserial URL ({', '.join(_PYSERIAL_URL_SCHEMES)})"
    if parts.scheme in ("socket", "rfc2217"):
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or port is None:
            return f"{parts.scheme}://host:port with a port from 1 to 65535"
    return None


def _parse_baud(bus: Section, legacy: Section) -> int | None:
    source = bus if bus.raw("baud") is not ABSENT else legacy
    if source is legacy and legacy.raw("baud") is not ABSENT:
        legacy.report.warn(
            "config.baud", "old place for the baud rate; move it to interface.RS485.baud"
        )
    # pyserial takes "9600" as well as 9600, so TWCManager configs may hold either.
    baud = source.whole(
        "baud",
        DEFAULTS["interface.RS485.baud"],
        "a baud rate like 9600",
        lambda x: 0 < x <= MAX_BAUD,
        True,
    )
    if baud is not None and baud != BAUD:
        source.report.warn(
            source.key_path("baud"),
            f"{baud}: TWCs talk at {BAUD} baud; "
            "change it only for an adapter that converts the rate",
        )
    return baud


def _check_master_twcid(bus: Section, twcid: int | None) -> int | None:
    if twcid is None:
        return None
    path = bus.key_path("masterTWCID")
    if twcid == 0:
        bus.report.error(
            path,
            '"0000" cannot be the master ID: slaves have been seen '
            'addressing 0000, so it does not identify us; the default is "7777"',
        )
        return None
    for byte in (twcid >> 8, twcid & 0xFF):
        if byte in (FRAME_END, ESC):
            role = "frame delimiter" if byte == FRAME_END else "escape byte"
            bus.report.error(
                path,
                f'"{twcid:04X}" contains {byte:02X}, the {role}: every '
                "frame carrying the ID would need escaping; choose another ID",
            )
            return None
    return twcid
