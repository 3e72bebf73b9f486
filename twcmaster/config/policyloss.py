"""What the user's policy rules ask for that twcmaster does not do: warnings naming what
is lost (``policyparse.py`` reads the rules; these come after it, on the typed rules).

* ``charge_limit``: twcmaster does not set the car's charge limit;
* ``background_task``: ``checkGreenEnergy`` is what a rule without ``charge_amps`` does
  anyway; ``checkCharge`` (closer polling of the cars' battery) is not done;
* ``modules.X.Y`` other than an enabled energy source's ``MODULE_VALUES`` (or its own
  ``SOURCE_MODULE_VALUES``): never evaluated, so the rule never matches.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twcmaster.config.fields import section
from twcmaster.config.policyrules import (
    MODULE_SOURCE_NAMES,
    MODULE_VALUES,
    REFERENCE,
    SOURCE_MODULE_VALUES,
    PolicyRules,
)
from twcmaster.config.problems import Report

__all__ = ["BACKGROUND_TASKS", "warn_what_is_lost"]

#: Background tasks: TWCManager's green tracking (what a rule without charge_amps does
#: anyway) and its closer battery polling (not provided).
BACKGROUND_TASKS = {
    "checkGreenEnergy": "",
    "checkCharge": (
        "twcmaster does not poll the cars' battery level more often while this policy runs"
    ),
}


def warn_what_is_lost(rules: PolicyRules, data: Mapping[str, Any], report: Report) -> None:
    """One warning per thing a rule asks for that twcmaster does not do, by key path."""
    for rule in rules.rules:
        if rule.charge_limit not in (None, -1):
            report.warn(
                f"{rule.key_path}.charge_limit",
                "ignored; you lose setting the car's charge limit (%) while this policy runs: "
                "twcmaster leaves the car's own limit alone",
            )
        loss = BACKGROUND_TASKS.get(rule.background_task or "checkGreenEnergy")
        if loss is None:
            report.warn(
                f"{rule.key_path}.background_task",
                f"{rule.background_task!r} is not a task twcmaster runs; ignored (known: "
                f"{', '.join(BACKGROUND_TASKS)})",
            )
        elif loss:
            report.warn(f"{rule.key_path}.background_task", f"ignored; you lose: {loss}")
    _warn_module_values(rules, _enabled_sources(data), report)


def _enabled_sources(data: Mapping[str, Any]) -> frozenset[str]:
    sources = section(data, "sources")
    return frozenset(
        name for name, node in sources.items() if isinstance(node, Mapping) and node.get("enabled")
    )


def _warn_module_values(rules: PolicyRules, sources: frozenset[str], report: Report) -> None:
    """A ``modules.X.Y`` twcmaster cannot give: its rule never matches; say so."""
    for path, value in rules.values():
        if not (isinstance(value, str) and value.startswith("modules.") and REFERENCE.match(value)):
            continue
        _, module, attribute = value.split(".")
        source = MODULE_SOURCE_NAMES.get(module, module)
        given = MODULE_VALUES + SOURCE_MODULE_VALUES.get(source, ())
        if attribute not in given:
            problem = f"twcmaster's {module} gives only {', '.join(given)}"
        elif source not in sources:
            problem = f"no energy source {source} is enabled"
        else:
            continue
        report.warn(
            path,
            f"{value}: {problem}, so it cannot be evaluated and its rule never matches (fail "
            "safe: a restriction keeps its policy from being chosen, amps of it are 0 A)",
        )
