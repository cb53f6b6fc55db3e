"""The :class:`SessionActor` with real agent processes and in-memory ports (recorder, event store).

What a user would notice: the statuses a session goes through and why it ended, that pause really
stops the agent and resume continues it, that prompts reach it, that stop/delete end it with the right
status whatever it was doing (queued, provisioning, running, paused), that a timeout counts running
time only, and that no process survives its actor, however the actor ends.
"""

from __future__ import annotations

import bisect
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest
import trio

from actors.events import Draft, Event, EventBuffer, EventKind
from actors.lifecycle import IllegalTransition, Status
from actors.process import find_marked
from actors.session import (
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
)

SID = "01TESTSESSIONACTOR0000000"
DEADLINE = 20


class MemoryStore:
    """In-memory :class:`~actors.events.EventStore`: commits every event at once."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def enqueue(self, event: Event, stored: Callable[[int], None]) -> None:
        self.events.append(event)
        stored(event.seq)

    async def read_events(self, session_id: str, after_seq: int, limit: int) -> list[Event]:
        await trio.lowlevel.checkpoint()
        i = bisect.bisect_right(self.events, after_seq, key=lambda e: e.seq)
        return self.events[i:i + limit]


class MemoryRecorder:
    """In-memory :class:`~actors.session.SessionRecorder`; tests wait on the statuses it records."""

    def __init__(self) -> None:
        self.fields: dict[str, dict[str, Any]] = {}
        self.statuses: dict[str, list[str]] = {}
        self._changed = trio.Event()

    async def update_session(self, session_id: str, fields: Mapping[str, Any]) -> None:
        await trio.lowlevel.checkpoint()
        self.fields.setdefault(session_id, {}).update(fields)
        if "status" in fields:
            self.statuses.setdefault(session_id, []).append(fields["status"])
        self._changed.set()
        self._changed = trio.Event()

    async def wait_status(self, session_id: str, *wanted: str) -> None:
        with trio.fail_after(DEADLINE):
            while self.fields.get(session_id, {}).get("status") not in wanted:
                await self._changed.wait()


class LineAdapter:
    """Each stdout line is a ``log`` event; stderr lines are kept as ``warn`` logs."""

    def stdout_line(self, line: bytes) -> list[Draft]:
        return [Draft(EventKind.LOG, {"level": "info", "message": line.decode()})]

    def stderr_line(self, line: bytes) -> list[Draft]:
        return [Draft(EventKind.LOG, {"level": "warn", "message": line.decode()})]

    def finish(self) -> list[Draft]:
        return []

    @property
    def idle(self) -> bool:
        return False


def plan(workspace: Path, argv: Sequence[str], **kwargs: Any) -> SessionPlan:
    async def provision() -> ProvisionedWorkspace:
        return ProvisionedWorkspace(workspace, {"base_commit": None})

    return SessionPlan(provision=provision, command=lambda ws: Launch(list(argv)), adapter=LineAdapter(),
                       **kwargs)


class Harness:
    def __init__(self, actor: SessionActor, recorder: MemoryRecorder, store: MemoryStore) -> None:
        self.actor = actor
        self.recorder = recorder
        self.store = store

    @property
    def fields(self) -> dict[str, Any]:
        return self.recorder.fields.get(self.actor.id, {})

    @property
    def statuses(self) -> list[str]:
        return [e.data["status"] for e in self.store.events if e.kind == EventKind.STATUS]

    def messages(self) -> list[str]:
        return [e.data["message"] for e in self.store.events if e.kind == EventKind.LOG]

    async def wait_status(self, *wanted: str) -> None:
        await self.recorder.wait_status(self.actor.id, *wanted)

    async def wait_message(self, text: str) -> None:
        async with self.actor.buffer.subscribe(0) as sub:
            with trio.fail_after(DEADLINE):
                async for batch in sub:
                    if any(e.kind == EventKind.LOG and e.data["message"] == text for e in batch):
                        return
        raise AssertionError(f"{text!r} never came; got {self.messages()}")


@asynccontextmanager
async def running(session_plan: SessionPlan, *, admission: Any = None) -> AsyncIterator[Harness]:
    store, recorder = MemoryStore(), MemoryRecorder()
    actor = SessionActor(SID, session_plan, EventBuffer(SID, store), recorder, admission=admission)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(actor.run)
        yield Harness(actor, recorder, store)
        with trio.fail_after(DEADLINE):
            await actor.ended.wait()


def members_of(pid: int) -> list[psutil.Process]:
    try:
        leader = psutil.Process(pid)
        return [leader, *leader.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def wait_members(pid: int, n: int, name: str | None = None) -> list[psutil.Process]:
    """The agent's tree once ``n`` members exist (``n - 1`` of them exec'd as ``name`` if given)."""

    def ready(found: list[psutil.Process]) -> bool:
        if len(found) < n:
            return False
        try:
            return name is None or sum(p.name() == name for p in found[1:]) >= n - 1
        except psutil.NoSuchProcess:
            return False

    with trio.fail_after(DEADLINE):
        # psutil notifies nothing: poll, under a deadline.
        while not ready(found := members_of(pid)):  # noqa: ASYNC110
            await trio.sleep(0.01)
    return found


async def test_an_agent_that_exits_0_completes_with_its_output_recorded(tmp_path: Path) -> None:
    async with running(plan(tmp_path, ["sh", "-c", "echo hello; pwd"])) as h:
        await h.wait_status("completed")
    assert h.statuses == ["provisioning", "running", "completed"]
    assert h.recorder.statuses[SID] == ["provisioning", "running", "completed"]
    assert h.messages() == ["hello", str(tmp_path)]  # it ran in its workspace
    assert h.fields["exit_code"] == 0
    assert h.fields["error"] is None
    assert h.fields["pid"] > 0
    assert h.fields["started_at"] <= h.fields["ended_at"]
    assert h.fields["workspace_path"] == str(tmp_path)
    assert [e.seq for e in h.store.events] == list(range(1, len(h.store.events) + 1))
    assert h.actor.buffer.closed


async def test_a_non_zero_exit_fails_with_the_code_and_the_last_stderr_line(tmp_path: Path) -> None:
    async with running(plan(tmp_path, ["sh", "-c", "echo first >&2; echo 'it broke' >&2; exit 3"])) as h:
        await h.wait_status("failed")
    assert h.fields["exit_code"] == 3
    assert h.fields["error"] == "exited with code 3: it broke"
    assert h.fields["stderr_tail"] == ["first", "it broke"]


async def test_pause_stops_every_member_and_resume_continues_them(tmp_path: Path) -> None:
    argv = ["sh", "-c", "yes > /dev/null & yes > /dev/null; wait"]
    async with running(plan(tmp_path, argv)) as h:
        await h.wait_status("running")
        assert h.actor.process is not None
        members = await wait_members(h.actor.process.pid, 3, "yes")
        assert await h.actor.ask(Pause()) == Status.PAUSED
        assert {p.status() for p in members} == {psutil.STATUS_STOPPED}
        for command in (Pause(), Prompt("x")):  # already paused; a paused agent reads nothing
            with pytest.raises(IllegalTransition):
                await h.actor.ask(command)
        assert await h.actor.ask(Resume()) == Status.RUNNING
        assert psutil.STATUS_STOPPED not in {p.status() for p in members}
        with pytest.raises(IllegalTransition):
            await h.actor.ask(Resume())
        await h.actor.ask(Stop("enough"))
        await h.wait_status("stopped")
    assert h.statuses == ["provisioning", "running", "pausing", "paused", "resuming", "running", "stopping",
                          "stopped"]
    assert not any(alive(p.pid) for p in members)


async def test_pause_holds_a_shell_that_keeps_spawning_commands(tmp_path: Path) -> None:
    """A shell parked in vfork() for a child stopped before exec never reads ``stopped``; pause must
    still be confirmed (and the shell must not run on)."""
    async with running(plan(tmp_path, ["sh", "-c", "while :; do /bin/true; done"])) as h:
        await h.wait_status("running")
        assert h.actor.process is not None
        leader = psutil.Process(h.actor.process.pid)
        for _ in range(20):
            assert await h.actor.ask(Pause()) == Status.PAUSED
            before = leader.cpu_times()
            assert leader.status() in (psutil.STATUS_STOPPED, psutil.STATUS_DISK_SLEEP)
            assert await h.actor.ask(Resume()) == Status.RUNNING
        assert leader.cpu_times() >= before
        await h.actor.ask(Kill(None))


async def test_a_prompt_reaches_the_agent_stdin(tmp_path: Path) -> None:
    async with running(plan(tmp_path, ["sh", "-c", 'read line; echo "got $line"'])) as h:
        await h.wait_status("running")
        await h.actor.ask(Prompt("do it"))
        await h.wait_status("completed")
    assert h.messages() == ["do it", "got do it"]  # the prompt, logged as the user's line, then the answer
    assert h.store.events[-3].data["role"] == "user"


async def test_stop_of_a_paused_agent_that_handles_sigterm_ends_stopped_at_once(tmp_path: Path) -> None:
    script = ("import signal, sys, time\n"
              "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
              "print('ready', flush=True)\n"
              "while True: time.sleep(1)\n")
    async with running(plan(tmp_path, [sys.executable, "-c", script], stop_grace=30)) as h:
        await h.wait_message("ready")
        await h.actor.ask(Pause())
        started = trio.current_time()
        assert await h.actor.ask(Stop(None)) == Status.STOPPING
        await h.wait_status("stopped")
        took = trio.current_time() - started
    assert took < 2, f"stop took {took:.2f}s: it waited for the grace period"
    assert h.fields["error"] is None
    assert h.fields["exit_code"] == 0


async def test_finished_sessions_take_no_commands(tmp_path: Path) -> None:
    async with running(plan(tmp_path, ["true"])) as h:
        await h.wait_status("completed")
    for command in (Pause(), Resume(), Stop(None), Kill(None), Prompt("x")):
        with pytest.raises(SessionFinished) as info:
            await h.actor.ask(command)
        assert info.value.status == Status.COMPLETED


async def test_delete_of_a_running_agent_kills_it_and_ends_cancelled(tmp_path: Path) -> None:
    async with running(plan(tmp_path, ["sh", "-c", "sleep 300 & sleep 300; wait"])) as h:
        await h.wait_status("running")
        assert h.actor.process is not None
        members = await wait_members(h.actor.process.pid, 3)
        assert await h.actor.ask(Kill("deleted")) == Status.CANCELLED
        await h.wait_status("cancelled")
    assert not any(alive(p.pid) for p in members)
    assert h.statuses[-1] == "cancelled"
    assert h.fields["error"] is None


async def test_stop_while_queued_never_starts_the_agent(tmp_path: Path) -> None:
    never = trio.Event()
    async with running(plan(tmp_path, ["touch", str(tmp_path / "ran")]), admission=never.wait) as h:
        await trio.testing.wait_all_tasks_blocked()
        assert h.actor.status == Status.QUEUED
        await h.actor.ask(Stop("not needed"))
        await h.wait_status("stopped")
    assert h.statuses == ["stopped"]
    assert not (tmp_path / "ran").exists()
    assert h.actor.process is None


async def test_delete_while_provisioning_cancels_without_starting(tmp_path: Path) -> None:
    entered = trio.Event()

    async def slow_provision() -> ProvisionedWorkspace:
        entered.set()
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    p = plan(tmp_path, ["touch", str(tmp_path / "ran")])
    p.provision = slow_provision
    async with running(p) as h:
        with trio.fail_after(DEADLINE):
            await entered.wait()
        await h.actor.ask(Kill("deleted"))
        await h.wait_status("cancelled")
    assert h.statuses == ["provisioning", "cancelled"]
    assert not (tmp_path / "ran").exists()


async def test_a_provisioning_error_fails_the_session_with_its_message(tmp_path: Path) -> None:
    async def broken() -> ProvisionedWorkspace:
        raise OSError("clone failed: no such repository")

    p = plan(tmp_path, ["true"])
    p.provision = broken
    async with running(p) as h:
        await h.wait_status("failed")
    assert h.fields["error"] == "provisioning failed: clone failed: no such repository"


async def test_a_program_that_cannot_start_fails_the_session(tmp_path: Path) -> None:
    async with running(plan(tmp_path, [str(tmp_path / "no-such-program")])) as h:
        await h.wait_status("failed")
    assert h.fields["error"].startswith("cannot start the agent:")
    assert "no-such-program" in h.fields["error"]


async def test_an_exception_in_the_plan_fails_the_session_as_an_internal_error(tmp_path: Path) -> None:
    def explode(workspace: Path) -> Launch:
        raise RuntimeError("launcher bug")

    p = plan(tmp_path, ["true"])
    p.command = explode
    async with running(p) as h:
        await h.wait_status("failed")
    assert h.fields["error"] == "internal error: launcher bug"


async def test_the_timeout_counts_running_time_only(tmp_path: Path) -> None:
    async with running(plan(tmp_path, ["sleep", "300"], timeout=0.5)) as h:
        await h.wait_status("running")
        await h.actor.ask(Pause())
        await trio.sleep(1.0)  # a measurement window: twice the limit, paused
        assert h.actor.status == Status.PAUSED
        await h.actor.ask(Resume())
        await h.wait_status("failed")
    assert h.fields["error"] == "timed out after 0.5s of running time"
    assert h.statuses[-3:] == ["running", "stopping", "failed"]


async def test_no_process_survives_a_cancelled_actor(tmp_path: Path) -> None:
    """Daemon shutdown: the actor's task is cancelled; its group and its escapee are killed."""
    script = ["sh", "-c", "sleep 300 & setsid sh -c 'echo escaped; exec sleep 300' & wait"]
    store, recorder = MemoryStore(), MemoryRecorder()
    actor = SessionActor(SID, plan(tmp_path, script), EventBuffer(SID, store), recorder)
    h = Harness(actor, recorder, store)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(actor.run)
        await h.wait_message("escaped")
        assert len(find_marked(SID)) >= 3
        nursery.cancel_scope.cancel()
    assert actor.ended.is_set()
    assert find_marked(SID) == []
    assert actor.status == Status.FAILED
    assert recorder.fields[SID]["error"] == "the session's actor ended unexpectedly"
