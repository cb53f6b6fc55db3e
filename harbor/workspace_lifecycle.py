"""A session workspace's life beyond its actor: where it starts, what is kept when it ends, what goes with it.

- :func:`record_branch_base`: a branched session's base commit (the snapshot it starts from).
- :func:`finalize_session`: after a session ends, its final snapshot and its ``changes`` statistic.
- :func:`discard_mounts`: the read-only snapshot views (seek) of a deleted session.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from actors.changes import changed_files
from actors.events import iso_ts
from actors.lifecycle import Status
from actors.snapshots import SnapshotRepo, discard
from harbor.api.problems import Problem
from harbor.store import models as m
from harbor.workspace_views import WorkspaceViews, summarize

if TYPE_CHECKING:
    from harbor.core import Harbor

log = logging.getLogger(__name__)


def mounts_root(data_dir: Path) -> Path:
    """Where seek materialises snapshots read-only: ``<data dir>/mounts/<snapshot id>``."""
    return data_dir / "mounts"


async def discard_mounts(data_dir: Path, snapshot_ids: Iterable[str]) -> None:
    """Delete the read-only views of these snapshots (a deleted session's), if any were made."""
    for snapshot_id in snapshot_ids:
        await discard(mounts_root(data_dir) / snapshot_id)


async def record_branch_base(workspace: Path, store_root: Path) -> str:
    """Commit the tree of a freshly branched workspace as its base (``refs/ah/base``) and return it.

    A session branched from a snapshot that is not a worktree's (see
    :meth:`~harbor.snapshots.SnapshotService.branch_workspace`) gets a plain directory holding exactly
    the snapshot's files; diffs must be relative to that starting point, which lives in another
    repository. Writing the tree here (through the same private index snapshots use) makes it this
    workspace's own base commit.
    """
    repo = await SnapshotRepo.open(workspace, store_root)
    tree = await repo.write_tree()
    commit = (await repo.git(["commit-tree", tree, "-m", "ah: branch base"])).stdout.decode().strip()
    await repo.git(["update-ref", "refs/ah/base", commit])
    return commit


async def finalize_session(harbor: Harbor, session_id: str, status: str) -> None:
    """After a session ends: a final snapshot (through the scheduler, so the global bound holds),
    then the ``changes`` statistic on the session, announced on the dashboard feed as ``changes``.

    Runs beside the actor in the snapshot service's nursery; never raises (a deleted session or a
    removed workspace just ends it).
    """
    if status == Status.CANCELLED:  # deleted: the workspace is on its way out
        return
    snapshots = harbor.snapshots
    scheduler = snapshots.scheduler
    try:
        scheduler.resume(session_id)  # a session stopped while paused leaves its schedule held

        async def final() -> None:
            await snapshots.take(session_id, "final", label="final")

        while not scheduler.request(session_id, final):
            await scheduler.wait_idle(session_id)
        await scheduler.wait_idle(session_id)
        await snapshots.forget(session_id)
        row = await harbor.sessions.get_row(session_id)
        ws = WorkspaceViews.workspace(row)
        if ws is None:
            return
        summary = summarize(await changed_files(ws, row.base_commit, store_root=snapshots.store_root(session_id)))
        await harbor.journal.write(lambda: m.Session.update(changes=summary).where(
            m.Session.id == session_id).execute())
        harbor.events.feed.publish({"type": "changes", "sessionId": session_id, "changes": summary,
                                    "ts": iso_ts(time.time())})
    except Problem:
        return  # the session was deleted meanwhile
    except Exception:
        log.exception("could not finish session %s (final snapshot, change statistics)", session_id)
