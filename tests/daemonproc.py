"""`twcmaster run` as a user starts it, for tests that need the real process: its config
written to a directory, `twcmaster slave-sim` answering on a pty, the master in its own
process with stdout and stderr in files (a verbose log would fill a pipe and block it), and
a signal to stop it, timed.

    with slave_sim(tmp_path / "ttyTWC"):
        master = Master.start(write_config(tmp_path, sources={...}))
        ...
        exit_s = master.stop()  # SIGTERM; seconds until it exited (None: it did not)
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.realparts import end

WIRING = {"wiringMaxAmpsAllTWCs": 32, "wiringMaxAmpsPerTWC": 32, "minAmpsPerTWC": 6}
PTY_WAIT_S = 10.0


@contextlib.contextmanager
def slave_sim(link: Path, *args: str) -> Iterator[subprocess.Popen]:
    """`twcmaster slave-sim --pty LINK ...` as its own process, until the block ends."""
    sim = subprocess.Popen(
        [sys.executable, "-m", "twcmaster", "slave-sim", "--pty", str(link), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + PTY_WAIT_S
        while not link.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert link.exists(), "slave-sim did not create its pty"
        yield sim
    finally:
        end(sim, 10)


def write_config(
    directory: Path,
    *,
    sources: dict[str, Any],
    link: Path | None = None,
    **config: Any,
) -> Path:
    """``directory/config.json`` for `twcmaster run`: the wiring, settingsPath =
    ``directory``, the pty ``link`` (default ``directory/ttyTWC``), and ``sources``."""
    path = directory / "config.json"
    document = {
        "config": {**WIRING, "settingsPath": str(directory), **config},
        "interface": {"RS485": {"port": str(link or directory / "ttyTWC")}},
        "sources": sources,
    }
    path.write_text(json.dumps(document, indent=2))
    return path


class Master:
    """A running `twcmaster run --config ...`."""

    def __init__(self, process: subprocess.Popen, out_path: Path, err_path: Path) -> None:
        self.process = process
        self.out_path = out_path
        self.err_path = err_path

    @classmethod
    def start(cls, config: Path, *, env: dict[str, str] | None = None) -> Master:
        """Started next to ``config`` (its output in master.stdout / master.stderr there);
        ``env`` adds to the environment."""
        out_path = config.parent / "master.stdout"
        err_path = config.parent / "master.stderr"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            process = subprocess.Popen(
                [sys.executable, "-m", "twcmaster", "run", "--config", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env={**os.environ, **(env or {})},
            )
        return cls(process, out_path, err_path)

    def stop(self, sig: int = signal.SIGTERM, wait_s: float = 10.0) -> float | None:
        """Send ``sig``; the seconds until the process exited, or None (then it is killed)."""
        sent = time.monotonic()
        self.process.send_signal(sig)
        try:
            self.process.wait(wait_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            return None
        return time.monotonic() - sent

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    @property
    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")
