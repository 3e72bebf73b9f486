"""Test-wide set-up: logs at info level in readable form (raw frames would flood failures)."""

import pytest

from twcmaster.logs import configure_logging


@pytest.fixture(autouse=True, scope="session")
def _readable_logs():
    configure_logging(20, "console")
