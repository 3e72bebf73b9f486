"""One small HTTP helper for the sources that speak JSON or text over HTTP.

``HttpClient`` wraps one ``requests.Session`` per source (connection reuse, cookies for the
Powerwall login) with the source's timeout and TLS setting. Every failure comes back as a
``SourceError`` whose message names the source, the request (method and URL, without
secrets) and the cause, in words a user can act on::

    Fronius: GET http://192.168.1.50:80/solar_api/v1/GetPowerFlowRealtimeData.fcgi?Scope=System:
    timed out after 5 s

Secrets never reach a message or a log line: query parameters passed as ``secret_params`` are
left out of the URL shown, and every registered secret (API keys, tokens, passwords) is
replaced by ``***`` in messages, including a server's error body that echoes it. A filter on
urllib3's logger does the same for its DEBUG lines, which carry full request URLs.

Parsing goes through the same door: ``get_json(url, parse=...)`` runs ``parse`` on the decoded
document, and a ``ShapeError`` (or ``KeyError``/``TypeError``/``IndexError``/``ValueError``)
raised there becomes a ``SourceError`` "unexpected answer: ...". The helpers ``pick``,
``number``, ``section`` and ``entries`` raise ``ShapeError`` naming the JSON path that was
missing or of the wrong type.

``requests`` is imported on first use, not at import time, so checking a configuration
(``registry.check_sources``) never loads network libraries.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from twcmaster import __version__
from twcmaster.sources.base import SourceError, SourceTiming

BODY_EXCERPT_CHARS = 200  # how much of an error body or a malformed document a message shows
REDACTED = "***"

# A cause worth saying beyond the reason phrase; a source adds its own hints per status.
STATUS_HINTS = {
    429: "rate limited by the server; polling less often helps",
}

# JSON keys vendors use for the human message in an error body.
_MESSAGE_KEYS = ("message", "error_description", "error", "String", "Reason", "UserMessage")


class ShapeError(ValueError):
    """The document lacks a field or has one of the wrong type (raised by ``parse``)."""


class HttpStatusError(SourceError):
    """The server answered with a non-2xx status; ``status`` lets a source react (re-login)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


# --------------------------------------------------------------------- shape helpers


def pick(doc: Any, path: str) -> Any:
    """``doc["A"]["B"]`` for path ``"A.B"``; ShapeError naming the missing part."""
    node = doc
    walked: list[str] = []
    for key in path.split("."):
        if not isinstance(node, Mapping):
            where = ".".join(walked) or "the document"
            raise ShapeError(f"{where} is {_kind(node)}, expected an object with {key!r}")
        if key not in node:
            where = ".".join(walked)
            raise ShapeError(f"missing {key!r}" + (f" in {where}" if where else ""))
        node = node[key]
        walked.append(key)
    return node


def number(doc: Any, path: str, *, allow_null: bool = False) -> float | None:
    """The number at ``path`` as a float; a JSON null is None with ``allow_null``, else a
    ShapeError. Numeric strings are accepted (some gateways quote their numbers)."""
    value = pick(doc, path)
    if value is None:
        if allow_null:
            return None
        raise ShapeError(f"{path} is null, expected a number")
    return as_number(value, path)


def as_number(value: Any, what: str) -> float:
    if isinstance(value, bool):
        raise ShapeError(f"{what} is {_kind(value)}, expected a number")
    if isinstance(value, int | float):
        result = float(value)
    elif isinstance(value, str):
        try:
            result = float(value.strip())
        except ValueError:
            raise ShapeError(f"{what} is {value[:40]!r}, expected a number") from None
    else:
        raise ShapeError(f"{what} is {_kind(value)}, expected a number")
    if result != result or result in (float("inf"), float("-inf")):
        raise ShapeError(f"{what} is {value!r}, expected a finite number")
    return result


def section(doc: Any, path: str) -> Mapping[str, Any]:
    """The object at ``path``."""
    value = pick(doc, path)
    if not isinstance(value, Mapping):
        raise ShapeError(f"{path} is {_kind(value)}, expected an object")
    return value


def entries(doc: Any, path: str) -> list[Mapping[str, Any]]:
    """The list of objects at ``path``."""
    value = pick(doc, path)
    if not isinstance(value, list) or not all(isinstance(item, Mapping) for item in value):
        raise ShapeError(f"{path} is {_kind(value)}, expected a list of objects")
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the text {value[:40]!r}"
    return f"{type(value).__name__} {value!r}"[:60]


# ----------------------------------------------------------------- URLs and endpoints


def base_url(host: str, port: int, *, https: bool) -> str:
    """``http://host:port`` (IPv6 literals bracketed)."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{'https' if https else 'http'}://{host}:{port}"


def shown_url(url: str, params: Mapping[str, Any] | None = None) -> str:
    """The URL as a message shows it: the request's non-secret query parameters appended."""
    if not params:
        return url
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    return f"{url}{'&' if '?' in url else '?'}{query}" if query else url


# ------------------------------------------------------------- secrets out of the logs

_secrets_lock = threading.Lock()
_log_secrets: set[str] = set()
_filter_installed = False


class _RedactSecrets(logging.Filter):
    """Removes registered secrets from urllib3's DEBUG lines (they carry full URLs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        with _secrets_lock:
            secrets = tuple(_log_secrets)
        if secrets:
            text = record.getMessage()
            cleaned = _redact(text, secrets)
            if cleaned != text:
                record.msg, record.args = cleaned, None
        return True


def _register_log_secrets(secrets: Iterable[str]) -> None:
    global _filter_installed
    with _secrets_lock:
        _log_secrets.update(secrets)
        if not _filter_installed:
            logging.getLogger("urllib3.connectionpool").addFilter(_RedactSecrets())
            _filter_installed = True


def _redact(text: str, secrets: Iterable[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
        quoted = urllib.parse.quote(secret, safe="")
        if quoted != secret:
            text = text.replace(quoted, REDACTED)
    return text


# ------------------------------------------------------------------------ the client


class HttpClient:
    """Blocking JSON/text requests for one source; thread-safe enough for one caller at a
    time (the runner never overlaps two fetches of the same source)."""

    def __init__(
        self,
        source_name: str,
        timing: SourceTiming,
        *,
        verify: bool | str = True,
        headers: Mapping[str, str] | None = None,
        secrets: Iterable[str | None] = (),
        status_hints: Mapping[int, str] | None = None,
    ) -> None:
        import requests  # lazily: see the module docstring

        self._requests = requests
        self.source_name = source_name
        self.timeout_s = timing.timeout_s
        self._secrets = {s for s in secrets if isinstance(s, str) and len(s) >= 3}
        self._hints = {**STATUS_HINTS, **(status_hints or {})}
        self.verify = verify
        self.session = requests.Session()
        self.session.headers["User-Agent"] = f"twcmaster/{__version__}"
        if headers:
            self.session.headers.update(headers)
        if verify is False:
            # The user chose not to verify (self-signed local gateway): no warning per request.
            import urllib3

            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        _register_log_secrets(self._secrets)

    def add_secret(self, secret: str | None) -> None:
        """A secret learned later (a login token): keep it out of messages too."""
        if isinstance(secret, str) and len(secret) >= 3:
            self._secrets.add(secret)
            _register_log_secrets({secret})

    def close(self) -> None:
        self.session.close()

    # -- requests ------------------------------------------------------------------

    def get_json(
        self,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        secret_params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        parse: Callable[[Any], Any] | None = None,
    ) -> Any:
        """GET ``url`` and decode JSON; with ``parse``, return ``parse(document)``."""
        response, shown = self._send("GET", url, params, secret_params, headers, None)
        return self._decode(response, shown, parse)

    def post_json(
        self,
        url: str,
        body: Any,
        *,
        headers: Mapping[str, str] | None = None,
        parse: Callable[[Any], Any] | None = None,
    ) -> Any:
        """POST ``body`` as JSON and decode the JSON answer."""
        response, shown = self._send("POST", url, None, None, headers, body)
        return self._decode(response, shown, parse)

    def get_text(
        self,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        secret_params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> str:
        response, _ = self._send("GET", url, params, secret_params, headers, None)
        return response.text

    def error(self, request: str, cause: str) -> SourceError:
        """A ``SourceError`` in the house style, for a source's own checks on an answer."""
        return SourceError(self._message(request, cause))

    # -- internals -----------------------------------------------------------------

    def _send(self, method, url, params, secret_params, headers, body):
        shown = f"{method} {shown_url(url, params)}"
        query = {**(params or {}), **(secret_params or {})}
        exc_mod = self._requests.exceptions
        try:
            response = self.session.request(
                method,
                url,
                params=query or None,
                headers=dict(headers) if headers else None,
                json=body,
                timeout=self.timeout_s,
                # Per request: REQUESTS_CA_BUNDLE in the environment would override a
                # session-level caFile (requests merges the environment over session.verify).
                verify=self.verify,
            )
        except exc_mod.Timeout:
            raise SourceError(
                self._message(shown, f"timed out after {self.timeout_s:g} s")
            ) from None
        except exc_mod.SSLError as exc:
            raise SourceError(self._message(shown, f"TLS error: {_tls_cause(exc)}")) from None
        except exc_mod.ConnectionError as exc:
            raise SourceError(
                self._message(shown, f"cannot connect: {_connection_cause(exc)}")
            ) from None
        except exc_mod.RequestException as exc:
            raise SourceError(
                self._message(shown, f"request failed: {type(exc).__name__}")
            ) from None
        if not 200 <= response.status_code < 300:
            raise HttpStatusError(
                self._message(shown, self._status_cause(response)), response.status_code
            )
        return response, shown

    def _decode(self, response, shown: str, parse):
        try:
            document = json.loads(response.content)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            cause = f"malformed JSON ({_json_cause(exc)}): {_excerpt(response.content)!r}"
            raise SourceError(self._message(shown, cause)) from None
        if parse is None:
            return document
        try:
            return parse(document)
        except SourceError:
            raise
        except (ShapeError, KeyError, TypeError, IndexError, ValueError) as exc:
            cause = str(exc) if isinstance(exc, ShapeError) else f"{type(exc).__name__}: {exc}"
            raise SourceError(self._message(shown, f"unexpected answer: {cause}")) from None

    def _status_cause(self, response) -> str:
        status = response.status_code
        reason = response.reason or ""
        cause = f"HTTP {status}" + (f" {reason}" if reason else "")
        detail = _body_message(response.content)
        if detail and detail.lower() not in (reason.lower(), str(status)):
            cause += f": {detail}"
        hint = self._hints.get(status)
        if hint and hint.lower() not in cause.lower():
            cause += f" ({hint})"
        return cause

    def _message(self, request: str, cause: str) -> str:
        return _redact(f"{self.source_name}: {request}: {cause}", self._secrets)


def _body_message(content: bytes) -> str:
    """The human part of an error body: a JSON message field, else the text, shortened."""
    text = content.decode("utf-8", "replace").strip()
    if not text:
        return ""
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    found = _find_message(document)
    if found:
        return _excerpt(found.encode())
    if re.search(r"<\s*(html|body|head|title)\b", text, re.I):
        title = re.search(r"<title[^>]*>(.*?)</title>", text, re.I | re.S)
        text = title.group(1) if title else re.sub(r"<[^>]+>", " ", text)
    return _excerpt(text.encode())


def _find_message(document: Any, depth: int = 0) -> str | None:
    if isinstance(document, str) and depth > 0:
        return document
    if isinstance(document, Mapping) and depth < 3:
        for key in _MESSAGE_KEYS:
            if key in document:
                found = _find_message(document[key], depth + 1)
                if found:
                    return found
        for value in document.values():
            if isinstance(value, Mapping):
                found = _find_message(value, depth + 1)
                if found:
                    return found
    return None


def _excerpt(content: bytes) -> str:
    text = " ".join(content.decode("utf-8", "replace").split())
    if len(text) > BODY_EXCERPT_CHARS:
        text = text[:BODY_EXCERPT_CHARS] + "…"
    return text


def _json_cause(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    return type(exc).__name__


def _root_causes(exc: BaseException) -> Iterable[BaseException]:
    """The exception, its args' exceptions (urllib3 wraps in args), causes and contexts."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for nested in (getattr(current, "reason", None), current.__cause__, current.__context__):
            if isinstance(nested, BaseException):
                stack.append(nested)
        stack.extend(arg for arg in current.args if isinstance(arg, BaseException))


def _connection_cause(exc: BaseException) -> str:
    """``connection refused``, ``name or service not known`` ...: the OS reason, without the
    URL requests puts in its message (it may carry an API key)."""
    for cause in _root_causes(exc):
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror.lower()
    text = str(exc)
    match = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if match:
        return match.group(1).strip().lower()
    for marker in ("Connection refused", "Name or service not known", "timed out"):
        if marker.lower() in text.lower():
            return marker.lower()
    if "RemoteDisconnected" in text or "Connection aborted" in text:
        return "the server closed the connection without answering"
    return type(exc).__name__


def _tls_cause(exc: BaseException) -> str:
    text = str(exc)
    match = re.search(r"certificate verify failed: ([^(')\]]+)", text)
    if match:
        return (
            f"certificate verify failed: {match.group(1).strip()} "
            "(a self-signed gateway needs verifyTLS false or caFile)"
        )
    match = re.search(r"SSL: ([A-Z_]+)", text)
    return match.group(1).lower().replace("_", " ") if match else type(exc).__name__
