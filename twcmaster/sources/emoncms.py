"""EmonCMS (OpenEnergyMonitor) feeds, on a local emonPi/emonBase or emoncms.org
(TWCManager's ``EmonCMS`` source).

Config ``sources.EmonCMS`` (TWCManager's keys):

* ``serverIP``, ``serverPort`` (default 80), ``serverPath`` (where EmonCMS lives on the
  server, e.g. ``/emoncms``; default none), ``useHttps`` (default false);
* ``apiKey``: the account's read API key, sent as ``Authorization: Bearer`` (without it,
  only public feeds can be read);
* ``consumptionFeed``, ``generationFeed``: the ids of the feeds (in W) of the house load and
  the solar generation; either may be left out, not both.

``GET <serverPath>/feed/fetch.json?ids=<consumption>,<generation>`` answers the feeds' latest
values as a list in the order asked, ``[1559.6, 3480]``. (TWCManager read that list from its
end, so with both feeds set it swapped them; twcmaster takes each value in its place.) A null
(a feed without data) or a value that is not a number is an error naming the feed; EmonCMS
reports errors such as a wrong key as ``{"success": false, "message": ...}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twcmaster.sources.base import Reading, Source, SourceTiming
from twcmaster.sources.http import HttpClient, ShapeError, as_number, base_url
from twcmaster.sources.registry import (
    Problem,
    check_flag,
    check_host,
    check_port,
    check_required,
    read_flag,
    read_port,
    read_text,
)

DEFAULT_PORT = 80
FEED_KEYS = {"consumption": "consumptionFeed", "generation": "generationFeed"}
STATUS_HINTS = {401: "EmonCMS refused the API key: check apiKey"}


class EmonCmsSource(Source):
    name = "EmonCMS"

    def __init__(self, config: Mapping[str, Any], timing: SourceTiming) -> None:
        super().__init__(config, timing)
        host = read_text(config, "serverIP") or ""
        port = read_port(config, "serverPort", DEFAULT_PORT)
        path = (read_text(config, "serverPath") or "").rstrip("/")
        https = read_flag(config, "useHttps", False)
        self.url = base_url(host, port, https=https) + path + "/feed/fetch.json"
        self.feeds = {
            field: read_text(config, key)
            for field, key in FEED_KEYS.items()
            if read_text(config, key) is not None
        }
        api_key = read_text(config, "apiKey")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        self.http = HttpClient(self.name, timing, headers=headers, status_hints=STATUS_HINTS)

    @classmethod
    def check(cls, config: Mapping[str, Any]) -> list[Problem]:
        problems = check_host(config, "serverIP", "the EmonCMS server's IP address or host name")
        problems += check_port(config, "serverPort") + check_flag(config, "useHttps")
        path = config.get("serverPath")
        if path not in (None, "") and (not isinstance(path, str) or not path.startswith("/")):
            problems.append(("serverPath", f"expected a path such as /emoncms, got {path!r}"))
        if config.get("apiKey") is not None:  # a local EmonCMS may serve public feeds
            problems += check_required(config, "apiKey", "the EmonCMS read API key")
        given = [key for key in FEED_KEYS.values() if config.get(key) not in (None, "")]
        for key in given:
            problems += check_required(config, key, "an EmonCMS feed id")
        if not given:
            problems.append(("", "give consumptionFeed and/or generationFeed (EmonCMS feed ids)"))
        return problems

    def describe(self) -> str:
        feeds = ", ".join(f"{field} feed {feed}" for field, feed in self.feeds.items())
        return f"EmonCMS at {self.url}: {feeds}"

    def fetch(self) -> Reading:
        ids = ",".join(self.feeds.values())
        return self.http.get_json(self.url, params={"ids": ids}, parse=self._parse)

    def _parse(self, doc: Any) -> Reading:
        if isinstance(doc, Mapping) and doc.get("success") is False:
            raise ShapeError(f"EmonCMS says: {doc.get('message', 'no message')}")
        if not isinstance(doc, list) or len(doc) != len(self.feeds):
            raise ShapeError(f"expected a list of {len(self.feeds)} feed value(s)")
        values = {}
        for (field, feed), value in zip(self.feeds.items(), doc, strict=True):
            if value is None:
                raise ShapeError(f"feed {feed} ({field}) has no value (null)")
            values[f"{field}_w"] = as_number(value, f"feed {feed} ({field})")
        return Reading(**values)
