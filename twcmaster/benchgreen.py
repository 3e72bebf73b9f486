"""``make bench-green``: every measured day in ``profiles/`` x 1, 2 and 3 cars through ``simulate``.

Each run is ``twcmaster.simulate.simulate`` with the built-in circuit (230 V, 1 phase, 32 A,
6 A floor, Track Green Energy): the real ``Core`` against simulated TWCs with cars, in virtual
time. The days are the eight measured ones, the files ``profiles/build_measured_profiles.py``
lists in its ``PROFILES`` (the synthetic ``clear-day``/``cloudy-day`` are left out). Prints one
table: capture (from surplus / ideal), import share, starts per car (the most any car made and
the total), the clairvoyant bound at the run's total starts and the distance to it, the CPU
seconds of the run, and whether the run meets issue 12's targets (capture >= 97 %, <= 6 starts
per car, import <= 2 points above the bound).

    python -m twcmaster.benchgreen [--cars 1,2,3] [--days SUBSTRING ...] [--jobs 2]
                                   [--json FILE] [--set KEY=VALUE ...]

``--set greenEnergyHoldGrowth=1.6`` runs with a ``config`` key of config.json changed (the
value read as JSON, else as text; repeatable), for sweeps over the tunable keys.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import multiprocessing
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

PROFILES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "profiles")
#: Issue 12's "done when" for each run.
TARGET_CAPTURE = 0.97
TARGET_STARTS_PER_CAR = 6
TARGET_DISTANCE_PP = 2.0


def measured_days(profiles_dir: str = PROFILES_DIR) -> list[str]:
    """The measured days' paths: the files the rebuild script writes, sorted by name."""
    script = os.path.join(profiles_dir, "build_measured_profiles.py")
    spec = importlib.util.spec_from_file_location("_build_measured_profiles", script)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    names = sorted(entry[0] for entry in module.PROFILES)
    return [os.path.join(profiles_dir, name) for name in names]


@dataclass(frozen=True)
class Row:
    day: str
    cars: int
    capture: float | None  # from surplus / ideal
    import_share: float | None
    car_starts: tuple[int, ...]
    bound_share: float | None
    plan_share: float | None
    distance_pp: float | None
    cpu_s: float

    @property
    def ok(self) -> bool:
        return (
            self.capture is not None
            and self.capture >= TARGET_CAPTURE
            and max(self.car_starts, default=0) <= TARGET_STARTS_PER_CAR
            and self.distance_pp is not None
            and self.distance_pp <= TARGET_DISTANCE_PP
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "day": self.day,
            "cars": self.cars,
            "capture": _round(self.capture),
            "import_share": _round(self.import_share),
            "car_starts": list(self.car_starts),
            "starts_max_per_car": max(self.car_starts, default=0),
            "starts_total": sum(self.car_starts),
            "bound_import_share": _round(self.bound_share),
            "plan_import_share": _round(self.plan_share),
            "distance_pp": None if self.distance_pp is None else round(self.distance_pp, 2),
            "cpu_s": round(self.cpu_s, 2),
            "meets_targets": self.ok,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def bench_config(overrides: dict[str, Any]) -> Any:
    """The built-in simulation config with ``overrides`` in its ``config`` section (checked
    as config.json is: a ``ConfigError`` names a bad key)."""
    from twcmaster.config import config_from_dict
    from twcmaster.simulate import REFERENCE_CONFIG

    document = copy.deepcopy(REFERENCE_CONFIG)
    document["config"].update(overrides)
    return config_from_dict(document, tempfile.gettempdir()).settings


def parse_override(text: str) -> tuple[str, Any]:
    """``KEY=VALUE``: the value as JSON (numbers, true/false, lists), else as text."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--set {text!r}: expected KEY=VALUE, e.g. greenEnergyHoldWh=20")
    try:
        return key.strip(), json.loads(raw)
    except json.JSONDecodeError:
        return key.strip(), raw


def run_one(job: tuple[str, int, dict[str, Any]]) -> Row:
    """One day with ``cars`` TWCs (each with a car), timed in this process's CPU seconds."""
    from twcmaster.sim.sky import load_profile
    from twcmaster.simulate import simulate

    path, cars, overrides = job
    profile = load_profile(path)
    config = bench_config(overrides)
    cpu_start = time.process_time()
    result = simulate(config, profile, slaves=cars)
    cpu_s = time.process_time() - cpu_start
    bound = result.bound
    share = result.grid_import_share
    return Row(
        day=os.path.splitext(os.path.basename(path))[0],
        cars=cars,
        capture=result.ratio_to_ideal,
        import_share=share,
        car_starts=result.car_starts,
        bound_share=None if bound is None else bound.import_share,
        plan_share=None if bound is None else bound.plan_import_share,
        distance_pp=None if bound is None else bound.distance_pp(share),
        cpu_s=cpu_s,
    )


def _pct(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value * 100:.{digits}f}"


def table(rows: list[Row]) -> str:
    head = [
        "day", "cars", "surplus/ideal %", "import %", "starts max/car", "starts total",
        "bound %", "distance pp", "CPU s", "targets",
    ]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [
            row.day,
            str(row.cars),
            _pct(row.capture),
            _pct(row.import_share),
            str(max(row.car_starts, default=0)),
            str(sum(row.car_starts)),
            _pct(row.bound_share, 2),
            "n/a" if row.distance_pp is None else f"{row.distance_pp:.2f}",
            f"{row.cpu_s:.1f}",
            "ok" if row.ok else "missed",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    met = sum(row.ok for row in rows)
    cpu = sum(row.cpu_s for row in rows)
    lines.append("")
    lines.append(
        f"{met}/{len(rows)} runs meet the targets (capture >= {TARGET_CAPTURE:.0%}, "
        f"<= {TARGET_STARTS_PER_CAR} starts per car, import <= {TARGET_DISTANCE_PP:g} points "
        f"above the bound); {cpu:.1f} CPU s in all"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m twcmaster.benchgreen", description=__doc__)
    parser.add_argument("--cars", default="1,2,3", help="car counts, comma-separated (1-6)")
    parser.add_argument(
        "--days", nargs="*", default=(), metavar="SUBSTRING",
        help="only the measured days whose file name contains one of these",
    )  # fmt: skip
    parser.add_argument(
        "--jobs", type=int, default=min(2, os.cpu_count() or 1), help="processes (default 2)"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON to FILE")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
        help="a config.json 'config' key for every run (repeatable)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    from twcmaster.config import ConfigError

    try:
        overrides = dict(parse_override(text) for text in args.overrides)
        bench_config(overrides)  # a bad key or value stops here, named
    except (ValueError, ConfigError) as exc:
        parser.error(str(exc))
    try:
        cars = [int(text) for text in args.cars.split(",")]
    except ValueError:
        parser.error(f"--cars {args.cars!r}: expected e.g. 1,2,3")
    if not cars or not all(1 <= n <= 6 for n in cars):
        parser.error("--cars: each count must be 1 to 6")
    days = measured_days()
    if args.days:
        days = [d for d in days if any(s in os.path.basename(d) for s in args.days)]
        if not days:
            parser.error(f"--days {' '.join(args.days)}: no measured day matches")
    # The longest runs (most cars) first, so the processes finish together.
    jobs = sorted(((d, n, overrides) for d in days for n in cars), key=lambda job: -job[1])
    wall_start = time.perf_counter()
    if args.jobs > 1:
        with multiprocessing.Pool(args.jobs) as pool:
            rows = pool.map(run_one, jobs, chunksize=1)
    else:
        rows = [run_one(job) for job in jobs]
    rows.sort(key=lambda row: (row.day, row.cars))
    if overrides:
        print("with " + ", ".join(f"{k}={json.dumps(v)}" for k, v in overrides.items()))
    print(table(rows))
    print(f"wall {time.perf_counter() - wall_start:.1f} s with {args.jobs} process(es)")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump([row.to_dict() for row in rows], handle, indent=1)
            handle.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
