"""The VIN sequence alone (§5.4): the state table of ``protocol/vinquery.py``, one cell at a
time, each phase reached through inputs only. The master-level behaviour (frames, events,
timings) is in test_master.py."""

from __future__ import annotations

import pytest

from twcmaster.protocol.vinquery import (
    VIN_FORGET_AFTER_S,
    VIN_UNANSWERED_LIMIT,
    PartVerdict,
    VinPhase,
    VinQuery,
)

VALID = "5YJ3E1EA8KF000001"
BAD = "5YJ3E1EA9KF000001"  # wrong check digit
T = 100.0  # when the phase under test was reached


def answer_all(query: VinQuery, vin: str, now_s: float = T):
    query.on_query_slot(now_s)
    for part, text in enumerate((vin[:7], vin[7:14], vin[14:]), start=1):
        answer = query.on_part_received(part, text, now_s)
    return answer


def in_phase(phase: VinPhase, part: int | None = None) -> VinQuery:
    """A query brought into ``phase`` (ASKING: asking ``part``) at time T."""
    query = VinQuery(retry_s=60.0, max_attempts=2)
    if phase is VinPhase.NOT_ASKED:
        return query
    query.on_charging(T)
    if phase is VinPhase.ASKING:
        for p in range(1, part or 1):
            query.on_part_received(p, VALID[(p - 1) * 7 : p * 7], T)
    elif phase is VinPhase.WAITING_TO_RETRY:
        answer_all(query, BAD)
    elif phase is VinPhase.GAVE_UP:
        answer_all(query, BAD, T - 60.0)
        query.on_charging(T)
        answer_all(query, BAD)
    elif phase is VinPhase.VIN_KNOWN:
        answer_all(query, VALID)
    elif phase is VinPhase.NO_VIN:
        answer_all(query, "")
    assert query.phase is phase
    return query


def charging_due(query: VinQuery) -> None:
    query.on_charging(T + 60.0)  # the retry time has passed


def car_gone(query: VinQuery) -> None:
    query.on_not_charging(T + 61.0)
    query.on_not_charging(T + 61.0 + VIN_FORGET_AFTER_S)


def query_slots(query: VinQuery) -> None:
    for _ in range(VIN_UNANSWERED_LIMIT + 1):
        query.on_query_slot(T + 1.0)


def part_asked(query: VinQuery) -> None:
    part = query.part
    query.on_part_received(part, VALID[(part - 1) * 7 : part * 7], T + 1.0)


def other_part(query: VinQuery) -> None:
    query.on_part_received(query.part % 3 + 1, "5YJ3E1E", T + 1.0)


def master_stops(query: VinQuery) -> None:
    query.on_master_stopping()


N, A, W, G, K, V = (
    VinPhase.NOT_ASKED,
    VinPhase.ASKING,
    VinPhase.WAITING_TO_RETRY,
    VinPhase.GAVE_UP,
    VinPhase.VIN_KNOWN,
    VinPhase.NO_VIN,
)
# phase (and part) -> next phase (and part) for each input; the module docstring's table.
TABLE = {
    (N, None): {charging_due: (A, 1), car_gone: (N, None), query_slots: (N, None),
                part_asked: (N, None), other_part: (N, None), master_stops: (N, None)},
    (A, 1): {charging_due: (A, 1), car_gone: (N, None), query_slots: (W, None),
             part_asked: (A, 2), other_part: (A, 1), master_stops: (W, None)},
    (A, 2): {charging_due: (A, 2), car_gone: (N, None), query_slots: (W, None),
             part_asked: (A, 3), other_part: (A, 2), master_stops: (W, None)},
    (A, 3): {charging_due: (A, 3), car_gone: (N, None), query_slots: (W, None),
             part_asked: (K, None), other_part: (A, 3), master_stops: (W, None)},
    (W, None): {charging_due: (A, 1), car_gone: (N, None), query_slots: (W, None),
                part_asked: (W, None), other_part: (W, None), master_stops: (W, None)},
    (G, None): {charging_due: (G, None), car_gone: (N, None), query_slots: (G, None),
                part_asked: (G, None), other_part: (G, None), master_stops: (G, None)},
    (K, None): {charging_due: (K, None), car_gone: (N, None), query_slots: (K, None),
                part_asked: (K, None), other_part: (K, None), master_stops: (K, None)},
    (V, None): {charging_due: (V, None), car_gone: (N, None), query_slots: (V, None),
                part_asked: (V, None), other_part: (V, None), master_stops: (V, None)},
}  # fmt: skip
CELLS = [(start, step, end) for start, row in TABLE.items() for step, end in row.items()]


@pytest.mark.parametrize(
    ("start", "step", "end"),
    CELLS,
    ids=[f"{s[0].name}{s[1] or ''}-{step.__name__}" for s, step, _ in CELLS],
)
def test_state_table(start, step, end):
    query = in_phase(*start)
    step(query)
    assert (query.phase, query.part if query.asking else None) == end


def test_a_part_is_asked_three_times_then_the_sequence_waits_the_retry_time():
    query = in_phase(VinPhase.ASKING, part=2)
    assert [query.on_query_slot(T + i) for i in range(VIN_UNANSWERED_LIMIT)] == [2, 2, 2]
    assert query.on_query_slot(T + 5.0) is None
    assert query.phase is VinPhase.WAITING_TO_RETRY and query.not_before_s == T + 65.0
    query.on_charging(T + 64.9)
    assert query.phase is VinPhase.WAITING_TO_RETRY
    query.on_charging(T + 65.0)
    assert query.phase is VinPhase.ASKING and query.on_query_slot(T + 65.0) == 1


def test_a_received_part_restarts_the_count_of_unanswered_requests():
    query = in_phase(VinPhase.ASKING)
    assert [query.on_query_slot(T) for _ in range(3)] == [1, 1, 1]
    query.on_part_received(1, VALID[:7], T)
    assert [query.on_query_slot(T) for _ in range(3)] == [2, 2, 2]
    other_part(query)  # a part not asked for is no answer
    assert query.on_query_slot(T) is None and query.phase is VinPhase.WAITING_TO_RETRY


def test_verdicts_and_the_vin_put_together():
    query = in_phase(VinPhase.ASKING)
    assert query.on_part_received(2, VALID[7:14], T).verdict is PartVerdict.NOT_ASKED_FOR
    assert query.on_part_received(1, "5yj3e1e", T).verdict is PartVerdict.STORED
    assert query.on_part_received(2, "a8kf000", T).verdict is PartVerdict.STORED
    answer = query.on_part_received(3, "001", T)
    assert (answer.verdict, answer.vin) == (PartVerdict.VIN, VALID)  # upper-cased
    answer = answer_all(in_phase(VinPhase.ASKING), BAD)
    assert (answer.verdict, answer.vin) == (PartVerdict.BAD_CHECK_DIGIT, BAD)
    answer = answer_all(in_phase(VinPhase.ASKING), "")
    assert (answer.verdict, answer.vin) == (PartVerdict.NO_VIN, None)


def test_at_most_max_attempts_sequences_per_car():
    query = VinQuery(retry_s=60.0, max_attempts=6)
    for attempt in range(6):
        query.on_charging(attempt * 60.0)
        assert query.phase is VinPhase.ASKING and query.attempts == attempt + 1
        answer_all(query, BAD, attempt * 60.0)
    assert query.phase is VinPhase.GAVE_UP
    query.on_charging(1000.0)
    assert query.phase is VinPhase.GAVE_UP
    never = VinQuery(max_attempts=0)
    never.on_charging(T)
    assert never.phase is VinPhase.NOT_ASKED


def test_the_car_is_gone_after_5_s_below_1_a_in_a_row():
    query = in_phase(VinPhase.VIN_KNOWN)
    assert not query.on_not_charging(T + 1.0)
    assert not query.on_not_charging(T + 5.9)
    query.on_charging(T + 6.0)  # back above 1 A: the 5 s start over
    assert not query.on_not_charging(T + 7.0)
    assert not query.on_not_charging(T + 11.9)
    assert query.on_not_charging(T + 12.0)
    assert query.phase is VinPhase.NOT_ASKED and query.attempts == 0
    assert not query.on_not_charging(T + 13.0)  # nothing left to forget


def test_the_retry_time_outlives_the_car_and_a_stop_leaves_it_alone():
    """As the bus master always did: a failed sequence holds off the next one, even for the
    next car; a stop ends the sequence without moving that time."""
    query = in_phase(VinPhase.WAITING_TO_RETRY)  # failed at T: not before T + 60
    query.on_not_charging(T + 1.0)
    assert query.on_not_charging(T + 6.0)
    query.on_charging(T + 30.0)
    assert query.phase is VinPhase.NOT_ASKED
    query.on_charging(T + 60.0)
    assert query.phase is VinPhase.ASKING
    query.on_master_stopping()
    assert query.phase is VinPhase.WAITING_TO_RETRY and query.not_before_s == T + 60.0
