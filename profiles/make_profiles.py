"""Write the shipped day profiles for ``twcmaster simulate`` (reproducible: seeded).

    python profiles/make_profiles.py [--out profiles] [--check]

Both days are one site: 6.2 kWp on a 30 degree south-facing roof behind a 5 kW inverter fed
into one phase at 230 V, in southern Germany in late May, and a family home (standby,
fridge, a heat pump for hot water, kettle, coffee machine, oven and hob, laundry,
dishwasher, home office). Rows are 1 s apart; a row is left out when nothing changed since
the previous one (values hold until the next row).

- ``clear-day.csv``: a cloudless day; the PV follows the sun's bell curve (clipping at the
  inverter's 5 kW around noon) with a little haze and MPPT jitter; the household load is
  as spiky as on any day.
- ``cloudy-day.csv``: fair-weather cumulus from mid-morning to early evening: shadows that
  cut the PV by 60-80 % within a few seconds and lift again after 20 s to a few minutes,
  brief over-irradiance at cloud edges, and four minutes-long dips (cloud clusters).

The model (sun position, clear-sky irradiance, cloud statistics, appliances) lives in
``twcmaster/sim/sky.py`` and also makes the demo's built-in day; the seeds are
``sky.CLEAR_DAY`` and ``sky.CLOUDY_DAY``. ``--check`` regenerates in memory and fails if a
shipped file differs.
"""

from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # run from a source checkout without installing

from twcmaster.sim import sky  # noqa: E402

PROFILES = {
    "clear-day.csv": (sky.CLEAR_DAY, "clear day"),
    "cloudy-day.csv": (sky.CLOUDY_DAY, "cumulus day"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=HERE, help="folder to write to (default: this one)")
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    status = 0
    for filename, (model, name) in PROFILES.items():
        profile = sky.synthesize_day(model, name=name)
        text = sky.profile_csv(profile)
        path = os.path.join(args.out, filename)
        generation, consumption, surplus = profile.energy_kwh()
        summary = (
            f"{len(profile.times_s)} rows, {len(text) / 1e6:.2f} MB, generation "
            f"{generation:.1f} kWh, consumption {consumption:.1f} kWh, surplus {surplus:.1f} kWh"
        )
        if args.check:
            with open(path, encoding="utf-8") as handle:
                same = handle.read() == text
            print(f"{path}: {'up to date' if same else 'DIFFERS from the generator'}")
            status |= not same
            continue
        with open(path, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        print(f"{path}: {summary}")
    return status


if __name__ == "__main__":
    sys.exit(main())
