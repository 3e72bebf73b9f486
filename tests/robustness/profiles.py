"""Hypothesis profiles and run budgets of the robustness tests, and what they tried.

Two profiles (``TWCMASTER_HYPOTHESIS_PROFILE``, default ``suite``):

* ``suite``: bounded so that all of ``tests/robustness`` runs in well under a minute on two
  cores; it runs with the whole suite (``make test``).
* ``fuzz``: the long run of ``make fuzz`` (``pytest tests/robustness --timeout=0``): at least
  10^5 examples of the stateful machine and far more than 10^5 fuzzed frames, in about 20 to
  30 minutes on this machine; random seeds each run, no deadline.

The selected profile is loaded as Hypothesis's default only when the variable is set (so that
a plain ``make test`` leaves the other tests' Hypothesis defaults alone); the robustness tests
always apply it explicitly (``given_settings``).

``TALLY`` counts what the tests tried (examples, steps, frames and bytes fed, exceptions that
escaped); ``tally.py`` prints it at the end of the session for the issue's closing note,
summed over the pytest-xdist workers when the tests ran in several.
"""

from __future__ import annotations

import os
from collections import Counter

from hypothesis import HealthCheck, Phase, settings

PROFILE_ENV = "TWCMASTER_HYPOTHESIS_PROFILE"
SUITE, FUZZ = "suite", "fuzz"

_COMMON = dict(
    deadline=None,  # simulated time varies per example; a wall-clock deadline means nothing
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,  # a failure prints the blob that replays it (@reproduce_failure)
)
settings.register_profile(SUITE, max_examples=100, stateful_step_count=30, **_COMMON)
settings.register_profile(
    FUZZ,
    max_examples=1_000,
    # Short runs, many of them: 8 steps of ~2 s of bus time each; the suite goes deeper.
    stateful_step_count=8,
    derandomize=False,
    # Batches stay independent: a failure found in one is not replayed by every later one
    # (its report prints the blob that reproduces it).
    database=None,
    # The explicit and reuse phases are cheap; shrinking stays on so a failure is readable.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    **_COMMON,
)

PROFILE_NAME = os.environ.get(PROFILE_ENV, SUITE).strip() or SUITE
if PROFILE_NAME not in (SUITE, FUZZ):
    raise RuntimeError(f"{PROFILE_ENV}={PROFILE_NAME!r}: expected {SUITE!r} or {FUZZ!r}")
if PROFILE_ENV in os.environ:
    settings.load_profile(PROFILE_NAME)
PROFILE = settings.get_profile(PROFILE_NAME)

#: Per test kind: (batches, examples per batch). A batch is one Hypothesis run; the fuzz
#: profile splits a test into many (``batches``, a parametrisation), because one engine keeps
#: a record of every example it ran (~70 kB each for the stateful machine: 10^5 examples in
#: one run would take gigabytes). The fuzz figures are sized for ~20-30 min on this 2-core
#: machine; see the tally printed at the end.
BUDGETS: dict[str, dict[str, tuple[int, int]]] = {
    SUITE: {
        "stateful": (1, 250),
        "receive": (1, 200),
        "core_receive": (1, 80),
        "decode": (1, 1_500),
        "decode_cli": (1, 300),
    },
    FUZZ: {
        "stateful": (100, 1_000),
        "receive": (10, 1_000),
        "core_receive": (5, 1_000),
        "decode": (10, 5_000),
        "decode_cli": (5, 1_000),
    },
}
BUDGET = BUDGETS[PROFILE_NAME]
#: Bytes of noise and heartbeats through ``Core`` in the bounded-memory run.
LONG_RUN_BYTES = {SUITE: 300_000, FUZZ: 5_000_000}[PROFILE_NAME]


def batches(kind: str) -> range:
    """The batches of a test kind, for ``pytest.mark.parametrize("batch", batches(kind))``."""
    return range(BUDGET[kind][0])


def given_settings(kind: str, **overrides) -> settings:
    """The profile's settings with this test's number of examples per batch."""
    return settings(PROFILE, max_examples=BUDGET[kind][1], **overrides)


#: What was tried, for the end-of-session summary.
TALLY: Counter[str] = Counter()
