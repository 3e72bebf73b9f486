"""SunSpec inverters and meters over Modbus TCP: SMA, Fronius, SolarEdge, Huawei, Kostal and
the other makes that implement SunSpec, read on the local network.

Config ``sources.SunSpec`` (twcmaster's own section; TWCManager has no such module):

* ``serverIP``: the inverter's (or its data logger's) address; ``serverPort``: default 502
  (SolarEdge: 1502);
* ``unitID``: the Modbus unit id of the inverter, or a list of them (several inverters
  behind one address, e.g. Fronius or Huawei): their power is summed. Default 1 (SMA: 126;
  Fronius: 1; Huawei: 0 or 1);
* ``meterUnitID``: where the meter is, when not behind the first inverter's unit id (Fronius
  Smart Meter: 200 or 240). Without it a meter is looked for behind the first ``unitID``, and
  its absence means this source measures generation only;
* ``meterLocation``: ``"grid"`` (default; the meter measures the grid connection) or
  ``"load"`` (it measures the house load);
* ``meterSign``: ``"import"`` (default, the SunSpec convention: a positive ``W`` is power
  drawn from the grid) or ``"export"`` (positive is power fed in, as SolarEdge's meters do);
* ``baseAddress``: where the SunSpec map starts; default: looked for at 40000, 0 and 50000
  (the addresses the SunSpec specification allows), by its ``SunS`` marker.

Each device's map is walked once (the common model 1, then each model's id and length, up to
the end marker ``0xFFFF``) and the addresses it found are kept; a failed poll walks it again.
Every poll then reads:

* the inverter model (101/102/103: integer ``W`` times 10^``W_SF``; 111/112/113: float ``W``)
  as the generation, clamped to 0 (an inverter draws a few watts at night). An inverter that
  reports ``W`` as not implemented (``0x8000``, NaN) while its operating state ``St`` says off,
  sleeping or standby (SMA at night) generates 0 W; in any other state it is an error;
* the meter model (201-204: integer ``W`` times 10^``W_SF``; 211-214: float ``W``), signed by
  ``meterSign``: at the grid it is the grid (+ import / - export) and the consumption is the
  generation plus the grid; at the load it is the consumption;
* the voltage: the meter's ``PhV`` (else the inverter's ``PhVphA``), when implemented.

A value "not implemented" where it is needed, a missing inverter model, or a scale factor out
of range is an error naming the device and the register; so is every Modbus error
(``modbus.ModbusReader``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from twcmaster.sources.base import Reading, Source, SourceError, SourceTiming
from twcmaster.sources.modbus import ModbusReader, float32, int16, scaled, uint16
from twcmaster.sources.registry import (
    Problem,
    check_host,
    check_port,
    read_port,
    read_text,
)

DEFAULT_PORT = 502
DEFAULT_UNIT_ID = 1
MAX_UNIT_ID = 255
BASE_ADDRESSES = (40000, 0, 50000)  # where the SunSpec specification lets a map start
SUNS = (0x5375, 0x6E53)  # "SunS"
END_MODEL = 0xFFFF
COMMON_MODEL = 1
MAX_MODELS = 64  # a map with more models than this is garbage (or loops)
INVERTER_INT = (101, 102, 103)
INVERTER_FLOAT = (111, 112, 113)
METER_INT = (201, 202, 203, 204)
METER_FLOAT = (211, 212, 213, 214)
# Offsets from the model's id register.
INV_INT_W, INV_INT_W_SF, INV_INT_PHV_A, INV_INT_V_SF, INV_INT_ST = 14, 15, 10, 13, 38
INV_FLOAT_W, INV_FLOAT_PHV_A, INV_FLOAT_ST = 22, 16, 48
MET_INT_W, MET_INT_W_SF, MET_INT_PHV, MET_INT_V_SF = 18, 22, 7, 15
MET_FLOAT_W, MET_FLOAT_PHV = 28, 10
# Operating states (St) in which an inverter produces nothing: off, sleeping, standby.
RESTING_STATES = {1: "off", 2: "sleeping", 8: "standby"}
LOCATIONS = ("grid", "load")
SIGNS = ("import", "export")


@dataclass(frozen=True)
class Model:
    """One model of a device's map: its id, where its id register is, its length."""

    model_id: int
    address: int
    length: int


@dataclass(frozen=True)
class DeviceMap:
    """The models found behind one unit id, in map order."""

    unit: int
    models: tuple[Model, ...]

    def first(self, ids: tuple[int, ...]) -> Model | None:
        return next((m for m in self.models if m.model_id in ids), None)

    def all(self, ids: tuple[int, ...]) -> list[Model]:
        return [m for m in self.models if m.model_id in ids]


class SunSpecReader:
    """Walks SunSpec maps and reads inverter and meter models through a ``ModbusReader``;
    shared by the SunSpec and SolarEdge (local) sources."""

    def __init__(self, modbus: ModbusReader, base_address: int | None = None) -> None:
        self.modbus = modbus
        self.base_address = base_address
        self.maps: dict[int, DeviceMap] = {}

    def forget(self) -> None:
        self.maps.clear()

    def device_map(self, unit: int) -> DeviceMap:
        if unit not in self.maps:
            self.maps[unit] = self._walk(unit)
        return self.maps[unit]

    def _walk(self, unit: int) -> DeviceMap:
        bases = (self.base_address,) if self.base_address is not None else BASE_ADDRESSES
        start = None
        for base in bases:
            try:
                marker = self.modbus.read(base, 2, unit)
            except SourceError as exc:
                if "device answered with an error" in str(exc) and len(bases) > 1:
                    continue  # no registers there: try the next base address
                raise
            if tuple(marker) == SUNS:
                start = base + 2
                break
        if start is None:
            where = ", ".join(str(b) for b in bases)
            raise self.modbus.error(f"unit {unit}", f"no SunSpec map (no 'SunS' marker at {where})")
        models: list[Model] = []
        address = start
        for _ in range(MAX_MODELS):
            model_id, length = self.modbus.read(address, 2, unit)
            if model_id == END_MODEL:
                break
            models.append(Model(model_id, address, length))
            address += 2 + length
        else:
            raise self.modbus.error(f"unit {unit}", f"more than {MAX_MODELS} SunSpec models")
        if not models or models[0].model_id != COMMON_MODEL:
            raise self.modbus.error(
                f"unit {unit}", "the SunSpec map does not start with the common model (1)"
            )
        return DeviceMap(unit, tuple(models))

    def registers(self, unit: int, model: Model, count: int) -> list[int]:
        values = self.modbus.read(model.address, min(count, model.length + 2), unit)
        if values[0] != model.model_id:
            self.forget()  # the map changed under us (a firmware update): walk it again
            raise self.modbus.error(
                f"unit {unit}",
                f"model {model.model_id} is no longer at register {model.address}",
            )
        if len(values) < count:
            raise self.modbus.error(
                f"unit {unit}", f"model {model.model_id} is too short ({model.length})"
            )
        return values

    def inverter(self, unit: int) -> tuple[float, float | None]:
        """(AC power in W, phase A voltage or None) of the inverter behind ``unit``."""
        device = self.device_map(unit)
        model = device.first(INVERTER_INT + INVERTER_FLOAT)
        if model is None:
            ids = ", ".join(str(m.model_id) for m in device.models)
            raise self.modbus.error(
                f"unit {unit}", f"no SunSpec inverter model (101-103, 111-113); models: {ids}"
            )
        where = f"unit {unit}, inverter model {model.model_id} at {model.address}"
        if model.model_id in INVERTER_INT:
            regs = self.registers(unit, model, INV_INT_ST + 1)
            w_sf = int16(regs[INV_INT_W_SF])
            power = scaled(int16(regs[INV_INT_W]), w_sf)
            voltage = scaled(uint16(regs[INV_INT_PHV_A]), int16(regs[INV_INT_V_SF]))
            state = uint16(regs[INV_INT_ST])
            if power is None and int16(regs[INV_INT_W]) is not None:
                raise self.modbus.error(where, f"W_SF is {w_sf}, not a scale factor")
        else:
            regs = self.registers(unit, model, INV_FLOAT_ST + 1)
            power = float32(regs[INV_FLOAT_W], regs[INV_FLOAT_W + 1])
            voltage = float32(regs[INV_FLOAT_PHV_A], regs[INV_FLOAT_PHV_A + 1])
            state = uint16(regs[INV_FLOAT_ST])
        if power is None:
            if state in RESTING_STATES:
                return 0.0, voltage or None
            raise self.modbus.error(
                where, f"W is not implemented (operating state {state}): no power reading"
            )
        return power, voltage or None

    def meters(self, unit: int) -> list[Model]:
        return self.device_map(unit).all(METER_INT + METER_FLOAT)

    def meter(self, unit: int, model: Model) -> tuple[float, float | None]:
        """(W as the meter reports it, voltage or None)."""
        where = f"unit {unit}, meter model {model.model_id} at {model.address}"
        if model.model_id in METER_INT:
            regs = self.registers(unit, model, MET_INT_W_SF + 1)
            raw = int16(regs[MET_INT_W])
            power = scaled(raw, int16(regs[MET_INT_W_SF]))
            voltage = scaled(int16(regs[MET_INT_PHV]), int16(regs[MET_INT_V_SF]))
        else:
            regs = self.registers(unit, model, MET_FLOAT_W + 2)
            power = float32(regs[MET_FLOAT_W], regs[MET_FLOAT_W + 1])
            voltage = float32(regs[MET_FLOAT_PHV], regs[MET_FLOAT_PHV + 1])
        if power is None:
            raise self.modbus.error(where, "W (or W_SF) is not implemented: no power reading")
        return power, voltage or None


class SunSpecSource(Source):
    name = "SunSpec"

    def __init__(self, config: Mapping[str, Any], timing: SourceTiming) -> None:
        super().__init__(config, timing)
        self.host = read_text(config, "serverIP") or ""
        self.port = read_port(config, "serverPort", DEFAULT_PORT)
        self.units = _units(config.get("unitID", DEFAULT_UNIT_ID))
        meter_unit = config.get("meterUnitID")
        self.meter_unit = int(meter_unit) if meter_unit not in (None, "") else None
        self.location = read_text(config, "meterLocation", "grid")
        self.sign = -1.0 if read_text(config, "meterSign", "import") == "export" else 1.0
        base = config.get("baseAddress")
        self.modbus = ModbusReader(self.name, self.host, self.port, timing)
        self.sunspec = SunSpecReader(self.modbus, None if base in (None, "") else int(base))

    @classmethod
    def check(cls, config: Mapping[str, Any]) -> list[Problem]:
        problems = check_host(config, "serverIP", "the inverter's IP address or host name")
        problems += check_port(config, "serverPort")
        problems += check_unit_ids(config, "unitID")
        if config.get("meterUnitID") is not None:
            problems += check_unit_ids(config, "meterUnitID", single=True)
        problems += check_choice(config, "meterLocation", LOCATIONS)
        problems += check_choice(config, "meterSign", SIGNS)
        base = config.get("baseAddress")
        if base is not None and (
            isinstance(base, bool) or not isinstance(base, int) or not 0 <= base <= 65000
        ):
            problems.append(("baseAddress", f"expected a register address 0-65000, got {base!r}"))
        return problems

    def describe(self) -> str:
        units = ", ".join(str(u) for u in self.units)
        return f"SunSpec Modbus TCP at {self.modbus.describe()} unit {units}"

    def fetch(self) -> Reading:
        deadline_s = time.monotonic() + self.timing.timeout_s
        try:
            return self._fetch(deadline_s)
        except SourceError:
            self.sunspec.forget()
            raise

    def _fetch(self, deadline_s: float) -> Reading:
        generation = 0.0
        voltage = None
        for unit in self.units:
            power, inverter_voltage = self.sunspec.inverter(unit)
            generation += max(0.0, power)
            voltage = voltage or inverter_voltage
            _check_deadline(self, deadline_s)
        meter_unit = self.meter_unit if self.meter_unit is not None else self.units[0]
        meters = self.sunspec.meters(meter_unit)
        if not meters:
            if self.meter_unit is not None:
                raise self.modbus.error(
                    f"unit {meter_unit}", "no SunSpec meter model (201-204, 211-214)"
                )
            return Reading(generation_w=generation, voltage_v=voltage)
        meter_w, meter_voltage = self.sunspec.meter(meter_unit, meters[0])
        meter_w *= self.sign
        voltage = meter_voltage or voltage
        if self.location == "load":
            return Reading(generation_w=generation, consumption_w=meter_w, voltage_v=voltage)
        return Reading(
            generation_w=generation,
            consumption_w=max(0.0, generation + meter_w),
            grid_w=meter_w,
            voltage_v=voltage,
        )


def _check_deadline(source: SunSpecSource, deadline_s: float) -> None:
    if time.monotonic() > deadline_s:
        raise SourceError(
            f"{source.name}: {source.modbus.describe()}: the poll took longer than "
            f"{source.timing.timeout_s:g} s"
        )


def _units(value: Any) -> list[int]:
    values = value if isinstance(value, list) else [value]
    return [int(v) for v in values]


def check_unit_ids(config: Mapping[str, Any], key: str, *, single: bool = False) -> list[Problem]:
    """A Modbus unit id 0-255 (a number or a numeric string), or a non-empty list of them."""
    value = config.get(key)
    if value is None:
        return []
    values = value if isinstance(value, list) and not single else [value]
    if not values:
        return [(key, "expected a Modbus unit id 0-255 or a list of them, got an empty list")]
    for item in values:
        if isinstance(item, str) and item.strip().isdigit():
            item = int(item.strip())
        if isinstance(item, bool) or not isinstance(item, int) or not 0 <= item <= MAX_UNIT_ID:
            what = "a Modbus unit id 0-255" + ("" if single else " (or a list of them)")
            return [(key, f"expected {what}, got {item!r}")]
    return []


def check_choice(config: Mapping[str, Any], key: str, choices: tuple[str, ...]) -> list[Problem]:
    value = config.get(key)
    if value is None or value in choices:
        return []
    return [(key, f"expected one of {', '.join(choices)}, got {value!r}")]
