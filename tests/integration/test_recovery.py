"""A daemon killed with SIGKILL while sessions run, then started again on the same data directory.

What the user sees afterwards: the sessions that were running read ``failed`` with the error
"daemon restarted" (in the session, its history and its stream, which ends), none of their processes
is left (not the agents, not their children, not an escapee that left the group), finished sessions
are untouched, and the daemon takes new work as usual. A session whose end was committed to its history
just before the crash, but not yet to its row, keeps that end: its history never gets a second one.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import psutil

from actors.process import find_marked
from tests.harness import DaemonProcess, command_task, read_sse, wait_status

API = "/api/v1"
DEADLINE = 20.0
# An agent with a child, a grandchild and an escapee in its own session (closing its stdio, so that
# nothing ties it to the dead daemon): all must be gone after the restart.
FAMILY = ("sleep 300 & sh -c 'sleep 300 & wait' & "
          "setsid sh -c 'exec sleep 300 <&- >&- 2>&-' & echo spawned; wait")


def poll_marked(sid: str, n: int) -> list[psutil.Process]:
    """psutil notifies nothing: poll /proc for the session's marked processes, under a deadline."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if len(found := find_marked(sid)) >= n:
            return found
        time.sleep(0.01)
    raise AssertionError(f"session {sid}: fewer than {n} processes")


def alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_sessions_running_when_the_daemon_is_killed_read_failed_and_leave_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = DaemonProcess(data, "--allow-command-agent").start()
    try:
        with first.client() as c:
            done = c.post(f"{API}/tasks", json=command_task(["true"])).json()["id"]
            wait_status(c, done, "completed")
            running = c.post(f"{API}/tasks", json=command_task(["sh", "-c", FAMILY], count=2)).json()["session_ids"]
            for sid in running:
                wait_status(c, sid, "running")
            paused = c.post(f"{API}/tasks", json=command_task(["sleep", "300"])).json()["id"]
            wait_status(c, paused, "running")
            assert c.post(f"{API}/sessions/{paused}/pause").json()["status"] == "paused"
            # agent sh, sleep, sh + sleep, escapee
            members = {sid: poll_marked(sid, 5) for sid in running}
            members[paused] = poll_marked(paused, 1)
    finally:
        first.kill()
    # The daemon is gone; its agents are not (nothing but the daemon could have ended them).
    assert all(alive(p) for procs in members.values() for p in procs)

    second = DaemonProcess(data, "--allow-command-agent").start()
    try:
        with second.client() as c:
            for sid in [*running, paused]:
                session = c.get(f"{API}/sessions/{sid}").json()
                assert session["status"] == "failed", session
                assert session["error"] == "daemon restarted"
                assert session["endedAt"] is not None
                assert [p for p in members[sid] if alive(p)] == []
                assert find_marked(sid) == []
                # The end is in the history, and the stream replays it and ends (no endless stream).
                with c.stream("GET", f"{API}/sessions/{sid}/events",
                              headers={"Accept": "text/event-stream"}) as r:
                    frames = [data for ident, _, data in read_sse(r) if ident is not None]
                assert frames[-1]["type"] == "status"
                assert frames[-1]["status"] == "failed"
                assert frames[-1]["reason"] == "daemon restarted"
                assert [f["seq"] for f in frames] == list(range(1, len(frames) + 1))
            assert c.get(f"{API}/sessions/{done}").json()["status"] == "completed"
            assert c.get(f"{API}/sessions", params={"status": "failed"}).json()["total"] == 3
            # Business as usual: new work runs, and the failed sessions can be deleted.
            fresh = c.post(f"{API}/tasks", json=command_task(["true"])).json()["id"]
            assert wait_status(c, fresh, {"completed", "failed"})["status"] == "completed"
            assert c.delete(f"{API}/sessions/{running[0]}").status_code == 204
    finally:
        code, _ = second.stop()
    assert code == 0


def test_an_end_committed_before_the_crash_is_kept_not_followed_by_a_second(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = DaemonProcess(data, "--allow-command-agent").start()
    try:
        with first.client() as c:
            sid = c.post(f"{API}/tasks", json=command_task(["sh", "-c", "echo bye; exit 3"])).json()["id"]
            ended = wait_status(c, sid, "failed")
            history = c.get(f"{API}/sessions/{sid}/events", params={"perPage": 100, "sort": "asc"}).json()["items"]
    finally:
        first.kill()
    # The crash window: the terminal status event is committed (the journal flushes events before any
    # write), the session row still says running.
    con = sqlite3.connect(data / "harbor.db")
    with con:
        con.execute("UPDATE session SET status = 'running', ended_at = NULL, error = NULL WHERE id = ?", (sid,))
    con.close()

    second = DaemonProcess(data, "--allow-command-agent").start()
    try:
        with second.client() as c:
            session = c.get(f"{API}/sessions/{sid}").json()
            assert session["status"] == "failed"
            assert session["error"] == ended["error"] != "daemon restarted"
            assert session["endedAt"] == next(e["ts"] for e in history if e.get("status") == "failed")
            after = c.get(f"{API}/sessions/{sid}/events", params={"perPage": 100, "sort": "asc"}).json()["items"]
            assert after == history
            statuses = [e["status"] for e in after if e["type"] == "status"]
            assert statuses[-1] == "failed"
            assert statuses.count("failed") == 1
    finally:
        code, _ = second.stop()
    assert code == 0
