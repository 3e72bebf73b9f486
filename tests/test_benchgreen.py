"""``make bench-green``: which days it runs and the table it prints (the runs themselves are
``simulate``'s, tested in test_simulate.py)."""

from __future__ import annotations

import os

import pytest

from twcmaster.benchgreen import Row, bench_config, main, measured_days, parse_override, table


def test_the_days_are_the_eight_measured_ones():
    days = [os.path.basename(path) for path in measured_days()]
    assert len(days) == 8 and all(os.path.exists(path) for path in measured_days())
    assert "clear-day.csv" not in days and "cloudy-day.csv" not in days


def row(**overrides):
    fields = dict(
        day="d", cars=2, capture=0.98, import_share=0.03, car_starts=(4, 2),
        bound_share=0.015, plan_share=0.02, distance_pp=1.5, cpu_s=3.0,
    )  # fmt: skip
    return Row(**{**fields, **overrides})


def test_targets_and_table():
    assert row().ok
    assert not row(capture=0.96).ok
    assert not row(car_starts=(7, 0)).ok
    assert not row(distance_pp=2.1).ok
    assert not row(distance_pp=None).ok
    text = table([row(), row(cars=3, car_starts=(7, 1, 1))])
    assert "| d | 2 | 98.0 | 3.0 | 4 | 6 | 1.50 | 1.50 | 3.0 | ok |" in text
    assert "| d | 3 | 98.0 | 3.0 | 7 | 9 | 1.50 | 1.50 | 3.0 | missed |" in text
    assert "1/2 runs meet the targets" in text
    assert row().to_dict()["starts_max_per_car"] == 4


def test_set_reads_json_values_and_keeps_text():
    assert parse_override("greenEnergyHoldWh=20") == ("greenEnergyHoldWh", 20)
    assert parse_override(" greenEnergyHoldGrowth = 1.6") == ("greenEnergyHoldGrowth", 1.6)
    assert parse_override("a=b") == ("a", "b")
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_override("greenEnergyHoldWh")


def test_set_changes_the_config_of_every_run_and_a_bad_key_is_named(capsys):
    assert bench_config({"greenEnergyHoldWh": 20}).green_energy_hold_wh == 20
    assert bench_config({}).green_energy_hold_wh == 14
    with pytest.raises(SystemExit) as stop:
        main(["--days", "06-02", "--cars", "1", "--set", "greenEnergyHoldWhh=20"])
    assert stop.value.code == 2
    assert "config.greenEnergyHoldWhh: unknown key" in capsys.readouterr().err
