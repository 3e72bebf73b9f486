"""Victron GX devices (Cerbo GX, Venus GX) over Modbus TCP (TWCManager's ``Victron``).

Config ``sources.Victron`` (TWCManager's keys):

* ``serverIP``; ``serverPort`` (default 502); ``unitID`` (default 100, the GX's own
  "com.victronenergy.system" unit); ``timeout`` (s, as for every source);
* ``consumptionRegisters``: ``[[address, unitID], ...]``, default ``[[817, 100], [818, 100],
  [819, 100]]``: the system's AC consumption on L1..L3 (W);
* ``generationRegisters``: default ``[[808, 100], [809, 100], [810, 100]]``: PV
  AC-coupled on the output, L1..L3 (W).

Each register is read as an input register (function 4) of its unit, an unsigned 16-bit
value in watts, and each list is summed. TWCManager skipped a register it could not read
(counting it as 0 W, which overstates the surplus); twcmaster fails the poll instead, so the
budget falls back to the safe value. TWCManager also returned the consumption negated; it is
reported here as the positive house load.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twcmaster.sources.base import Reading, Source, SourceTiming
from twcmaster.sources.modbus import ModbusReader, uint16
from twcmaster.sources.registry import (
    Problem,
    check_host,
    check_port,
    describe,
    read_port,
    read_text,
)
from twcmaster.sources.sunspec import check_unit_ids

DEFAULT_PORT = 502
DEFAULT_UNIT_ID = 100
DEFAULT_CONSUMPTION = ((817, 100), (818, 100), (819, 100))  # AC consumption L1..L3
DEFAULT_GENERATION = ((808, 100), (809, 100), (810, 100))  # PV AC-coupled on output L1..L3
REGISTER_KEYS = {
    "consumption": ("consumptionRegisters", DEFAULT_CONSUMPTION),
    "generation": ("generationRegisters", DEFAULT_GENERATION),
}


class VictronSource(Source):
    name = "Victron"

    def __init__(self, config: Mapping[str, Any], timing: SourceTiming) -> None:
        super().__init__(config, timing)
        host = read_text(config, "serverIP") or ""
        port = read_port(config, "serverPort", DEFAULT_PORT)
        self.unit = int(config.get("unitID", DEFAULT_UNIT_ID))
        self.modbus = ModbusReader(self.name, host, port, timing)
        self.registers = {
            field: [(int(a), int(u)) for a, u in config.get(key) or default]
            for field, (key, default) in REGISTER_KEYS.items()
        }

    @classmethod
    def check(cls, config: Mapping[str, Any]) -> list[Problem]:
        problems = check_host(config, "serverIP", "the GX device's IP address or host name")
        problems += check_port(config, "serverPort") + check_unit_ids(config, "unitID", single=True)
        for key, _default in REGISTER_KEYS.values():
            value = config.get(key)
            if value is None:
                continue
            if not isinstance(value, list) or not all(_pair(item) for item in value):
                problems.append(
                    (key, f"expected a list of [register, unitID] pairs, got {describe(value)}")
                )
        return problems

    def describe(self) -> str:
        return f"Victron GX over Modbus TCP at {self.modbus.describe()}"

    def fetch(self) -> Reading:
        totals = {}
        for field, registers in self.registers.items():
            total = 0.0
            for address, unit in registers:
                [raw] = self.modbus.read(address, 1, unit, inputs=True)
                value = uint16(raw)
                if value is None:
                    raise self.modbus.error(
                        f"unit {unit}", f"register {address} is not available (0xFFFF)"
                    )
                total += value
            totals[f"{field}_w"] = total
        return Reading(**totals)


def _pair(item: Any) -> bool:
    return (
        isinstance(item, list | tuple)
        and len(item) == 2
        and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in item)
        and item[0] <= 65535
        and item[1] <= 255
    )
