"""TWCManager's module values for the user's policy rules (``modules.X.Y``, evaluated by
``control/rules.py``), from twcmaster's energy sources.

Every TWCManager energy module has ``generatedW`` and ``consumedW``; the meters also
``importW`` and ``exportW``. Here they come from that source's last reading while it is fresh
(``maxAge``): generation, house consumption, and the grid's import or export (0 for the
other direction). A value the source does not measure, or a stale one, cannot be evaluated:
the rule does not match (fail safe). Some sources give more (``SOURCE_MODULE_VALUES``: the
Powerwall's gridStatus, batteryLevel, operatingMode, reservePercent), read from the device
only when a rule asks (``Source.read_also``). Module names are TWCManager's
(``TeslaPowerwall2``, ``OpenHab``) or twcmaster's source names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twcmaster.config.policyrules import MODULE_SOURCE_NAMES, SOURCE_MODULE_VALUES
from twcmaster.control.rules import RuleError
from twcmaster.sources.base import Reading

_VALUES: dict[str, Callable[[Reading], float | None]] = {
    "generatedW": lambda r: r.generation_w,
    "consumedW": lambda r: r.consumption_w,
    "importW": lambda r: None if r.grid_w is None else max(r.grid_w, 0.0),
    "exportW": lambda r: None if r.grid_w is None else max(-r.grid_w, 0.0),
}


def module_values(runner: Any) -> Callable[[str, str], Any]:
    """``(module, attribute) -> value`` over a ``SourceRunner``'s sources (its clock)."""

    def value(module: str, attribute: str) -> Any:
        name = MODULE_SOURCE_NAMES.get(module, module)
        read = _VALUES.get(attribute)
        if read is None and attribute not in SOURCE_MODULE_VALUES.get(name, ()):
            raise RuleError(f"modules.{module}.{attribute}: twcmaster does not provide it")
        for status in runner.status():
            if status.name != name:
                continue
            if not status.fresh or status.reading is None:
                raise RuleError(f"modules.{module}.{attribute}: no fresh reading from {name}")
            if read is None:  # one of the values only this source gives
                value = dict(status.reading.extras).get(attribute)
            else:
                value = read(status.reading)
            if value is None:
                raise RuleError(f"modules.{module}.{attribute}: {name} does not measure it")
            return value
        raise RuleError(f"modules.{module}.{attribute}: no energy source {name} is enabled")

    return value
