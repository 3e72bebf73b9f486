"""Policy: how many amps in total the chargers may use right now, and why.

This issue's policy is TWCManager's non-scheduled "charge at a fixed rate": the budget is
``nonScheduledAmpsMax`` when configured, else the all-TWC wiring limit. Green energy, schedules
and charge-now come in as further policies with the same ``decide`` interface.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    amps: float  # total amps the controller may share among the slaves
    policy: str  # TWCManager's policy name, shown in the status and published over MQTT
    reason: str  # one human sentence: why this many amps


@dataclass(frozen=True)
class FixedBudget:
    """Non-Scheduled Charging at a fixed rate."""

    amps: float
    reason: str

    def decide(self, now_s: float) -> Budget:
        return Budget(self.amps, "Non Scheduled Charging", self.reason)


def fixed_budget_from_config(
    non_scheduled_amps_max: float | None, wiring_max_amps_all_twcs: float
) -> FixedBudget:
    if non_scheduled_amps_max is not None:
        amps = min(non_scheduled_amps_max, wiring_max_amps_all_twcs)
        return FixedBudget(amps, f"fixed rate: nonScheduledAmpsMax {amps:g}A")
    return FixedBudget(
        wiring_max_amps_all_twcs,
        f"fixed rate: wiringMaxAmpsAllTWCs {wiring_max_amps_all_twcs:g}A",
    )
