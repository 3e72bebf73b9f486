"""The sun and the household: a day of site power for the simulator, the demo and the tests.

A **profile** is a day of site power in watts, as rows of ``timestamp_s,generation_w,
consumption_w``: seconds from the start of the day (local midnight), the PV output, and the
household load *without* the chargers. A row's values hold until the next row (a step
function, like a meter polled at that instant), and the last row's values hold for as long
as the interval before it (so 1 s rows from 0 to 86 399 cover the whole day, 0 .. 86 400 s).

``load_profile(path)`` reads such a CSV and names the line and column of anything wrong.
A ``Sky`` answers ``site_at(t_s) -> (generation_w, consumption_w)`` and makes the
``SiteReading`` the policy consumes, fresh unless ``t_s`` falls in an injected outage (to
exercise the fail-safe path).

The same model makes the shipped profiles (``profiles/make_profiles.py``) and the demo's
built-in day (``builtin_profile()``): a clear-sky PV curve from the sun's position, cumulus
shadows drawn from seeded cloud statistics, and a household of appliances that switch on and
off. Pure Python and seeded: the same seed gives the same day, byte for byte.
"""

from __future__ import annotations

import bisect
import csv
import dataclasses
import functools
import io
import math
import os
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from twcmaster.control.green import SiteReading

PROFILE_COLUMNS = ("timestamp_s", "generation_w", "consumption_w")
SECONDS_PER_DAY = 86_400
SOURCE_NAME = "sky"  # what a reading names as its source
_SKY_SOURCES = (SOURCE_NAME,)


# --- profiles ----------------------------------------------------------------------------------


class ProfileError(ValueError):
    """A profile file that cannot be used; the message names the file, line and column."""

    def __init__(self, source: str, message: str, line: int | None = None, column: str = ""):
        self.source = source
        self.line = line
        self.column = column
        self.message = message
        where = source if line is None else f"{source}, line {line}"
        if column:
            where += f", column {column}"
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class Profile:
    """Site power as a step function: ``times_s[i]``'s values hold until ``times_s[i + 1]``,
    the last ones until ``end_s``. Before the first row the first row's values apply."""

    times_s: tuple[float, ...]
    generation_w: tuple[float, ...]
    consumption_w: tuple[float, ...]
    end_s: float
    name: str = "profile"
    #: What the loader had to read leniently (gaps, negative watts), for the run's warnings.
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        count = len(self.times_s)
        if count == 0:
            raise ValueError("a profile needs at least one row")
        if len(self.generation_w) != count or len(self.consumption_w) != count:
            raise ValueError("times_s, generation_w and consumption_w differ in length")
        if any(b <= a for a, b in zip(self.times_s, self.times_s[1:], strict=False)):
            raise ValueError("times_s must increase")
        if self.end_s <= self.times_s[-1]:
            raise ValueError("end_s must come after the last row")

    @classmethod
    def from_rows(
        cls,
        rows: Iterable[tuple[float, float, float]],
        *,
        end_s: float | None = None,
        name: str = "profile",
    ) -> Profile:
        """From ``(timestamp_s, generation_w, consumption_w)`` rows; ``end_s`` defaults to the
        last row plus the interval before it (1 s for a single row)."""
        rows = list(rows)
        times = tuple(float(r[0]) for r in rows)
        if end_s is None:
            end_s = default_end_s(times)
        return cls(
            times,
            tuple(float(r[1]) for r in rows),
            tuple(float(r[2]) for r in rows),
            float(end_s),
            name,
        )

    @property
    def start_s(self) -> float:
        return self.times_s[0]

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def index_at(self, t_s: float) -> int:
        """The row in force at ``t_s`` (the first before the start, the last after the end)."""
        return max(0, bisect.bisect_right(self.times_s, t_s) - 1)

    def at(self, t_s: float) -> tuple[float, float]:
        i = self.index_at(t_s)
        return self.generation_w[i], self.consumption_w[i]

    def next_change_s(self, t_s: float) -> float | None:
        """The next row's time after ``t_s`` (None: no row after it)."""
        i = bisect.bisect_right(self.times_s, t_s)
        return self.times_s[i] if i < len(self.times_s) else None

    def segments(self) -> Iterator[tuple[float, float, float, float]]:
        """``(start_s, end_s, generation_w, consumption_w)`` for each row."""
        times = self.times_s
        ends = (*times[1:], self.end_s)
        yield from zip(times, ends, self.generation_w, self.consumption_w, strict=True)

    def energy_kwh(self) -> tuple[float, float, float]:
        """Generation, consumption and surplus (sum of positive generation - consumption)."""
        gen = cons = surplus = 0.0
        for start, end, g, c in self.segments():
            dt = end - start
            gen += g * dt
            cons += c * dt
            surplus += max(0.0, g - c) * dt
        return gen / 3.6e6, cons / 3.6e6, surplus / 3.6e6


def default_end_s(times_s: Sequence[float]) -> float:
    if len(times_s) >= 2:
        return times_s[-1] + (times_s[-1] - times_s[-2])
    return times_s[-1] + 1.0


def parse_profile(lines: Iterable[str], source: str = "<profile>") -> Profile:
    """Read CSV text (header ``timestamp_s,generation_w,consumption_w``; other columns are
    ignored). Timestamps are seconds >= 0 and must increase; watts are numbers.

    Measured data is read leniently where the meaning is clear, and each case is noted in
    ``Profile.notes``: an empty or NaN watt value is a gap in the logging, and the previous
    row's value holds (0 before the first); a negative watt value (an inverter's standby draw
    at night, a rounding below 0) counts as 0. Text that is no number is an error."""
    reader = csv.reader(lines)
    header: list[str] | None = None
    for header in reader:
        if any(cell.strip() for cell in header):
            break
    else:
        raise ProfileError(source, "empty file: expected the header " + ",".join(PROFILE_COLUMNS))
    names = [cell.strip().lstrip("\ufeff").lower() for cell in header]
    line = reader.line_num
    missing = [name for name in PROFILE_COLUMNS if name not in names]
    if missing:
        raise ProfileError(
            source,
            f"the header lacks {', '.join(missing)}: expected "
            f"{','.join(PROFILE_COLUMNS)}, found {','.join(c.strip() for c in header)}",
            line,
        )
    index = [names.index(name) for name in PROFILE_COLUMNS]
    width = max(index) + 1
    times: list[float] = []
    gens: list[float] = []
    conss: list[float] = []
    gaps = {PROFILE_COLUMNS[1]: 0, PROFILE_COLUMNS[2]: 0}
    negatives = dict(gaps)
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue  # blank line
        if len(row) < width:
            column = PROFILE_COLUMNS[[i < len(row) for i in index].index(False)]
            raise ProfileError(
                source, f"{len(row)} value(s), expected at least {width}", line, column
            )
        t = _seconds(row[index[0]], source, line, PROFILE_COLUMNS[0])
        if times and t <= times[-1]:
            raise ProfileError(
                source,
                f"{t:g} does not come after the previous row's {times[-1]:g}: "
                "timestamps must increase",
                line,
                PROFILE_COLUMNS[0],
            )
        times.append(t)
        for column, values, cell in (
            (PROFILE_COLUMNS[1], gens, row[index[1]]),
            (PROFILE_COLUMNS[2], conss, row[index[2]]),
        ):
            watts = _watts(cell, source, line, column)
            if watts is None:
                gaps[column] += 1
                watts = values[-1] if values else 0.0
            elif watts < 0:
                negatives[column] += 1
                watts = 0.0
            values.append(watts)
    if not times:
        raise ProfileError(source, "no data rows after the header")
    notes = tuple(
        [
            f"{n} empty/NaN {column} value(s): the previous value held"
            for column, n in gaps.items()
            if n
        ]
        + [f"{n} negative {column} value(s) read as 0" for column, n in negatives.items() if n]
    )
    name = os.path.splitext(os.path.basename(source))[0] if source != "<profile>" else source
    return Profile(tuple(times), tuple(gens), tuple(conss), default_end_s(times), name, notes)


def _watts(text: str, source: str, line: int, column: str) -> float | None:
    """A watt value, or None for a gap (empty or NaN)."""
    cell = text.strip()
    if not cell or cell.lower() in ("null", "none", "na", "n/a", "-"):
        return None
    value = _float(cell, source, line, column)
    return None if math.isnan(value) else value


def _seconds(text: str, source: str, line: int, column: str) -> float:
    cell = text.strip()
    value = _float(cell, source, line, column)
    if math.isnan(value):
        raise ProfileError(source, f"{cell!r} is not a finite number", line, column)
    if value < 0:
        raise ProfileError(source, f"{cell} is negative: expected seconds >= 0", line, column)
    return value


def _float(cell: str, source: str, line: int, column: str) -> float:
    """The number in ``cell`` (NaN passes: the caller decides); text or infinity is an error."""
    try:
        value = float(cell)
    except ValueError:
        shown = repr(cell) if cell else "an empty value"
        raise ProfileError(source, f"{shown} is not a number", line, column) from None
    if math.isinf(value):
        raise ProfileError(source, f"{cell!r} is not a finite number", line, column)
    return value


def load_profile(path: str | os.PathLike) -> Profile:
    """Read a profile CSV; ``ProfileError`` names the line and column of any problem."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            return parse_profile(handle, source=path)
    except FileNotFoundError:
        raise ProfileError(path, "no such file") from None
    except UnicodeDecodeError as exc:
        raise ProfileError(path, f"not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise ProfileError(path, f"cannot read the file: {exc.strerror or exc}") from None
    except csv.Error as exc:
        raise ProfileError(path, f"not valid CSV: {exc}") from None


def profile_csv(profile: Profile) -> str:
    """The profile as CSV text (integer watts and seconds where they are whole)."""
    out = io.StringIO()
    out.write(",".join(PROFILE_COLUMNS) + "\n")
    for t, g, c in zip(profile.times_s, profile.generation_w, profile.consumption_w, strict=True):
        out.write(f"{_fmt(t)},{_fmt(g)},{_fmt(c)}\n")
    return out.getvalue()


def _fmt(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"


# --- the sky -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outage:
    """``start_s <= t < end_s``: the energy source gives no reading (the policy sees stale)."""

    start_s: float
    end_s: float


class Sky:
    """A profile seen as an energy source.

    ``site_at(t_s)`` is the truth (what the simulator accounts with); ``reading(t_s)`` is
    what the policy gets: a ``SiteReading`` from one source named ``sky`` that measures
    generation and consumption (no grid meter), fresh, except during an ``Outage``, where it
    is stale with no contributing source, as ``SourceRunner.combined`` reports a source
    that stopped answering. ``sample_interval_s > 0`` makes it a polled source: the reading
    holds the values sampled at the last multiple of the interval (TWCManager caches most
    sources for 10 s). ``wrap=True`` repeats the profile (for the demo's endless day).
    """

    def __init__(
        self,
        profile: Profile,
        *,
        voltage_v: float | None = None,
        outages: Iterable[Outage] = (),
        sample_interval_s: float = 0.0,
        wrap: bool = False,
    ) -> None:
        self.profile = profile
        self.voltage_v = voltage_v
        self.outages = tuple(sorted(outages, key=lambda o: o.start_s))
        self.sample_interval_s = sample_interval_s
        self.wrap = wrap
        # (profile, from_s, until_s, (generation_w, consumption_w)): see site_at
        self._row: tuple[Profile, float, float, tuple[float, float]] | None = None

    def _profile_time(self, t_s: float) -> float:
        if self.wrap:
            start = self.profile.start_s
            return start + (t_s - start) % self.profile.duration_s
        return t_s

    def site_at(self, t_s: float) -> tuple[float, float]:
        """``(generation_w, consumption_w)`` at ``t_s`` (consumption without the chargers)."""
        t_s = self._profile_time(t_s)
        # The simulator asks several times a second and a row holds for a minute: the row
        # last found is kept with the times it covers.
        row = self._row
        if row is not None and row[0] is self.profile and row[1] <= t_s < row[2]:
            return row[3]
        profile = self.profile
        i = profile.index_at(t_s)
        times = profile.times_s
        from_s = times[i] if i > 0 else -math.inf
        until_s = times[i + 1] if i + 1 < len(times) else math.inf
        values = (profile.generation_w[i], profile.consumption_w[i])
        self._row = (profile, from_s, until_s, values)
        return values

    def surplus_w(self, t_s: float) -> float:
        generation_w, consumption_w = self.site_at(t_s)
        return max(0.0, generation_w - consumption_w)

    def outage_at(self, t_s: float) -> Outage | None:
        for outage in self.outages:
            if outage.start_s <= t_s < outage.end_s:
                return outage
        return None

    def reading(self, t_s: float) -> SiteReading:
        """What the policy sees at ``t_s``."""
        outage = self.outage_at(t_s) if self.outages else None
        if outage is not None:
            silent_s = t_s - outage.start_s
            reason = f"{SOURCE_NAME}: simulated outage, no reading for {silent_s:.0f} s"
            return SiteReading(0.0, 0.0, None, None, t_s, True, reason, ())
        at_s = t_s
        if self.sample_interval_s > 0:
            at_s = math.floor(t_s / self.sample_interval_s) * self.sample_interval_s
        generation_w, consumption_w = self.site_at(at_s)
        # generation, consumption, no grid meter, voltage, at_s, fresh, no reason, sources
        # (positional: this runs at every step of the simulated daemon)
        return SiteReading(
            generation_w, consumption_w, None, self.voltage_v, at_s, False, "", _SKY_SOURCES
        )

    def clocked(
        self, origin_s: float, *, start_s: float = 0.0, speed: float = 1.0
    ) -> Callable[[float], SiteReading]:
        """A ``Daemon(site=...)`` callable for a real-time loop: loop time ``origin_s`` is
        profile time ``start_s``, and the profile runs ``speed`` times faster than the loop.
        The readings' ``at_s`` is on the loop's clock, as the policy expects."""

        def site(now_s: float) -> SiteReading:
            t_s = start_s + (now_s - origin_s) * speed
            reading = self.reading(t_s)
            return dataclasses.replace(reading, at_s=now_s - (t_s - reading.at_s) / speed)

        return site


# --- the model behind the shipped profiles -----------------------------------------------------


@dataclass(frozen=True)
class PVSystem:
    """A small rooftop system fed into one phase. Defaults: 6.2 kWp on a 30 degree
    south-facing roof behind a 5 kW single-phase inverter, in southern Germany in late May."""

    peak_kw: float = 6.2  # STC DC rating
    inverter_kw: float = 5.0  # AC limit: output clips above it
    tilt_deg: float = 30.0  # south-facing
    latitude_deg: float = 48.1
    day_of_year: int = 145  # 25 May: sunrise ~05:25, sunset ~21:05 local summer time
    solar_noon_s: float = 13 * 3600 + 15 * 60  # local clock (CEST at 11.6 deg E)
    system_loss: float = 0.12  # wiring, mismatch, soiling, inverter
    temp_coeff_per_c: float = -0.004  # power vs cell temperature
    ambient_c: float = 20.0
    noise: float = 0.004  # MPPT / measurement jitter, fraction of output (1 sigma)


def clear_sky_poa(t_s: float, pv: PVSystem) -> tuple[float, float]:
    """Plane-of-array irradiance (W/m2) at local time ``t_s`` under a clear sky, split into
    its beam and diffuse parts. Sun position from declination and hour angle; beam from
    Meinel's air-mass model (Kasten-Young air mass); isotropic diffuse plus ground albedo."""
    lat = math.radians(pv.latitude_deg)
    tilt = math.radians(pv.tilt_deg)
    decl = math.radians(23.44) * math.sin(2 * math.pi * (284 + pv.day_of_year) / 365)
    hour_angle = math.radians(15.0 * (t_s - pv.solar_noon_s) / 3600)
    cos_zenith = math.sin(lat) * math.sin(decl) + math.cos(lat) * math.cos(decl) * math.cos(
        hour_angle
    )
    if cos_zenith <= 0.0:
        return 0.0, 0.0
    zenith_deg = math.degrees(math.acos(cos_zenith))
    air_mass = 1.0 / (cos_zenith + 0.50572 * (96.07995 - zenith_deg) ** -1.6364)
    dni = 1353.0 * 0.7 ** (air_mass**0.678)
    dhi = 0.11 * dni + 15.0 * cos_zenith  # a clear sky's diffuse share
    ghi = dni * cos_zenith + dhi
    # Angle of incidence on a south-facing plane tilted by ``tilt`` (equator-facing).
    cos_incidence = math.sin(decl) * math.sin(lat - tilt) + math.cos(decl) * math.cos(
        lat - tilt
    ) * math.cos(hour_angle)
    beam = dni * max(0.0, cos_incidence)
    diffuse = dhi * (1 + math.cos(tilt)) / 2 + 0.2 * ghi * (1 - math.cos(tilt)) / 2
    # Near the horizon the atmosphere and the neighbours' roofs take most of it.
    horizon = min(1.0, max(0.0, (90.0 - zenith_deg) / 6.0))
    return beam * horizon, diffuse * horizon


def pv_output_w(poa_w_m2: float, pv: PVSystem) -> float:
    """AC output for a plane-of-array irradiance: DC from the rating, cell temperature
    derating (NOCT-like rise), losses, then the inverter's limit and its start threshold."""
    if poa_w_m2 <= 0.0:
        return 0.0
    cell_c = pv.ambient_c + 0.03 * poa_w_m2
    dc_w = pv.peak_kw * 1000 * poa_w_m2 / 1000 * (1 + pv.temp_coeff_per_c * (cell_c - 25))
    ac_w = dc_w * (1 - pv.system_loss)
    if ac_w < 25.0:
        return 0.0  # the inverter has not woken up
    return min(ac_w, pv.inverter_kw * 1000)


@dataclass(frozen=True)
class CloudClimate:
    """Statistics of a fair-weather cumulus day (shadows of single clouds, plus a few larger
    clusters that dim the panels for minutes). Zero ``peak_cover`` is a clear day.

    Shadows of cumulus of 0.3-2 km moving at 5-15 m/s last from ~20 s to a few minutes;
    under one the beam is gone and the diffuse light leaves 20-40 % of the clear-sky output
    (a 60-80 % drop), and edges sweep across a roof in a few seconds. Just outside a cloud
    the panels often see more than clear sky (cloud enhancement, up to +25 % for seconds).
    """

    peak_cover: float = 0.0  # share of time in shadow at the height of convection
    onset_s: float = 10.5 * 3600  # cumulus form (local time)
    peak_s: float = 14.5 * 3600
    decay_s: float = 18.5 * 3600  # and dissolve
    median_shadow_s: float = 45.0
    shadow_spread: float = 0.8  # lognormal sigma of a shadow's duration
    max_shadow_s: float = 420.0
    transmission: tuple[float, float] = (0.2, 0.4)  # output under a cloud / clear-sky output
    edge_s: tuple[float, float] = (2.0, 8.0)  # time for the output to fall or rise
    enhancement: tuple[float, float] = (0.0, 0.25)  # extra output at a cloud's edge
    enhancement_s: tuple[float, float] = (4.0, 25.0)
    clusters: int = 0  # minutes-long dips (towering cumulus, clusters)
    cluster_s: tuple[float, float] = (180.0, 900.0)
    haze: float = 0.02  # slow thin-cirrus / haze variation of the clear-sky output (1 sigma)

    def cover_at(self, t_s: float) -> float:
        if t_s <= self.onset_s or t_s >= self.decay_s or self.peak_cover <= 0:
            return 0.0
        if t_s < self.peak_s:
            x = (t_s - self.onset_s) / (self.peak_s - self.onset_s)
        else:
            x = (self.decay_s - t_s) / (self.decay_s - self.peak_s)
        return self.peak_cover * (0.5 - 0.5 * math.cos(math.pi * x))


CLEAR = CloudClimate()
CUMULUS = CloudClimate(peak_cover=0.4, clusters=4)


def clear_sky_index(
    climate: CloudClimate, rng: random.Random, day_s: int = SECONDS_PER_DAY
) -> tuple[list[float], list[float]]:
    """Per second: how much of the clear-sky beam and diffuse light reach the panels."""
    beam = [1.0] * day_s
    diffuse = [1.0] * day_s
    _haze(beam, climate.haze, rng)
    if climate.peak_cover > 0:
        for start, length, depth in _shadows(climate, rng, day_s):
            _shade(beam, diffuse, start, length, depth, climate, rng)
    return beam, diffuse


def _haze(index: list[float], sigma: float, rng: random.Random) -> None:
    """A slow random walk (smoothed over ~15 min) around 1: thin cirrus, haze, aerosols."""
    if sigma <= 0:
        return
    level, step_s = 0.0, 60
    anchors = []
    for _ in range(len(index) // step_s + 2):
        level = 0.97 * level + rng.gauss(0.0, sigma * 0.25)
        anchors.append(level)
    for t in range(len(index)):
        a, frac = divmod(t, step_s)
        x = anchors[a] + (anchors[a + 1] - anchors[a]) * frac / step_s
        index[t] *= min(1.0, 1.0 - abs(x))


def _shadows(climate: CloudClimate, rng: random.Random, day_s: int) -> list[tuple[int, int, float]]:
    """``(start_s, duration_s, transmission)`` of each cloud shadow, in time order."""
    out: list[tuple[int, int, float]] = []
    t = climate.onset_s
    mean_shadow_s = climate.median_shadow_s * math.exp(climate.shadow_spread**2 / 2)
    while t < climate.decay_s:
        cover = max(climate.cover_at(t), 0.02)
        gap_s = rng.expovariate(cover / (mean_shadow_s * (1 - cover)))
        t += gap_s
        length = min(
            climate.max_shadow_s,
            max(8.0, rng.lognormvariate(math.log(climate.median_shadow_s), climate.shadow_spread)),
        )
        if t >= climate.decay_s:
            break
        out.append((int(t), int(length), rng.uniform(*climate.transmission)))
        t += length
    # Minutes-long dips where the cover is densest (in the middle half of the convection).
    for _ in range(climate.clusters):
        middle = rng.uniform(
            climate.onset_s + 0.25 * (climate.decay_s - climate.onset_s),
            climate.decay_s - 0.25 * (climate.decay_s - climate.onset_s),
        )
        length = rng.uniform(*climate.cluster_s)
        low, high = climate.transmission
        out.append((int(middle - length / 2), int(length), rng.uniform(low * 0.75, high * 0.9)))
    out.sort()
    return [s for s in out if 0 <= s[0] < day_s]


def _shade(
    beam: list[float],
    diffuse: list[float],
    start: int,
    length: int,
    transmission: float,
    climate: CloudClimate,
    rng: random.Random,
) -> None:
    """Put one shadow on the index: smooth edges, a lumpy inside, bright rims."""
    day_s = len(beam)
    fall_s = rng.uniform(*climate.edge_s)
    rise_s = rng.uniform(*climate.edge_s)
    # Inside a cloud the optical depth varies: a smoothed random walk around ``transmission``.
    wobble, lumps = 0.0, []
    for _ in range(length // 5 + 2):
        wobble = 0.7 * wobble + rng.gauss(0.0, 0.05)
        lumps.append(wobble)
    for i in range(length):
        t = start + i
        if t >= day_s:
            break
        edge = min(1.0, (i + 0.5) / fall_s, (length - i - 0.5) / rise_s)
        edge = edge * edge * (3 - 2 * edge)  # smoothstep: shadows have soft edges
        a, frac = divmod(i, 5)
        inside = transmission + lumps[a] + (lumps[a + 1] - lumps[a]) * frac / 5
        inside = min(0.6, max(0.08, inside))
        # Beam is what a cloud blocks; the diffuse part of the light grows a little under it.
        shaded_beam = inside * 0.6
        beam[t] = min(beam[t], beam[t] * (1 - edge) + shaded_beam * edge)
        diffuse[t] = max(diffuse[t], 1.0 + 0.4 * edge * inside)
    # Cloud enhancement: light scattered off the cloud's sunlit side, just outside its shadow.
    for edge_at, direction in ((start, -1), (start + length, 1)):
        extra = rng.uniform(*climate.enhancement)
        if extra <= 0.02:
            continue
        span = int(rng.uniform(*climate.enhancement_s))
        for j in range(span):
            t = edge_at + direction * (j + 1)
            if 0 <= t < day_s and beam[t] >= 0.9:
                beam[t] *= 1 + extra * math.sin(math.pi * (j + 0.5) / span)


def pv_day(
    pv: PVSystem, climate: CloudClimate, rng: random.Random, day_s: int = SECONDS_PER_DAY
) -> list[int]:
    """PV AC output (whole watts) for each second of the day."""
    beam_index, diffuse_index = clear_sky_index(climate, rng, day_s)
    out = []
    for t in range(day_s):
        beam, diffuse = clear_sky_poa(t + 0.5, pv)
        if beam + diffuse <= 0.0:
            out.append(0)
            continue
        poa = beam * beam_index[t] + diffuse * diffuse_index[t]
        watts = pv_output_w(poa, pv)
        if watts > 0:
            watts = min(pv.inverter_kw * 1000, watts * (1 + rng.gauss(0.0, pv.noise)))
        out.append(max(0, round(watts)))
    return out


# --- the household -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Household:
    """A family home with a heat pump for hot water (and a little heating on cool days)."""

    standby_w: float = 140.0  # router, standby, ventilation
    fridge_w: float = 85.0
    heat_pump_w: float = 1600.0  # compressor + pumps while running
    heat_pump_cycles: int = 5  # starts per day
    home_office: bool = True
    laundry: bool = True
    dishwasher: bool = True


class _Load:
    """Adds appliance power to a per-second load curve."""

    def __init__(self, day_s: int) -> None:
        self.w = [0.0] * day_s

    def add(self, start: float, length: float, watts: float | Callable[[int], float]) -> None:
        begin, end = int(start), min(len(self.w), int(start + length))
        for t in range(max(0, begin), end):
            self.w[t] += watts(t - begin) if callable(watts) else watts

    def cycle(self, start: float, length: float, on_s: float, off_s: float, watts: float) -> None:
        """A thermostat: ``watts`` for ``on_s``, nothing for ``off_s``, for ``length``."""
        t = start
        while t < start + length:
            self.add(t, min(on_s, start + length - t), watts)
            t += on_s + off_s


def household_day(house: Household, rng: random.Random, day_s: int = SECONDS_PER_DAY) -> list[int]:
    """Household consumption (whole watts, chargers excluded) for each second of the day."""
    load = _Load(day_s)
    load.add(0, day_s, house.standby_w)

    # Fridge-freezer: compressor ~15 min on, ~30 min off, with a start-up surge.
    t = rng.uniform(0, 1800)
    while t < day_s:
        on_s = rng.uniform(600, 1200)
        load.add(t, 1, 6 * house.fridge_w)
        load.add(t, on_s, house.fridge_w)
        t += on_s + rng.uniform(1500, 2400)

    # Heat pump (hot water, some heating): runs 20-45 min, starts with a soft-start surge and
    # settles; spread over the day, one early in the morning.
    starts = sorted([rng.uniform(4.5, 6.5) * 3600] + [
        rng.uniform(7, 22) * 3600 for _ in range(house.heat_pump_cycles - 1)
    ])  # fmt: skip
    for start in starts:
        run_s = rng.uniform(1200, 2700)
        peak = house.heat_pump_w * rng.uniform(0.85, 1.15)
        load.add(
            start, run_s, lambda i, p=peak: p * (1.35 if i < 20 else 1.0 - 0.1 * min(1, i / 900))
        )

    # Morning: kettle, coffee machine (heats in bursts), toaster, lights, shower pump.
    morning = rng.uniform(6.3, 7.2) * 3600
    load.add(morning, 2700, 120)  # lights, radio
    load.add(morning + rng.uniform(60, 300), rng.uniform(150, 220), 2200)  # kettle
    load.cycle(morning + rng.uniform(300, 900), 420, rng.uniform(20, 40), 30, 1350)  # coffee
    load.add(morning + rng.uniform(600, 1500), rng.uniform(150, 240), 850)  # toaster
    load.add(morning + rng.uniform(1200, 2400), 300, 1800)  # hair dryer
    second_kettle = rng.uniform(8.5, 10.5) * 3600
    load.add(second_kettle, rng.uniform(120, 200), 2200)

    # Home office: two laptops, screens; spiky with small steps.
    if house.home_office:
        office_start = rng.uniform(8.3, 9.0) * 3600
        office_s = rng.uniform(7.5, 8.5) * 3600
        load.add(office_start, office_s, lambda i: 160 + 40 * math.sin(i / 97.0) ** 2)

    # Laundry: heating 15 min at ~2 kW, then the drum (pulsed motor), then the spin.
    if house.laundry:
        wash = rng.uniform(9.5, 11.5) * 3600
        load.add(wash + 120, 900, 2050)
        drum = 2400
        load.add(wash + 1020, drum, lambda i: 180 if (i // 12) % 2 == 0 else 40)
        load.add(wash + 1020 + drum, 420, lambda i: 350 + 250 * min(1.0, i / 120))

    # Lunch: oven preheats, then its thermostat cycles; the hob pulses at mid power.
    lunch = rng.uniform(11.6, 12.4) * 3600
    load.add(lunch, rng.uniform(480, 720), 2500)  # preheat
    load.cycle(
        lunch + 720, rng.uniform(1800, 2700), rng.uniform(30, 60), rng.uniform(60, 120), 2500
    )
    load.cycle(lunch + 1800, 900, 6, 6, 1800)  # induction hob at mid power
    load.add(lunch + 2700, rng.uniform(150, 200), 2200)  # kettle for tea

    # Afternoon: vacuum cleaner, microwave, another kettle.
    load.add(rng.uniform(14, 16.5) * 3600, rng.uniform(600, 1200), 1100)
    load.add(rng.uniform(15.5, 16.5) * 3600, rng.uniform(90, 180), 900)
    load.add(rng.uniform(16, 17) * 3600, rng.uniform(150, 200), 2200)

    # Evening: cooking, lights, TV, dishwasher (two heating phases), a kettle late on.
    dinner = rng.uniform(18.2, 19.0) * 3600
    load.cycle(dinner, 1800, 8, 5, 1700)  # hob
    load.add(dinner + 300, 900, 1000)  # second zone on full
    load.add(dinner - 1800, 5.5 * 3600, 180)  # lights, TV
    if house.dishwasher:
        dish = dinner + rng.uniform(3000, 4200)
        load.add(dish, 600, 2000)
        load.add(dish + 600, 2400, 60)
        load.add(dish + 3000, 600, 2000)
        load.add(dish + 3600, 1200, 40)
    load.add(rng.uniform(21.5, 22.5) * 3600, rng.uniform(120, 180), 2200)

    noise = [rng.gauss(0.0, 6.0) for _ in range(day_s // 10 + 1)]
    return [max(0, round(w + noise[t // 10])) for t, w in enumerate(load.w)]


# --- days --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DayModel:
    """Everything that makes one synthetic day; ``seed`` makes it reproducible."""

    seed: int
    pv: PVSystem = field(default_factory=PVSystem)
    climate: CloudClimate = CLEAR
    house: Household = field(default_factory=Household)
    step_s: int = 1  # resolution; values are averaged over each step


def synthesize_day(model: DayModel, name: str = "synthetic") -> Profile:
    """One day (0 .. 86 400 s) at ``model.step_s`` resolution. Rows whose values equal the
    previous row's are left out: hold semantics make them redundant."""
    rng = random.Random(model.seed)
    pv = pv_day(model.pv, model.climate, random.Random(rng.randrange(2**32)))
    load = household_day(model.house, random.Random(rng.randrange(2**32)))
    step = model.step_s
    rows: list[tuple[float, float, float]] = []
    for t in range(0, SECONDS_PER_DAY, step):
        g = round(sum(pv[t : t + step]) / step)
        c = round(sum(load[t : t + step]) / step)
        if not rows or rows[-1][1:] != (g, c):
            rows.append((t, g, c))
    return Profile.from_rows(rows, end_s=SECONDS_PER_DAY, name=name)


#: The shipped profiles (``profiles/make_profiles.py`` writes them from these models).
CLEAR_DAY = DayModel(seed=20240525, climate=CLEAR)
CLOUDY_DAY = DayModel(seed=20240526, climate=CUMULUS)
#: The demo's day: the cloudy day's weather at 5 s steps (quicker to make at start-up).
BUILTIN_DAY = DayModel(seed=20240527, climate=CUMULUS, step_s=5)


#: The demo's day: the same sky over a larger roof (10 kWp behind an 8 kW inverter), so that a
#: sunny noon carries three cars on the demo's circuit.
DEMO_DAY = DayModel(
    seed=20240527, pv=PVSystem(peak_kw=10.0, inverter_kw=8.0), climate=CUMULUS, step_s=5
)


@functools.lru_cache(maxsize=1)
def demo_profile() -> Profile:
    """The demo's day (``DEMO_DAY``; made in memory, ~1 s, then cached)."""
    return synthesize_day(DEMO_DAY, name="built-in cumulus day, 10 kWp")


@functools.lru_cache(maxsize=1)
def builtin_profile() -> Profile:
    """A day with fair-weather cumulus, for the demo (made in memory, ~1 s, then cached)."""
    return synthesize_day(BUILTIN_DAY, name="built-in cumulus day")
