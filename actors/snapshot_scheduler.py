"""The snapshot scheduler: one daemon-wide bound on snapshot jobs, coalesced per session.

Requests come from several triggers (manual, tool boundaries, an interval) and may arrive in bursts.
Per key (a session id) at most one job runs and at most one waits; a request while one waits is
merged into it, since the waiting job will capture the workspace as it is when it runs anyway.
A global :class:`trio.CapacityLimiter` bounds how many jobs run at once across all keys.
``request`` never blocks, so a trigger on the agent's event path never waits on a snapshot.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

__all__ = ["SchedulerStats", "SnapshotScheduler"]

logger = logging.getLogger(__name__)

Job = Callable[[], Awaitable[None]]


@dataclass
class SchedulerStats:
    """Counters since creation: requests, requests merged into a waiting one, jobs started
    (holding a capacity slot), finished (however they ended), and failed (raised)."""

    requested: int = 0
    coalesced: int = 0
    started: int = 0
    finished: int = 0
    failed: int = 0


@dataclass
class _KeyState:
    running: bool = False
    pending: Job | None = None
    paused: bool = False
    done: trio.Event = field(default_factory=trio.Event)


class SnapshotScheduler:
    """Runs snapshot jobs, at most ``max_concurrent`` at a time, coalesced per key.

    Start it with ``await nursery.start(scheduler.run)``; jobs run in its own nursery and are
    cancelled when ``run`` is. Requests made before ``run`` starts wait until it does.

    Args:
        max_concurrent: jobs running at once across all keys.
    """

    def __init__(self, max_concurrent: int = 2) -> None:
        self._limiter = trio.CapacityLimiter(max_concurrent)
        self._keys: dict[str, _KeyState] = {}
        self._nursery: trio.Nursery | None = None
        self.stats = SchedulerStats()

    @property
    def max_concurrent(self) -> int:
        """The global bound on running jobs."""
        return int(self._limiter.total_tokens)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the jobs' nursery until cancelled; reports started once requests can run.

        Cancelling it cancels running jobs; their pending successors stay queued for a later ``run``.
        """
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for key, state in list(self._keys.items()):
                    if not state.running and state.pending is not None and not state.paused:
                        self._start(key, state)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None

    def request(self, key: str, job: Job) -> bool:
        """Ask for ``job`` to run for ``key``. Never blocks; not a checkpoint.

        Returns:
            ``True`` if ``job`` itself will run (at once, or after the key's running job);
            ``False`` if it was merged into a job already waiting for the key, which covers it.
        """
        self.stats.requested += 1
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = _KeyState()
        if state.pending is not None:
            self.stats.coalesced += 1
            return False
        state.pending = job
        if not state.running and not state.paused and self._nursery is not None:
            self._start(key, state)
        return True

    def pause(self, key: str) -> None:
        """Hold ``key``'s waiting job (and later requests) until :meth:`resume`; a running job
        finishes. Not a checkpoint."""
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = _KeyState()
        state.paused = True

    def resume(self, key: str) -> None:
        """Let ``key``'s waiting job run. Not a checkpoint."""
        state = self._keys.get(key)
        if state is None:
            return
        state.paused = False
        if not state.running and state.pending is not None and self._nursery is not None:
            self._start(key, state)
        self._drop_if_idle(key, state)

    def forget(self, key: str) -> None:
        """Drop ``key``'s waiting job and its paused flag; a running job finishes. Not a checkpoint."""
        state = self._keys.get(key)
        if state is None:
            return
        state.pending = None
        state.paused = False
        self._drop_if_idle(key, state)

    def busy(self, key: str) -> bool:
        """Whether ``key`` has a job running or waiting."""
        state = self._keys.get(key)
        return state is not None and (state.running or state.pending is not None)

    async def wait_idle(self, key: str) -> None:
        """Wait until ``key`` has no job running or waiting (now, if it has none). A checkpoint."""
        while (state := self._keys.get(key)) is not None and (state.running or state.pending):
            await state.done.wait()
        await trio.lowlevel.checkpoint()

    def _start(self, key: str, state: _KeyState) -> None:
        assert self._nursery is not None
        state.running = True
        self._nursery.start_soon(self._drain, key, state, name=f"snapshot job {key}")

    async def _drain(self, key: str, state: _KeyState) -> None:
        try:
            while state.pending is not None and not state.paused:
                # The job stays pending until it holds a slot: requests meanwhile merge into it,
                # and a pause meanwhile still holds it back.
                async with self._limiter:
                    job = state.pending
                    if job is None or state.paused:
                        continue
                    state.pending = None
                    self.stats.started += 1
                    try:
                        await job()
                    except Exception:
                        self.stats.failed += 1
                        logger.exception("snapshot job for %s failed", key)
                    finally:
                        self.stats.finished += 1
        finally:
            state.running = False
            state.done.set()
            state.done = trio.Event()
            self._drop_if_idle(key, state)

    def _drop_if_idle(self, key: str, state: _KeyState) -> None:
        if not state.running and state.pending is None and not state.paused:
            if self._keys.get(key) is state:
                del self._keys[key]
