"""The sky: profile CSVs (loader, errors, hold semantics), readings, and the shipped days."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from twcmaster.sim import sky
from twcmaster.sim.sky import Outage, Profile, ProfileError, Sky, load_profile, parse_profile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROFILES = os.path.join(REPO, "profiles")
INVERTER_W = sky.PVSystem().inverter_kw * 1000
SIX_AMPS_W = 6 * 230
H = "timestamp_s,generation_w,consumption_w\n"


def write(tmp_path, text: str, name: str = "p.csv") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


# --- loading ---------------------------------------------------------------------------------


def test_rows_hold_until_the_next_row_and_the_last_for_its_interval(tmp_path):
    path = write(
        tmp_path, "timestamp_s,generation_w,consumption_w\n0,0,100\n10,2000,300\n25,1500,0\n"
    )
    profile = load_profile(path)
    assert profile.name == "p"
    assert profile.times_s == (0.0, 10.0, 25.0)
    assert profile.end_s == 40.0  # 25 + (25 - 10)
    assert profile.at(0) == (0.0, 100.0)
    assert profile.at(9.999) == (0.0, 100.0)
    assert profile.at(10) == (2000.0, 300.0)
    assert profile.at(24.5) == (2000.0, 300.0)
    assert profile.at(39) == (1500.0, 0.0)
    assert profile.at(1e9) == (1500.0, 0.0)  # after the end: the last row
    assert profile.next_change_s(10) == 25.0 and profile.next_change_s(25) is None
    generation, consumption, surplus = profile.energy_kwh()
    assert generation == pytest.approx((2000 * 15 + 1500 * 15) / 3.6e6)
    assert consumption == pytest.approx((100 * 10 + 300 * 15) / 3.6e6)
    assert surplus == pytest.approx((1700 * 15 + 1500 * 15) / 3.6e6)


def test_header_order_extra_columns_blank_lines_bom_and_decimals_are_accepted(tmp_path):
    text = (
        "\ufeffgrid_w, consumption_w ,timestamp_s,generation_w\n\n-5,200.5,0,0\n7,210,1.5,12.25\n\n"
    )
    profile = load_profile(write(tmp_path, text))
    assert profile.times_s == (0.0, 1.5)
    assert profile.at(1.5) == (12.25, 210.0)
    assert profile.end_s == 3.0


def test_a_single_row_lasts_one_second():
    profile = parse_profile(["timestamp_s,generation_w,consumption_w", "100,5,6"])
    assert (profile.start_s, profile.end_s) == (100.0, 101.0)
    assert profile.at(0) == (5.0, 6.0)  # before the first row: the first row's values


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "empty file"),
        ("\n\n", "empty file"),
        ("time,generation_w,consumption_w\n0,1,2\n", "line 1: the header lacks timestamp_s"),
        (H, "no data rows"),
        (H + "0,1,2\n5,abc,3\n", "line 3, column generation_w: 'abc' is not a number"),
        (H + "0,1\n", "line 2, column consumption_w: 2 value(s), expected at least 3"),
        (H + "0,1,2\n\n0,1,2\n", "line 4, column timestamp_s: 0 does not come after the previous"),
        (H + "5,1,2\n3,1,2\n", "line 3, column timestamp_s: 3 does not come after"),
        (H + "-1,0,2\n", "column timestamp_s: -1 is negative: expected seconds >= 0"),
        (H + "0,inf,2\n", "'inf' is not a finite number"),
    ],
)  # fmt: skip
def test_bad_files_name_the_line_and_column(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    assert str(caught.value).startswith(path)
    assert expected in str(caught.value)


def test_measured_data_gaps_and_negative_watts_are_read_leniently_and_noted():
    """Logged data: a gap (empty, NaN) holds the previous value; an inverter's standby draw
    at night (negative generation) counts as 0. Both are noted for the run's warnings."""
    profile = parse_profile(
        [H.strip(), "0,-4,200", "60,,210", "120,NaN,", "180,3000,-1", "240,2500,300"]
    )
    assert profile.generation_w == (0.0, 0.0, 0.0, 3000.0, 2500.0)
    assert profile.consumption_w == (200.0, 210.0, 210.0, 0.0, 300.0)
    assert profile.notes == (
        "2 empty/NaN generation_w value(s): the previous value held",
        "1 empty/NaN consumption_w value(s): the previous value held",
        "1 negative generation_w value(s) read as 0",
        "1 negative consumption_w value(s) read as 0",
    )


def test_missing_and_binary_files_are_reported(tmp_path):
    with pytest.raises(ProfileError, match="no such file"):
        load_profile(tmp_path / "absent.csv")
    binary = tmp_path / "b.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(ProfileError, match="not UTF-8"):
        load_profile(binary)


def test_csv_round_trip():
    profile = Profile.from_rows([(0, 0, 150), (60, 1234.5, 160), (120, 2000, 170)], end_s=180)
    again = parse_profile(sky.profile_csv(profile).splitlines())
    assert again.times_s == profile.times_s
    assert again.generation_w == profile.generation_w
    assert again.consumption_w == profile.consumption_w


# --- the sky ---------------------------------------------------------------------------------


def test_readings_are_fresh_site_readings_from_one_source():
    profile = Profile.from_rows([(0, 3000, 500), (10, 1000, 800)], end_s=20)
    reading = Sky(profile).reading(12.5)
    assert (reading.generation_w, reading.consumption_w) == (1000.0, 800.0)
    assert reading.stale is False and reading.reason == ""
    assert reading.at_s == 12.5 and reading.sources == ("sky",)
    assert reading.grid_w is None  # a generation + consumption meter, no grid meter
    assert Sky(profile).site_at(3) == (3000.0, 500.0)
    assert Sky(profile).surplus_w(15) == 200.0
    assert Sky(Profile.from_rows([(0, 100, 500)])).surplus_w(0) == 0.0


def test_an_outage_gives_stale_readings_like_a_silent_source():
    profile = Profile.from_rows([(0, 3000, 500)], end_s=100)
    the_sky = Sky(profile, outages=[Outage(20, 50)])
    assert not the_sky.reading(19.9).stale
    reading = the_sky.reading(30)
    assert reading.stale and reading.sources == ()
    assert (reading.generation_w, reading.consumption_w) == (0.0, 0.0)
    assert "sky" in reading.reason and "10 s" in reading.reason
    assert not the_sky.reading(50).stale
    assert the_sky.site_at(30) == (3000.0, 500.0)  # the truth goes on


def test_a_polled_source_holds_its_sample_and_a_wrapped_sky_repeats():
    profile = Profile.from_rows([(0, 100, 0), (5, 200, 0), (10, 300, 0)], end_s=15)
    polled = Sky(profile, sample_interval_s=10)
    assert polled.reading(9.9).generation_w == 100.0 and polled.reading(9.9).at_s == 0.0
    assert polled.reading(10).generation_w == 300.0
    wrapped = Sky(profile, wrap=True)
    assert wrapped.site_at(15 + 6) == (200.0, 0.0)
    site = wrapped.clocked(1000.0, start_s=5.0, speed=2.0)
    assert site(1000.0).generation_w == 200.0 and site(1002.5).generation_w == 300.0
    assert site(1002.5).at_s == 1002.5  # on the loop's clock
    assert Sky(profile, sample_interval_s=4).clocked(1000.0, speed=2.0)(1003.0).at_s == 1002.0


# --- the model and the shipped days ----------------------------------------------------------


def test_clear_sky_output_is_a_bell_from_sunrise_to_sunset_clipped_by_the_inverter():
    pv = sky.PVSystem()
    outputs = [sky.pv_output_w(sum(sky.clear_sky_poa(h * 3600, pv)), pv) for h in range(24)]
    assert outputs[3] == outputs[23] == 0.0  # night
    assert 0 < outputs[7] < outputs[10] < outputs[12]  # rising
    assert outputs[13] == INVERTER_W  # clipped around solar noon (13:15)
    assert outputs[19] > outputs[20] > 0.0 and outputs[22] == 0.0  # setting after 21:00


def test_builtin_profile_covers_a_day_with_clouds_and_is_cached():
    profile = sky.builtin_profile()
    assert profile is sky.builtin_profile()
    assert (profile.start_s, profile.end_s) == (0.0, 86_400.0)
    assert max(profile.generation_w) <= INVERTER_W
    assert profile.at(2 * 3600)[0] == 0.0 and profile.at(13 * 3600)[0] > 0


@pytest.fixture(scope="module")
def shipped() -> dict[str, Profile]:
    return {
        name: load_profile(os.path.join(PROFILES, f"{name}.csv"))
        for name in ("clear-day", "cloudy-day")
    }


@pytest.mark.parametrize("name", ["clear-day", "cloudy-day"])
def test_shipped_profiles_cover_24_h_at_1_s_and_stay_small(shipped, name):
    profile = shipped[name]
    assert os.path.getsize(os.path.join(PROFILES, f"{name}.csv")) < 2_000_000
    assert (profile.start_s, profile.end_s) == (0.0, 86_400.0)
    steps = {b - a for a, b in zip(profile.times_s, profile.times_s[1:], strict=False)}
    assert min(steps) == 1.0  # 1 s resolution (unchanged rows are left out)
    assert all(t == int(t) for t in profile.times_s)
    assert max(profile.generation_w) <= INVERTER_W
    assert profile.at(3 * 3600)[0] == 0 and profile.at(23 * 3600)[0] == 0
    # A spiky household: a kettle's 2 kW comes and goes within minutes.
    assert max(profile.consumption_w) > 2000 and min(profile.consumption_w) < 300
    # Surplus above 6 A (at 230 V) for hours.
    above_s = sum(end - start for start, end, g, c in profile.segments() if g - c > SIX_AMPS_W)
    assert above_s > 5 * 3600


def drops(profile: Profile, fraction: float, within_s: int) -> int:
    """How often the PV falls by ``fraction`` of its level within ``within_s`` seconds."""
    count, t, last = 0, 8 * 3600, -1e9
    while t < 19 * 3600:
        before = profile.at(t)[0]
        after = profile.at(t + within_s)[0]
        if before > 1000 and after <= before * (1 - fraction) and t - last > 60:
            count += 1
            last = t
        t += 1
    return count


def test_the_clear_day_is_smooth_and_the_cloudy_day_has_fast_deep_transients(shipped):
    clear, cloudy = shipped["clear-day"], shipped["cloudy-day"]
    assert drops(clear, 0.3, 10) == 0
    assert drops(cloudy, 0.6, 10) >= 30  # cumulus shadows: -60 % within seconds, many times
    generation_clear, _, _ = clear.energy_kwh()
    generation_cloudy, _, _ = cloudy.energy_kwh()
    assert 35 < generation_clear < 45  # ~6.7 kWh/kWp on a clear late-May day
    assert 0.75 * generation_clear < generation_cloudy < 0.95 * generation_clear


def test_shipped_profiles_are_what_the_seeded_script_makes():
    script = os.path.join(PROFILES, "make_profiles.py")
    done = subprocess.run(
        [sys.executable, script, "--check"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("up to date") == 2
