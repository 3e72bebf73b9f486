"""Starting and stopping cars through their API (protocol 2): when, how often, and giving up.

Time is a parameter: nothing sleeps.
"""

from __future__ import annotations

from twcmaster.control.carcommands import (
    CarAction,
    CarCommander,
    CarCommandSettings,
    CarNotice,
    CarSeen,
)

A, B = 0x0A0A, 0x0B0B
VIN = "5YJ3E1EA7KF000316"


def seen(
    *,
    twcid: int = A,
    state: int = 1,
    actual: float = 5.2,
    offer: int = 6,
    stop_wanted: bool = False,
    vin: str | None = VIN,
) -> CarSeen:
    return CarSeen(twcid, vin, state, actual, offer, 6, stop_wanted)


def decide(commander: CarCommander, now: float, cars: list[CarSeen]) -> list:
    """The commands of one decision (the notices are asserted where they matter)."""
    return list(commander.decide(now, cars).commands)


def actions(commands) -> list[tuple[int, CarAction]]:
    return [(c.twcid, c.action) for c in commands]


def test_a_stop_is_asked_once_the_controller_wants_the_car_stopped():
    commander = CarCommander()
    assert decide(commander, 0.0, [seen()]) == []
    (command,) = decide(commander, 1.0, [seen(stop_wanted=True)])
    assert (command.action, command.vin, command.twcid, command.at_s) == (
        CarAction.STOP,
        VIN,
        A,
        1.0,
    )
    assert commander.last_command(A) == command


def test_requests_for_one_twc_are_a_minute_apart_and_the_car_is_given_up_after_three():
    commander = CarCommander()
    drawing_on = seen(stop_wanted=True)
    decisions = {t: commander.decide(float(t), [drawing_on]) for t in range(0, 400, 2)}
    assert [t for t, d in decisions.items() if d.commands] == [0, 60, 120]  # then it gives up
    assert not commander.stop_through_car(A)  # the controller may now offer 0 A
    notices = [n for d in decisions.values() for n in d.notices]
    assert notices == [
        CarNotice(
            A,
            "the car still draws 5.2A after 3 stop requests through its API: offering 0 A instead",
        )
    ]
    # The fallback (0 A) is under way while the car still draws; it is not re-armed ...
    assert decide(commander, 400.0, [seen(offer=0, actual=5.2)]) == []
    assert not commander.stop_through_car(A)
    # ... until the car has stopped drawing.
    decide(commander, 410.0, [seen(state=3, offer=0, actual=0.0)])
    assert commander.stop_through_car(A)


def test_each_twc_has_its_own_rate_limit():
    commander = CarCommander()
    assert actions(decide(commander, 0.0, [seen(stop_wanted=True)])) == [(A, CarAction.STOP)]
    out = decide(commander, 1.0, [seen(stop_wanted=True), seen(twcid=B, stop_wanted=True)])
    assert actions(out) == [(B, CarAction.STOP)]


def test_a_car_we_stopped_is_started_when_offered_its_minimum_again():
    commander = CarCommander()
    decide(commander, 0.0, [seen(stop_wanted=True)])
    decide(commander, 10.0, [seen(state=3, actual=0.0, offer=0)])  # stopped, 0 A
    # Offered 6 A again: a start 10 s later, and not before a minute after the stop.
    assert decide(commander, 30.0, [seen(state=3, actual=0.0, offer=6)]) == []
    assert decide(commander, 40.0, [seen(state=3, actual=0.0, offer=6)]) == []
    (start,) = decide(commander, 60.0, [seen(state=3, actual=0.0, offer=6)])
    assert start.action is CarAction.START and start.reason == "offered 6A again"
    decide(commander, 70.0, [seen(actual=5.0)])  # it charges: our stop is undone
    assert decide(commander, 200.0, [seen(state=3, actual=0.0, offer=6)]) == []


def test_a_car_that_stopped_on_its_own_is_left_alone():
    """Full, scheduled or stopped by its owner: not ours to start (API calls cost money)."""
    commander = CarCommander()
    decide(commander, 0.0, [seen(actual=15.0, offer=16)])
    for t in range(10, 1000, 10):
        assert decide(commander, float(t), [seen(state=3, actual=0.0, offer=16)]) == []


def test_a_stop_still_on_its_way_when_the_budget_returns_is_undone():
    """The stop was asked; the sun came back before the car acted; the car then stops on our
    request and must be started again."""
    commander = CarCommander()
    decide(commander, 0.0, [seen(stop_wanted=True)])
    decide(commander, 2.0, [seen(actual=5.2, offer=10)])  # budget back, car not stopped yet
    decide(commander, 5.0, [seen(state=3, actual=0.0, offer=10)])  # now it has stopped
    (start,) = decide(commander, 60.0, [seen(state=3, actual=0.0, offer=10)])
    assert start.action is CarAction.START


def test_starts_give_up_after_three_and_errors_are_not_started():
    commander = CarCommander(CarCommandSettings(max_start_attempts=3))
    decide(commander, 0.0, [seen(stop_wanted=True)])
    waiting = seen(state=3, actual=0.0, offer=6)
    decisions = {t: commander.decide(float(t), [waiting]) for t in range(10, 1000, 5)}
    assert [t for t, d in decisions.items() if d.commands] == [60, 120, 180]
    notices = [n for d in decisions.values() for n in d.notices]
    assert "did not start after 3 start requests" in notices[-1].message
    commander = CarCommander()
    decide(commander, 0.0, [seen(stop_wanted=True)])
    for t in range(10, 300, 5):
        assert decide(commander, float(t), [seen(state=2, actual=0.0, offer=6)]) == []


def test_the_give_up_counts_only_once_the_car_module_could_act():
    """The Tesla module holds a start for its wake delay (180 s): the three requests that
    lead to giving up count from then, not from the first (simulate --tesla on cloudy-day
    gave up the very second the module sent the start)."""
    commander = CarCommander(CarCommandSettings(max_start_attempts=3))
    decide(commander, 0.0, [seen(stop_wanted=True)])
    waiting = seen(state=3, actual=0.0, offer=6)
    decisions = {t: commander.decide(float(t), [waiting], start_delay_s=180.0)
                 for t in range(10, 1000, 5)}  # fmt: skip
    assert [t for t, d in decisions.items() if d.commands] == [60, 120, 180, 240, 300, 360]
    given_up = [t for t, d in decisions.items() if d.notices]
    assert given_up == [420]  # 3 requests after the module could act (at 60 + 180 s)


def test_an_unplugged_car_is_forgotten():
    commander = CarCommander()
    decide(commander, 0.0, [seen(stop_wanted=True)])
    decide(commander, 10.0, [seen(state=0, actual=0.0, offer=0)])  # unplugged
    for t in range(20, 300, 10):
        assert decide(commander, float(t), [seen(state=4, actual=0.0, offer=6)]) == []


def test_no_start_while_the_car_is_still_kept_at_its_minimum_for_the_stop():
    commander = CarCommander(CarCommandSettings(min_interval_s=1.0, start_after_s=1.0))
    decide(commander, 0.0, [seen(stop_wanted=True)])
    for t in range(5, 30):  # stopped, still offered 6 A during the charging debounce
        assert decide(commander, float(t), [seen(state=3, actual=0.0, stop_wanted=True)]) == []


def test_commands_keep_the_cars_vin_after_the_twc_forgot_it():
    commander = CarCommander(CarCommandSettings(min_interval_s=1.0, start_after_s=1.0))
    decide(commander, 0.0, [seen(stop_wanted=True)])
    decide(commander, 5.0, [seen(state=3, actual=0.0, offer=0, vin=None)])
    decide(commander, 6.0, [seen(state=3, actual=0.0, offer=6, vin=None)])
    (start,) = decide(commander, 7.0, [seen(state=3, actual=0.0, offer=6, vin=None)])
    assert start.vin == VIN
