"""The audit log: who did which privileged thing, to what, and how it ended.

Entries are rows of ``audit_entry`` written through the journal (one write per audited request).
``detail`` holds a small JSON object: the HTTP ``status``, ``method`` and ``path``, and a ``reason``
for refusals. Nothing secret is ever recorded: no key, token, cookie or header value.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from peewee import fn

from actors.events import iso_ts
from harbor.store import models as m

log = logging.getLogger(__name__)

#: Outcome names: ``ok`` (2xx/3xx), ``denied`` (401, 403, 429), ``error`` (every other failure).
OUTCOMES = ("ok", "denied", "error")


def outcome_for(status: int) -> str:
    """The outcome name for an HTTP status."""
    if status < 400:
        return "ok"
    if status in (401, 403, 429):
        return "denied"
    return "error"


def parse_time(value: str | float | None) -> float | None:
    """Unix seconds from unix seconds or an ISO-8601 string (``Z`` allowed).

    Raises:
        ValueError: neither.
    """
    if value is None or isinstance(value, float | int):
        return value
    try:
        return float(value)
    except ValueError:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            raise ValueError("an ISO-8601 time needs a zone (e.g. Z)") from None
        return parsed.timestamp()


@dataclass
class AuditRecord:
    """One entry to write."""

    action: str
    status: int
    principal: str | None = None
    tenant_id: str | None = None
    target: str | None = None
    request_id: str | None = None
    client: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    ts: float = field(default_factory=time.time)

    @property
    def outcome(self) -> str:
        return outcome_for(self.status)

    def insert(self) -> None:
        """Store it. Blocking: the writer thread."""
        m.AuditEntry.create(ts=self.ts, principal=self.principal, tenant_id=self.tenant_id, action=self.action,
                            target=self.target, outcome=self.outcome, request_id=self.request_id,
                            client=self.client, detail=json.dumps({"status": self.status, **self.detail}))


def entry_view(row: m.AuditEntry) -> dict[str, Any]:
    """An entry as ``GET /api/v1/audit`` and ``ah audit --json`` show it."""
    try:
        detail = json.loads(row.detail) if row.detail else {}
    except ValueError:
        detail = {"text": row.detail}
    return {"id": row.id, "ts": iso_ts(row.ts), "principal": row.principal, "tenantId": row.tenant_id,
            "action": row.action, "target": row.target, "outcome": row.outcome, "status": detail.get("status"),
            "requestId": row.request_id, "client": row.client, "detail": detail}


def select_entries(*, action: str | None = None, principal: str | None = None, outcome: str | None = None,
                   tenant_id: str | None = None, since: float | None = None, until: float | None = None,
                   page: int = 1, per_page: int = 50) -> tuple[int, list[m.AuditEntry]]:
    """Entries matching the filters, newest first, and how many match in all. Blocking.

    Args:
        action: comma-separated action names; a name ending in ``*`` matches by prefix
            (``session.*``).
        tenant_id: only this tenant's entries (a tenant-bound admin sees only its own).
    """
    q = m.AuditEntry.select()
    if action:
        clauses = []
        for name in (a.strip() for a in action.split(",") if a.strip()):
            if name.endswith("*"):
                clauses.append(fn.substr(m.AuditEntry.action, 1, len(name) - 1) == name[:-1])
            else:
                clauses.append(m.AuditEntry.action == name)
        if clauses:
            condition = clauses[0]
            for clause in clauses[1:]:
                condition = condition | clause
            q = q.where(condition)
    if principal:
        q = q.where(m.AuditEntry.principal == principal)
    if outcome:
        q = q.where(m.AuditEntry.outcome == outcome)
    if tenant_id is not None:
        q = q.where(m.AuditEntry.tenant_id == tenant_id)
    if since is not None:
        q = q.where(m.AuditEntry.ts >= since)
    if until is not None:
        q = q.where(m.AuditEntry.ts < until)
    total = q.count()
    rows = list(q.order_by(m.AuditEntry.ts.desc(), m.AuditEntry.id.desc()).paginate(page, per_page))
    return total, rows


class AuditLog:
    """Writes audit entries through the journal.

    Args:
        journal: the daemon's :class:`~harbor.store.journal.Journal`.
        enabled: when ``False`` nothing is written (auth off on loopback: every caller is the
            local user, and an extra write per action would cost the hot path for nothing).
    """

    def __init__(self, journal: Any, *, enabled: bool) -> None:
        self._journal = journal
        self.enabled = enabled

    async def record(self, record: AuditRecord) -> None:
        """Write one entry (one journal write). A failure to write is logged, never raised: the
        action it describes has already happened."""
        if not self.enabled:
            return
        try:
            await self._journal.write(record.insert)
        except Exception as exc:  # the database is failing; the request must still get its answer
            log.error("could not write an audit entry for %s: %s", record.action, exc)
