"""Charge sessions as TWCManager counts them, and the console lines that announce them."""

from __future__ import annotations

import io
from datetime import datetime

from twcmaster import events as ev
from twcmaster.outputs.base import Publication
from twcmaster.outputs.console import ConsoleOutput, ConsoleStatus
from twcmaster.sessions import END_AFTER_S, ChargeSessions


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
