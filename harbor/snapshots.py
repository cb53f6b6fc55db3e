"""The snapshot service: per-session schedules feeding the daemon-wide :class:`SnapshotScheduler`.

Triggers: manual (API), tool boundaries (the actor calls :meth:`SessionSchedule.trigger` after a
``tool_result``/``file_edit``), and an interval while the session runs. The scheduler coalesces
per session (one running, one pending) and bounds concurrent jobs; a paused session's schedule
pauses too. Each snapshot is stored and announced as a ``snapshot`` event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import trio
import ulid

from actors.events import EventKind
from actors.lifecycle import TERMINAL
from actors.snapshot_scheduler import SnapshotScheduler
from actors.snapshots import (
    GitSnapshotProvider,
    SnapshotProvider,
    SnapshotRecord,
    choose_provider,
    provider_named,
)
from actors.workspace import Workspace, add_worktree
from harbor.store import models as m
from harbor.workspace_lifecycle import finalize_session, record_branch_base

if TYPE_CHECKING:
    from harbor.core import Harbor

log = logging.getLogger(__name__)

#: How long deleting a session waits for a snapshot job already running on it.
RETIRE_TIMEOUT = 30.0


def record_of(row: m.Snapshot) -> SnapshotRecord:
    return SnapshotRecord(id=row.id, provider=row.provider, ref=row.ref, created=row.created_at,
                          size_bytes=row.size_bytes, parent=row.parent_id)


class SessionSchedule:
    """One session's view of the scheduler: what the actor's plan calls."""

    def __init__(self, service: SnapshotService, session_id: str) -> None:
        self._service = service
        self.session_id = session_id
        self.paused = False
        self.last_trigger = "manual"

    def trigger(self, reason: str = "tool-boundary") -> None:
        """Ask for a snapshot (coalesced; never blocks; not a checkpoint)."""
        self.last_trigger = reason
        self._service.scheduler.request(self.session_id, lambda: self._service.take(self.session_id, reason))

    def pause(self) -> None:
        self.paused = True
        self._service.scheduler.pause(self.session_id)

    def resume(self) -> None:
        self.paused = False
        self._service.scheduler.resume(self.session_id)


class SnapshotService:
    def __init__(self, harbor: Harbor) -> None:
        self.harbor = harbor
        self.scheduler = SnapshotScheduler(harbor.settings.max_concurrent_snapshots)
        self._schedules: dict[str, SessionSchedule] = {}
        self._retired: set[str] = set()  # sessions being deleted
        self._store = harbor.settings.snapshots_path
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(self.scheduler.run)
            if self.harbor.settings.snapshot_interval_seconds > 0:
                nursery.start_soon(self._interval_loop, self.harbor.settings.snapshot_interval_seconds)
            task_status.started()

    async def _interval_loop(self, interval: float) -> None:
        while True:
            await trio.sleep(interval)
            for actor in self.harbor.sessions.supervisor:
                schedule = self._schedules.get(actor.id)
                if schedule is not None and not schedule.paused and actor.workspace is not None:
                    schedule.trigger("interval")

    def session_ended(self, session_id: str, status: str) -> None:
        """A session reached a terminal status: take its final snapshot and record its ``changes``
        (:func:`harbor.workspace_lifecycle.finalize_session`) in this service's nursery. Not a checkpoint."""
        if self._nursery is None:
            return
        self._nursery.start_soon(finalize_session, self.harbor, session_id, status, name=f"finish {session_id}")

    def schedule_for(self, session_id: str) -> SessionSchedule:
        return self._schedules.setdefault(session_id, SessionSchedule(self, session_id))

    async def forget(self, session_id: str) -> None:
        self.scheduler.forget(session_id)
        self._schedules.pop(session_id, None)

    @asynccontextmanager
    async def retired(self, session_id: str) -> AsyncIterator[None]:
        """While a session is being deleted: no new snapshot job starts for it, and the body runs only
        once a job already running has finished (at most :data:`RETIRE_TIMEOUT` seconds), so nothing
        writes into a workspace or store that is being removed."""
        self._retired.add(session_id)
        try:
            await self.forget(session_id)
            with trio.move_on_after(RETIRE_TIMEOUT):
                await self.scheduler.wait_idle(session_id)
            yield
        finally:
            self._retired.discard(session_id)

    async def latest(self, session_id: str) -> m.Snapshot | None:
        return await self.harbor.journal.read(lambda: m.Snapshot.select().where(
            m.Snapshot.session_id == session_id).order_by(m.Snapshot.created_at.desc()).first())

    async def take(self, session_id: str, trigger: str, label: str | None = None,
                   description: str | None = None) -> m.Snapshot | None:
        """Snapshot a session's workspace now, store it and announce it. ``None`` if no workspace (or
        the session is being deleted)."""
        if session_id in self._retired:
            return None
        row = await self.harbor.sessions.get_row(session_id)
        if not row.workspace_path or not Path(row.workspace_path).is_dir():
            return None
        workspace = Path(row.workspace_path)
        configured = self.harbor.settings.snapshot_provider
        preference = configured if configured != "auto" else (
            (row.workspace_request or {}).get("snapshotPreference"))
        # choose_provider probes the file system (a reflink copy, /proc): keep it off the trio thread.
        provider = await trio.to_thread.run_sync(
            choose_provider, preference, workspace, self.store_root(session_id))
        parent = await self.latest(session_id)
        parent_record = record_of(parent) if parent is not None and parent.provider == provider.name else None
        snapshot_id = str(ulid.ULID())
        record = await provider.snapshot(workspace, snapshot_id, parent=parent_record)
        now = time.time()
        stored = await self.harbor.journal.write(lambda: m.Snapshot.create(
            id=record.id, session_id=session_id, provider=record.provider, ref=record.ref,
            label=label or trigger, description=description, trigger=trigger, created_at=now,
            size_bytes=record.size_bytes, parent_id=record.parent))
        actor = self.harbor.sessions.supervisor.find(session_id)
        # The terminal status is always the last event of a stream: a snapshot taken after the agent
        # ended (trigger "final") is recorded for the timeline but not announced on the stream.
        if actor is not None and not actor.buffer.closed and actor.status not in TERMINAL:
            try:
                await actor.buffer.append(EventKind.SNAPSHOT, {
                    "snapshotId": record.id, "label": label or trigger, "provider": record.provider,
                    "trigger": trigger})
            except trio.ClosedResourceError:
                pass
        return stored

    def store_root(self, session_id: str) -> Path:
        """Where a session's snapshot state lives (also what actors.changes needs as ``store_root``)."""
        return self._store / session_id

    def provider_of(self, row: m.Snapshot) -> SnapshotProvider:
        """The provider that made a stored snapshot (for reading it back)."""
        return provider_named(row.provider, self.store_root(row.session_id))

    async def branch_workspace(self, snapshot: m.Snapshot, session_id: str, dest: Path) -> Workspace:
        """The workspace of ``session_id``, branched from ``snapshot``, at ``dest``: exactly the
        snapshot's files, and its diffs start there.

        A ``git`` snapshot of a worktree of one of the daemon's cached clones gives a worktree of that
        clone on a new ``ah/<session>`` branch at the snapshot's commit (which stands on the parent's
        ``HEAD``, so the project's history comes along). Any other snapshot gives a plain directory,
        whose base commit is written into the session's own snapshot repository.

        Raises:
            SnapshotError: the snapshot cannot be read back.
            ProvisionError: git could not add the worktree.
        """
        provider, rec = self.provider_of(snapshot), record_of(snapshot)
        if isinstance(provider, GitSnapshotProvider):
            repo, commit = await provider.commit_of(rec)
            if self.harbor.repo_cache.owns(repo):
                return await add_worktree(repo, commit, dest)
        path = await provider.branch(rec, dest)
        base = await record_branch_base(path, self.store_root(session_id))
        return Workspace(path=path, kind="branch", base_commit=base)
