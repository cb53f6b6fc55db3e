"""The journal on a real SQLite file: the writer never checkpoints, the journal's own checkpoints
keep the WAL from growing, and every enqueued event is committed and acknowledged in order."""

from __future__ import annotations

from pathlib import Path

import trio

from actors.events import Event
from harbor.store.database import migrate, open_database
from harbor.store.journal import Journal

SESSION = "01JOURNALTEST0000000000000"


async def _write_events(journal: Journal, first: int, count: int) -> list[int]:
    """Enqueue ``count`` events one commit at a time and return the acknowledged seqs."""
    acked: list[int] = []
    for seq in range(first, first + count):
        done = trio.Event()

        def stored(upto: int, done: trio.Event = done) -> None:
            acked.append(upto)
            done.set()

        journal.enqueue(Event(SESSION, "log", {"level": "info", "message": "x" * 200}, seq), stored)
        with trio.fail_after(10):
            await done.wait()
    return acked


async def test_the_wal_stays_bounded_by_the_journals_own_checkpoints(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    db = open_database(f"sqlite:///{path}")
    migrate(db)
    wal = Path(f"{path}-wal")
    journal = Journal(db)
    async with trio.open_nursery() as nursery:
        await nursery.start(journal.run)
        # The writer's commits never checkpoint: that fsync would stall the commit it lands in.
        autocheckpoint = await journal.write(lambda: db.execute_sql("PRAGMA wal_autocheckpoint").fetchone()[0])
        assert autocheckpoint == 0

        assert await _write_events(journal, 1, 300) == list(range(1, 301))
        frames, copied = await journal.checkpoint()
        assert frames > 300  # one commit or more per event
        assert copied == frames
        size_after_first = wal.stat().st_size

        # Once everything is checkpointed the writer starts over at the WAL's beginning: the same
        # amount of writing again leaves the file the same size, not twice as big.
        await _write_events(journal, 301, 300)
        frames_again, copied_again = await journal.checkpoint()
        assert copied_again == frames_again <= frames + 10
        assert wal.stat().st_size <= size_after_first * 1.1
        nursery.cancel_scope.cancel()

    seqs = [r[0] for r in db.execute_sql("SELECT seq FROM event WHERE session_id = ? ORDER BY seq", (SESSION,))]
    assert seqs == list(range(1, 601))
    db.close()
