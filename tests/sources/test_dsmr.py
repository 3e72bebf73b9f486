"""The DSMR source reading real P1 telegrams from a pty pair standing in for the P1 cable."""

from __future__ import annotations

import os
import threading
import time

import pytest

from tests.sources.dsmr_telegrams import TELEGRAM_V2_2, TELEGRAM_V4_2, TELEGRAM_V5
from tests.sources.test_mqtt import Collector, RecordingLog
from twcmaster.sources.base import Reading, SourceError, SourceTiming
from twcmaster.sources.dsmr import DsmrSource, crc16, parse_telegram

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def p1_line():
    """(write, device): bytes written on the meter's side arrive on ``device``."""
    meter, device = os.openpty()
    name = os.ttyname(device)
    yield (lambda data: os.write(meter, data)), name
    for fd in (meter, device):
        try:
            os.close(fd)
        except OSError:
            pass


@pytest.fixture
def run_source():
    started: list[DsmrSource] = []

    def run(config: dict, log=None):
        source = DsmrSource(config, SourceTiming(), log=log or RecordingLog())
        collector = Collector()
        source.start(collector)
        started.append(source)
        return source, collector

    yield run
    for source in started:
        source.stop()


def exporting(telegram: str, delivered: str, returned: str) -> bytes:
    """A telegram with other power lines and its CRC made again, as the meter would."""
    body = telegram[: telegram.rindex("!") + 1]
    body = body.replace("1-0:1.7.0(00.244*kW)", f"1-0:1.7.0({delivered}*kW)")
    body = body.replace("1-0:2.7.0(00.000*kW)", f"1-0:2.7.0({returned}*kW)")
    return (body + f"{crc16(body.encode()):04X}\r\n").encode()


def test_crc_of_real_telegrams():
    for telegram in (TELEGRAM_V5, TELEGRAM_V4_2):
        end = telegram.rindex("!")
        assert crc16(telegram[: end + 1].encode()) == int(telegram[end + 1 : end + 5], 16)


def test_parse_real_telegrams():
    assert parse_telegram(TELEGRAM_V5.encode()) == Reading(
        generation_w=0.0, consumption_w=244.0, grid_w=244.0, voltage_v=230.0
    )
    v4 = parse_telegram(TELEGRAM_V4_2.encode())
    assert v4.consumption_w == pytest.approx(2027.0) and v4.voltage_v is None
    assert parse_telegram(TELEGRAM_V2_2.encode()).consumption_w == pytest.approx(1010.0)


def test_telegrams_from_the_serial_line(p1_line, run_source):
    write, device = p1_line
    source, got = run_source({"serialPort": device, "baudrate": 115200})

    write(TELEGRAM_V5.encode())
    assert got.wait_readings(1)[0].consumption_w == 244.0

    # Export at noon, arriving in pieces as a slow line delivers it.
    data = exporting(TELEGRAM_V5, "00.000", "01.920")
    for start in range(0, len(data), 97):
        write(data[start : start + 97])
        time.sleep(0.005)
    assert got.wait_readings(2)[1] == Reading(
        generation_w=1920.0, consumption_w=0.0, grid_w=-1920.0, voltage_v=230.0
    )
    assert device in source.describe()


def test_bad_crc_and_noise_are_ignored(p1_line, run_source):
    write, device = p1_line
    log = RecordingLog()
    _source, got = run_source({"serialPort": device}, log)

    corrupted = TELEGRAM_V5.replace("00.244", "09.244").encode()  # a flipped digit
    write(b"\x00\xffnoise!\r\n" + corrupted)
    write(TELEGRAM_V5.replace("1-0:1.7.0(00.244*kW)\r\n", "").replace("!6EEE", "!").encode())
    write(TELEGRAM_V4_2.encode())

    assert got.wait_readings(1)[0].consumption_w == pytest.approx(2027.0)
    warnings = log.events("warning")
    assert warnings and "CRC mismatch" in warnings[0][1]["why"]
    assert len(got.readings) == 1


def test_port_that_cannot_be_opened(tmp_path):
    source = DsmrSource({"serialPort": str(tmp_path / "ttyUSB9")}, SourceTiming())
    with pytest.raises(SourceError, match="DSMR: cannot open .*ttyUSB9"):
        source.start(Collector())


def test_port_gone_is_reported_and_stop_is_quick(run_source, monkeypatch):
    monkeypatch.setattr("twcmaster.sources.dsmr.REOPEN_S", 0.1)
    meter, line = os.openpty()  # the adapter; its own end of the line is closed below
    device = os.ttyname(line)
    os.close(line)
    source, got = run_source({"serialPort": device})
    os.write(meter, TELEGRAM_V5.encode())
    got.wait_readings(1)
    os.close(meter)  # the adapter unplugged: reading the port now fails for real (EIO)
    got.wait(lambda c: c.errors)
    assert f"DSMR: reading {device} failed" in got.errors[0]

    started = time.monotonic()
    source.stop()
    assert time.monotonic() - started < 1.5
    assert not any(t.name == "source:DSMR" and t.is_alive() for t in threading.enumerate())


def test_check():
    assert DsmrSource.check({"serialPort": "/dev/ttyUSB0", "baudrate": 9600}) == []
    assert DsmrSource.check({}) == []
    assert [k for k, _ in DsmrSource.check({"baudrate": 0, "serialPort": ""})] == [
        "baudrate",
        "serialPort",
    ]
    assert DsmrSource({}, SourceTiming()).port == "/dev/ttyUSB2"
