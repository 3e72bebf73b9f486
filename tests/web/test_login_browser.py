"""The web page beyond loopback, in a real browser: `twcmaster demo` listening on one of this
machine's own network addresses with a token. Without the token the page refuses (the login
form, nothing of the daemon's state; its feed, history and controls answer 401); a wrong
token is refused; the right one is kept in an HttpOnly, SameSite=Strict cookie (a value
derived from it, not the token) and the page works, Charge Now included; a request riding on
the cookie without the page's marks (a cross-site form) is refused; no page holds a secret.
"""

from __future__ import annotations

import pytest
import requests

from tests.web.browser import DemoProcess, chromium, this_machines_address

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

TOKEN = "web-test-token-5f1c2a9e7b3d4c6a8e0f"
WAIT_MS = 15_000


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    address = this_machines_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to listen on")
    folder = tmp_path_factory.mktemp("web-login")
    with DemoProcess.start(folder, listen_ip=address, token=TOKEN) as process:
        yield process


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


def test_without_the_token_the_page_refuses(browser, demo):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(demo.url + "/")
    assert page.url == demo.url + "/login"
    assert page.locator("#token").count() == 1
    assert page.locator("#twcs").count() == 0
    for path in ("/events", "/api/v1/history", "/api/v1/snapshot"):
        answer = page.request.get(demo.url + path)
        assert answer.status == (401 if path != "/api/v1/snapshot" else 200), path
    refused = page.request.post(
        demo.url + "/api/chargeNow",
        data={"chargeNowRate": 20, "chargeNowDuration": 600},
        headers={"X-Twcmaster-Page": "1", "Origin": demo.url},
    )
    assert refused.status == 401
    page.fill("#token", "not-the-token")
    page.click("button[type=submit]")
    page.wait_for_selector("#failed:has-text('not the token')")
    assert context.cookies() == []
    assert demo.snapshot()["settings"]["charge_now_amps"] == 0
    context.close()


def test_with_the_token_the_page_works_and_keeps_it_safely(browser, demo):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(demo.url + "/")
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_selector("#twcs [data-twcid]")
    assert page.url == demo.url + "/"
    (cookie,) = context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert TOKEN not in cookie["value"]
    assert page.evaluate("document.cookie") == ""  # the page's scripts cannot read it
    page.fill("#cn-amps", "12")
    page.click("#cn-start")
    page.wait_for_selector("#charge-now .done:has-text('Charge Now at 12 A')")
    assert demo.snapshot()["settings"]["charge_now_amps"] == 12
    for path in ("/", "/login", "/static/app.js", "/static/app.css", "/api/getConfig"):
        assert TOKEN not in page.request.get(demo.url + path).text(), path
    page.click("#logout button")
    page.wait_for_url(demo.url + "/login")
    assert context.cookies() == []
    context.close()


def test_the_cookie_alone_does_not_steer(browser, demo):
    """What a form on another site could send with the cookie: no page header, its own
    Origin. Refused; only the page's own requests carry both marks."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(demo.url + "/login")
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(demo.url + "/")
    session = {c["name"]: c["value"] for c in context.cookies()}
    context.close()
    body = '{"chargeNowRate": 30, "chargeNowDuration": 600}'
    for headers in (
        {"Origin": demo.url},
        {"Origin": "http://attacker.example", "X-Twcmaster-Page": "1"},
        {"X-Twcmaster-Page": "1"},
    ):
        answer = requests.post(
            demo.url + "/api/chargeNow", data=body, cookies=session, headers=headers, timeout=5
        )
        assert answer.status_code == 401, headers
    assert demo.snapshot()["settings"]["charge_now_amps"] != 30
    headers = {"Origin": demo.url, "X-Twcmaster-Page": "1"}
    accepted = requests.post(
        demo.url + "/api/chargeNow", data=body, cookies=session, headers=headers, timeout=5
    )
    assert accepted.status_code == 200
