"""The Tesla OAuth tokens: a valid access token on demand, refreshed ahead of expiry, the new
pair saved before it is used.

Tesla's refresh tokens are single-use (anchors section 5): once a refresh succeeds the old one
is dead, so the new pair must be on disk before anything else happens, or a crash at the
wrong moment locks the user out. The file is replaced atomically (temp file in the same
directory, fsync, ``os.replace``, fsync of the directory), mode 0600::

    {"access_token": "...", "refresh_token": "...", "expires_at": 1790000000.0}

A crash between writing the temp file and the rename would leave the old pair, whose refresh
token the server has already spent; so at start-up a whole temp file left behind completes
the save (``recover_interrupted_save``). Only a crash between the server's answer and the
temp file being written still loses the new pair: the user must log in again.

The refresh is a form POST to ``auth_url`` with ``grant_type=refresh_token``, ``client_id``
and ``refresh_token``; the answer has ``access_token``, ``refresh_token`` and ``expires_in``.
The access token is a JWT: its ``exp`` claim is the expiry (else ``expires_in``, else 8 h)
and its ``ou_code`` the account's region (NA, EU, CN), which picks the Fleet API host.

A refused refresh (``login_required``, ``invalid_grant``) is sticky: no more requests until
the token file changes (the user logged in again). Other failures are retried at most once
per ``RETRY_AFTER_FAILURE_S``. Token strings never leave this module except as the return of
``access_token()``: not in logs, reprs, exceptions or ``describe()``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from twcmaster.logs import get_logger
from twcmaster.vehicles.tesla import api

log = get_logger(__name__)

DEFAULT_LIFETIME_S = 8 * 3600.0  # Tesla access tokens last about 8 h
RETRY_AFTER_FAILURE_S = 30.0  # at most one refresh attempt per this after a failure
FILE_MODE = 0o600
LOGIN_ERRORS = ("login_required", "invalid_grant")  # the refresh token is dead: log in again
SAFE_ERROR_CODE = re.compile(r"[a-z_]{1,40}")  # an OAuth error code; anything else is dropped

STATE_OK = "ok"
STATE_NO_TOKEN = "no_token"
STATE_LOGIN_REQUIRED = "login_required"
STATE_REFRESH_FAILED = "refresh_failed"


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_at: float  # wallclock s
    # The fingerprint of the config's refreshToken this chain of refreshes began with: a
    # different one in the config means the user logged in again (it then replaces the file).
    seed: str = ""

    def __repr__(self) -> str:
        return f"TokenPair(expires_at={self.expires_at:.0f}, tokens hidden)"

    def to_json(self) -> str:
        return json.dumps(
            {
                "access_token": self.access_token,
                "refresh_token": self.refresh_token,
                "expires_at": self.expires_at,
                "seed": self.seed,
            }
        )


def jwt_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified (only to read exp and ou_code); {} if not a JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        raw = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(raw)
    except (binascii.Error, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


def expiry_s(access_token: str, expires_in_s: Any, now_s: float) -> float:
    exp = jwt_claims(access_token).get("exp")
    if isinstance(exp, int | float) and not isinstance(exp, bool):
        return float(exp)
    if isinstance(expires_in_s, int | float) and not isinstance(expires_in_s, bool):
        return now_s + float(expires_in_s)
    return now_s + DEFAULT_LIFETIME_S


def write_atomically(path: Path, text: str) -> None:
    """Old content or new, never a mix, even if the power fails: temp file in the same
    directory, flushed and fsynced, renamed over, then the directory fsynced."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), FILE_MODE)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _read_pair(path: Path) -> TokenPair:
    """The pair in the token file; ValueError (without the content) when it is not one."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    access, refresh = doc.get("access_token", ""), doc.get("refresh_token")
    if not isinstance(refresh, str) or not refresh or not isinstance(access, str):
        raise ValueError("no refresh_token")
    expires_at = doc.get("expires_at")
    if not isinstance(expires_at, int | float) or isinstance(expires_at, bool):
        expires_at = 0.0  # unknown: refresh before use
    seed = doc.get("seed")
    return TokenPair(access, refresh, float(expires_at), seed if isinstance(seed, str) else "")


def fingerprint(token: str) -> str:
    """Which token, without the token: 16 hex digits of its SHA-256."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def recover_interrupted_save(path: Path) -> bool:
    """Finish a save that a crash cut between the temp file and the rename: the temp file
    holds the newest pair (the server has already spent the file's refresh token). A temp file
    that is not a whole pair (cut mid-write) is dropped. True when one was recovered."""
    temps = sorted(path.parent.glob(f".{path.name}.*.tmp"), key=lambda temp: _mtime_ns(temp) or 0)
    recovered = False
    for temp in reversed(temps):  # the newest whole one wins
        try:
            if recovered:
                raise ValueError("older")
            _read_pair(temp)
            os.replace(temp, path)
            recovered = True
            log.warning("Tesla token file: an interrupted save was completed", file=str(path))
        except (OSError, ValueError):
            with contextlib.suppress(OSError):
                os.unlink(temp)
    return recovered


def _mtime_ns(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


class TokenKeeper:
    def __init__(
        self,
        token_file: Path,
        *,
        auth_url: str,
        client_id: str,
        initial_refresh_token: str | None,
        session: aiohttp.ClientSession | None = None,
        timeout_s: float = 20.0,
        refresh_ahead_s: float = 3600.0,
        wallclock: Callable[[], float] = time.time,
    ) -> None:
        self.token_file = Path(token_file)
        self.auth_url = auth_url
        self.client_id = client_id
        self._initial_refresh_token = initial_refresh_token or None
        self._session = session
        self._own_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.refresh_ahead_s = refresh_ahead_s
        self._wallclock = wallclock
        self._lock = asyncio.Lock()
        self._pair: TokenPair | None = None
        self._file_mtime_ns: int | None = None  # the file as last read or written
        self._loaded = False
        self._state = STATE_NO_TOKEN
        self._problem = "not read yet"
        self._failed_at_s: float | None = None
        self._force_refresh = False
        self._unsaved: TokenPair | None = None  # refreshed, but the file could not be written
        self.region: str | None = None
        self.refreshes = 0

    def __repr__(self) -> str:
        return f"TokenKeeper({str(self.token_file)!r}, state={self._state!r}, tokens hidden)"

    @property
    def state(self) -> str:
        return self._state

    def describe(self) -> str:
        """One line for the status page (never a token)."""
        if self._state == STATE_OK and self._pair is not None:
            if not self._pair.access_token:
                return "Tesla refresh token ready (no access token yet)"
            left_h = (self._pair.expires_at - self._wallclock()) / 3600
            return f"Tesla token ok (region {self.region or '?'}, expires in {left_h:.1f} h)"
        if self._state == STATE_LOGIN_REQUIRED:
            return f"Tesla login required: {self._problem}; write a new token to {self.token_file}"
        if self._state == STATE_REFRESH_FAILED:
            return f"Tesla token refresh failed: {self._problem}; retrying"
        return f"no Tesla token: {self._problem}"

    def note_rejected(self) -> None:
        """The Fleet API said 401 expired: refresh before the next call."""
        self._force_refresh = True

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def access_token(self) -> str:
        async with self._lock:  # single-flight: waiting callers then find the fresh token
            self._reload_if_changed()
            if self._state == STATE_LOGIN_REQUIRED:
                raise api.LoginRequired(f"Tesla login required: {self._problem}", billable=False)
            if self._unsaved is not None:
                await self._save_unsaved()
            now_s = self._wallclock()
            pair = self._pair
            if pair and not self._force_refresh and pair.expires_at - now_s > self.refresh_ahead_s:
                return pair.access_token
            usable = pair is not None and not self._force_refresh and pair.expires_at > now_s
            if self._failed_at_s is not None:
                wait_s = self._failed_at_s + RETRY_AFTER_FAILURE_S - now_s
                if wait_s > 0:
                    if usable:
                        return pair.access_token  # type: ignore[union-attr]
                    raise api.Transient(
                        f"Tesla token refresh failed: {self._problem}",
                        billable=False,
                        retry_after_s=wait_s,
                    )
            try:
                return await self._refresh(now_s)
            except api.Transient:
                if usable:
                    return pair.access_token  # type: ignore[union-attr]  # still good a while
                raise

    # -- the file ----------------------------------------------------------------------------

    def _reload_if_changed(self) -> None:
        if not self._loaded:
            recover_interrupted_save(self.token_file)
        mtime_ns = _mtime_ns(self.token_file)
        if self._loaded and mtime_ns == self._file_mtime_ns:
            return
        self._loaded, self._file_mtime_ns = True, mtime_ns
        self._failed_at_s = None  # a new file deserves a try now
        self._unsaved = None  # the file wins
        if mtime_ns is None:
            self._pair = None
            if self._initial_refresh_token:  # only until a file exists: then the file wins
                self._pair = self._from_config()
                self._state, self._problem = STATE_OK, "not refreshed yet"
            else:
                self._state, self._problem = STATE_NO_TOKEN, f"no token file {self.token_file}"
            return
        try:
            self._pair = _read_pair(self.token_file)
        except (OSError, ValueError) as exc:  # the message is ours or a parse position
            self._pair = None
            self._state = STATE_NO_TOKEN
            self._problem = f"token file {self.token_file} unreadable ({type(exc).__name__})"
            log.warning("Tesla token file unreadable", file=str(self.token_file))
            return
        self._state, self._problem = STATE_OK, "read from file"
        initial = self._initial_refresh_token
        if initial and self._pair.seed and fingerprint(initial) != self._pair.seed:
            # A refresh token in the config that this file did not start from: the user
            # logged in again (e.g. after login_required). It wins over the file. (A file
            # without a seed was written by hand: it wins.)
            self._pair = self._from_config()
            self._problem = "a new refresh token from the config"
            return
        self.region = jwt_claims(self._pair.access_token).get("ou_code") or self.region

    def _from_config(self) -> TokenPair:
        assert self._initial_refresh_token
        token = self._initial_refresh_token
        return TokenPair("", token, 0.0, fingerprint(token))

    def _save(self, pair: TokenPair) -> None:
        self.token_file.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(self.token_file, pair.to_json())
        self._file_mtime_ns = _mtime_ns(self.token_file)

    async def _save_unsaved(self) -> None:
        """Write the pending pair; until that works its token is not handed out (the old
        refresh token is spent, so this pair, held in memory, is the only one left)."""
        try:
            await asyncio.to_thread(self._save, self._unsaved)  # fsync: not on the loop
        except OSError as exc:
            problem = f"cannot write {self.token_file} ({type(exc).__name__})"
            self._fail(STATE_REFRESH_FAILED, problem)
            log.error(
                "Tesla token file not written: the new token is only in memory",
                file=str(self.token_file),
            )
            raise api.Transient(f"Tesla token refresh failed: {problem}", billable=False) from None
        self._unsaved, self._failed_at_s = None, None
        self._state, self._problem = STATE_OK, "refreshed"

    # -- the refresh -------------------------------------------------------------------------

    async def _refresh(self, now_s: float) -> str:
        if self._pair is None:
            raise api.LoginRequired(f"no Tesla token: {self._problem}", billable=False)
        form = {
            "grant_type": "refresh_token",
            "client_id": self.client_id,
            "refresh_token": self._pair.refresh_token,
        }
        try:
            status, doc = await self._post(form)
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            self._fail(STATE_REFRESH_FAILED, f"no answer from the auth server ({_kind(exc)})")
            message = f"Tesla token refresh failed: {self._problem}"
            raise api.Transient(message, billable=False) from None
        error = doc.get("error") if isinstance(doc, dict) else None
        code = error if isinstance(error, str) and SAFE_ERROR_CODE.fullmatch(error) else None
        if status in (400, 401) and code in LOGIN_ERRORS:
            self._fail(STATE_LOGIN_REQUIRED, f"the auth server refused the refresh token ({code})")
            log.warning("Tesla login required", reason=code)
            raise api.LoginRequired(f"Tesla login required: {self._problem}", billable=False)
        if status != 200 or not isinstance(doc, dict):
            self._fail(STATE_REFRESH_FAILED, f"HTTP {status}" + (f" {code}" if code else ""))
            raise api.Transient(f"Tesla token refresh failed: {self._problem}", billable=False)
        access, refresh = doc.get("access_token"), doc.get("refresh_token")
        if not isinstance(access, str) or not access:
            self._fail(STATE_REFRESH_FAILED, "answer without access_token")
            raise api.Transient(f"Tesla token refresh failed: {self._problem}", billable=False)
        if not isinstance(refresh, str) or not refresh:
            refresh = self._pair.refresh_token  # none issued: the old one stays valid (RFC 6749)
        pair = TokenPair(
            access, refresh, expiry_s(access, doc.get("expires_in"), now_s), self._pair.seed
        )
        self._pair, self._unsaved, self._force_refresh = pair, pair, False
        await self._save_unsaved()  # saved before use: the old refresh token is spent
        self.region = jwt_claims(access).get("ou_code") or self.region
        self.refreshes += 1
        log.info("Tesla token refreshed", expires_at=int(pair.expires_at), region=self.region)
        return access

    async def _post(self, form: dict[str, str]) -> tuple[int, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        async with self._session.post(self.auth_url, data=form, timeout=self._timeout) as resp:
            text = await resp.text()
        try:
            return resp.status, json.loads(text)
        except ValueError:
            if resp.status == 200:
                raise
            return resp.status, None

    def _fail(self, state: str, problem: str) -> None:
        self._state, self._problem = state, problem
        self._failed_at_s = self._wallclock()
        if state == STATE_LOGIN_REQUIRED:
            self._file_mtime_ns = _mtime_ns(self.token_file)  # lifted when the file changes
            self._loaded = True


def _kind(exc: BaseException) -> str:
    """What went wrong, without the exception's text (which might quote a URL or body)."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    return type(exc).__name__
