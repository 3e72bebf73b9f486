"""Secrets (API keys, tokens, passwords) kept out of every message and log line.

A source registers its secrets when it is built (``register``); from then on ``redact``
replaces each of them by ``***`` in any text, in every form a server or a library may echo it:

* as given, and the credential of an ``Authorization`` value (``Bearer <token>``,
  ``Basic <base64>`` and the ``user:password`` inside);
* Base64 (standard and URL-safe, with or without padding), URL-quoted (``quote`` and
  ``quote_plus``, either case of the hex digits), JSON-escaped, and hex (either case).

A password that travels as ``user:password`` (HTTP basic auth) is registered as that pair
too: the Base64 of the pair does not contain the Base64 of the password.

``excerpt`` is the one way a value from a device (a body, a payload, a field) enters a
message: one line, at most ``limit`` characters, redacted *before* it is cut, so a cut can
never leave half a secret showing. A filter on the loggers of the HTTP libraries (urllib3
logs full request URLs at DEBUG) does the same for their lines.

The registry is process-wide: masking one source's secret in another's message does no harm,
and it lets the pure parsing helpers, which know no source, redact their excerpts too.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import threading
import urllib.parse

REDACTED = "***"
EXCERPT_CHARS = 200  # the longest excerpt of a device's answer a message shows
MIN_SECRET_CHARS = 3  # shorter "secrets" would mask ordinary words; such a secret is no secret
AUTH_SCHEMES = frozenset({"basic", "bearer", "token", "apikey", "api-key"})
# Loggers of the libraries below the sources that may carry a URL, a header or a body.
LIBRARY_LOGGERS = (
    "urllib3",
    "urllib3.connectionpool",
    "urllib3.connection",
    "urllib3.response",
    "urllib3.util.retry",
    "requests",
    "paho",
    "paho.mqtt.client",
)

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None
_longest_form = 0
_filter_installed = False


def register(*secrets: str | None) -> None:
    """Keep these out of every message and library log line from now on."""
    global _pattern
    new = {s for s in secrets if isinstance(s, str) and len(s.strip()) >= MIN_SECRET_CHARS}
    with _lock:
        if new <= _secrets:
            return
        _secrets.update(new)
        _pattern = None  # rebuilt on next use
    _install_filter()


def register_basic_auth(user: str | None, password: str | None) -> None:
    """A password sent as HTTP basic auth: the pair and the password."""
    if password:
        register(password, f"{user or ''}:{password}")


def register_url_userinfo(url: str) -> bool:
    """The password of ``http://user:password@host/``, as written (percent-encoded) and as
    sent (decoded, in the basic-auth pair). True when ``url`` has one."""
    parts = urllib.parse.urlsplit(url)
    if not parts.password:
        return False
    user = parts.username or ""
    register(parts.password, f"{user}:{parts.password}")
    register_basic_auth(urllib.parse.unquote(user), urllib.parse.unquote(parts.password))
    return True


def redact(text: str) -> str:
    """``text`` with every registered secret, in each of its forms, replaced by ``***``."""
    pattern = _compiled()
    return text if pattern is None else pattern.sub(REDACTED, text)


def excerpt(value: str | bytes, limit: int = EXCERPT_CHARS) -> str:
    """A value as a message may show it: whitespace runs as one space, redacted, then cut to
    ``limit`` characters (``…`` marks a cut). Reads no more of ``value`` than it needs."""
    _compiled()
    window = limit + 4 * _longest_form + 16  # a secret starting before the cut ends in here
    if isinstance(value, bytes | bytearray):
        value = bytes(value[: 4 * window]).decode("utf-8", "replace")
    longer = len(value) > window
    text = redact(" ".join(value[:window].split()))
    if len(text) > limit or longer:
        return text[:limit] + "…"
    return text


def forms(secret: str) -> set[str]:
    """The forms of ``secret`` a server may echo (see the module docstring)."""
    found = {secret}
    scheme, _, credential = secret.strip().partition(" ")
    credential = credential.strip()
    if credential and scheme.lower() in AUTH_SCHEMES:
        found.add(credential)
        if scheme.lower() == "basic":
            found |= _basic_parts(credential)
    result: set[str] = set()
    for item in found:
        result |= _encodings(item)
    return {form for form in result if len(form) >= MIN_SECRET_CHARS}


# ------------------------------------------------------------------------- internals


def _basic_parts(credential: str) -> set[str]:
    try:
        pair = base64.b64decode(credential, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return set()
    _, _, password = pair.partition(":")
    return {pair, password} if password else {pair}


def _encodings(text: str) -> set[str]:
    raw = text.encode("utf-8")
    b64 = base64.b64encode(raw).decode()
    urlsafe = base64.urlsafe_b64encode(raw).decode()
    return {
        text,
        b64,
        b64.rstrip("="),
        urlsafe,
        urlsafe.rstrip("="),
        urllib.parse.quote(text, safe=""),
        urllib.parse.quote_plus(text),
        json.dumps(text)[1:-1],
        raw.hex(),
    }


# Forms whose letters a server may change in case: %2f for %2F, hex in upper case.
_ANY_CASE = re.compile(r"(?:%[0-9A-Fa-f]{2}|[0-9a-f])+")


def _compiled() -> re.Pattern[str] | None:
    global _pattern, _longest_form
    with _lock:
        if _pattern is not None or not _secrets:
            return _pattern
        every = set().union(*(forms(secret) for secret in _secrets))
        ordered = sorted(every, key=len, reverse=True)  # the longest form wins an overlap
        parts = [
            f"(?i:{re.escape(f)})" if _ANY_CASE.fullmatch(f) or "%" in f else re.escape(f)
            for f in ordered
        ]
        _pattern = re.compile("|".join(parts))
        _longest_form = len(ordered[0])
        return _pattern


class _RedactFilter(logging.Filter):
    """Redacts a library's log record (its message with its arguments)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _secrets:
            text = record.getMessage()
            cleaned = redact(text)
            if cleaned != text:
                record.msg, record.args = cleaned, None
        return True


def _install_filter() -> None:
    global _filter_installed
    with _lock:
        if _filter_installed:
            return
        _filter_installed = True
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).addFilter(_RedactFilter())
