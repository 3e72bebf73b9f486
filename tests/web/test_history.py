"""The chart's history and the session meter, fed snapshots and times (no clock, no sleep)."""

from __future__ import annotations

import json
import os

from structlog.testing import capture_logs

from tests.http.served import charging_slave, moment
from twcmaster.outputs.web.history import (
    HISTORY_FILE_NAME,
    KEEP_S,
    MAX_POINTS,
    SAMPLE_EVERY_S,
    History,
    Point,
)

T0 = 1_790_000_000.0
SNAPSHOT = moment()()


def test_a_point_a_minute_with_the_snapshots_figures():
    history = History(None)
    assert history.sample(SNAPSHOT, T0) is not None
    assert history.sample(SNAPSHOT, T0 + SAMPLE_EVERY_S - 1) is None
    point = history.sample(SNAPSHOT, T0 + SAMPLE_EVERY_S)
    assert point is not None
    assert point.generation_w == SNAPSHOT.budget.green.generation_w
    assert point.consumption_w == SNAPSHOT.budget.green.consumption_w
    assert point.charging_w == {"1234": 3960.0}
    assert len(history.points) == 2


def test_only_the_last_24_hours_are_kept_and_never_more_than_the_bound():
    history = History(None)
    for minute in range(2 * 24 * 60):
        history.sample(SNAPSHOT, T0 + minute * SAMPLE_EVERY_S)
    now = T0 + (2 * 24 * 60 - 1) * SAMPLE_EVERY_S
    assert len(history.points) <= MAX_POINTS
    assert history.points[0].time_epoch >= now - KEEP_S
    assert len(history.recent(now)) == 24 * 60 + 1


def test_a_clock_set_back_keeps_one_time_line():
    history = History(None)
    for minute in range(10):
        history.sample(SNAPSHOT, T0 + minute * SAMPLE_EVERY_S)
    set_back = T0 + 5 * SAMPLE_EVERY_S + 1
    assert history.due(set_back)  # earlier than the newest point
    history.sample(SNAPSHOT, set_back)  # the points "after" it go; the minute spacing stays
    assert [p.time_epoch for p in history.points] == [T0 + m * SAMPLE_EVERY_S for m in range(6)]
    assert history.sample(SNAPSHOT, set_back + SAMPLE_EVERY_S) is not None


def test_saved_atomically_and_read_back(tmp_path):
    path = tmp_path / HISTORY_FILE_NAME
    history = History(path)
    for minute in range(3):
        history.sample(SNAPSHOT, T0 + minute * SAMPLE_EVERY_S)
    history.save()
    assert sorted(os.listdir(tmp_path)) == [HISTORY_FILE_NAME]  # no temp file left behind
    assert json.loads(path.read_text())["format"] == 1
    again = History(path)
    again.load()
    assert list(again.points) == list(history.points)
    mtime = path.stat().st_mtime_ns
    again.save()  # nothing new: not written again
    assert path.stat().st_mtime_ns == mtime


def test_an_unreadable_file_starts_an_empty_chart_and_says_so(tmp_path):
    path = tmp_path / HISTORY_FILE_NAME
    for text in ("{not json", '{"format": 99, "points": []}', '{"format": 1, "points": [{}]}'):
        path.write_text(text)
        history = History(path)
        with capture_logs() as logs:
            history.load()
        assert not history.points
        assert any("not read" in entry["event"] for entry in logs), text


def test_a_point_from_json_refuses_what_is_not_one():
    good = Point(T0, 1.0, None, {"1234": 2.0})
    assert Point.from_json(good.to_json()) == good
    for bad in ([], {"t": T0}, {"t": "x", "twc": {}}, {"t": T0, "twc": {"1234": True}}):
        try:
            Point.from_json(bad)
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad!r}")


def snapshot_with(**slave):
    return moment(slaves=(charging_slave(**slave),))()


def test_a_failed_write_is_logged_and_tried_again(tmp_path):
    history = History(tmp_path / "gone" / HISTORY_FILE_NAME)  # its folder does not exist
    history.sample(SNAPSHOT, T0)
    text = history.unsaved_text()
    assert text is not None and history.unsaved_text() is None  # taken: counted as saved
    with capture_logs() as logs:
        history.write(text)
    assert any(entry["event"] == "web history not saved" for entry in logs)
    (tmp_path / "gone").mkdir()
    history.save()  # the next save writes it after all
    assert (tmp_path / "gone" / HISTORY_FILE_NAME).exists()
