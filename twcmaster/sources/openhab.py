"""openHAB items through its REST API (``GET /rest/items/<item>/state``, plain text).

Config ``sources.openHAB`` (TWCManager's keys):

* ``serverIP``: openHAB's host name or IP address;
* ``serverPort``: default 8080;
* ``consumptionItem`` / ``generationItem``: item names such as ``House_Power``; either may be
  left out, and that field is then not measured.
* twcmaster extra: ``apiKey``, an openHAB API token, for a server that does not allow
  anonymous reads (sent as ``Authorization: Bearer``).

The state of a ``Number`` item is a bare number (taken as watts); a ``Number:Power`` item
carries its unit (``3480 W``, ``3.48 kW``), which is honoured (TWCManager cuts the text at
the space and so reads 3.48 kW as 3.48 W). ``NULL`` (never set) and ``UNDEF`` (the binding
lost its device) fail the poll with a ``SourceError``, as does a quantity that is not a power
(``12.5 kWh``).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any

from twcmaster.sources.base import Reading, Source, SourceTiming
from twcmaster.sources.http import HttpClient, ShapeError, base_url
from twcmaster.sources.registry import Problem, check_host, check_port, read_port, read_text
from twcmaster.sources.url import power_w

DEFAULT_PORT = 8080
ITEMS_PATH = "/rest/items/"
NO_VALUE_STATES = frozenset({"NULL", "UNDEF"})
ITEM_KEYS = {"consumption": "consumptionItem", "generation": "generationItem"}
STATUS_HINTS = {
    401: "openHAB wants a token: set apiKey to an API token of an openHAB user",
    404: "check the item name: Settings > Items in openHAB lists them",
}


class OpenHabSource(Source):
    name = "openHAB"

    def __init__(self, config: Mapping[str, Any], timing: SourceTiming) -> None:
        super().__init__(config, timing)
        host = str(config.get("serverIP", "")).strip()
        self.base_url = base_url(host, read_port(config, "serverPort", DEFAULT_PORT), https=False)
        self.items = {
            field: item
            for field, key in ITEM_KEYS.items()
            if (item := read_text(config, key)) is not None
        }
        api_key = read_text(config, "apiKey")
        headers = {"Accept": "text/plain"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.http = HttpClient(
            self.name, timing, headers=headers, secrets=[api_key], status_hints=STATUS_HINTS
        )

    @classmethod
    def check(cls, config: Mapping[str, Any]) -> list[Problem]:
        problems = check_host(config, "serverIP", "openHAB's host name or IP address")
        problems += check_port(config, "serverPort")
        given = 0
        for key in ITEM_KEYS.values():
            value = config.get(key)
            if value is None or (isinstance(value, str) and not value.strip()):
                continue
            given += 1
            if not isinstance(value, str) or "/" in value or any(c.isspace() for c in value):
                problems.append((key, f"expected an item name like House_Power, got {value!r}"))
        if not given:
            problems.append(("", "give consumptionItem and/or generationItem (openHAB item names)"))
        api_key = config.get("apiKey")
        if api_key is not None and not isinstance(api_key, str):
            problems.append(("apiKey", "expected an openHAB API token (text)"))
        return problems

    def describe(self) -> str:
        parts = ", ".join(f"{field} {item}" for field, item in self.items.items())
        return f"openHAB at {self.base_url}: {parts}"

    def fetch(self) -> Reading:
        return Reading(**{f"{field}_w": self._item_w(item) for field, item in self.items.items()})

    def _item_w(self, item: str) -> float:
        url = f"{self.base_url}{ITEMS_PATH}{urllib.parse.quote(item, safe='')}/state"
        text = self.http.get_text(url)
        try:
            return parse_state(text, item)
        except ShapeError as exc:
            raise self.http.error(f"GET {url}", f"unexpected answer: {exc}") from None


def parse_state(text: str, item: str) -> float:
    """Watts from an item's state text. ShapeError for NULL, UNDEF and non-powers."""
    state = text.strip()
    if state in NO_VALUE_STATES:
        meaning = "never set" if state == "NULL" else "undefined: its binding lost the device"
        raise ShapeError(f"{item} is {state} ({meaning})")
    try:
        return power_w(state)
    except ShapeError as exc:
        raise ShapeError(f"{item}: {exc}") from None
