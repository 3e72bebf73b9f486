"""Victron GX over Modbus TCP against a real pymodbus server on loopback holding the GX's
system registers."""

from __future__ import annotations

import time

import pytest

from twcmaster.sources.base import Reading, SourceError, SourceTiming
from twcmaster.sources.victron import VictronSource

TIMING = SourceTiming(timeout_s=0.5)


def gx(consumption=(420, 380, 760), pv=(1200, 1100, 1180), unit=100):
    return {unit: {808: list(pv), 817: list(consumption)}}


def source_for(server, timing=TIMING, **config) -> VictronSource:
    return VictronSource({"serverIP": server.host, "serverPort": server.port, **config}, timing)


def test_default_registers_summed(make_modbus_server):
    server = make_modbus_server(gx())

    source = source_for(server)

    assert source.fetch() == Reading(consumption_w=1560.0, generation_w=3480.0)
    assert "Victron GX" in source.describe()


def test_own_registers(make_modbus_server):
    server = make_modbus_server({100: {817: [500]}, 32: {1029: [2500]}})

    reading = source_for(
        server, consumptionRegisters=[[817, 100]], generationRegisters=[[1029, 32]]
    ).fetch()

    assert reading == Reading(consumption_w=500.0, generation_w=2500.0)


def test_a_missing_register_fails_the_poll(make_modbus_server):
    server = make_modbus_server({100: {808: [1200, 1100, 1180], 817: [420, 380]}})

    with pytest.raises(SourceError, match="unit 100, input registers 819-819: .*illegal data"):
        source_for(server).fetch()


def test_not_available_value_is_an_error(make_modbus_server):
    server = make_modbus_server(gx(pv=(0xFFFF, 0, 0)))

    with pytest.raises(SourceError, match="register 808 is not available"):
        source_for(server).fetch()


def test_silent_refused_and_garbage(raw_tcp_server, refused_url):
    silent = raw_tcp_server(lambda request: None)
    started = time.monotonic()
    with pytest.raises(SourceError, match=r"timed out after 0\.3 s"):
        source_for(silent, SourceTiming(timeout_s=0.3)).fetch()
    assert time.monotonic() - started < 2.0

    port = int(refused_url.rsplit(":", 1)[1])
    with pytest.raises(SourceError, match="cannot connect"):
        VictronSource({"serverIP": "127.0.0.1", "serverPort": port}, TIMING).fetch()

    garbage = raw_tcp_server(lambda request: b"\xff" * 40)
    with pytest.raises(SourceError, match="Victron: 127.0.0.1"):
        source_for(garbage, SourceTiming(timeout_s=0.3)).fetch()


def test_check():
    assert VictronSource.check({"serverIP": "h", "timeout": 10, "unitID": 100}) == []
    problems = VictronSource.check(
        {"serverIP": "h", "consumptionRegisters": [[817]], "generationRegisters": "808"}
    )
    assert [k for k, _ in problems] == ["consumptionRegisters", "generationRegisters"]
