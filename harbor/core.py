"""The service core: what HTTP handlers, the WebUI and in-process callers ask.

:class:`Harbor` owns the journal and the session supervisor and wires the real store and agent
catalog into the actors. Handlers stay thin: they validate, call one method here, shape the reply.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import peewee
import trio

from harbor.config import Settings
from harbor.store.journal import Journal

log = logging.getLogger(__name__)


class Harbor:
    """The running service. Start with ``await nursery.start(harbor.run)``."""

    def __init__(self, settings: Settings, db: peewee.Database) -> None:
        self.settings = settings
        self.db = db
        self.journal = Journal(db)
        self.started_at = time.time()
        #: Set when the daemon stops: every open stream (SSE, WebSocket) ends when it is set.
        self.closing = trio.Event()
        self._extensions: dict[str, Any] = {}

    @property
    def auth_configured(self) -> bool:
        return False

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the journal (and the services hung on it) until cancelled."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.journal.run)
            task_status.started()

    async def readiness(self) -> dict[str, str]:
        """Checks behind ``/readyz``: each ``"ok"`` or a short reason."""
        def ping() -> None:
            self.db.execute_sql("SELECT 1").fetchone()

        try:
            with trio.fail_after(2):
                await self.journal.read(ping)
            database = "ok"
        except Exception as exc:  # any failure to answer means not ready
            database = f"unavailable: {exc}"
        return {"database": database}

    def end_streams(self) -> None:
        self.closing.set()

    async def stop_sessions(self) -> None:
        """Stop every running session (daemon shutdown)."""
