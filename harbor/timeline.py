"""Time travel over a session: its timeline, manual snapshots and moments, seek, and session-branch.

- The timeline joins the session's moments (manual ones, plus status changes, tool runs and file
  edits from its events) with its filesystem snapshots, each placed by ``offsetSec`` from the start.
- Seek materialises a snapshot read-only under ``<data dir>/mounts/<snapshot id>`` once; later
  seeks of the same snapshot answer the same directory.
- Session-branch starts a **new** session (same agent and settings) whose workspace is a writable
  copy of a snapshot, prompted with the injected message or the parent's prompt.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio
import ulid

from actors.events import EventKind, iso_ts
from actors.lifecycle import TERMINAL, Status
from actors.snapshots import SnapshotError, discard
from actors.workspace import remove_tree
from harbor.api.problems import Problem, not_found
from harbor.sessions import links
from harbor.snapshots import record_of
from harbor.store import models as m
from harbor.workspace_lifecycle import mounts_root

if TYPE_CHECKING:
    from harbor.core import Harbor

#: Event kinds that become automatic moments on the timeline.
_MOMENT_KINDS = (EventKind.STATUS.value, EventKind.TOOL_USE.value, EventKind.FILE_EDIT.value)
#: Automatic moments a timeline carries at most (the latest ones).
MAX_AUTO_MOMENTS = 1000
#: Numbers below this are seconds since the session started; above, unix seconds.
_EPOCH_FLOOR = 1e9


def parse_time(value: Any, start: float, field: str) -> float:
    """A client's time: ISO-8601, unix seconds, or seconds since the session was created (< 1e9).

    Raises:
        Problem: 400 naming ``field``.
    """
    if isinstance(value, bool):
        raise Problem(400, f"{field} is not a time", errors={field: ["must be an ISO-8601 time or seconds"]})
    if isinstance(value, (int, float)):
        return float(value) if value >= _EPOCH_FLOOR else start + float(value)
    if isinstance(value, str):
        try:
            return parse_time(float(value), start, field)
        except (ValueError, Problem):
            pass
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise Problem(400, f"{field} is not a time: {value!r}",
                          errors={field: ["must be an ISO-8601 time or seconds"]}) from None
        if parsed.tzinfo is None:
            raise Problem(400, f"{field} needs a time zone (e.g. a trailing Z)", errors={field: ["needs a time zone"]})
        return parsed.timestamp()
    raise Problem(400, f"{field} is not a time", errors={field: ["must be an ISO-8601 time or seconds"]})


class TimelineService:
    """The ``/sessions/{id}/timeline|fs-snapshots|moments|seek|session-branch|branches`` routes."""

    def __init__(self, harbor: Harbor) -> None:
        self.harbor = harbor
        self.mounts = mounts_root(harbor.settings.data_dir)
        self._mount_locks: dict[str, trio.Lock] = {}

    # -- snapshots ---------------------------------------------------------------------------------

    async def snapshots(self, session_id: str) -> list[m.Snapshot]:
        """The session's snapshots, oldest first."""
        return await self.harbor.journal.read(lambda: list(m.Snapshot.select().where(
            m.Snapshot.session_id == session_id).order_by(m.Snapshot.created_at, m.Snapshot.id)))

    def snapshot_view(self, row: m.Snapshot, start: float | None = None) -> dict[str, Any]:
        mount = self.mounts / row.id
        mounted = str(mount) if mount.is_dir() else None
        return {"id": row.id, "sessionId": row.session_id, "ts": iso_ts(row.created_at),
                "offsetSec": round(row.created_at - start, 3) if start is not None else None,
                "label": row.label, "description": row.description, "provider": row.provider,
                "trigger": row.trigger, "parentId": row.parent_id,
                "snapshot": {"id": row.id, "mount": mounted, "size_bytes": row.size_bytes}}

    async def list_snapshots(self, row: m.Session) -> dict[str, Any]:
        items = [self.snapshot_view(s, _start(row)) for s in await self.snapshots(row.id)]
        return {"items": items, "total": len(items)}

    async def take(self, row: m.Session, label: str | None, description: str | None) -> dict[str, Any]:
        """A manual snapshot, now (never coalesced: the caller gets its id)."""
        try:
            snap = await self.harbor.snapshots.take(row.id, "manual", label=label or "manual",
                                                    description=description)
        except (SnapshotError, ValueError) as exc:
            raise Problem(503, f"the snapshot failed: {exc}", kind="snapshot-failed") from None
        if snap is None:
            raise Problem(409, f"session {row.id} has no workspace to snapshot (not provisioned yet, or removed)",
                          kind="no-workspace")
        return self.snapshot_view(snap, _start(row))

    async def pick(self, row: m.Session, snapshot_id: str | None, ts: Any, field: str) -> m.Snapshot:
        """The snapshot named by id, or the latest at or before ``ts`` (the latest of all without either).

        Raises:
            Problem: 404 (unknown id, another session's, none early enough), 400 (bad ``ts``).
        """
        if snapshot_id:
            snap = await self.harbor.journal.read(lambda: m.Snapshot.get_or_none(m.Snapshot.id == snapshot_id))
            if snap is None or snap.session_id != row.id:
                raise not_found("snapshot", snapshot_id)
            return snap
        when = parse_time(ts, _start(row), field) if ts is not None else float("inf")
        # Times travel as ISO strings truncated to the millisecond: a snapshot's own ``ts`` must find it.
        snap = await self.harbor.journal.read(lambda: m.Snapshot.select().where(
            (m.Snapshot.session_id == row.id) & (m.Snapshot.created_at < when + 0.001))
            .order_by(m.Snapshot.created_at.desc(), m.Snapshot.id.desc()).first())
        if snap is None:
            at = f" at or before {iso_ts(when)}" if ts is not None else ""
            raise Problem(404, f"session {row.id} has no snapshot{at}",
                          errors={field: ["no snapshot at or before this time"]}, kind="not-found")
        return snap

    # -- moments and the timeline ---------------------------------------------------------------------

    async def add_moment(self, row: m.Session, label: str, description: str | None, kind: str | None
                         ) -> dict[str, Any]:
        """A manual moment (every stored moment is manual; its ``type`` is the client's own word)."""
        now = time.time()
        moment_id = str(ulid.ULID())
        await self.harbor.journal.write(lambda: m.Moment.create(
            id=moment_id, session_id=row.id, label=label, description=description, kind=kind or "manual", ts=now))
        return {"id": moment_id, "sessionId": row.id, "ts": iso_ts(now), "offsetSec": round(now - _start(row), 3),
                "label": label, "description": description, "kind": "manual", "type": kind or "manual"}

    async def timeline(self, row: m.Session) -> dict[str, Any]:
        start = _start(row)
        live = self.harbor.sessions.view(row)["status"]
        end = row.ended_at if row.ended_at is not None and live in TERMINAL else time.time()
        manual = await self.harbor.journal.read(lambda: list(
            m.Moment.select().where(m.Moment.session_id == row.id).order_by(m.Moment.ts)))
        events = await self.harbor.journal.read(lambda: list(
            m.Event.select().where((m.Event.session_id == row.id) & (m.Event.kind.in_(_MOMENT_KINDS)))
            .order_by(m.Event.seq.desc()).limit(MAX_AUTO_MOMENTS)))
        moments = [{"id": mo.id, "ts": iso_ts(mo.ts), "offsetSec": round(mo.ts - start, 3), "label": mo.label,
                    "description": mo.description, "kind": "manual", "type": mo.kind, "seq": None}
                   for mo in manual]
        moments += [_event_moment(e, start) for e in reversed(events)]
        moments.sort(key=lambda mo: (mo["offsetSec"], mo["seq"] or 0))
        snaps = [self.snapshot_view(s, start) for s in await self.snapshots(row.id)]
        duration = max(0.0, end - start)
        return {"sessionId": row.id, "status": live, "createdAt": iso_ts(start), "startedAt": _iso(row.started_at),
                "durationSec": round(duration, 3), "currentTime": round(duration, 3), "moments": moments,
                "fsSnapshots": snaps}

    # -- seek ------------------------------------------------------------------------------------

    async def seek(self, row: m.Session, snapshot_id: str | None, ts: Any) -> dict[str, Any]:
        """Materialise a snapshot read-only (once) and say where."""
        snap = await self.pick(row, snapshot_id, ts, "ts")
        path = await self.materialize(snap)
        when = parse_time(ts, _start(row), "ts") if ts is not None and not snapshot_id else snap.created_at
        return {"seekTime": iso_ts(when), "fsSnapshotId": snap.id, "mountPath": str(path),
                "workspaceView": "readonly", "snapshot": self.snapshot_view(snap, _start(row))}

    async def materialize(self, snap: m.Snapshot) -> Path:
        """``<mounts>/<snapshot id>``, created read-only on first use. Idempotent and race-free: a
        partial directory never appears under the final name."""
        dest = self.mounts / snap.id
        lock = self._mount_locks.setdefault(snap.id, trio.Lock())
        async with lock:
            if await trio.to_thread.run_sync(dest.is_dir):
                return dest
            tmp = self.mounts / f".tmp-{snap.id}-{secrets.token_hex(4)}"
            await trio.to_thread.run_sync(lambda: self.mounts.mkdir(parents=True, exist_ok=True))
            provider = self.harbor.snapshots.provider_of(snap)
            try:
                await provider.materialize_readonly(record_of(snap), tmp)
                await trio.to_thread.run_sync(os.rename, tmp, dest)
            except SnapshotError as exc:
                await discard(tmp)
                raise Problem(503, f"snapshot {snap.id} could not be materialised: {exc}",
                              kind="snapshot-failed") from None
            except BaseException:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(remove_tree, tmp)
                raise
            finally:
                self._mount_locks.pop(snap.id, None)
        return dest

    # -- branches ----------------------------------------------------------------------------------

    async def branch(self, row: m.Session, *, snapshot_id: str | None, from_ts: Any, name: str | None,
                     message: str | None) -> dict[str, Any]:
        """A new session whose workspace starts as a copy of a snapshot of ``row``'s.

        With neither ``snapshot_id`` nor ``from_ts``, a snapshot is taken now and used.
        """
        if snapshot_id or from_ts is not None:
            snap = await self.pick(row, snapshot_id, from_ts, "fsSnapshotId" if snapshot_id else "fromTs")
        else:
            taken = await self.take(row, name or "branch point", None)
            snap = await self.pick(row, taken["id"], None, "fsSnapshotId")
        try:
            spec = self.harbor.catalog.get(row.agent_type)
        except Exception:
            raise Problem(409, f"the agent {row.agent_type!r} of session {row.id} is not known any more") from None
        available, hint = spec.availability()
        if not available:
            raise Problem(422, f"agent {row.agent_type!r} is not available here: {hint}", kind="agent-unavailable")
        now = time.time()
        prompt = message if message and message.strip() else row.prompt
        labels = dict(row.labels or {})
        if name:
            labels["branch"] = name
        new = {
            "id": str(ulid.ULID()), "task_id": row.task_id, "tenant_id": row.tenant_id, "project_id": row.project_id,
            "status": Status.QUEUED.value, "agent_type": row.agent_type, "agent_version": row.agent_version,
            "agent_settings": row.agent_settings, "prompt": prompt,
            "prompt_blocks": [{"type": "text", "text": prompt}] if prompt != row.prompt else row.prompt_blocks,
            "repo": row.repo, "runtime": row.runtime, "workspace_request": row.workspace_request,
            "delivery": row.delivery, "labels": labels, "webhooks": row.webhooks, "created_at": now,
            "updated_at": now, "timeout_seconds": row.timeout_seconds, "parent_session_id": row.id,
            "from_snapshot_id": snap.id,
        }
        await self.harbor.journal.write(lambda: m.Session.insert(**new).execute())
        self.harbor.sessions.start_actor(new, from_snapshot=snap)
        self.harbor.events.feed.publish({"type": "session", "sessionId": new["id"], "status": new["status"],
                                         "agent": new["agent_type"], "parentSessionId": row.id,
                                         "ts": iso_ts(now)})
        return {"id": new["id"], "sessionId": new["id"], "session_ids": [new["id"]], "status": new["status"],
                "parentSessionId": row.id, "fromSnapshotId": snap.id, "name": name, "prompt": prompt,
                "links": links(new["id"])}

    async def branches(self, row: m.Session) -> dict[str, Any]:
        children = await self.harbor.journal.read(lambda: list(m.Session.select().where(
            m.Session.parent_session_id == row.id).order_by(m.Session.created_at, m.Session.id)))
        items = [{"id": c.id, "sessionId": c.id, "name": (c.labels or {}).get("branch"),
                  "status": self.harbor.sessions.view(c)["status"], "fromSnapshotId": c.from_snapshot_id,
                  "createdAt": iso_ts(c.created_at), "prompt": c.prompt, "links": links(c.id)} for c in children]
        return {"sessionId": row.id, "parentSessionId": row.parent_session_id,
                "fromSnapshotId": row.from_snapshot_id, "items": items, "branches": items, "total": len(items)}


def _start(row: m.Session) -> float:
    """Time zero of a session's timeline: its creation (provisioning comes before the agent starts)."""
    return float(row.created_at)


def _iso(ts: float | None) -> str | None:
    return None if ts is None else iso_ts(ts)


def _event_moment(e: m.Event, start: float) -> dict[str, Any]:
    data = json.loads(e.data)
    if e.kind == EventKind.STATUS.value:
        label, kind = f"status: {data.get('status')}", "status"
        description = data.get("reason")
    elif e.kind == EventKind.TOOL_USE.value:
        label, kind = f"tool: {data.get('tool_name')}", "tool"
        args = data.get("tool_args")
        description = json.dumps(args)[:200] if args is not None else None
    else:
        label, kind = f"edit: {data.get('file_path')}", "file_edit"
        description = data.get("description")
    return {"id": f"event-{e.seq}", "ts": iso_ts(e.ts), "offsetSec": round(e.ts - start, 3), "label": label,
            "description": description, "kind": kind, "type": kind, "seq": e.seq}
