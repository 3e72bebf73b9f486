"""The web page's server side over real sockets (no browser): its files and headers, the live
feed, the login cookie and the rules a request riding on it must meet, the plain-words
alarms, and the files shipped in the package."""

from __future__ import annotations

import configparser
import fnmatch
import json
from pathlib import Path

import requests

from tests.http.served import NOW_EPOCH, TOKEN, Served, app_config, moment, serve
from twcmaster.config.interfaces import HttpConfig
from twcmaster.control.green import SiteReading
from twcmaster.outputs.http import HttpApi
from twcmaster.outputs.web import page as web_page
from twcmaster.outputs.web.page import SESSION_COOKIE, alarm_sentences

TIMEOUT_S = 5
ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "twcmaster" / "outputs" / "web" / "static"
PAGE_MARKS = {"X-Twcmaster-Page": "1"}
CHARGE = json.dumps({"chargeNowRate": 16, "chargeNowDuration": 60})


def first_message(url: str, **kwargs) -> dict:
    """The first ``snapshot`` message of the live feed."""
    with requests.get(url + "/events", stream=True, timeout=TIMEOUT_S, **kwargs) as answer:
        assert answer.status_code == 200
        assert answer.headers["Content-Type"].startswith("text/event-stream")
        event = None
        for line in answer.iter_lines(decode_unicode=True):
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: ") and event == "snapshot":
                return json.loads(line.removeprefix("data: "))
    raise AssertionError("no snapshot message")


def test_the_page_and_its_files_on_loopback(tmp_path):
    with serve(tmp_path) as served:
        page = requests.get(served.url + "/", timeout=TIMEOUT_S)
        assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
        assert "default-src 'none'" in page.headers["Content-Security-Policy"]
        assert page.headers["X-Frame-Options"] == "DENY"
        assert '<script src="/static/app.js"' in page.text
        assert page.headers["Content-Encoding"] == "gzip"  # requests asks for it, and decodes
        plain = requests.get(served.url + "/", headers={"Accept-Encoding": "identity"})
        assert "Content-Encoding" not in plain.headers and plain.text == page.text
        for name, kind in (("app.js", "text/javascript"), ("app.css", "text/css")):
            answer = requests.get(f"{served.url}/static/{name}", timeout=TIMEOUT_S)
            assert answer.status_code == 200 and answer.headers["Content-Type"].startswith(kind)
        for missing in ("/static/nothing.js", "/static/index.html", "/static/..%2Fpage.py"):
            assert requests.get(served.url + missing, timeout=TIMEOUT_S).status_code == 404
        # Without a token there is nothing to log in to.
        login = requests.get(served.url + "/login", allow_redirects=False, timeout=TIMEOUT_S)
        assert login.status_code == 303 and login.headers["Location"] == "/"
        # The API's loopback rules hold for the page too.
        elsewhere = {"Host": "twc.example.org"}
        assert requests.get(served.url + "/", headers=elsewhere, timeout=5).status_code == 403
        foreign = {"Origin": "http://attacker.example", **PAGE_MARKS}
        posted = requests.post(served.url + "/api/chargeNow", data=CHARGE, headers=foreign)
        assert posted.status_code == 403


def test_the_live_feed_carries_the_snapshot_and_the_pages_extras(tmp_path):
    with serve(tmp_path) as served:
        message = first_message(served.url)
        # A HEAD gets the headers and the connection back at once (no feed held open).
        head = requests.head(served.url + "/events", timeout=2)
        assert head.status_code == 200 and head.headers["Content-Type"] == "text/event-stream"
        history = requests.get(served.url + "/api/v1/history", timeout=TIMEOUT_S).json()
    assert message["snapshot"]["slaves"][0]["twcid"] == "1234"
    assert message["snapshot"]["budget"]["policy"] == "Track Green Energy"
    assert message["alarms"] == []
    assert message["session_kwh"] == {"1234": 0.0}
    assert message["login_required"] is False
    assert message["newest_point"]["twc"] == {"1234": 3960}
    assert [p["twc"] for p in history["points"]] == [{"1234": 3960}]


def test_with_a_token_the_page_needs_the_login_cookie(tmp_path):
    with serve(tmp_path, http=HttpConfig(listen_port=0, token=TOKEN)) as served:
        url = served.url
        to_login = requests.get(url + "/", allow_redirects=False, timeout=TIMEOUT_S)
        assert to_login.status_code == 303 and to_login.headers["Location"] == "/login"
        for path in ("/events", "/api/v1/history"):
            assert requests.get(url + path, timeout=TIMEOUT_S).status_code == 401, path
        for open_path in ("/login", "/static/app.js", "/static/app.css"):
            answer = requests.get(url + open_path, timeout=TIMEOUT_S)
            assert answer.status_code == 200, open_path
            assert TOKEN not in answer.text

        wrong = requests.post(url + "/login", data={"token": "nope"}, allow_redirects=False)
        assert wrong.status_code == 401 and 'role="alert"' in wrong.text
        assert SESSION_COOKIE not in wrong.cookies

        login = requests.post(url + "/login", data={"token": TOKEN}, allow_redirects=False)
        assert login.status_code == 303 and login.headers["Location"] == "/"
        set_cookie = login.headers["Set-Cookie"]
        assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie
        assert TOKEN not in set_cookie
        cookies = {SESSION_COOKIE: login.cookies[SESSION_COOKIE]}
        assert requests.get(url + "/", cookies=cookies, timeout=TIMEOUT_S).status_code == 200
        assert first_message(url, cookies=cookies)["login_required"] is True

        # A change riding on the cookie needs the page's Origin and header (CSRF).
        host = url.removeprefix("http://")
        for headers in ({}, PAGE_MARKS, {"Origin": url},
                        {"Origin": "http://attacker.example", **PAGE_MARKS},
                        {"Origin": "null", **PAGE_MARKS}):  # fmt: skip
            refused = requests.post(
                url + "/api/chargeNow", data=CHARGE, cookies=cookies, headers=headers
            )
            assert refused.status_code == 401, headers
        marks = {"Origin": f"http://{host}", **PAGE_MARKS}
        accepted = requests.post(
            url + "/api/chargeNow", data=CHARGE, cookies=cookies, headers=marks
        )
        assert accepted.status_code == 200
        # The Bearer token works as before; a forged cookie does not.
        forged = {SESSION_COOKIE: "0" * 64}
        assert requests.get(url + "/events", cookies=forged, timeout=5).status_code == 401

        behind_tls = {"X-Forwarded-Proto": "https"}
        secure = requests.post(
            url + "/login", data={"token": TOKEN}, headers=behind_tls, allow_redirects=False
        )
        assert "Secure" in secure.headers["Set-Cookie"]
        assert "Secure" not in set_cookie  # plain HTTP: a Secure cookie would never come back

        logout = requests.post(url + "/logout", cookies=cookies, allow_redirects=False)
        assert logout.status_code == 303 and logout.headers["Location"] == "/login"
        assert f"{SESSION_COOKIE}=" in logout.headers["Set-Cookie"]


def test_alarms_in_plain_words():
    assert alarm_sentences(moment()()) == []
    stale = SiteReading(500, 200, None, None, 0.0, True, "Fronius: no answer for 90 s", ())
    down = moment(link_up=False, site=stale, alarms=("TWC 1234 and 5678 share an ID",))()
    sentences = alarm_sentences(down)
    assert sentences[0] == "The serial port is down: no TWC can be reached."
    assert "The energy reading is stale: Fronius: no answer for 90 s." in sentences
    assert sentences[-1] == "TWC 1234 and 5678 share an ID"


def test_every_page_file_is_package_data():
    """An installed wheel serves the page: setup.cfg's package_data takes every file."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    patterns = config["options.package_data"]["twcmaster.outputs.web"].split()
    files = [p.relative_to(STATIC.parent).as_posix() for p in STATIC.iterdir()]
    assert files and all(any(fnmatch.fnmatch(f, pat) for pat in patterns) for f in files)
    assert set(web_page._static_files()) == {p.name for p in STATIC.iterdir()}


def test_the_chart_survives_a_restart(tmp_path):
    """Stopping the server saves the chart under the settings folder; the next start
    serves the same points."""
    now = [NOW_EPOCH]

    def api() -> Served:
        return Served(
            HttpApi(
                HttpConfig(listen_port=0),
                app_config(),
                snapshot=moment(),
                remote=None,
                wallclock=lambda: now[0],
                history_folder=tmp_path,
            )
        )

    with api() as first:
        first_points = requests.get(first.url + "/api/v1/history", timeout=5).json()["points"]
        assert first_points == []  # nobody watched yet, and the first tick is a second away
        first_message(first.url)  # a page opens: the snapshot is read, the first point taken
    assert (tmp_path / "history.json").exists()
    now[0] += 120
    with api() as second:
        points = requests.get(second.url + "/api/v1/history", timeout=5).json()["points"]
    assert [p["t"] for p in points][:1] == [NOW_EPOCH]
