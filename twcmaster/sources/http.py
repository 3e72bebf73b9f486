"""One small HTTP helper for the sources that speak JSON or text over HTTP.

``HttpClient`` wraps one ``requests.Session`` per source (connection reuse, cookies for the
Powerwall login) with the source's timeout and TLS setting. Every failure comes back as a
``SourceError`` whose message names the source, the request (method and URL, without
secrets) and the cause, in words a user can act on::

    Fronius: GET http://192.168.1.50:80/solar_api/v1/GetPowerFlowRealtimeData.fcgi?Scope=System:
    timed out after 5 s

Every request has a total deadline, the source's ``timeout``: the body is streamed and the
request abandoned (its connection closed) once the deadline passes, so a device that
trickles a byte now and then cannot hold a poll, whatever ``requests``' per-read timeout
says. A body is read up to ``MAX_BODY_BYTES`` and no further: a larger answer is an error
("answer larger than 1 MiB"), and its rest is never read.

Secrets never reach a message or a log line: query parameters passed as ``secret_params`` are
left out of the URL shown, and every secret (API keys, tokens, passwords, registered in
``twcmaster.sources.secrets``) is replaced by ``***`` in messages, in every encoding a server
may echo it. A request that carries credentials shows no body in its messages at all, only
the status and the body's size: a server echoing the request back could show them in a form
no rule foresees.

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
import re
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from twcmaster import __version__
from twcmaster.numbers import finite_number
from twcmaster.sources.base import SourceError, SourceTiming
from twcmaster.sources.secrets import (
    EXCERPT_CHARS,
    excerpt,
    redact,
    register,
    register_url_userinfo,
)

MAX_BODY_BYTES = 1 << 20  # 1 MiB: a device's answer is a few kB; more is broken, not data
MAX_BODY_TEXT = "1 MiB"
READ_CHUNK_BYTES = 64 << 10  # read what has arrived, up to this much, then check the deadline
BODY_EXCERPT_CHARS = EXCERPT_CHARS  # how much of an error body a message shows
NOT_SHOWN = "not shown: authenticated request"
# Request headers whose values are credentials (the request is then "authenticated").
CREDENTIAL_HEADERS = frozenset({"authorization", "x-api-key", "api-key", "apikey", "x-auth-token"})

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
    number = finite_number(value)
    if number is not None:
        return number
    # Why not, for the message: not a number at all, or NaN / infinity.
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ShapeError(f"{what} is {_kind(value)}, expected a number")
    if isinstance(value, str):
        try:
            float(value.strip())
        except ValueError:
            raise ShapeError(f"{what} is {shown(value)}, expected a number") from None
    raise ShapeError(f"{what} is {shown(value)}, expected a finite number")


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
        return f"the text {shown(value)}"
    return f"{type(value).__name__} {shown(repr(value))}"


def shown(value: Any, limit: int = 40) -> str:
    """A value from a device as a message quotes it: short, one line, secrets masked."""
    return repr(excerpt(value if isinstance(value, str) else repr(value), limit))


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
        given = [s for s in secrets if isinstance(s, str) and s]
        given += _credentials(headers)
        register(*given)
        # Any credential on the requests: their answers' bodies stay out of messages.
        self.authenticated = bool(given)
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

    def add_secret(self, secret: str | None) -> None:
        """A secret learned later (a login token): keep it out of messages too."""
        if isinstance(secret, str) and secret:
            register(secret)
            self.authenticated = True

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
        answer = self._send("GET", url, params, secret_params, headers, None)
        return self._decode(answer, parse)

    def post_json(
        self,
        url: str,
        body: Any,
        *,
        headers: Mapping[str, str] | None = None,
        parse: Callable[[Any], Any] | None = None,
    ) -> Any:
        """POST ``body`` as JSON and decode the JSON answer."""
        answer = self._send("POST", url, None, None, headers, body)
        return self._decode(answer, parse)

    def post_form(
        self,
        url: str,
        form: Mapping[str, Any],
        *,
        params: Mapping[str, Any] | None = None,
        parse: Callable[[Any], Any] | None = None,
    ) -> Any:
        """POST ``form`` as ``application/x-www-form-urlencoded`` and decode the JSON answer."""
        answer = self._send("POST", url, params, None, None, None, form)
        return self._decode(answer, parse)

    def get_text(
        self,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        secret_params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> str:
        return self._send("GET", url, params, secret_params, headers, None).text

    def error(self, request: str, cause: str) -> SourceError:
        """A ``SourceError`` in the house style, for a source's own checks on an answer."""
        return SourceError(self._message(request, cause))

    # -- internals -----------------------------------------------------------------

    def _send(self, method, url, params, secret_params, headers, body, form=None) -> _Answer:
        started_s = time.monotonic()
        request = f"{method} {shown_url(url, params)}"
        query = {**(params or {}), **(secret_params or {})}
        has_userinfo = register_url_userinfo(url)  # requests sends it as basic auth
        authenticated = bool(
            self.authenticated or secret_params or has_userinfo or _credentials(headers)
        )
        exc_mod = self._requests.exceptions
        try:
            response = self.session.request(
                method,
                url,
                params=query or None,
                headers=dict(headers) if headers else None,
                json=body,
                data=form,
                timeout=self.timeout_s,
                # Per request: REQUESTS_CA_BUNDLE in the environment would override a
                # session-level caFile (requests merges the environment over session.verify).
                verify=self.verify,
                stream=True,  # the body is read here, under the deadline and the cap
            )
        except exc_mod.Timeout:
            raise self._timed_out(request) from None
        except exc_mod.SSLError as exc:
            raise self.error(request, f"TLS error: {_tls_cause(exc)}") from None
        except exc_mod.ConnectionError as exc:
            raise self.error(request, f"cannot connect: {_connection_cause(exc)}") from None
        except exc_mod.RequestException as exc:
            raise self.error(request, f"request failed: {type(exc).__name__}") from None
        ok = 200 <= response.status_code < 300
        # An error's body only explains it: cut at the cap rather than refused.
        content, complete = self._read_body(response, request, started_s, cut=not ok)
        answer = _Answer(request, response, content, complete, authenticated)
        if not ok:
            raise HttpStatusError(
                self._message(request, self._status_cause(answer)), response.status_code
            )
        return answer

    def _read_body(self, response, request: str, started_s: float, *, cut: bool):
        """(body, complete): at most ``MAX_BODY_BYTES``, by the request's deadline. The
        response is closed: a body left unread is never waited for."""
        deadline_s = started_s + self.timeout_s
        pieces: list[bytes] = []
        size = 0
        try:
            if not cut and _declared_length(response) > MAX_BODY_BYTES:
                raise self._too_large(request)
            while True:
                left_s = deadline_s - time.monotonic()
                if left_s <= 0:
                    raise self._timed_out(request)
                _read_timeout(response, left_s)
                # read1: what has arrived (up to a chunk), not a full chunk's worth of waiting.
                piece = response.raw.read1(READ_CHUNK_BYTES)
                if not piece:
                    return b"".join(pieces), True
                size += len(piece)
                if size > MAX_BODY_BYTES:
                    if not cut:
                        raise self._too_large(request)
                    pieces.append(piece[: len(piece) - (size - MAX_BODY_BYTES)])
                    return b"".join(pieces), False
                pieces.append(piece)
        except SourceError:
            raise
        except Exception as exc:  # urllib3's ReadTimeoutError, ProtocolError; OSError
            if _is_timeout(exc):
                raise self._timed_out(request) from None
            raise self.error(request, f"the answer broke off: {type(exc).__name__}") from None
        finally:
            response.close()

    def _decode(self, answer: _Answer, parse):
        try:
            document = json.loads(answer.content)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            cause = f"malformed JSON ({_json_cause(exc)})"
            if answer.authenticated:
                cause += f"; {_unshown(answer)}"
            else:
                cause += f": {excerpt(answer.content)!r}"
            raise SourceError(self._message(answer.request, cause)) from None
        if parse is None:
            return document
        try:
            return parse(document)
        except SourceError:
            raise
        except (ShapeError, KeyError, TypeError, IndexError, ValueError) as exc:
            cause = str(exc) if isinstance(exc, ShapeError) else f"{type(exc).__name__}: {exc}"
            cause = excerpt(cause, 2 * EXCERPT_CHARS)
            raise SourceError(
                self._message(answer.request, f"unexpected answer: {cause}")
            ) from None

    def _status_cause(self, answer: _Answer) -> str:
        status = answer.response.status_code
        reason = excerpt(answer.response.reason or "", 60)
        cause = f"HTTP {status}" + (f" {reason}" if reason else "")
        if answer.authenticated:
            if answer.content:
                cause += f" ({_unshown(answer)})"
        else:
            detail = _body_message(answer.content)
            if detail and detail.lower() not in (reason.lower(), str(status)):
                cause += f": {detail}"
        hint = self._hints.get(status)
        if hint and hint.lower() not in cause.lower():
            cause += f" ({hint})"
        return cause

    def _timed_out(self, request: str) -> SourceError:
        return self.error(request, f"timed out after {self.timeout_s:g} s")

    def _too_large(self, request: str) -> SourceError:
        return self.error(request, f"answer larger than {MAX_BODY_TEXT}")

    def _message(self, request: str, cause: str) -> str:
        return redact(f"{self.source_name}: {request}: {cause}")


class _Answer:
    """A response and its body, read under the deadline and the cap."""

    def __init__(self, request, response, content: bytes, complete: bool, authenticated: bool):
        self.request = request  # "GET <url>" as messages show it
        self.response = response
        self.content = content
        self.complete = complete  # False: cut at MAX_BODY_BYTES (error bodies only)
        self.authenticated = authenticated

    @property
    def text(self) -> str:
        encoding = self.response.encoding or "utf-8"
        try:
            return self.content.decode(encoding, "replace")
        except LookupError:  # a charset Python does not know
            return self.content.decode("utf-8", "replace")


def _credentials(headers: Mapping[str, str] | None) -> list[str]:
    """The values of the credential headers among ``headers``."""
    return [str(v) for k, v in (headers or {}).items() if k.lower() in CREDENTIAL_HEADERS and v]


def _unshown(answer: _Answer) -> str:
    if not answer.complete:
        return f"body over {MAX_BODY_TEXT} {NOT_SHOWN}"
    return f"{len(answer.content)}-byte body {NOT_SHOWN}"


def _declared_length(response) -> int:
    try:
        return int(response.headers.get("Content-Length", 0))
    except ValueError:
        return 0


def _read_timeout(response, left_s: float) -> None:
    """The next read waits at most ``left_s``: the deadline, not a per-read timeout, rules."""
    connection = getattr(response.raw, "connection", None)
    sock = getattr(connection, "sock", None)
    if sock is not None:
        sock.settimeout(max(left_s, 0.001))


def _is_timeout(exc: BaseException) -> bool:
    return any(
        isinstance(cause, TimeoutError) or "timeout" in type(cause).__name__.lower()
        for cause in _root_causes(exc)
    )


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
        return excerpt(found)
    if re.search(r"<\s*(html|body|head|title)\b", text, re.I):
        title = re.search(r"<title[^>]*>(.*?)</title>", text, re.I | re.S)
        text = title.group(1) if title else re.sub(r"<[^>]+>", " ", text)
    return excerpt(text)


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
