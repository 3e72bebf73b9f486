"""The HTTP API (``control.HTTP``): TWCManager's ``/api/*`` endpoints, ``/health`` and
``/api/v1/snapshot``, served by aiohttp on the daemon's event loop.

What it shows comes from the one ``Snapshot`` (``snapshot()``, read per request), so it
cannot disagree with the console or MQTT. What it changes goes through ``RemoteControl``,
the one validated path (the settings store, saved atomically, then the daemon decides again
at once); nothing here sends a bus command.

Requests and answers are JSON with TWCManager's field names and status codes. Differences,
all deliberate:

* a rejected request answers ``{"error": "<field>: <why>", "field": "<field>"}`` (TWCManager:
  ``{"error": ...}`` or nothing) and 400, naming the field: bad JSON, a body that is not an
  object, a key written twice, a missing field, a wrong type, a value out of range;
* the body is read as JSON whatever its Content-Type (TWCManager's pages post JSON text as
  ``application/x-www-form-urlencoded``);
* numbers in requests are kept as given where TWCManager's ``int()`` cut them
  (``chargeNowRate`` 7.5 is 7.5 A, not 7 A); numeric text ("16") is accepted, as
  TWCManager's pages send it; true/false fields take only booleans, 0/1 and on/off text
  (TWCManager's ``bool("false")`` was true). In answers, numbers are JSON numbers
  (``twcmanager_json.py`` lists where TWCManager sent text or one-element arrays);
* ``addConsumptionOffset`` refuses TWCManager's unsafe characters in a name, as it did, and
  control characters too;
* the TWCManager endpoints that need a running daemon's settings store answer 503 without
  one (``remote`` None), saying so;
* ``addConsumptionOffset`` accepts the value 0 (TWCManager's docs say 0 disables an offset;
  its code refused it);
* ``setScheduledChargingSettings`` answers 202 with a JSON body (TWCManager: empty) that
  notes what was not applied (flex start is not supported);
* raw bus commands and raw settings writes are gone (410, with what to use instead);
* unknown paths answer 404 JSON; a wrong method 405 JSON.

Security (TWCManager's API has none):

* with ``token`` set, every POST needs ``Authorization: Bearer <token>`` (compared in
  constant time), and every GET too with ``tokenRequiredForGet`` (``/health`` excepted:
  container health checks carry no secret, and it tells nothing private);
* it refuses to start on anything but loopback without a token (the config layer already
  refuses such a file; this is the second lock);
* without a token (so on loopback only) a request must name this machine (``Host``
  localhost or a loopback address) and carry no foreign ``Origin``: a web page elsewhere
  cannot steer the charger through a browser on this machine (cross-site requests, DNS
  rebinding). A reverse proxy that passes another ``Host`` needs a token;
* bodies over ``MAX_BODY_BYTES`` are refused; no secret is ever logged or returned (the
  config is shown with every secret masked: ``public_config.py``).

The web page (``outputs/web``: ``/``, ``/events``, ``/api/v1/history``, ``/login``,
``/static/*``) is served here under the same rules. With a token set, the page's paths need
it whatever ``tokenRequiredForGet`` says (the page is where one steers), and a browser may
show it instead of the Bearer header: the login form's ``HttpOnly``, ``SameSite=Strict``
cookie (``web.page.session_value``). A POST that relies on the cookie must also come from
this server's own page: an ``Origin`` naming the ``Host`` it was sent to and the page's
``X-Twcmaster-Page`` header (a form on another site can set neither), so a cross-site
request cannot ride on the cookie. ``/login`` and the page's files need no token: they hold
nothing private. Without a token (loopback only) the ``Host`` / ``Origin`` rule above
protects the page's POSTs as it protects a script's.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from twcmaster.config import (
    MAX_NESTING_DEPTH,
    DuplicateKeysError,
    loads_without_duplicates,
    nesting_too_deep_at,
)
from twcmaster.config.interfaces import is_loopback
from twcmaster.logs import get_logger
from twcmaster.outputs import twcmanager_json as twc
from twcmaster.outputs.public_config import config_without_secrets
from twcmaster.outputs.views import snapshot_json
from twcmaster.outputs.web.page import (
    OPEN_GET_PATHS,
    OPEN_POST_PATHS,
    PAGE_PATHS,
    SESSION_COOKIE,
    STATIC_PREFIX,
    WebPage,
    redirect,
    session_value,
)
from twcmaster.policies import canonical_policy
from twcmaster.remote.commands import (
    CommandRejected,
    RemoteControl,
    fields,
    parse_bool,
    parse_number,
)

if TYPE_CHECKING:
    from twcmaster.config import AppConfig, HttpConfig
    from twcmaster.core import Snapshot

__all__ = ["HEALTH_REPLY_MAX_AGE_S", "HttpApi", "UnsafeBindError", "health_json"]

MAX_BODY_BYTES = 64 * 1024  # TWCManager's largest request is a few hundred bytes
SHUTDOWN_TIMEOUT_S = 1.0  # requests still running at stop get this long (the daemon gives 3 s)
# /health: a TWC that has not replied for this long is not heartbeating (the master polls
# each one about every second; it drops a slave only after slaveTimeout).
HEALTH_REPLY_MAX_AGE_S = 5.0
# TWCManager refused these in an offset's name (they end up in pages and files).
UNSAFE_NAME_CHARACTERS = '@#$%^&*"+<>;/'
DAY_FIELDS = "monday..sunday"
JSON_HEADERS = {"Cache-Control": "no-store"}
PAGE_POST_HEADER = "X-Twcmaster-Page"  # the page's script sets it on every POST (see above)

# TWCManager endpoints twcmaster does not provide, with what to use instead.
GONE_GET = {
    "/api/getLastTWCResponse": "raw bus commands are not sent, so there is no raw reply",
    "/api/getHistory": "no charging history is kept; use /api/v1/snapshot or MQTT",
}
GONE_POST = {
    "/api/sendDebugCommand": "raw bus commands are not accepted (they bypass the wiring limits)",
    "/api/sendStartCommand": "raw bus commands are not accepted; use /api/chargeNow",
    "/api/sendStopCommand": "raw bus commands are not accepted; use "
    "/api/v1/twc/<TWCID>/allowCharging or /api/setPolicy",
    "/api/sendTeslaAPICommand": "car API commands are the daemon's own",
    "/api/setSetting": "raw settings writes are not accepted; use the endpoints of each "
    "setting (chargeNow, setScheduledChargingSettings, ...) or MQTT control",
    "/api/setConsumptionOffset": "use /api/addConsumptionOffset (named offsets)",
    "/api/checkArrival": "vehicle location is not tracked",
    "/api/checkDeparture": "vehicle location is not tracked",
}


class UnsafeBindError(ValueError):
    """The server would listen beyond loopback without a token: it refuses to start."""


class ApiError(Exception):
    """A request answered with an error status and ``{"error", "field"}``."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field

    def response(self) -> web.Response:
        text = f"{self.field}: {self.message}" if self.field else self.message
        body = {"error": text} | ({"field": self.field} if self.field else {})
        return json_response(body, status=self.status)


def json_response(data: Any, status: int = 200) -> web.Response:
    # allow_nan=False: a NaN that slipped through is a 500, never invalid JSON.
    return web.json_response(
        data,
        status=status,
        headers=JSON_HEADERS,
        dumps=functools.partial(json.dumps, allow_nan=False),
    )


# ----------------------------------------------------------------------------- health


def health_json(snapshot: Snapshot) -> tuple[int, dict[str, Any]]:
    """200 when the serial port is open and a TWC replied within HEALTH_REPLY_MAX_AGE_S;
    503 otherwise, with the reason. No TWC linked at all is 503 too: a master nobody
    answers controls nothing (wiring, termination, a TWC's rotary switch not on master...);
    a container's health check start period covers the seconds TWCs take to link."""
    slaves = snapshot.slaves
    newest_s = min((s.seconds_since_reply for s in slaves), default=None)
    if not snapshot.link_up:
        reason = "the serial port is not open"
    elif newest_s is None:
        reason = "no TWC has linked: none answers the master"
    elif newest_s > HEALTH_REPLY_MAX_AGE_S:
        reason = f"no TWC has replied for {newest_s:.1f}s"
    else:
        reason = ""
    body = {
        "status": "unhealthy" if reason else "ok",
        "reason": reason or f"{len(slaves)} TWC(s) answering",
        "link_up": snapshot.link_up,
        "twcs": len(slaves),
        "newest_reply_s": newest_s,
        "internal_errors": snapshot.internal_errors,
    }
    return (503 if reason else 200), body


# ----------------------------------------------------------------------------- the server


class HttpApi:
    """A daemon service (``start`` / ``stop``). ``snapshot``: the daemon's current Snapshot;
    ``remote``: the validated change path (None: no settings store, POSTs answer 503);
    ``wallclock``: epoch seconds (Charge Now's end, the snapshot's time stamp);
    ``history_folder``: where the web page keeps its chart (None: in memory only)."""

    def __init__(
        self,
        config: HttpConfig,
        app: AppConfig,
        *,
        snapshot: Callable[[], Snapshot],
        remote: RemoteControl | None,
        log: Any = None,
        wallclock: Callable[[], float] = time.time,
        history_folder: Path | str | None = None,
    ) -> None:
        self.config = config
        self.app = app
        self.snapshot = snapshot
        self.remote = remote
        self.log = log or get_logger("twcmaster.http")
        self.wallclock = wallclock
        self._runner: web.AppRunner | None = None
        self._token_digest = _digest(config.token) if config.token else None
        self._session_digest = _digest(session_value(config.token)) if config.token else None
        self.web = WebPage(
            snapshot=snapshot,
            wallclock=wallclock,
            app=app,
            history_folder=None if history_folder is None else Path(history_folder),
            token=config.token,
            log=self.log,
        )

    @property
    def bound_port(self) -> int | None:
        """The TCP port listened on (after ``start``; None before or if it failed)."""
        if self._runner is None or not self._runner.addresses:
            return None
        return int(self._runner.addresses[0][1])

    async def start(self) -> None:
        """Bind and serve; returns once listening. Raises UnsafeBindError for a non-loopback
        address without a token; a bind that fails (port in use) is logged, not raised: the
        bus runs on without the API."""
        self._refuse_unsafe_bind()
        runner = web.AppRunner(
            self._application(),
            access_log=None,
            handle_signals=False,
            shutdown_timeout=SHUTDOWN_TIMEOUT_S,
        )
        await runner.setup()
        site = web.TCPSite(runner, self.config.listen_ip, self.config.listen_port)
        try:
            await site.start()
        except OSError as error:
            await runner.cleanup()
            self.log.error(
                "HTTP API not started: cannot listen",
                address=f"{self.config.listen_ip}:{self.config.listen_port}",
                error=str(error),
            )
            return
        self._runner = runner
        await self.web.start()
        self.log.info(
            "HTTP API listening",
            url=f"http://{_host_in_url(self.config.listen_ip)}:{self.bound_port}",
            token="required" if self.config.token else "none (loopback only)",
        )

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await self.web.stop()  # ends the pages' live feeds, saves the chart
            await runner.cleanup()

    def _refuse_unsafe_bind(self) -> None:
        if self.config.token:
            return
        if not is_loopback(self.config.listen_ip):
            raise UnsafeBindError(
                f"control.HTTP: refusing to listen on {self.config.listen_ip} without a "
                "token: anyone on the network could change the charging"
            )
        if self.config.token_required_for_get:
            raise UnsafeBindError("control.HTTP: tokenRequiredForGet without a token")

    def _application(self) -> web.Application:
        app = web.Application(
            client_max_size=MAX_BODY_BYTES,
            middlewares=[self._errors, self._same_machine_only, self._authorised],
        )
        app.router.add_routes(self._routes())
        return app

    def _routes(self) -> list[web.AbstractRouteDef]:
        gets = {
            "/health": self._health,
            "/api/v1/snapshot": self._snapshot,
            "/api/getStatus": self._status,
            "/api/getSlaveTWCs": self._slave_twcs,
            "/api/getConfig": self._config,
            "/api/getPolicy": self._policy,
            "/api/getConsumptionOffsets": self._consumption_offsets,
            "/api/getActivePolicyAction": self._active_policy_action,
            "/api/getUUID": self._uuid,
        }
        posts = {
            "/api/chargeNow": self._charge_now,
            "/api/cancelChargeNow": self._cancel_charge_now,
            "/api/setScheduledChargingSettings": self._set_schedule,
            "/api/addConsumptionOffset": self._add_offset,
            "/api/deleteConsumptionOffset": self._delete_offset,
            "/api/setLatLon": self._set_lat_lon,
            "/api/setPolicy": self._set_policy,
            "/api/saveSettings": self._save_settings,
            # twcmaster's, as MQTT control has them
            "/api/v1/nonScheduled": self._set_non_scheduled,
            "/api/v1/twc/{twcid}/allowCharging": self._allow_charging,
            "/api/v1/twc/{twcid}/chargePriority": self._charge_priority,
        }
        return (
            self.web.routes()
            + [web.get(path, handler) for path, handler in gets.items()]
            + [web.post(path, handler) for path, handler in posts.items()]
            + [web.get(path, _gone(why)) for path, why in GONE_GET.items()]
            + [web.post(path, _gone(why)) for path, why in GONE_POST.items()]
        )

    # -- middlewares (outermost first)

    @web.middleware
    async def _errors(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Every answer is JSON: rejections, aiohttp's own 404 / 405 / 413, and bugs."""
        try:
            return await handler(request)
        except ApiError as error:
            return error.response()
        except CommandRejected as error:
            return ApiError(400, error.message, error.field).response()
        except web.HTTPException as error:
            return _http_error(request, error)
        except Exception as error:  # a bug: logged, answered 500, the server goes on
            self.log.error("HTTP API internal error", path=request.path, error=repr(error)[:300])
            return ApiError(500, "internal error (see the daemon's log)").response()

    @web.middleware
    async def _same_machine_only(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Without a token: only requests that name this machine (see the module's doc)."""
        if self.config.token is None:
            host = request.headers.get("Host")
            if host is not None and not _names_loopback(host):
                raise ApiError(
                    403,
                    f"{host[:80]!r} is not this machine; without control.HTTP.token "
                    "the API answers only localhost (set a token to use another name)",
                    "Host",
                )
            origin = request.headers.get("Origin")
            if origin is not None and not _names_loopback(_origin_host(origin)):
                raise ApiError(403, "requests from web pages elsewhere are refused", "Origin")
        return await handler(request)

    @web.middleware
    async def _authorised(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self._needs_token(request) and not self._token_ok(request):
            if request.method == "GET" and request.path == "/":
                return redirect("/login")  # a person at the page: the login form
            self.log.info(
                "HTTP API: request without the right token refused",
                remote=request.remote,
                method=request.method,
                path=request.path[:100],
            )
            error = ApiError(401, "expected Authorization: Bearer <token>", "Authorization")
            response = error.response()
            response.headers["WWW-Authenticate"] = 'Bearer realm="twcmaster"'
            return response
        return await handler(request)

    def _needs_token(self, request: web.Request) -> bool:
        if self._token_digest is None:
            return False
        path = request.path
        if request.method not in ("GET", "HEAD"):
            return path not in OPEN_POST_PATHS
        if path in OPEN_GET_PATHS or path.startswith(STATIC_PREFIX):
            return False
        if path in PAGE_PATHS:
            return True
        return self.config.token_required_for_get and path != "/health"

    def _token_ok(self, request: web.Request) -> bool:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and self._token_digest is not None:
            # Digests of equal length: the comparison time tells nothing, not even the length.
            return hmac.compare_digest(_digest(given.strip()), self._token_digest)
        return self._session_ok(request)

    def _session_ok(self, request: web.Request) -> bool:
        """The login cookie, and for a change its page's marks (see the module's doc)."""
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie is None or self._session_digest is None:
            return False
        if not hmac.compare_digest(_digest(cookie), self._session_digest):
            return False
        if request.method in ("GET", "HEAD"):
            return True
        origin = request.headers.get("Origin")
        same_origin = origin is not None and _origin_host(origin) == request.headers.get("Host")
        return same_origin and request.headers.get(PAGE_POST_HEADER) == "1"

    # -- GET

    async def _health(self, request: web.Request) -> web.Response:
        status, body = health_json(self.snapshot())
        return json_response(body, status=status)

    async def _snapshot(self, request: web.Request) -> web.Response:
        return json_response(snapshot_json(self.snapshot(), time_epoch=self.wallclock()))

    async def _status(self, request: web.Request) -> web.Response:
        snapshot = self.snapshot()
        return json_response(twc.status_json(snapshot, self.app, now_epoch=self.wallclock()))

    async def _slave_twcs(self, request: web.Request) -> web.Response:
        return json_response(twc.slave_twcs_json(self.snapshot()))

    async def _config(self, request: web.Request) -> web.Response:
        return json_response(config_without_secrets(self.app.raw))

    async def _policy(self, request: web.Request) -> web.Response:
        return json_response(twc.policy_json(self.app))

    async def _consumption_offsets(self, request: web.Request) -> web.Response:
        return json_response(twc.consumption_offsets_json(self.snapshot()))

    async def _active_policy_action(self, request: web.Request) -> web.Response:
        return json_response(twc.active_policy_action(self.snapshot()))

    async def _uuid(self, request: web.Request) -> web.Response:
        # TWCManager's node id: derived from a MAC address, as text.
        return web.Response(text=str(uuid.getnode()), headers=JSON_HEADERS)

    # -- POST (every change through RemoteControl)

    def _control(self) -> RemoteControl:
        if self.remote is None:
            raise ApiError(503, "no runtime settings store: this daemon cannot be steered")
        return self.remote

    async def _charge_now(self, request: web.Request) -> web.Response:
        control = self._control()
        body = await json_object(request)
        rate, duration = fields(body, "chargeNowRate", "chargeNowDuration")
        with fields_named({"amps": "chargeNowRate", "seconds": "chargeNowDuration"}):
            control.charge_now(rate, duration, source=_source(request))
        return json_response(
            {
                "status": "success",
                "rate": _plain(parse_number("chargeNowRate", rate, 0, float("inf"))),
                "duration": _plain(parse_number("chargeNowDuration", duration, 0, float("inf"))),
            }
        )

    async def _cancel_charge_now(self, request: web.Request) -> web.Response:
        self._control().cancel_charge_now(source=_source(request))  # a body is ignored
        return json_response({"status": "success"})

    async def _set_schedule(self, request: web.Request) -> web.Response:
        """TWCManager's one window: ``enabled``, ``startingMinute`` / ``endingMinute``
        (minutes of the day), ``monday``..``sunday``, ``amps``; off when not enabled, with
        0 amps or no day (TWCManager's rules)."""
        control = self._control()
        body = await json_object(request)
        (enabled,) = fields(body, "enabled")
        notes = _flex_notes(body)
        if not parse_bool("enabled", enabled):
            what = control.set_schedule(0, -1, -1, 0, source=_source(request))
        else:
            amps, start, end = fields(body, "amps", "startingMinute", "endingMinute")
            with fields_named(SCHEDULE_FIELDS):
                what = control.set_schedule(
                    amps, start, end, _days_bitmap(body), source=_source(request)
                )
        answer = {"status": "success", "applied": what} | ({"notes": notes} if notes else {})
        return json_response(answer, status=202)

    async def _add_offset(self, request: web.Request) -> web.Response:
        control = self._control()
        body = await json_object(request)
        name, value, unit = fields(body, "offsetName", "offsetValue", "offsetUnit")
        _check_offset_name(name)
        control.add_consumption_offset(name, value, unit, source=_source(request))
        number = parse_number("offsetValue", value, float("-inf"), float("inf"))
        return json_response(
            {
                "status": "success",
                "offsetName": name,
                "offsetValue": _plain(number),
                "offsetUnit": unit,
            }
        )

    async def _delete_offset(self, request: web.Request) -> web.Response:
        control = self._control()
        body = await json_object(request)
        (name,) = fields(body, "offsetName")
        if not isinstance(name, str):
            raise ApiError(400, f"expected a name, got {name!r:.40}", "offsetName")
        if name not in control.offset_names():
            raise ApiError(404, f"no such offset: {name!r:.40}", "offsetName")  # TWCManager's
        control.delete_consumption_offset(name, source=_source(request))
        return json_response({"status": "success", "offsetName": name})

    async def _set_lat_lon(self, request: web.Request) -> web.Response:
        control = self._control()
        body = await json_object(request)
        lat, lon = fields(body, "lat", "lon")
        control.set_home_location(lat, lon, source=_source(request))
        return web.Response(status=204)

    async def _set_policy(self, request: web.Request) -> web.Response:
        """Force a policy over the rules (TWCManager's four or Min + Green Energy, any
        letter case, or evcc's "minpv"); "Auto": the rules again. Answers with the name."""
        control = self._control()
        body = await json_object(request)
        (policy,) = fields(body, "policy")
        if not isinstance(policy, str):
            raise ApiError(400, f"expected a policy name, got {policy!r:.40}", "policy")
        control.set_policy(policy, source=_source(request))
        return json_response({"status": "success", "policy": canonical_policy(policy) or policy})

    async def _set_non_scheduled(self, request: web.Request) -> web.Response:
        """``{"action": 1|2|3, "amps": A}``, either or both: what Non Scheduled Charging
        does (fixed rate, do not charge, track green) and its fixed rate. Both are checked
        before either is applied."""
        control = self._control()
        body = await json_object(request)
        if "action" not in body and "amps" not in body:
            raise ApiError(400, "expected action (1, 2 or 3) and/or amps", "action")
        with fields_named({"nonScheduledAction": "action", "nonScheduledAmpsMax": "amps"}):
            applied = control.set_non_scheduled(
                body.get("action"), body.get("amps"), source=_source(request)
            )
        return json_response({"status": "success", "applied": applied})

    async def _allow_charging(self, request: web.Request) -> web.Response:
        """``{"allowed": true|false}``: let the TWC charge, or switch its charging off (it is
        offered 0 A whatever the policy) until allowed again."""
        control = self._control()
        body = await json_object(request)
        (allowed,) = fields(body, "allowed")
        twcid = request.match_info["twcid"]
        what = control.set_twc_allowed(twcid, allowed, source=_source(request))
        return json_response({"status": "success", "applied": what})

    async def _charge_priority(self, request: web.Request) -> web.Response:
        """``{"priority": 2}``: who charges first when the sun is short (higher first);
        ``{"priority": null}`` goes back to config.json's chargePriority for this TWC."""
        control = self._control()
        body = await json_object(request)
        if "priority" not in body:
            raise CommandRejected("priority", "missing")
        twcid = request.match_info["twcid"]
        what = control.set_charge_priority(twcid, body["priority"], source=_source(request))
        return json_response({"status": "success", "applied": what})

    async def _save_settings(self, request: web.Request) -> web.Response:
        """Every change is saved as it is made: nothing left to save (TWCManager's 204)."""
        self._control()
        return web.Response(status=204)


# ----------------------------------------------------------------------------- requests


async def json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object, whatever the Content-Type; ApiError(400) naming why."""
    raw = await request.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "not UTF-8 text", "body") from None
    if not text.strip():
        raise ApiError(400, "empty; expected a JSON object {...}", "body")
    if nesting_too_deep_at(text) is not None:
        raise ApiError(400, f"nested deeper than {MAX_NESTING_DEPTH} levels", "body")
    try:
        data = loads_without_duplicates(text)
    except DuplicateKeysError as error:
        path = error.found[0][0]
        raise ApiError(400, "written twice: which value was meant is unknown", path) from None
    except ValueError as error:  # json.JSONDecodeError
        raise ApiError(400, f"not JSON ({error})", "body") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"expected a JSON object {{...}}, got {type(data).__name__}", "body")
    return data


@contextmanager
def fields_named(names: Mapping[str, str]) -> Iterator[None]:
    """RemoteControl names its own fields (``amps``) or settings keys: say the request's."""
    try:
        yield
    except CommandRejected as error:
        raise CommandRejected(names.get(error.field, error.field), error.message) from None


# RemoteControl.set_schedule's fields and the settings keys its store reports -> ours.
SCHEDULE_FIELDS = {
    "scheduledAmpsMax": "amps",
    "scheduledAmpsStartHour": "startingMinute",
    "scheduledAmpsEndHour": "endingMinute",
    "scheduledAmpsDaysBitmap": DAY_FIELDS,
    "days": DAY_FIELDS,
}


def _days_bitmap(body: Mapping[str, Any]) -> int:
    """monday..sunday (an absent day is off, as in TWCManager) -> Mon=1 ... Sun=64."""
    return sum(
        1 << index for index, day in enumerate(twc.DAYS) if parse_bool(day, body.get(day, False))
    )


def _flex_notes(body: Mapping[str, Any]) -> list[str]:
    """Flex start (start late enough to finish at the end) is not supported: said, and the
    window applied as a plain one. Bad values are still refused."""
    flex = parse_bool("flexStartEnabled", body.get("flexStartEnabled", False))
    if "flexBatterySize" in body:
        parse_number("flexBatterySize", body["flexBatterySize"], 0, 1000)
    if not flex:
        return []
    return ["flexStartEnabled: flex start is not supported; the window starts at startingMinute"]


def _check_offset_name(name: Any) -> None:
    if isinstance(name, str) and any(
        c in UNSAFE_NAME_CHARACTERS or not c.isprintable() for c in name
    ):
        raise ApiError(
            400, f"must not contain control characters or any of {UNSAFE_NAME_CHARACTERS}",
            "offsetName",
        )  # fmt: skip


def _source(request: web.Request) -> str:
    return f"HTTP from {request.remote}"


def _plain(number: float) -> int | float:
    return int(number) if float(number).is_integer() else number


def _gone(why: str) -> Callable[[web.Request], Any]:
    async def handler(request: web.Request) -> web.Response:
        raise ApiError(410, f"{request.path} is not provided by twcmaster: {why}")

    return handler


def _http_error(request: web.Request, error: web.HTTPException) -> web.Response:
    """aiohttp's own errors (no route 404, wrong method 405, body too large 413) as JSON."""
    if error.status == 404:
        message = f"no such endpoint: {request.method} {request.path[:100]}"
    elif error.status == 405:
        message = f"{request.method} is not allowed here; use {error.headers.get('Allow', '?')}"
    elif error.status == 413:
        message = f"request body over {MAX_BODY_BYTES} bytes"
    else:
        message = error.reason
    response = ApiError(error.status, message).response()
    if "Allow" in error.headers:
        response.headers["Allow"] = error.headers["Allow"]
    return response


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def _names_loopback(host_header: str) -> bool:
    """``localhost``, ``127.0.0.1:8080``, ``[::1]:8080`` ... (a Host header's host part)."""
    host = host_header.strip().lower()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.endswith(".localhost") or is_loopback(host)


def _origin_host(origin: str) -> str:
    """``http://localhost:8080`` -> ``localhost:8080``; "null" and junk -> "" (refused)."""
    scheme, sep, rest = origin.partition("://")
    return rest.split("/", 1)[0] if sep and scheme in ("http", "https") else ""


def _host_in_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host
