"""The :class:`Journal`: the daemon's only writer to the database.

One dedicated thread owns the writing connection (SQLite allows one writer; peewee connections are
per thread). Everything that changes the database goes through :meth:`Journal.write`; events take
a faster road: :meth:`Journal.enqueue` never blocks, and a trio task hands whatever has accumulated
to the writer thread as one transaction of raw ``executemany`` (peewee's query building costs ~10x
per row, see ``stack-notes.md``). Each :class:`~actors.events.EventBuffer` bounds how many of its
events may wait here, so the queue is bounded by the buffers, and the buffer's acknowledgement
callback is what releases backpressure on the agent.

Reads run in trio's worker threads (:meth:`Journal.read`), each with its own connection; WAL mode
lets them proceed beside the writer.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import outcome
import peewee
import trio

from actors.events import Event

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Most events written in one transaction: large enough to amortise the commit, small enough that a
#: batch takes a few milliseconds and acknowledgements keep flowing.
MAX_EVENT_BATCH = 4000

#: Concurrent readers of the database (worker threads, each holding a connection).
READ_THREADS = 4


class _WriterThread:
    """A thread running submitted callables one at a time on its own database connection."""

    def __init__(self, db: peewee.Database) -> None:
        self._db = db
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Callable[[outcome.Outcome], None]] | None]
        self._jobs = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="harbor-journal-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, done = job
            done(outcome.capture(fn))
        if not self._db.is_closed():
            self._db.close()

    async def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the writer thread and return its result (or raise its exception).

        If the caller is cancelled the job still runs to completion (a half-applied write is never
        abandoned); the caller just does not see its result.
        """
        token = trio.lowlevel.current_trio_token()
        finished = trio.Event()
        box: list[outcome.Outcome] = []

        def done(result: outcome.Outcome) -> None:
            box.append(result)
            try:
                token.run_sync_soon(finished.set)
            except trio.RunFinishedError:
                pass

        self._jobs.put((fn, done))
        await finished.wait()
        return box[0].unwrap()

    def stop(self, timeout: float) -> None:
        self._jobs.put(None)
        self._thread.join(timeout)


class Journal:
    """Writes for the whole daemon; implements :class:`actors.events.EventStore`.

    Use as ``await nursery.start(journal.run)``; cancelling ``run`` flushes every enqueued event
    before the writer stops (shielded, with a deadline).
    """

    def __init__(self, db: peewee.Database, *, flush_timeout: float = 10.0) -> None:
        self.db = db
        self._writer = _WriterThread(db)
        self._pending: list[tuple[Event, Callable[[int], None]]] = []
        self._wakeup = trio.Event()
        self._flush_timeout = flush_timeout
        self._readers = trio.CapacityLimiter(READ_THREADS)
        self._insert_sql = (
            f"INSERT INTO event (session_id, seq, kind, ts, data) VALUES ({', '.join([db.param] * 5)})"
        )
        self.events_written = 0

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start the writer thread and pump events until cancelled, then flush and stop."""
        self._writer.start()
        try:
            task_status.started()
            while True:
                await self._wakeup.wait()
                self._wakeup = trio.Event()
                await self._flush_pending()
        finally:
            with trio.move_on_after(self._flush_timeout) as scope:
                scope.shield = True
                await self._flush_pending()
            if scope.cancelled_caught:
                log.error("journal flush timed out; %d events not written", len(self._pending))
            await trio.to_thread.run_sync(self._writer.stop, self._flush_timeout)

    # -- events --------------------------------------------------------------------------------

    def enqueue(self, event: Event, stored: Callable[[int], None]) -> None:
        """Accept an event for writing; ``stored(seq)`` is called after it is committed."""
        self._pending.append((event, stored))
        self._wakeup.set()

    async def _flush_pending(self) -> None:
        while self._pending:
            batch = self._pending[:MAX_EVENT_BATCH]
            del self._pending[:MAX_EVENT_BATCH]
            rows = [(e.session_id, e.seq, e.kind, e.ts, json.dumps(e.data, separators=(",", ":")))
                    for e, _ in batch]
            await self._writer.call(lambda rows=rows: self._insert_events(rows))
            self.events_written += len(rows)
            acks: dict[Callable[[int], None], int] = {}
            for event, stored in batch:
                acks[stored] = event.seq  # batches are in seq order per session: the last is the max
            for stored, seq in acks.items():
                stored(seq)

    def _insert_events(self, rows: list[tuple[Any, ...]]) -> None:
        with self.db.atomic():
            self.db.cursor().executemany(self._insert_sql, rows)

    async def read_events(self, session_id: str, after_seq: int, limit: int) -> list[Event]:
        """Committed events of a session with ``seq > after_seq``, ascending, at most ``limit``."""
        sql = (f"SELECT seq, kind, ts, data FROM event WHERE session_id = {self.db.param} "
               f"AND seq > {self.db.param} ORDER BY seq LIMIT {int(limit)}")

        def query() -> list[Event]:
            rows = self.db.execute_sql(sql, (session_id, after_seq)).fetchall()
            return [Event(session_id, kind, json.loads(data), seq, ts) for seq, kind, ts, data in rows]

        return await self.read(query)

    # -- general writes and reads --------------------------------------------------------------

    async def write(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` (peewee calls) on the writer thread, in a transaction, and return its result.

        Events enqueued before this call are committed first, so a status written after an event
        never overtakes it.
        """
        await self._flush_pending()

        def in_transaction() -> T:
            with self.db.atomic():
                return fn()

        return await self._writer.call(in_transaction)

    async def read(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` (peewee queries) in a worker thread with its own connection."""
        return await trio.to_thread.run_sync(fn, limiter=self._readers)
