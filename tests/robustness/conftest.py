"""Robustness tests (issue 7): Hypothesis profiles and the end-of-session tally.

``TWCMASTER_HYPOTHESIS_PROFILE=fuzz`` (``make fuzz``) selects the long profile; see
``profiles.py``. The tally says what was tried, for the issue's closing note.
"""

from __future__ import annotations

import time

from tests.robustness.profiles import BUDGET, LONG_RUN_BYTES, PROFILE_NAME, TALLY

_STARTED = time.monotonic()

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


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if not TALLY:
        return
    elapsed = time.monotonic() - _STARTED
    write = terminalreporter.write_line
    terminalreporter.write_sep("-", f"robustness tally (hypothesis profile {PROFILE_NAME!r})")
    keys = [k for k in _ORDER if k in TALLY] + sorted(k for k in TALLY if k not in _ORDER)
    if "exceptions escaped" not in TALLY:
        keys.append("exceptions escaped")
    for key in keys:
        write(f"  {key:<34} {TALLY[key]:>14,}")
    write(f"  {'wall time (s)':<34} {elapsed:>14,.1f}")
    budget = ", ".join(f"{k} {n} x {per:,}" for k, (n, per) in BUDGET.items())
    write(f"  budget (batches x examples): {budget}; long run {LONG_RUN_BYTES:,} bytes")
