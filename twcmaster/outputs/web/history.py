"""What the web page remembers between snapshots: today's chart.

``History``: one point a minute of the daemon's wall clock (generation, consumption, each
TWC's charging power), the last 24 h only, in memory (``MAX_POINTS`` bounds it whatever the
clock does) and in ``<settingsPath>/history.json`` so a restart keeps the chart. The file is
written atomically (``settings.write_atomically``) every ``SAVE_EVERY_S`` and at stop; a file
that cannot be read is set aside in the log and the chart starts empty (it is only a chart).

It is fed only the ``Snapshot`` and the time, like every output. (Each car's session energy
is the core's, in the snapshot: ``sessions.PlugInEnergy``.)
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twcmaster.logs import get_logger
from twcmaster.outputs.views import energy_figures
from twcmaster.settings import write_atomically

if TYPE_CHECKING:
    from twcmaster.core import Snapshot

__all__ = ["HISTORY_FILE_NAME", "History", "Point"]

HISTORY_FILE_NAME = "history.json"
HISTORY_FORMAT = 1  # bumped if a point's fields change meaning
SAMPLE_EVERY_S = 60.0  # wall-clock seconds between points: 1440 a day, ~100 KB on disk
KEEP_S = 24 * 3600.0  # the chart's span
MAX_POINTS = int(KEEP_S / SAMPLE_EVERY_S) + 60  # a clock set back cannot grow the history
SAVE_EVERY_S = 300.0  # a crash loses at most this much of the chart


@dataclass(frozen=True)
class Point:
    """One minute of the chart. Powers in watts; None: no energy source says."""

    time_epoch: float
    generation_w: float | None
    consumption_w: float | None
    charging_w: Mapping[str, float] = field(default_factory=dict)  # TWCID -> its car's draw

    def to_json(self) -> dict[str, Any]:
        return {
            "t": round(self.time_epoch, 1),
            "gen": None if self.generation_w is None else round(self.generation_w),
            "use": None if self.consumption_w is None else round(self.consumption_w),
            "twc": {twcid: round(w) for twcid, w in self.charging_w.items()},
        }

    @classmethod
    def from_json(cls, data: Any) -> Point:
        """A point as ``to_json`` wrote it; ValueError for anything else."""
        if not isinstance(data, dict) or not isinstance(data.get("twc"), dict):
            raise ValueError(f"not a point: {str(data)[:60]}")
        charging = {str(k): _watts(v) for k, v in data["twc"].items()}
        if any(w is None for w in charging.values()):
            raise ValueError("a TWC's power is not a number")
        return cls(
            _required(_watts(data.get("t"))),
            _watts(data.get("gen")),
            _watts(data.get("use")),
            charging,  # type: ignore[arg-type]  # None ruled out above
        )


def point_from(snapshot: Snapshot, now_epoch: float) -> Point:
    figures = energy_figures(snapshot)
    return Point(
        now_epoch,
        None if figures is None else figures.generation_w,
        None if figures is None else figures.consumption_w,
        {s.twcid: s.charger_load_w for s in snapshot.slaves},
    )


class History:
    """The last 24 h, a point a minute. ``path``: the file (None: memory only)."""

    def __init__(self, path: Path | None, *, log: Any = None) -> None:
        self.path = path
        self.log = log or get_logger("twcmaster.web")
        self.points: deque[Point] = deque(maxlen=MAX_POINTS)
        self._unsaved = False

    def due(self, now_epoch: float) -> bool:
        """A point is due (a minute since the last, or the clock set back)."""
        if not self.points:
            return True
        elapsed_s = now_epoch - self.points[-1].time_epoch
        return elapsed_s >= SAMPLE_EVERY_S or elapsed_s < 0

    def sample(self, snapshot: Snapshot, now_epoch: float) -> Point | None:
        """Add a point when a minute has passed since the last one; the point, or None."""
        last = self.points[-1] if self.points else None
        if last is not None and now_epoch < last.time_epoch:
            self._forget_after(now_epoch)  # the clock was set back: keep one time line
            last = self.points[-1] if self.points else None
        if last is not None and now_epoch - last.time_epoch < SAMPLE_EVERY_S:
            return None
        point = point_from(snapshot, now_epoch)
        self.points.append(point)
        self._forget_before(now_epoch - KEEP_S)
        self._unsaved = True
        return point

    def recent(self, now_epoch: float) -> list[Point]:
        """The points of the last 24 h before ``now_epoch``, oldest first."""
        return [p for p in self.points if now_epoch - KEEP_S <= p.time_epoch <= now_epoch]

    def load(self) -> None:
        """Read the file (missing: an empty chart; unreadable: logged, an empty chart)."""
        if self.path is None or not self.path.exists():
            return
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(document, dict) or document.get("format") != HISTORY_FORMAT:
                raise ValueError(f"expected format {HISTORY_FORMAT}")
            points = [Point.from_json(item) for item in document.get("points", [])]
        except (OSError, ValueError) as error:  # json.JSONDecodeError is a ValueError
            self.log.warning(
                "web history not read; the chart starts empty",
                path=str(self.path),
                error=str(error),
            )
            return
        points.sort(key=lambda p: p.time_epoch)
        self.points.extend(points[-MAX_POINTS:])

    def save(self) -> None:
        """Write the file atomically if anything changed; a failure is logged, not raised."""
        text = self.unsaved_text()
        if text is not None:
            self.write(text)

    def unsaved_text(self) -> str | None:
        """The file's new content, or None when there is nothing new to write. Taking it
        counts as saved: ``write`` (which may run in a thread) says so if it fails."""
        if self.path is None or not self._unsaved:
            return None
        self._unsaved = False
        document = {"format": HISTORY_FORMAT, "points": [p.to_json() for p in self.points]}
        return json.dumps(document, separators=(",", ":"), allow_nan=False)

    def write(self, text: str) -> None:
        """Write ``unsaved_text`` atomically; a failure is logged and tried again later."""
        if self.path is None:
            return
        try:
            write_atomically(self.path, text, temp_prefix=f".{self.path.name}.", mode=0o644)
        except OSError as error:
            self.log.error("web history not saved", path=str(self.path), error=str(error))
            self._unsaved = True

    def _forget_before(self, oldest_epoch: float) -> None:
        while self.points and self.points[0].time_epoch < oldest_epoch:
            self.points.popleft()

    def _forget_after(self, newest_epoch: float) -> None:
        while self.points and self.points[-1].time_epoch > newest_epoch:
            self.points.pop()


def _watts(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"not a number: {value!r:.40}")
    return float(value)


def _required(value: float | None) -> float:
    if value is None:
        raise ValueError("a point without its time")
    return value
