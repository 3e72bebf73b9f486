"""Golden run: the demo's circuit, sky and two cars for half an hour in virtual time, its console
lines and figures compared byte for byte with the stored ones.

They were captured before the core was reshaped to return events (issue 8) and have not
changed since: a refactor that changes a console line or a figure fails here. When a change
of behaviour is meant, regenerate them with ``TWCMASTER_UPDATE_GOLDEN=1 make test`` (then
``git diff tests/golden`` shows what changed) and say why in the commit.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

from twcmaster.config import config_from_dict
from twcmaster.demo import DEMO_CONFIG
from twcmaster.outputs.console import CONSOLE_AMPS_JITTER_A, ConsoleStatus
from twcmaster.sim.sky import Sky, builtin_profile
from twcmaster.simulate import DaySimulation

GOLDEN = Path(__file__).parent / "golden"
SEED = 3
RUN_S = 1800
START_S = 10 * 3600  # 10:00 of the built-in day: charging from the first minutes


def run_demo_day() -> tuple[str, str]:
    config = config_from_dict(DEMO_CONFIG, "/tmp").settings
    sim = DaySimulation(
        config,
        Sky(builtin_profile()),
        slaves=2,
        seed=SEED,
        start_s=START_S,
        end_s=START_S + RUN_S,
    )
    lines = io.StringIO()
    sim.attach_console(
        ConsoleStatus(
            lines,
            amps_jitter_a=CONSOLE_AMPS_JITTER_A,
            clock=lambda: sim.now,
            wallclock=sim._wallclock,
        )
    )
    figures = sim.run().to_dict()
    figures.pop("wall_time_s")
    return lines.getvalue(), json.dumps(figures, indent=1)


def test_console_lines_and_figures_are_the_golden_ones():
    console, figures = run_demo_day()
    console_file = GOLDEN / f"demo-seed{SEED}.console"
    figures_file = GOLDEN / f"demo-seed{SEED}.json"
    if os.environ.get("TWCMASTER_UPDATE_GOLDEN"):
        console_file.write_text(console)
        figures_file.write_text(figures)
    assert console.count("\n") > 1000  # a real run, not an empty one
    assert console == console_file.read_text()
    assert figures == figures_file.read_text()
