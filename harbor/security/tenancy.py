"""Tenant isolation for streams that mix sessions (the dashboard feed).

Single resources are isolated where they are read (``visible_row`` answers 404 for another
tenant's session); a feed of many sessions needs each item checked instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from harbor.store import models as m

FeedFilter = Callable[[dict[str, Any]], Awaitable[bool]]


def feed_filter(journal: Any, tenant_id: str | None) -> FeedFilter | None:
    """A predicate keeping only feed items about ``tenant_id``'s sessions, or ``None`` (keep all)
    for a caller that spans tenants. Each session's tenant is read once per stream."""
    if tenant_id is None:
        return None
    known: dict[str, bool] = {}

    async def visible(item: dict[str, Any]) -> bool:
        session_id = item.get("sessionId")
        if not isinstance(session_id, str):
            return False
        if session_id not in known:
            row = await journal.read(lambda: m.Session.get_or_none(m.Session.id == session_id))
            known[session_id] = row is not None and row.tenant_id == tenant_id
        return known[session_id]

    return visible
