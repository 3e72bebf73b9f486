"""Real parts in tests (a broker, a Docker engine, simulated TWCs in their own process).

* ``missing``: one rule for a test whose real part or tool is missing (a broker, an engine, a
  linter, openssl): skip saying why, except under ``CI=true``, where it fails: a CI image
  without the part would otherwise pass without testing it;
* ``end``: stop a part's process: SIGTERM, then SIGKILL if it does not go in time."""

from __future__ import annotations

import os
import subprocess

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


def missing(why: str) -> None:
    """Skip the test with ``why``, or fail it under ``CI=true``."""
    if in_ci():
        pytest.fail(why)
    pytest.skip(why)


def end(process: subprocess.Popen | None, wait_s: float) -> None:
    """SIGTERM, up to ``wait_s`` for it to exit, then SIGKILL (and reap it)."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(wait_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(wait_s)
