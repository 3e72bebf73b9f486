"""config.json's ``policy`` section -> typed, validated ``PolicyRules``.

TWCManager's policy engine is a list of rules tried in order; the first whose conditions all
hold is the policy. Its default list is Charge Now, Scheduled Charging, Track Green Energy,
Non Scheduled Charging (and Track Green Energy again for ``nonScheduledAction`` 3). The
``policy`` section changes it:

* ``override``: a non-empty list replaces the whole list (``extend`` is then ignored);
* ``extend.emergency`` rules go before Charge Now, ``extend.before`` between Charge Now and
  Scheduled Charging, ``extend.after`` between Track Green Energy and Non Scheduled Charging;
* ``extend.restrictions``: more conditions (AND) on a built-in policy, by name;
* ``extend.webhooks``: URLs called on a built-in policy's enter / start / stop / exit;
* ``engine.policyCheckInterval``: seconds between two choices of the policy;
* ``alwaysPollEMS``: poll the energy sources outside green tracking too.

A rule is ``{"name", "match": [...], "condition": [...], "value": [...], "charge_amps",
"allowed_flex", "latch_period", "charge_limit", "background_task", "webhooks"}``. The i-th
match, condition and value form one comparison; a comparison whose three entries are lists is
a group, OR'd when the rule's own list is AND'd, alternating further down. Values are
resolved when the rule is evaluated (``control/rules.py``).

``policyparse.py`` reads the section into these types: every problem names its key path
(``policy.extend.before[0].condition[1]``); TWCManager crashed at start-up or at the first
evaluation for most of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from twcmaster.policies import POLICIES

__all__ = [
    "BUILTIN_POLICY_NAMES",
    "FUNCTIONS",
    "MODULE_SOURCE_NAMES",
    "MODULE_VALUES",
    "SOURCE_MODULE_VALUES",
    "OPERATORS",
    "TIME_FIELDS",
    "WEBHOOK_EVENTS",
    "Comparison",
    "ConditionGroup",
    "PolicyRule",
    "PolicyRules",
    "Webhooks",
]

#: TWCManager's comparisons; ``none`` always holds, ``false`` never does.
OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte", "none", "false")
WEBHOOK_EVENTS = ("enter", "start", "stop", "exit")
#: The names restrictions and webhooks may refer to (TWCManager's default list).
BUILTIN_POLICY_NAMES = POLICIES
#: The function calls a value may be (TWCManager's two spellings of the green amps).
FUNCTIONS = (
    "getMaxAmpsToDivideGreenEnergy()",
    "getMaxAmpsForTargetGridUsage()",
    "checkScheduledCharging()",
)
#: ``modules.X.Y`` values twcmaster provides: the ones every TWCManager energy module has,
#: from that source's last fresh reading (``sources/modulevalues.py``), in watts.
MODULE_VALUES = ("generatedW", "consumedW", "importW", "exportW")
#: What some sources give besides (TWCManager's Powerwall module's values, read from the
#: gateway only when a rule asks for them).
SOURCE_MODULE_VALUES: dict[str, tuple[str, ...]] = {
    "Powerwall2": ("gridStatus", "batteryLevel", "operatingMode", "reservePercent"),
}
#: TWCManager's module names where twcmaster's source is called otherwise.
MODULE_SOURCE_NAMES = {"TeslaPowerwall2": "Powerwall2", "OpenHab": "openHAB"}
#: ``time.struct_time`` fields a value may name (``tm_wday``: Monday is 0).
TIME_FIELDS = (
    "tm_year", "tm_mon", "tm_mday", "tm_hour", "tm_min", "tm_sec", "tm_wday", "tm_yday",
    "tm_isdst",
)  # fmt: skip


@dataclass(frozen=True)
class Comparison:
    """``match <operator> value``; match and value are JSON scalars or references."""

    match: Any
    operator: str
    value: Any
    key_path: str = ""  # where it was written, for log lines


@dataclass(frozen=True)
class ConditionGroup:
    """All items hold (``any_of`` False) or at least one does (True)."""

    items: tuple[Comparison | ConditionGroup, ...] = ()
    any_of: bool = False

    def and_also(self, more: ConditionGroup) -> ConditionGroup:
        """These conditions AND ``more``'s (a restriction appended to a rule's lists)."""
        return ConditionGroup(self.items + more.items, self.any_of)

    def values(self) -> list[tuple[str, Any]]:
        """(key path, value) of every match and value in the group, nested ones too."""
        found: list[tuple[str, Any]] = []
        for item in self.items:
            if isinstance(item, ConditionGroup):
                found += item.values()
            else:
                path = item.key_path
                found += [(path.replace(".condition", ".match", 1), item.match),
                          (path.replace(".condition", ".value", 1), item.value)]  # fmt: skip
        return found


@dataclass(frozen=True)
class Webhooks:
    """URLs to call on a policy's events; None: nothing to call."""

    enter: str | None = None
    start: str | None = None
    stop: str | None = None
    exit: str | None = None

    def url(self, event: str) -> str | None:
        return getattr(self, event, None) if event in WEBHOOK_EVENTS else None

    def __bool__(self) -> bool:
        return any(self.url(event) for event in WEBHOOK_EVENTS)


@dataclass(frozen=True)
class PolicyRule:
    """One rule of the user's (``override`` or ``extend``)."""

    name: str
    conditions: ConditionGroup
    charge_amps: Any = None  # None: track green energy (TWCManager: no charge_amps)
    allowed_flex: Any = None  # amps of grid allowed to keep a car at its floor
    latch_min: float = 0.0  # stays chosen this long after it last matched; 0: off
    charge_limit: Any = None  # accepted; twcmaster does not set the car's charge limit
    background_task: str | None = None
    webhooks: Webhooks = Webhooks()
    key_path: str = ""

    @property
    def tracks_green(self) -> bool:
        return self.charge_amps is None


@dataclass(frozen=True)
class PolicyRules:
    """The policy section, typed. The default (no section) changes nothing."""

    override: tuple[PolicyRule, ...] = ()  # non-empty: the whole list, in order
    emergency: tuple[PolicyRule, ...] = ()
    before: tuple[PolicyRule, ...] = ()
    after: tuple[PolicyRule, ...] = ()
    restrictions: tuple[tuple[str, ConditionGroup], ...] = ()  # built-in name -> AND these
    webhooks: tuple[tuple[str, Webhooks], ...] = ()  # built-in name -> its webhooks
    check_interval_s: float | None = None  # None: choose at every decision
    always_poll_ems: bool = False
    webhook_method: str = "POST"

    def restriction(self, name: str) -> ConditionGroup | None:
        return dict(self.restrictions).get(name)

    def builtin_webhooks(self, name: str) -> Webhooks:
        return dict(self.webhooks).get(name, Webhooks())

    def webhooks_for(self, policy: str) -> Webhooks:
        """The webhooks of the first policy of that name in the order (TWCManager's
        lookup by name), built-in or the user's."""
        for name, hooks in self._named_webhooks():
            if name == policy:
                return hooks
        return Webhooks()

    def _named_webhooks(self) -> list[tuple[str, Webhooks]]:
        if self.override:
            return [(rule.name, rule.webhooks) for rule in self.override]

        def of(rules: tuple[PolicyRule, ...]) -> list[tuple[str, Webhooks]]:
            return [(rule.name, rule.webhooks) for rule in rules]

        charge_now, scheduled, green, non_scheduled = (
            (name, self.builtin_webhooks(name)) for name in BUILTIN_POLICY_NAMES
        )
        return [
            *of(self.emergency), charge_now, *of(self.before), scheduled, green,
            *of(self.after), non_scheduled,
        ]  # fmt: skip

    @property
    def rules(self) -> tuple[PolicyRule, ...]:
        """Every rule of the user's, in no particular order."""
        return self.override + self.emergency + self.before + self.after

    @property
    def changes_the_order(self) -> bool:
        return bool(self.override or self.emergency or self.before or self.after)

    @property
    def has_webhooks(self) -> bool:
        return any(rule.webhooks for rule in self.rules) or any(h for _, h in self.webhooks)

    def values(self) -> list[tuple[str, Any]]:
        """(key path, value) of everything the rules read: conditions, charge_amps,
        allowed_flex, restrictions."""
        found: list[tuple[str, Any]] = []
        for rule in self.rules:
            found += rule.conditions.values()
            found += [(f"{rule.key_path}.{key}", getattr(rule, key))
                      for key in ("charge_amps", "allowed_flex")]  # fmt: skip
        for _, group in self.restrictions:
            found += group.values()
        return found

    def module_values_read(self) -> dict[str, frozenset[str]]:
        """Energy source name -> the ``modules.X.Y`` attributes the rules read of it."""
        read: dict[str, set[str]] = {}
        for _, value in self.values():
            if isinstance(value, str) and value.startswith("modules.") and REFERENCE.match(value):
                _, module, attribute = value.split(".")
                read.setdefault(MODULE_SOURCE_NAMES.get(module, module), set()).add(attribute)
        return {name: frozenset(attributes) for name, attributes in read.items()}


#: A value that names something to read: settings.X, config.X, modules.X.Y.
REFERENCE = re.compile(r"^(settings|config)\.\w+$|^modules\.\w+\.\w+$")


def is_reference(value: Any) -> bool:
    """Whether ``value`` is resolved when evaluated rather than taken as it is."""
    if not isinstance(value, str):
        return False
    return (
        value == "now" or value in FUNCTIONS or value in TIME_FIELDS or bool(REFERENCE.match(value))
    )


def group_lists(group: ConditionGroup) -> tuple[list, list, list]:
    """The group as TWCManager writes it: the match, condition and value lists."""
    lists: tuple[list, list, list] = ([], [], [])
    for item in group.items:
        parts = (
            group_lists(item)
            if isinstance(item, ConditionGroup)
            else (item.match, item.operator, item.value)
        )
        for into, part in zip(lists, parts, strict=True):
            into.append(part)
    return lists


def rule_json(rule: PolicyRule) -> dict[str, Any]:
    """A rule as TWCManager writes it (``/api/getPolicy``)."""
    match, condition, value = group_lists(rule.conditions)
    out: dict[str, Any] = {"name": rule.name, "match": match, "condition": condition,
                           "value": value}  # fmt: skip
    optional = {
        "charge_amps": rule.charge_amps,
        "allowed_flex": rule.allowed_flex,
        "latch_period": rule.latch_min or None,
        "charge_limit": rule.charge_limit,
        "background_task": rule.background_task,
    }
    out.update({key: value for key, value in optional.items() if value is not None})
    hooks = {event: rule.webhooks.url(event) for event in WEBHOOK_EVENTS}
    if any(hooks.values()):
        out["webhooks"] = {event: url for event, url in hooks.items() if url}
    return out
