"""``twcmaster simulate``: the command line of the day simulator (``simulate.py``).

Reads the options (the profile, ``--policy``, ``--slaves``, ``--stale FROM-TO`` outages ...),
names anything wrong in them, runs the simulation and prints its summary or one JSON object.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence
from typing import Any

from twcmaster.config import LoadedConfig
from twcmaster.sim.sky import Outage, ProfileError, load_profile
from twcmaster.simulate import (
    RULES,
    QuietLog,
    format_json,
    make_policy,
    policy_choice,
    simulate,
    simulation_config,
)


def parse_clock_s(text: str) -> float:
    """Seconds from midnight: ``43200``, ``12:00`` or ``12:00:30``."""
    text = text.strip()
    if ":" not in text:
        value = float(text)
    else:
        parts = [float(p) for p in text.split(":")]
        if len(parts) > 3:
            raise ValueError(text)
        value = sum(p * 60 ** (2 - i) for i, p in enumerate(parts + [0.0] * (3 - len(parts))))
    if not math.isfinite(value) or value < 0:
        raise ValueError(text)
    return value


def parse_outage(text: str) -> Outage:
    """``--stale FROM-TO`` (seconds of the day or HH:MM[:SS]) as an ``Outage``."""
    start, sep, end = text.partition("-")
    try:
        if not sep:
            raise ValueError(text)
        outage = Outage(parse_clock_s(start), parse_clock_s(end))
    except ValueError:
        raise ValueError(
            f"--stale {text!r}: expected FROM-TO, in seconds of the day or HH:MM[:SS] "
            "(e.g. 12:00-12:10)"
        ) from None
    if outage.end_s <= outage.start_s:
        raise ValueError(f"--stale {text!r}: the end must come after the start")
    return outage


def run_command(
    profile_path: str,
    loaded: LoadedConfig | None,
    *,
    as_json: bool = False,
    policy: str | None = None,
    slaves: int = 1,
    protocol: int = 2,
    car_api: bool = True,
    tesla: bool = False,
    stale: Sequence[str] = (),
    console: bool = False,
    out: Any = None,
    err: Any = None,
) -> int:
    """``twcmaster simulate``: 0 on success, 2 for bad input (reported on ``err``)."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        policy_name = policy_choice(policy)
        outages = [parse_outage(text) for text in stale]
        profile = load_profile(profile_path)
    except (ValueError, ProfileError) as exc:
        print(f"twcmaster: {exc}", file=err)
        return 2
    if tesla and not car_api:
        print("twcmaster: --tesla and --no-car-api contradict each other", file=err)
        return 2
    if not 1 <= slaves <= 6:
        print("twcmaster: --slaves must be 1 to 6", file=err)
        return 2
    loaded = loaded or simulation_config()
    store = None
    if policy_name == RULES and loaded.path is not None:
        from twcmaster.settings import SETTINGS_FILE_NAME, SettingsStore

        store = SettingsStore(
            os.path.join(loaded.settings.settings_path, SETTINGS_FILE_NAME),
            log=QuietLog(),
            wiring_max_amps_all_twcs=loaded.settings.wiring.max_amps_all_twcs,
        )
    policy_engine, name = make_policy(loaded.settings, policy_name, store)
    progress = None
    if not as_json and getattr(err, "isatty", lambda: False)():

        def progress(t_s: float) -> None:
            end = "\n" if t_s >= profile.end_s else ""
            print(f"\r  simulated {t_s / 3600:5.2f} h", end=end, file=err, flush=True)

    result = simulate(
        loaded.settings,
        profile,
        slaves=slaves,
        policy=policy_engine,
        policy_name=name,
        protocol=protocol,
        car_api=car_api,
        tesla=tesla,
        outages=outages,
        progress=progress,
        console=out if console else None,
    )
    print(format_json(result) if as_json else result.summary(), file=out, flush=True)
    return 0
