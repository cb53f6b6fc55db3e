"""The WebUI's session cookie: an HMAC-signed, expiring reference to an API key.

A browser cannot put headers on an ``EventSource``, so after signing in at ``/login`` with a key the
WebUI holds a cookie instead. The cookie names the key by id (never the key itself) and an expiry,
signed with a per-daemon secret kept in ``<data dir>/session-secret`` (created on first use, mode
0600), so cookies survive a daemon restart and revoking the key ends every session made from it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from harbor.security.principal import Unauthenticated

COOKIE_NAME = "ah_session"
SECRET_FILE = "session-secret"
_VERSION = "v1"
#: Longest cookie value looked at (ours are ~90 characters).
MAX_COOKIE_CHARS = 512


def load_or_create_secret(data_dir: Path) -> bytes:
    """The daemon's cookie-signing secret, created (32 random bytes, mode 0600) if missing. Blocking."""
    path = data_dir / SECRET_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        secret = path.read_bytes()
        if len(secret) >= 32:
            return secret
        raise ValueError(f"{path} is too short to be a signing secret; delete it to make a new one") from None
    with os.fdopen(fd, "wb") as fh:
        secret = secrets.token_bytes(32)
        fh.write(secret)
    return secret


class SessionCookies:
    """Issue and check session cookie values.

    Args:
        secret: the signing key (see :func:`load_or_create_secret`).
        ttl: seconds a cookie stays valid after sign-in.
    """

    def __init__(self, secret: bytes, ttl: float) -> None:
        self._secret = secret
        self.ttl = ttl

    def _sign(self, payload: str) -> str:
        mac = hmac.new(self._secret, payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def issue(self, key_id: str, now: float) -> tuple[str, int]:
        """A cookie value for ``key_id`` and the unix time it expires at."""
        expires = int(now + self.ttl)
        payload = f"{_VERSION}.{key_id}.{expires}"
        return f"{payload}.{self._sign(payload)}", expires

    def key_id(self, value: str, now: float) -> str:
        """The key id a cookie value was issued for.

        Raises:
            Unauthenticated: the value is malformed, its signature does not verify, or it expired.
        """
        parts = value.split(".") if len(value) <= MAX_COOKIE_CHARS else []
        if len(parts) != 4 or parts[0] != _VERSION or not parts[2].isdigit():
            raise Unauthenticated("the session cookie is not valid; sign in again at /login")
        payload = ".".join(parts[:3])
        if not hmac.compare_digest(self._sign(payload), parts[3]):
            raise Unauthenticated("the session cookie is not valid; sign in again at /login")
        if int(parts[2]) < now:
            raise Unauthenticated("the session has expired; sign in again at /login")
        return parts[1]
