"""Kostal Plenticore / PIKO IQ inverters over Modbus TCP (TWCManager's ``Kostal`` source).

Config ``sources.Kostal`` (TWCManager's keys): ``serverIP``; ``modbusPort`` (default 1502);
``unitID`` (default 71). Modbus must be enabled on the inverter (its web interface, as the
installer).

Kostal's own register map (not SunSpec), holding registers, 32-bit floats whose word order
register 5 gives (1: big-endian, high word first, as SunSpec; otherwise Kostal's default,
low word first):

* 100: total DC power (W): the generation;
* 108: home own consumption from the grid (W) and 116: home own consumption from PV (W):
  their sum is the consumption, as TWCManager computes it (the battery's share, register
  106, is not counted, as in TWCManager);
* 152: grid frequency (read by TWCManager, not used by twcmaster).

The word order is read once and kept; a failed poll reads it again. A value that is not a
finite number is an error naming the register.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twcmaster.sources.base import Reading, Source, SourceError, SourceTiming
from twcmaster.sources.modbus import ModbusReader, float32
from twcmaster.sources.registry import Problem, check_host, check_port, read_port, read_text
from twcmaster.sources.sunspec import check_unit_ids

DEFAULT_PORT = 1502
DEFAULT_UNIT_ID = 71
BYTE_ORDER_REGISTER = 5
BIG_ENDIAN = 1
TOTAL_DC_POWER = 100
HOME_FROM_GRID = 108
HOME_FROM_PV = 116


class KostalSource(Source):
    name = "Kostal"

    def __init__(self, config: Mapping[str, Any], timing: SourceTiming) -> None:
        super().__init__(config, timing)
        host = read_text(config, "serverIP") or ""
        self.unit = int(config.get("unitID", DEFAULT_UNIT_ID))
        port = read_port(config, "modbusPort", DEFAULT_PORT)
        self.modbus = ModbusReader(self.name, host, port, timing)
        self.big_endian: bool | None = None

    @classmethod
    def check(cls, config: Mapping[str, Any]) -> list[Problem]:
        problems = check_host(config, "serverIP", "the inverter's IP address or host name")
        return (
            problems
            + check_port(config, "modbusPort")
            + check_unit_ids(config, "unitID", single=True)
        )

    def describe(self) -> str:
        return f"Kostal inverter over Modbus TCP at {self.modbus.describe()} unit {self.unit}"

    def fetch(self) -> Reading:
        try:
            if self.big_endian is None:
                [order] = self.modbus.read(BYTE_ORDER_REGISTER, 1, self.unit)
                self.big_endian = order == BIG_ENDIAN
            # 100..117 in one request: DC power, home from grid, home from PV.
            block = self.modbus.read(TOTAL_DC_POWER, HOME_FROM_PV + 2 - TOTAL_DC_POWER, self.unit)
        except SourceError:
            self.big_endian = None
            raise

        def value(address: int) -> float:
            first, second = block[address - TOTAL_DC_POWER : address - TOTAL_DC_POWER + 2]
            words = (first, second) if self.big_endian else (second, first)
            number = float32(*words)
            if number is None:
                raise self.modbus.error(
                    f"unit {self.unit}", f"register {address} is not a finite number"
                )
            return number

        return Reading(
            generation_w=max(0.0, value(TOTAL_DC_POWER)),
            consumption_w=max(0.0, value(HOME_FROM_GRID) + value(HOME_FROM_PV)),
        )
