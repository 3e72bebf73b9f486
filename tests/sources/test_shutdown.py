"""`twcmaster run` stops on SIGTERM however its energy source misbehaves: the real process,
against `twcmaster slave-sim` over a pty, with a URL source on a loopback server that
trickles one byte every 0.5 s forever (the field report: "twcmaster stopped" was logged, the
process never exited, and only kill -9 ended it)."""

from __future__ import annotations

import time

import pytest

from tests.daemonproc import Master, slave_sim, write_config
from tests.sources.conftest import Canned, trickle

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

EXIT_WITHIN_S = 5.0


def test_sigterm_ends_the_daemon_while_a_source_trickles(tmp_path, http_server):
    http_server.route("/energy/pv", Canned.streamed(trickle(b"1", every_s=0.5)))
    config = write_config(
        tmp_path,
        sources={
            "URL": {
                "enabled": True,
                "url": f"{http_server.url}/energy",
                "generationItem": "pv",
                "interval": 1,
                "timeout": 30,  # the fetch under way outlives the shutdown by far
            }
        },
    )
    with slave_sim(tmp_path / "ttyTWC"):
        master = Master.start(config)
        deadline = time.monotonic() + 15
        while not http_server.requests_to("/energy/pv") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert http_server.requests_to("/energy/pv"), master.stderr
        time.sleep(1.0)  # the fetch is well into its trickle
        exit_s = master.stop(wait_s=EXIT_WITHIN_S + 5)

    assert exit_s is not None, f"still running {EXIT_WITHIN_S + 5} s after SIGTERM"
    assert exit_s < EXIT_WITHIN_S
    assert master.returncode == 0, master.stderr
    assert "twcmaster stopped" in master.stderr
    assert "Traceback" not in master.stderr
    print(f"exited {exit_s:.2f} s after SIGTERM")
