"""The user's policy rules (config.json's ``policy`` section) in the policy engine.

TWCManager's semantics (``lib/TWCManager/Policy/Policy.py``, ``docs/PolicyCustomization.md``):
where the extension points insert rules, what restrictions and latches do, how conditions
and values are evaluated; and twcmaster's safety on top: never above the wiring, a rule that
cannot be evaluated does not match. Virtual time: nothing sleeps.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.control.sites import V, make_site, policy_config
from tests.control.test_policy import started
from twcmaster.config.policyparse import parse_policy_rules
from twcmaster.config.policyrules import PolicyRules
from twcmaster.config.problems import Report
from twcmaster.control.green import ChargerView
from twcmaster.control.policy import (
    POLICY_CHARGE_NOW,
    POLICY_GREEN,
    POLICY_NO_MATCH,
    POLICY_NON_SCHEDULED,
    POLICY_SCHEDULED,
    PolicyEngine,
    policy_order,
)
from twcmaster.control.rules import RuleContext, RuleError, amps_value, holds, resolve
from twcmaster.settings import RuntimeSettings, ScheduleWindow

MONDAY = datetime(2024, 6, 3)
NOON = MONDAY.replace(hour=12)
NIGHT = MONDAY.replace(hour=23)
HOUSE_W = 500.0


def surplus(amps: float, at_s: float = 0.0):
    return make_site(V * amps + HOUSE_W, HOUSE_W, at_s=at_s)


def rules(policy: dict, config: dict | None = None) -> PolicyRules:
    """The typed rules of a ``policy`` section, which must have no errors."""
    report = Report()
    parsed = parse_policy_rules({"policy": policy, "config": config or {}}, report)
    assert report.errors == [], report.errors
    return parsed


def rule(name: str, match=(), condition=(), value=(), **more) -> dict:
    return {"name": name, "match": list(match), "condition": list(condition),
            "value": list(value), **more}  # fmt: skip


ALWAYS = {"match": ["x"], "condition": ["none"], "value": [0]}


class Store:
    def __init__(self, settings_=None, raw=None):
        self.settings = settings_ or RuntimeSettings()
        self._raw = raw or {}

    def raw(self):
        return dict(self._raw)


def engine(policy: dict, store=None, config_values=None, **changes) -> PolicyEngine:
    config = policy_config(rules=rules(policy), config_values=config_values or {}, **changes)
    return PolicyEngine(config, store or Store())


def decide(eng: PolicyEngine, when: datetime, site=None, chargers=None, now_s: float = 0.0):
    return eng.decide(now_s, when, site, chargers)


def ctx(when: datetime = NOON, **more) -> RuleContext:
    return RuleContext(local_time=when, **more)


# ------------------------------------------------------------------------- values


def test_values_resolve_as_twcmanager_resolves_them():
    c = ctx(
        MONDAY.replace(hour=7, minute=45),
        settings={"chargeNowAmps": "16", "sunrise": 6, "ratio": "0.5", "label": "abc"},
        config={"myCap": 20},
        green_amps=lambda: 12.5,
        scheduled=lambda: True,
    )
    assert resolve("now", c) == MONDAY.replace(hour=7, minute=45).timestamp()
    assert (resolve("tm_hour", c), resolve("tm_min", c), resolve("tm_wday", c)) == (7, 45, 0)
    assert resolve("settings.chargeNowAmps", c) == 16  # TWCManager's numeric strings
    assert resolve("settings.ratio", c) == 0.5
    assert resolve("settings.label", c) == "abc"
    assert resolve("settings.absent", c) == 0
    assert (resolve("config.myCap", c), resolve("config.absent", c)) == (20, 0)
    assert resolve("getMaxAmpsToDivideGreenEnergy()", c) == 12.5
    assert resolve("getMaxAmpsForTargetGridUsage()", c) == 12.5
    assert resolve("checkScheduledCharging()", c) == 1
    assert (resolve(3, c), resolve(True, c), resolve(None, c), resolve("plain", c)) == (
        3, True, None, "plain",
    )  # fmt: skip
    with pytest.raises(RuleError, match="modules.TeslaPowerwall2.gridStatus"):
        resolve("modules.TeslaPowerwall2.gridStatus", c)


@pytest.mark.parametrize(
    ("match", "operator", "value", "expected"),
    [
        (5, "gt", 4, True), (4, "gt", 4, False), (4, "gte", 4, True), (3, "lt", 4, True),
        (4, "lt", 4, False), (4, "lte", 4, True), (4, "eq", 4, True), (4, "ne", 4, False),
        ("16", "gt", 10, True),  # ordering reads numeric strings as numbers
        ("16", "eq", 16, False),  # eq does not (TWCManager)
        (True, "eq", True, True), ("a", "ne", "b", True),
        ("modules.X.y", "none", 0, True),  # none / false resolve nothing
        ("modules.X.y", "false", 0, False),
    ],
)  # fmt: skip
def test_operators(match, operator, value, expected):
    group = rules({"extend": {"before": [rule("r", [match], [operator], [value])]}})
    assert holds(group.before[0].conditions, ctx()) is expected


def test_sub_lists_alternate_and_or():
    # hour >= 6 AND (exportW >= 1500 OR gridStatus == false), as in TWCManager's docs
    policy = rule(
        "r",
        ["tm_hour", ["settings.exportW", "settings.gridUp"]],
        ["gte", ["gte", "eq"]],
        [6, [1500, False]],
    )
    group = rules({"extend": {"before": [policy]}}).before[0].conditions
    assert group.items[1].any_of and not group.any_of
    cases = [({"exportW": 2000, "gridUp": True}, True), ({"exportW": 0, "gridUp": False}, True),
             ({"exportW": 0, "gridUp": True}, False)]  # fmt: skip
    for values, expected in cases:
        assert holds(group, ctx(settings=values)) is expected
    assert holds(group, ctx(MONDAY.replace(hour=5), settings={"exportW": 2000})) is False


def test_evaluation_stops_at_the_first_item_that_decides():
    failing = ["modules.X.y"]
    group = rules({"extend": {"before": [
        rule("and", ["tm_hour", *failing], ["lt", "eq"], [0, 1]),
    ]}}).before[0].conditions  # fmt: skip
    assert holds(group, ctx()) is False  # the failing second item is never evaluated
    group = rules({"extend": {"before": [rule("r", failing, ["eq"], [1])]}}).before[0].conditions
    with pytest.raises(RuleError):
        holds(group, ctx())


def test_values_that_cannot_be_compared_raise():
    group = rules({"extend": {"before": [rule("r", ["settings.label"], ["gt"], [3])]}})
    with pytest.raises(RuleError, match="cannot compare"):
        holds(group.before[0].conditions, ctx(settings={"label": "abc"}))


def test_amps_values_are_finite_numbers_at_least_zero():
    c = ctx(settings={"a": "12", "neg": -3, "text": "x"})
    assert amps_value("settings.a", c) == 12.0
    assert amps_value("settings.neg", c) == 0.0
    assert amps_value(7.5, c) == 7.5
    for bad in ("settings.text", "modules.X.y", math.nan, math.inf, True):
        with pytest.raises(RuleError):
            amps_value(bad, c)


# ------------------------------------------------------------------------- the order


def names(policy: dict) -> list[str]:
    order, emergency = policy_order(rules(policy))
    return [entry.name for entry in order]


def test_without_a_policy_section_the_order_is_twcmanagers_default():
    order, emergency = policy_order(PolicyRules())
    assert [entry.name for entry in order] == [
        POLICY_CHARGE_NOW, POLICY_SCHEDULED, POLICY_GREEN, POLICY_NON_SCHEDULED, POLICY_GREEN,
    ]  # fmt: skip
    assert emergency == 0


def test_the_extension_points_insert_where_twcmanager_inserts():
    policy = {"extend": {
        "emergency": [rule("E1", **ALWAYS), rule("E2", **ALWAYS)],
        "before": [rule("B", **ALWAYS)],
        "after": [rule("A", **ALWAYS)],
    }}  # fmt: skip
    assert names(policy) == [
        "E1", "E2", POLICY_CHARGE_NOW, "B", POLICY_SCHEDULED, POLICY_GREEN, "A",
        POLICY_NON_SCHEDULED, POLICY_GREEN,
    ]  # fmt: skip
    assert policy_order(rules(policy))[1] == 2


def test_override_replaces_the_whole_list():
    policy = {"override": [rule("Only", **ALWAYS, charge_amps=10)],
              "extend": {"before": [rule("B", **ALWAYS)]}}  # fmt: skip
    assert names(policy) == ["Only"]
    budget = decide(engine(policy), NOON)
    assert (budget.policy, budget.amps) == ("Only", 10)


def test_an_emergency_rule_beats_charge_now_and_a_policy_forced_by_hand():
    grid_down = rule("Grid down", ["settings.gridDown"], ["eq"], [1], charge_amps=0)
    store = Store(RuntimeSettings(charge_now_amps=24, charge_now_end_epoch=2e9,
                                  forced_policy=POLICY_GREEN), raw={"gridDown": 1})  # fmt: skip
    eng = engine({"extend": {"emergency": [grid_down]}}, store)
    budget = decide(eng, NIGHT)
    assert (budget.policy, budget.amps) == ("Grid down", 0)
    assert "policy.extend.emergency[0]" in budget.reason
    store._raw = {"gridDown": 0}
    assert decide(eng, NIGHT).policy == POLICY_GREEN  # forced by hand, below the emergency


def test_a_before_rule_comes_after_charge_now_and_before_the_schedule():
    low = rule("Low battery", ["settings.lowBattery"], ["eq"], [True], charge_amps=20)
    store = Store(RuntimeSettings(schedule=(ScheduleWindow(8, 22, 6),)), raw={"lowBattery": True})
    eng = engine({"extend": {"before": [low]}}, store)
    assert (decide(eng, NIGHT).policy, decide(eng, NIGHT).amps) == ("Low battery", 20)
    store.settings = RuntimeSettings(charge_now_amps=30, charge_now_end_epoch=2e9)
    assert decide(eng, NIGHT).policy == POLICY_CHARGE_NOW


def test_an_after_rule_comes_after_the_green_hours_and_before_non_scheduled():
    evening = rule("Evening", ["tm_hour"], ["gte"], [18], charge_amps=10)
    eng = engine({"extend": {"after": [evening]}}, non_scheduled_amps_max=4)
    assert decide(eng, MONDAY.replace(hour=19), surplus(10)).policy == POLICY_GREEN
    assert (decide(eng, MONDAY.replace(hour=21)).policy, decide(eng, NIGHT).amps) == (
        "Evening", 10,
    )  # fmt: skip
    assert decide(eng, MONDAY.replace(hour=3)).policy == POLICY_NON_SCHEDULED


def test_no_match_keeps_the_last_policy_with_its_amps_read_afresh():
    store = Store(raw={"allowed": 1, "amps": 12})
    eng = engine({"override": [
        rule("Allowed", ["settings.allowed"], ["eq"], [1], charge_amps="settings.amps"),
    ]}, store)  # fmt: skip
    assert decide(eng, NOON).amps == 12
    store._raw = {"allowed": 0, "amps": 8}
    budget = decide(eng, NOON)
    assert (budget.policy, budget.amps) == ("Allowed", 8)
    assert "the last one stays" in budget.reason


def test_no_match_before_any_policy_matched_is_0_amps():
    eng = engine({"override": [rule("Never", ["x"], ["false"], [0], charge_amps=16)]})
    budget = decide(eng, NOON)
    assert (budget.policy, budget.amps) == (POLICY_NO_MATCH, 0)


def test_a_restriction_adds_conditions_to_a_builtin_policy():
    store = Store(RuntimeSettings(charge_now_amps=24, charge_now_end_epoch=2e9))
    restricted = {"extend": {"restrictions": {
        POLICY_CHARGE_NOW: {"match": ["tm_hour"], "condition": ["lt"], "value": [22]},
    }}}  # fmt: skip
    eng = engine(restricted, store, non_scheduled_amps_max=6)
    assert decide(eng, MONDAY.replace(hour=21)).policy == POLICY_CHARGE_NOW
    assert (decide(eng, NIGHT).policy, decide(eng, NIGHT).amps) == (POLICY_NON_SCHEDULED, 6)


def test_a_restriction_on_track_green_energy_restricts_the_green_hours_only():
    store = Store(RuntimeSettings(non_scheduled_action=3))
    eng = engine({"extend": {"restrictions": {
        POLICY_GREEN: {"match": ["tm_hour"], "condition": ["gte"], "value": [10]},
    }}}, store)  # fmt: skip
    # nonScheduledAction 3: the second Track Green Energy is not restricted (TWCManager)
    budget = decide(eng, MONDAY.replace(hour=8), surplus(10))
    assert budget.policy == POLICY_GREEN and "nonScheduledAction 3" in budget.reason
    assert "sunrise" in decide(eng, MONDAY.replace(hour=11), surplus(10)).reason


def test_a_restriction_on_non_scheduled_with_no_other_match_keeps_the_last_policy():
    eng = engine({"extend": {"restrictions": {
        POLICY_NON_SCHEDULED: {"match": ["tm_hour"], "condition": ["lt"], "value": [22]},
    }}}, non_scheduled_amps_max=5)  # fmt: skip
    assert decide(eng, MONDAY.replace(hour=21)).amps == 5
    budget = decide(eng, NIGHT)
    assert (budget.policy, budget.amps) == (POLICY_NON_SCHEDULED, 5)
    assert "the last one stays" in budget.reason


def test_a_rules_charge_amps_never_lift_the_budget_above_the_wiring():
    eng = engine({"extend": {"emergency": [rule("Big", **ALWAYS, charge_amps=500)]}})
    budget = decide(eng, NOON)
    assert (budget.policy, budget.amps) == ("Big", 32)
    assert "capped at wiringMaxAmpsAllTWCs 32A" in budget.reason


def test_a_rule_without_charge_amps_tracks_green_energy_under_its_own_name():
    eng = engine({"extend": {"before": [rule("Solar only", **ALWAYS)]}})
    budget = decide(eng, NIGHT, surplus(10))
    assert budget.policy == "Solar only" and budget.green is not None
    stale = decide(eng, NIGHT, None)
    assert stale.policy == "Solar only" and stale.stale and stale.amps == 0


def test_latch_period_keeps_a_rule_after_its_conditions_stop_holding():
    store = Store(raw={"export": 2000})
    exporting = rule("Export", ["settings.export"], ["gt"], [1000], charge_amps=10,
                     latch_period=5)  # fmt: skip
    eng = engine({"extend": {"before": [exporting]}}, store, non_scheduled_amps_max=0)
    assert decide(eng, NIGHT, now_s=0).policy == "Export"
    store._raw = {"export": 0}
    held = decide(eng, NIGHT, now_s=240)
    assert held.policy == "Export" and "latch_period holds it" in held.reason
    assert decide(eng, NIGHT, now_s=301).policy == POLICY_NON_SCHEDULED


def test_allowed_flex_tops_a_fixed_rule_up_to_the_floor_of_a_charging_car():
    low = rule("Trickle", **ALWAYS, charge_amps=4.5, allowed_flex=2)
    eng = engine({"extend": {"before": [low]}})
    charging = ChargerView(4.0, 5.0, 1, None)
    budget = decide(eng, NIGHT, chargers=charging)
    assert budget.amps == 6 and "allowed_flex 2A" in budget.reason
    assert decide(eng, NIGHT, chargers=ChargerView(0, 0, 0, None)).amps == 4.5  # no car yet
    starts = engine({"extend": {"before": [low]}}, use_flex_amps_to_start_charge=True)
    assert decide(starts, NIGHT, chargers=ChargerView(0, 0, 0, None)).amps == 6


def test_allowed_flex_keeps_a_green_rule_at_the_floor_through_a_dip():
    loop = started(engine({"extend": {"before": [rule("Solar", **ALWAYS, allowed_flex=3)]}}))
    held = loop.run(600, 4.0)  # 4 A + 3 A flex >= the 6 A floor
    assert {b.amps for b in held} == {6.0} and {b.policy for b in held} == {"Solar"}
    without = started(engine({"extend": {"before": [rule("Solar", **ALWAYS)]}}))
    assert without.run(600, 4.0)[-1].amps == 0  # TWCManager: no allowed_flex, no flex


def test_a_condition_that_cannot_be_evaluated_does_not_match_and_is_told_once():
    powerwall = rule("Storm", ["modules.TeslaPowerwall2.stormWatch"], ["eq"], [True],
                     charge_amps=32)  # fmt: skip
    eng = engine({"extend": {"emergency": [powerwall]}}, non_scheduled_amps_max=0)
    budgets = [decide(eng, NIGHT, now_s=t) for t in range(5)]
    assert {b.amps for b in budgets} == {0}
    failures = [failure for b in budgets for failure in b.rule_failures]
    assert len(failures) == 1
    where, problem = failures[0]
    assert where == "policy.extend.emergency[0]" and "not available" in problem
    assert "taken as not matching" in problem


def test_charge_amps_that_cannot_be_evaluated_give_0_amps():
    eng = engine({"extend": {"before": [rule("R", **ALWAYS, charge_amps="settings.label")]}},
                 Store(raw={"label": "fast"}))  # fmt: skip
    budget = decide(eng, NIGHT)
    assert (budget.policy, budget.amps) == ("R", 0)
    assert budget.rule_failures[0][0] == "policy.extend.before[0].charge_amps"


def test_a_rule_that_recovers_and_fails_again_is_told_again():
    store = Store(raw={"label": "abc"})
    eng = engine({"extend": {"before": [rule("R", ["settings.label"], ["gt"], [3],
                                             charge_amps=8)]}}, store)  # fmt: skip
    assert decide(eng, NIGHT).rule_failures
    assert not decide(eng, NIGHT).rule_failures
    store._raw = {"label": 5}
    assert decide(eng, NIGHT).amps == 8
    store._raw = {"label": "x"}
    assert decide(eng, NIGHT).rule_failures


def test_green_amps_function_reads_the_surplus_and_fails_safe_without_a_reading():
    sunny = rule("Sunny", ["getMaxAmpsToDivideGreenEnergy()"], ["gte"], [10], charge_amps=16)
    eng = engine({"extend": {"before": [sunny]}}, non_scheduled_amps_max=0)
    assert decide(eng, NIGHT, surplus(12)).policy == "Sunny"
    assert decide(eng, NIGHT, surplus(8)).policy == POLICY_NON_SCHEDULED
    assert decide(eng, NIGHT, None).policy == POLICY_NON_SCHEDULED


def test_check_scheduled_charging_in_an_override_copy_of_the_defaults():
    store = Store(RuntimeSettings(schedule=(ScheduleWindow(16, 22, 6),)),
                  raw={"scheduledAmpsMax": 16})  # fmt: skip
    eng = engine({"override": [
        rule("Scheduled Charging", ["checkScheduledCharging()"], ["eq"], [1],
             charge_amps="settings.scheduledAmpsMax"),
        rule("Non Scheduled Charging", ["settings.nonScheduledAction"], ["lt"], [3],
             charge_amps=0),
    ]}, store)  # fmt: skip
    assert (decide(eng, NIGHT).policy, decide(eng, NIGHT).amps) == (POLICY_SCHEDULED, 16)
    assert decide(eng, NOON).policy == POLICY_NON_SCHEDULED


def test_policy_check_interval_holds_the_choice_until_it_has_passed():
    store = Store(raw={"go": 1})
    eng = engine({"engine": {"policyCheckInterval": 30}, "extend": {"before": [
        rule("Go", ["settings.go"], ["eq"], [1], charge_amps=10)]}}, store,
        non_scheduled_amps_max=0)  # fmt: skip
    assert decide(eng, NIGHT, now_s=0).policy == "Go"
    store._raw = {"go": 0}
    assert decide(eng, NIGHT, now_s=29).policy == "Go"  # held
    assert decide(eng, NIGHT, now_s=30).policy == POLICY_NON_SCHEDULED
    # A change of the settings (the web page, MQTT) chooses at once.
    store._raw = {"go": 1}
    assert decide(eng, NIGHT, now_s=31).policy == POLICY_NON_SCHEDULED
    store.settings = RuntimeSettings(non_scheduled_amps_max=3)
    assert decide(eng, NIGHT, now_s=32).policy == "Go"


def test_without_policy_check_interval_the_policy_is_chosen_at_every_decision():
    store = Store(raw={"go": 1})
    eng = engine({"extend": {"before": [rule("Go", ["settings.go"], ["eq"], [1],
                                             charge_amps=10)]}}, store)  # fmt: skip
    assert decide(eng, NIGHT, now_s=0).policy == "Go"
    store._raw = {"go": 0}
    assert decide(eng, NIGHT, now_s=2).policy == POLICY_NON_SCHEDULED


def test_config_values_come_from_the_config_section():
    capped = rule("Capped", ["config.myFlag"], ["eq"], [True], charge_amps="config.myAmps")
    eng = engine({"extend": {"before": [capped]}}, config_values={"myFlag": True, "myAmps": 9})
    assert (decide(eng, NIGHT).policy, decide(eng, NIGHT).amps) == ("Capped", 9)


# ------------------------------------------------------------------------- properties

operands = st.one_of(
    st.integers(-5, 50), st.floats(-1e3, 1e3), st.booleans(), st.none(),
    st.sampled_from([
        "now", "tm_hour", "tm_min", "tm_wday", "settings.chargeNowAmps", "settings.sunrise",
        "settings.nonScheduledAction", "settings.label", "settings.absent", "config.myAmps",
        "getMaxAmpsToDivideGreenEnergy()", "checkScheduledCharging()",
        "modules.TeslaPowerwall2.gridStatus", "text",
    ]),
)  # fmt: skip
operators = st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte", "none", "false"])
comparisons = st.tuples(operands, operators, operands)
groups = st.lists(
    st.one_of(comparisons, st.lists(comparisons, min_size=1, max_size=3).map(
        lambda items: tuple(list(x) for x in zip(*items, strict=True))
    )),
    max_size=3,
)  # fmt: skip
amps_values = st.one_of(
    st.none(), st.integers(0, 500), st.floats(0, 1e6),
    st.sampled_from(["settings.chargeNowAmps", "config.myAmps", "settings.label",
                     "getMaxAmpsToDivideGreenEnergy()", "modules.X.y"]),
)  # fmt: skip


@st.composite
def rule_dicts(draw, name: str) -> dict:
    items = draw(groups)
    out = rule(name, [m for m, _, _ in items], [c for _, c, _ in items], [v for _, _, v in items])
    for key, strategy in (("charge_amps", amps_values), ("allowed_flex", amps_values)):
        value = draw(strategy)
        if value is not None:
            out[key] = value
    if draw(st.booleans()):
        out["latch_period"] = draw(st.floats(0, 30))
    return out


@st.composite
def policies(draw) -> dict:
    counter = iter(range(1000))

    def some(max_size: int) -> list[dict]:
        return [
            draw(rule_dicts(f"R{next(counter)}")) for _ in range(draw(st.integers(0, max_size)))
        ]

    if draw(st.booleans()) and draw(st.booleans()):
        return {"override": some(4) or [draw(rule_dicts("Only"))]}
    restriction = draw(groups)
    extend = {"emergency": some(2), "before": some(2), "after": some(2)}
    if restriction:
        name = draw(st.sampled_from([POLICY_CHARGE_NOW, POLICY_SCHEDULED, POLICY_GREEN,
                                     POLICY_NON_SCHEDULED]))  # fmt: skip
        extend["restrictions"] = {name: {
            "match": [m for m, _, _ in restriction], "condition": [c for _, c, _ in restriction],
            "value": [v for _, _, v in restriction],
        }}  # fmt: skip
    out = {"extend": extend}
    if draw(st.booleans()):
        out["engine"] = {"policyCheckInterval": draw(st.floats(0, 120))}
    return out


runtime = st.builds(
    RuntimeSettings,
    charge_now_amps=st.floats(0, 1000),
    charge_now_end_epoch=st.one_of(st.just(0.0), st.floats(0, 1e20)),
    schedule=st.lists(st.builds(ScheduleWindow, st.floats(0.5, 100), st.just(22.0),
                                st.just(6.0)), max_size=1).map(tuple),
    non_scheduled_action=st.integers(1, 3),
    non_scheduled_amps_max=st.one_of(st.none(), st.floats(0, 1000)),
)  # fmt: skip
readings = st.one_of(
    st.none(),
    st.builds(make_site, generation_w=st.floats(0, 20000), consumption_w=st.floats(0, 3000)),
    st.builds(make_site, generation_w=st.floats(allow_nan=True), consumption_w=st.just(0.0),
              stale=st.booleans()),
)  # fmt: skip
views = st.one_of(
    st.none(),
    st.builds(ChargerView, actual_amps=st.floats(0, 100), offered_amps=st.floats(0, 100),
              charging_cars=st.integers(0, 3)),
)  # fmt: skip
steps = st.lists(
    st.tuples(st.floats(-5, 90), st.integers(0, 24 * 60 - 1), readings, views), max_size=25
)
raw_settings = st.fixed_dictionaries({
    "label": st.sampled_from(["abc", "16", "7.5", ""]),
    "chargeNowAmps": st.one_of(st.integers(0, 100), st.just("48")),
})  # fmt: skip
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(
    policy=policies(), sequence=steps, runtime_settings=runtime, raw=raw_settings,
    wiring=st.integers(1, 80), my_amps=st.one_of(st.integers(0, 1000), st.just("x")),
)  # fmt: skip
def test_with_any_rules_the_budget_stays_within_the_wiring(
    policy, sequence, runtime_settings, raw, wiring, my_amps
):
    eng = engine(policy, Store(runtime_settings, raw), config_values={"myAmps": my_amps},
                 wiring_max_amps_all_twcs=wiring)  # fmt: skip
    now = 0.0
    for dt, minute, site, view in sequence:
        now += dt
        budget = eng.decide(now, MONDAY + timedelta(minutes=minute), site, view)
        assert not math.isnan(budget.amps)
        assert 0.0 <= budget.amps <= wiring


FAILING = ["modules.TeslaPowerwall2.gridStatus", "settings.label"]


@PROPERTY
@given(
    policy=policies(), sequence=steps, runtime_settings=runtime,
    where=st.sampled_from(["emergency", "before", "after"]), failing=st.sampled_from(FAILING),
    operator=st.sampled_from(["eq", "gt", "lte"]),
)  # fmt: skip
def test_a_rule_whose_condition_cannot_be_evaluated_is_never_chosen(
    policy, sequence, runtime_settings, where, failing, operator
):
    """A rule that would give the wiring's amps, but one of its conditions fails (no module
    values; a text compared with a number): it is never the policy, whatever else there is."""
    policy.setdefault("extend", {})
    policy.pop("override", None)
    bad = rule("Failing", ["tm_hour", failing], ["gte", operator], [0, 5], charge_amps=1000)
    if failing == "settings.label" and operator == "eq":
        return  # eq compares anything: not a failure
    policy["extend"][where] = [bad, *policy["extend"].get(where, [])]
    eng = engine(policy, Store(runtime_settings, {"label": "abc"}))
    now = 0.0
    for dt, minute, site, view in sequence:
        now += dt
        budget = eng.decide(now, MONDAY + timedelta(minutes=minute), site, view)
        assert budget.policy != "Failing"


NO_OP_POLICIES = st.sampled_from([
    {},
    {"extend": {"emergency": [], "before": [], "after": [], "restrictions": {}, "webhooks": {}}},
    {"alwaysPollEMS": True, "extend": {"restrictions": {
        POLICY_CHARGE_NOW: {"match": [], "condition": [], "value": []}}}},
    {"extend": {"restrictions": {name: {"match": ["x"], "condition": ["none"], "value": [0]}
                                 for name in (POLICY_CHARGE_NOW, POLICY_SCHEDULED,
                                              POLICY_GREEN, POLICY_NON_SCHEDULED)}}},
    {"extend": {"webhooks": {POLICY_GREEN: {"enter": "http://127.0.0.1:9/enter"}}}},
])  # fmt: skip


@PROPERTY
@given(policy=NO_OP_POLICIES, sequence=steps, runtime_settings=st.one_of(st.none(), runtime),
       forced=st.sampled_from([None, None, POLICY_GREEN, POLICY_CHARGE_NOW]))  # fmt: skip
def test_a_policy_section_that_changes_nothing_decides_exactly_as_none(
    policy, sequence, runtime_settings, forced
):
    plain = PolicyEngine(policy_config(), Store(runtime_settings), force_policy=forced)
    ruled = PolicyEngine(
        policy_config(rules=rules(policy)), Store(runtime_settings), force_policy=forced
    )
    now = 0.0
    for dt, minute, site, view in sequence:
        now += dt
        when = MONDAY + timedelta(minutes=minute)
        assert ruled.decide(now, when, site, view) == plain.decide(now, when, site, view)


def test_a_rule_failure_reaches_the_log_as_an_event():
    from twcmaster import events as ev
    from twcmaster.outputs.base import Publication
    from twcmaster.outputs.eventlog import EventLog

    lines = []

    class Log:
        def warning(self, event, **fields):
            lines.append((event, fields))

    failed = ev.PolicyRuleFailed("policy.extend.before[0]", "no module values: not matching")
    EventLog(Log()).publish(Publication(0.0, (failed,), lambda: None))
    assert lines == [
        (
            "policy rule cannot be evaluated",
            {"rule": "policy.extend.before[0]", "problem": "no module values: not matching"},
        )
    ]


def test_the_readmes_example_rule_loads_and_means_what_it_says():
    import json
    import re
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("## Your own policy rules", 1)[1]
    example = json.loads(re.search(r"```json\n(.*?)```", section, re.S).group(1))
    eng = engine({"extend": {"before": [example]}}, Store(raw={"pwLevel": 96}),
                 config_values={"minAmpsPerTWC": 6})  # fmt: skip
    early, noon = MONDAY.replace(hour=5), NOON
    assert (decide(eng, early, surplus(2)).policy, decide(eng, early, surplus(2)).amps) == (
        "Powerwall Full", 6,
    )  # fmt: skip
    assert decide(eng, noon, surplus(12), now_s=0).policy == "Powerwall Full"
    assert decide(eng, noon, surplus(2), now_s=31 * 60).policy == POLICY_GREEN  # latch over


def test_get_policy_shows_the_order_with_the_users_rules():
    from twcmaster.config import config_from_dict
    from twcmaster.outputs.twcmanager_json import policy_json

    def shown(policy: dict) -> list[dict]:
        wiring = {"wiringMaxAmpsAllTWCs": 32, "wiringMaxAmpsPerTWC": 32}
        return policy_json(config_from_dict({"config": wiring, "policy": policy}, "/tmp").settings)

    nested = rule("Nested", ["tm_hour", ["tm_min", "tm_wday"]], ["gte", ["lt", "eq"]],
                  [6, [30, 0]], charge_amps=8, latch_period=5,
                  webhooks={"enter": "http://h/in"})  # fmt: skip
    table = shown({"extend": {
        "emergency": [rule("E", **ALWAYS, charge_amps=0)], "after": [nested],
        "restrictions": {POLICY_GREEN: {"match": ["tm_min"], "condition": ["lt"], "value": [50]}},
        "webhooks": {POLICY_CHARGE_NOW: {"stop": "http://h/stop"}},
    }})  # fmt: skip
    assert [r["name"] for r in table] == [
        "E", POLICY_CHARGE_NOW, POLICY_SCHEDULED, POLICY_GREEN, "Nested", POLICY_NON_SCHEDULED,
        POLICY_GREEN,
    ]  # fmt: skip
    assert table[4] == {
        "name": "Nested", "match": ["tm_hour", ["tm_min", "tm_wday"]],
        "condition": ["gte", ["lt", "eq"]], "value": [6, [30, 0]], "charge_amps": 8,
        "latch_period": 5.0, "webhooks": {"enter": "http://h/in"},
    }  # fmt: skip
    assert table[3]["match"][-1] == "tm_min" and "tm_min" not in table[6]["match"]
    assert table[1]["webhooks"] == {"stop": "http://h/stop"}
    assert [r["name"] for r in shown({"override": [rule("Only", **ALWAYS)]})] == ["Only"]


def test_a_green_rule_is_green_for_the_twcmanager_api():
    from twcmaster.core import Snapshot
    from twcmaster.outputs.twcmanager_json import active_policy_action

    eng = engine({"extend": {"before": [rule("Solar only", **ALWAYS)]}})
    green = decide(eng, NIGHT, surplus(10))
    assert green.tracks_green
    fixed = decide(engine({"extend": {"before": [rule("Fixed", **ALWAYS, charge_amps=7)]}}), NIGHT)
    none = decide(engine({"override": [rule("Never", ["x"], ["false"], [0])]}), NIGHT)

    def action(budget):
        return active_policy_action(Snapshot(budget=budget, slaves=(), link_up=True, alarms=()))

    assert (action(green), action(fixed), action(none)) == (3, 1, None)


def test_policy_check_interval_0_chooses_at_every_decision():
    store = Store(raw={"go": 1})
    eng = engine({"engine": {"policyCheckInterval": 0}, "extend": {"before": [
        rule("Go", ["settings.go"], ["eq"], [1], charge_amps=10)]}}, store)  # fmt: skip
    assert decide(eng, NIGHT, now_s=0).policy == "Go"
    store._raw = {"go": 0}
    assert decide(eng, NIGHT, now_s=0.5).policy == POLICY_NON_SCHEDULED
