"""Drafts: task requests a person is still writing, kept whole as sent (``/drafts``).

A draft is any JSON object; the daemon adds ``id``, ``createdAt`` and ``updatedAt`` and otherwise
stores and returns every field exactly as sent (``agents`` included). An update merges its fields
into the stored draft (top-level keys; a ``null`` value is kept as ``null``). Drafts belong to the
caller's tenant: another tenant's draft is answered 404.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import ulid

from actors.events import iso_ts
from harbor.api.problems import not_found
from harbor.sessions import page
from harbor.store import models as m

if TYPE_CHECKING:
    from harbor.store.journal import Journal

#: Keys the daemon owns: a body's values for them are ignored.
RESERVED = frozenset({"id", "createdAt", "updatedAt"})


def view(row: m.Draft) -> dict[str, Any]:
    return {**row.data, "id": row.id, "createdAt": iso_ts(row.created_at), "updatedAt": iso_ts(row.updated_at)}


class DraftStore:
    """Create, list, merge and delete drafts, scoped by tenant (``None``: no tenant)."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def _get(self, draft_id: str, tenant: str | None) -> m.Draft:
        row = await self.journal.read(lambda: m.Draft.get_or_none(m.Draft.id == draft_id))
        if row is None or (tenant is not None and row.tenant_id != tenant):
            raise not_found("draft", draft_id)
        return row

    async def create(self, data: dict[str, Any], tenant: str | None) -> dict[str, Any]:
        now = time.time()
        fields = {k: v for k, v in data.items() if k not in RESERVED}
        row = await self.journal.write(lambda: m.Draft.create(
            id=str(ulid.ULID()), tenant_id=tenant, data=fields, created_at=now, updated_at=now))
        return view(row)

    async def get(self, draft_id: str, tenant: str | None) -> dict[str, Any]:
        return view(await self._get(draft_id, tenant))

    async def list(self, tenant: str | None, page_no: int, per_page: int) -> dict[str, Any]:
        def select() -> tuple[int, list[m.Draft]]:
            q = m.Draft.select()
            if tenant is not None:
                q = q.where(m.Draft.tenant_id == tenant)
            return q.count(), list(q.order_by(m.Draft.updated_at.desc(), m.Draft.id.desc()).paginate(page_no, per_page))

        total, rows = await self.journal.read(select)
        doc = page([view(r) for r in rows], page_no, per_page, total)
        doc["drafts"] = doc["items"]
        return doc

    async def update(self, draft_id: str, data: dict[str, Any], tenant: str | None) -> dict[str, Any]:
        await self._get(draft_id, tenant)
        now = time.time()
        fields = {k: v for k, v in data.items() if k not in RESERVED}

        def merge() -> m.Draft | None:
            # Read and write in the writer's transaction: concurrent merges never lose each other's keys.
            row = m.Draft.get_or_none(m.Draft.id == draft_id)
            if row is None:  # deleted meanwhile
                return None
            row.data = {**row.data, **fields}
            row.updated_at = now
            row.save()
            return row

        row = await self.journal.write(merge)
        if row is None:
            raise not_found("draft", draft_id)
        return view(row)

    async def delete(self, draft_id: str, tenant: str | None) -> None:
        await self._get(draft_id, tenant)
        await self.journal.write(lambda: m.Draft.delete().where(m.Draft.id == draft_id).execute())
