"""How the suite runs in pytest-xdist workers (``make test``: ``-n 3 --dist loadgroup``).

Groups. Tests marked ``xdist_group(name)`` run in one worker, one after another; every other
test goes to whichever worker is free. xdist (3.8) finds a test's group in its node id: the
worker appends ``@name`` to the id by assigning ``item._nodeid``. From pytest 9.2 on a node's
id is derived from ``item._id`` instead, so that assignment changes nothing and xdist silently
runs grouped tests in any worker (each container test would start its own dockerd). Here each
worker writes down the group of each grouped test once it has collected (``write_groups``), in
a folder the controller handed it (``configure_node``), and the controller's scheduler
(``make_scheduler``: xdist's own load-group scheduler) reads the groups from there. A worker's
list missing stops the run with an error rather than let it run ungrouped.

Exclusive tests. A test marked ``exclusive`` asserts a wall-clock target that holds on a quiet
machine (the container's first heartbeat within 3 s of ``up -d``). Its call runs alone: it
waits until the tests running in the other workers have ended, and they start nothing new
until it is done (its set-up and tear-down run alongside others as usual). Two lock files in
the same folder do it: every test holds ``run.lock`` shared while it runs; an exclusive call
takes ``gate.lock`` (which a test starting takes shared for a moment, so new tests wait at
the gate) and then ``run.lock`` exclusively. Its wait counts against its own timeout.

Without xdist, or in one process (``-n 0``), none of this does anything.
``tests/conftest.py`` calls these from the pytest and xdist hooks.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

#: The key of the folder in a worker's ``workerinput``.
FOLDER_KEY = "twcmaster_parallel"
EXCLUSIVE = "exclusive"
_LOCKS = pytest.StashKey["Locks"]()


def group_of(item) -> str | None:
    """The test's group, named as xdist names it (several marks: their names, sorted, joined
    by '_'), or None."""
    names = {
        str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
        for mark in item.iter_markers("xdist_group")
    }
    return "_".join(sorted(names)) if names else None


# -- controller -------------------------------------------------------------------------


class Folder:
    """The controller's folder for the workers' lists and the locks, made when the first
    worker is set up and removed at the end of the run."""

    def __init__(self) -> None:
        self.path: Path | None = None

    def get(self) -> Path:
        if self.path is None:
            self.path = Path(tempfile.mkdtemp(prefix="twcmaster-xdist-"))
        return self.path

    def remove(self) -> None:
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            self.path = None


def configure_node(node, folder: Folder) -> None:
    """Tell a worker (before it starts) where its list and the locks go."""
    node.workerinput[FOLDER_KEY] = str(folder.get())


def make_scheduler(config, log, folder: Folder):
    """xdist's load-group scheduler, its groups read from the workers' lists."""
    from xdist.scheduler import LoadGroupScheduling

    class Scheduling(LoadGroupScheduling):
        groups: dict[str, str] = {}

        def schedule(self) -> None:
            if self.collection is None:  # the first call: every worker has collected
                self.groups = _read_groups(folder.get(), list(self.registered_collections))
            super().schedule()

        def _split_scope(self, nodeid: str) -> str:
            group = self.groups.get(nodeid)
            return group if group is not None else super()._split_scope(nodeid)

    return Scheduling(config, log)


def _read_groups(folder: Path, nodes) -> dict[str, str]:
    groups: dict[str, str] | None = None
    for node in nodes:
        worker = node.gateway.id
        try:
            listed = json.loads((folder / f"groups-{worker}.json").read_text())
        except (OSError, ValueError) as exc:
            raise RuntimeError(f"xdist groups: no list from worker {worker}: {exc}") from exc
        if groups is not None and listed != groups:
            raise RuntimeError(f"xdist groups: worker {worker} found other groups")
        groups = listed
    return groups or {}


# -- worker -----------------------------------------------------------------------------


def _folder(config) -> Path | None:
    workerinput = getattr(config, "workerinput", None)
    if not workerinput or FOLDER_KEY not in workerinput:
        return None
    return Path(workerinput[FOLDER_KEY])


def write_groups(config, items) -> None:
    """{node id: group} of the grouped tests, written whole (atomically) before the worker
    reports its collection to the controller."""
    folder = _folder(config)
    if folder is None:
        return
    groups = {item.nodeid: group for item in items if (group := group_of(item)) is not None}
    path = folder / f"groups-{config.workerinput['workerid']}.json"
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(groups))
    os.replace(temporary, path)


class Locks:
    """A worker's two lock files (opened once: flock locks belong to the open file)."""

    def __init__(self, folder: Path) -> None:
        self.gate = os.open(folder / "gate.lock", os.O_RDWR | os.O_CREAT, 0o600)
        self.run = os.open(folder / "run.lock", os.O_RDWR | os.O_CREAT, 0o600)

    @classmethod
    def of(cls, config) -> Locks | None:
        folder = _folder(config)
        if folder is None:
            return None
        if _LOCKS not in config.stash:
            config.stash[_LOCKS] = cls(folder)
        return config.stash[_LOCKS]

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Around a whole test: ``run.lock`` shared, taken past the gate."""
        fcntl.flock(self.gate, fcntl.LOCK_SH)
        try:
            fcntl.flock(self.run, fcntl.LOCK_SH)
        finally:
            fcntl.flock(self.gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(self.run, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def alone(self) -> Iterator[None]:
        """Around an exclusive test's call (inside ``running``): the gate closed, then
        ``run.lock`` alone; back to shared for the tear-down."""
        fcntl.flock(self.run, fcntl.LOCK_UN)
        fcntl.flock(self.gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(self.run, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self.run, fcntl.LOCK_SH)  # no one can take it EX: the gate
        finally:
            fcntl.flock(self.gate, fcntl.LOCK_UN)


@contextlib.contextmanager
def running(item) -> Iterator[None]:
    locks = Locks.of(item.config)
    if locks is None:
        yield
        return
    with locks.running():
        yield


@contextlib.contextmanager
def calling(item) -> Iterator[None]:
    locks = Locks.of(item.config) if item.get_closest_marker(EXCLUSIVE) else None
    if locks is None:
        yield
        return
    with locks.alone():
        yield
