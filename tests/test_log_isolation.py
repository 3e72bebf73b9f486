"""A test that points the logs at a stream which is then closed (as ``capsys`` is when a test
that ran a ``main`` ends) leaves the next test's logging working. CI once failed that way: a
settings warning in a later test met the closed stream of tests/test_bench.py."""

import io

import pytest

from twcmaster.logs import configure_logging, get_logger

pytestmark = pytest.mark.xdist_group("log_isolation")  # one worker, in file order


def test_a_test_leaves_the_logs_on_a_stream_it_closes():
    stream = io.StringIO()
    configure_logging(20, "console", stream=stream)
    get_logger("test").warning("into the test's own stream")
    assert "into the test's own stream" in stream.getvalue()
    stream.close()


def test_the_next_test_still_logs():
    get_logger("test").warning("after a closed stream")  # raised ValueError before conftest's fix
