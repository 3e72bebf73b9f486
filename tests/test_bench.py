"""``make bench``: the daemon as its own process against a simulated slave over a pty."""

from __future__ import annotations

import math
import re

from twcmaster import bench


def test_bench_measures_a_daemon_that_heartbeats_every_second(capsys):
    assert bench.main(["--seconds", "12", "--slaves", "1"]) == 0
    out = capsys.readouterr().out
    row = next((line for line in out.splitlines() if line.startswith("1 | ")), None)
    assert row is not None, out
    cells = row.split(" | ")
    whole_cpu_s, steady_cpu_s_per_min, peak_rss_mb = (float(cell) for cell in cells[1:4])
    assert 0 < whole_cpu_s < 12 and 10 < peak_rss_mb < 500, out
    # The steady window is 2 s here, read in 10 ms ticks: 0 is a real reading when the machine
    # is busy (this VM's wake-up cost, most of the figure when idle, then vanishes: it read
    # 0.000 under a loaded suite, with the whole 12 s run at 0.345 s).
    assert 0 <= steady_cpu_s_per_min < 60, out
    median = re.search(r"median ([0-9.]+)s", cells[4])
    assert median is not None, out  # no heartbeats: the daemon did not drive the bus
    median_s = float(median.group(1))
    assert 0.9 <= median_s <= 1.1, out  # one heartbeat a second (protocol 2, one slave)
    wake = re.search(r"([0-9.]+) us of work in a busy loop takes ([0-9.]+) us", out)
    assert wake is not None, out
    assert all(0 < float(figure) < 1e5 for figure in wake.groups()), out


def test_wake_cost_times_the_same_work_busy_and_after_a_sleep():
    busy_us, woken_us = bench.wake_cost(samples=3, sleep_s=0.01)
    assert math.isfinite(busy_us) and math.isfinite(woken_us)
    # Both are a real measurement of the few microseconds of work, not zero.
    assert 0 < busy_us < 1e4 and 0 < woken_us < 1e5
