"""The session service: turns API requests into actors and actors into API objects.

- :meth:`SessionService.create_task` validates agents against the catalog, stores the task and its
  sessions in one transaction, and starts one :class:`~actors.session.SessionActor` per session.
- Control (:meth:`control`) asks the actor; a session without a live actor has ended (409/410).
- :meth:`view` builds the contract's flat session object from the stored row and the live actor.
- :meth:`recover` runs at start-up: sessions a previous run left active are marked ``failed``
  ("daemon restarted") and whatever of their process groups survived is killed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio
import ulid
from peewee import fn

from actors.events import EventBuffer, EventKind, iso_ts
from actors.lifecycle import ACTIVE, TERMINAL, IllegalTransition, Status
from actors.process import kill_leftovers
from actors.session import (
    Command,
    InputUnavailable,
    Kill,
    Launch,
    Pause,
    Prompt,
    ProvisionedWorkspace,
    Resume,
    SessionActor,
    SessionFinished,
    SessionPlan,
    Stop,
    describe,
)
from actors.snapshots import discard
from actors.workspace import RepoRequest, provision
from harbor.agents.catalog import AgentContext, AgentUnavailable, InvalidAgentSettings, UnknownAgent
from harbor.api.problems import Problem, conflict, invalid, not_found
from harbor.api.schemas import CreateTaskRequest, SessionQuery
from harbor.repositories import local_path_problem
from harbor.store import models as m
from harbor.workspace_lifecycle import discard_mounts
from supervisors.sessions import SessionNotFound, SessionSupervisor

if TYPE_CHECKING:
    from harbor.core import Harbor

log = logging.getLogger(__name__)

API = "/api/v1"


def links(session_id: str) -> dict[str, str]:
    base = f"{API}/sessions/{session_id}"
    return {"self": base, "events": f"{base}/events", "logs": f"{base}/logs"}


def _iso(ts: float | None) -> str | None:
    return None if ts is None else iso_ts(ts)


class JournalRecorder:
    """:class:`actors.session.SessionRecorder` over the journal.

    A terminal status also hands the session to the snapshot service, which takes the final
    snapshot and records the ``changes`` statistic beside the actor (never blocking it).
    """

    def __init__(self, harbor: Harbor) -> None:
        self._harbor = harbor
        self._journal = harbor.journal
        self._feed = harbor.events.feed

    async def update_session(self, session_id: str, fields: Mapping[str, Any]) -> None:
        values = dict(fields)
        values.setdefault("updated_at", time.time())
        if "status" in values:
            # Announced as it is written, not after: a dashboard that reads the session at once gets
            # the live status (and, for an end, the end fields) from the actor meanwhile.
            self._feed.publish({"type": "status", "sessionId": session_id, "status": values["status"],
                                "ts": iso_ts(values["updated_at"]),
                                **({"error": values["error"]} if values.get("error") else {})})
        await self._journal.write(lambda: m.Session.update(**values).where(m.Session.id == session_id).execute())
        if values.get("status") in TERMINAL:
            try:
                self._harbor.snapshots.session_ended(session_id, values["status"])
            except RuntimeError:  # the snapshot service has stopped (daemon shutdown): no final snapshot
                log.info("session %s ended during shutdown: no final snapshot", session_id)


class SessionService:
    """Sessions: creation, views, control, deletion, recovery."""

    def __init__(self, harbor: Harbor) -> None:
        self.harbor = harbor
        self.settings = harbor.settings
        self.journal = harbor.journal
        self.supervisor = SessionSupervisor(self.settings.max_concurrent_tasks, on_crash=self._record_crash)
        self.recorder = JournalRecorder(harbor)
        self._idempotency_locks: dict[tuple[str, str], trio.Lock] = {}

    # -- creation ----------------------------------------------------------------------------------

    def _resolve_agents(self, body: CreateTaskRequest) -> list[tuple[Any, dict[str, Any], Any]]:
        name, entries = body.agent_entries()
        if not entries:
            raise invalid({"agents": ["is required: name at least one agent, e.g. [{\"type\": \"scenario\"}]"]})
        resolved = []
        errors: dict[str, list[str]] = {}
        for index, entry in enumerate(entries):
            prefix = f"{name}[{index}]" if name == "agents" else name
            try:
                spec, settings = self.harbor.catalog.resolve(entry.type, dict(entry.settings))
            except UnknownAgent:
                known = ", ".join(s.type for s in self.harbor.catalog)
                errors[f"{prefix}.type"] = [f"unknown agent type {entry.type!r} (known: {known})"]
                continue
            except InvalidAgentSettings as exc:
                for field, messages in exc.errors.items():
                    errors[f"{prefix}.{field}"] = list(messages)
                continue
            except AgentUnavailable as exc:
                raise Problem(422, f"agent {entry.type!r} is not available here: {exc.hint}",
                              errors={f"{prefix}.type": [exc.hint]}, kind="agent-unavailable") from None
            resolved.append((spec, settings, entry))
        if errors:
            raise invalid(errors)
        return resolved

    def _check_repo(self, body: CreateTaskRequest) -> None:
        repo = body.repo
        if repo.mode == "upload":
            raise Problem(422, "repo.mode 'upload' is not supported by this daemon: use 'git' or 'none'",
                          errors={"repo.mode": ["upload is not supported"]}, kind="unsupported")
        if repo.mode == "git" and repo.url and (problem := local_path_problem(repo.url)):
            raise invalid({"repo.url": [problem]})

    async def create_task(self, body: CreateTaskRequest, *, idempotency_key: str | None,
                          tenant_id: str | None = None) -> dict[str, Any]:
        """Create a task and its sessions; the 201 body. Idempotent per (tenant, key).

        Raises:
            Problem: 400 (validation, unknown agent), 409 (key reused for another request), 422.
        """
        if not idempotency_key:
            return await self._create(body, tenant_id)
        tenant = tenant_id or body.tenantId or ""
        fingerprint = hashlib.sha256(body.model_dump_json().encode()).hexdigest()
        lock = self._idempotency_locks.setdefault((tenant, idempotency_key), trio.Lock())
        async with lock:
            stored = await self.journal.read(lambda: m.IdempotencyKey.get_or_none(
                (m.IdempotencyKey.tenant_id == tenant) & (m.IdempotencyKey.key == idempotency_key)))
            if stored is not None:
                if stored.fingerprint != fingerprint:
                    raise conflict("this Idempotency-Key was already used for a different request")
                return dict(stored.body)
            result = await self._create(body, tenant_id)
            await self.journal.write(lambda: m.IdempotencyKey.create(
                tenant_id=tenant, key=idempotency_key, fingerprint=fingerprint, status=201, body=result,
                created_at=time.time()))
        self._idempotency_locks.pop((tenant, idempotency_key), None)
        return result

    async def _create(self, body: CreateTaskRequest, tenant_id: str | None) -> dict[str, Any]:
        agents = self._resolve_agents(body)
        self._check_repo(body)
        now = time.time()
        task_id = str(ulid.ULID())
        tenant = tenant_id or body.tenantId
        rows: list[dict[str, Any]] = []
        for spec, settings, entry in agents:
            for _ in range(entry.count):
                rows.append({
                    "id": str(ulid.ULID()), "task_id": task_id, "tenant_id": tenant, "project_id": body.projectId,
                    "status": Status.QUEUED.value, "agent_type": spec.type, "agent_version": entry.version,
                    "agent_settings": settings, "prompt": body.prompt_text,
                    "prompt_blocks": [b.model_dump(exclude_none=True) for b in body.prompt]
                    if isinstance(body.prompt, list) else [{"type": "text", "text": body.prompt}],
                    "repo": body.repo.model_dump(exclude_none=True),
                    "runtime": body.runtime.model_dump(exclude_none=True),
                    "workspace_request": body.workspace.model_dump(exclude_none=True),
                    "delivery": body.delivery.model_dump(exclude_none=True), "labels": body.labels,
                    "webhooks": [w.model_dump() for w in body.webhooks], "created_at": now, "updated_at": now,
                    "timeout_seconds": body.timeoutSeconds or (self.settings.session_timeout_seconds or None),
                })

        def store() -> None:
            m.Task.create(id=task_id, tenant_id=tenant, project_id=body.projectId,
                          request=body.model_dump(mode="json", exclude_none=True), created_at=now)
            m.Session.insert_many(rows).execute()
            if body.repo.mode == "git" and body.repo.url:
                self.harbor.repositories.index_sync(body.repo.url, body.repo.branch, tenant, body.projectId, now)

        await self.journal.write(store)
        for row in rows:
            self.start_actor(row)
            self.harbor.events.feed.publish({"type": "session", "sessionId": row["id"], "status": row["status"],
                                             "agent": row["agent_type"], "ts": iso_ts(now)})
        first = rows[0]["id"]
        return {"id": first, "session_ids": [r["id"] for r in rows], "status": Status.QUEUED.value,
                "links": links(first)}

    # -- actors ------------------------------------------------------------------------------------

    def start_actor(self, row: Mapping[str, Any], *, from_snapshot: Any = None) -> SessionActor:
        """Start the actor of a stored ``queued`` session."""
        session_id = row["id"]
        spec = self.harbor.catalog.get(row["agent_type"])
        settings = dict(row["agent_settings"])
        dest = self.settings.workspaces_path / session_id
        repo = row["repo"] or {}
        harbor = self.harbor

        async def provision_workspace() -> ProvisionedWorkspace:
            if from_snapshot is not None:
                branched = await harbor.snapshots.branch_workspace(from_snapshot, session_id, dest)
                await harbor.record_workspace(session_id, branched)
                return ProvisionedWorkspace(branched.path, {"base_commit": branched.base_commit})
            request = RepoRequest(mode=repo.get("mode") or "none", url=repo.get("url"),
                                  branch=repo.get("branch"), commit=repo.get("commit"))
            ws = await provision(request, dest, harbor.repo_cache)
            return ProvisionedWorkspace(ws.path, {"base_commit": ws.base_commit},
                                        after_start=lambda: harbor.record_workspace(session_id, ws))

        def command(workspace: Path) -> Launch:
            plan = spec.launch(AgentContext(session_id=session_id, prompt=row["prompt"], workspace=workspace,
                                            settings=settings))
            return Launch(plan.argv, plan.env, plan.stdin_data, plan.keep_stdin_open)

        schedule = harbor.snapshots.schedule_for(session_id)
        plan = SessionPlan(
            provision=provision_workspace, command=command, adapter=spec.adapter(session_id),
            timeout=row.get("timeout_seconds"), stop_grace=self.settings.stop_grace_seconds,
            on_boundary=schedule.trigger, on_pause=schedule.pause, on_resume=schedule.resume,
            encode_prompt=spec.encode_prompt)
        buffer = EventBuffer(session_id, self.journal)

        def factory(admission: Any) -> SessionActor:
            return SessionActor(session_id, plan, buffer, self.recorder, admission=admission)

        actor = self.supervisor.start(factory)
        return actor

    async def _record_crash(self, session_id: str, error: BaseException) -> None:
        try:
            await self.recorder.update_session(session_id, {
                "status": Status.FAILED.value, "error": f"internal error: {describe(error)}", "ended_at": time.time()})
        except Exception:
            log.exception("could not record the crash of session %s", session_id)

    # -- reading -----------------------------------------------------------------------------------

    async def get_row(self, session_id: str) -> m.Session:
        row = await self.journal.read(lambda: m.Session.get_or_none(m.Session.id == session_id))
        if row is None:
            raise not_found("session", session_id)
        return row

    def view(self, row: m.Session) -> dict[str, Any]:
        """The contract's flat session object (stored row overlaid with the live actor)."""
        actor = self.supervisor.find(row.id)
        status = str(actor.status) if actor is not None else row.status
        # What the actor has recorded may still be on its way to the row (statuses, pid, end time,
        # exit code): the actor's copy wins, so the view is never behind the session's events.
        recorded = actor.record if actor is not None else {}

        def field(name: str) -> Any:
            return recorded[name] if name in recorded else getattr(row, name)

        live = actor is not None and status not in TERMINAL
        recent = [e.wire() for e in actor.buffer.recent(3)] if live and actor is not None else []
        ended_at = field("ended_at")
        doc: dict[str, Any] = {
            "id": row.id, "taskId": row.task_id, "tenantId": row.tenant_id, "projectId": row.project_id,
            "status": status, "createdAt": _iso(row.created_at), "updatedAt": _iso(field("updated_at")),
            "startedAt": _iso(field("started_at")), "endedAt": _iso(ended_at),
            "completedAt": _iso(ended_at) if status == Status.COMPLETED else None,
            "prompt": row.prompt, "repo": row.repo, "runtime": row.runtime,
            "agent": {"type": row.agent_type, "version": row.agent_version},
            "delivery": row.delivery, "labels": row.labels, "links": links(row.id), "recent_events": recent,
            "changes": row.changes or {"files_changed": 0, "lines_added": 0, "lines_removed": 0},
            "exitCode": field("exit_code"), "error": field("error"), "pid": field("pid"),
            "workspace": {"path": field("workspace_path"), "baseCommit": field("base_commit")},
            "parentSessionId": row.parent_session_id, "fromSnapshotId": row.from_snapshot_id,
        }
        if actor is not None:
            stats = actor.stats
            doc["stats"] = {"cpuPercent": round(stats.cpu_percent, 1), "rssBytes": stats.rss_bytes,
                            "processes": stats.processes}
            doc["eventCount"] = actor.buffer.last_seq
        return doc

    async def list(self, query: SessionQuery, tenant_id: str | None = None) -> dict[str, Any]:
        statuses = [s.strip() for s in query.status.split(",") if s.strip()] if query.status else []
        bad = [s for s in statuses if s not in Status.__members__.values()]
        if bad:
            raise invalid({"status": [f"unknown status {bad[0]!r}"]})
        agent_type = query.agent
        if agent_type:
            try:
                agent_type = self.harbor.catalog.get(agent_type).type
            except UnknownAgent:
                pass

        def select() -> tuple[int, list[m.Session]]:
            q = m.Session.select()
            if statuses:
                q = q.where(m.Session.status.in_(statuses))
            if agent_type:
                q = q.where(m.Session.agent_type == agent_type)
            if query.projectId:
                q = q.where(m.Session.project_id == query.projectId)
            tenant = tenant_id or query.tenantId
            if tenant:
                q = q.where(m.Session.tenant_id == tenant)
            total = q.count()
            rows = list(q.order_by(m.Session.created_at.desc(), m.Session.id.desc())
                        .paginate(query.page, query.perPage))
            return total, rows

        total, rows = await self.journal.read(select)
        return page([self.view(r) for r in rows], query.page, query.perPage, total)

    # -- control -----------------------------------------------------------------------------------

    async def control(self, session_id: str, command: Command) -> Any:
        """Ask a session's actor; map the outcomes to Problems (404, 409, 410)."""
        try:
            return await self.supervisor.ask(session_id, command)
        except (SessionNotFound, SessionFinished):
            row = await self.get_row(session_id)  # 404 when it never existed
            if isinstance(command, Prompt):
                raise Problem(410, f"session {session_id} has ended ({row.status}); it takes no more prompts",
                              kind="gone") from None
            raise conflict(f"session {session_id} has ended ({row.status})") from None
        except IllegalTransition as exc:
            verb = type(command).__name__.lower()
            raise conflict(f"cannot {verb} a session that is {exc.current}") from None
        except InputUnavailable as exc:
            raise conflict(str(exc)) from None
        except trio.TooSlowError:
            raise Problem(503, "the session did not answer in time; try again", kind="busy",
                          headers={"Retry-After": "1"}) from None

    async def prompt(self, session_id: str, text: str) -> dict[str, Any]:
        await self.control(session_id, Prompt(text))  # the actor logs it as a user line
        return {"sessionId": session_id, "accepted": True, "ts": iso_ts(time.time())}

    async def pause(self, session_id: str) -> Any:
        return await self.control(session_id, Pause())

    async def resume(self, session_id: str) -> Any:
        return await self.control(session_id, Resume())

    async def stop(self, session_id: str, reason: str | None) -> Any:
        return await self.control(session_id, Stop(reason))

    async def delete(self, session_id: str) -> None:
        """SIGKILL the group, remove the workspace and every record of the session."""
        row = await self.get_row(session_id)
        actor = self.supervisor.find(session_id)
        if actor is not None:
            try:
                await actor.ask(Kill("deleted"))
            except (SessionFinished, IllegalTransition):
                pass
            with trio.move_on_after(10):
                await actor.ended.wait()
        snapshots = self.harbor.snapshots
        async with snapshots.retired(session_id):  # no snapshot job runs on it from here on
            if row.workspace_path:
                await self.harbor.remove_workspace(session_id, Path(row.workspace_path))
            ids = await self.journal.read(lambda: [s.id for s in m.Snapshot.select(m.Snapshot.id).where(
                m.Snapshot.session_id == session_id)])
            await discard_mounts(self.settings.data_dir, ids)
            # The snapshot store (private repository, copies) goes with the session; refs a snapshot
            # left in a cached clone's repository are only names, pruned with it.
            try:
                await discard(snapshots.store_root(session_id))
            except OSError as exc:  # the session is deleted all the same; the files are only space
                log.warning("could not remove the snapshot store of session %s: %s", session_id, exc)

            def erase() -> None:
                for model in (m.Event, m.Snapshot, m.Moment, m.Workspace):
                    model.delete().where(model.session_id == session_id).execute()
                m.Session.delete().where(m.Session.id == session_id).execute()

            await self.journal.write(erase)

    # -- recovery ----------------------------------------------------------------------------------

    async def recover(self) -> int:
        """Settle the sessions a previous run left active: kill their leftovers, then mark them ended.

        A session whose terminal ``status`` event was committed before the crash (only its row was
        not yet written) keeps that end; every other one is marked ``failed`` ("daemon restarted")
        with a ``status`` event numbered after its last stored one. Either way its history holds
        exactly one terminal status, last.
        """
        active = [s.value for s in ACTIVE]
        rows = await self.journal.read(lambda: list(m.Session.select().where(m.Session.status.in_(active))))
        for row in rows:
            killed = await trio.to_thread.run_sync(kill_leftovers, row.pid, row.proc_create_time, row.id)
            if killed:
                log.warning("killed %d leftover process(es) of session %s", killed, row.id)
            ended = await self.journal.write(lambda row=row: self._settle_recovered(row, time.time()))
            log.warning("session %s was %s when the daemon stopped; now %s", row.id, row.status, ended)
        return len(rows)

    @staticmethod
    def _settle_recovered(row: m.Session, now: float) -> str:
        """In one transaction: end ``row``'s session as its history says, or as failed. Returns the status."""
        reason = "daemon restarted"
        last = (m.Event.select(m.Event.seq, m.Event.ts, m.Event.data)
                .where((m.Event.session_id == row.id) & (m.Event.kind == EventKind.STATUS.value))
                .order_by(m.Event.seq.desc()).first())
        said = json.loads(last.data) if last is not None else {}
        if said.get("status") in TERMINAL:
            status, ended_at = said["status"], last.ts
            error = said.get("reason") if status == Status.FAILED.value else None
        else:
            status, error, ended_at = Status.FAILED.value, reason, now
            top = m.Event.select(fn.MAX(m.Event.seq)).where(m.Event.session_id == row.id).scalar() or 0
            data = {"status": status, "previous": row.status, "reason": reason}
            m.Event.insert(session_id=row.id, seq=top + 1, kind=EventKind.STATUS.value, ts=now,
                           data=json.dumps(data)).execute()
        m.Session.update(status=status, error=error, ended_at=ended_at, updated_at=now).where(
            m.Session.id == row.id).execute()
        return status

    async def stop_all(self) -> None:
        await self.supervisor.stop_all("daemon stopping", timeout=min(self.settings.stop_grace_seconds, 3) + 1)


def page(items: list[Any], page_no: int, per_page: int, total: int) -> dict[str, Any]:
    """The superset list envelope (api-contract.md, "Conventions")."""
    pages = max(1, math.ceil(total / per_page)) if per_page else 1
    return {"items": items, "pagination": {"page": page_no, "perPage": per_page, "total": total,
                                           "totalPages": pages},
            "total": total, "nextPage": page_no + 1 if page_no < pages else None}
