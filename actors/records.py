"""A session's record, written in order: behind the actor's back, or at once when it must be durable.

The actor records its session's fields (status, pid, end time, exit code...) through a
:class:`~actors.session_plan.SessionRecorder` (the daemon's journal). Waiting for each write would put
a journal round trip in every start, pause and resume, while only the session's end has to be
durable before the actor goes on. :class:`RecordQueue` keeps what was recorded, writes it in the
order it came, in the background, and lets the caller wait when it needs to.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import trio

from actors.session_plan import SessionRecorder


class RecordQueue:
    """The ordered record of one session. Run :meth:`run` in the actor's nursery.

    Attributes:
        fields: every field recorded so far, written or still on its way (the latest value of each).
    """

    def __init__(self, session_id: str, recorder: SessionRecorder) -> None:
        self.session_id = session_id
        self.fields: dict[str, Any] = {}
        self._recorder = recorder
        self._pending: deque[dict[str, Any]] = deque()
        self._added = trio.Event()
        self._writing = trio.Lock()  # FIFO: each record is written once, in the order it came
        self._running = False

    async def add(self, fields: dict[str, Any], *, wait: bool) -> None:
        """Record ``fields``: written behind, or (``wait``, or no :meth:`run` task) before returning,
        after every earlier record.

        Raises:
            Whatever the recorder raises, when this call writes.
        """
        self.fields.update(fields)
        self._pending.append(fields)
        if self._running and not wait:
            self._added.set()
            return
        await self.flush()

    async def flush(self) -> None:
        """Return once everything recorded so far is written."""
        async with self._writing:
            while self._pending:
                await self._recorder.update_session(self.session_id, self._pending.popleft())

    async def run(self) -> None:
        """Write records as they come, until cancelled. A failing write raises here (the actor fails)."""
        self._running = True
        try:
            while True:
                await self._added.wait()
                self._added = trio.Event()
                await self.flush()
        finally:
            self._running = False
