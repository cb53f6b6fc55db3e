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

On SQLite the writer never checkpoints the WAL itself: an automatic checkpoint runs inside the commit
that crosses the WAL's size threshold and fsyncs the database file there, which stalled one commit in
a few hundred by 4-6 ms (and every reader waiting for those events with it). Instead the journal
checkpoints every :data:`CHECKPOINT_SECONDS` from a reader thread, in ``PASSIVE`` mode, which never
blocks the writer (:meth:`Journal.checkpoint`).

A write that fails with :class:`sqlite3.OperationalError` (the database is locked by another process
past ``busy_timeout``, the disk is full, an I/O error) is retried on the writer thread: an event batch
until it is committed (nothing accepted is ever dropped; the agents wait meanwhile, through their
buffers' backpressure), any other write for :data:`WRITE_RETRY_SECONDS`. Only a shutdown that cannot
flush within its deadline abandons what is left, and says so in the log.
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import outcome
import peewee
import tenacity
import trio

from actors.events import Event

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Most events written in one transaction: large enough to amortise the commit, small enough that a
#: batch takes a few milliseconds and acknowledgements keep flowing.
MAX_EVENT_BATCH = 4000

#: Group commit: a trickle of events waits up to this long for company before it is written, unless
#: :data:`GROUP_COMMIT_EVENTS` are pending. Readers receive events only once committed, so the wait
#: adds to delivery latency; but each writer job is Python on the writer thread competing with the
#: event loop for the GIL, and grouping trickles saves most of those jobs. 1 ms measured best among
#: 0, 1, 2 and 5 ms for p99 latency at 1,000 events/s to 10 readers (tests/benchmarks/test_event_bench.py).
GROUP_COMMIT_SECONDS = 0.001
GROUP_COMMIT_EVENTS = 256

#: How often the WAL is checkpointed into the database file (SQLite). Each checkpoint copies what
#: was committed since the last one, so the WAL stays around one interval's worth of writes.
CHECKPOINT_SECONDS = 1.0

#: Concurrent readers of the database (worker threads, each holding a connection).
READ_THREADS = 4

#: How long a write other than an event batch is retried before its caller sees the error. Event
#: batches are retried for as long as it takes.
WRITE_RETRY_SECONDS = 60.0

#: Errors worth retrying: SQLite reports a lock held past ``busy_timeout``, a full disk or an I/O
#: error as ``OperationalError`` (peewee wraps it in its own class when it executes the statement).
_RETRYABLE = (sqlite3.OperationalError, peewee.OperationalError)

#: The longest pause between two attempts (the first retries come quickly: locks are often brief).
_MAX_RETRY_WAIT = 0.5


class JournalAbandoned(Exception):
    """The journal stopped retrying a write because the daemon is shutting down."""


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

    def submit(self, fn: Callable[[], T], done: Callable[[outcome.Outcome], None]) -> None:
        """Queue ``fn``; once it has run, call ``done(outcome)`` on the trio thread. Jobs run, and their
        ``done`` callbacks are called, in submission order. Not a checkpoint."""
        token = trio.lowlevel.current_trio_token()

        def finished(result: outcome.Outcome) -> None:
            try:
                token.run_sync_soon(done, result)
            except trio.RunFinishedError:
                pass

        self._jobs.put((fn, finished))

    async def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the writer thread and return its result (or raise its exception).

        If the caller is cancelled the job still runs to completion (a half-applied write is never
        abandoned); the caller just does not see its result.
        """
        finished = trio.Event()
        box: list[outcome.Outcome] = []

        def done(result: outcome.Outcome) -> None:
            box.append(result)
            finished.set()

        self.submit(fn, done)
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
        self._wakeup = trio.Event()  # something is pending
        self._enough = trio.Event()  # a group commit's worth is pending
        self._flush_timeout = flush_timeout
        # Set when a shutdown gives up flushing: the writer thread stops retrying at once.
        self._abandon = threading.Event()
        self._last_retry_log = 0.0
        self._readers = trio.CapacityLimiter(READ_THREADS)
        self._insert_sql = (
            f"INSERT INTO event (session_id, seq, kind, ts, data) VALUES ({', '.join([db.param] * 5)})"
        )
        self.events_written = 0
        self._sqlite = isinstance(db, peewee.SqliteDatabase)

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start the writer thread and pump events until cancelled, then flush and stop."""
        self._writer.start()
        try:
            async with trio.open_nursery() as nursery:
                if self._sqlite:
                    # The writer's commits must not checkpoint (see the module docstring).
                    await self._writer.call(lambda: self.db.execute_sql("PRAGMA wal_autocheckpoint=0"))
                    nursery.start_soon(self._checkpoint_periodically)
                task_status.started()
                await self._pump()
        finally:
            with trio.move_on_after(self._flush_timeout) as scope:
                scope.shield = True
                await self._flush_pending()
            if scope.cancelled_caught:
                self._abandon.set()
                log.error("journal flush timed out; %d events not written", len(self._pending))
            await trio.to_thread.run_sync(self._writer.stop, self._flush_timeout)

    async def _pump(self) -> None:
        """Hand pending events to the writer as they come, grouping a trickle (group commit)."""
        while True:
            await self._wakeup.wait()
            if len(self._pending) < GROUP_COMMIT_EVENTS:
                with trio.move_on_after(GROUP_COMMIT_SECONDS):
                    await self._enough.wait()
            self._wakeup = trio.Event()
            self._enough = trio.Event()
            await self._flush_pending()

    async def _checkpoint_periodically(self) -> None:
        while True:
            await trio.sleep(CHECKPOINT_SECONDS)
            try:
                await self.checkpoint()
            except _RETRYABLE as exc:  # e.g. another process holds the database: the next one catches up
                log.debug("WAL checkpoint skipped: %s", exc)

    async def checkpoint(self) -> tuple[int, int]:
        """Copy committed WAL frames into the SQLite database file (``PRAGMA wal_checkpoint(PASSIVE)``).

        Runs on a reader thread and never blocks the writer; frames still needed by a running read
        are left for the next checkpoint.

        Returns:
            ``(frames in the WAL, frames checkpointed)``; equal when the WAL is fully copied.
        """
        def run() -> tuple[int, int]:
            _busy, frames, copied = self.db.execute_sql("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            return frames, copied

        return await self.read(run)

    # -- events --------------------------------------------------------------------------------

    def enqueue(self, event: Event, stored: Callable[[int], None]) -> None:
        """Accept an event for writing; ``stored(seq)`` is called after it is committed."""
        pending = self._pending
        pending.append((event, stored))
        if len(pending) == 1:
            self._wakeup.set()
        elif len(pending) == GROUP_COMMIT_EVENTS:
            self._enough.set()

    async def _flush_pending(self) -> None:
        """Hand every pending event to the writer thread, in batches; return once they are committed.

        A batch, once taken, belongs to the writer thread: it retries it until it is committed and
        then acknowledges it (see :meth:`_batch_done`), whether or not this call is still waiting. Jobs
        run in submission order, so events of a session are committed in ``seq`` order and a batch
        never overtakes an earlier one.
        """
        while self._pending:
            batch = self._pending[:MAX_EVENT_BATCH]
            del self._pending[:MAX_EVENT_BATCH]
            rows = [(e.session_id, e.seq, e.kind, e.ts, json.dumps(e.data, separators=(",", ":")))
                    for e, _ in batch]
            finished = trio.Event()

            def done(result: outcome.Outcome, batch: list[Any] = batch, finished: trio.Event = finished) -> None:
                self._batch_done(batch, result)
                finished.set()

            self._writer.submit(lambda rows=rows: self._insert_events(rows), done)
            await finished.wait()

    def _batch_done(self, batch: list[tuple[Event, Callable[[int], None]]], result: outcome.Outcome) -> None:
        """On the trio thread, after the writer finished a batch: acknowledge it, or report its loss."""
        if isinstance(result, outcome.Error):
            # Only when the shutdown abandoned it (or a bug other than an OperationalError).
            log.error("%d events not written: %s", len(batch), result.error)
            return
        self.events_written += len(batch)
        acks: dict[Callable[[int], None], int] = {}
        for event, stored in batch:
            acks[stored] = event.seq  # batches are in seq order per session: the last is the max
        for stored, seq in acks.items():
            stored(seq)

    def _insert_events(self, rows: list[tuple[Any, ...]]) -> None:
        def insert() -> None:
            with self.db.atomic():
                self.db.cursor().executemany(self._insert_sql, rows)

        self._retrying(insert, None)

    def _retrying(self, fn: Callable[[], T], give_up_after: float | None) -> T:
        """Run ``fn`` on the writer thread, retrying it while it raises a retryable error.

        ``fn`` must be a whole transaction: a failed attempt has rolled back and left nothing behind.
        Retries stop after ``give_up_after`` seconds (``None``: never), or at once when a shutdown
        abandons the journal (:class:`JournalAbandoned`).
        """
        try:
            return fn()  # the usual case, without building the retry machinery for every job
        except _RETRYABLE as exc:
            self._log_failure(exc, 1)
        limit: Any = tenacity.stop_never if give_up_after is None else tenacity.stop_after_delay(give_up_after)

        def stop(state: tenacity.RetryCallState) -> bool:
            return self._abandon.is_set() or bool(limit(state))

        def wait(seconds: float) -> None:
            if self._abandon.wait(seconds):  # a shutdown interrupts the pause
                raise JournalAbandoned("the journal is shutting down")

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_RETRYABLE),
            wait=tenacity.wait_exponential(multiplier=0.005, max=_MAX_RETRY_WAIT),
            stop=stop, sleep=wait, before_sleep=self._log_retry, reraise=True)
        return retrying(fn)

    def _log_retry(self, state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        self._log_failure(error, state.attempt_number + 1)

    def _log_failure(self, error: BaseException | None, attempts: int) -> None:
        now = time.monotonic()
        if now - self._last_retry_log >= 5.0:  # a long lock would otherwise flood the log
            self._last_retry_log = now
            log.warning("database write failed (%s); retrying (attempt %d)", error, attempts)

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
        never overtakes it. A transaction that fails with an ``OperationalError`` (e.g. another
        process holds the database locked past ``busy_timeout``) is rolled back and run again, for up
        to :data:`WRITE_RETRY_SECONDS`; ``fn`` must therefore touch nothing but the database.

        Raises:
            Whatever ``fn`` raises; an ``OperationalError`` only once the retries are exhausted.
        """
        await self._flush_pending()

        def in_transaction() -> T:
            with self.db.atomic():
                return fn()

        return await self._writer.call(lambda: self._retrying(in_transaction, WRITE_RETRY_SECONDS))

    async def read(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` (peewee queries) in a worker thread with its own connection."""
        return await trio.to_thread.run_sync(fn, limiter=self._readers)
