"""Who waits for whom on the event path.

- A reader that stops reading waits alone: the agent keeps its pace, other readers keep theirs, the
  daemon's memory stays bounded, and the laggard later catches up from storage, missing nothing.
- A journal that cannot write makes the *agent* wait (it blocks writing its output) and loses
  nothing, even when the database stays locked past SQLite's ``busy_timeout``.
- A daemon killed in the middle of a burst leaves every session's stored ``seq``\\ s gap-free.
"""

from __future__ import annotations

import socket
import sqlite3
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import h11
import httpx
import psutil
import trio

from tests.harness import DaemonProcess, command_task
from tests.integration.sse import API, SSEParser, read_stream

#: Start-up of a daemon, its agents and the readers on a loaded 2-core machine: generous.
DEADLINE = 60


def _seconds(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def printer(lines: int, pad: int) -> list[str]:
    """A command agent printing ``lines`` JSON lines of about ``pad`` bytes, as fast as it can."""
    program = (f"import sys\nw = sys.stdout.write\npad = 'x' * {pad}\n"
               f"for i in range(1, {lines + 1}): w('{{\"i\": %d, \"pad\": \"%s\"}}\\n' % (i, pad))\n")
    return [sys.executable, "-c", program]


async def start(data_dir: Path, **kwargs: Any) -> DaemonProcess:
    return await trio.to_thread.run_sync(lambda: DaemonProcess(data_dir, "--allow-command-agent", **kwargs).start())


class StalledReader:
    """An SSE connection that sends its request and then reads nothing until told to drain.

    A raw socket with a tiny receive buffer: the daemon's sends to it block almost at once.
    """

    def __init__(self, url: str, session_id: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect((host, int(port)))
        self.http = h11.Connection(h11.CLIENT)
        request = h11.Request(method="GET", target=f"{API}/sessions/{session_id}/events",
                              headers=[("Host", host), ("Accept", "text/event-stream")])
        self.sock.sendall(self.http.send(request) + self.http.send(h11.EndOfMessage()))

    def drain(self, timeout: float) -> list[Any]:
        """Read everything until the server ends the stream; return the frames (blocking)."""
        parser = SSEParser()
        frames: list[Any] = []
        self.sock.settimeout(timeout)
        while True:
            event = self.http.next_event()
            if event is h11.NEED_DATA:
                self.http.receive_data(self.sock.recv(1 << 20))
            elif isinstance(event, h11.Data):
                frames += parser.feed(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                return frames

    def close(self) -> None:
        self.sock.close()


async def test_a_reader_that_never_reads_slows_nobody_and_memory_stays_bounded(tmp_path: Path) -> None:
    lines, pad = 20_000, 2000  # ~44 MB of SSE for the stalled reader: far more than socket buffers hold
    d = await start(tmp_path / "data")
    daemon = psutil.Process(d.proc.pid)  # type: ignore[union-attr]
    try:
        async with d.aclient() as client:
            before = daemon.memory_info().rss
            # Two identical agents side by side: one with a stalled reader, one without. Running them
            # together exposes both to the same load, so their run times compare fairly.
            stalled_id = (await client.post(f"{API}/tasks", json=command_task(printer(lines, pad)))).json()["id"]
            plain_id = (await client.post(f"{API}/tasks", json=command_task(printer(lines, pad)))).json()["id"]
            stalled = await trio.to_thread.run_sync(StalledReader, d.url, stalled_id)
            peak = before
            reads: dict[str, Any] = {}

            async def read(session_id: str) -> None:
                reads[session_id] = await read_stream(client, session_id)

            async def sample_memory(stop: trio.Event) -> None:
                nonlocal peak
                while not stop.is_set():
                    peak = max(peak, daemon.memory_info().rss)
                    with trio.move_on_after(0.02):
                        await stop.wait()

            with trio.fail_after(DEADLINE):
                finished = trio.Event()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(sample_memory, finished)
                    async with trio.open_nursery() as readers:
                        readers.start_soon(read, stalled_id)
                        readers.start_soon(read, plain_id)
                    finished.set()
            sessions = {sid: (await client.get(f"{API}/sessions/{sid}")).json() for sid in (stalled_id, plain_id)}
            # Only now does the stalled reader read: it catches up from storage, missing nothing.
            with trio.fail_after(DEADLINE):
                caught_up = await trio.to_thread.run_sync(stalled.drain, DEADLINE)
            stalled.close()
    finally:
        await trio.to_thread.run_sync(d.stop)

    total = lines + 3  # provisioning, running, the lines, completed
    for sid in (stalled_id, plain_id):
        assert sessions[sid]["status"] == "completed"
        assert [f.id for f in reads[sid].numbered][:total] == list(range(1, total + 1))
    assert [f.id for f in caught_up if f.id is not None][:total] == list(range(1, total + 1))
    run = {sid: _seconds(s["endedAt"]) - _seconds(s["startedAt"]) for sid, s in sessions.items()}
    assert run[stalled_id] <= 1.5 * run[plain_id], run
    # Holding what the laggard has not read would cost ~85 MB here (events and their encodings).
    assert peak - before < 64 * 2**20, f"daemon RSS grew by {(peak - before) / 2**20:.0f} MiB"


async def test_a_slow_journal_blocks_the_agent_and_loses_nothing(tmp_path: Path) -> None:
    lines = 30_000
    counter, pidfile = tmp_path / "counter", tmp_path / "pid"
    # The agent records how far it got after every line it managed to write (one pwrite, no buffering).
    program = (
        "import os, sys\n"
        f"open({str(pidfile)!r}, 'w').write(str(os.getpid()))\n"
        f"fd = os.open({str(counter)!r}, os.O_WRONLY | os.O_CREAT, 0o644)\n"
        f"for i in range(1, {lines + 1}):\n"
        "    sys.stdout.write('{\"line\": %d}\\n' % i)\n"
        "    sys.stdout.flush()\n"
        "    os.pwrite(fd, b'%12d' % i, 0)\n")

    def progress() -> int:
        try:
            return int(counter.read_bytes() or b"0")
        except (FileNotFoundError, ValueError):
            return 0

    d = await start(tmp_path / "data")
    db = tmp_path / "data" / "harbor.db"
    lock = sqlite3.connect(db, timeout=30, isolation_level=None, check_same_thread=False)
    try:
        async with d.aclient() as client:
            session_id = (await client.post(f"{API}/tasks", json=command_task([sys.executable, "-c", program]))
                          ).json()["id"]
            with trio.fail_after(DEADLINE):  # the agent is well under way: its 1,000th line is an event
                await read_stream(client, session_id, last_event_id=1000, hang_up_at_id=1001)
            agent = psutil.Process(int(pidfile.read_text()))
            await trio.to_thread.run_sync(lock.execute, "BEGIN IMMEDIATE")  # the journal can no longer write
            locked_at = time.monotonic()

            # The agent soon blocks: its output count stops growing and it sleeps (in write()).
            with trio.fail_after(20):
                stable_since, seen = time.monotonic(), progress()
                while time.monotonic() - stable_since < 1.0 or agent.status() != psutil.STATUS_SLEEPING:
                    await trio.sleep(0.05)
                    if progress() != seen:
                        stable_since, seen = time.monotonic(), progress()
            blocked_at = seen
            assert blocked_at < lines / 2, "the agent should have been held back long before its end"

            # Reads still work while the journal waits; a new task's write waits with it.
            page = await client.get(f"{API}/sessions/{session_id}/events", params={"perPage": 1})
            assert page.status_code == 200
            assert page.json()["total"] < blocked_at
            created: list[httpx.Response] = []

            async def create_task() -> None:
                created.append(await client.post(f"{API}/tasks", json=command_task(["true"]),
                                                 timeout=DEADLINE))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(create_task)
                # Hold the lock past the daemon's 5 s busy_timeout: its writes fail and must be retried.
                await trio.sleep(max(0.0, 6.5 - (time.monotonic() - locked_at)))
                assert progress() == blocked_at
                assert not created
                await trio.to_thread.run_sync(lock.execute, "COMMIT")
            assert created[0].status_code == 201, created[0].text

            with trio.fail_after(DEADLINE):
                read = await read_stream(client, session_id)
            assert read.numbered[-1].data["status"] == "completed"
    finally:
        lock.close()
        await trio.to_thread.run_sync(d.stop)

    assert "database write failed" in d.log()  # it did hit the lock, and retried
    rows = sqlite3.connect(db).execute("SELECT seq, kind, data FROM event WHERE session_id = ? ORDER BY seq",
                                       (session_id,)).fetchall()
    assert [seq for seq, _, _ in rows] == list(range(1, lines + 4))
    import json
    messages = [json.loads(data)["message"] for _, kind, data in rows if kind == "log"]
    assert messages == [f'{{"line": {i}}}' for i in range(1, lines + 1)]


async def test_sigkill_during_a_burst_leaves_every_sessions_seqs_contiguous(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    d = await start(data_dir)
    endless = [sys.executable, "-c", "import sys\nw = sys.stdout.write\ni = 0\nwhile True:\n"
               "    i += 1\n    w('{\"n\": %d}\\n' % i)\n"]
    try:
        async with d.aclient() as client:
            r = await client.post(f"{API}/tasks", json=command_task(endless, count=3))
            ids = r.json()["session_ids"]
            with trio.fail_after(DEADLINE):
                for sid in ids:  # every session is in full flow
                    await read_stream(client, sid, last_event_id=5000, hang_up_at_id=5001)
    finally:
        await trio.to_thread.run_sync(d.kill)

    db = data_dir / "harbor.db"

    def seqs() -> dict[str, list[int]]:
        with sqlite3.connect(db) as con:
            return {sid: [s for (s,) in con.execute(
                "SELECT seq FROM event WHERE session_id = ? ORDER BY seq", (sid,))] for sid in ids}

    after_crash = seqs()
    for sid, stored in after_crash.items():
        assert len(stored) >= 5000, sid
        assert stored == list(range(1, len(stored) + 1)), sid

    # The next daemon marks them failed with one more event each: still gap-free; the agents are gone.
    d2 = await start(data_dir)
    try:
        async with d2.aclient() as client:
            for sid in ids:
                session = (await client.get(f"{API}/sessions/{sid}")).json()
                assert session["status"] == "failed"
                assert session["error"] == "daemon restarted"
    finally:
        await trio.to_thread.run_sync(d2.stop)
    for sid, stored in seqs().items():
        assert stored == list(range(1, len(after_crash[sid]) + 2)), sid
    with sqlite3.connect(db) as con:
        pids = [pid for (pid,) in con.execute(f"SELECT pid FROM session WHERE id IN ({','.join('?' * 3)})", ids)]
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
