"""The TWCManager-compatible status console."""

from __future__ import annotations

import io
from datetime import datetime

import pytest

from twcmaster.outputs.console import ConsoleStatus, format_heartbeat_line

AT_11_57_49 = datetime(2024, 5, 1, 11, 57, 49, 123456)
SEED_LINE = "11:57:49: SHB 1234: 00 00.00/00.00A 0000 0000  M: 09 00.00/17.00A 0000 0000"
P2_IDLE_SLAVE = bytes(9)
P2_OFFER_17A = bytes.fromhex("09 06 A4 00 00 00 00 00 00")  # 0x06A4 = 1700 centiamps


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def make_console(**kw) -> tuple[ConsoleStatus, io.StringIO, FakeClock]:
    """A console printing SHB lines only (unless ``slave_power_lines=True``)."""
    stream, clock = io.StringIO(), FakeClock()
    kw.setdefault("slave_power_lines", False)
    console = ConsoleStatus(stream, clock=clock, wallclock=lambda: AT_11_57_49, **kw)
    return console, stream, clock


def test_each_shb_line_printed_is_followed_by_twcmanagers_slave_power_line() -> None:
    console, stream, clock = make_console(slave_power_lines=True)
    console.heartbeat(0x1234, P2_IDLE_SLAVE, P2_OFFER_17A)
    clock.now_s += 1
    console.heartbeat(0x1234, P2_IDLE_SLAVE, P2_OFFER_17A)  # a repeat: neither line
    charging = bytes.fromhex("01 06 A4 06 40 00 00 00 00")
    console.heartbeat(0x1234, charging, P2_OFFER_17A)
    lines = [line.split(": ", 1)[1] for line in stream.getvalue().splitlines()]
    assert lines[1] == "Slave power for TWCID 1234, status: 0"
    assert lines[3] == "Slave power for TWCID 1234, status: 1"
    assert len(lines) == 4


def test_seed_example_line_byte_for_byte() -> None:
    line = format_heartbeat_line(AT_11_57_49, 0x1234, P2_IDLE_SLAVE, P2_OFFER_17A)
    assert line == SEED_LINE


def test_protocol_1_blocks_have_one_trailing_pair() -> None:
    slave = bytes.fromhex("01 0C 80 07 28 00 00")  # charging, limit 32.00 A, draws 18.32 A
    master = bytes.fromhex("05 0C 80 00 00 00 00")
    line = format_heartbeat_line(AT_11_57_49, 0x032E, slave, master)
    assert line == "11:57:49: SHB 032E: 01 18.32/32.00A 0000  M: 05 00.00/32.00A 0000"


def test_fields_land_where_twcmanager_puts_them() -> None:
    slave = bytes.fromhex("04 12 C0 00 19 AB CD EF 01")
    master = bytes.fromhex("09 FF FF 01 00 12 34 56 78")
    line = format_heartbeat_line(AT_11_57_49, 0xABCD, slave, master)
    # state, actual (S3-S4) / allowed (S1-S2), S5-S6, S7-S8; master the same positions.
    assert line == "11:57:49: SHB ABCD: 04 00.25/48.00A ABCD EF01  M: 09 02.56/655.35A 1234 5678"


def test_milliseconds_option() -> None:
    line = format_heartbeat_line(
        AT_11_57_49, 0x1234, P2_IDLE_SLAVE, P2_OFFER_17A, milliseconds=True
    )
    assert line.startswith("11:57:49.123: SHB 1234: ")
    console, stream, _ = make_console(milliseconds=True)
    console.line("Charge when above 6A (minAmpsPerTWC).")
    assert stream.getvalue() == "11:57:49.123: Charge when above 6A (minAmpsPerTWC).\n"


def test_too_short_data_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 5 bytes"):
        format_heartbeat_line(AT_11_57_49, 0x1234, b"\x00\x00", P2_OFFER_17A)


def test_identical_lines_are_printed_once_then_repeated_after_the_interval() -> None:
    console, stream, clock = make_console(repeat_after_s=60.0)
    console.heartbeat(0x1234, P2_IDLE_SLAVE, P2_OFFER_17A)
    clock.now_s += 59.9
    console.heartbeat(0x1234, P2_IDLE_SLAVE, P2_OFFER_17A)
    assert stream.getvalue() == SEED_LINE + "\n"

    clock.now_s += 0.1  # 60 s after the printed line
    console.heartbeat(0x1234, P2_IDLE_SLAVE, P2_OFFER_17A)
    assert stream.getvalue() == (SEED_LINE + "\n") * 2


def test_a_change_prints_at_once_and_slaves_are_tracked_separately() -> None:
    console, stream, clock = make_console()
    console.heartbeat(0x1234, P2_IDLE_SLAVE, P2_OFFER_17A)
    console.heartbeat(0x5678, P2_IDLE_SLAVE, P2_OFFER_17A)  # another slave: its own line
    clock.now_s += 1
    charging = bytes.fromhex("01 06 A4 06 40 00 00 00 00")
    console.heartbeat(0x1234, charging, P2_OFFER_17A)
    console.heartbeat(0x5678, P2_IDLE_SLAVE, P2_OFFER_17A)  # unchanged: skipped
    lines = stream.getvalue().splitlines()
    assert [line.split(": ", 1)[1][:8] for line in lines] == ["SHB 1234", "SHB 5678", "SHB 1234"]
    assert lines[2].endswith("SHB 1234: 01 16.00/17.00A 0000 0000  M: 09 00.00/17.00A 0000 0000")


def test_amps_jitter_option_skips_small_changes_of_the_actual_current() -> None:
    console, stream, clock = make_console(amps_jitter_a=1.0)
    console.heartbeat(0x1234, bytes.fromhex("01 06 A4 02 02 00 00 00 00"), P2_OFFER_17A)  # 5.14 A
    clock.now_s += 1
    console.heartbeat(0x1234, bytes.fromhex("01 06 A4 02 0B 00 00 00 00"), P2_OFFER_17A)  # 5.23 A
    assert len(stream.getvalue().splitlines()) == 1
    clock.now_s += 1
    console.heartbeat(0x1234, bytes.fromhex("01 06 A4 02 66 00 00 00 00"), P2_OFFER_17A)  # 6.14 A
    assert len(stream.getvalue().splitlines()) == 2


def test_without_jitter_option_any_change_prints() -> None:
    console, stream, clock = make_console()
    console.heartbeat(0x1234, bytes.fromhex("01 06 A4 02 02 00 00 00 00"), P2_OFFER_17A)
    clock.now_s += 1
    console.heartbeat(0x1234, bytes.fromhex("01 06 A4 02 03 00 00 00 00"), P2_OFFER_17A)
    assert len(stream.getvalue().splitlines()) == 2


def test_status_lines_get_the_time_stamp_and_continuations_are_indented() -> None:
    console, stream, _ = make_console()
    console.line("Green energy generates 4956W, Consumption 726W, Charger Load 0W")
    console.line("Limiting car charging to 20.65A - 3.03A = 17.62A.\nCharge when above 6A.")
    assert stream.getvalue() == (
        "11:57:49: Green energy generates 4956W, Consumption 726W, Charger Load 0W\n"
        "11:57:49: Limiting car charging to 20.65A - 3.03A = 17.62A.\n"
        "          Charge when above 6A.\n"
    )


def test_default_stream_is_stdout_at_print_time(capsys: pytest.CaptureFixture[str]) -> None:
    console = ConsoleStatus(wallclock=lambda: AT_11_57_49, slave_power_lines=False)
    console.heartbeat(0x1234, P2_IDLE_SLAVE, P2_OFFER_17A)
    assert capsys.readouterr().out == SEED_LINE + "\n"


def test_a_cars_line_shows_its_next_command_time_and_calls_used_today():
    from twcmaster.carview import CarStatus
    from twcmaster.outputs.console import car_line

    car = CarStatus(
        vin="5YJ3E1EA7KF000001", name="Daisy", location="home", online="online",
        battery_level=64, charge_limit_soc=80, charging_state="Stopped", last_command="stop",
        last_result="ok", last_command_at="2026-06-01T12:01:05", next_command_at=
        "2026-06-01T12:02:05", calls_today={"data": 2, "command": 1, "wake": 1},
        billable_today=4, budget_left=56,
    )  # fmt: skip
    assert car_line(car) == (
        "Car 5YJ3E1EA7KF000001 (Daisy): home, online, 64% of 80%, Stopped; stop at 12:01:05: "
        "ok; next command from 12:02:05; 4/60 calls today"
    )
    idle = CarStatus(vin="5YJ3E1EA7KF000002", name="", location="unknown", online="asleep",
                     battery_level=None, charge_limit_soc=None, charging_state=None,
                     last_command="", last_result="", last_command_at="", next_command_at="",
                     budget_left=60, without_vin="bus only: set a home")  # fmt: skip
    assert car_line(idle) == (
        "Car 5YJ3E1EA7KF000002: unknown, asleep; 0/60 calls today; "
        "without a VIN from its TWC: bus only: set a home"
    )
