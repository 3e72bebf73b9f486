"""Test-wide set-up: logs at info level in readable form (raw frames would flood failures); the
tests that share a real resource kept together in one pytest-xdist worker, and the ``exclusive``
ones run alone; the robustness tally at the end of the session, summed over the workers
(``tests/robustness/tally.py``).

``make test`` runs the suite in pytest-xdist workers with ``--dist loadgroup``
(``scripts/test.sh``); ``tests/parallel.py`` makes the groups work on this pytest and runs the
exclusive tests alone. All of this works the same in one process (``-n 0``, ``-p no:xdist``).
"""

import time

import pytest

from tests import parallel
from tests.robustness import tally
from twcmaster.logs import configure_logging

_STARTED = time.monotonic()
_GROUPS_FOLDER = parallel.Folder()

#: Tests with this marker share one real resource and run in one worker, one after another:
#: marker -> xdist group. The container tests share the dockerd they start (once per worker
#: that runs any of them) and the engine's images and containers.
SERIAL_GROUPS = {"container": "container"}


@pytest.fixture(autouse=True)
def _readable_logs():
    """Logs at info level to the stderr of the moment, set again before every test: a test that
    runs a ``main`` (bench, soak, the CLI) configures logging to its own ``capsys`` stream, which
    pytest closes when that test ends; a later test in the worker (or a module fixture set up
    before it) must not log into it. Set again after the test too, once that stream is gone."""
    configure_logging(20, "console")
    yield
    configure_logging(20, "console")


@pytest.hookimpl(tryfirst=True)  # marks made before anything reads them
def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        for marker, group in SERIAL_GROUPS.items():
            if item.get_closest_marker(marker) is not None:
                item.add_marker(pytest.mark.xdist_group(group))
        # A module-scoped fixture (a simulated day, a virtual soak) is made once for the tests
        # of its module that use it: they share a worker so that it is made once in all, not
        # once in each worker (unless a group above already holds the test).
        if item.get_closest_marker("xdist_group") is None and _uses_module_fixture(item):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))


def _uses_module_fixture(item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    defs = getattr(info, "name2fixturedefs", {}) or {}
    return any(d.scope in ("module", "package") for group in defs.values() for d in group)


@pytest.hookimpl(tryfirst=True)  # before xdist reports the collection to the controller
def pytest_collection_finish(session) -> None:
    parallel.write_groups(session.config, session.items)


# Outermost: waiting for an exclusive test to end is not counted in a test's timeout.
@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    with parallel.running(item):
        return (yield)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_call(item):
    with parallel.calling(item):
        return (yield)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    parallel.configure_node(node, _GROUPS_FOLDER)


@pytest.hookimpl(optionalhook=True, tryfirst=True)  # before xdist's own scheduler
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadgroup":
        return None
    return parallel.make_scheduler(config, log, _GROUPS_FOLDER)


def pytest_unconfigure(config) -> None:
    _GROUPS_FOLDER.remove()


def pytest_sessionfinish(session) -> None:
    output = getattr(session.config, "workeroutput", None)
    if output is not None:  # an xdist worker: hand the tally to the controller
        output[tally.WORKER_OUTPUT_KEY] = tally.worker_counts()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    """xdist's controller: a worker ended; its tally counts join the controller's."""
    output = getattr(node, "workeroutput", None) or {}
    tally.add_worker(node.gateway.id, output.get(tally.WORKER_OUTPUT_KEY))


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if hasattr(config, "workerinput"):
        return  # a worker's summary goes nowhere; the controller prints the sum
    tally.write(terminalreporter, time.monotonic() - _STARTED)
