"""Session events: the typed :class:`Event`, and the :class:`EventBuffer` every session owns.

An event is what a session did, in the vocabulary of ``api-contract.md`` ("Events"): its ``kind``
is the spec ``type`` (``status``, ``log``, ``thought``, ``tool_use``, ``tool_result``, ``file_edit``,
``diff``, ``progress``, ``snapshot``, ``message``) and ``data`` holds the kind's own fields in the
contract's spelling. ``seq`` is per-session, gap-free and increasing from 1; it is the SSE ``id:``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple, Protocol


class EventKind(StrEnum):
    """The spec ``type`` of an event."""

    STATUS = "status"
    LOG = "log"
    THOUGHT = "thought"
    TOOL_USE = "tool_use"
    TOOL_RESULT = "tool_result"
    FILE_EDIT = "file_edit"
    DIFF = "diff"
    PROGRESS = "progress"
    SNAPSHOT = "snapshot"
    MESSAGE = "message"


# The browser client listens only for these SSE names and puts the name in place of ``type``, so
# the wire uses them while ``data`` keeps the spec type (api-contract.md, "Events").
_SSE_NAMES: dict[str, str] = {
    EventKind.STATUS: "status",
    EventKind.LOG: "log",
    EventKind.THOUGHT: "thinking",
    EventKind.TOOL_USE: "tool_execution",
    EventKind.TOOL_RESULT: "tool_execution",
    EventKind.FILE_EDIT: "file_edit",
    EventKind.DIFF: "diff",
    EventKind.PROGRESS: "progress",
    EventKind.SNAPSHOT: "snapshot",
    EventKind.MESSAGE: "log",
}


class Draft(NamedTuple):
    """An event before it has a session, a ``seq`` and a time: what adapters produce."""

    kind: str
    data: dict[str, Any]


def iso_ts(ts: float) -> str:
    """Format unix seconds as the contract's ISO-8601 UTC string with milliseconds."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ts * 1000) % 1000:03d}Z"


@dataclass(slots=True)
class Event:
    """One thing a session did.

    Attributes:
        session_id: the session's id.
        kind: the spec ``type`` (an :class:`EventKind` value).
        data: the kind's fields (snake_case as in the contract, e.g. ``thought``, ``tool_name``).
        seq: per-session sequence number, from 1, gap-free; 0 until the buffer assigns it.
        ts: when it happened, unix seconds.
    """

    session_id: str
    kind: str
    data: dict[str, Any] = field(default_factory=dict)
    seq: int = 0
    ts: float = field(default_factory=time.time)

    @property
    def sse_name(self) -> str:
        """The SSE ``event:`` name the browser client listens for."""
        if self.kind == EventKind.LOG and "last_line" in self.data:
            return "tool_execution"  # tool progress travels as a log line with ``last_line``
        return _SSE_NAMES.get(self.kind, "log")

    def wire(self) -> dict[str, Any]:
        """The JSON object clients receive (SSE ``data:``, WebSocket frames, history pages)."""
        return {"type": self.kind, "sessionId": self.session_id, "seq": self.seq, "ts": iso_ts(self.ts),
                **self.data}


class EventStore(Protocol):
    """Where a buffer's events go to be kept, and come back from (the daemon's journal).

    The buffer bounds what it hands over; the store never drops what it accepted.
    """

    def enqueue(self, event: Event, stored: Callable[[int], None]) -> None:
        """Accept ``event`` for writing; call ``stored(seq)`` (on the trio thread) once it and every
        earlier event of its session are committed. Never blocks; not a checkpoint."""

    async def read_events(self, session_id: str, after_seq: int, limit: int) -> list[Event]:
        """Committed events of a session with ``seq > after_seq``, ascending, at most ``limit``."""
        ...
