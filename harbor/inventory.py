"""What this daemon offers and holds: agents, runtimes, executors, repositories, projects, workspaces.

Read-mostly views behind the catalogue routes (``/agents``, ``/runtimes``, ``/executors``) and the
repository routes (``/repositories``, ``/repos``, ``/projects``, ``/workspaces``). Repositories are
indexed when a task names one (:class:`~harbor.repositories.RepositoryIndex`) or registered
explicitly; their branches and files are read from the daemon's cached clone.
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from actors.events import iso_ts
from actors.lifecycle import ACTIVE, Status
from actors.snapshots import detect_capabilities
from actors.workspace import ProvisionError
from harbor import __version__
from harbor.agents.catalog import UnknownAgent
from harbor.api.problems import Problem, not_found
from harbor.repositories import repository_id, repository_name
from harbor.sessions import page
from harbor.store import models as m
from harbor.workspace_views import disk_usage

if TYPE_CHECKING:
    from harbor.core import Harbor

API = "/api/v1"
#: Seconds the host's snapshot capabilities are remembered (probing copies a file).
CAPABILITY_TTL = 60.0
#: Files ``/repositories/{id}/files`` lists at most.
MAX_REPO_FILES = 10_000


def _iso(ts: float | None) -> str | None:
    return None if ts is None else iso_ts(ts)


def repository_view(row: m.Repository) -> dict[str, Any]:
    """Every client's names at once (``/repositories`` and ``/repos`` shapes)."""
    return {"id": row.id, "name": row.name, "displayName": row.name, "url": row.url, "remoteUrl": row.url,
            "branch": row.default_branch, "defaultBranch": row.default_branch, "lastCommit": row.last_commit,
            "scmProvider": row.scm_provider, "projectId": row.project_id, "tenantId": row.tenant_id,
            "createdAt": _iso(row.created_at), "lastUsedAt": _iso(row.last_used_at)}


class Inventory:
    """The catalogue and repository views of one daemon."""

    def __init__(self, harbor: Harbor) -> None:
        self.harbor = harbor
        self._caps: tuple[float, list[str]] | None = None

    # -- agents, runtimes, executors -------------------------------------------------------------

    def agents(self) -> dict[str, Any]:
        """Each agent type once (aliases listed, never repeated as types)."""
        items = []
        for spec in self.harbor.catalog:
            available, hint = spec.availability()
            items.append({"type": spec.type, "aliases": list(spec.aliases), "versions": list(spec.versions),
                          "description": spec.description, "available": available, "unavailableReason": hint,
                          "settingsSchemaRef": f"{API}/schemas/agents/{spec.type}.json"})
        return {"items": items, "total": len(items)}

    def agent_schema(self, agent_type: str) -> dict[str, Any]:
        """The JSON Schema of an agent's ``settings`` (by type or alias)."""
        try:
            spec = self.harbor.catalog.get(agent_type)
        except UnknownAgent:
            raise not_found("agent type", agent_type) from None
        return {"$schema": "https://json-schema.org/draft/2020-12/schema",
                "$id": f"{API}/schemas/agents/{spec.type}.json", **spec.settings_schema}

    @staticmethod
    def runtimes() -> dict[str, Any]:
        devcontainer = shutil.which("devcontainer") is not None
        items = [
            {"type": "local", "available": True, "default": True, "sandboxProfiles": ["none"],
             "description": "The agent runs as a process group of the daemon's user, in its workspace"},
            {"type": "devcontainer", "available": devcontainer, "default": False, "sandboxProfiles": [],
             "description": "A dev container (needs the devcontainer CLI)"
                            + ("" if devcontainer else "; not installed here")},
            {"type": "disabled", "available": True, "default": False, "sandboxProfiles": ["none"],
             "description": "No runtime isolation at all (same as local here)"},
        ]
        return {"items": items, "total": len(items)}

    async def capabilities(self) -> list[str]:
        """Snapshot providers usable for workspaces under the data dir (probed, cached a minute)."""
        now = time.monotonic()
        if self._caps is None or now - self._caps[0] > CAPABILITY_TTL:
            where = self.harbor.settings.workspaces_path
            await trio.to_thread.run_sync(lambda: where.mkdir(parents=True, exist_ok=True))
            self._caps = (now, await trio.to_thread.run_sync(detect_capabilities, where))
        return list(self._caps[1])

    async def executors(self) -> dict[str, Any]:
        """This host, the only executor of a single daemon."""
        actors = list(self.harbor.sessions.supervisor)
        running = sum(1 for a in actors if a.status in ACTIVE and a.status != Status.QUEUED)
        queued = sum(1 for a in actors if a.status == Status.QUEUED)
        host = socket.gethostname()
        item = {"id": f"local-{host}", "name": host, "hostname": host, "os": platform.system().lower(),
                "arch": platform.machine(), "cpus": os.cpu_count(), "version": __version__,
                "snapshotCapabilities": await self.capabilities(), "health": "ok",
                "maxConcurrentTasks": self.harbor.settings.max_concurrent_tasks, "runningTasks": running,
                "queuedTasks": queued, "uptimeSeconds": round(time.time() - self.harbor.started_at, 1)}
        return {"items": [item], "total": 1}

    @property
    def executor_id(self) -> str:
        return f"local-{socket.gethostname()}"

    # -- repositories ------------------------------------------------------------------------------

    async def repositories(self, tenant: str | None, page_no: int, per_page: int, project: str | None = None
                           ) -> dict[str, Any]:
        def select() -> tuple[int, list[m.Repository]]:
            q = m.Repository.select()
            if tenant is not None:
                q = q.where(m.Repository.tenant_id == tenant)
            if project:
                q = q.where(m.Repository.project_id == project)
            rows = q.order_by(m.Repository.last_used_at.desc(), m.Repository.id).paginate(page_no, per_page)
            return q.count(), list(rows)

        total, rows = await self.harbor.journal.read(select)
        return page([repository_view(r) for r in rows], page_no, per_page, total)

    async def repository(self, repo_id: str, tenant: str | None) -> m.Repository:
        row = await self.harbor.journal.read(lambda: m.Repository.get_or_none(m.Repository.id == repo_id))
        if row is None or (tenant is not None and row.tenant_id != tenant):
            raise not_found("repository", repo_id)
        return row

    async def register(self, url: str, branch: str | None, name: str | None, project: str | None,
                       tenant: str | None) -> tuple[dict[str, Any], bool]:
        """Index a repository explicitly; ``(view, created)``."""
        rid = repository_id(url, tenant)
        now = time.time()

        def upsert() -> tuple[m.Repository, bool]:
            row = m.Repository.get_or_none(m.Repository.id == rid)
            created = row is None
            if row is None:
                row = m.Repository.create(id=rid, tenant_id=tenant, project_id=project, url=url,
                                          name=name or repository_name(url), default_branch=branch,
                                          created_at=now, last_used_at=now)
            else:
                row.name = name or row.name
                row.default_branch = branch or row.default_branch
                row.project_id = project or row.project_id
                row.save()
            return row, created

        row, created = await self.harbor.journal.write(upsert)
        return repository_view(row), created

    async def branches(self, row: m.Repository) -> dict[str, Any]:
        try:
            branches = await self.harbor.repo_cache.branches(row.url)
        except ProvisionError as exc:
            raise Problem(502, f"the repository could not be read: {exc}", kind="repository-unavailable") from None
        default = next((b for b in branches if b[2]), None)
        if default is not None and (default[1] != row.last_commit or not row.default_branch):
            await self.harbor.journal.write(lambda: m.Repository.update(
                last_commit=default[1], default_branch=row.default_branch or default[0]).where(
                m.Repository.id == row.id).execute())
        items = [{"name": n, "is_default": d, "isDefault": d, "last_commit": sha, "lastCommit": sha}
                 for n, sha, d in branches]
        return {"repositoryId": row.id, "branches": items, "items": items, "total": len(items)}

    async def files(self, row: m.Repository, ref: str | None, prefix: str | None, limit: int) -> dict[str, Any]:
        try:
            paths = await self.harbor.repo_cache.files(row.url, ref)
        except ProvisionError as exc:
            status = 404 if ref is not None and "not found" in str(exc) else 502
            raise Problem(status, f"the repository could not be read: {exc}",
                          errors={"ref": [str(exc)]} if status == 404 else None) from None
        if prefix:
            paths = [p for p in paths if p.startswith(prefix)]
        shown = paths[:limit]
        return {"repositoryId": row.id, "ref": ref or row.default_branch,
                "files": [{"path": p, "detail": "file"} for p in shown], "total": len(paths),
                "truncated": len(paths) > len(shown)}

    # -- projects and workspaces -------------------------------------------------------------------

    async def projects(self, tenant: str | None) -> dict[str, Any]:
        def select() -> dict[str, float]:
            seen: dict[str, float] = {}
            q = m.Session.select(m.Session.project_id, m.Session.created_at).where(m.Session.project_id.is_null(False))
            r = m.Repository.select(m.Repository.project_id, m.Repository.last_used_at).where(
                m.Repository.project_id.is_null(False))
            if tenant is not None:
                q = q.where(m.Session.tenant_id == tenant)
                r = r.where(m.Repository.tenant_id == tenant)
            for pid, ts in [*q.tuples(), *r.tuples()]:
                seen[pid] = max(ts, seen.get(pid, ts))
            return seen

        seen = await self.harbor.journal.read(select)
        items = [{"id": pid, "displayName": pid, "name": pid, "lastUsedAt": iso_ts(ts)}
                 for pid, ts in sorted(seen.items(), key=lambda kv: -kv[1])]
        return {"items": items, "total": len(items)}

    def _workspace_status(self, ws: m.Workspace, session: m.Session | None) -> str:
        if ws.removed_at is not None or not Path(ws.path).is_dir():
            return "removed"
        actor = self.harbor.sessions.supervisor.find(ws.session_id)
        status = actor.status if actor is not None else (session.status if session is not None else None)
        return "active" if status in ACTIVE else "idle"

    async def _workspace_rows(self, tenant: str | None, where: Any = None
                              ) -> list[tuple[m.Workspace, m.Session | None]]:
        def select() -> list[tuple[m.Workspace, m.Session | None]]:
            q = m.Workspace.select()
            if where is not None:
                q = q.where(where)
            rows = list(q.order_by(m.Workspace.created_at.desc(), m.Workspace.id.desc()))
            ids = [w.session_id for w in rows]
            sessions = {s.id: s for s in m.Session.select().where(m.Session.id.in_(ids))} if ids else {}
            out = [(w, sessions.get(w.session_id)) for w in rows]
            if tenant is not None:
                out = [(w, s) for w, s in out if s is not None and s.tenant_id == tenant]
            return out

        return await self.harbor.journal.read(select)

    def _workspace_view(self, ws: m.Workspace, session: m.Session | None, status: str, used: int | None
                        ) -> dict[str, Any]:
        return {"id": ws.id, "status": status, "executorId": self.executor_id, "sessionId": ws.session_id,
                "path": ws.path, "storageUsed": used, "createdAt": iso_ts(ws.created_at), "kind": ws.kind,
                "baseCommit": ws.base_commit, "sessionStatus": session.status if session is not None else None,
                "removedAt": _iso(ws.removed_at)}

    async def workspaces(self, tenant: str | None, status: str | None, page_no: int, per_page: int
                         ) -> dict[str, Any]:
        rows = await self._workspace_rows(tenant)
        judged = [(w, s, self._workspace_status(w, s)) for w, s in rows]
        if status:
            wanted = {x.strip() for x in status.split(",") if x.strip()}
            if "provisioned" in wanted:
                wanted |= {"active", "idle"}
            judged = [j for j in judged if j[2] in wanted]
        start = (page_no - 1) * per_page
        shown = judged[start:start + per_page]
        items = []
        for w, s, st in shown:
            used = None if st == "removed" else (await trio.to_thread.run_sync(disk_usage, Path(w.path)))[1]
            items.append(self._workspace_view(w, s, st, used))
        return page(items, page_no, per_page, len(judged))

    async def workspace(self, ident: str, tenant: str | None) -> dict[str, Any]:
        """One workspace, by its id or its session's id, with its session."""
        rows = await self._workspace_rows(tenant, (m.Workspace.id == ident) | (m.Workspace.session_id == ident))
        if not rows:
            raise not_found("workspace", ident)
        w, s = rows[0]
        st = self._workspace_status(w, s)
        used = None if st == "removed" else (await trio.to_thread.run_sync(disk_usage, Path(w.path)))[1]
        doc = self._workspace_view(w, s, st, used)
        doc["session"] = self.harbor.sessions.view(s) if s is not None else None
        return doc
