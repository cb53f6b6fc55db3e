"""The :class:`SessionActor`: one session, one trio task, one owner of its agent process.

Nobody else signals its process, writes its buffer or changes its status: everything reaches it
through :meth:`SessionActor.ask`, is checked against the lifecycle table, acted on, recorded and
published as a ``status`` event. Inside, a nursery runs the mailbox, the stdout/stderr pumps and the
timeout clock beside the wait for the agent's exit. However the actor ends (exit, exception,
cancellation, daemon shutdown) a shielded ``finally`` kills the whole process group and records
the end: no process outlives its actor.

Its commands, ports and plan live in :mod:`actors.session_plan` (re-exported here); its record is
written through :mod:`actors.records`.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import trio

from actors.events import Draft, EventBuffer, EventKind
from actors.lifecycle import ACTIVE, SIGNALLABLE, TERMINAL, IllegalTransition, Status, transition
from actors.process import AgentProcess, ExitInfo, PauseFailed, ProcessStats, iter_lines
from actors.records import RecordQueue
from actors.session_plan import (
    Command,
    InputUnavailable,
    Kill,
    Launch,
    OutputAdapter,
    Pause,
    Prompt,
    ProvisionedWorkspace,
    Resume,
    SessionFinished,
    SessionPlan,
    SessionRecorder,
    Stop,
)

log = logging.getLogger(__name__)

#: Commands waiting for the actor. Small: callers wait for their reply, so more than a few queued
#: commands means a client is hammering one session; they wait here instead of piling up tasks.
MAILBOX_SIZE = 16


#: After the agent exits, how long its pipes may stay open (held by a surviving grandchild) before
#: the pumps are abandoned: the exit is what matters, trailing output is best effort.
DRAIN_TIMEOUT = 1.0


_BOUNDARY_KINDS = frozenset({EventKind.TOOL_RESULT, EventKind.FILE_EDIT})


class SessionActor:
    """One session. The supervisor runs :meth:`run`; everyone else uses :meth:`ask`."""

    def __init__(self, session_id: str, plan: SessionPlan, buffer: EventBuffer, recorder: SessionRecorder,
                 *, admission: Callable[[], Awaitable[Any]] | None = None,
                 status: Status = Status.QUEUED) -> None:
        self.id = session_id
        self.plan = plan
        self.buffer = buffer
        self.recorder = recorder
        self.status = status
        self.process: AgentProcess | None = None
        self.workspace: Path | None = None
        self.stats = ProcessStats(0.0, 0, 0)
        self.ended = trio.Event()
        self._admission = admission
        self._send, self._mailbox = trio.open_memory_channel[tuple[Command, "_Reply"]](MAILBOX_SIZE)
        self._ending: Status | None = None  # the terminal status a command asked for
        self._end_reason: str | None = None
        self._timed_out = False
        self._exit_info: ExitInfo | None = None
        # The timeout counts running time only: a flag plus an event replaced on every change.
        self._clock_running = False
        self._clock_changed = trio.Event()
        # Waiting for admission or provisioning: a stop or delete cancels this scope.
        self._interruptible: trio.CancelScope | None = None
        self._input_closed = False
        self._nursery: trio.Nursery | None = None
        self._moving = trio.Lock()  # one status move at a time (see _move)
        self._records = RecordQueue(session_id, recorder)
        #: Every field this actor has recorded of its session, written or still on its way: what a view
        #: of the session overlays on the stored row.
        self.record: dict[str, Any] = self._records.fields
        self._stopped_all: trio.Event | None = None  # set once a stop has killed and swept everything

    # -- asking ----------------------------------------------------------------------------------

    async def ask(self, command: Command, *, timeout: float = 10.0) -> Any:
        """Send ``command`` and wait for the reply.

        Raises:
            IllegalTransition: the command is not possible in the current status (409).
            SessionFinished: the session has ended.
            trio.TooSlowError: no reply within ``timeout``.
        """
        if self.ended.is_set():
            raise SessionFinished(self.status)
        reply = _Reply()
        with trio.fail_after(timeout):
            try:
                await self._send.send((command, reply))
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                raise SessionFinished(self.status) from None
            return await reply.wait()

    # -- the actor's life ----------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Live the session to its end. Never raises for the agent's failures (they end the session
        ``failed``); raises only if recording itself fails."""
        task_status.started()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._serve_mailbox)
                nursery.start_soon(self._records.run)
                await self._live(nursery)
                nursery.cancel_scope.cancel()
        except Exception as exc:
            log.exception("session %s failed", self.id)
            await self._finish(Status.FAILED, f"internal error: {describe(exc)}")
        finally:
            with trio.CancelScope(shield=True):
                await self._cleanup()

    async def _live(self, nursery: trio.Nursery) -> None:
        if self._admission is not None:
            with trio.CancelScope() as self._interruptible:
                await self._admission()
            if self._ending is not None:  # stopped or deleted while queued
                await self._finish(self._ending, self._end_reason)
                return
        await self._move(Status.PROVISIONING)
        workspace = None
        with trio.CancelScope() as self._interruptible:
            try:
                workspace = await self.plan.provision()
            except Exception as exc:
                await self._finish(Status.FAILED, f"provisioning failed: {exc}")
                return
        self._interruptible = None
        if workspace is None or self._ending is not None:
            await self._finish(self._ending or Status.CANCELLED, self._end_reason)
            return
        self.workspace = workspace.path
        # Written while the agent starts; waited for before it is announced running (below), so whoever
        # hears "running" finds the workspace recorded (the file and diff views read it from the row).
        await self._records.add({**workspace.fields, "workspace_path": str(workspace.path)}, wait=False)
        launch = self.plan.command(workspace.path)
        env = {**(self.plan.base_env if self.plan.base_env is not None else os.environ), **launch.env}
        try:
            self.process = await AgentProcess.spawn(launch.argv, cwd=workspace.path, env=env, marker=self.id)
        except OSError as exc:
            await self._after_start(workspace)
            await self._finish(Status.FAILED, f"cannot start the agent: {exc}")
            return
        await self._prepare_input(launch)
        await self._records.flush()
        # The process (recovery finds it by pid, and by marker if the daemon dies first) and the status.
        await self._move(Status.RUNNING, fields={
            "pid": self.process.pid, "proc_create_time": self.process.create_time, "started_at": time.time()})
        await self._after_start(workspace)
        self._set_clock(running=True)
        exit_info = await self._supervise_process(nursery)
        if self._stopped_all is not None:
            # The leader is gone, but the stop may still be sweeping members that left the group:
            # "stopped" must mean that nothing of the agent is left.
            await self._stopped_all.wait()
        await self._finish(*self._outcome(exit_info))

    async def _after_start(self, workspace: ProvisionedWorkspace) -> None:
        if workspace.after_start is not None:
            try:
                await workspace.after_start()
            except Exception:
                log.exception("session %s: bookkeeping after the start failed", self.id)

    async def _supervise_process(self, nursery: trio.Nursery) -> ExitInfo:
        process = self.process
        assert process is not None
        async with trio.open_nursery() as pumps:
            pumps.start_soon(self._pump, process.stdout, self.plan.adapter.stdout_line, False)
            pumps.start_soon(self._pump, process.stderr, self.plan.adapter.stderr_line, True)
            if self.plan.timeout:
                nursery.start_soon(self._timeout_clock, self.plan.timeout)
            exit_info = await process.wait()
            pumps.cancel_scope.deadline = trio.current_time() + DRAIN_TIMEOUT
        # The exit usually wins the race against the stderr pump: the tail read at exit may miss the
        # agent's last words, which are exactly the ones that say why it failed. Take it once drained.
        exit_info = replace(exit_info, stderr_tail=process.stderr_tail)
        drafts = self.plan.adapter.finish()
        if drafts:
            await self.buffer.append_many(drafts)
        return exit_info

    async def _prepare_input(self, launch: Launch) -> None:
        process = self.process
        assert process is not None
        try:
            if launch.stdin_data:
                with trio.fail_after(5):
                    await process.write_input(launch.stdin_data)
            if not launch.keep_stdin_open:
                await self._close_input()
        except (trio.BrokenResourceError, trio.TooSlowError) as exc:
            log.warning("session %s: could not write the agent's first input: %s", self.id, exc)

    async def _close_input(self) -> None:
        if self.process is not None and not self._input_closed:
            self._input_closed = True
            with trio.move_on_after(1):
                await self.process.stdin.aclose()

    async def _pump(self, stream: trio.abc.ReceiveStream, parse: Callable[[bytes], list[Draft]],
                    is_stderr: bool) -> None:
        process = self.process
        assert process is not None
        boundary = self.plan.on_boundary
        async for line in iter_lines(stream):
            if is_stderr:
                process.note_stderr(line.decode("utf-8", "replace"))
            drafts = parse(line)
            if not drafts:
                continue
            # append_many waits when the journal is behind: the pump stops reading, the pipe fills,
            # and the agent blocks on its own write. That is the backpressure; nothing is dropped.
            await self.buffer.append_many(drafts)
            if boundary is not None and any(d.kind in _BOUNDARY_KINDS for d in drafts):
                boundary("tool-boundary")
            # An agent that waits on stdin after finishing its turn (Claude Code's stream-json input)
            # exits only when stdin closes: close it once its adapter says the work is done.
            if not is_stderr and not self._input_closed and self.plan.adapter.idle:
                await self._close_input()

    def _set_clock(self, *, running: bool) -> None:
        self._clock_running = running
        self._clock_changed.set()
        self._clock_changed = trio.Event()

    async def _timeout_clock(self, limit: float) -> None:
        remaining = limit
        while remaining > 0:
            if not self._clock_running:
                await self._clock_changed.wait()
                continue
            started = trio.current_time()
            with trio.move_on_after(remaining):
                await self._clock_changed.wait()
            remaining -= trio.current_time() - started
        self._timed_out = True
        self._end_reason = f"timed out after {limit:g}s of running time"
        await self._begin_stop(None)

    def _outcome(self, exit_info: ExitInfo) -> tuple[Status, str | None]:
        self._exit_info = exit_info
        if self._ending is not None:
            return self._ending, self._end_reason
        if self._timed_out:
            return Status.FAILED, self._end_reason
        if exit_info.returncode == 0:
            return Status.COMPLETED, None
        if exit_info.signal is not None:
            reason = f"killed by signal {exit_info.signal}"
        else:
            reason = f"exited with code {exit_info.returncode}"
        if exit_info.stderr_tail:
            reason += ": " + exit_info.stderr_tail[-1][:500]
        return Status.FAILED, reason

    # -- the mailbox ---------------------------------------------------------------------------

    async def _serve_mailbox(self) -> None:
        async for command, reply in self._mailbox:
            try:
                reply.set(await self._handle(command))
            except Exception as exc:
                reply.fail(exc)

    async def _handle(self, command: Command) -> Any:
        if self.status in TERMINAL:
            raise SessionFinished(self.status)
        match command:
            case Pause():
                return await self._pause()
            case Resume():
                return await self._resume()
            case Stop(reason):
                return await self._begin_stop(reason or "stop requested")
            case Kill(reason):
                return await self._kill(reason or "deleted")
            case Prompt(text):
                if self.status not in (Status.RUNNING, Status.RESUMING) or self.process is None:
                    raise IllegalTransition(self.status, Status.RUNNING)
                if self._input_closed:
                    raise InputUnavailable("this agent is not reading prompts now (its input is closed)")
                try:
                    with trio.fail_after(5):
                        await self.process.write_input(self.plan.encode_prompt(text))
                except trio.BrokenResourceError:
                    raise InputUnavailable("the agent stopped reading its input") from None
                # Appended before the next checkpoint, so before the output pumps can append the
                # agent's answer: the session's events show the prompt first, then the reaction.
                await self.buffer.append(EventKind.LOG, {"level": "info", "message": text, "role": "user",
                                                         "tool_execution_id": None, "source": "api"})
                return None

    async def _pause(self) -> Status:
        if self.status not in SIGNALLABLE or self.process is None:
            raise IllegalTransition(self.status, Status.PAUSING)
        if self.status in (Status.PAUSED, Status.PAUSING):
            raise IllegalTransition(self.status, Status.PAUSING)
        # Stopped first, recorded second: the agent stops as soon as the command arrives.
        self.process.signal_group(signal.SIGSTOP)
        try:
            await self._move(Status.PAUSING)
        except IllegalTransition:  # it ended meanwhile
            self.process.signal_group(signal.SIGCONT)
            raise
        self._set_clock(running=False)
        try:
            await self.process.pause()
        except PauseFailed:
            self.process.resume()
            self._set_clock(running=True)
            if self.status == Status.PAUSING:
                await self._move(Status.RUNNING, "pause could not be confirmed")
            raise
        if self.plan.on_pause:
            self.plan.on_pause()
        if self.status == Status.PAUSING:
            await self._move(Status.PAUSED)
        return self.status

    async def _resume(self) -> Status:
        if self.status != Status.PAUSED or self.process is None:
            raise IllegalTransition(self.status, Status.RESUMING)
        await self._move(Status.RESUMING)
        self.process.resume()
        if self.plan.on_resume:
            self.plan.on_resume()
        await self._move(Status.RUNNING)
        self._set_clock(running=True)
        return self.status

    async def _begin_stop(self, reason: str | None) -> Status:
        if self.status == Status.STOPPING or self._ending is not None:
            return self.status
        if reason is not None:
            self._ending, self._end_reason = Status.STOPPED, reason
        if self._interruptible is not None:  # queued or provisioning: nothing runs yet
            self._interruptible.cancel()
            return self.status
        await self._move(Status.STOPPING, reason or self._end_reason)
        if self.process is not None and self._nursery is not None:
            # The stop runs beside the mailbox so the reply (202) does not wait out the grace period.
            self._stopped_all = trio.Event()
            self._nursery.start_soon(self._stop_process, self.process, self._stopped_all)
        return self.status

    async def _stop_process(self, process: AgentProcess, done: trio.Event) -> None:
        try:
            await process.stop(self.plan.stop_grace)
        finally:
            done.set()

    async def _kill(self, reason: str) -> Status:
        self._ending, self._end_reason = Status.CANCELLED, reason
        if self._interruptible is not None:
            self._interruptible.cancel()
        elif self.process is not None:
            await self.process.kill()
        return Status.CANCELLED

    # -- status ------------------------------------------------------------------------------------

    async def _move(self, target: Status, reason: str | None = None, fields: Mapping[str, Any] | None = None
                    ) -> None:
        """Apply one transition: check the table, publish the ``status`` event, record it.

        The event is appended first: the recorder's write commits it on its way (the journal flushes
        pending events before a write), so readers see it without waiting for a group commit. Until
        the row is written, views of the session take the fields from :attr:`record` (a finished
        session never reads as one without its end time and exit code).
        Moves are serialised so that events, records and the table agree on one order even when the
        mailbox and the agent's exit move the session at the same moment.
        """
        async with self._moving:
            change = transition(self.status, target, reason)
            self.status = target
            data: dict[str, Any] = {"status": str(target), "previous": str(change.previous)}
            if reason:
                data["reason"] = reason
            await self.buffer.append(EventKind.STATUS, data)
            # Only the end must be durable before the actor goes on; the statuses on the way are
            # written behind (readers have the live status from the actor meanwhile).
            await self._records.add({"status": str(target), "updated_at": time.time(), **(fields or {})},
                                    wait=target in TERMINAL)

    async def _finish(self, status: Status, reason: str | None) -> None:
        if self.status in TERMINAL:
            return
        exit_info = self._exit_info
        fields: dict[str, Any] = {"ended_at": time.time(), "error": reason if status == Status.FAILED else None}
        if exit_info is not None:
            fields.update(exit_code=exit_info.returncode, exit_signal=exit_info.signal,
                          stderr_tail=exit_info.stderr_tail)
        if status == Status.STOPPED and self.status not in (Status.STOPPING, Status.QUEUED):
            await self._move(Status.STOPPING, reason)
        await self._move(status, reason, fields)

    async def _cleanup(self) -> None:
        if self.process is not None:
            # Always, even after a clean exit: kill() also sweeps descendants that left the group.
            with trio.move_on_after(5):
                await self.process.kill()
        if self.status not in TERMINAL:
            reason = self._end_reason or "the session's actor ended unexpectedly"
            try:
                with trio.move_on_after(5):
                    await self._finish(Status.FAILED if self._ending is None else self._ending, reason)
            except Exception:  # the recorder is failing: the rest of the cleanup must still happen
                log.exception("session %s: could not record its end", self.id)
        self.buffer.close()
        self._send.close()
        while True:  # commands that arrived too late get their answer instead of a time-out
            try:
                _, reply = self._mailbox.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            reply.fail(SessionFinished(self.status))
        self.ended.set()


def describe(exc: BaseException) -> str:
    """A one-line account of ``exc`` for a person: the single error inside nested exception groups
    (trio wraps what escapes a nursery), its message, or its type when it has none."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return str(exc) or type(exc).__name__


class _Reply:
    """A one-shot reply slot for :meth:`SessionActor.ask`."""

    def __init__(self) -> None:
        self._done = trio.Event()
        self._value: Any = None
        self._error: BaseException | None = None

    def set(self, value: Any) -> None:
        self._value = value
        self._done.set()

    def fail(self, error: BaseException) -> None:
        self._error = error
        self._done.set()

    async def wait(self) -> Any:
        await self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value


__all__ = [
    "ACTIVE",
    "Command",
    "InputUnavailable",
    "Kill",
    "Launch",
    "OutputAdapter",
    "Pause",
    "Prompt",
    "ProvisionedWorkspace",
    "Resume",
    "SessionActor",
    "SessionFinished",
    "SessionPlan",
    "SessionRecorder",
    "Stop",
    "describe",
]
