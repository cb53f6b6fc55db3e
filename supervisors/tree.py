"""An OTP-style supervisor: start children in order, restart them by strategy, escalate past intensity.

Each child is ``permanent`` (restarted whenever it ends), ``transient`` (restarted only when it raises)
or ``temporary`` (never restarted). The supervisor allows at most ``intensity`` restarts in ``period``
seconds, counted over all its children; one more and it cancels every child and raises
:class:`Escalation`, so its own parent (or systemd, at the root) decides what happens next.
Cancelling :meth:`Supervisor.run` is a commanded stop, never counted or logged as a crash.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import trio

log = logging.getLogger("supervisors.tree")


class Restart(StrEnum):
    """When a child that ended is started again."""

    PERMANENT = "permanent"  # always
    TRANSIENT = "transient"  # only if it raised
    TEMPORARY = "temporary"  # never


@dataclass(frozen=True)
class ChildSpec:
    """How to run one child.

    ``run`` is ``async def run(task_status=trio.TASK_STATUS_IGNORED)`` and calls
    ``task_status.started()`` once ready, then keeps running until its work is done.
    """

    name: str
    run: Callable[..., Awaitable[None]]
    restart: Restart = Restart.PERMANENT


class Escalation(Exception):
    """Raised out of :meth:`Supervisor.run` when restart intensity is exceeded.

    Attributes:
        child: the spec of the child whose failure tipped the balance.

    ``__cause__`` is that child's last exception (None if it returned normally).
    """

    def __init__(self, supervisor: str, child: ChildSpec, restarts: int, period: float) -> None:
        super().__init__(
            f"supervisor {supervisor!r}: child {child.name!r} ended once too often "
            f"({restarts} restarts within {period} s)"
        )
        self.child = child


class _Readiness:
    """The ``task_status`` a child gets: passes its first readiness up to the supervisor's start."""

    def __init__(self, forward: Callable[[], None]) -> None:
        self._forward = forward
        self._called = False

    def started(self, value: Any = None) -> None:
        if self._called:
            raise RuntimeError("called 'started' twice on the same task status")
        self._called = True
        self._forward()


class Supervisor:
    """Runs children under a restart strategy with backoff and an intensity limit.

    Args:
        name: used in logs and in :class:`Escalation`.
        children: started in this order, each waiting for the previous one to be ready.
        intensity: restarts allowed within ``period``; one more escalates.
        period: the sliding window, in seconds of ``clock``.
        backoff: the first restart's delay; the n-th restart of a child within ``period`` waits
            ``backoff * 2**n`` seconds, capped at ``max_backoff``.
        max_backoff: the cap.
        clock: the time source for the intensity window (tests pass a fake one).
    """

    def __init__(
        self,
        name: str,
        children: Sequence[ChildSpec],
        *,
        intensity: int = 3,
        period: float = 5.0,
        backoff: float = 0.05,
        max_backoff: float = 2.0,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        if intensity < 0 or period <= 0 or backoff < 0 or max_backoff < backoff:
            raise ValueError("need intensity >= 0, period > 0 and 0 <= backoff <= max_backoff")
        names = [spec.name for spec in children]
        if len(set(names)) != len(names):
            raise ValueError(f"supervisor {name!r}: child names must be unique, got {names}")
        self.name = name
        self._children = list(children)
        self._intensity = intensity
        self._period = period
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._clock = clock
        # Restart times of all children, for the intensity window; (time, child name) pairs.
        self._restarts: deque[tuple[float, str]] = deque()
        self._escalation: Escalation | None = None
        self._cancel_scope: trio.CancelScope | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start every child in order, report ready, and supervise until all have ended for good.

        A child that fails before it is ready is restarted like any other, so readiness may come
        after restarts; a child that ends for good without being ready does not block the others.

        Raises:
            Escalation: more than ``intensity`` restarts within ``period``; every child was cancelled
                first.

        A checkpoint. Cancellation stops the children (a commanded stop: no restart, no Escalation).
        """
        self._escalation = None
        self._restarts.clear()
        async with trio.open_nursery() as nursery:
            self._cancel_scope = nursery.cancel_scope
            for spec in self._children:
                await nursery.start(self._supervise, spec)
                if self._escalation is not None:
                    break
            else:
                task_status.started()
        if self._escalation is not None:
            raise self._escalation

    async def _supervise(self, spec: ChildSpec, *, task_status: trio.TaskStatus[None]) -> None:
        ready = False

        def announce() -> None:
            nonlocal ready
            if not ready:
                ready = True
                task_status.started()

        while True:
            error: Exception | None = None
            try:
                await spec.run(task_status=_Readiness(announce))
            except Exception as exc:
                error = exc
            if error is not None:
                log.error("%s: child %r crashed", self.name, spec.name, exc_info=error)
            if not self._should_restart(spec, error):
                log.info("%s: child %r finished (%s)", self.name, spec.name, spec.restart)
                announce()
                return
            # A child that ended because we are being cancelled is not restarted: this checkpoint
            # raises Cancelled before the ending counts against intensity.
            await trio.lowlevel.checkpoint()
            recent = self._note_restart(spec)
            if recent is None:
                self._escalate(spec, error)
                announce()
                return
            delay = min(self._backoff * 2**recent, self._max_backoff)
            how = "crashed" if error is not None else "returned"
            log.warning("%s: child %r %s; restarting in %.3f s", self.name, spec.name, how, delay)
            await trio.sleep(delay)

    def _should_restart(self, spec: ChildSpec, error: Exception | None) -> bool:
        if spec.restart is Restart.PERMANENT:
            return True
        return spec.restart is Restart.TRANSIENT and error is not None

    def _note_restart(self, spec: ChildSpec) -> int | None:
        """Count a restart; None past intensity, else how many earlier restarts of ``spec`` are recent."""
        now = self._clock()
        while self._restarts and self._restarts[0][0] <= now - self._period:
            self._restarts.popleft()
        if len(self._restarts) >= self._intensity:
            return None
        recent = sum(1 for _, name in self._restarts if name == spec.name)
        self._restarts.append((now, spec.name))
        return recent

    def _escalate(self, spec: ChildSpec, error: Exception | None) -> None:
        escalation = Escalation(self.name, spec, len(self._restarts), self._period)
        escalation.__cause__ = error
        log.error("%s: %s; giving up", self.name, escalation)
        self._escalation = escalation
        assert self._cancel_scope is not None
        self._cancel_scope.cancel()
