"""The one seam between a session and the operating system: spawn, signal, pause, stop, sweep, sample.

An agent runs in its own session and process group (``pgid == pid``) with ``AH_SESSION_ID=<marker>``
in its environment. Signals go to the group; members that left it (``setsid``) are found by ancestry
while their parent lives and by the marker afterwards, as are the leftovers of a crashed daemon
(:func:`kill_leftovers`). Stops are observed with psutil, exits with trio's pidfd wait: never
``os.waitpid(pid, WUNTRACED)``, which can reap the leader so that trio then reports exit 0.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import psutil
import trio

from actors import proctable
from actors.proctable import Proc, ProcTable

_T = TypeVar("_T")

MARKER_ENV = "AH_SESSION_ID"
_STDERR_TAIL = 20
# A /proc scan (uids + environ of every process) takes ~10 ms; two seconds means the host is drowning.
_SCAN_DEADLINE = 2.0
# SIGKILL is reaped within milliseconds; only a process stuck in the kernel (D state) takes longer.
_REAP_DEADLINE = 5.0
_PAUSE_POLL = 0.0005
# An escapee may fork while we sweep; a few rounds catch its children, which inherit the marker.
_SWEEP_ROUNDS = 3
# create_time is boot time (read from the wall clock) plus ticks: an NTP step between two daemon runs
# shifts it. A pid reused within a second of the original start is not a real risk.
_CREATE_TIME_SLACK = 1.0
_GONE = frozenset({psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD})
_STOPPED = frozenset({psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP}) | _GONE


@dataclass(frozen=True, slots=True)
class ExitInfo:
    """How the agent ended."""

    returncode: int  # as trio reports (negative = killed by signal)
    signal: int | None  # the signal number if killed by one, else None
    stderr_tail: list[str]  # last lines noted with note_stderr()


@dataclass(frozen=True, slots=True)
class ProcessStats:
    """One sample of the agent's whole process tree."""

    cpu_percent: float  # whole tree, since the previous call (first call 0.0); 100 = one core
    rss_bytes: int  # whole tree
    processes: int  # members alive


class PauseFailed(Exception):
    """Some member of the agent's tree did not reach the stopped state in time."""


class InputClosed(trio.BrokenResourceError):
    """The agent's stdin is closed (the agent exited, closed it, or it was closed here)."""


class AgentProcess:
    """A running agent: its process group and pipes. Build with :meth:`spawn`; one owner signals it."""

    def __init__(self, proc: trio.Process, leader: psutil.Process, marker: str) -> None:
        assert proc.stdin is not None
        assert proc.stdout is not None
        assert proc.stderr is not None
        self._proc = proc
        self._leader = leader
        self.marker = marker
        self.pid: int = proc.pid
        self.pgid: int = proc.pid  # start_new_session=True makes the leader its group's leader
        self.create_time: float = leader.create_time()
        stat = proctable.read_stat(proc.pid)  # unreaped until we wait: always readable here
        self._start_ticks: int | None = stat.start if stat is not None else None
        self.stdin: trio.abc.SendStream = proc.stdin
        self.stdout: trio.abc.ReceiveStream = proc.stdout
        self.stderr: trio.abc.ReceiveStream = proc.stderr
        self._stderr_tail: deque[str] = deque(maxlen=_STDERR_TAIL)
        self._stdin_lock = trio.Lock()
        self._stopped_outside: list[psutil.Process] = []
        self._cpu_prev: dict[tuple[int, int], float] | None = None
        self._cpu_at = 0.0

    @classmethod
    async def spawn(
        cls, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], marker: str
    ) -> AgentProcess:
        """Start ``argv`` as the leader of a new session and process group, with piped stdio.

        The child's environment is exactly ``env`` plus ``AH_SESSION_ID=<marker>``.

        Raises:
            ValueError: ``marker`` is empty.
            OSError: the exec failed (``FileNotFoundError``, ``PermissionError``...), untouched.

        A checkpoint (the fork/exec runs in a worker thread).
        """
        if not marker:
            raise ValueError("marker must not be empty")
        proc = await trio.lowlevel.open_process(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env={**env, MARKER_ENV: marker},
            start_new_session=True,
        )
        # The leader is unreaped until we wait, so even an instant exit leaves a zombie psutil can read.
        return cls(proc, psutil.Process(proc.pid), marker)

    @property
    def returncode(self) -> int | None:
        """The leader's exit status once reaped, else None."""
        return self._proc.returncode

    @property
    def stderr_tail(self) -> list[str]:
        """The last stderr lines noted with :meth:`note_stderr`, oldest first."""
        return list(self._stderr_tail)

    def note_stderr(self, line: str) -> None:
        """Remember ``line`` among the last 20 stderr lines reported in :class:`ExitInfo`."""
        self._stderr_tail.append(line)

    async def write_input(self, data: bytes) -> None:
        """Write ``data`` to the agent's stdin; concurrent writers are serialised.

        Raises:
            InputClosed: stdin is closed or the agent stopped reading it (a ``trio.BrokenResourceError``).

        A checkpoint. If cancelled mid-write, part of ``data`` may have been sent.
        """
        async with self._stdin_lock:
            try:
                await self.stdin.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise InputClosed(f"stdin of agent {self.pid} is closed") from exc

    def signal_group(self, sig: int) -> None:
        """Send ``sig`` to the agent's process group; a group that no longer exists is ignored."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, sig)

    async def pause(self, timeout: float = 1.0) -> None:
        """SIGSTOP the group (and members that left it), then wait until psutil sees all stopped.

        Raises:
            PauseFailed: a member is still not stopped after ``timeout`` seconds. The stop signals stay
                delivered; call :meth:`resume` to undo them.

        A checkpoint. If cancelled, the signals have been sent but the stop is unconfirmed.
        """
        self.signal_group(signal.SIGSTOP)
        deadline = time.monotonic() + timeout
        # One trip to a worker thread: find and stop the members outside the group, then watch them
        # all stop (polling /proc in the thread: a stop takes microseconds to a few milliseconds).
        pending = await trio.to_thread.run_sync(self._stop_and_confirm, deadline, abandon_on_cancel=True)
        if pending:
            raise PauseFailed(f"agent {self.pid}: processes {pending} not stopped after {timeout} s")

    def _stop_and_confirm(self, deadline: float) -> list[int]:
        """The members still not stopped at ``deadline`` (none, usually well before). Blocking."""
        targets = self._stop_outsiders()
        while (pending := _not_stopped(targets)) and time.monotonic() < deadline:
            time.sleep(_PAUSE_POLL)
        return pending

    def resume(self) -> None:
        """SIGCONT the group and the members :meth:`pause` stopped outside it. Blocks briefly (psutil)."""
        self.signal_group(signal.SIGCONT)
        outsiders, self._stopped_outside = self._stopped_outside, []
        for proc in outsiders:
            _signal_quietly(proc, signal.SIGCONT)

    async def stop(self, grace: float) -> ExitInfo:
        """Ask the agent to exit, then make sure nothing of it survives.

        Records the members (the group, descendants, marked processes), sends SIGTERM then SIGCONT (a
        stopped process only acts on TERM once continued), waits up to ``grace`` seconds for the leader,
        then SIGKILLs the group, every recorded member still alive and every marked process.

        Returns:
            The leader's exit, once reaped.

        Raises:
            trio.TooSlowError: the leader was not reaped within a few seconds of SIGKILL.

        A checkpoint. Cancellation cuts the grace period short; the kill and reap still run, shielded
        and bounded by their own deadline.
        """
        return await self._end(grace)

    async def kill(self) -> ExitInfo:
        """Like :meth:`stop` without the SIGTERM and grace period: SIGKILL at once."""
        return await self._end(None)

    async def wait(self) -> ExitInfo:
        """Wait for the leader to exit (trio's pidfd wait: stops and continues do not wake it).

        A checkpoint, cancellable, with no deadline of its own: the caller owns the session's timeout.
        """
        return self._exit_info(await self._proc.wait())

    def members(self, table: ProcTable | None = None) -> list[psutil.Process]:
        """The leader and its descendants that are alive (not zombies). Blocking (one /proc pass, or
        ``table``)."""
        table = table if table is not None else proctable.snapshot()
        return _as_psutil(self._tree(table), self)

    def _tree(self, table: ProcTable) -> list[Proc]:
        return table.tree(self.pid, self._start_ticks)

    def stats(self, table: ProcTable | None = None) -> ProcessStats:
        """CPU since the previous call, RSS and member count of the whole tree. Blocking (one /proc
        pass, or read from ``table``: a sampler of many agents shares one pass between them).

        A process that started since the previous call counts with all its CPU time; one that ended in
        between loses its last slice.
        """
        table = table if table is not None else proctable.snapshot()
        now = time.monotonic()
        cpu_now: dict[tuple[int, int], float] = {}
        rss = 0
        busy = 0.0
        for proc in self._tree(table):
            key = (proc.pid, proc.start)
            cpu_now[key] = proc.cpu
            rss += proc.rss
            if self._cpu_prev is not None:
                busy += proc.cpu - self._cpu_prev.get(key, 0.0)
        first, elapsed = self._cpu_prev is None, now - self._cpu_at
        self._cpu_prev, self._cpu_at = cpu_now, now
        percent = 0.0 if first or elapsed <= 0 else max(0.0, 100.0 * busy / elapsed)
        return ProcessStats(cpu_percent=percent, rss_bytes=rss, processes=len(cpu_now))

    async def _end(self, grace: float | None) -> ExitInfo:
        recorded: list[psutil.Process] = []
        try:
            found = await _in_thread(self._record_members, _SCAN_DEADLINE)
            recorded, outsiders = found if found is not None else ([], [])
            if grace is not None:
                for sig in (signal.SIGTERM, signal.SIGCONT):
                    self.signal_group(sig)
                    for proc in outsiders:
                        _signal_quietly(proc, sig)
                with trio.move_on_after(grace):
                    await self._proc.wait()
        finally:
            returncode = await self._kill_and_reap(recorded)
        return self._exit_info(returncode)

    async def _kill_and_reap(self, recorded: list[psutil.Process]) -> int:
        # Shielded: this runs in `finally` while a cancellation may be unwinding, and an agent must
        # never outlive its actor. The deadline keeps a process stuck in the kernel from hanging us.
        with trio.CancelScope(shield=True, deadline=trio.current_time() + _REAP_DEADLINE):
            self.signal_group(signal.SIGKILL)
            for proc in recorded:
                _signal_quietly(proc, signal.SIGKILL)
            self._stopped_outside = []
            await _sweep_marked(self.marker)
            return await self._proc.wait()
        raise trio.TooSlowError(f"agent {self.pid} not reaped {_REAP_DEADLINE} s after SIGKILL")

    def _record_members(self) -> tuple[list[psutil.Process], list[psutil.Process]]:
        """(every member, the members outside our group). Blocking (one /proc pass)."""
        table = proctable.snapshot()
        found = {p.pid: p for p in self._tree(table)}
        for proc in _marked_or_grouped(table, self.marker, self.pgid):
            found.setdefault(proc.pid, proc)
        members = _as_psutil(list(found.values()), self)
        outsiders = [proc for proc in members if found[proc.pid].pgrp != self.pgid]
        return members, outsiders

    def _stop_outsiders(self) -> list[psutil.Process]:
        """SIGSTOP members outside the group, remember them for resume(); return all. Blocking."""
        members, outsiders = self._record_members()
        for proc in outsiders:
            if _signal_quietly(proc, signal.SIGSTOP):
                # Appended here, not by the caller, so an abandoned thread still leaves a record.
                self._stopped_outside.append(proc)
        return members

    def _exit_info(self, returncode: int) -> ExitInfo:
        signum = -returncode if returncode < 0 else None
        return ExitInfo(returncode=returncode, signal=signum, stderr_tail=list(self._stderr_tail))


async def iter_lines(stream: trio.abc.ReceiveStream, max_line: int = 1 << 20) -> AsyncIterator[bytes]:
    """Yield the lines of ``stream`` without their ``b"\\n"``.

    A line longer than ``max_line`` bytes comes out in pieces of ``max_line`` bytes (nothing is lost,
    memory stays bounded). A last line without a newline is yielded at EOF.

    Raises:
        ValueError: ``max_line`` < 1.
        Whatever ``stream.receive_some()`` raises.

    Each step is a checkpoint (``receive_some``).
    """
    if max_line < 1:
        raise ValueError("max_line must be at least 1")
    pending = bytearray()
    while chunk := await stream.receive_some():
        if b"\n" not in chunk:
            pending += chunk
        else:
            parts = chunk.split(b"\n")
            if pending:
                pending += parts[0]
                parts[0] = bytes(pending)
            for line in parts[:-1]:
                if len(line) <= max_line:
                    yield line
                else:
                    for start in range(0, len(line), max_line):
                        yield line[start : start + max_line]
            pending = bytearray(parts[-1])
        while len(pending) > max_line:
            yield bytes(pending[:max_line])
            del pending[:max_line]
    if pending:
        yield bytes(pending)


def find_marked(marker: str) -> list[psutil.Process]:
    """Live processes of our uid whose environment has ``AH_SESSION_ID == marker``. Blocking.

    Raises:
        ValueError: ``marker`` is empty.
    """
    if not marker:
        raise ValueError("marker must not be empty")
    return _scan(marker)


def kill_leftovers(pid: int | None, create_time: float | None, marker: str) -> int:
    """SIGKILL what a crashed daemon left of one session. Blocking.

    If ``pid`` is alive and started at ``create_time`` its process group is killed, then every process
    marked with ``marker``. A pid now used by another process is left alone.

    Returns:
        How many processes were signalled.

    Raises:
        ValueError: ``marker`` is empty.
    """
    if not marker:
        raise ValueError("marker must not be empty")
    group = None
    if pid is not None and create_time is not None:
        try:
            leader = psutil.Process(pid)
            if abs(leader.create_time() - create_time) <= _CREATE_TIME_SLACK and _pgid(pid) == pid:
                group = pid
        except psutil.Error:
            pass
    signalled: set[int] = set()
    for sweep in range(_SWEEP_ROUNDS):
        found = [proc for proc in _scan(marker, group) if proc.pid not in signalled]
        if sweep == 0 and group is not None:
            # At once for the whole group, so a member forking right now cannot slip through.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        if not found:
            break
        signalled.update(proc.pid for proc in found if _signal_quietly(proc, signal.SIGKILL))
    return len(signalled)


def _scan(marker: str, pgid: int | None = None) -> list[psutil.Process]:
    """Live processes of our uid that carry ``marker`` or belong to group ``pgid``. Blocking."""
    return _as_psutil(_marked_or_grouped(proctable.snapshot(), marker, pgid))


def _marked_or_grouped(table: ProcTable, marker: str, pgid: int | None) -> list[Proc]:
    found = {p.pid: p for p in table.marked(marker)}
    if pgid is not None:
        me = os.getpid()
        for proc in table.group(pgid):
            if proc.pid != me:
                found.setdefault(proc.pid, proc)
    return list(found.values())


def _as_psutil(procs: list[Proc], owner: AgentProcess | None = None) -> list[psutil.Process]:
    """psutil handles (they refuse to signal a reused pid) for ``procs``, skipping the ones gone."""
    out = []
    for proc in procs:
        if owner is not None and proc.pid == owner.pid:
            out.append(owner._leader)
            continue
        try:
            out.append(psutil.Process(proc.pid))
        except psutil.Error:
            continue
    return out


async def _sweep_marked(marker: str) -> None:
    for _ in range(_SWEEP_ROUNDS):
        marked = await _in_thread(lambda: find_marked(marker), _SCAN_DEADLINE)
        if not marked:
            return
        for proc in marked:
            _signal_quietly(proc, signal.SIGKILL)


async def _in_thread(fn: Callable[[], _T], deadline: float) -> _T | None:
    """Run blocking ``fn`` in a worker thread; None if it takes longer than ``deadline`` seconds."""
    with trio.move_on_after(deadline):
        return await trio.to_thread.run_sync(fn, abandon_on_cancel=True)
    return None


def _signal_quietly(proc: psutil.Process, sig: int) -> bool:
    """Signal ``proc`` unless it is gone or its pid was reused (psutil checks create_time)."""
    try:
        proc.send_signal(sig)
    except psutil.Error:
        return False
    return True


def _status(proc: psutil.Process) -> str:
    try:
        return proc.status()
    except psutil.Error:
        return psutil.STATUS_DEAD


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def _not_stopped(procs: list[psutil.Process]) -> list[int]:
    return [proc.pid for proc in procs if _status(proc) not in _STOPPED and not _stop_pending_in_kernel(proc)]


_SIGSTOP_BIT = 1 << (signal.SIGSTOP - 1)


def _stop_pending_in_kernel(proc: psutil.Process) -> bool:
    """Whether ``proc`` sleeps uninterruptibly in the kernel with SIGSTOP pending.

    Such a process is as good as stopped: it runs no user code, and it stops before it could. The
    usual case is a shell parked in ``vfork()`` whose child we stopped before it called ``exec``: the
    parent stays in D state until the child execs, so psutil never reports it ``stopped`` while paused.
    (SIGCONT discards the pending stop, so resume needs nothing special.)
    """
    if _status(proc) != psutil.STATUS_DISK_SLEEP:
        return False
    try:
        with open(f"/proc/{proc.pid}/status", encoding="ascii") as fh:
            pending = 0
            for line in fh:
                if line.startswith(("SigPnd:", "ShdPnd:")):
                    pending |= int(line.split()[1], 16)
    except (OSError, ValueError):
        return False
    return bool(pending & _SIGSTOP_BIT)
