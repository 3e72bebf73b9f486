"""The web page in a real browser (Debian's Chromium, headless, driven by Playwright) against
a real `twcmaster demo` process on a loopback port: two simulated TWCs, the built-in sky.

One demo and one browser serve the whole module (in file order): the page shows each TWC
with the amps the console prints; Charge Now pressed on the page changes the limit the
simulated TWCs accept (their console lines say so); a bad value is refused next to its
field and changes nothing; the chart has today's points; screenshots at a desktop and a
phone size (light and dark); last, the demo is stopped and the page says so.
"""

from __future__ import annotations

import time
from datetime import datetime

import pytest
import requests

from tests.web.browser import DemoProcess, chromium

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

CHARGE_NOW_AMPS = 20  # the total: each TWC gets its wiring limit, 10 A
PER_TWC_LIMIT_A = 10.0
DESKTOP = {"width": 1280, "height": 1000}
PHONE = {"width": 390, "height": 844}
WAIT_MS = 15_000


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("web-demo")
    with DemoProcess.start(folder) as process:
        yield process


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


@pytest.fixture(scope="module")
def page(browser, demo):
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(demo.url + "/")
    page.wait_for_selector("#twcs [data-twcid]")
    yield page
    context.close()


def card_amps(page, twcid: str) -> dict[str, float]:
    card = page.locator(f'#twcs [data-twcid="{twcid}"]')
    return {
        name: float(card.locator(f'[data-show="{name}"]').inner_text().split()[0])
        for name in ("offer", "limit", "drawn")
    }


def until(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s}s")
        time.sleep(0.2)


def matches_console(page, demo) -> bool:
    """Each TWC's card shows the amps its console lines show: the newest offer sent (0 when
    none was) and the limit applied exactly; the drawn amps within the 1 A the console does
    not reprint (a car ramping up moves faster than either shows it)."""
    console = demo.console_amps()
    twcids = [s["twcid"] for s in demo.snapshot()["slaves"]]
    if sorted(console) != sorted(twcids):
        return False
    for twcid in twcids:
        shown = card_amps(page, twcid)
        printed = console[twcid]
        if shown["offer"] != printed.get("offer", 0.0) or shown["limit"] != printed["limit"]:
            return False
        if abs(shown["drawn"] - printed["drawn"]) > 1.0:
            return False
    return True


def test_the_page_shows_each_twc_with_the_amps_the_console_shows(page, demo):
    twcids = [s["twcid"] for s in demo.snapshot()["slaves"]]
    assert len(twcids) == 2
    for twcid in twcids:
        card = page.locator(f'#twcs [data-twcid="{twcid}"]')
        assert card.locator('[data-show="title"]').inner_text() == f"TWC {twcid}"
        assert card.locator('[data-show="state"]').inner_text()  # in words
        # The master asks each TWC for its meter after it links: shown once answered.
        lifetime = card.locator('[data-show="lifetime"]')
        until(lambda at=lifetime: "kWh" in at.inner_text(), 10, f"TWC {twcid} lifetime kWh")
        assert card.locator('[data-show="voltage"]').inner_text().endswith("V")
    until(lambda: matches_console(page, demo), 10, "the page's amps = the console's")
    assert page.locator("#policy").inner_text() == demo.snapshot()["budget"]["policy"]
    assert "W" in page.locator("#generation").inner_text()
    assert page.locator("#reason").inner_text().startswith("Why ")


def test_charge_now_on_the_page_changes_the_offer_the_simulated_twcs_receive(page, demo):
    before = len(demo.console_lines())
    assert all(s["allowed_amps"] < PER_TWC_LIMIT_A for s in demo.snapshot()["slaves"])
    page.fill("#cn-amps", str(CHARGE_NOW_AMPS))
    page.select_option("#cn-duration", "3600")
    page.click("#cn-start")
    page.wait_for_selector("#charge-now .done:has-text('Charge Now at 20 A')")

    def accepted() -> bool:
        console = demo.console_amps(after_line=before)
        return len(console) == 2 and all(
            amps["limit"] == PER_TWC_LIMIT_A and amps["offer"] == PER_TWC_LIMIT_A
            for amps in console.values()
        )

    until(accepted, 10, "each simulated TWC accepting 10 A")
    page.wait_for_selector('[data-current="charge-now"]:has-text("On: 20 A")')
    until(lambda: matches_console(page, demo), 10, "the cards showing the new offers")
    assert page.locator("#policy").inner_text() == "Charge Now"


def charging_now_at_the_limit(demo) -> None:
    """A Charge Now through the API the page uses, until every TWC applies its limit: what
    the test needs, whatever ran before in this demo (tests may run in any worker)."""
    charge = {"chargeNowRate": 20, "chargeNowDuration": 3600}
    assert requests.post(demo.url + "/api/chargeNow", json=charge, timeout=10).ok
    until(
        lambda: all(s["allowed_amps"] == PER_TWC_LIMIT_A for s in demo.snapshot()["slaves"]),
        20,
        "every TWC at its limit",
    )


def test_a_bad_value_shows_an_error_next_to_the_field_and_changes_nothing(page, demo):
    charging_now_at_the_limit(demo)
    settings_file = demo.folder / "settings.json"
    saved = settings_file.read_bytes()
    before = demo.snapshot()["settings"]
    for bad, says in (("99", "expected 1 to 32, got 99"), ("lots", "expected a number")):
        page.fill("#cn-amps", bad)
        page.click("#cn-start")
        error = page.locator("#cn-amps-error")
        error.wait_for()
        assert says in error.inner_text()
        assert page.get_attribute("#cn-amps", "aria-invalid") == "true"
        assert page.evaluate("document.activeElement.id") == "cn-amps"  # focused to fix it
    page.fill("#sc-start", "")
    page.check("#sc-enabled")
    page.fill("#sc-amps", "16")
    page.check("#schedule input[name=monday]")
    page.click("#schedule button[type=submit]")
    page.wait_for_selector("#sc-start-error:has-text('expected a number')")
    assert settings_file.read_bytes() == saved
    assert demo.snapshot()["settings"] == before
    assert all(s["allowed_amps"] == PER_TWC_LIMIT_A for s in demo.snapshot()["slaves"])


def test_the_chart_has_todays_points(page, demo):
    chart = page.locator("#chart")
    until(lambda: int(chart.get_attribute("data-points") or 0) >= 3, 20, "three chart points")
    last_epoch = float(chart.get_attribute("data-last-epoch"))
    first_epoch = float(chart.get_attribute("data-first-epoch"))
    assert datetime.fromtimestamp(last_epoch).date() == datetime.now().date()
    assert datetime.fromtimestamp(first_epoch).date() == datetime.now().date()
    names = chart.locator("path").evaluate_all("paths => paths.map(p => p.dataset.series)")
    twcids = sorted(s["twcid"] for s in demo.snapshot()["slaves"])
    assert names == ["Generation", "Consumption"] + [f"TWC {t} charging" for t in twcids]
    assert chart.locator("svg").count() == 1
    assert "points from" in chart.get_attribute("aria-label")


def test_screenshots_at_a_desktop_and_a_phone_size(browser, page, demo, tmp_path_factory):
    folder = tmp_path_factory.mktemp("screenshots")
    charging_now_at_the_limit(demo)  # both cars charging in the pictures
    shots = {
        "desktop-light.png": (DESKTOP, "light"),
        "phone-light.png": (PHONE, "light"),
        "phone-dark.png": (PHONE, "dark"),
    }
    for name, (viewport, scheme) in shots.items():
        context = browser.new_context(viewport=viewport, color_scheme=scheme)
        shot = context.new_page()
        shot.goto(demo.url + "/")
        shot.wait_for_selector("#twcs [data-twcid]")
        # (wait_for_function would evaluate text in the page, which its CSP forbids)
        chart = shot.locator("#chart")
        until(lambda c=chart: int(c.get_attribute("data-points") or 0) > 2, 15, "the chart")
        shot.locator(".twc.charging").nth(1).wait_for(timeout=WAIT_MS)  # both cars charging
        # Nothing sideways on a phone: the page is no wider than the screen.
        width = shot.evaluate("document.documentElement.scrollWidth")
        assert width <= viewport["width"], f"{name}: {width}px wide"
        shot.screenshot(path=str(folder / name), full_page=True)
        context.close()
        assert (folder / name).stat().st_size > 10_000
    print(f"\nscreenshots in {folder}")


def test_the_controls_work_from_the_keyboard(page, demo):
    page.select_option("#policy-select", "Track Green Energy")
    page.focus("#policy-select")
    page.keyboard.press("Tab")  # to the form's Apply button
    assert page.evaluate("document.activeElement.textContent") == "Apply"
    page.keyboard.press("Enter")
    page.wait_for_selector("#policy-form .done:has-text('policy Track Green Energy')")
    assert demo.snapshot()["settings"]["forced_policy"] == "Track Green Energy"
    page.focus("#cn-cancel")
    page.keyboard.press("Enter")
    page.wait_for_selector('[data-current="charge-now"]:has-text("Off")')


def test_the_other_controls_change_the_settings(page, demo):
    page.check("#sc-enabled")
    page.fill("#sc-start", "22:30")
    page.fill("#sc-end", "06:00")
    page.fill("#sc-amps", "16")
    page.uncheck("#schedule input[name=monday]")
    page.check("#schedule input[name=tuesday]")
    page.click("#schedule button[type=submit]")
    page.wait_for_selector("#schedule .done:has-text('scheduled charging at 16A')")
    assert demo.snapshot()["settings"]["schedule"] == [
        {"amps": 16, "startHour": 22.5, "endHour": 6, "daysBitmap": 2}
    ]
    page.wait_for_selector('[data-current="schedule"]:has-text("22:30–06:00 at 16 A")')

    page.select_option("#ns-action", "2")
    page.fill("#ns-amps", "8")
    page.click("#non-scheduled button[type=submit]")
    page.wait_for_selector("#non-scheduled .done:has-text('nonScheduledAction 2')")
    settings = demo.snapshot()["settings"]
    assert (settings["non_scheduled_action"], settings["non_scheduled_amps_max"]) == (2, 8)

    page.fill("#of-name", "heat pump")
    page.fill("#of-value", "1500")
    page.click("#offsets button[type=submit]")
    page.wait_for_selector("#offset-list li:has-text('heat pump: 1500 W')")
    assert demo.snapshot()["settings"]["consumption_offsets"] == {
        "heat pump": {"value": 1500, "unit": "W"}
    }
    page.click("#offset-list button[aria-label='Delete the offset heat pump']")
    page.wait_for_selector("#offset-list li", state="detached")
    assert demo.snapshot()["settings"]["consumption_offsets"] == {}

    twcid = page.locator("#twcs [data-twcid]").first.get_attribute("data-twcid")
    card = f'#twcs [data-twcid="{twcid}"]'
    page.click(f"{card} [data-action=allow]")
    page.wait_for_selector(f"{card} [data-show=state]:has-text('switched off by hand')")
    assert demo.snapshot()["settings"]["denied_twcids"] == [twcid]
    page.click(f"{card} [data-action=allow]:has-text('Allow charging')")
    page.wait_for_selector(f"{card} [data-action=allow]:has-text('Switch charging off')")
    assert demo.snapshot()["settings"]["denied_twcids"] == []


def test_when_the_daemon_stops_the_page_says_so(browser, tmp_path):
    # Its own demo: stopping the module's would leave nothing for the tests after it.
    with DemoProcess.start(tmp_path, slaves=1) as own:
        context = browser.new_context(viewport=DESKTOP)
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto(own.url + "/")
        page.wait_for_selector("#twcs [data-twcid]")
        assert page.locator("#down").is_hidden()
        own.stop()
        page.wait_for_selector("#down:has-text('not answering')")
        assert "stale" in page.get_attribute("#main", "class")
        context.close()
    history = tmp_path / "history.json"
    assert history.exists(), "the chart's history saved at stop"


def test_a_twcs_priority_is_set_on_its_card(page, demo):
    twcid = page.locator("#twcs [data-twcid]").first.get_attribute("data-twcid")
    card = f'#twcs [data-twcid="{twcid}"]'
    page.fill(f"{card} [data-input=priority]", "7")
    page.click(f"{card} [data-action=priority]")
    page.wait_for_selector(f"{card} [data-show=priority]:has-text('Priority 7')")
    until(
        lambda: {s["twcid"]: s["priority"] for s in demo.snapshot()["slaves"]}[twcid] == 7,
        10,
        "the snapshot's priority",
    )
    page.fill(f"{card} [data-input=priority]", "1.5")  # not a whole number
    page.click(f"{card} [data-action=priority]")
    error = page.locator(f"{card} [data-fields=priority] .error")
    error.wait_for()
    until(lambda: "whole number" in error.inner_text(), 10, "the error next to the field")
    assert {s["twcid"]: s["priority"] for s in demo.snapshot()["slaves"]}[twcid] == 7
    page.fill(f"{card} [data-input=priority]", "")  # back to config.json's (none: 0)
    page.click(f"{card} [data-action=priority]")
    page.wait_for_selector(f"{card} [data-show=priority]:has-text('Priority 0')")
