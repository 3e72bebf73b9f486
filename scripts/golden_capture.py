"""Before/after evidence for a refactor that must not change behaviour.

Runs simulated days in virtual time (the shipped profiles with six variants each, the
measured days in ../shared/data/profiles when present, and half an hour of the demo's own
circuit, sky and cars) and writes, per run, its figures (``NAME.json``, without wall time)
and every console line the daemon would print (``NAME.console``). Capture on the old commit,
capture on the new one, then ``diff -r BEFORE AFTER`` must print nothing.

    .venv/bin/python scripts/golden_capture.py OUT_DIR [--quick]

About five minutes on two cores for all 22 runs (``--quick``: the demo and one profile).
"""

from __future__ import annotations

import argparse
import io
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from twcmaster import simulate as S
from twcmaster.config import config_from_dict
from twcmaster.demo import DEMO_CONFIG, DEMO_SKY_START_S
from twcmaster.outputs.console import ConsoleStatus
from twcmaster.sim.sky import Outage, Sky, builtin_profile, load_profile

REPO = Path(__file__).resolve().parent.parent
MEASURED = REPO.parent / "shared" / "data" / "profiles"
VARIANTS: dict[str, dict] = {
    "default": {},
    "2slaves": {"slaves": 2},
    "p1": {"protocol": 1},
    "nocarapi": {"car_api": False},
    "stale": {"outages": [Outage(12 * 3600, 12 * 3600 + 600)]},
    "rules": {"policy_name": "rules"},
}


def _capture(sim: S.DaySimulation) -> tuple[str, str]:
    lines = io.StringIO()
    sim.attach_console(
        ConsoleStatus(lines, clock=lambda: sim.now, wallclock=sim._wallclock, amps_jitter_a=1.0)
    )
    figures = sim.run().to_dict()
    figures.pop("wall_time_s")
    return json.dumps(figures, indent=1), lines.getvalue()


def run(job: tuple[str, str]) -> tuple[str, str, str]:
    kind, arg = job
    if kind == "demo":
        config = config_from_dict(DEMO_CONFIG, "/tmp").settings
        start = DEMO_SKY_START_S
        sim = S.DaySimulation(
            config, Sky(builtin_profile()), slaves=2, seed=int(arg), start_s=start,
            end_s=start + 1800,
        )  # fmt: skip
        return (f"demo.seed{arg}", *_capture(sim))
    options = dict(VARIANTS[arg])
    sky = Sky(load_profile(kind), outages=options.pop("outages", ()))
    sim = S.DaySimulation(S.simulation_config().settings, sky, seed=1, **options)
    return (f"{Path(kind).stem}.{arg}", *_capture(sim))


def jobs(quick: bool) -> list[tuple[str, str]]:
    shipped = sorted(str(p) for p in (REPO / "profiles").glob("*.csv"))
    measured = sorted(str(p) for p in MEASURED.glob("*.csv")) if MEASURED.is_dir() else []
    found = [("demo", "3"), ("demo", "7")]
    found += [(p, v) for p in shipped for v in VARIANTS]
    found += [(p, "default") for p in measured]
    return found[:8] if quick else found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    with ProcessPoolExecutor(2) as pool:
        for name, figures, console in pool.map(run, jobs(args.quick)):
            Path(args.out, f"{name}.json").write_text(figures)
            Path(args.out, f"{name}.console").write_text(console)
            print(f"{name}: {console.count(chr(10))} console lines", flush=True)


if __name__ == "__main__":
    main()
