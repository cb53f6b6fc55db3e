"""EventBuffer and EventSubscription: numbering, backpressure from the store, lossless lagging readers."""

from __future__ import annotations

import bisect
import random
import time
from collections.abc import Callable, Iterable

import pytest
import trio
import trio.testing

from actors.events import Draft, Event, EventBuffer, EventKind, EventSubscription

SID = "01JSESSION"


class FakeStore:
    """In-memory :class:`~actors.events.EventStore` (the journal is an external port here).

    By default it commits and acknowledges every event at once. With ``hold_acks`` it keeps accepted
    events uncommitted (invisible to ``read_events``) until :meth:`release`, which is how the tests
    make the store slow without sleeping.
    """

    def __init__(self, *, hold_acks: bool = False, preload: Iterable[Event] = ()) -> None:
        self.hold_acks = hold_acks
        self.committed: list[Event] = list(preload)
        self.pending: list[Event] = []
        self.reads: list[tuple[int, int]] = []  # (after_seq, limit) of each read_events call
        self.ack: Callable[[int], None] | None = None  # the buffer's callback, to ack by hand

    def enqueue(self, event: Event, stored: Callable[[int], None]) -> None:
        self.ack = stored
        if self.hold_acks:
            self.pending.append(event)
        else:
            self.committed.append(event)
            stored(event.seq)

    def release(self, n: int | None = None) -> None:
        """Commit the oldest ``n`` held events (all by default) and acknowledge them in one ack."""
        n = len(self.pending) if n is None else n
        if n <= 0 or not self.pending:
            return
        batch, self.pending = self.pending[:n], self.pending[n:]
        self.committed.extend(batch)
        assert self.ack is not None
        self.ack(batch[-1].seq)

    async def read_events(self, session_id: str, after_seq: int, limit: int) -> list[Event]:
        assert session_id == SID
        self.reads.append((after_seq, limit))
        await trio.lowlevel.checkpoint()  # the real one reads in a worker thread
        i = bisect.bisect_right(self.committed, after_seq, key=lambda e: e.seq)
        return self.committed[i:i + limit]


def seqs(events: Iterable[Event]) -> list[int]:
    return [e.seq for e in events]


async def read_all(sub: EventSubscription) -> list[int]:
    out: list[int] = []
    async for batch in sub:
        assert batch, "a batch is never empty"
        out.extend(e.seq for e in batch)
    return out


def drafts(n: int) -> list[Draft]:
    return [Draft(EventKind.LOG, {"message": f"line {i}"}) for i in range(n)]


async def test_seq_is_gap_free_from_start_seq() -> None:
    buf = EventBuffer(SID, FakeStore(), start_seq=41)
    first = await buf.append(EventKind.STATUS, {"status": "running"})
    batch = await buf.append_many(drafts(5))
    last = await buf.append(EventKind.THOUGHT, {"thought": "hm"})
    assert seqs([first, *batch, last]) == list(range(42, 49))
    assert buf.last_seq == buf.stored_seq == 48
    assert all(e.session_id == SID and e.ts > 0 for e in [first, *batch, last])
    assert seqs(buf.recent()) == [46, 47, 48]
    assert seqs(buf.recent(100)) == list(range(42, 49))
    assert buf.recent(0) == []


@pytest.mark.parametrize(
    ("kind", "data", "sse_name"),
    [
        (EventKind.THOUGHT, {"thought": "plan"}, "thinking"),
        (EventKind.TOOL_USE, {"tool_name": "bash"}, "tool_execution"),
        (EventKind.TOOL_RESULT, {"tool_name": "bash", "status": "ok"}, "tool_execution"),
        (EventKind.LOG, {"message": "x", "last_line": "x"}, "tool_execution"),
        (EventKind.LOG, {"message": "x"}, "log"),
        (EventKind.MESSAGE, {"message": "hi"}, "log"),
        (EventKind.STATUS, {"status": "running"}, "status"),
    ],
)
async def test_wire_and_sse_name_of_each_kind(kind: str, data: dict[str, str], sse_name: str) -> None:
    buf = EventBuffer(SID, FakeStore())
    await buf.append(EventKind.STATUS, {"status": "queued"})
    event = await buf.append(kind, data)
    assert event.sse_name == sse_name
    wire = event.wire()
    assert wire["type"] == kind
    assert wire["sessionId"] == SID
    assert wire["seq"] == 2
    assert wire["ts"].endswith("Z")
    assert {k: wire[k] for k in data} == data


async def test_ring_must_hold_every_unstored_event() -> None:
    with pytest.raises(ValueError, match="ring_size"):
        EventBuffer(SID, FakeStore(), ring_size=10, max_unstored=11)


async def test_append_waits_exactly_after_max_unstored_events() -> None:
    store = FakeStore(hold_acks=True)
    buf = EventBuffer(SID, store, ring_size=16, max_unstored=8)
    # Inside a cancelled scope every checkpoint raises Cancelled: the appends that get through
    # did not wait, the one that is cancelled did.
    with trio.CancelScope() as cs:
        cs.cancel()
        for _ in range(8):
            await buf.append(EventKind.LOG, {"message": "x"})
        await buf.append(EventKind.LOG, {"message": "one too many"})
    assert cs.cancelled_caught
    assert buf.last_seq == 8  # the cancelled append left nothing behind
    assert buf.stored_seq == 0

    done = trio.Event()

    async def appender() -> None:
        await buf.append(EventKind.LOG, {"message": "ninth"})
        await buf.append_many(drafts(10))
        done.set()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(appender)
            await trio.testing.wait_all_tasks_blocked()
            assert buf.last_seq == 8
            assert not done.is_set()
            store.release(1)  # room for exactly one: the ninth goes in, the batch waits again
            await trio.testing.wait_all_tasks_blocked()
            assert buf.last_seq == 9
            assert not done.is_set()
            while not done.is_set():
                store.release()
                await trio.testing.wait_all_tasks_blocked()
    store.release()
    assert seqs(store.committed) == list(range(1, 20))
    assert buf.stored_seq == buf.last_seq == 19


async def test_append_many_larger_than_the_store_limit_goes_in_parts() -> None:
    store = FakeStore(hold_acks=True)
    buf = EventBuffer(SID, store, ring_size=8, max_unstored=4)
    async with trio.open_nursery() as nursery:
        result: list[Event] = []

        async def appender() -> None:
            result.extend(await buf.append_many(drafts(10)))

        nursery.start_soon(appender)
        while not result:
            await trio.testing.wait_all_tasks_blocked()
            assert buf.last_seq - buf.stored_seq <= 4
            store.release()
    assert seqs(result) == list(range(1, 11))
    store.release()
    assert seqs(store.committed) == list(range(1, 11))


async def test_out_of_order_acks_keep_the_highest() -> None:
    store = FakeStore(hold_acks=True)
    buf = EventBuffer(SID, store)
    await buf.append_many(drafts(3))
    assert store.ack is not None
    store.ack(3)
    store.ack(2)
    assert buf.stored_seq == 3


async def test_a_reader_that_never_reads_does_not_block_appends_and_catches_up() -> None:
    store = FakeStore()
    buf = EventBuffer(SID, store)  # defaults: ring 1024, max_unstored 512, queue 1024
    async with buf.subscribe() as stalled:
        with trio.CancelScope() as cs:
            cs.cancel()  # any wait inside append would raise Cancelled here
            for i in range(20_000):
                await buf.append(EventKind.LOG, {"message": f"line {i}"})
                assert stalled.queued <= 1024
        assert not cs.cancelled_caught
        assert buf.last_seq == 20_000
        assert stalled.lagged == 1
        got = await read_all_until(stalled, 20_000)
        assert got == list(range(1, 20_001))
        # The catch-up came from the store for what left the ring, in chunks of at most 500.
        assert store.reads
        assert all(limit <= 500 for _, limit in store.reads)
        buf.close()
        assert await read_all(stalled) == []


async def read_all_until(sub: EventSubscription, last: int) -> list[int]:
    out: list[int] = []
    with trio.fail_after(10):
        async for batch in sub:
            out.extend(e.seq for e in batch)
            if out[-1] >= last:
                break
    return out


async def test_two_readers_one_stalled_the_other_gets_everything_live() -> None:
    buf = EventBuffer(SID, FakeStore(), ring_size=64, max_unstored=32, subscriber_queue=16)
    received: list[int] = []
    async with buf.subscribe() as stalled, buf.subscribe() as reader, trio.open_nursery() as nursery:

        async def read() -> None:
            received.extend(await read_all(reader))

        nursery.start_soon(read)
        for i in range(5_000):
            await buf.append(EventKind.LOG, {"message": f"line {i}"})
            await trio.lowlevel.checkpoint()  # the pump yields between reads of the pipe
        buf.close()
    assert received == list(range(1, 5_001))
    assert reader.lagged == 0
    assert stalled.lagged == 1
    assert stalled.queued <= 16


async def test_close_lets_readers_drain_then_end_and_refuses_appends() -> None:
    store = FakeStore(hold_acks=True)
    buf = EventBuffer(SID, store, ring_size=8, max_unstored=4)
    await buf.append_many(drafts(3))
    async with buf.subscribe() as sub:
        await buf.append_many(drafts(1))  # fills the store's room: the next append waits
        outcome: list[BaseException] = []

        async def blocked_appender() -> None:
            try:
                await buf.append(EventKind.LOG, {"message": "late"})
            except trio.ClosedResourceError as exc:
                outcome.append(exc)

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(blocked_appender)
                await trio.testing.wait_all_tasks_blocked()
                buf.close()
            assert len(outcome) == 1
            store.release()
            assert await read_all(sub) == [1, 2, 3, 4]
    with pytest.raises(trio.ClosedResourceError):
        await buf.append(EventKind.LOG, {"message": "after close"})
    with pytest.raises(trio.ClosedResourceError):
        await buf.append_many(drafts(2))
    assert buf.last_seq == 4
    async with buf.subscribe(after_seq=2) as late:  # subscribing after close: the rest, then the end
        assert await read_all(late) == [3, 4]


async def test_read_range_across_ring_and_store() -> None:
    store = FakeStore()
    buf = EventBuffer(SID, store, ring_size=16, max_unstored=8)
    await buf.append_many(drafts(1_500))
    assert seqs(await buf.read_range(0, 1_500)) == list(range(1, 1_501))
    # 1..1484 from the store in chunks of at most 500, 1485..1500 from the ring.
    assert store.reads == [(0, 500), (500, 500), (1_000, 484)]
    store.reads.clear()
    assert seqs(await buf.read_range(1_480, 1_490)) == list(range(1_481, 1_491))
    assert store.reads == [(1_480, 4)]
    store.reads.clear()
    assert seqs(await buf.read_range(1_490, 10_000)) == list(range(1_491, 1_501))  # clamped to last_seq
    assert seqs(await buf.read_range(1_500, 1_600)) == []
    assert store.reads == []  # all in the ring


async def test_history_before_start_seq_comes_from_the_store() -> None:
    old = [Event(SID, EventKind.LOG, {"message": "old"}, seq, 1.0) for seq in range(1, 101)]
    buf = EventBuffer(SID, FakeStore(preload=old), start_seq=100, ring_size=16, max_unstored=8)
    async with buf.subscribe(after_seq=90) as sub:
        await buf.append_many(drafts(5))
        buf.close()
        assert await read_all(sub) == list(range(91, 106))


async def test_events_the_store_no_longer_has_are_skipped_not_waited_for() -> None:
    # The store holds only 1..5 of the previous run's 10 events: the reader must not hang on the hole.
    old = [Event(SID, EventKind.LOG, {"message": "old"}, seq, 1.0) for seq in range(1, 6)]
    buf = EventBuffer(SID, FakeStore(preload=old), start_seq=10)
    async with buf.subscribe() as sub:
        await buf.append_many(drafts(2))
        buf.close()
        with trio.fail_after(5):
            assert await read_all(sub) == [1, 2, 3, 4, 5, 11, 12]


async def test_subscribe_with_a_future_after_seq_skips_up_to_it() -> None:
    buf = EventBuffer(SID, FakeStore())
    await buf.append_many(drafts(3))
    async with buf.subscribe(after_seq=5) as sub:
        await buf.append_many(drafts(4))
        buf.close()
        assert await read_all(sub) == [6, 7]


async def test_iterating_outside_async_with_is_refused() -> None:
    sub = EventBuffer(SID, FakeStore()).subscribe()
    with pytest.raises(RuntimeError, match="async with"):
        await sub.__anext__()


@pytest.mark.parametrize("seed", range(25))
async def test_subscribing_mid_stream_gets_exactly_the_later_events(seed: int) -> None:
    rng = random.Random(seed)
    store = FakeStore(hold_acks=True)
    # Tiny ring, store room and queues so that lagging, catch-up from the store and rejoining all
    # happen within a few hundred events.
    buf = EventBuffer(SID, store, ring_size=16, max_unstored=8, subscriber_queue=4)
    total = 400
    results: list[tuple[int, list[int], int]] = []

    async def producer() -> None:
        while buf.last_seq < total:
            n = min(rng.randint(1, 12), total - buf.last_seq)
            if n == 1:
                await buf.append(EventKind.LOG, {"message": "one"})
            else:
                await buf.append_many(drafts(n))
            for _ in range(rng.choice((0, 0, 1, 3))):
                await trio.lowlevel.checkpoint()
        buf.close()

    async def acker() -> None:
        while not buf.closed or store.pending:
            store.release(rng.randint(0, len(store.pending)))
            await trio.lowlevel.checkpoint()

    async def reader(after_seq: int) -> None:
        async with buf.subscribe(after_seq) as sub:
            got: list[int] = []
            async for batch in sub:
                got.extend(e.seq for e in batch)
                for _ in range(rng.choice((0, 0, 1, 5, 20))):  # sometimes slow
                    await trio.lowlevel.checkpoint()
        results.append((after_seq, got, sub.lagged))

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(producer)
            nursery.start_soon(acker)
            for _ in range(6):
                for _ in range(rng.randint(0, 40)):
                    await trio.lowlevel.checkpoint()
                nursery.start_soon(reader, rng.randint(0, buf.last_seq + 2))
    assert buf.last_seq == total
    assert len(results) == 6
    for after_seq, got, _ in results:
        assert got == list(range(after_seq + 1, total + 1)), f"after_seq={after_seq}"
    assert seqs(store.committed) == list(range(1, total + 1))


async def test_a_full_queue_cuts_the_reader_off_and_it_catches_up() -> None:
    # Also guards the property test above against becoming vacuous: with these sizes readers lag.
    buf = EventBuffer(SID, FakeStore(), ring_size=16, max_unstored=8, subscriber_queue=4)
    async with buf.subscribe() as sub:
        await buf.append_many(drafts(10))
        assert sub.lagged == 1
        buf.close()
        assert await read_all(sub) == list(range(1, 11))


async def test_hundred_thousand_appends_with_one_reader() -> None:
    # A sanity run of the hot path, not a timing assertion (it takes well under a second here).
    buf = EventBuffer(SID, FakeStore())
    total = 100_000
    received = 0
    last = 0

    async def read(sub: EventSubscription) -> None:
        nonlocal received, last
        async for batch in sub:
            assert batch[0].seq == last + 1
            last = batch[-1].seq
            received += len(batch)

    start = time.perf_counter()
    with trio.fail_after(30):
        async with buf.subscribe() as sub, trio.open_nursery() as nursery:
            nursery.start_soon(read, sub)
            for i in range(total):
                await buf.append(EventKind.LOG, {"message": "x", "i": i})
                if i % 64 == 63:
                    await trio.lowlevel.checkpoint()  # the pump reads the next chunk of the pipe
            buf.close()
    elapsed = time.perf_counter() - start
    assert received == total
    assert last == total
    print(f"{total / elapsed:,.0f} appends/s with one reader ({sub.lagged} lags)")


async def test_readers_see_only_committed_events() -> None:
    # Regression: events went to live readers before the store committed them; after a daemon crash
    # recovery numbered its `failed` status after the last *stored* event, reusing a seq a reader had
    # already seen. Readers now get an event only once it is committed.
    store = FakeStore(hold_acks=True)
    buffer = EventBuffer("s1", store)
    async with buffer.subscribe(0) as sub:
        for i in range(10):
            await buffer.append("log", {"message": str(i)})
        with trio.move_on_after(0.05) as waited:
            await sub.__anext__()
        assert waited.cancelled_caught, "an uncommitted event was delivered"
        store.release(4)
        batch = await sub.__anext__()
        assert [e.seq for e in batch] == [1, 2, 3, 4]
        buffer.close()
        store.release()
        rest = [e.seq async for b in sub for e in b]
        assert rest == list(range(5, 11))
