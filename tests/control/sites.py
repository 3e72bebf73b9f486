"""Inputs for the policy tests: the real ``SiteReading`` the sources runner and the sky
produce, and a ``PolicyConfig``, with defaults for what a test does not care about."""

from dataclasses import replace

from twcmaster.control.green import SiteReading
from twcmaster.control.policy import PolicyConfig

V = 230.0  # volts of every test site


def policy_config(**changes) -> PolicyConfig:
    """Anti-flap timers explicit and short; each test sets what it is about."""
    base = PolicyConfig(
        wiring_max_amps_all_twcs=32,
        min_amps_per_twc=6,
        default_voltage_v=V,
        start_delay_s=30,
        min_on_time_s=0,
        min_off_time_s=0,
    )
    return replace(base, **changes)


def make_site(
    generation_w: float,
    consumption_w: float,
    grid_w: float | None = None,
    voltage_v: float | None = None,
    at_s: float = 0.0,
    stale: bool = False,
    reason: str = "",
    sources: tuple[str, ...] = ("test",),
) -> SiteReading:
    return SiteReading(generation_w, consumption_w, grid_w, voltage_v, at_s, stale, reason, sources)
