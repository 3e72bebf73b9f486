"""``twcmaster status``: the running daemon's snapshot, from its HTTP API
(``GET /api/v1/snapshot``), in the console's words and numbers.

The lines, in order: where and when, the policy and its reason (the console's
``Policy: <name>: <reason>``), the green-energy lines exactly as the console prints them,
Charge Now or a policy forced by hand, one line per TWC (the console's state byte and
``actual/allowed`` amps, then the offer and its reason), the totals, and the alarms
(``ALARM: ...``). ``--json`` prints the snapshot JSON as the daemon sent it.

Exit 0 when the daemon answered; 1 with one clear line on stderr when nothing answers
(refused, no answer within ``TIMEOUT_S``), the token is missing or wrong, or the answer is
not twcmaster's JSON.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

import requests

if TYPE_CHECKING:
    from twcmaster.config import HttpConfig, LoadedConfig

__all__ = [
    "DEFAULT_URL",
    "StatusError",
    "fetch_snapshot",
    "run_command",
    "run_status",
    "status_lines",
]

DEFAULT_URL = "http://127.0.0.1:8080"
SNAPSHOT_PATH = "/api/v1/snapshot"
TIMEOUT_S = 3.0  # connect and read: a daemon on this machine answers in milliseconds
TOKEN_ENV = "TWCMASTER_TOKEN"  # a token on the command line shows in `ps`; this does not
WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


class StatusError(Exception):
    """Why no snapshot could be shown (one line for the user)."""


def url_from_config(http: HttpConfig) -> str:
    """The daemon's API as this machine reaches it (a wildcard bind: through loopback)."""
    host = WILDCARD_HOSTS.get(http.listen_ip, http.listen_ip)
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{http.listen_port}"


def run_command(
    *, url: str | None, loaded: LoadedConfig | None, token: str | None, as_json: bool
) -> int:
    """``twcmaster status``: the URL and token from the arguments, else ``$TWCMASTER_TOKEN``
    and the config's ``control.HTTP`` (when ``--config`` is given), else the defaults."""
    token = token or os.environ.get(TOKEN_ENV) or None
    if loaded is not None:
        http = loaded.settings.http
        if http is None and not url:
            print(f"twcmaster status: control.HTTP is off in {loaded.path}", file=sys.stderr)
            return 1
        if http is not None:
            url = url or url_from_config(http)
            token = token or http.token
    return run_status(url or DEFAULT_URL, as_json=as_json, token=token)


def run_status(
    url: str,
    *,
    as_json: bool = False,
    token: str | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        data = fetch_snapshot(url, token=token)
    except StatusError as error:
        print(f"twcmaster status: {error}", file=err)
        return 1
    if as_json:
        print(json.dumps(data, indent=2), file=out)
        return 0
    try:
        lines = status_lines(data, url=url)
    except (KeyError, TypeError, ValueError) as error:  # a snapshot format this one predates
        print(
            f"twcmaster status: cannot read snapshot format {data.get('format')!r} "
            f"({type(error).__name__}: {error}); --json shows it as sent",
            file=err,
        )
        return 1
    for line in lines:
        print(line, file=out)
    return 0


def fetch_snapshot(url: str, *, token: str | None = None, timeout_s: float = TIMEOUT_S) -> dict:
    """The snapshot JSON of the daemon at ``url``; StatusError saying why not."""
    target = url.rstrip("/") + SNAPSHOT_PATH
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = requests.get(target, headers=headers, timeout=timeout_s)
    except requests.exceptions.Timeout:
        raise StatusError(f"no answer from {url} within {timeout_s:g}s") from None
    except requests.exceptions.ConnectionError:
        raise StatusError(
            f"no daemon answers at {url} (is twcmaster running with control.HTTP enabled?)"
        ) from None
    except requests.exceptions.RequestException as error:
        raise StatusError(f"cannot ask {url}: {type(error).__name__}") from None
    return _snapshot_from(response, url, token)


def _snapshot_from(response: requests.Response, url: str, token: str | None) -> dict:
    if response.status_code == 401:
        hint = "wrong token" if token else f"a token is required: --token or ${TOKEN_ENV}"
        raise StatusError(f"{url} refused the request ({hint})")
    try:
        data = response.json()
    except ValueError:
        raise StatusError(
            f"{url} answered HTTP {response.status_code}, not twcmaster's JSON "
            "(is this a twcmaster daemon?)"
        ) from None
    if response.status_code != 200:
        error = data.get("error") if isinstance(data, dict) else None
        raise StatusError(f"{url} answered HTTP {response.status_code}: {error or data!r:.200}")
    if not isinstance(data, dict) or "format" not in data or "slaves" not in data:
        raise StatusError(f"{url} answered JSON that is not a twcmaster snapshot")
    return data


# --------------------------------------------------------------------------- the lines


def status_lines(data: dict[str, Any], *, url: str = "") -> list[str]:
    """The snapshot JSON (``outputs.views.snapshot_json``) as a person reads it."""
    budget = data.get("budget") or {}
    lines = [_headline(data, url)]
    lines.append(f"Policy: {budget.get('policy')}: {budget.get('reason')}")
    lines += budget.get("console_lines") or []
    if not budget.get("console_lines") and data.get("site"):
        lines.append(_site_line(data["site"]))
    lines += _settings_lines(data.get("settings"), data.get("time_epoch") or 0)
    lines += [_slave_line(slave) for slave in data.get("slaves") or []]
    lines.append(_totals_line(data.get("totals") or {}, budget))
    lines += [f"ALARM: {alarm}" for alarm in data.get("alarms") or []]
    if data.get("internal_errors"):
        lines.append(f"Internal errors caught: {data['internal_errors']} (see the daemon's log)")
    return lines


def _headline(data: dict[str, Any], url: str) -> str:
    when = datetime.fromtimestamp(data.get("time_epoch") or 0).strftime("%H:%M:%S")
    link = "bus linked" if data.get("link_up") else "bus NOT linked (serial port closed)"
    count = len(data.get("slaves") or [])
    where = f" at {url}" if url else ""
    return f"twcmaster{where}, {when}: {link}, {count} TWC(s)"


def _site_line(site: dict[str, Any]) -> str:
    line = f"Site: generation {site['generation_w']}W, consumption {site['consumption_w']}W"
    if site.get("grid_w") is not None:
        line += f", grid {site['grid_w']}W"
    if site.get("stale"):
        line += f" (stale: {site.get('reason') or 'no fresh reading'})"
    return line


def _settings_lines(settings: dict[str, Any] | None, now_epoch: float) -> list[str]:
    if not settings:
        return []
    lines = []
    end = settings.get("charge_now_end_epoch") or 0
    if (settings.get("charge_now_amps") or 0) > 0 and end > now_epoch:
        until = datetime.fromtimestamp(end).strftime("%H:%M:%S")
        lines.append(f"Charge Now: {settings['charge_now_amps']:g}A until {until}")
    if settings.get("forced_policy"):
        lines.append(f"Policy forced by hand: {settings['forced_policy']}")
    return lines


def _slave_line(slave: dict[str, Any]) -> str:
    """The console's ``SHB`` figures (state byte, actual/allowed amps as ``%05.2f``) in
    words, then what the master offers it and why."""
    parts = [
        f"TWC {slave['twcid']}: {slave['state']:02X} {slave['state_name']} "
        f"{slave['actual_amps']:05.2f}/{slave['allowed_amps']:05.2f}A, "
        f"offered {slave['offer_amps']}A ({slave['offer_reason'] or 'no offer yet'})"
    ]
    if not slave.get("charging_allowed", True):
        parts.append("charging switched off by hand")
    parts.append(f"car {slave['vin']}" if slave.get("vin") else "no car known")
    if slave.get("voltages_v"):
        parts.append("/".join(str(v) for v in slave["voltages_v"]) + "V")
    if slave.get("lifetime_kwh") is not None:
        parts.append(f"{slave['lifetime_kwh']} kWh")
    if slave.get("car_command"):
        parts.append(f"car asked to {slave['car_command']}")
    parts.append(f"replied {slave['seconds_since_reply']:.1f}s ago")
    return "; ".join(parts)


def _totals_line(totals: dict[str, Any], budget: dict[str, Any]) -> str:
    return (
        f"Total: {totals.get('actual_amps', 0):.2f}A drawn of {totals.get('offer_amps', 0)}A "
        f"offered (budget {budget.get('amps', 0):g}A), {totals.get('charger_load_w', 0)}W, "
        f"{totals.get('cars_charging', 0)} car(s) charging"
    )
