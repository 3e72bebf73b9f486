"""What the demo does not show, in a real browser: a moment with alarms (the serial port down,
a stale energy reading, the bus's own alarm text) and a car known to the car API, served by
the HTTP API from a real snapshot (``tests/http/served.py``). The page says each alarm in
words and shows the car's name and its API state on the TWC's card."""

from __future__ import annotations

import pytest

from tests.http.served import moment, serve
from tests.web.browser import chromium
from twcmaster.carview import CarStatus, CarsView
from twcmaster.control.green import SiteReading

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

VIN = "5YJ3E1EA7KF000001"  # the served moment's charging TWC reports it
FOREIGN_MASTER = "another master (TWCID 7777) is on the bus: two masters fight over the TWCs"


def car() -> CarStatus:
    return CarStatus(
        vin=VIN,
        name="Blue",
        location="home",
        online="online",
        battery_level=63,
        charge_limit_soc=80,
        charging_state="Charging",
        last_command="start",
        last_result="ok",
        last_command_at="",
        next_command_at="",
    )


def test_alarms_in_words_and_the_cars_api_state(tmp_path):
    stale = SiteReading(500, 200, None, None, 0.0, True, "Fronius: no answer for 90 s", ())
    cars = CarsView(enabled=True, state="ok", message="", usable=True, cars=(car(),))
    snapshot = moment(link_up=False, site=stale, alarms=(FOREIGN_MASTER,), cars=cars)
    with serve(tmp_path, snapshot=snapshot) as served, chromium() as browser:
        page = browser.new_page()
        page.set_default_timeout(10_000)
        page.goto(served.url + "/")
        page.wait_for_selector("#alarms:not([hidden])")
        alarms = page.locator("#alarm-list li").all_inner_texts()
        assert alarms[0] == "The serial port is down: no TWC can be reached."
        assert "The energy reading is stale: Fronius: no answer for 90 s." in alarms
        assert FOREIGN_MASTER in alarms
        card = page.locator('#twcs [data-twcid="1234"]')
        assert card.locator('[data-show="car"]').inner_text() == f"Car: {VIN} (Blue)"
        api = card.locator('[data-show="carapi"]').inner_text()
        assert api == "Car API: online, Charging, battery 63%, last start: ok"
        assert card.locator('[data-show="state"]').inner_text() == "charging"
