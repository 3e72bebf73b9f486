"""Kostal Plenticore over Modbus TCP against a real pymodbus server on loopback holding the
inverter's registers."""

from __future__ import annotations

import time

import pytest

from tests.sources.sunspec_maps import NAN, f32
from twcmaster.sources.base import Reading, SourceError, SourceTiming
from twcmaster.sources.kostal import KostalSource

TIMING = SourceTiming(timeout_s=0.5)


def plenticore(dc=3480.5, from_grid=120.0, from_pv=1440.25, *, big_endian=False, unit=71):
    def words(value):
        high, low = f32(value)
        return [high, low] if big_endian else [low, high]

    block = [0] * 18
    block[0:2] = words(dc)
    block[8:10] = words(from_grid)
    block[16:18] = words(from_pv)
    return {unit: {5: [1 if big_endian else 0], 100: block, 152: words(50.01)}}


def source_for(server, timing=TIMING, **config) -> KostalSource:
    return KostalSource({"serverIP": server.host, "modbusPort": server.port, **config}, timing)


@pytest.mark.parametrize("big_endian", [False, True])
def test_power_in_either_word_order(make_modbus_server, big_endian):
    server = make_modbus_server(plenticore(big_endian=big_endian))

    reading = source_for(server).fetch()

    assert reading == Reading(generation_w=3480.5, consumption_w=1560.25)


def test_other_unit_id(make_modbus_server):
    server = make_modbus_server(plenticore(unit=1))

    assert source_for(server, unitID="1").fetch().generation_w == 3480.5


def test_nan_is_an_error(make_modbus_server):
    server = make_modbus_server(plenticore(from_pv=NAN))

    with pytest.raises(SourceError, match="register 116 is not a finite number"):
        source_for(server).fetch()


def test_missing_registers_and_silence(make_modbus_server, raw_tcp_server, refused_url):
    server = make_modbus_server({71: {5: [0]}})
    with pytest.raises(SourceError, match="illegal data address"):
        source_for(server).fetch()

    silent = raw_tcp_server(lambda request: None)
    started = time.monotonic()
    with pytest.raises(SourceError, match=r"timed out after 0\.3 s"):
        source_for(silent, SourceTiming(timeout_s=0.3)).fetch()
    assert time.monotonic() - started < 2.0

    port = int(refused_url.rsplit(":", 1)[1])
    with pytest.raises(SourceError, match="cannot connect"):
        KostalSource({"serverIP": "127.0.0.1", "modbusPort": port}, TIMING).fetch()


def test_garbage(raw_tcp_server):
    server = raw_tcp_server(lambda request: b"\x00" * 3)
    with pytest.raises(SourceError, match="Kostal: 127.0.0.1"):
        source_for(server, SourceTiming(timeout_s=0.3)).fetch()


def test_check():
    assert KostalSource.check({"serverIP": "h", "modbusPort": "1502", "unitID": 71}) == []
    assert [k for k, _ in KostalSource.check({"serverIP": "h", "unitID": 256})] == ["unitID"]
    source = KostalSource({"serverIP": "192.0.2.9"}, TIMING)
    assert (source.modbus.port, source.unit) == (1502, 71)
