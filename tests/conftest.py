"""Test-wide set-up: logs at info level in readable form (raw frames would flood failures); the
robustness tally at the end of the session, summed over the pytest-xdist workers when the tests
ran in several (``tests/robustness/tally.py``).
"""

import time

import pytest

from tests.robustness import tally
from twcmaster.logs import configure_logging

_STARTED = time.monotonic()


@pytest.fixture(autouse=True, scope="session")
def _readable_logs():
    configure_logging(20, "console")


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
