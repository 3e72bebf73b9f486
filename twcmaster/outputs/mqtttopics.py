"""What MQTT status publishes: every topic, its payload text and how it is rate-limited, from
one ``Snapshot``. Pure functions (no broker, no clock), shared by ``outputs/mqtt.py`` (which
publishes) and ``outputs/homeassistant.py`` (which describes the topics to Home Assistant).

TWCManager's topics keep its names and payload texts (its ``Status/MQTTStatus.py`` publishes
``str(value)`` of the Python value its callers pass, so the type decides the text):

===============================  =============================================  ==========
topic (under ``<prefix>/``)      payload                                        rule
===============================  =============================================  ==========
``all/totalAmpsInUse``           float A: the sum of the TWCs' reported draw    AMPS
                                 (``"15.94"``, ``"0.0"``; ``"0"`` with no TWC)
``all/maxAmpsForSlaves``         A to share: whole ``"32"``, else ``"17.62"``    AMPS
``all/currentPolicy``            policy name, ``"Track Green Energy"``          AT_ONCE
``config/minAmpsPerTWC``         int A from config.json, ``"6"``                AT_ONCE
``<TWCID>/ampsInUse``            float A the TWC reports drawn, ``"15.94"``     AMPS
``<TWCID>/ampsMax``              float A the TWC reports as its limit           AMPS
``<TWCID>/state``                int state code, ``"1"``                        AT_ONCE
``<TWCID>/ampsOffered``          int A offered, ``"16"``                        AMPS
``<TWCID>/ampsDesired``          A wanted before spikes/holds/wiring            AMPS
``<TWCID>/carsCharging``         ``"1"`` / ``"0"``                              AT_ONCE
``<TWCID>/currentVehicleVIN``    VIN, or ``""`` with no car (or none known)     AT_ONCE
``<TWCID>/lastVehicleVIN``       the last VIN seen there, or ``""``             AT_ONCE
``<TWCID>/lifetimekWh``          int kWh (once the TWC has reported it)         AT_ONCE
``<TWCID>/voltagePhaseA|B|C``    int V (once the TWC has reported them)         VOLTS
``<TWCID>/chargerLoadInW``       int W: draw x volts x phases                   WATTS
===============================  =============================================  ==========

``<TWCID>`` is 4 upper-case hex digits (``2118``). When ``carsCharging`` goes 1 -> 0 the
TWC's ``ampsInUse`` and ``chargerLoadInW`` go out at once (TWCManager publishes an extra
``ampsInUse`` 0 then), whatever the rate limit.

twcmaster's own topics (TWCManager clients read only the keys they know, so these are safe
beside them):

===============================  =============================================  ==========
``all/budgetReason``             why this many amps: the console's ``Policy:``  SENTENCE
                                 reason, e.g. ``"fixed rate: ... 32A."``
``all/greenEnergyText``          the console's green-energy lines joined by a   SENTENCE
                                 space (``""`` when not tracking green)
``all/generationW``              int W generated                                WATTS
``all/consumptionW``             int W consumed                                 WATTS
``all/surplusW``                 int W generation - consumption (may be < 0)    WATTS
``all/gridW``                    int W from the grid (+ import, - export), if   WATTS
                                 the meter says
``all/surplusAmps``              float A: the console's ``= 17.62A`` figure     AMPS
``all/chargerLoadInW``           int W: the TWCs' draw together                 WATTS
``all/readingStale``             ``"1"``: the energy reading is unusable, the   AT_ONCE
                                 budget is the safe value; else ``"0"``
``all/busLinked``                ``"1"``: the RS-485 port is open; ``"0"``      AT_ONCE
``all/snapshot``                 the whole snapshot, JSON (``views.py``)        <= 1/s
``config/policy``                ``Auto`` or the policy chosen by hand          AT_ONCE
``config/chargeNowAmps``         A a bare Charge Now starts at (the preset)     AT_ONCE
``config/chargeNowDuration``     s it lasts (the preset)                        AT_ONCE
``config/nonScheduledAmpsMax``   A of the fixed rate in force                   AT_ONCE
``config/nonScheduledAction``    ``1`` fixed rate, ``2`` do not charge, ``3``   AT_ONCE
                                 track green
``<TWCID>/stateName``            the state in words, ``"charging"``             AT_ONCE
``<TWCID>/chargingAllowed``      ``on`` / ``off`` (switched off by hand)        AT_ONCE
``<TWCID>/availability``         ``online`` while linked, else ``offline``      AT_ONCE
``availability``                 ``online``; ``offline`` (last will, or stop)   AT_ONCE
===============================  =============================================  ==========

The green figures (generation ... surplusAmps) are those of the budget's green computation,
the console's figures, while tracking green energy; else a fresh energy reading's; no topic
while neither exists. The ``config/`` settings topics exist when the daemon has runtime
settings (a policy engine). ``availability`` sits right under the prefix, where no TWCID,
``all``, ``config`` or ``control`` can be.

Rules (see ``Rule``): AT_ONCE topics go out on every change. Numbers go out at once when
they moved by their threshold since the last value sent, else at most once per
``ratelimit``; SENTENCE topics at once when their wording changes, at most once per
``ratelimit`` when only their figures do. ``ratelimit`` 0: every change at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from twcmaster.outputs.console import green_lines
from twcmaster.outputs.views import energy_figures
from twcmaster.remote.commands import AUTO_POLICY

if TYPE_CHECKING:
    from twcmaster.config import AppConfig
    from twcmaster.core import SlaveSnapshot, Snapshot

__all__ = [
    "AMPS",
    "AT_ONCE",
    "AVAILABILITY",
    "ONLINE",
    "OFFLINE",
    "Rule",
    "SENTENCE",
    "SLAVE_KEYS",
    "SNAPSHOT_KEY",
    "VOLTS",
    "WATTS",
    "Value",
    "status_values",
]

AVAILABILITY = "availability"  # <prefix>/availability and <prefix>/<TWCID>/availability
ONLINE, OFFLINE = "online", "offline"
SNAPSHOT_KEY = "all/snapshot"
ON, OFF = "on", "off"


@dataclass(frozen=True)
class Rule:
    """How a topic is rate-limited. ``step`` (a number's unit) and ``relative`` (a share of
    the last value sent): a move of at least the larger of the two goes out at once."""

    name: str
    step: float = 0.0
    relative: float = 0.0

    def moved_enough(self, sent: float, now: float) -> bool:
        return abs(now - sent) >= max(self.step, self.relative * abs(sent))


AT_ONCE = Rule("at once")  # states, names, VINs, settings: every change matters
# Amps: 1 A. Offers are whole amps, a car steps its draw in ~0.5 A increments and the core
# reallocates on a 0.5 A move, so 1 A is a real change; the 0.01-0.3 A jitter of a charging
# car's reported draw each second is not.
AMPS = Rule("amps", step=1.0)
# Watts: 100 W or 5 %, whichever is larger. 100 W is ~0.43 A at 230 V, under the 1 A that
# can change an offer; 5 % keeps a 6 kW array under passing clouds (or a house load
# flickering) from publishing every second.
WATTS = Rule("watts", step=100.0, relative=0.05)
# Volts: 2 V. Mains wanders 1-2 V all the time; 2 V is still far below any sag that matters.
VOLTS = Rule("volts", step=2.0)
# Text with figures in it (the budget's reason): at once when the words change (another
# rule decides), within the rate limit when only the figures do.
SENTENCE = Rule("sentence")

_FIGURES = re.compile(r"-?\d+(?:\.\d+)?")


def wording(text: str) -> str:
    """``text`` without its figures: what SENTENCE compares."""
    return _FIGURES.sub("#", text)


class Value(NamedTuple):
    """One topic's payload now, the number it shows (for the thresholds) and its rule. (A
    named tuple: some ninety are made at every step; a tuple is the cheapest to make.)"""

    payload: str
    number: float | None
    rule: Rule


# The per-TWC keys, TWCManager's and ours (homeassistant.py describes each).
SLAVE_KEYS = (
    "ampsInUse",
    "ampsMax",
    "state",
    "ampsOffered",
    "ampsDesired",
    "carsCharging",
    "currentVehicleVIN",
    "lastVehicleVIN",
    "lifetimekWh",
    "voltagePhaseA",
    "voltagePhaseB",
    "voltagePhaseC",
    "chargerLoadInW",
    "stateName",
    "chargingAllowed",
    AVAILABILITY,
)


# --------------------------------------------------------------------------- payload texts


def float_text(value: float) -> str:
    """A float as TWCManager's ``str(float)`` shows it, to the centiamp: ``16.0``, ``15.94``."""
    return repr(round(float(value), 2) + 0.0)  # + 0.0: never "-0.0"


def number_text(value: float) -> str:
    """A whole value as an int (``32``), else as a float (``17.62``): TWCManager passes ints
    or floats depending on where the amps came from."""
    if float(value).is_integer():
        return str(int(value))
    return float_text(value)


def _number(value: float, rule: Rule, text: str | None = None) -> Value:
    return Value(text if text is not None else number_text(value), float(value), rule)


def _text(text: str, rule: Rule = AT_ONCE) -> Value:
    return Value(text, None, rule)


def _flag(on: bool) -> Value:
    return Value("1" if on else "0", None, AT_ONCE)


# --------------------------------------------------------------------------- the values


def status_values(snapshot: Snapshot, app: AppConfig) -> dict[str, Value]:
    """Every status topic (relative to the prefix) and its value now; the snapshot topic
    and ``availability`` are the publisher's own."""
    values: dict[str, Value] = {}
    values.update(_site_values(snapshot))
    values.update(_green_values(snapshot))
    values.update(_config_values(snapshot, app))
    for slave in snapshot.slaves:
        for key, value in slave_values(slave).items():
            values[f"{slave.twcid}/{key}"] = value
    return values


def _site_values(snapshot: Snapshot) -> dict[str, Value]:
    budget = snapshot.budget
    slaves = snapshot.slaves
    total = snapshot.total_actual_amps
    return {
        # TWCManager sums into an int 0, so with no TWC it says "0".
        "all/totalAmpsInUse": _number(total, AMPS, float_text(total) if slaves else "0"),
        "all/maxAmpsForSlaves": _number(budget.amps, AMPS),
        "all/currentPolicy": _text(budget.policy),
        "all/budgetReason": _text(budget.reason, SENTENCE),
        "all/greenEnergyText": _text(" ".join(green_lines(budget)), SENTENCE),
        "all/chargerLoadInW": _number(round(sum(s.charger_load_w for s in slaves)), WATTS),
        "all/readingStale": _flag(budget.stale),
        "all/busLinked": _flag(snapshot.link_up),
    }


def _green_values(snapshot: Snapshot) -> dict[str, Value]:
    """The site's figures (``views.energy_figures``); nothing for a stale bare reading."""
    figures = energy_figures(snapshot)
    if figures is None or figures.stale:
        return {}
    values = {
        "all/generationW": _number(round(figures.generation_w), WATTS),
        "all/consumptionW": _number(round(figures.consumption_w), WATTS),
        "all/surplusW": _number(round(figures.surplus_w), WATTS),
    }
    if figures.surplus_a is not None:
        values["all/surplusAmps"] = _number(figures.surplus_a, AMPS, float_text(figures.surplus_a))
    if figures.grid_w is not None:
        values["all/gridW"] = _number(round(figures.grid_w), WATTS)
    return values


def _config_values(snapshot: Snapshot, app: AppConfig) -> dict[str, Value]:
    values = {"config/minAmpsPerTWC": _number(app.min_amps_per_twc, AT_ONCE)}
    s = snapshot.settings
    if s is None:
        return values
    wiring = float(app.wiring.max_amps_all_twcs)
    # The numbers Home Assistant shows are the ones a press or the fixed rate would use.
    preset_amps, preset_s = s.charge_now_preset(wiring)
    fixed_amps, _ = s.fixed_rate(app.non_scheduled_amps_max, wiring)
    return values | {
        "config/policy": _text(s.forced_policy or AUTO_POLICY),
        "config/chargeNowAmps": _number(preset_amps, AT_ONCE),
        "config/chargeNowDuration": _number(preset_s, AT_ONCE),
        "config/nonScheduledAmpsMax": _number(fixed_amps, AT_ONCE),
        "config/nonScheduledAction": _number(s.non_scheduled_action, AT_ONCE),
    }


def slave_values(s: SlaveSnapshot) -> dict[str, Value]:
    """One TWC's topics (relative to ``<prefix>/<TWCID>/``)."""
    values = {
        "ampsInUse": _number(s.actual_amps, AMPS, float_text(s.actual_amps)),
        "ampsMax": _number(s.allowed_amps, AMPS, float_text(s.allowed_amps)),
        "state": _text(str(s.state)),
        "ampsOffered": _number(s.offer_amps, AMPS, str(int(s.offer_amps))),
        "ampsDesired": _number(s.desired_amps, AMPS),
        "carsCharging": _flag(s.car_charging),
        "currentVehicleVIN": _text(s.vin or ""),
        "lastVehicleVIN": _text(s.last_vin or ""),
        "chargerLoadInW": _number(int(s.charger_load_w), WATTS),
        "stateName": _text(s.state_name),
        "chargingAllowed": _text(ON if s.charging_allowed else OFF),
        AVAILABILITY: _text(ONLINE),
    }
    if s.lifetime_kwh is not None:
        values["lifetimekWh"] = _number(s.lifetime_kwh, AT_ONCE)
    if s.voltages is not None:
        for phase, volts in zip("ABC", s.voltages, strict=True):
            values[f"voltagePhase{phase}"] = _number(volts, VOLTS)
    return values
