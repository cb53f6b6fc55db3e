"""Session events: the typed :class:`Event`, and the :class:`EventBuffer` every session owns.

An event is what a session did, in the vocabulary of ``api-contract.md`` ("Events"): its ``kind``
is the spec ``type`` (``status``, ``log``, ``thought``, ``tool_use``, ``tool_result``, ``file_edit``,
``diff``, ``progress``, ``snapshot``, ``message``) and ``data`` holds the kind's own fields in the
contract's spelling. ``seq`` is per-session, gap-free and increasing from 1; it is the SSE ``id:``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple, Protocol, cast

import trio


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


# The last whole second formatted, as one tuple (replaced, never mutated: threads format history
# timestamps too). Events come in bursts within a second, and strftime was most of the cost of a
# timestamp, itself a fifth of the SSE hot path.
_iso_second: tuple[int, str] = (-1, "")


def iso_ts(ts: float) -> str:
    """Format unix seconds as the contract's ISO-8601 UTC string with milliseconds (truncated)."""
    global _iso_second
    # One integer split, so that .9996 s cannot round up into the next second's prefix.
    second, ms = divmod(math.floor(ts * 1000), 1000)
    cached = _iso_second
    if cached[0] != second:
        cached = _iso_second = (second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S."))
    return f"{cached[1]}{ms:03d}Z"


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
    # Encodings, made on first use and shared by every reader: an event is serialised once, not
    # once per connected client. Valid because an event never changes once it has its seq.
    _json: str | None = field(default=None, init=False, repr=False, compare=False)
    _frame: bytes | None = field(default=None, init=False, repr=False, compare=False)

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

    def wire_json(self) -> str:
        """:meth:`wire` as compact JSON text (computed once)."""
        if self._json is None:
            self._json = json.dumps(self.wire(), separators=(",", ":"), ensure_ascii=False)
        return self._json

    def sse_frame(self) -> bytes:
        """The event as one SSE frame: ``id:`` (its seq), ``event:`` (:attr:`sse_name`), ``data:``
        (:meth:`wire_json`), blank line (computed once)."""
        if self._frame is None:
            self._frame = f"id: {self.seq}\nevent: {self.sse_name}\ndata: {self.wire_json()}\n\n".encode()
        return self._frame


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


# One catch-up batch and one store read: big enough that a reader far behind rejoins in a few round
# trips, small enough that one SSE chunk stays around 100 KB and one store read stays a few ms.
_CATCHUP_BATCH = 500


class EventBuffer:
    """A session's events: numbers them, keeps the newest, hands them to the store and to live readers.

    Storage is lossless and pushes back: at most ``max_unstored`` events may be appended and not yet
    committed by the store; past that, :meth:`append` waits for the store's acknowledgement. Readers
    never push back: each live subscriber has a bounded queue filled with ``send_nowait``; one that is
    full is marked behind and its queue closed, and the subscriber reads the gap back itself (from the
    ring, or from the store for what already left the ring) and rejoins live.

    Invariant: ``ring_size >= max_unstored``, so every event the store has not committed yet is still
    in the ring, and any range of seqs can be read back from ring + store.

    Attributes:
        session_id: the session the events belong to.
        last_seq: the highest seq assigned (``start_seq`` before the first append).
        stored_seq: the highest seq the store has committed, with every earlier one.
        closed: :meth:`close` was called; no more appends.
    """

    __slots__ = ("_ack", "_acked", "_enqueue", "_live", "_max_unstored", "_ring", "_ring_size",
                 "_start_seq", "_store", "_subscriber_queue", "closed", "last_seq", "session_id",
                 "stored_seq")

    def __init__(self, session_id: str, store: EventStore, *, start_seq: int = 0, ring_size: int = 1024,
                 max_unstored: int = 512, subscriber_queue: int = 1024) -> None:
        """Create the buffer of one session.

        Args:
            session_id: the session's id, stamped on every event.
            store: where events are committed and read back from.
            start_seq: the last seq the session already has (the store holds 1..start_seq); the next
                event gets ``start_seq + 1``.
            ring_size: how many of the newest events stay in memory for replay.
            max_unstored: how many events may wait for the store before :meth:`append` waits.
            subscriber_queue: capacity of each live subscriber's queue. A reader this far behind is
                cut off from live and catches up from ring + store, so it bounds memory per reader;
                1024 rides out a reader's scheduling hiccups at tens of thousands of events/s.

        Raises:
            ValueError: a size is below 1, or ``ring_size < max_unstored``.
        """
        if min(ring_size, max_unstored, subscriber_queue) < 1:
            raise ValueError("ring_size, max_unstored and subscriber_queue must be at least 1")
        if ring_size < max_unstored:
            # Otherwise an event could leave the ring before the store has it: a lagging reader
            # would find a hole.
            raise ValueError(f"ring_size ({ring_size}) must be >= max_unstored ({max_unstored})")
        self.session_id = session_id
        self.last_seq = start_seq
        self.stored_seq = start_seq
        self.closed = False
        self._store = store
        self._enqueue = store.enqueue
        self._ack = self._stored  # one bound method for every enqueue, not one per event
        self._start_seq = start_seq
        # Slot ``seq % ring_size`` holds event ``seq``; a slot is always written before it is read.
        self._ring: list[Event] = cast(list[Event], [None] * ring_size)
        self._ring_size = ring_size
        self._max_unstored = max_unstored
        self._subscriber_queue = subscriber_queue
        self._live: tuple[EventSubscription, ...] = ()  # replaced, never mutated: safe to iterate
        self._acked = trio.lowlevel.ParkingLot()

    async def append(self, kind: str, data: dict[str, Any]) -> Event:
        """Append one event: give it the next seq and the current time, keep it, store it, publish it.

        ``data`` is kept as is (not copied): the caller must not change it afterwards.

        Returns:
            The event, with its ``seq`` and ``ts``.

        Raises:
            trio.ClosedResourceError: the buffer is closed (also if it closes while waiting).

        A checkpoint only when it waits for the store (``max_unstored`` events uncommitted); then a
        cancellation leaves nothing appended. Otherwise it completes without yielding.
        """
        if self.closed or self.last_seq - self.stored_seq >= self._max_unstored:
            await self._wait_for_room()
        seq = self.last_seq + 1
        event = Event(self.session_id, kind, data, seq, time.time())
        # In the ring before the store sees it: an acknowledgement (which publishes from the ring)
        # may come back at once.
        self._ring[seq % self._ring_size] = event
        self.last_seq = seq
        try:
            self._enqueue(event, self._ack)
        except BaseException:
            self.last_seq = seq - 1  # the store refused it: it was never appended
            raise
        return event

    async def append_many(self, drafts: Iterable[Draft]) -> list[Event]:
        """Append a batch of events, in order, as :meth:`append` does (what the output pump uses).

        The events of one batch share one timestamp. A batch larger than the room left before the
        store's limit is appended in parts, waiting for the store between them.

        Returns:
            The events, with their ``seq`` and ``ts``.

        Raises:
            trio.ClosedResourceError: the buffer is closed (also if it closes while waiting); the
                parts appended before stay appended.

        A checkpoint only when it waits for the store; a cancellation then leaves the parts appended
        before in place and the rest not appended.
        """
        pending = drafts if isinstance(drafts, Sequence) else list(drafts)
        events: list[Event] = []
        done, total = 0, len(pending)
        while done < total:
            room = self._max_unstored - (self.last_seq - self.stored_seq)
            if self.closed or room <= 0:
                await self._wait_for_room()
                continue
            part = pending[done:done + room] if done or room < total else pending
            self._append_part(part, events)
            done += len(part)
        return events

    def _append_part(self, drafts: Sequence[Draft], out: list[Event]) -> None:
        """Append ``drafts`` (which fit under the store's limit) to ``out``."""
        session_id, ring, size, enqueue, ack = (self.session_id, self._ring, self._ring_size,
                                                self._enqueue, self._ack)
        ts = time.time()
        seq = self.last_seq
        for kind, data in drafts:
            seq += 1
            event = Event(session_id, kind, data, seq, ts)
            ring[seq % size] = event  # before the store: its acknowledgement publishes from the ring
            self.last_seq = seq
            try:
                enqueue(event, ack)
            except BaseException:
                self.last_seq = seq - 1
                raise
            out.append(event)

    async def _wait_for_room(self) -> None:
        """Wait until the store has room for one more event; raise if the buffer is closed."""
        while True:
            if self.closed:
                raise trio.ClosedResourceError(f"event buffer of session {self.session_id} is closed")
            if self.last_seq - self.stored_seq < self._max_unstored:
                return
            await self._acked.park()

    def _stored(self, seq: int) -> None:
        """The store's acknowledgement: ``seq`` and every earlier event are committed.

        This is where readers get events: only committed ones, so nothing a reader has seen can be
        lost or renumbered by a crash (recovery numbers its ``failed`` status after the last stored
        event). A reader whose queue is full is cut off; it catches up by itself.
        """
        if seq <= self.stored_seq:  # acks of different batches may cross; stored_seq only grows
            return
        new = self._ring_slice(self.stored_seq + 1, seq) if self._live else ()
        self.stored_seq = seq
        for sub in self._live:
            send = sub._send.send_nowait
            try:
                for event in new:
                    send(event)
            except (trio.WouldBlock, trio.BrokenResourceError):
                self._cut_off(sub)
        if self.closed and seq >= self.last_seq:
            self._end_live()
        if self._acked:
            self._acked.unpark_all()

    def _end_live(self) -> None:
        """Everything is committed and nothing more will come: live readers drain and end."""
        for sub in self._live:
            sub._send.close()
        self._live = ()

    def _cut_off(self, sub: EventSubscription) -> None:
        """Mark ``sub`` behind: close its live queue (it drains it, then catches up by itself)."""
        sub.lagged += 1
        self._unregister(sub)
        sub._send.close()

    def _register(self, sub: EventSubscription) -> None:
        self._live = (*self._live, sub)

    def _unregister(self, sub: EventSubscription) -> None:
        if sub in self._live:
            self._live = tuple(s for s in self._live if s is not sub)

    def _first_in_ring(self) -> int:
        """The lowest seq still in the ring (``last_seq + 1`` when it is empty)."""
        return max(self._start_seq, self.last_seq - self._ring_size) + 1

    def _ring_slice(self, lo: int, hi: int) -> list[Event]:
        """Events ``lo..hi`` (inclusive), all of which must be in the ring."""
        if hi < lo:
            return []
        size = self._ring_size
        a, b = lo % size, hi % size
        if a <= b:
            return self._ring[a:b + 1]
        return self._ring[a:] + self._ring[:b + 1]

    def recent(self, n: int = 3) -> list[Event]:
        """The newest ``n`` events still in the ring, newest last. Not a checkpoint."""
        n = min(n, self.last_seq - self._first_in_ring() + 1)
        return self._ring_slice(self.last_seq - n + 1, self.last_seq) if n > 0 else []

    def subscribe(self, after_seq: int = 0) -> EventSubscription:
        """A reader of every event with ``seq > after_seq``: the past ones, then live ones as they come.

        Use it as ``async with buffer.subscribe(k) as sub: async for batch in sub: ...``; it registers
        for live events on entering.
        """
        return EventSubscription(self, after_seq)

    def close(self) -> None:
        """No more appends: subscribers receive what is left as it is committed, then end; waiting appenders raise
        :class:`trio.ClosedResourceError`. Idempotent; not a checkpoint."""
        if self.closed:
            return
        self.closed = True
        if self.stored_seq >= self.last_seq:
            self._end_live()
        # else: the last acknowledgement delivers the rest and ends them (_stored)
        self._acked.unpark_all()

    async def read_range(self, after_seq: int, upto_seq: int) -> list[Event]:
        """The events with ``after_seq < seq <= upto_seq`` (and ``<= last_seq``), ascending.

        What is still in the ring comes from the ring, taken at the call; the older part comes from
        the store, read in chunks. Events the store no longer has are missing from the result.

        Always a checkpoint; cancellable (nothing changes).
        """
        await trio.lowlevel.checkpoint()
        upto = min(upto_seq, self.last_seq)
        first_in_ring = self._first_in_ring()
        # Take the ring's part before awaiting the store: the ring moves on meanwhile, and what leaves
        # it is committed already (last_seq - stored_seq <= max_unstored <= ring_size).
        from_ring = self._ring_slice(max(after_seq + 1, first_in_ring), upto)
        stop = min(upto, first_in_ring - 1)
        if stop <= after_seq:
            return from_ring
        older: list[Event] = []
        cursor = after_seq
        while cursor < stop:
            chunk = await self._store.read_events(self.session_id, cursor, min(_CATCHUP_BATCH, stop - cursor))
            if not chunk:
                break
            if chunk[-1].seq > stop:
                chunk = [e for e in chunk if e.seq <= stop]
                if not chunk:
                    break
            older.extend(chunk)
            cursor = chunk[-1].seq
        older.extend(from_ring)
        return older


class EventSubscription:
    """One reader of a buffer's events: an async context manager and an async iterator of batches.

    Entering registers it for live events (remembering ``L = buffer.last_seq``). Iterating yields
    non-empty lists of events in seq order, each event exactly once: first the past ones
    ``(after_seq, L]`` in batches of at most 500, then live ones, one awaited event plus whatever is
    already queued. If the buffer cuts it off (its queue was full), it reads the gap back with
    :meth:`EventBuffer.read_range` and rejoins live. Iteration ends once the buffer is closed and
    every event has been delivered. Leaving the context unregisters it. One task iterates it.

    Attributes:
        lagged: how many times it fell behind and was cut off from live.
    """

    __slots__ = ("_buffer", "_delivered", "_phase", "_recv", "_send", "_target", "lagged")

    def __init__(self, buffer: EventBuffer, after_seq: int) -> None:
        self._buffer = buffer
        self._delivered = after_seq  # the highest seq handed to the reader
        self._target = after_seq  # catch up through the ring/store up to here before reading live
        self._send: trio.MemorySendChannel[Event]
        self._recv: trio.MemoryReceiveChannel[Event] | None = None
        self._phase = "new"  # -> "open" on entering -> "done" on leaving
        self.lagged = 0

    @property
    def queued(self) -> int:
        """How many live events wait in its queue (at most the buffer's ``subscriber_queue``)."""
        return self._recv.statistics().current_buffer_used if self._recv is not None else 0

    async def __aenter__(self) -> EventSubscription:
        if self._phase != "new":
            raise RuntimeError("an EventSubscription can be entered only once")
        self._phase = "open"
        self._join()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._phase = "done"
        self._buffer._unregister(self)
        if self._recv is not None:
            self._send.close()
            self._recv.close()
            self._recv = None

    def _join(self) -> None:
        """(Re)join live: from now on live events go to a fresh queue; catch up to the present first.

        Not a checkpoint, so no event can slip between noting ``last_seq`` and registering.
        """
        buffer = self._buffer
        if self._recv is not None:
            self._recv.close()
        # Readers see committed events only: catch up to stored_seq; the rest arrives live as the
        # store acknowledges it.
        self._target = buffer.stored_seq
        if buffer.closed and buffer.stored_seq >= buffer.last_seq:
            self._recv = None  # nothing more will come: deliver up to last_seq, then end
            return
        self._send, self._recv = trio.open_memory_channel[Event](buffer._subscriber_queue)
        buffer._register(self)

    def __aiter__(self) -> EventSubscription:
        return self

    async def __anext__(self) -> list[Event]:
        """The next batch of events.

        Raises:
            StopAsyncIteration: the buffer is closed and everything has been delivered.
            RuntimeError: used outside ``async with``.

        Always a checkpoint; a cancellation delivers nothing and loses nothing.
        """
        if self._phase != "open":
            raise RuntimeError("iterate an EventSubscription inside `async with`")
        while True:
            if self._delivered < self._target:
                upto = min(self._target, self._delivered + _CATCHUP_BATCH)
                batch = await self._buffer.read_range(self._delivered, upto)
                # An empty batch means the store no longer has those events: they cannot be replayed.
                self._delivered = batch[-1].seq if batch else upto
                if batch:
                    return batch
                continue
            recv = self._recv
            if recv is None:
                raise StopAsyncIteration
            try:
                first = await recv.receive()
            except trio.EndOfChannel:  # cut off for lagging, or the buffer closed
                self._join()
                continue
            batch = [first]
            try:
                while True:
                    batch.append(recv.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                pass
            if first.seq <= self._delivered:  # only when subscribed after_seq > last_seq
                batch = [e for e in batch if e.seq > self._delivered]
                if not batch:
                    continue
            self._delivered = batch[-1].seq
            return batch
