"""config.json's ``policy`` section -> ``PolicyRules`` (``policyrules.py`` says what the
section means). Every problem names its key path, e.g. ``policy.extend.before[0].condition[1]``;
a part with an error is left out, so every problem is found in one pass. What twcmaster
accepts but does not apply is a warning saying what the user loses (``policyloss.py``).
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from typing import Any

from twcmaster.config.fields import section
from twcmaster.config.limits import MAX_WAIT_S
from twcmaster.config.policyloss import warn_what_is_lost
from twcmaster.config.policyrules import (
    BUILTIN_POLICY_NAMES,
    FUNCTIONS,
    OPERATORS,
    REFERENCE,
    TIME_FIELDS,
    WEBHOOK_EVENTS,
    Comparison,
    ConditionGroup,
    PolicyRule,
    PolicyRules,
    Webhooks,
    is_reference,
)
from twcmaster.config.problems import Report, describe_value

__all__ = ["parse_policy_rules"]

WEBHOOK_METHODS = ("POST", "GET")
_RULE_KEYS = (
    "name", "match", "condition", "value", "charge_amps", "allowed_flex", "latch_period",
    "charge_limit", "background_task", "webhooks",
)  # fmt: skip
_MAX_DEPTH = 6  # nested condition groups; deeper is a mistake, not a policy


# ------------------------------------------------------------------------------- parsing


def parse_policy_rules(data: Mapping[str, Any], report: Report) -> PolicyRules:
    """The ``policy`` section; problems go to ``report`` (the defaults stand in for a bad
    part, so every problem is found in one pass)."""
    policy = section(data, "policy")
    extend = section(policy, "extend")
    override = _rule_list(policy, "override", "policy", report)
    extended = {
        name: _rule_list(extend, name, "policy.extend", report)
        for name in ("emergency", "before", "after")
    }
    restrictions = _restrictions(extend, report)
    webhooks = _builtin_webhooks(extend, report)
    if override and (any(extended.values()) or restrictions or webhooks):
        report.warn(
            "policy.extend",
            "ignored because policy.override replaces the whole list (as in TWCManager)",
        )
    if override:
        extended = {name: () for name in extended}
        restrictions, webhooks = (), ()
    rules = PolicyRules(
        override=override,
        **extended,
        restrictions=restrictions,
        webhooks=webhooks,
        check_interval_s=_check_interval(policy, report),
        always_poll_ems=_always_poll(policy, report),
        webhook_method=_webhook_method(data, report),
    )
    warn_what_is_lost(rules, data, report)
    return rules


def _rule_list(
    node: Mapping[str, Any], key: str, prefix: str, report: Report
) -> tuple[PolicyRule, ...]:
    value = node.get(key)
    path = f"{prefix}.{key}"
    if value is None:
        return ()
    if not isinstance(value, list):
        report.error(path, f"expected a list of policy rules [...], got {describe_value(value)}")
        return ()
    rules = (_rule(item, f"{path}[{index}]", report) for index, item in enumerate(value))
    return tuple(rule for rule in rules if rule is not None)


def _rule(node: Any, path: str, report: Report) -> PolicyRule | None:
    if not isinstance(node, Mapping):
        report.error(path, f"expected a policy rule {{...}}, got {describe_value(node)}")
        return None
    errors = len(report.errors)
    for key in node:
        if key not in _RULE_KEYS:
            close = difflib.get_close_matches(str(key), _RULE_KEYS, n=1, cutoff=0.6)
            hint = f'did you mean "{close[0]}"?' if close else f"known: {', '.join(_RULE_KEYS)}"
            report.error(f"{path}.{key}", f"not a policy rule key; {hint}")
    name = node.get("name")
    if not isinstance(name, str) or not name.strip():
        report.error(f"{path}.name", f"expected the policy's name, got {describe_value(name)}")
    conditions = _conditions(node, path, report, required=True)
    rule = PolicyRule(
        name=str(name),
        conditions=conditions,
        charge_amps=_amps_value(node, "charge_amps", path, report),
        allowed_flex=_amps_value(node, "allowed_flex", path, report),
        latch_min=_latch(node, path, report),
        charge_limit=node.get("charge_limit"),
        background_task=_background_task(node, path, report),
        webhooks=_webhooks(node.get("webhooks"), f"{path}.webhooks", report),
        key_path=path,
    )
    return rule if len(report.errors) == errors else None


def _conditions(node: Mapping[str, Any], path: str, report: Report, *, required: bool):
    lists = {key: node.get(key) for key in ("match", "condition", "value")}
    if not required and all(value is None for value in lists.values()):
        return ConditionGroup()
    for key, value in lists.items():
        if not isinstance(value, list):
            report.error(f"{path}.{key}", f"expected a list [...], got {describe_value(value)}")
            return ConditionGroup()
    group = _group(lists["match"], lists["condition"], lists["value"], path, "", 0, report)
    return group or ConditionGroup()


def _group(
    matches: list,
    operators: list,
    values: list,
    base: str,
    suffix: str,
    depth: int,
    report: Report,
) -> ConditionGroup | None:
    """One level of match / condition / value lists: ``base`` is the rule's key path,
    ``suffix`` the index path of this group inside the lists ("" for the rule's own)."""
    if not len(matches) == len(operators) == len(values):
        report.error(
            f"{base}.condition{suffix}",
            f"match, condition and value must have as many entries each; got {len(matches)}, "
            f"{len(operators)} and {len(values)}",
        )
        return None
    items: list[Comparison | ConditionGroup] = []
    for index, (match, operator, value) in enumerate(zip(matches, operators, values, strict=True)):
        here = f"{suffix}[{index}]"
        lists = [isinstance(x, list) for x in (match, operator, value)]
        if all(lists):
            if depth + 1 >= _MAX_DEPTH:
                report.error(f"{base}.condition{here}", "condition groups nested too deep")
                return None
            group = _group(match, operator, value, base, here, depth + 1, report)
            if group is None:
                return None
            items.append(group)
        elif any(lists):
            report.error(
                f"{base}.condition{here}",
                "a group needs lists in match, condition and value alike; got "
                f"{describe_value(match)}, {describe_value(operator)}, {describe_value(value)}",
            )
            return None
        else:
            comparison = _comparison(match, operator, value, base, here, report)
            if comparison is None:
                return None
            items.append(comparison)
    return ConditionGroup(tuple(items), any_of=depth % 2 == 1)


def _comparison(
    match: Any, operator: Any, value: Any, base: str, here: str, report: Report
) -> Comparison | None:
    if operator not in OPERATORS:
        report.error(
            f"{base}.condition{here}",
            f"unknown operator {describe_value(operator)}; expected one of {', '.join(OPERATORS)}",
        )
        return None
    ok = _operand(match, f"{base}.match{here}", report)
    ok = _operand(value, f"{base}.value{here}", report) and ok
    return Comparison(match, operator, value, f"{base}.condition{here}") if ok else None


def _operand(value: Any, path: str, report: Report) -> bool:
    """A JSON scalar; a string that looks like a reference must be one twcmaster knows."""
    if value is None or isinstance(value, bool | int | str):
        return _reference_ok(value, path, report) if isinstance(value, str) else True
    if isinstance(value, float) and math.isfinite(value):
        return True
    report.error(
        path, f"expected a number, a string, true/false or null, got {describe_value(value)}"
    )
    return False


def _reference_ok(text: str, path: str, report: Report) -> bool:
    # TWCManager takes an unknown function or time field as plain text: a condition on it
    # then never holds (or fails); a warning, since that may be what the user meant.
    unknown = None
    if text.endswith("()") and text not in FUNCTIONS:
        unknown = f"not a function twcmaster knows ({', '.join(FUNCTIONS)})"
    elif text.startswith("tm_") and text not in TIME_FIELDS:
        unknown = f"not a time field ({', '.join(TIME_FIELDS)})"
    if unknown:
        report.warn(
            path,
            f"{text!r} is {unknown}; it is compared as the text itself, as TWCManager did, "
            "so its condition will most likely never hold",
        )
    if text.split(".")[0] in ("settings", "config", "modules") and not REFERENCE.match(text):
        report.error(
            path,
            f"{text!r} is not a reference twcmaster can resolve; expected settings.<key>, "
            "config.<key> or modules.<module>.<attribute>",
        )
        return False
    return True


def _amps_value(node: Mapping[str, Any], key: str, path: str, report: Report) -> Any:
    value = node.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not (
        (isinstance(value, int | float) and 0 <= value < math.inf) or is_reference(value)
    ):
        report.error(
            f"{path}.{key}",
            "expected amps (a number >= 0) or a reference (settings.<key>, config.<key>, "
            f"modules.<module>.<attribute>, {FUNCTIONS[0]}), got {describe_value(value)}",
        )
        return None
    if isinstance(value, str) and not _reference_ok(value, f"{path}.{key}", report):
        return None
    return value


def _latch(node: Mapping[str, Any], path: str, report: Report) -> float:
    value = node.get("latch_period")
    if value is None:
        return 0.0
    limit = MAX_WAIT_S / 60
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= limit:
        report.error(
            f"{path}.latch_period",
            f"expected minutes from 0 to {limit:g} (a day), got {describe_value(value)}",
        )
        return 0.0
    return float(value)


def _background_task(node: Mapping[str, Any], path: str, report: Report) -> str | None:
    value = node.get("background_task")
    if value is None or isinstance(value, str):
        return value
    report.error(f"{path}.background_task", f"expected a task name, got {describe_value(value)}")
    return None


def _webhooks(node: Any, path: str, report: Report) -> Webhooks:
    if node is None:
        return Webhooks()
    if not isinstance(node, Mapping):
        report.error(path, f'expected {{"enter": url, ...}}, got {describe_value(node)}')
        return Webhooks()
    urls: dict[str, str] = {}
    for event, url in node.items():
        if event not in WEBHOOK_EVENTS:
            report.error(
                f"{path}.{event}", f"unknown event; expected one of {', '.join(WEBHOOK_EVENTS)}"
            )
        elif url in (None, ""):
            continue
        elif not isinstance(url, str) or not re.match(r"^https?://[^\s/]+", url):
            report.error(
                f"{path}.{event}", f"expected an http:// or https:// URL, got {describe_value(url)}"
            )
        else:
            urls[event] = url
    return Webhooks(**urls)


def _builtin_name(name: str, path: str, report: Report) -> bool:
    if name in BUILTIN_POLICY_NAMES:
        return True
    report.error(
        path,
        f"no built-in policy is called {name!r}; expected one of "
        f"{', '.join(BUILTIN_POLICY_NAMES)} (TWCManager applies these to its default list only)",
    )
    return False


def _restrictions(
    extend: Mapping[str, Any], report: Report
) -> tuple[tuple[str, ConditionGroup], ...]:
    node = extend.get("restrictions")
    path = "policy.extend.restrictions"
    if node is None:
        return ()
    if not isinstance(node, Mapping):
        report.error(path, f'expected {{"<policy name>": {{...}}}}, got {describe_value(node)}')
        return ()
    found: list[tuple[str, ConditionGroup]] = []
    for name, restriction in node.items():
        here = f"{path}.{name}"
        if not _builtin_name(str(name), here, report):
            continue
        if not isinstance(restriction, Mapping):
            report.error(
                here, f'expected {{"match": [...], ...}}, got {describe_value(restriction)}'
            )
            continue
        for key in restriction:
            if key not in ("match", "condition", "value"):
                report.error(
                    f"{here}.{key}", "not a restriction key; expected match, condition, value"
                )
        filled = {key: restriction.get(key, []) for key in ("match", "condition", "value")}
        group = _conditions(filled, here, report, required=True)
        if group.items:
            found.append((str(name), group))
    return tuple(found)


def _builtin_webhooks(
    extend: Mapping[str, Any], report: Report
) -> tuple[tuple[str, Webhooks], ...]:
    node = extend.get("webhooks")
    path = "policy.extend.webhooks"
    if node is None:
        return ()
    if not isinstance(node, Mapping):
        report.error(path, f'expected {{"<policy name>": {{...}}}}, got {describe_value(node)}')
        return ()
    found = []
    for name, hooks in node.items():
        here = f"{path}.{name}"
        if _builtin_name(str(name), here, report):
            webhooks = _webhooks(hooks, here, report)
            if webhooks:
                found.append((str(name), webhooks))
    return tuple(found)


def _check_interval(policy: Mapping[str, Any], report: Report) -> float | None:
    value = section(policy, "engine").get("policyCheckInterval")
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 <= value <= MAX_WAIT_S
    ):
        report.error(
            "policy.engine.policyCheckInterval",
            f"expected seconds from 0 to {MAX_WAIT_S:g}, got {describe_value(value)}",
        )
        return None
    return float(value)


def _always_poll(policy: Mapping[str, Any], report: Report) -> bool:
    value = policy.get("alwaysPollEMS")
    if value is None:
        return False
    if not isinstance(value, bool):
        report.error("policy.alwaysPollEMS", f"expected true or false, got {describe_value(value)}")
        return False
    return value


def _webhook_method(data: Mapping[str, Any], report: Report) -> str:
    value = section(data, "config").get("webhookMethod")
    if value is None:
        return "POST"
    if value not in WEBHOOK_METHODS:
        report.error(
            "config.webhookMethod", f'expected "POST" or "GET", got {describe_value(value)}'
        )
        return "POST"
    return value
