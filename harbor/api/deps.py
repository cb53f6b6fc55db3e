"""What handlers need from the app: the service core and the caller's tenant."""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart import current_app, g

if TYPE_CHECKING:
    from harbor.core import Harbor


def harbor() -> Harbor:
    """The running service core."""
    return current_app.extensions["harbor"]  # type: ignore[no-any-return]


def tenant() -> str | None:
    """The authenticated caller's tenant (``None`` when auth is off or the principal spans tenants)."""
    principal = getattr(g, "principal", None)
    return getattr(principal, "tenant_id", None)
