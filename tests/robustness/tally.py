"""The end-of-session tally of the robustness tests (issue 7): what was tried, for the issue's
closing note. The counts are ``profiles.TALLY``; ``tests/conftest.py`` has the hooks.

Under pytest-xdist each worker counts what its own tests tried and hands its counts back when
it finishes (``worker_counts``); the controller adds them up (``add_worker``) and prints one
tally for the whole run, saying over how many workers it was summed. Without xdist the tests
count straight into the one ``TALLY`` this prints.
"""

from __future__ import annotations

from tests.robustness.profiles import BUDGET, LONG_RUN_BYTES, PROFILE_NAME, TALLY

#: The key of a worker's counts in its ``workeroutput``.
WORKER_OUTPUT_KEY = "twcmaster_robustness_tally"

# The order of the summary lines; anything else counted follows, sorted.
_ORDER = (
    "stateful examples",
    "stateful steps",
    "simulated seconds",
    "frames sent by the master",
    "heartbeats checked",
    "set-limit offers checked",
    "fuzz examples",
    "frames fed",
    "valid frames interleaved",
    "bytes fed",
    "decode calls",
    "decode CLI inputs",
    "exceptions escaped",
)

#: Workers whose counts were added, and workers that ended without handing any back (they
#: crashed): xdist's controller only.
_workers_added: list[str] = []
_workers_lost: list[str] = []


def worker_counts() -> dict[str, int]:
    """This worker's counts, plain (what execnet can carry back to the controller)."""
    return {key: int(n) for key, n in TALLY.items()}


def add_worker(name: str, counts: dict[str, int] | None) -> None:
    """A finished worker's counts (None: it handed none back) into the controller's tally."""
    if counts is None:
        _workers_lost.append(name)
        return
    TALLY.update(counts)
    _workers_added.append(name)


def write(terminalreporter, elapsed_s: float) -> None:
    """The tally as summary lines; nothing when no robustness test ran (and no worker's
    counts were lost)."""
    if not TALLY and not _workers_lost:
        return
    write_line = terminalreporter.write_line
    terminalreporter.write_sep("-", f"robustness tally (hypothesis profile {PROFILE_NAME!r})")
    keys = [k for k in _ORDER if k in TALLY] + sorted(k for k in TALLY if k not in _ORDER)
    if "exceptions escaped" not in TALLY:
        keys.append("exceptions escaped")
    for key in keys:
        write_line(f"  {key:<34} {TALLY[key]:>14,}")
    write_line(f"  {'wall time (s)':<34} {elapsed_s:>14,.1f}")
    budget = ", ".join(f"{k} {n} x {per:,}" for k, (n, per) in BUDGET.items())
    write_line(f"  budget (batches x examples): {budget}; long run {LONG_RUN_BYTES:,} bytes")
    if _workers_added:
        names = ", ".join(sorted(_workers_added))
        write_line(f"  summed over {len(_workers_added)} xdist worker(s): {names}")
    if _workers_lost:
        names = ", ".join(sorted(_workers_lost))
        write_line(f"  NOT counted: xdist worker(s) that ended without their counts: {names}")
