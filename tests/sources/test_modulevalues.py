"""TWCManager's ``modules.X.Y`` for policy rules from the energy sources (fresh readings only),
and a rule on one in the policy engine."""

from __future__ import annotations

from datetime import datetime

import pytest

from tests.control.sites import policy_config
from twcmaster.config import config_from_dict
from twcmaster.control.policy import POLICY_NON_SCHEDULED, PolicyEngine
from twcmaster.control.rules import RuleError
from twcmaster.sources.base import Reading, Source, SourceTiming
from twcmaster.sources.modulevalues import module_values
from twcmaster.sources.runner import SourceRunner

NIGHT = datetime(2024, 6, 3, 23)


class _Idle(Source):
    def __init__(self, name: str, max_age_s: float = 60.0) -> None:
        super().__init__({}, SourceTiming(max_age_s=max_age_s))
        self.name = name


def test_generated_consumed_import_export_from_a_fresh_reading():
    now = [1000.0]
    runner = SourceRunner([_Idle("Powerwall2"), _Idle("Fronius")], clock=lambda: now[0])
    value = module_values(runner)
    runner.push("Powerwall2", Reading(generation_w=3000.0, consumption_w=500.0, grid_w=-2500.0))
    runner.push("Fronius", Reading(generation_w=1200.0))
    assert value("TeslaPowerwall2", "generatedW") == 3000.0  # TWCManager's module name
    assert value("Powerwall2", "consumedW") == 500.0
    assert (value("Powerwall2", "exportW"), value("Powerwall2", "importW")) == (2500.0, 0.0)
    with pytest.raises(RuleError, match="does not measure"):
        value("Fronius", "importW")
    with pytest.raises(RuleError, match="does not measure"):  # not asked of the gateway
        value("TeslaPowerwall2", "gridStatus")
    with pytest.raises(RuleError, match="does not provide"):
        value("TeslaPowerwall2", "stormWatch")  # from Tesla's cloud: not read
    with pytest.raises(RuleError, match="does not provide"):
        value("Fronius", "gridStatus")  # the Powerwall's own
    runner.push("Powerwall2", Reading(generation_w=0.0, extras=(("gridStatus", False),)))
    assert value("TeslaPowerwall2", "gridStatus") is False
    with pytest.raises(RuleError, match="no energy source SolarEdge"):
        value("SolarEdge", "generatedW")
    now[0] += 61  # older than maxAge
    with pytest.raises(RuleError, match="no fresh reading"):
        value("Fronius", "generatedW")


def test_a_rule_on_a_module_value_in_the_engine():
    now = [0.0]
    runner = SourceRunner([_Idle("Powerwall2")], clock=lambda: now[0])
    export = {"name": "Exporting", "match": ["modules.TeslaPowerwall2.exportW"],
              "condition": ["gt"], "value": [1500], "charge_amps": 16}  # fmt: skip
    rules = config_from_dict(
        {"config": {"wiringMaxAmpsAllTWCs": 32, "wiringMaxAmpsPerTWC": 32},
         "sources": {"Powerwall2": {"enabled": True, "serverIP": "192.168.1.9"}},
         "policy": {"extend": {"before": [export]}}},
        "/tmp",
    ).settings.policy_rules  # fmt: skip
    engine = PolicyEngine(policy_config(rules=rules, non_scheduled_amps_max=0), None,
                          module_value=module_values(runner))  # fmt: skip
    assert engine.decide(0, NIGHT, None, None).policy == POLICY_NON_SCHEDULED  # no reading yet
    runner.push("Powerwall2", Reading(generation_w=2500.0, consumption_w=300.0, grid_w=-2200.0))
    budget = engine.decide(2, NIGHT, None, None)
    assert (budget.policy, budget.amps) == ("Exporting", 16)


def test_module_values_twcmaster_cannot_give_are_warned_about_at_load():
    def warned(match: str, sources: dict) -> list[str]:
        rule = {"name": "R", "match": [match], "condition": ["gt"], "value": [0],
                "charge_amps": 6}  # fmt: skip
        loaded = config_from_dict(
            {"config": {"wiringMaxAmpsAllTWCs": 32, "wiringMaxAmpsPerTWC": 32},
             "sources": sources, "policy": {"extend": {"after": [rule]}}}, "/tmp",
        )  # fmt: skip
        return [w.message for w in loaded.warnings if w.key_path.startswith("policy.")]

    fronius = {"Fronius": {"enabled": True, "serverIP": "192.168.1.2"}}
    assert warned("modules.Fronius.generatedW", fronius) == []
    (gone,) = warned("modules.Fronius.generatedW", {})
    assert "no energy source Fronius is enabled" in gone and "never matches" in gone
    (grid,) = warned("modules.Fronius.gridStatus", fronius)
    assert "Fronius gives only generatedW, consumedW, importW, exportW" in grid
    powerwall = {"Powerwall2": {"enabled": True, "serverIP": "192.168.1.9"}}
    assert warned("modules.TeslaPowerwall2.gridStatus", powerwall) == []
    (storm,) = warned("modules.TeslaPowerwall2.stormWatch", powerwall)
    assert "gridStatus, batteryLevel, operatingMode, reservePercent" in storm


def test_the_rules_say_which_values_of_which_source_they_read():
    rule = {"name": "Outage", "match": ["modules.TeslaPowerwall2.gridStatus",
            "modules.Powerwall2.batteryLevel"], "condition": ["eq", "lt"],
            "value": [False, 20], "charge_amps": "modules.Fronius.generatedW"}  # fmt: skip
    rules = config_from_dict(
        {"config": {"wiringMaxAmpsAllTWCs": 32, "wiringMaxAmpsPerTWC": 32},
         "sources": {"Powerwall2": {"enabled": True, "serverIP": "192.168.1.9"}},
         "policy": {"extend": {"emergency": [rule]}}}, "/tmp",
    ).settings.policy_rules  # fmt: skip
    assert rules.module_values_read() == {
        "Powerwall2": frozenset({"gridStatus", "batteryLevel"}),
        "Fronius": frozenset({"generatedW"}),
    }


def test_twcmanagers_grid_outage_rule_on_the_powerwalls_grid_status():
    now = [0.0]
    runner = SourceRunner([_Idle("Powerwall2")], clock=lambda: now[0])
    outage = {"name": "Grid outage", "match": ["modules.TeslaPowerwall2.gridStatus"],
              "condition": ["eq"], "value": [False], "charge_amps": 0}  # fmt: skip
    rules = config_from_dict(
        {"config": {"wiringMaxAmpsAllTWCs": 32, "wiringMaxAmpsPerTWC": 32},
         "sources": {"Powerwall2": {"enabled": True, "serverIP": "192.168.1.9"}},
         "policy": {"extend": {"emergency": [outage]}}}, "/tmp",
    ).settings.policy_rules  # fmt: skip
    engine = PolicyEngine(policy_config(rules=rules, non_scheduled_amps_max=16), None,
                          module_value=module_values(runner))  # fmt: skip
    connected = Reading(generation_w=0.0, extras=(("gridStatus", True),))
    runner.push("Powerwall2", connected)
    assert engine.decide(0, NIGHT, None, None).policy == POLICY_NON_SCHEDULED
    runner.push("Powerwall2", Reading(generation_w=0.0, extras=(("gridStatus", False),)))
    budget = engine.decide(2, NIGHT, None, None)
    assert (budget.policy, budget.amps) == ("Grid outage", 0)
