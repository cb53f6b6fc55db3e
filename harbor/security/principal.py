"""Who is calling: the :class:`Principal` and the role hierarchy ``admin > operator > viewer``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["viewer", "operator", "admin"]

#: Higher ranks include every right of the lower ones.
ROLE_RANK: dict[str, int] = {"viewer": 1, "operator": 2, "admin": 3}
ROLES: tuple[Role, ...] = ("viewer", "operator", "admin")


def highest_role(names: list[str] | tuple[str, ...]) -> Role | None:
    """The highest known role among ``names`` (unknown names are ignored), or ``None``."""
    known = [n for n in names if n in ROLE_RANK]
    if not known:
        return None
    return max(known, key=ROLE_RANK.__getitem__)  # type: ignore[return-value]


@dataclass(frozen=True)
class Principal:
    """An authenticated caller.

    Attributes:
        subject: a stable, non-secret name: ``key:<id>`` for API keys, the JWT ``sub`` claim,
            ``local`` when auth is off.
        role: the caller's highest role, or ``None`` when its credential carries no known role
            (it can then reach only public routes).
        tenant_id: the tenant the caller is confined to, or ``None`` for every tenant.
        method: how it authenticated: ``apikey``, ``jwt``, ``cookie`` or ``none`` (auth off).
        key_id: the API key behind ``apikey`` and ``cookie`` principals.
    """

    subject: str
    role: Role | None
    tenant_id: str | None = None
    method: str = "apikey"
    key_id: str | None = None

    @property
    def roles(self) -> list[str]:
        """Every role this principal holds, lowest first (the hierarchy expanded)."""
        if self.role is None:
            return []
        rank = ROLE_RANK[self.role]
        return [r for r in ROLES if ROLE_RANK[r] <= rank]

    def holds(self, required: str) -> bool:
        """Whether the principal's role is at least ``required`` (``public`` is held by anyone)."""
        if required == "public":
            return True
        return self.role is not None and ROLE_RANK[self.role] >= ROLE_RANK[required]

    @property
    def limit_key(self) -> str:
        """The rate-limit and stream-count identity: a key's sign-ins share its bucket, and a token's
        subject can never name a key's bucket."""
        return f"key:{self.key_id}" if self.key_id else f"{self.method}:{self.subject}"


#: The caller when auth is off: a local user who may do everything, in every tenant.
LOCAL = Principal(subject="local", role="admin", tenant_id=None, method="none")


class Unauthenticated(Exception):
    """The request carries no usable credential. The message is safe to show: it never repeats
    the credential."""
