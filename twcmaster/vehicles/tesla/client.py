"""``api.CarApi`` over the Fleet API's REST paths, through tesla-fleet-api (which signs
commands when given the app's private key: the Vehicle Command Protocol is not hand-rolled).

``base_url`` is a regional Fleet API host, a relay, or a local ``tesla-http-proxy``; for the
proxy, ``proxy_cert`` pins its self-signed certificate (trusted alone, not with the system's
CAs). Paths and shapes: anchors section 5, and ``tests/tesla/fakefleet.py``.

Every HTTP request made is reported to ``on_call(kind, vin, billable)``, counted from an
aiohttp trace, so the signed-command handshakes count too; billable unless Tesla answered 5xx
or did not answer. Failures become the ``api`` error kinds:

    408 Asleep · 429 RateLimited (Retry-After / RateLimit-Reset) · 401 login_required
    LoginRequired · other 401 TokenExpired (refresh, retry once) · 403 "vehicle command
    protocol" SigningRequired · other 403 Forbidden · 404 NotFound · 5xx, timeouts, refused
    connections, bodies that are not JSON: Transient

Signed commands can also fail inside a 200 answer, with a fault from the car: a key the car
does not know (not on its whitelist, unknown key id, inactive key) is Forbidden and says to
pair the key; busy / timeout / internal faults are Transient; the rest CarApiError.

tesla-fleet-api's exceptions derive from BaseException (``TeslaFleetError``), so they are
caught by name: ``except Exception`` would let them through.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from tesla_fleet_api import TeslaFleetApi
from tesla_fleet_api.exceptions import (
    MobileAccessDisabled,
    NotOnWhitelistFault,
    TeslaFleetError,
    TeslaFleetInformationFault,
    TeslaFleetMessageFault,
    TeslaFleetMessageFaultBusy,
    TeslaFleetMessageFaultInactiveKey,
    TeslaFleetMessageFaultInternal,
    TeslaFleetMessageFaultRemoteAccessDisabled,
    TeslaFleetMessageFaultTimeout,
    TeslaFleetMessageFaultUnknownKeyId,
)

from twcmaster.vehicles.tesla import api
from twcmaster.vehicles.tesla.keys import load_private_key, pinned_context  # check-config's too

# Signed-command faults: the car does not know (or no longer accepts) the app's key ...
KEY_FAULTS = (
    NotOnWhitelistFault,
    TeslaFleetMessageFaultUnknownKeyId,
    TeslaFleetMessageFaultInactiveKey,
)
# ... and the car was busy: the same command may pass later.
BUSY_FAULTS = (
    TeslaFleetMessageFaultBusy,
    TeslaFleetMessageFaultTimeout,
    TeslaFleetMessageFaultInternal,
)
NOT_PAIRED = (
    "Tesla API: the car does not know this key (pair privateKeyFile's public key with the car: "
    "https://tesla.com/_ak/<your domain>)"
)
DATA_ENDPOINTS = ["charge_state", "location_data", "drive_state"]  # location needs asking
START_OK_REASONS = frozenset({"is_charging", "charging"})  # already doing what was asked
STOP_OK_REASONS = frozenset({"not_charging"})
SIGNING_WORDS = "vehicle command protocol"  # in the 403 body for unsigned commands
ERROR_TEXT_MAX = 160  # characters of a server's error text kept in a message
JWT_LIKE = re.compile(r"[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")


@dataclass
class _Call:
    """The API call in progress in this task: what the trace reports, what errors scrub."""

    kind: str
    vin: str | None
    token: str
    status: int | None = None  # of the last answer
    headers: Mapping[str, str] = field(default_factory=dict)


_current: contextvars.ContextVar[_Call] = contextvars.ContextVar("tesla_call")


class TeslaClient:
    def __init__(
        self,
        base_url: str,
        access_token: Callable[[], Awaitable[str]],
        *,
        on_call: Callable[[str, str | None, bool], None] = lambda *a: None,
        proxy_cert: str | None = None,
        private_key_file: str | None = None,
        timeout_s: float = 20.0,
        on_token_rejected: Callable[[], None] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._access_token = access_token
        self._on_call = on_call
        self._on_token_rejected = on_token_rejected
        self.timeout_s = timeout_s
        # Both files are read now, so a bad path fails at start-up, not at the first command.
        self._ssl = pinned_context(proxy_cert) if proxy_cert else None
        self._private_key = load_private_key(private_key_file) if private_key_file else None
        self._session: aiohttp.ClientSession | None = None
        self._api: TeslaFleetApi | None = None
        self._cars: dict[str, Any] = {}  # vin → the library's vehicle (for data)
        self._signed: dict[str, Any] = {}  # vin → the library's signed vehicle (commands)

    def __repr__(self) -> str:
        signed = "signed" if self._private_key else "unsigned"
        return f"TeslaClient({self.base_url!r}, {signed})"

    @property
    def signed(self) -> bool:
        return self._private_key is not None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session, self._api = None, None

    # -- the calls ---------------------------------------------------------------------------

    async def list_vehicles(self) -> list[api.VehicleInfo]:
        doc = await self._call("data", None, lambda: self._car("").list())
        return [_vehicle_info(item) for item in _field(doc, "response", list)]

    async def vehicle_state(self, vin: str) -> str:
        doc = await self._call("data", vin, lambda: self._car(vin).vehicle())
        return _field(_field(doc, "response", dict), "state", str)

    async def charge_data(self, vin: str) -> api.ChargeData:
        doc = await self._call("data", vin, lambda: self._car(vin).vehicle_data(DATA_ENDPOINTS))
        return _charge_data(vin, _field(doc, "response", dict))

    async def wake_up(self, vin: str) -> str:
        doc = await self._call("wake", vin, lambda: self._car(vin).wake_up())
        return _field(_field(doc, "response", dict), "state", str)

    async def charge_start(self, vin: str) -> str:
        doc = await self._call("command", vin, lambda: self._commander(vin).charge_start())
        return command_reason(doc, START_OK_REASONS)

    async def charge_stop(self, vin: str) -> str:
        doc = await self._call("command", vin, lambda: self._commander(vin).charge_stop())
        return command_reason(doc, STOP_OK_REASONS)

    async def set_charging_amps(self, vin: str, amps: int) -> str:
        doc = await self._call(
            "command", vin, lambda: self._commander(vin).set_charging_amps(int(amps))
        )
        return command_reason(doc, frozenset())

    # -- plumbing ----------------------------------------------------------------------------

    def _fleet(self) -> TeslaFleetApi:
        if self._api is None:
            trace = aiohttp.TraceConfig()
            trace.on_request_end.append(self._request_answered)
            trace.on_request_exception.append(self._request_failed)
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                connector=aiohttp.TCPConnector(ssl=self._ssl if self._ssl else True),
                trace_configs=[trace],
            )
            self._api = TeslaFleetApi(
                self._session, access_token=_token_of_call, server=self.base_url
            )
            self._api.private_key = self._private_key
        return self._api

    def _car(self, vin: str) -> Any:
        if vin not in self._cars:
            fleet = self._fleet()
            # The account-wide list is a method of the library's vehicle: "" stands for none.
            car = fleet.vehicles.createFleet(vin) if vin else fleet.vehicles.Fleet(fleet, "")
            self._cars[vin] = car
        return self._cars[vin]

    def _commander(self, vin: str) -> Any:
        if self._private_key is None:
            return self._car(vin)
        if vin not in self._signed:
            self._signed[vin] = self._fleet().vehicles.createSigned(vin)
        return self._signed[vin]

    async def _call(self, kind: str, vin: str | None, request: Callable[[], Awaitable[Any]]) -> Any:
        """One API call: a token, the request, errors mapped; a 401 expired is retried once
        with a fresh token."""
        for attempt in (1, 2):
            call = _Call(kind, vin, await self._access_token())  # its errors pass as they are
            reset = _current.set(call)
            try:
                return await self._mapped(call, request)
            except api.TokenExpired:
                if self._on_token_rejected is not None:
                    self._on_token_rejected()
                if attempt == 2:
                    raise
            finally:
                _current.reset(reset)
        raise AssertionError("unreachable")

    async def _mapped(self, call: _Call, request: Callable[[], Awaitable[Any]]) -> Any:
        try:
            return await request()
        except TeslaFleetError as exc:
            raise _library_error(call, exc) from None
        except TimeoutError:
            raise api.Transient(
                f"Tesla API: no answer within {self.timeout_s:g} s", billable=False
            ) from None
        except aiohttp.ClientResponseError as exc:  # an error status the library passes on
            raise _status_error(call, exc.status, "") from None
        except aiohttp.ClientError as exc:
            raise api.Transient(
                f"Tesla API: no answer ({type(exc).__name__})", billable=False
            ) from None
        except ValueError:
            raise api.Transient(
                f"Tesla API: the answer (HTTP {call.status}) is not JSON", billable=_billable(call)
            ) from None

    async def _request_answered(self, session: Any, context: Any, params: Any) -> None:
        call = _current.get(None)
        if call is not None:
            call.status, call.headers = params.response.status, params.response.headers
            self._on_call(call.kind, call.vin, _billable(call))

    async def _request_failed(self, session: Any, context: Any, params: Any) -> None:
        call = _current.get(None)
        if call is not None:
            call.status = None
            self._on_call(call.kind, call.vin, False)  # Tesla did not answer: not billed


async def _token_of_call() -> str:
    """The library asks for the token here; it is the one ``_call`` fetched for this call."""
    return _current.get().token


def _billable(call: _Call) -> bool:
    return call.status is not None and call.status < 500


def _library_error(call: _Call, exc: TeslaFleetError) -> api.CarApiError:
    data = exc.data
    text = data.get("error") if isinstance(data, dict) else data
    text = text if isinstance(text, str) else ""
    if isinstance(exc, MobileAccessDisabled):  # a refresh would not help
        return api.Forbidden("Tesla API: the car has remote (mobile) access turned off")
    if isinstance(exc, TeslaFleetMessageFault | TeslaFleetInformationFault):
        return _signed_fault(call, exc)  # inside a 200 answer: call.status says nothing
    status = call.status if call.status is not None else exc.status
    if status is None:
        return api.CarApiError(_scrub(call, f"Tesla API: {type(exc).__name__}: {exc.message}"))
    if status == 200:
        return api.Transient(f"Tesla API: the answer (HTTP {status}) is not JSON")
    return _status_error(call, status, text)


def _signed_fault(call: _Call, exc: TeslaFleetError) -> api.CarApiError:
    """The car refused a signed message (the library raises the fault's class)."""
    message = _scrub(call, f"Tesla API: the car refused the command: {type(exc).__name__}")
    if isinstance(exc, KEY_FAULTS):
        return api.Forbidden(NOT_PAIRED)
    if isinstance(exc, TeslaFleetMessageFaultRemoteAccessDisabled):
        return api.Forbidden("Tesla API: the car has remote (mobile) access turned off")
    if isinstance(exc, BUSY_FAULTS):
        return api.Transient(message)  # the car answered: billed
    return api.CarApiError(message)


def _status_error(call: _Call, status: int, text: str) -> api.CarApiError:
    message = _scrub(call, f"Tesla API: HTTP {status}" + (f": {text}" if text else ""))
    lowered = text.lower()
    if status == 408:
        return api.Asleep(message)
    if status == 429:
        return api.RateLimited(message, retry_after_s=_retry_after_s(call.headers))
    if status == 401:
        if "login_required" in lowered:
            return api.LoginRequired(message)
        return api.TokenExpired(message)
    if status == 403:
        if SIGNING_WORDS in lowered:
            return api.SigningRequired(message)
        return api.Forbidden(message)
    if status == 404:
        return api.NotFound(message)
    if status >= 500:
        return api.Transient(message, billable=False)
    return api.CarApiError(message)


def _retry_after_s(headers: Mapping[str, str]) -> float | None:
    """Retry-After (s), else RateLimit-Reset (s until the window resets)."""
    for name in ("Retry-After", "RateLimit-Reset"):
        try:
            value = float(headers.get(name, ""))
        except ValueError:
            continue
        if value >= 0:
            return value
    return None


def _scrub(call: _Call, message: str) -> str:
    """Cut a server's text short and blank anything token-like it may echo."""
    if call.token:
        message = message.replace(call.token, "<token>")
    return JWT_LIKE.sub("<token>", message)[:ERROR_TEXT_MAX]


# -- answers -----------------------------------------------------------------------------------


def _field(doc: Any, name: str, kind: type) -> Any:
    value = doc.get(name) if isinstance(doc, dict) else None
    if not isinstance(value, kind):
        raise api.Transient(f"Tesla API: answer without {name} ({kind.__name__})")
    return value


def _int(doc: Mapping[str, Any], name: str) -> int | None:
    value = doc.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return round(value)


def _float(doc: Mapping[str, Any], name: str) -> float | None:
    value = doc.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _vehicle_info(item: Any) -> api.VehicleInfo:
    name = item.get("display_name") if isinstance(item, dict) else None
    return api.VehicleInfo(
        vin=_field(item, "vin", str),
        name=name if isinstance(name, str) else "",
        state=_field(item, "state", str),
    )


def _charge_data(vin: str, response: dict[str, Any]) -> api.ChargeData:
    charge = response.get("charge_state")
    charge = charge if isinstance(charge, dict) else {}
    drive = response.get("drive_state")
    drive = drive if isinstance(drive, dict) else {}
    charging_state = charge.get("charging_state")
    return api.ChargeData(
        vin=vin,
        state=_field(response, "state", str),
        battery_level=_int(charge, "battery_level"),
        charge_limit_soc=_int(charge, "charge_limit_soc"),
        charging_state=charging_state if isinstance(charging_state, str) else None,
        scheduled_charging_pending=charge.get("scheduled_charging_pending") is True,
        charge_current_request=_int(charge, "charge_current_request"),
        latitude=_float(drive, "latitude"),
        longitude=_float(drive, "longitude"),
    )


def command_reason(doc: Any, ok_reasons: frozenset[str]) -> str:
    response = _field(doc, "response", dict)
    reason = response.get("reason")
    reason = reason if isinstance(reason, str) else ""
    if response.get("result") is True or reason in ok_reasons:
        return reason
    raise api.Refused(reason or "refused")  # the reason alone: callers act on it
