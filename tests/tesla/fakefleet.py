"""A loopback fake of Tesla's Fleet API and its OAuth token endpoint (aiohttp.web on
127.0.0.1, a random port), for the tests and for demos that must not reach Tesla.

Paths and shapes are the real ones (``/work/shared/reference/anchors.md`` section 5):

* ``GET /api/1/vehicles`` → ``{"response": [{vin, display_name, state, ...}], "count": n}``;
* ``GET /api/1/vehicles/{vin}`` → ``{"response": {..., "state"}}``;
* ``GET /api/1/vehicles/{vin}/vehicle_data?endpoints=a;b`` → charge_state / drive_state as
  asked, or 408 ``vehicle unavailable`` while the car sleeps;
* ``POST .../wake_up`` → the car's state now; it is online ``wake_delay_s`` later;
* ``POST .../command/charge_start|charge_stop|set_charging_amps`` → ``{result, reason}``, or
  403 "Tesla Vehicle Command Protocol required" for a car with ``requires_signing``;
* ``POST .../signed_command`` ``{"routable_message": base64}`` → ``{"response": base64}``: the
  car's side of the Vehicle Command Protocol (``fakesigning.CarSide``: handshake, HMAC
  signatures, counters, faults), for keys enrolled with ``FakeCar.enroll``; 408 while asleep;
* ``POST /oauth2/v3/token`` (form, ``grant_type=refresh_token``): single-use refresh tokens,
  JWT-shaped access tokens (payload ``exp``, ``ou_code``); a reused or revoked refresh token
  gets 401 ``login_required``.

An API call with an expired access token gets 401 ``token expired (401)``; an unknown one
401 ``invalid_token``. ``fail_next`` scripts failures (429 with headers, 5xx, a hang, a body
that is not JSON) ahead of the real answer. Every request is in ``requests``.

Use ``async with FakeFleet(cars) as fleet`` in a loop, or ``with FakeFleet(cars).running():``
from sync code (its own loop in a thread).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fnmatch
import json
import secrets
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf.message import DecodeError
from tesla_fleet_api.tesla.vehicle.proto.car_server_pb2 import Action
from tesla_fleet_api.tesla.vehicle.proto.universal_message_pb2 import RoutableMessage

from tests.tesla.fakesigning import CarSide, Refusal

TOKEN_PATH = "/oauth2/v3/token"
SIGNING_REQUIRED = (
    "Tesla Vehicle Command Protocol required, please refer to the documentation here: "
    "https://developer.tesla.com/docs/fleet-api#2023-10-09-rest-api-vehicle-commands-endpoint"
    "-deprecation-warning"
)
ASLEEP = "vehicle unavailable: vehicle is offline or asleep"
DEFAULT_ACCESS_LIFETIME_S = 8 * 3600  # Tesla's access tokens last about 8 h


@dataclass
class FakeCar:
    vin: str
    name: str = ""
    asleep: bool = False
    charging_state: str = "Stopped"  # Charging, Stopped, Complete, Disconnected, ...
    battery_level: int = 55  # %
    charge_limit_soc: int = 80  # %
    latitude: float | None = 52.52
    longitude: float | None = 13.40
    scheduled_charging_pending: bool = False
    requires_signing: bool = False
    plugged: bool = True
    charge_current_request: int = 16  # A
    waking_at_s: float | None = None  # monotonic time the car comes online after wake_up
    # The Vehicle Command Protocol: the car's key and the client keys paired with it.
    signing_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1()), repr=False
    )
    enrolled_keys: set[bytes] = field(default_factory=set, repr=False)  # X9.62 points
    signing: CarSide = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # One set: enrolling through either name pairs the key.
        self.signing = CarSide(self.vin, self.signing_key, self.enrolled_keys)

    def enroll(self, key: ec.EllipticCurvePublicKey | bytes) -> None:
        """Pair a client's public key with the car (what tesla.com/_ak/... does)."""
        self.signing.enroll(key)

    @property
    def refusals(self) -> list[Refusal]:
        """Signed messages the car refused (handshakes from unknown keys, faults)."""
        return self.signing.refusals

    @property
    def state(self) -> str:
        return "asleep" if self.asleep else "online"

    def summary(self, car_id: int) -> dict[str, Any]:
        return {
            "id": car_id,
            "vehicle_id": car_id + 1000,
            "vin": self.vin,
            "display_name": self.name,
            "state": self.state,
            "in_service": False,
        }


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: str
    auth: str  # the Authorization header as sent ("" when none)
    body: str


@dataclass
class Failure:
    path_glob: str
    status: int
    body: bytes
    headers: dict[str, str]
    count: int
    delay_s: float


@dataclass
class _Tokens:
    """The auth server's memory: which tokens it issued, which are spent."""

    client_id: str
    region: str
    access_lifetime_s: float
    access_expiry_s: dict[str, float] = field(default_factory=dict)  # token → wallclock exp
    refresh_live: set[str] = field(default_factory=set)
    refresh_spent: set[str] = field(default_factory=set)
    refreshes: int = 0  # successful refresh grants


def jwt_shaped(payload: dict[str, Any]) -> str:
    """header.payload.signature, each base64url without padding (the signature is noise)."""

    def part(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    header = part(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    return f"{header}.{part(json.dumps(payload).encode())}.{part(secrets.token_bytes(32))}"


class FakeFleet:
    def __init__(
        self,
        cars: list[FakeCar] | tuple[FakeCar, ...] = (),
        *,
        client_id: str = "twcmaster-test",
        region: str = "EU",
        access_lifetime_s: float = DEFAULT_ACCESS_LIFETIME_S,
        wake_delay_s: float = 0.0,
        ssl_context: ssl.SSLContext | None = None,
        wallclock: Callable[[], float] = time.time,
    ) -> None:
        self.cars = {car.vin: car for car in cars}
        self.wake_delay_s = wake_delay_s
        self.tokens = _Tokens(client_id, region, access_lifetime_s)
        self.requests: list[Recorded] = []
        self._failures: list[Failure] = []
        self._ssl = ssl_context
        self._wallclock = wallclock
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- scripting from tests --------------------------------------------------------------

    @property
    def url(self) -> str:
        scheme = "https" if self._ssl else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def auth_url(self) -> str:
        return self.url + TOKEN_PATH

    @property
    def refreshes(self) -> int:
        return self.tokens.refreshes

    def issue_refresh_token(self) -> str:
        """A fresh refresh token, as a login would give the user."""
        token = "rt-" + secrets.token_urlsafe(24)
        self.tokens.refresh_live.add(token)
        return token

    def issue_access_token(self, lifetime_s: float | None = None) -> str:
        lifetime_s = self.tokens.access_lifetime_s if lifetime_s is None else lifetime_s
        exp = self._wallclock() + lifetime_s
        token = jwt_shaped(
            {"exp": int(exp), "iat": int(self._wallclock()), "ou_code": self.tokens.region}
        )
        self.tokens.access_expiry_s[token] = exp
        return token

    def tokens_issued(self) -> list[str]:
        """Every token it ever issued (for canary checks: none may reach an output)."""
        t = self.tokens
        return [*t.access_expiry_s, *t.refresh_live, *t.refresh_spent]

    def revoke_refresh_tokens(self) -> None:
        self.tokens.refresh_spent |= self.tokens.refresh_live
        self.tokens.refresh_live.clear()

    def expire_access_tokens(self) -> None:
        """Every access token issued so far is now expired (the API answers 401)."""
        for token in self.tokens.access_expiry_s:
            self.tokens.access_expiry_s[token] = 0.0

    def fail_next(
        self,
        path_glob: str,
        status: int = 503,
        body: Any = None,
        headers: dict[str, str] | None = None,
        count: int = 1,
        *,
        delay_s: float = 0.0,
    ) -> None:
        """The next ``count`` requests whose path matches get this answer instead. ``body``:
        a dict/list (JSON), str/bytes (sent as text/html: garbage), or None ({"error": ...})."""
        if body is None:
            body = {"response": None, "error": f"fake failure {status}"}
        head = dict(headers or {})
        if isinstance(body, dict | list):
            raw = json.dumps(body).encode()
            head.setdefault("Content-Type", "application/json")
        else:
            raw = body.encode() if isinstance(body, str) else body
            head.setdefault("Content-Type", "text/html")
        self._failures.append(Failure(path_glob, status, raw, head, count, delay_s))

    def clear_failures(self) -> None:
        self._failures.clear()

    def requests_to(self, path_glob: str) -> list[Recorded]:
        return [r for r in self.requests if fnmatch.fnmatchcase(r.path, path_glob)]

    # -- running -----------------------------------------------------------------------------

    async def start(self) -> FakeFleet:
        app = web.Application(middlewares=[self._record_and_fail])
        app.router.add_post(TOKEN_PATH, self._token)
        app.router.add_get("/api/1/vehicles", self._list)
        app.router.add_get("/api/1/vehicles/{vin}", self._vehicle)
        app.router.add_get("/api/1/vehicles/{vin}/vehicle_data", self._vehicle_data)
        app.router.add_post("/api/1/vehicles/{vin}/wake_up", self._wake_up)
        app.router.add_post("/api/1/vehicles/{vin}/command/{command}", self._command)
        app.router.add_post("/api/1/vehicles/{vin}/signed_command", self._signed_command)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self._ssl)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeFleet:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @contextlib.contextmanager
    def running(self) -> Iterator[FakeFleet]:
        """Serve from a thread with its own loop, for sync callers (and subprocess tests)."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="fakefleet", daemon=True)
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.start(), loop).result(10)
            yield self
        finally:
            asyncio.run_coroutine_threadsafe(self.stop(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            loop.close()

    # -- the server ----------------------------------------------------------------------------

    @web.middleware
    async def _record_and_fail(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.text()
        auth = request.headers.get("Authorization", "")
        self.requests.append(
            Recorded(request.method, request.path, request.query_string, auth, body)
        )
        failure = self._take_failure(request.path)
        if failure is not None:
            await asyncio.sleep(failure.delay_s)  # a hang: longer than the client waits
            return web.Response(status=failure.status, body=failure.body, headers=failure.headers)
        if request.path != TOKEN_PATH:
            refused = self._check_access(auth)
            if refused is not None:
                return refused
        return await handler(request)

    def _take_failure(self, path: str) -> Failure | None:
        for failure in self._failures:
            if failure.count > 0 and fnmatch.fnmatchcase(path, failure.path_glob):
                failure.count -= 1
                if failure.count == 0:
                    self._failures.remove(failure)
                return failure
        return None

    def _check_access(self, auth: str) -> web.Response | None:
        token = auth.removeprefix("Bearer ")
        exp = self.tokens.access_expiry_s.get(token)
        if exp is None:
            return _json({"error": "invalid_token", "error_description": "unknown token"}, 401)
        if exp <= self._wallclock():
            return _json({"response": None, "error": "token expired (401)"}, 401)
        return None

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != "refresh_token":
            return _json({"error": "unsupported_grant_type"}, 400)
        if form.get("client_id") != self.tokens.client_id:
            return _json({"error": "invalid_client"}, 401)
        old = str(form.get("refresh_token", ""))
        if old not in self.tokens.refresh_live:  # reused, revoked or made up: single-use
            body = {"error": "login_required", "error_description": "The refresh_token is invalid"}
            return _json(body, 401)
        self.tokens.refresh_live.discard(old)
        self.tokens.refresh_spent.add(old)
        self.tokens.refreshes += 1
        return _json(
            {
                "access_token": self.issue_access_token(),
                "refresh_token": self.issue_refresh_token(),
                "id_token": jwt_shaped({"sub": "fake"}),
                "expires_in": int(self.tokens.access_lifetime_s),
                "token_type": "Bearer",
            }
        )

    def _car(self, request: web.Request) -> FakeCar:
        car = self.cars.get(request.match_info["vin"])
        if car is None:
            raise web.HTTPNotFound(
                text=json.dumps({"response": None, "error": "not_found"}),
                content_type="application/json",
            )
        if car.waking_at_s is not None and time.monotonic() >= car.waking_at_s:
            car.asleep, car.waking_at_s = False, None
        return car

    async def _list(self, request: web.Request) -> web.Response:
        cars = [car.summary(i) for i, car in enumerate(self.cars.values())]
        return _json({"response": cars, "count": len(cars)})

    async def _vehicle(self, request: web.Request) -> web.Response:
        car = self._car(request)
        return _json({"response": car.summary(list(self.cars).index(car.vin))})

    async def _vehicle_data(self, request: web.Request) -> web.Response:
        car = self._car(request)
        if car.asleep:
            return _json({"response": None, "error": ASLEEP}, 408)
        asked = set(request.query.get("endpoints", "").split(";"))
        response: dict[str, Any] = car.summary(list(self.cars).index(car.vin))
        if "charge_state" in asked:
            response["charge_state"] = {
                "battery_level": car.battery_level,
                "charge_limit_soc": car.charge_limit_soc,
                "charging_state": car.charging_state if car.plugged else "Disconnected",
                "scheduled_charging_pending": car.scheduled_charging_pending,
                "charge_current_request": car.charge_current_request,
            }
        if "drive_state" in asked:
            located = "location_data" in asked  # newer firmware: no position unless asked
            response["drive_state"] = {
                "latitude": car.latitude if located else None,
                "longitude": car.longitude if located else None,
            }
        return _json({"response": response})

    async def _wake_up(self, request: web.Request) -> web.Response:
        car = self._car(request)
        if car.asleep and car.waking_at_s is None:
            car.waking_at_s = time.monotonic() + self.wake_delay_s
            self._car(request)  # with no delay the car is up at once
        return _json({"response": car.summary(list(self.cars).index(car.vin))})

    async def _command(self, request: web.Request) -> web.Response:
        car = self._car(request)
        if car.requires_signing:
            return _json({"response": None, "error": SIGNING_REQUIRED}, 403)
        if car.asleep:
            return _json({"response": None, "error": ASLEEP}, 408)
        command = request.match_info["command"]
        if command == "charge_start":
            reason = self._start(car)
        elif command == "charge_stop":
            reason = self._stop(car)
        elif command == "set_charging_amps":
            amps = (await request.json()).get("charging_amps")
            if not isinstance(amps, int):
                return _json({"response": None, "error": "invalid_field"}, 400)
            car.charge_current_request, reason = amps, ""
        else:
            return _json({"response": None, "error": "invalid_command"}, 400)
        return _json({"response": {"result": reason == "", "reason": reason}})

    async def _signed_command(self, request: web.Request) -> web.Response:
        car = self._car(request)
        if car.asleep:
            return _json({"response": None, "error": ASLEEP}, 408)
        try:
            raw = base64.b64decode((await request.json())["routable_message"], validate=True)
            message = RoutableMessage.FromString(raw)
        except (ValueError, KeyError, TypeError, DecodeError):
            return _json({"response": None, "error": "invalid_field: routable_message"}, 400)
        answer = car.signing.handle(message, lambda action: self._apply(car, action))
        return _json({"response": base64.b64encode(answer.SerializeToString()).decode()})

    def _apply(self, car: FakeCar, action: Action) -> tuple[bool, str]:
        """A signed CarServer action, with the same reasons as the REST commands."""
        vehicle = action.vehicleAction
        if vehicle.HasField("chargingStartStopAction"):
            which = vehicle.chargingStartStopAction.WhichOneof("charging_action")
            reason = self._stop(car) if which == "stop" else self._start(car)
        elif vehicle.HasField("setChargingAmpsAction"):
            car.charge_current_request = vehicle.setChargingAmpsAction.charging_amps
            reason = ""
        else:
            reason = "unsupported by the fake"
        return reason == "", reason

    @staticmethod
    def _start(car: FakeCar) -> str:
        if not car.plugged:
            return "disconnected"
        if car.charging_state == "Charging":
            return "is_charging"
        if car.battery_level >= car.charge_limit_soc:
            return "complete"
        car.charging_state = "Charging"
        return ""

    @staticmethod
    def _stop(car: FakeCar) -> str:
        if car.charging_state != "Charging":
            return "not_charging"
        car.charging_state = "Stopped"
        return ""


def _json(document: Any, status: int = 200) -> web.Response:
    return web.json_response(document, status=status)
