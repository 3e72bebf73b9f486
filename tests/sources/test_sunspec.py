"""SunSpec over Modbus TCP against a real pymodbus server on loopback holding the register
maps SMA, Fronius and SolarEdge devices expose, and raw TCP servers that misbehave."""

from __future__ import annotations

import time

import pytest

from tests.sources.modbus_fake import mbap_reply
from tests.sources.sunspec_maps import (
    NAN,
    NI16,
    common,
    inverter_float,
    inverter_int,
    meter_float,
    meter_int,
    sunspec_map,
)
from twcmaster.sources.base import Reading, SourceError, SourceTiming
from twcmaster.sources.sunspec import SunSpecSource

TIMING = SourceTiming(interval_s=10, timeout_s=0.5, max_age_s=60)


def source_for(server, timing=TIMING, **config) -> SunSpecSource:
    return SunSpecSource({"serverIP": server.host, "serverPort": server.port, **config}, timing)


def test_sma_inverter_with_meter_importing(make_modbus_server):
    # SMA: SunSpec behind unit 126; W 3480 (W_SF 0); the grid meter imports 420 W.
    server = make_modbus_server(
        {
            126: sunspec_map(
                common("SMA", "STP 8.0-3AV-40"),
                inverter_int(103, w=3480, w_sf=0, phv_a=2312, v_sf=-1),
                meter_int(203, w=42, w_sf=1, phv=2305, v_sf=-1),
            )
        }
    )
    source = source_for(server, unitID=126)

    reading = source.fetch()

    assert reading == Reading(
        generation_w=3480.0, consumption_w=3900.0, grid_w=420.0, voltage_v=pytest.approx(230.5)
    )
    assert "unit 126" in source.describe()
    source.close()


def test_scale_factors_and_exporting_meter(make_modbus_server):
    # W 3480 x 10^-1 = 348 W; the meter exports 120 W: the house uses 228 W.
    server = make_modbus_server(
        {
            1: sunspec_map(
                common("Huawei", "SUN2000-6KTL-M1"),
                inverter_int(101, w=3480, w_sf=-1),
                meter_int(201, w=-120, w_sf=0),
            )
        }
    )

    reading = source_for(server).fetch()

    assert reading.generation_w == pytest.approx(348.0)
    assert reading.grid_w == -120.0
    assert reading.consumption_w == pytest.approx(228.0)


def test_solaredge_layout_with_export_positive_meter(make_modbus_server):
    # SolarEdge: inverter 103 at 40069, the meter's common model at 40121, 203 at 40188;
    # its meter reports export as positive.
    server = make_modbus_server(
        {
            1: sunspec_map(
                common("SolarEdge ", "SE8K-RWS48BEN4"),
                inverter_int(103, w=3480, w_sf=0),
                common("SolarEdge ", "SE-MTR-3Y-400V-A"),
                meter_int(203, w=1920, w_sf=0),
            )
        }
    )
    source = source_for(server, meterSign="export")

    reading = source.fetch()

    assert reading.generation_w == 3480.0
    assert reading.grid_w == -1920.0
    assert reading.consumption_w == 1560.0
    inverter, meter = source.sunspec.maps[1].models[1], source.sunspec.maps[1].models[3]
    assert (inverter.address, meter.address) == (40069, 40188)


def test_fronius_float_models_with_meter_on_its_own_unit(make_modbus_server):
    server = make_modbus_server(
        {
            1: sunspec_map(common("Fronius", "Symo 8.2-3-M"), inverter_float(113, w=3480.5)),
            240: sunspec_map(common("Fronius", "Smart Meter 63A"), meter_float(213, w=-1920.5)),
        }
    )

    reading = source_for(server, unitID=1, meterUnitID=240).fetch()

    assert reading.generation_w == pytest.approx(3480.5)
    assert reading.grid_w == pytest.approx(-1920.5)
    assert reading.consumption_w == pytest.approx(1560.0)
    assert reading.voltage_v == pytest.approx(230.5)


def test_map_at_base_address_zero_is_found(make_modbus_server):
    server = make_modbus_server(
        {1: sunspec_map(common("Kostal", "PIKO IQ"), inverter_int(w=1000), base=0)}
    )

    reading = source_for(server).fetch()

    assert reading == Reading(generation_w=1000.0, voltage_v=pytest.approx(231.2))


def test_several_inverters_are_summed_and_meter_load_location(make_modbus_server):
    server = make_modbus_server(
        {
            1: sunspec_map(common("Fronius", "Symo"), inverter_int(w=2000), meter_int(w=900)),
            2: sunspec_map(common("Fronius", "Primo"), inverter_int(102, w=1500)),
        }
    )

    reading = source_for(server, unitID=[1, "2"], meterLocation="load").fetch()

    assert reading.generation_w == 3500.0
    assert reading.consumption_w == 900.0
    assert reading.grid_w is None


@pytest.mark.parametrize("state", [1, 2, 8])
def test_sleeping_inverter_without_power_is_zero(make_modbus_server, state):
    server = make_modbus_server(
        {126: sunspec_map(common("SMA", "SB 5.0"), inverter_int(w=NI16, state=state))}
    )

    assert source_for(server, unitID=126).fetch().generation_w == 0.0


def test_float_nan_power_while_sleeping_is_zero(make_modbus_server):
    server = make_modbus_server(
        {1: sunspec_map(common("Fronius", "Symo"), inverter_float(w=NAN, state=2))}
    )

    assert source_for(server).fetch().generation_w == 0.0


def test_power_not_implemented_while_producing_is_an_error(make_modbus_server):
    server = make_modbus_server(
        {1: sunspec_map(common("SMA", "SB 5.0"), inverter_int(w=NI16, state=4))}
    )

    with pytest.raises(SourceError, match=r"W is not implemented \(operating state 4\)"):
        source_for(server).fetch()


def test_meter_power_not_implemented_is_an_error(make_modbus_server):
    server = make_modbus_server(
        {1: sunspec_map(common("SMA", "SB"), inverter_int(w=100), meter_int(w=NI16))}
    )

    with pytest.raises(SourceError, match="meter model 203 .* not implemented"):
        source_for(server).fetch()


def test_garbage_scale_factor_is_an_error(make_modbus_server):
    server = make_modbus_server({1: sunspec_map(common("X", "Y"), inverter_int(w=100, w_sf=77))})

    with pytest.raises(SourceError, match="W_SF is 77, not a scale factor"):
        source_for(server).fetch()


def test_standby_draw_is_clamped_to_zero(make_modbus_server):
    server = make_modbus_server(
        {1: sunspec_map(common("X", "Y"), inverter_int(w=-4), meter_int(w=300))}
    )

    reading = source_for(server).fetch()

    assert reading.generation_w == 0.0
    assert reading.consumption_w == 300.0


def test_no_meter_means_generation_only_unless_a_meter_unit_is_named(make_modbus_server):
    server = make_modbus_server({1: sunspec_map(common("SMA", "SB"), inverter_int(w=700))})

    assert source_for(server).fetch().consumption_w is None
    with pytest.raises(SourceError, match="unit 1: no SunSpec meter model"):
        source_for(server, meterUnitID=1).fetch()


def test_no_inverter_model_is_an_error(make_modbus_server):
    server = make_modbus_server({1: sunspec_map(common("X", "meter only"), meter_int(w=5))})

    with pytest.raises(SourceError, match=r"no SunSpec inverter model .*models: 1, 203"):
        source_for(server).fetch()


def test_no_sunspec_marker(make_modbus_server):
    server = make_modbus_server({1: {40000: [1, 2, 3, 4]}})

    with pytest.raises(SourceError, match="no 'SunS' marker at 40000, 0, 50000"):
        source_for(server).fetch()


def test_map_not_starting_with_common_model(make_modbus_server):
    server = make_modbus_server({1: sunspec_map(inverter_int(w=5))})

    with pytest.raises(SourceError, match="does not start with the common model"):
        source_for(server).fetch()


def test_unit_without_device_is_a_modbus_error(make_modbus_server):
    server = make_modbus_server({1: sunspec_map(common("X", "Y"), inverter_int(w=5))})

    with pytest.raises(SourceError) as caught:
        source_for(server, unitID=7, baseAddress=40000).fetch()

    message = str(caught.value)
    assert message.startswith(f"SunSpec: 127.0.0.1:{server.port} unit 7, registers 40000-40001")
    assert "device failure" in message


def test_connection_refused(refused_url):
    port = int(refused_url.rsplit(":", 1)[1])
    source = SunSpecSource({"serverIP": "127.0.0.1", "serverPort": port}, TIMING)

    with pytest.raises(SourceError, match="cannot connect"):
        source.fetch()


def test_silent_device_times_out_within_the_timeout(raw_tcp_server):
    server = raw_tcp_server(lambda request: None)
    source = source_for(server, SourceTiming(timeout_s=0.3))

    started = time.monotonic()
    with pytest.raises(SourceError, match=r"timed out after 0\.3 s"):
        source.fetch()
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize(
    "reply",
    [
        lambda request: b"\xde\xad\xbe\xef" * 8,  # not Modbus at all
        lambda request: mbap_reply(request, b"\x03\x04\x53\x75"),  # byte count 4, 2 bytes sent
        lambda request: mbap_reply(request, b"\x03\x02\x00\x01"),  # one register of two
    ],
)
def test_garbage_answers_are_errors(raw_tcp_server, reply):
    server = raw_tcp_server(reply)

    with pytest.raises(SourceError) as caught:
        source_for(server, SourceTiming(timeout_s=0.3), baseAddress=40000).fetch()

    assert str(caught.value).startswith("SunSpec: 127.0.0.1:")


def test_a_failed_poll_walks_the_map_again(make_modbus_server):
    server = make_modbus_server({1: sunspec_map(common("X", "Y"), inverter_int(w=5))})
    source = source_for(server)
    source.fetch()
    assert 1 in source.sunspec.maps
    server.stop()

    with pytest.raises(SourceError):
        source.fetch()
    assert source.sunspec.maps == {}


def test_check_config():
    assert SunSpecSource.check({"serverIP": "192.0.2.1"}) == []
    assert (
        SunSpecSource.check(
            {
                "serverIP": "192.0.2.1",
                "serverPort": "1502",
                "unitID": [1, "2"],
                "meterUnitID": 240,
                "meterSign": "export",
                "meterLocation": "load",
                "baseAddress": 0,
            }
        )
        == []
    )
    problems = dict(
        SunSpecSource.check(
            {
                "serverIP": "http://192.0.2.1",
                "serverPort": 0,
                "unitID": 300,
                "meterUnitID": [1],
                "meterSign": "positive",
                "meterLocation": "house",
                "baseAddress": "40000",
            }
        )
    )
    assert set(problems) == {
        "serverIP",
        "serverPort",
        "unitID",
        "meterUnitID",
        "meterSign",
        "meterLocation",
        "baseAddress",
    }
    assert "unit id 0-255" in problems["unitID"]
    assert SunSpecSource.check({})[0][0] == "serverIP"
    assert SunSpecSource.check({"serverIP": "x", "unitID": []})[0][0] == "unitID"
