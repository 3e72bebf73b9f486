"""The Tesla module's key and certificate files, loaded the one way the client and
``check-config`` both use (``config/vehicle.py`` reports a bad file by its key path, so it
shows before ``run``): ``load_private_key`` (``privateKeyFile``, teslaAPI and teslaBLE),
``pinned_context`` (``proxyCert``). Light on purpose: no HTTP or Tesla library here."""

from __future__ import annotations

import ssl
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


class ClientSetupError(ValueError):
    """The client cannot be built as configured (a key or certificate file)."""


def load_private_key(path: str) -> ec.EllipticCurvePrivateKey:
    """The app's EC private key; a clear error when it is missing or not one (never a new
    key: tesla-fleet-api's get_private_key makes one silently when the file is missing)."""
    try:
        pem = Path(path).read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ClientSetupError(f"Tesla private key file {path}: {reason}") from None
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        kind = type(exc).__name__
        raise ClientSetupError(f"Tesla private key file {path}: not a PEM key ({kind})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ClientSetupError(f"Tesla private key file {path}: not an EC (P-256) key")
    return key


def pinned_context(cert_file: str) -> ssl.SSLContext:
    """Trusts only ``cert_file`` (the signing proxy's own certificate)."""
    try:
        return ssl.create_default_context(cafile=cert_file)
    except ssl.SSLError:
        raise ClientSetupError(
            f"Tesla proxy certificate {cert_file}: not a PEM certificate"
        ) from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ClientSetupError(f"Tesla proxy certificate {cert_file}: {reason}") from None
