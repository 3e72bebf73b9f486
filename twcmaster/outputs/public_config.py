"""config.json as ``GET /api/getConfig`` shows it: every secret masked.

TWCManager removed ``"password": "..."`` and ``"apiKey": "..."`` pairs with a regular
expression over the JSON text, which missed a pair without a comma after it, every other
kind of secret (tokens, client secrets, ``db_pass``, Sentry's DSN, webhook URLs) and the
password inside a URL. Here the config is walked as data:

* a value under a secret-like key (``password``, ``*_pass``, ``apiKey``, ``APIKey``,
  ``token``, ``longLivedToken``, ``teslaApiClientSecret``, ``encryption_key``,
  ``Authorization``, ``DSN``, ``webhooks`` ...: see ``is_secret_key``) becomes ``"***"``,
  whatever it is (text, number, object, list); ``null``, ``""`` and true/false stay, so a
  reader still sees whether it is set (``syncTokens: true`` is a switch, not a secret);
* in any other text, a URL's password (``http://user:pw@host``) and the values of
  secret-like query parameters (``?apikey=...``) are masked, and so is every secret the
  energy sources registered (``sources/secrets.py``: the forms a server may echo).

Keys are never secret and stay as they are.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

from twcmaster.sources.secrets import REDACTED, redact

__all__ = ["REDACTED", "config_without_secrets", "is_secret_key"]

# Parts of a key (lower case, without "_", "-", ".", spaces) that mark its value secret.
SECRET_KEY_PARTS = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "auth",  # Authorization, authToken, basicAuth
    "cookie",
    "credential",
    "privatekey",
    "webhook",  # webhook URLs carry their secret in the path
    "signature",
)
SECRET_KEY_ENDINGS = ("pass", "pwd", "key", "dsn", "pin")  # db_pass, encryption_key, DSN
URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^/@:\s]*):[^/@\s]*@", re.I)


def is_secret_key(key: str) -> bool:
    name = re.sub(r"[^a-z0-9]", "", str(key).lower())
    return any(part in name for part in SECRET_KEY_PARTS) or name.endswith(SECRET_KEY_ENDINGS)


def config_without_secrets(data: Any) -> Any:
    """A copy of ``data`` (config.json as loaded) with every secret masked."""
    if isinstance(data, Mapping):
        return {str(key): _value(str(key), value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [config_without_secrets(item) for item in data]
    if isinstance(data, str):
        return _text(data)
    return data


def _value(key: str, value: Any) -> Any:
    if is_secret_key(key) and value not in (None, "") and not isinstance(value, bool):
        return REDACTED
    return config_without_secrets(value)


def _text(text: str) -> str:
    """A URL's password and secret-like query values masked, then every known secret."""
    text = URL_USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", text)
    if "?" in text and "=" in text:
        text = _mask_query(text)
    return redact(text)


def _mask_query(text: str) -> str:
    try:
        parts = urllib.parse.urlsplit(text)
    except ValueError:
        return text
    if not parts.query:
        return text
    pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    if not any(is_secret_key(name) for name, _ in pairs):
        return text
    masked = [(name, REDACTED if is_secret_key(name) else value) for name, value in pairs]
    query = urllib.parse.urlencode(masked, safe="*")
    return urllib.parse.urlunsplit(parts._replace(query=query))
