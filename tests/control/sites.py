"""Readings for the policy tests: the real ``SiteReading`` the sources runner and the sky
produce, with defaults for what a test does not care about."""

from twcmaster.control.green import SiteReading


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
