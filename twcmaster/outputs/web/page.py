"""The web page's server side: the page and its files, the live feed, the chart's history, login.

Served by the HTTP API's aiohttp application (``outputs/http.py`` adds these routes and keeps
its security rules over them); nothing here changes a setting: the page's forms post JSON to
the API's own ``/api/*`` endpoints, so a change from the page is validated exactly as one
from a script or MQTT (``RemoteControl``).

* ``GET /``: the page (``static/index.html``); its script fills it from the feed.
* ``GET /events``: Server-Sent Events, one ``snapshot`` message every ``UPDATE_EVERY_S``
  (the one ``Snapshot`` as ``views.snapshot_json`` plus what the page adds: plain-words
  alarms, each TWC's session kWh from the snapshot, the chart's newest point). One ticker
  builds each message once for every open page; a page that stops hearing from it says so. With
  no page open the ticker reads the snapshot only for the chart's point once a minute.
* ``GET /api/v1/history``: the chart's last 24 h (``history.History``).
* ``GET /static/<file>``: the page's CSS and script, from the package (no CDN, no build).
* ``GET /login`` and ``POST /login`` (form field ``token``), ``POST /logout``: with
  ``control.HTTP.token`` set, the browser keeps a session value derived from the token in an
  ``HttpOnly``, ``SameSite=Strict`` cookie; ``http.py`` accepts it where it accepts the
  Bearer token. The token itself is never sent back or put in a page.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import hmac
import json
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from twcmaster.logs import get_logger
from twcmaster.outputs.views import snapshot_json
from twcmaster.outputs.web.history import (
    HISTORY_FILE_NAME,
    SAVE_EVERY_S,
    History,
)

if TYPE_CHECKING:
    from twcmaster.config import AppConfig
    from twcmaster.core import Snapshot

__all__ = [
    "PAGE_PATHS",
    "SESSION_COOKIE",
    "WebPage",
    "alarm_sentences",
    "redirect",
    "session_value",
]

UPDATE_EVERY_S = 1.0  # the feed's pace: the bus heartbeats each TWC about once a second
RETRY_MS = 2000  # how soon a browser reconnects after the feed breaks (EventSource "retry")
SESSION_COOKIE = "twcmaster_session"
SESSION_MAX_AGE_S = 30 * 24 * 3600  # a phone stays logged in for a month
LOGIN_FAILED_DELAY_S = 1.0  # slows a guesser down (a long token cannot be guessed anyway)
STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}
# The page may load only its own files and talk only to its own server.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
#: Paths that show the daemon's state: with a token set they need it (cookie or Bearer).
PAGE_PATHS = frozenset({"/", "/events", "/api/v1/history"})
#: Paths anyone may load: the login form and the page's files (they hold nothing private).
OPEN_GET_PATHS = frozenset({"/login"})
OPEN_POST_PATHS = frozenset({"/login", "/logout"})
STATIC_PREFIX = "/static/"


def session_value(token: str) -> str:
    """What the login cookie holds: derived from the token, so the browser never keeps the
    API token itself (a leaked cookie opens the page, which can steer, but is not the
    token other clients are configured with)."""
    return hmac.new(token.encode(), b"twcmaster web session", hashlib.sha256).hexdigest()


def alarm_sentences(snapshot: Snapshot) -> list[str]:
    """What is wrong, in words, most serious first; [] when all is well."""
    sentences = []
    if not snapshot.link_up:
        sentences.append("The serial port is down: no TWC can be reached.")
    site = snapshot.site
    if site is not None and site.stale:
        sentences.append(f"The energy reading is stale: {site.reason or 'no fresh reading'}.")
    if snapshot.budget.problem:
        sentences.append(f"Budget: {snapshot.budget.problem}")
    sentences.extend(snapshot.alarms)  # foreign master, ID collision...: the bus's own words
    if snapshot.internal_errors:
        sentences.append(
            f"{snapshot.internal_errors} internal error(s) caught (see the log): "
            f"{snapshot.last_internal_error[:200]}"
        )
    return sentences


class WebPage:
    """The page's routes and its ticker (``start`` / ``stop`` with the HTTP server)."""

    def __init__(
        self,
        *,
        snapshot: Callable[[], Snapshot],
        wallclock: Callable[[], float],
        app: AppConfig,
        history_folder: Path | None,
        token: str | None,
        log: Any = None,
        update_every_s: float = UPDATE_EVERY_S,
    ) -> None:
        self.snapshot = snapshot
        self.wallclock = wallclock
        self.app = app
        self.token = token
        self.log = log or get_logger("twcmaster.web")
        self.update_every_s = update_every_s
        path = None if history_folder is None else Path(history_folder) / HISTORY_FILE_NAME
        self.history = History(path, log=self.log)
        self._latest = ""  # the newest feed message, built once per tick for every page
        self._tick = asyncio.Event()
        self._closing = asyncio.Event()
        self._ticker: asyncio.Task[None] | None = None
        self._pages_open = 0  # live feeds being sent
        self._static = _static_files()
        self._gzipped = {name: gzip.compress(body, mtime=0) for name, body in self._static.items()}

    def routes(self) -> list[web.AbstractRouteDef]:
        return [
            web.get("/", self._index),
            web.get("/events", self._events),
            web.get("/api/v1/history", self._history),
            web.get("/login", self._login_form),
            web.post("/login", self._login),
            web.post("/logout", self._logout),
            web.get(STATIC_PREFIX + "{name}", self._static_file),
        ]

    async def start(self) -> None:
        self.history.load()
        self._closing.clear()
        self._ticker = asyncio.create_task(self._run_ticker(), name="web page ticker")

    async def stop(self) -> None:
        self._closing.set()
        self._wake_pages()
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
            self._ticker = None
        await self._save_history()

    # -- the ticker

    async def _run_ticker(self) -> None:
        loop = asyncio.get_running_loop()
        saved_s = loop.time()
        while not self._closing.is_set():
            await asyncio.sleep(self.update_every_s)
            # Nobody watching: the snapshot is read only for the chart's minute points.
            if self._pages_open or self.history.due(self.wallclock()):
                self._update_or_log()
            if loop.time() - saved_s >= SAVE_EVERY_S:
                await self._save_history()
                saved_s = loop.time()

    async def _save_history(self) -> None:
        """Written in a thread: an fsync on an SD card must not hold up the bus."""
        text = self.history.unsaved_text()
        if text is not None:
            await asyncio.to_thread(self.history.write, text)

    def _update_or_log(self) -> None:
        try:
            self._update()
        except Exception as error:  # a bug: logged; the page goes on with the next tick
            self.log.error("web page update failed", error=repr(error)[:300])

    def _update(self) -> None:
        snapshot = self.snapshot()
        now_epoch = self.wallclock()
        self.history.sample(snapshot, now_epoch)
        self._latest = json.dumps(self.page_json(snapshot, now_epoch), allow_nan=False)
        self._wake_pages()

    def _wake_pages(self) -> None:
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    def page_json(self, snapshot: Snapshot, now_epoch: float) -> dict[str, Any]:
        """The snapshot as every JSON output has it, plus what the page shows besides."""
        newest = self.history.points[-1] if self.history.points else None
        return {
            "snapshot": snapshot_json(snapshot, time_epoch=now_epoch),
            "alarms": alarm_sentences(snapshot),
            "session_kwh": {s.twcid: s.session_kwh for s in snapshot.slaves},
            "login_required": self.token is not None,
            "wiring_max_amps": self.app.wiring.max_amps_all_twcs,
            "update_every_s": self.update_every_s,
            "newest_point": None if newest is None else newest.to_json(),
        }

    # -- routes

    async def _index(self, request: web.Request) -> web.Response:
        return self._file_response(request, "index.html", "text/html")

    async def _login_form(self, request: web.Request) -> web.StreamResponse:
        if self.token is None:
            return redirect("/")
        return self._file_response(request, "login.html", "text/html")

    async def _login(self, request: web.Request) -> web.StreamResponse:
        if self.token is None:
            return redirect("/")
        form = await request.post()
        given = form.get("token")
        if not isinstance(given, str) or not hmac.compare_digest(
            session_value(given.strip()), session_value(self.token)
        ):
            self.log.info("web page: login with a wrong token refused", remote=request.remote)
            await asyncio.sleep(LOGIN_FAILED_DELAY_S)
            page = self._static["login.html"].replace(
                b'<p id="failed" class="error" hidden>',
                b'<p id="failed" class="error" role="alert">',
            )
            return web.Response(
                body=page, status=401, content_type="text/html", headers=PAGE_HEADERS
            )
        response = redirect("/")
        response.set_cookie(
            SESSION_COOKIE,
            session_value(self.token),
            max_age=SESSION_MAX_AGE_S,
            path="/",
            httponly=True,
            samesite="Strict",
            secure=_over_https(request),
        )
        return response

    async def _logout(self, request: web.Request) -> web.StreamResponse:
        response = redirect("/login" if self.token else "/")
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

    async def _history(self, request: web.Request) -> web.Response:
        now_epoch = self.wallclock()
        points = [p.to_json() for p in self.history.recent(now_epoch)]
        body = json.dumps({"now_epoch": round(now_epoch, 1), "points": points}, allow_nan=False)
        return web.Response(text=body, content_type="application/json", headers=PAGE_HEADERS)

    async def _events(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={**PAGE_HEADERS, "Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
        )
        await response.prepare(request)
        if request.method == "HEAD":
            return response  # headers only: a HEAD must not hold a feed open
        self._pages_open += 1
        try:
            await response.write(f"retry: {RETRY_MS}\n\n".encode())
            if self._pages_open == 1:
                self._update_or_log()  # the newest message may be a minute old: now
            while not self._closing.is_set():
                tick = self._tick
                if self._latest:  # (empty only while the snapshot cannot be read)
                    message = f"event: snapshot\ndata: {self._latest}\n\n"
                    await response.write(message.encode())
                await tick.wait()
        except ConnectionError:
            pass  # the page was closed: nothing to say to it
        finally:
            self._pages_open -= 1
        return response

    async def _static_file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        kind = STATIC_TYPES.get(Path(name).suffix)
        if kind is None or name not in self._static:
            raise web.HTTPNotFound()
        return self._file_response(request, name, kind)

    def _file_response(self, request: web.Request, name: str, content_type: str) -> web.Response:
        """The file, gzipped when the browser takes it (a third of the bytes on a phone)."""
        headers = {**PAGE_HEADERS, "Vary": "Accept-Encoding"}
        body = self._static[name]
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            body = self._gzipped[name]
            headers["Content-Encoding"] = "gzip"
        return web.Response(body=body, content_type=content_type, charset="utf-8", headers=headers)


def _over_https(request: web.Request) -> bool:
    """The browser reached us over HTTPS (directly or through a proxy that says so): the
    cookie is then marked Secure. A forged header only keeps the cookie off plain HTTP."""
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.secure or forwarded == "https"


def redirect(location: str) -> web.Response:
    """303 See Other: after a form's POST the browser GETs ``location``."""
    return web.Response(status=303, headers={**PAGE_HEADERS, "Location": location})


def _static_files() -> dict[str, bytes]:
    """The page's files, read once from the package (an installed wheel has them too)."""
    folder = resources.files("twcmaster.outputs.web") / "static"
    return {item.name: item.read_bytes() for item in folder.iterdir() if item.is_file()}
