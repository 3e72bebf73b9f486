"""Issue 12's done-when: ``twcmaster demo --slaves 3`` shows the cars being started one after
another as the sun rises, on the console.

The demo runs in real time (a morning takes minutes), so this runs its parts in virtual time:
the demo's circuit (``DEMO_CONFIG``: 32 A shared, 10 A per TWC, 6 A floor, no start delay),
its sky (``demo_profile``, from 06:45 as the demo starts it) and three TWCs with cars, through
the real core and the console the demo prints.
"""

from __future__ import annotations

import io
import re

from twcmaster.config import config_from_dict
from twcmaster.demo import DEMO_CONFIG, DEMO_SKY_START_S
from twcmaster.outputs.console import ConsoleStatus
from twcmaster.sim.sky import Sky, demo_profile
from twcmaster.simulate import DaySimulation

MORNING_END_S = 11 * 3600
# "SHB 8298: 01 02.50/06.00A ...": the console's slave heartbeat line; state 01 is charging.
HEARTBEAT_LINE = re.compile(
    r"^(\d\d):(\d\d):(\d\d): SHB ([0-9A-F]{4}): ([0-9A-F]{2}) ", re.MULTILINE
)


def test_the_demo_starts_three_cars_one_after_another_as_the_sun_rises():
    config = config_from_dict(DEMO_CONFIG, "/tmp").settings
    sky = Sky(demo_profile(), wrap=True)
    sim = DaySimulation(
        config, sky, slaves=3, seed=1, start_s=DEMO_SKY_START_S, end_s=MORNING_END_S
    )
    console = io.StringIO()
    sim.attach_console(ConsoleStatus(console, clock=lambda: sim.now, wallclock=sim._wallclock))
    sim.run()

    # The first time 1, 2 and 3 cars charge together (the console's SHB lines, in order).
    charging: dict[str, bool] = {}
    first_together_s: dict[int, int] = {}
    for match in HEARTBEAT_LINE.finditer(console.getvalue()):
        hours, minutes, seconds, twcid, state = match.groups()
        charging[twcid] = state == "01"
        together = sum(charging.values())
        at_s = int(hours) * 3600 + int(minutes) * 60 + int(seconds)
        first_together_s.setdefault(together, at_s)
    assert all(n in first_together_s for n in (1, 2, 3)), first_together_s
    one, two, three = (first_together_s[n] for n in (1, 2, 3))
    # One after another, not together: a car is added once the sun feeds one more.
    assert two - one >= 60 and three - two >= 60, first_together_s
    # ...as the sun rises: the surplus when each car is added is higher than before.
    surplus_w = [sky.surplus_w(at_s) for at_s in (one, two, three)]
    assert surplus_w[0] < surplus_w[1] < surplus_w[2], (first_together_s, surplus_w)
