"""API keys: generating them, storing only their SHA-256, looking them up, listing and revoking.

A key reads ``ah_<43 url-safe characters>`` (32 random bytes). It is shown once, when created; the
database keeps its SHA-256 (``key_hash``), its first characters (``prefix``, so people can tell keys
apart) and its role and tenant. The functions here are blocking (they run SQL) and are meant for
the journal's threads or for the ``ah keys`` command.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

import ulid

from actors.events import iso_ts
from harbor.security.principal import ROLE_RANK, Principal
from harbor.store import models as m

KEY_PREFIX = "ah_"
#: Characters of the key kept in clear as ``prefix``: ``ah_`` and 8 of the 43 random ones (48 of
#: 256 bits), enough to tell keys apart in a list and far too few to help guess the rest.
SHOWN_CHARS = len(KEY_PREFIX) + 8
#: Longest credential we hash; anything longer cannot be one of ours.
MAX_KEY_CHARS = 256
#: How stale ``last_used_at`` may get before a request refreshes it (one write per key per minute,
#: not one per request).
LAST_USED_RESOLUTION = 60.0


class KeyNotFound(LookupError):
    """No key has that id or prefix."""


def generate_key() -> str:
    """A new random API key (``ah_`` + 32 random bytes, url-safe base64)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The stored form of ``key``: hex SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class CreatedKey:
    """A freshly created key: ``key`` is the only copy of the secret there will ever be."""

    key: str
    row: m.ApiKey


def key_view(row: m.ApiKey) -> dict[str, Any]:
    """A key as the API and ``ah keys list`` show it: never the hash."""
    return {"id": row.id, "name": row.name, "prefix": row.prefix, "role": row.role, "tenantId": row.tenant_id,
            "createdAt": iso_ts(row.created_at),
            "lastUsedAt": iso_ts(row.last_used_at) if row.last_used_at is not None else None,
            "revoked": bool(row.revoked)}


def principal_for(row: m.ApiKey, method: str = "apikey") -> Principal:
    return Principal(subject=f"key:{row.id}", role=row.role if row.role in ROLE_RANK else None,
                     tenant_id=row.tenant_id, method=method, key_id=row.id)


def create_key(role: str, *, tenant_id: str | None = None, name: str | None = None) -> CreatedKey:
    """Create and store a key. Blocking: call on the writer thread (or from the CLI).

    Raises:
        ValueError: ``role`` is not viewer, operator or admin.
    """
    if role not in ROLE_RANK:
        raise ValueError(f"unknown role {role!r}: use viewer, operator or admin")
    key = generate_key()
    row = m.ApiKey.create(id=str(ulid.ULID()), name=name, prefix=key[:SHOWN_CHARS], key_hash=hash_key(key),
                          role=role, tenant_id=tenant_id or None, created_at=time.time())
    return CreatedKey(key=key, row=row)


def find_key(presented: str) -> m.ApiKey | None:
    """The live (not revoked) key whose hash matches ``presented``, or ``None``. Blocking.

    The lookup is by hash (an index), so its timing depends on the hash of the secret, not on the
    secret; the final comparison of hashes is constant-time all the same.
    """
    if not presented.startswith(KEY_PREFIX) or len(presented) > MAX_KEY_CHARS:
        return None
    digest = hash_key(presented)
    row = m.ApiKey.get_or_none(m.ApiKey.key_hash == digest)
    if row is None or row.revoked or not hmac.compare_digest(row.key_hash, digest):
        return None
    return row


def live_key(key_id: str) -> m.ApiKey | None:
    """The key with this id unless it is revoked (what a session cookie maps to). Blocking."""
    row = m.ApiKey.get_or_none(m.ApiKey.id == key_id)
    return None if row is None or row.revoked else row


def touch(key_id: str, now: float) -> None:
    """Record that a key was used. Blocking: the writer thread."""
    m.ApiKey.update(last_used_at=now).where(m.ApiKey.id == key_id).execute()


def list_keys(tenant_id: str | None = None, *, include_revoked: bool = True) -> list[m.ApiKey]:
    """Every key (of one tenant, when given), newest first. Blocking."""
    q = m.ApiKey.select()
    if tenant_id is not None:
        q = q.where(m.ApiKey.tenant_id == tenant_id)
    if not include_revoked:
        q = q.where(m.ApiKey.revoked == False)  # noqa: E712 (peewee builds SQL from ==)
    return list(q.order_by(m.ApiKey.created_at.desc(), m.ApiKey.id.desc()))


def resolve_key(ident: str, tenant_id: str | None = None) -> m.ApiKey:
    """The key named by its id or its prefix (``ah_xxxxxxxx``). Blocking.

    Raises:
        KeyNotFound: no key (of that tenant, when given) has that id or prefix, or a prefix names
            several keys.
    """
    q = m.ApiKey.select().where((m.ApiKey.id == ident) | (m.ApiKey.prefix == ident))
    if tenant_id is not None:
        q = q.where(m.ApiKey.tenant_id == tenant_id)
    rows = list(q)
    if len(rows) != 1:
        raise KeyNotFound(ident)
    return rows[0]


def revoke_key(ident: str, tenant_id: str | None = None) -> m.ApiKey:
    """Revoke the key named by id or prefix: requests and session cookies using it fail at once.

    Blocking: the writer thread (or the CLI).

    Raises:
        KeyNotFound: see :func:`resolve_key`.
    """
    row = resolve_key(ident, tenant_id)
    m.ApiKey.update(revoked=True).where(m.ApiKey.id == row.id).execute()
    row.revoked = True
    return row
