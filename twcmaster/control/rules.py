"""Evaluating the user's policy rules (``config/policyrules.py`` types them), with
TWCManager's semantics.

A value is resolved when the rule is evaluated:

* a number, true/false, null or any other string is itself;
* ``now``: the wall clock in epoch seconds; ``tm_hour``, ``tm_min``, ``tm_wday`` (Monday 0)
  ...: fields of the local time;
* ``settings.X``: settings.json's X (TWCManager's default when absent, else 0), a numeric
  string read as a number; ``config.X``: config.json's ``config.X`` (0 when absent);
* ``getMaxAmpsToDivideGreenEnergy()`` / ``getMaxAmpsForTargetGridUsage()``: the green surplus
  in amps now; ``checkScheduledCharging()``: 1 inside a scheduled window, else 0;
* ``modules.X.Y``: a module's value, when the daemon provides one.

``gt`` / ``gte`` / ``lt`` / ``lte`` read numeric strings as numbers first; ``eq`` / ``ne``
compare as they are; ``none`` always holds and ``false`` never, without resolving anything.
A value that cannot be resolved (no module value, an unusable energy reading) or compared
(a string against a number) raises ``RuleError``: the policy engine logs it once and takes
the rule as not matching (fail safe).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from twcmaster.config.policyrules import FUNCTIONS, TIME_FIELDS, Comparison, ConditionGroup

__all__ = ["RuleContext", "RuleError", "amps_value", "holds", "resolve"]

_ORDERING = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}
_GREEN_FUNCTIONS = FUNCTIONS[:2]
_SCHEDULE_FUNCTION = FUNCTIONS[2]


class RuleError(Exception):
    """A rule's value cannot be resolved or compared."""


def _unavailable(module: str, attribute: str) -> Any:
    raise RuleError(f"modules.{module}.{attribute} is not available in twcmaster")


@dataclass(frozen=True)
class RuleContext:
    """What the values of one decision resolve against."""

    local_time: datetime
    settings: Mapping[str, Any] = field(default_factory=dict)  # settings.json, defaults filled
    config: Mapping[str, Any] = field(default_factory=dict)  # config.json's "config" section
    green_amps: Callable[[], float] = lambda: 0.0  # raises RuleError when unusable
    scheduled: Callable[[], bool] = lambda: False
    module_value: Callable[[str, str], Any] = _unavailable


def resolve(value: Any, ctx: RuleContext) -> Any:
    """``value`` as the rule means it now (see the module docstring)."""
    if not isinstance(value, str):
        return value
    if value == "now":
        return ctx.local_time.timestamp()
    if value in TIME_FIELDS:
        return getattr(ctx.local_time.timetuple(), value)
    if value in _GREEN_FUNCTIONS:
        return ctx.green_amps()
    if value == _SCHEDULE_FUNCTION:
        return 1 if ctx.scheduled() else 0
    head, _, rest = value.partition(".")
    if head == "settings" and rest:
        return _number_or_text(ctx.settings.get(rest.split(".")[0], 0))
    if head == "config" and rest:
        return ctx.config.get(rest.split(".")[0], 0)
    if head == "modules" and rest.count(".") == 1:
        module, attribute = rest.split(".")
        return ctx.module_value(module, attribute)
    return value


def holds(group: ConditionGroup, ctx: RuleContext) -> bool:
    """Whether the group holds: every item (AND) or any item (OR, ``any_of``), in order,
    stopping at the first that decides it (a later item is then never evaluated)."""
    for item in group.items:
        result = holds(item, ctx) if isinstance(item, ConditionGroup) else _compare(item, ctx)
        if result == group.any_of:
            return group.any_of
    return not group.any_of


def _compare(comparison: Comparison, ctx: RuleContext) -> bool:
    op = comparison.operator
    if op == "none":
        return True
    if op == "false":
        return False
    left, right = resolve(comparison.match, ctx), resolve(comparison.value, ctx)
    if op == "eq":
        return bool(left == right)
    if op == "ne":
        return bool(left != right)
    left, right = _number_or_text(left), _number_or_text(right)
    try:
        return bool(_ORDERING[op](left, right))
    except TypeError:
        raise RuleError(
            f"{comparison.match!r} ({left!r}) {op} {comparison.value!r} ({right!r}): "
            "cannot compare these"
        ) from None


def amps_value(value: Any, ctx: RuleContext) -> float:
    """A rule's ``charge_amps`` / ``allowed_flex`` now: a finite number >= 0."""
    amps = _number_or_text(resolve(value, ctx))
    if isinstance(amps, bool) or not isinstance(amps, int | float) or not math.isfinite(amps):
        raise RuleError(f"{value!r} is {amps!r}, not a number of amps")
    return max(float(amps), 0.0)


def _number_or_text(value: Any) -> Any:
    """TWCManager's reading of a numeric string ("16", "7.5") as a number."""
    if not isinstance(value, str):
        return value
    try:
        return float(value) if "." in value else int(value)
    except ValueError:
        return value
