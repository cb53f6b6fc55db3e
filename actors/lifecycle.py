"""The session lifecycle: its states, named sets of states, and the one table of allowed moves.

Dependency-free on purpose (supervisord's habit): every change of a session's status goes through
:func:`transition`, which checks :data:`TRANSITIONS` and returns the :class:`StatusChange` the actor
then publishes as a ``status`` event. Nothing else decides whether a move is legal.

::

    queued → provisioning → running ⇄ (pausing → paused → resuming) → stopping → stopped
    ending in completed (exit 0), failed (non-zero, crash, provisioning error, timeout),
    stopped (stop asked) or cancelled (deleted or cancelled before or while running).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    """A session's status, spelled as on the wire (lowercase)."""

    QUEUED = "queued"
    PROVISIONING = "provisioning"
    RUNNING = "running"
    PAUSING = "pausing"
    PAUSED = "paused"
    RESUMING = "resuming"
    STOPPING = "stopping"
    STOPPED = "stopped"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


S = Status

#: Sessions that still hold (or will hold) resources: everything not terminal.
ACTIVE: frozenset[Status] = frozenset(
    {S.QUEUED, S.PROVISIONING, S.RUNNING, S.PAUSING, S.PAUSED, S.RESUMING, S.STOPPING}
)
#: Sessions whose agent process exists and may be signalled.
SIGNALLABLE: frozenset[Status] = frozenset({S.RUNNING, S.PAUSING, S.PAUSED, S.RESUMING})
#: Final states: no transition leaves them.
TERMINAL: frozenset[Status] = frozenset({S.STOPPED, S.COMPLETED, S.FAILED, S.CANCELLED})

# The agent may exit (completed/failed) from any state in which it runs; deletion (cancelled) and
# crashes (failed) may happen from any active state.
_ENDINGS = frozenset({S.COMPLETED, S.FAILED, S.CANCELLED})

#: The one table: ``TRANSITIONS[current]`` is the set of statuses a session may move to.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    S.QUEUED: frozenset({S.PROVISIONING, S.STOPPED, S.FAILED, S.CANCELLED}),
    S.PROVISIONING: frozenset({S.RUNNING, S.STOPPING, S.FAILED, S.CANCELLED}),
    S.RUNNING: frozenset({S.PAUSING, S.STOPPING}) | _ENDINGS,
    S.PAUSING: frozenset({S.PAUSED, S.RUNNING, S.STOPPING}) | _ENDINGS,
    S.PAUSED: frozenset({S.RESUMING, S.STOPPING}) | _ENDINGS,
    S.RESUMING: frozenset({S.RUNNING, S.PAUSED, S.STOPPING}) | _ENDINGS,
    S.STOPPING: frozenset({S.STOPPED, S.FAILED, S.CANCELLED}),
    S.STOPPED: frozenset(),
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
}


class IllegalTransition(Exception):
    """A move the table does not allow (the API answers 409 Conflict).

    Attributes:
        current: the status the session is in.
        target: the status that was asked for.
    """

    def __init__(self, current: Status, target: Status) -> None:
        super().__init__(f"cannot go from {current} to {target}")
        self.current = current
        self.target = target


@dataclass(frozen=True, slots=True)
class StatusChange:
    """One applied transition: what the ``status`` event carries."""

    previous: Status
    status: Status
    reason: str | None = None


def can_transition(current: Status, target: Status) -> bool:
    """Whether the table allows moving from ``current`` to ``target``."""
    return target in TRANSITIONS[current]


def transition(current: Status, target: Status, reason: str | None = None) -> StatusChange:
    """Check a move against the table and describe it.

    Args:
        current: the session's status now.
        target: the status asked for.
        reason: why (kept on the ``status`` event and, for failures, on the session).

    Returns:
        The change to publish.

    Raises:
        IllegalTransition: the table does not allow the move.
    """
    if not can_transition(current, target):
        raise IllegalTransition(current, target)
    return StatusChange(previous=current, status=target, reason=reason)
