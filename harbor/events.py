"""Reading events: history pages, log tails, live streams, and the dashboard feed.

A stream (:meth:`EventService.stream`) yields batches of events after a ``seq``: from the live
actor's :class:`~actors.events.EventBuffer` subscription when the session runs (it catches up from
ring and store by itself), otherwise from the store alone. Either way a reader gets every event
exactly once, in order, and a slow reader never slows the agent.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Protocol

import trio

from actors.events import Event, EventKind, EventSubscription, iso_ts
from actors.lifecycle import TERMINAL
from harbor.store import models as m

if TYPE_CHECKING:
    from harbor.core import Harbor

log = logging.getLogger(__name__)

#: Events read from the store per query while replaying history.
REPLAY_CHUNK = 500

#: Dashboard subscribers' queue: a dashboard that falls this far behind is disconnected and
#: reconnects (it re-reads the session list); it can never hold the daemon's memory hostage.
FEED_QUEUE = 1000


class EventReader(Protocol):
    async def next_batch(self) -> list[Event] | None:
        """The next events in ``seq`` order, or ``None`` at the end. Cancel-safe: a cancelled call
        delivers nothing and loses nothing."""


class _LiveReader:
    def __init__(self, subscription: EventSubscription) -> None:
        self._subscription = subscription

    async def next_batch(self) -> list[Event] | None:
        try:
            return await self._subscription.__anext__()
        except StopAsyncIteration:
            return None


class _StoredReader:
    def __init__(self, journal: Any, session_id: str, after: int) -> None:
        self._journal = journal
        self._session_id = session_id
        self._after = after

    async def next_batch(self) -> list[Event] | None:
        batch = await self._journal.read_events(self._session_id, self._after, REPLAY_CHUNK)
        if not batch:
            return None
        self._after = batch[-1].seq
        return batch


class _UntilTerminal:
    """Ends a reader right after the session's terminal ``status`` (api-contract.md: "The stream
    ends after the terminal status"), whatever is recorded after it (the final snapshot)."""

    def __init__(self, reader: EventReader) -> None:
        self._reader = reader
        self._done = False

    async def next_batch(self) -> list[Event] | None:
        if self._done:
            return None
        batch = await self._reader.next_batch()
        if batch is None:
            return None
        for i, event in enumerate(batch):
            if event.kind == EventKind.STATUS and event.data.get("status") in TERMINAL:
                self._done = True
                return batch[:i + 1]
        return batch


class Feed:
    """Broadcast of session creations and status changes to dashboards (``GET /api/v1/events``)."""

    def __init__(self) -> None:
        self._subscribers: set[trio.MemorySendChannel[dict[str, Any]]] = set()

    def publish(self, item: dict[str, Any]) -> None:
        """Send to every subscriber without waiting; one that is full is dropped. Not a checkpoint."""
        for channel in list(self._subscribers):
            try:
                channel.send_nowait(item)
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                self._subscribers.discard(channel)
                channel.close()

    def subscribe(self) -> trio.MemoryReceiveChannel[dict[str, Any]]:
        send, receive = trio.open_memory_channel[dict[str, Any]](FEED_QUEUE)
        self._subscribers.add(send)
        return receive

    def close(self) -> None:
        for channel in self._subscribers:
            channel.close()
        self._subscribers.clear()


class EventService:
    def __init__(self, harbor: Harbor) -> None:
        self.harbor = harbor
        self.journal = harbor.journal
        self.feed = Feed()

    @asynccontextmanager
    async def open_stream(self, session_id: str, after: int) -> AsyncIterator[EventReader]:
        """A reader of the session's events with ``seq > after``, live until the session ends.

        It ends with the terminal ``status`` event (or, resuming after it, with what was recorded
        after it, e.g. the final snapshot).
        """
        actor = self.harbor.sessions.supervisor.find(session_id)
        if actor is not None and not actor.buffer.closed:
            async with actor.buffer.subscribe(after) as subscription:
                yield _UntilTerminal(_LiveReader(subscription))
        else:
            yield _UntilTerminal(_StoredReader(self.journal, session_id, after))

    async def history(self, session_id: str, *, kinds: list[str] | None = None, level: str | None = None,
                      since: float | None = None, until: float | None = None, descending: bool = True,
                      page: int = 1, per_page: int = 50) -> tuple[int, list[dict[str, Any]]]:
        """A page of committed events (newest first by default) and the total matching."""
        db = self.journal.db

        def query() -> tuple[int, list[dict[str, Any]]]:
            q = m.Event.select().where(m.Event.session_id == session_id)
            if kinds:
                q = q.where(m.Event.kind.in_(kinds))
            if since is not None:
                q = q.where(m.Event.ts >= since)
            if until is not None:
                q = q.where(m.Event.ts <= until)
            if level:
                # Only log lines have a level. JSON lives as text: match the serialised field, spelt
                # as the journal writes it (compact separators).
                field = json.dumps({"level": level}, separators=(",", ":"))[1:-1]
                q = q.where((m.Event.kind == EventKind.LOG.value) & m.Event.data.contains(field))
            total = q.count(database=db)
            order = m.Event.seq.desc() if descending else m.Event.seq.asc()
            rows = q.order_by(order).paginate(page, per_page)
            return total, [Event(r.session_id, r.kind, json.loads(r.data), r.seq, r.ts).wire() for r in rows]

        return await self.journal.read(query)

    async def logs(self, session_id: str, tail: int) -> list[dict[str, Any]]:
        """The last ``tail`` log and assistant-message lines, oldest first."""
        kinds = [EventKind.LOG.value, EventKind.MESSAGE.value]
        _, items = await self.history(session_id, kinds=kinds, per_page=tail)
        return [{"level": e.get("level", "info"), "message": e.get("message", ""), "ts": e["ts"],
                 "seq": e["seq"], **({"role": e["role"]} if "role" in e else {})} for e in reversed(items)]

    def current_status(self, session_id: str, stored_status: str) -> dict[str, Any]:
        """The synthetic event that opens a stream: the status now (it carries no ``seq``)."""
        actor = self.harbor.sessions.supervisor.find(session_id)
        status = str(actor.status) if actor is not None else stored_status
        return {"type": "status", "sessionId": session_id, "status": status, "ts": iso_ts(time.time())}
