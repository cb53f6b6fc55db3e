"""The :class:`SessionSupervisor` over real :class:`SessionActor` s and real agent processes.

The recorder and event store are in-memory ports (the journal is tested elsewhere); everything else
is real: processes, signals, admission. Users notice: one broken session never takes others down,
sessions run in the order they were submitted and never more than the limit at once, and a shutdown
leaves nothing running.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest
import trio

from actors.events import EventBuffer
from actors.lifecycle import Status
from actors.session import Launch, Prompt, SessionActor, SessionPlan
from supervisors.sessions import SessionNotFound, SessionSupervisor
from tests.actors.test_session_actor import MemoryRecorder, MemoryStore, plan

DEADLINE = 20
# Blocks until a line arrives on stdin (an injected prompt), then exits 0: released by the test.
WAIT_FOR_LINE = ["sh", "-c", "read line; echo released"]


class OrderedRecorder(MemoryRecorder):
    """Also keeps every status write of every session in one ordered log."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[str, str]] = []
        #: session id → the status from whose write on every write of that session raises.
        self.break_at: dict[str, str] = {}
        self._broken: set[str] = set()

    async def update_session(self, session_id: str, fields: Mapping[str, Any]) -> None:
        if "status" in fields and self.break_at.get(session_id) == fields["status"]:
            self._broken.add(session_id)
        if session_id in self._broken:
            raise OSError("disk full")
        if "status" in fields:
            self.log.append((session_id, fields["status"]))
        await super().update_session(session_id, fields)

    def running_at_once(self) -> int:
        """The largest number of sessions admitted (past queued) and not yet ended, at any time."""
        admitted: set[str] = set()
        most = 0
        for sid, status in self.log:
            if status in ("stopped", "completed", "failed", "cancelled"):
                admitted.discard(sid)
            elif status != "queued":
                admitted.add(sid)
            most = max(most, len(admitted))
        return most

    def first(self, status: str) -> list[str]:
        return [sid for sid, s in self.log if s == status]


class Fleet:
    def __init__(self, supervisor: SessionSupervisor, recorder: OrderedRecorder, tmp_path: Path) -> None:
        self.supervisor = supervisor
        self.recorder = recorder
        self.store = MemoryStore()
        self.tmp_path = tmp_path
        self.crashes: list[tuple[str, BaseException]] = []

    def start(self, session_id: str, session_plan: SessionPlan | None = None) -> SessionActor:
        workspace = self.tmp_path / session_id
        workspace.mkdir()
        p = session_plan or plan(workspace, WAIT_FOR_LINE)
        buffer = EventBuffer(session_id, self.store)

        def factory(admission: Callable[[], Any]) -> SessionActor:
            return SessionActor(session_id, p, buffer, self.recorder, admission=admission)

        return self.supervisor.start(factory)

    async def wait(self, session_id: str, *statuses: str) -> None:
        await self.recorder.wait_status(session_id, *statuses)

    async def release(self, session_id: str) -> None:
        await self.supervisor.ask(session_id, Prompt("go"))


@asynccontextmanager
async def fleet(tmp_path: Path, limit: int = 10) -> AsyncIterator[Fleet]:
    recorder = OrderedRecorder()
    crashes: list[tuple[str, BaseException]] = []

    async def on_crash(session_id: str, error: BaseException) -> None:
        crashes.append((session_id, error))

    supervisor = SessionSupervisor(limit, on_crash=on_crash)
    f = Fleet(supervisor, recorder, tmp_path)
    f.crashes = crashes
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        yield f
        await supervisor.stop_all("test over", timeout=DEADLINE)
        nursery.cancel_scope.cancel()


async def test_an_exception_inside_one_actor_fails_that_session_only(tmp_path: Path) -> None:
    async with fleet(tmp_path) as f:
        good = [f.start(f"good{i}") for i in range(3)]
        bad_plan = plan(tmp_path, WAIT_FOR_LINE)

        def explode(workspace: Path) -> Launch:
            raise RuntimeError("the launcher is broken")

        bad_plan.command = explode
        bad = f.start("bad", bad_plan)
        for actor in good:
            await f.wait(actor.id, "running")
        await f.wait("bad", "failed")
        assert f.recorder.fields["bad"]["error"] == "internal error: the launcher is broken"
        # The others noticed nothing: still running, and they finish their work normally.
        assert [a.status for a in good] == [Status.RUNNING] * 3
        for actor in good:
            await f.release(actor.id)
        for actor in good:
            await f.wait(actor.id, "completed")
        assert bad.ended.is_set()
        assert f.supervisor.find("bad") is None
        with pytest.raises(SessionNotFound):
            await f.supervisor.ask("bad", Prompt("x"))


async def test_an_actor_that_raises_is_contained_recorded_and_leaves_no_process(tmp_path: Path) -> None:
    async with fleet(tmp_path, limit=2) as f:
        f.recorder.break_at["bad"] = "running"  # the store fails for good once the agent has started
        bad = f.start("bad")
        sibling = f.start("sibling")
        queued = f.start("queued")  # waits for the slot the crashed actor must give back
        await f.wait("sibling", "running")
        with trio.fail_after(DEADLINE):
            await bad.ended.wait()
        assert [sid for sid, _ in f.crashes] == ["bad"]
        assert "disk full" in str(f.crashes[0][1])
        assert bad.process is not None
        assert not psutil.pid_exists(bad.process.pid)
        await f.wait("queued", "running")  # the crashed actor's admission slot was released
        assert sibling.status == Status.RUNNING
        await f.release("sibling")
        await f.release("queued")
        await f.wait("sibling", "completed")
        await f.wait(queued.id, "completed")


async def test_at_most_the_limit_run_and_they_are_admitted_in_submission_order(tmp_path: Path) -> None:
    async with fleet(tmp_path, limit=2) as f:
        ids = [f"s{i}" for i in range(5)]
        for sid in ids:
            f.start(sid)
        await f.wait("s0", "running")
        await f.wait("s1", "running")
        await trio.testing.wait_all_tasks_blocked()
        assert [f.supervisor.get(s).status for s in ids[2:]] == [Status.QUEUED] * 3
        assert f.supervisor.admission.queued == 3
        # Release out of order: whichever slot frees, the oldest queued session takes it.
        await f.release("s1")
        await f.wait("s2", "running")
        assert f.supervisor.get("s3").status == Status.QUEUED
        await f.release("s0")
        await f.wait("s3", "running")
        for sid in ("s3", "s2"):
            await f.release(sid)
        await f.wait("s4", "running")
        await f.release("s4")
        for sid in ids:
            await f.wait(sid, "completed")
        started = f.recorder.first("provisioning")
        # s0 and s1 were admitted at once and start side by side; every later one waited its turn.
        assert set(started[:2]) == {"s0", "s1"}
        assert started[2:] == ids[2:]
        assert f.recorder.running_at_once() == 2


async def test_stop_all_stops_running_and_queued_sessions(tmp_path: Path) -> None:
    async with fleet(tmp_path, limit=1) as f:
        running = f.start("running")
        queued = f.start("queued")
        await f.wait("running", "running")
        assert running.process is not None
        pid = running.process.pid
        with trio.fail_after(DEADLINE):
            await f.supervisor.stop_all("daemon stopping", timeout=DEADLINE)
        assert (running.status, queued.status) == (Status.STOPPED, Status.STOPPED)
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        assert len(f.supervisor) == 0
        assert f.recorder.first("provisioning") == ["running"]  # the queued one never started
