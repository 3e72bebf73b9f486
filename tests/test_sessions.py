"""Charge sessions as TWCManager counts them, and the console lines that announce them."""

from __future__ import annotations

import io
from datetime import datetime

from twcmaster import events as ev
from twcmaster.outputs.base import Publication
from twcmaster.outputs.console import ConsoleOutput, ConsoleStatus
from twcmaster.protocol.messages import SlaveState
from twcmaster.sessions import END_AFTER_S, MAX_GAP_S, ChargeSessions, PlugInEnergy


def test_a_session_starts_at_one_amp_and_survives_a_short_dip():
    sessions = ChargeSessions()
    assert sessions.heartbeat(0x1234, 0.25, 0.0, 100) == []  # idle offset: no session
    assert sessions.heartbeat(0x1234, 6.0, 1.0, 100) == [ev.ChargeSessionStarted(0x1234, 100)]
    assert sessions.heartbeat(0x1234, 16.0, 2.0, 100) == []
    assert sessions.heartbeat(0x1234, 0.0, 3.0, 100) == []  # negotiating: not yet an end
    assert sessions.heartbeat(0x1234, 0.0, 3.0 + END_AFTER_S - 0.1, 100) == []
    assert sessions.heartbeat(0x1234, 12.0, 9.0, 101) == []  # back: the same session


def test_a_session_ends_after_five_seconds_below_one_amp_with_its_energy():
    sessions = ChargeSessions()
    sessions.heartbeat(0x1234, 16.0, 0.0, 100)
    sessions.vin(0x1234, "5YJ3E1EA7KF000001")
    assert sessions.heartbeat(0x1234, 0.0, 3600.0, 111) == []
    (stopped,) = sessions.heartbeat(0x1234, 0.0, 3600.0 + END_AFTER_S, 111)
    assert stopped == ev.ChargeSessionStopped(0x1234, 3600.0, 11, "5YJ3E1EA7KF000001", 111)
    assert sessions.heartbeat(0x1234, 0.0, 3700.0, 111) == []  # ended once


def test_vin_updates_only_a_running_session_and_once_per_car():
    sessions = ChargeSessions()
    assert sessions.vin(0x1234, "5YJ3E1EA7KF000001") == []  # no session
    sessions.heartbeat(0x1234, 8.0, 0.0, None)
    assert sessions.vin(0x1234, "") == []
    assert sessions.vin(0x1234, "5YJ3E1EA7KF000001") == [
        ev.ChargeSessionUpdated(0x1234, "5YJ3E1EA7KF000001")
    ]
    assert sessions.vin(0x1234, "5YJ3E1EA7KF000001") == []


def test_a_lost_twc_ends_its_session_and_unknown_energy_stays_unknown():
    sessions = ChargeSessions()
    sessions.heartbeat(0x1234, 8.0, 10.0, None)
    (stopped,) = sessions.lost(0x1234, 40.0, None)
    assert stopped == ev.ChargeSessionStopped(0x1234, 30.0, None, "", None)
    assert sessions.lost(0x1234, 50.0, None) == []
    assert sessions.lost(0x5678, 50.0, None) == []


def test_the_console_prints_twcmanagers_event_lines_word_for_word():
    stream = io.StringIO()
    status = ConsoleStatus(stream, wallclock=lambda: datetime(2024, 5, 25, 11, 57, 49))
    console = ConsoleOutput(status)
    events = (
        ev.PolicyChanged("Non Scheduled Charging", "Track Green Energy", "sunny"),
        ev.ChargeSessionStarted(0x0A1B, 100),
        ev.ChargeSessionUpdated(0x0A1B, "5YJ3E1EA7KF000001"),
        ev.ChargeSessionStopped(0x0A1B, 60.0, 1, "5YJ3E1EA7KF000001", 101),
    )
    console.publish(Publication(0.0, events, lambda: None))
    assert stream.getvalue().splitlines() == [
        "11:57:49: New policy selected; changing to Track Green Energy",
        "11:57:49: Charge Session Started for Slave TWC 0A1B",
        "11:57:49: Charge Session updated for Slave TWC 0A1B",
        "11:57:49: Charge Session Stopped for Slave TWC 0A1B",
    ]


def test_plug_in_energy_integrates_the_draw_and_restarts_at_plug_in():
    energy = PlugInEnergy()
    energy.reply(0x1234, 4, 0.0, 0.0)  # a car plugged in, not drawing yet
    energy.reply(0x1234, 1, 3600.0, 10.0)
    energy.reply(0x1234, 1, 3600.0, 70.0)  # the 3.6 kW of the reply at 10 s held 60 s
    energy.reply(0x1234, 1, 0.0, 130.0)  # and 60 s more: 0.12 kWh
    assert round(energy.kwh(0x1234), 6) == 0.12
    energy.reply(0x1234, 1, 3600.0, 140.0)
    energy.reply(0x1234, 1, 3600.0, 140.0 + MAX_GAP_S + 1)  # a longer gap is not counted
    assert round(energy.kwh(0x1234), 6) == 0.12
    energy.reply(0x1234, SlaveState.READY, 0.0, 400.0)  # the car left: its session stays shown
    assert round(energy.kwh(0x1234), 6) == 0.12
    energy.reply(0x1234, 4, 0.0, 460.0)  # another car plugged in
    assert energy.kwh(0x1234) == 0.0 and energy.kwh(0x9999) == 0.0


def test_another_vin_starts_another_session():
    energy = PlugInEnergy()
    energy.vin(0x1234, "5YJ3E1EA7KF000001")
    energy.reply(0x1234, 1, 3600.0, 0.0)
    energy.reply(0x1234, 1, 3600.0, 100.0)
    energy.vin(0x1234, "5YJ3E1EA7KF000001")  # the same car again: nothing changes
    assert round(energy.kwh(0x1234), 6) == 0.1
    energy.vin(0x1234, "5YJ3E1EA7KF000002")
    energy.reply(0x1234, 1, 3600.0, 110.0)
    assert round(energy.kwh(0x1234), 6) == 0.01  # only the new car's 10 s
