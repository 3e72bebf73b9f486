"""Any HTTP endpoint that answers with a number (TWCManager's ``URL`` source, e.g. Node-RED),
or with JSON holding the numbers (twcmaster's generic HTTP/JSON source).

Config ``sources.URL``:

* ``url`` (required): ``http://host:port/path``.
* TWCManager's keys: ``consumptionItem`` / ``generationItem``: ``GET <url>/<item>`` answers
  a plain-text number of watts (``3480``, ``3480.5``; ``"3.48 kW"`` with a unit is read as
  such rather than cut at the space as TWCManager does).
* twcmaster's keys: ``consumptionPath`` / ``generationPath``: a JSON path
  (``twcmaster.sources.jsonpath``, e.g. ``$.Body.Data.Site.P_PV``) into the JSON answer. With
  an item too, the path applies to the answer of ``<url>/<item>``; without, to ``<url>``
  itself, fetched once per poll however many paths read it.
* ``unit``: ``W`` (default), ``kW``, ``MW`` or ``mW``: the unit of bare numbers; a text value
  carrying its own unit (``"3.48 kW"``) says which it is.
* ``headers``: extra request headers, e.g. ``{"Authorization": "Bearer ..."}``; their values
  never appear in messages or logs (nor does a password in ``http://user:password@host/``).
* ``verifyTLS`` (default true) / ``caFile``: for an ``https`` URL with a self-signed
  certificate.

A field is measured when it has an item or a path; at least one must be given. Any failure
(unreachable, HTTP error, malformed JSON, a path that leads nowhere, a non-numeric value) fails
the whole poll with a ``SourceError``: a reading with one field missing could raise the budget.

The value rules (``power_w``, ``parse_unit``) are shared by the HASS, openHAB and MQTT
sources.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

from twcmaster.numbers import finite_number
from twcmaster.sources.base import Reading, Source, SourceTiming
from twcmaster.sources.http import NOT_SHOWN, HttpClient, ShapeError, shown
from twcmaster.sources.jsonpath import JsonPath, JsonPathError, compile_path
from twcmaster.sources.registry import Problem, check_file, check_flag, read_flag, read_text
from twcmaster.sources.secrets import register_url_userinfo

# Power units and their size in watts. Case matters only where it must (mW vs MW).
POWER_UNITS = {"mW": 1e-3, "W": 1.0, "kW": 1e3, "MW": 1e6, "GW": 1e9}
_UNITS_ANY_CASE = {"w": 1.0, "kw": 1e3, "gw": 1e9}
DEFAULT_UNIT = "W"

_QUANTITY = re.compile(
    r"""\s*(?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*(?P<unit>[A-Za-z]+)?\s*"""
)
FIELDS = ("consumption", "generation")
_USERINFO = re.compile(r"([^/:@\s]*):[^@\s]*@")  # user:password@ in a URL
# Header values that are not secrets (every other header value is kept out of messages).
_PLAIN_HEADERS = frozenset({"accept", "accept-language", "content-type", "user-agent"})


# ------------------------------------------------------------------ value rules (shared)


def parse_unit(unit: Any) -> float:
    """Watts per ``unit`` (``"W"``, ``"kW"`` ...). ShapeError for anything else."""
    if isinstance(unit, str):
        text = unit.strip()
        if text in POWER_UNITS:
            return POWER_UNITS[text]
        if text.lower() in _UNITS_ANY_CASE:
            return _UNITS_ANY_CASE[text.lower()]
        if text.lower() == "mw":
            raise ShapeError(f"unit {unit!r} is ambiguous: mW (milliwatt) or MW (megawatt)?")
    raise ShapeError(f"unit {unit!r} is not a power unit (expected one of {_unit_list()})")


def power_w(value: Any, unit: str = DEFAULT_UNIT) -> float:
    """Watts from a JSON number or a text such as ``"3480"``, ``"3.48 kW"``, ``"3480W"``.

    ``unit`` applies to bare numbers; a unit in the text wins. ShapeError (a ValueError)
    for null, booleans, non-numeric text (``"unavailable"``, ``"NULL"``), NaN and infinity.
    """
    if value is None:
        raise ShapeError("the value is null, expected a number")
    if isinstance(value, bool):
        raise ShapeError(f"the value is {str(value).lower()}, expected a number")
    text: Any = value
    if isinstance(value, str):
        match = _QUANTITY.fullmatch(value)
        if match is None:
            raise ShapeError(f"{shown(value.strip())} is not a number")
        text, unit = match["number"], match["unit"] or unit
    elif not isinstance(value, int | float):
        raise ShapeError(f"the value is {type(value).__name__}, expected a number")
    number = finite_number(text)
    if number is None:
        raise ShapeError(f"{shown(value)} is not a finite number")
    return number * parse_unit(unit)


def check_unit(config: Mapping[str, Any], key: str = "unit") -> list[Problem]:
    value = config.get(key)
    if value is None:
        return []
    try:
        parse_unit(value)
    except ShapeError as exc:
        return [(key, str(exc))]
    return []


def check_path(config: Mapping[str, Any], key: str) -> list[Problem]:
    value = config.get(key)
    if value is None:
        return []
    try:
        compile_path(value)
    except JsonPathError as exc:
        return [(key, str(exc))]
    return []


def _unit_list() -> str:
    return ", ".join(POWER_UNITS)


# ------------------------------------------------------------------------- the source


class UrlSource(Source):
    name = "URL"

    def __init__(self, config: Mapping[str, Any], timing: SourceTiming) -> None:
        super().__init__(config, timing)
        self.url = str(config.get("url", "")).strip().rstrip("/")
        self.unit = read_text(config, "unit", DEFAULT_UNIT) or DEFAULT_UNIT
        headers = {str(k): str(v) for k, v in (config.get("headers") or {}).items()}
        ca_file = read_text(config, "caFile")
        verify: bool | str = ca_file if ca_file else read_flag(config, "verifyTLS", True)
        # Each measured field: (the URL it is read from, its JSON path or None).
        self.reads: dict[str, tuple[str, JsonPath | None]] = {}
        for field in FIELDS:
            item = read_text(config, f"{field}Item")
            path = read_text(config, f"{field}Path")
            if item is None and path is None:
                continue
            target = f"{self.url}/{item.lstrip('/')}" if item else self.url
            self.reads[field] = (target, compile_path(path) if path else None)
        secrets = [v for k, v in headers.items() if k.lower() not in _PLAIN_HEADERS]
        # http://user:password@host/... works (requests sends it as basic auth); the password
        # stays out of messages and describe().
        self._url_password = urllib.parse.urlsplit(self.url).password
        if register_url_userinfo(self.url):  # as written, and as sent (Base64 of user:pass)
            secrets.append(self._url_password)  # and the requests are authenticated
        self.http = HttpClient(self.name, timing, verify=verify, headers=headers, secrets=secrets)

    @classmethod
    def check(cls, config: Mapping[str, Any]) -> list[Problem]:
        problems: list[Problem] = []
        url = config.get("url")
        if not isinstance(url, str) or not url.strip():
            problems.append(
                (
                    "url",
                    "required when the source is enabled: the address to read, like "
                    "http://nodered.local:1880/energy",
                )
            )
        elif not re.match(r"https?://[^/\s]+", url.strip()):
            shown_url = _USERINFO.sub(r"\1:***@", url.strip())  # check-config prints it
            problems.append(("url", f"{shown_url!r}: expected an http:// or https:// URL"))
        measured = False
        for field in FIELDS:
            for key in (f"{field}Item", f"{field}Path"):
                value = config.get(key)
                if value is None:
                    continue
                if not isinstance(value, str) or not value.strip():
                    problems.append((key, f"expected a non-empty text, got {value!r}"))
                    continue
                measured = True
            problems += check_path(config, f"{field}Path")
        if not measured:
            problems.append(
                (
                    "",
                    "give consumptionItem and/or generationItem (a plain-text number at "
                    "<url>/<item>), or consumptionPath and/or generationPath (a JSON path into "
                    "the answer)",
                )
            )
        problems += check_unit(config)
        headers = config.get("headers")
        if headers is not None and (
            not isinstance(headers, Mapping)
            or not all(isinstance(v, str | int | float) for v in headers.values())
        ):
            problems.append(("headers", 'expected a section like {"Authorization": "Bearer ..."}'))
        problems += check_flag(config, "verifyTLS")
        problems += check_file(config, "caFile", "a CA certificate bundle (PEM)")
        return problems

    def describe(self) -> str:
        parts = []
        for field, (target, path) in self.reads.items():
            if self._url_password:
                target = target.replace(f":{self._url_password}@", ":***@", 1)
            parts.append(f"{field} from {target}" + (f" at {path}" if path else ""))
        return f"URL: {'; '.join(parts)} (bare numbers in {self.unit})"

    def fetch(self) -> Reading:
        bodies: dict[str, str] = {}
        values: dict[str, float] = {}
        for field, (target, path) in self.reads.items():
            if target not in bodies:
                bodies[target] = self.http.get_text(target)
            values[f"{field}_w"] = self._value(target, bodies[target], path)
        return Reading(**values)

    def _value(self, target: str, body: str, path: JsonPath | None) -> float:
        request = f"GET {target}"
        if path is None:
            value: Any = plain_text(body)
        else:
            try:
                document = json.loads(body)
            except ValueError as exc:
                cause = f"malformed JSON ({exc})"
                if self.http.authenticated:
                    cause += f"; {len(body)}-character body {NOT_SHOWN}"
                else:
                    cause += f": {shown(body, 80)}"
                raise self.http.error(request, cause) from None
            try:
                value = path.find(document)
            except JsonPathError as exc:
                raise self.http.error(request, f"unexpected answer: {exc}") from None
        try:
            return power_w(value, self.unit)
        except ShapeError as exc:
            where = f" at {path}" if path is not None else ""
            raise self.http.error(request, f"unexpected answer{where}: {exc}") from None


def plain_text(body: str) -> Any:
    """A plain-text answer; a JSON number or JSON string (Node-RED may send either) is
    unwrapped."""
    text = body.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text
