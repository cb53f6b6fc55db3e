"""The service core: what HTTP handlers, the WebUI and in-process callers ask.

:class:`Harbor` owns the journal and the session supervisor and wires the real store and agent
catalog into the actors. Handlers stay thin: they validate, call one method here, shape the reply.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import peewee
import trio
import ulid

from actors import proctable
from actors.workspace import RepoCache, Workspace, remove, worktree_at
from harbor.agents.builtin import inline_scenario_path
from harbor.agents.catalog import AgentCatalog
from harbor.config import Settings
from harbor.events import EventService
from harbor.repositories import RepositoryIndex
from harbor.security import AccessControl
from harbor.sessions import SessionService
from harbor.snapshots import SnapshotService
from harbor.store import models as m
from harbor.store.journal import Journal
from supervisors import ChildSpec, Restart, Supervisor

#: Seconds between samples of every session's CPU and memory (one /proc pass, in a worker thread).
SAMPLE_INTERVAL = 2.0
#: The share of one core the sampler may use; past it, it samples less often than SAMPLE_INTERVAL.
SAMPLE_BUDGET = 0.002

log = logging.getLogger(__name__)


class Harbor:
    """The running service. Start with ``await nursery.start(harbor.run)``."""

    def __init__(self, settings: Settings, db: peewee.Database) -> None:
        self.settings = settings
        self.db = db
        self.journal = Journal(db)
        self.started_at = time.time()
        #: Set when the daemon stops: every open stream (SSE, WebSocket) ends when it is set.
        self.closing = trio.Event()
        self.catalog = AgentCatalog(allow_command_agent=settings.allow_command_agent,
                                    scenario_dirs=settings.scenario_dirs, binaries=settings.agent_binaries)
        self.repo_cache = RepoCache(settings.repo_cache_path)
        self.repositories = RepositoryIndex()
        self.events = EventService(self)
        self.sessions = SessionService(self)
        self.snapshots = SnapshotService(self)
        self.extensions: dict[str, Any] = {}
        #: Authentication, roles, rate limits and the audit log (harbor.security).
        self.security = AccessControl(settings, self.journal)

    @property
    def auth_configured(self) -> bool:
        """Whether every API call must authenticate (``auth = "required"``)."""
        return self.settings.auth == "required"

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the journal, the session supervisor, snapshots and the sampler until cancelled.

        Sessions a previous run left active are recovered (marked failed, leftovers killed) before
        the supervisor accepts new ones.
        """
        async with trio.open_nursery() as nursery:
            await nursery.start(self.journal.run)
            recovered = await self.sessions.recover()
            if recovered:
                log.warning("%d session(s) were active when the daemon last stopped: marked failed", recovered)
            # Service children that can be restarted without losing anything: restarted with backoff,
            # at most 3 times in 30 s; one more and Escalation ends the daemon with a non-zero exit
            # (systemd's Restart=on-failure takes over). The journal and the session supervisor are not
            # restartable (a restart would lose queued events or live actors): their failure is fatal.
            services = Supervisor("harbor-services", [
                ChildSpec("snapshots", self.snapshots.run, Restart.PERMANENT),
                ChildSpec("sampler", self._sample_forever, Restart.PERMANENT),
            ], intensity=3, period=30.0)
            await nursery.start(services.run)
            await nursery.start(self.sessions.supervisor.run)
            task_status.started()

    async def _sample_forever(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        pause = SAMPLE_INTERVAL
        while True:
            await trio.sleep(pause)
            actors = [a for a in self.sessions.supervisor if a.process is not None and a.process.returncode is None]
            if not actors:
                continue
            spent = await trio.to_thread.run_sync(_sample, actors)
            # Stats are for people watching: with many sessions, sample less often rather than spend
            # more than SAMPLE_BUDGET of a core on it.
            pause = max(SAMPLE_INTERVAL, spent / SAMPLE_BUDGET)

    async def readiness(self) -> dict[str, str]:
        """Checks behind ``/readyz``: each ``"ok"`` or a short reason."""
        def ping() -> None:
            self.db.execute_sql("SELECT 1").fetchone()

        try:
            with trio.fail_after(2):
                await self.journal.read(ping)
            database = "ok"
        except Exception as exc:  # any failure to answer means not ready
            database = f"unavailable: {exc}"
        return {"database": database}

    def end_streams(self) -> None:
        self.closing.set()
        self.events.feed.close()

    async def stop_sessions(self) -> None:
        """Stop every running session (daemon shutdown)."""
        await self.sessions.stop_all()

    async def record_workspace(self, session_id: str, ws: Workspace) -> None:
        await self.journal.write(lambda: m.Workspace.create(
            id=str(ulid.ULID()), session_id=session_id, path=str(ws.path), kind=ws.kind,
            base_commit=ws.base_commit, created_at=time.time()))

    async def remove_workspace(self, session_id: str, path: Path) -> None:
        row = await self.journal.read(lambda: m.Workspace.get_or_none(m.Workspace.session_id == session_id))
        try:
            if row is not None and row.kind == "worktree":
                # Unregistered from its cached clone, its session branch dropped unless the agent
                # committed to it.
                ws = await worktree_at(path, row.base_commit, self.repo_cache)
            else:
                ws = Workspace(path=path, kind=row.kind if row else "empty")
            await remove(ws)
            inline_scenario_path(path).unlink(missing_ok=True)
        except Exception as exc:
            log.warning("could not remove workspace %s: %s", path, exc)

    async def start_demo(self) -> str:
        """Start a demo scenario session (``make run``); returns its id."""
        from harbor.api.schemas import CreateTaskRequest

        body = CreateTaskRequest.model_validate({
            "prompt": "Demo: fix the login bug", "agents": [{"type": "scenario",
                                                           "settings": {"scenario": "fix_login_bug", "speed": 0.5}}],
            "labels": {"demo": "true"}})
        result = await self.sessions.create_task(body, idempotency_key=None)
        log.info("demo session %s started", result["id"])
        return str(result["id"])


def _sample(actors: list[Any]) -> float:
    """Refresh each actor's CPU/RSS figures from one /proc pass (blocking; runs in a worker thread).

    Returns the CPU seconds it took."""
    began = time.thread_time()
    table = proctable.snapshot()
    for actor in actors:
        try:
            actor.stats = actor.process.stats(table)
        except Exception:  # the process ended between listing and sampling
            pass
    return time.thread_time() - began
