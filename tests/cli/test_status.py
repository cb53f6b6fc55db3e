"""``ah status``: one frame with CPU and memory of running sessions, the live view following the feed,
and the pure rendering of a state."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import AsyncIterator

import pytest
import trio
from rich.console import Console

from harbor.client import HarborClient
from harbor.status import StatusState, apply_feed, collect, render, watch
from tests.cli.test_commands import ENV
from tests.harness import REPO, DaemonProcess, command_task


def recorded(state: StatusState) -> str:
    console = Console(record=True, width=160, file=io.StringIO())
    console.print(render(state))
    return console.export_text()


def row_of(text: str, session_id: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(session_id))


@pytest.fixture
async def sleeper(daemon: DaemonProcess) -> AsyncIterator[str]:
    """A running ``sleep 30`` session whose memory the daemon has sampled (deleted afterwards)."""
    async with HarborClient(daemon.url) as client:
        created = await client.create_task(body=command_task(["sleep", "30"]))
        session_id = created["id"]
        # Nothing announces a stats sample (every 2 s), so poll the session with a deadline.
        with trio.fail_after(30):
            while True:
                doc = await client.get_session(session_id)
                if doc["status"] == "running" and (doc.get("stats") or {}).get("rssBytes", 0) > 0:
                    break
                await trio.sleep(0.2)
        yield session_id
        await client.delete(session_id)


async def test_status_once_shows_cpu_and_memory_of_running_sessions(daemon: DaemonProcess, sleeper: str) -> None:
    async with HarborClient(daemon.url) as client:
        state = await collect(client)
    text = recorded(state)
    row = row_of(text, sleeper)
    cells = row.split()
    assert cells[1] == "running"
    assert cells[2] == "command"
    float(cells[5])  # CPU %, a number
    assert cells[7] in ("KiB", "MiB")  # RSS, e.g. "1.8 MiB"
    assert float(cells[6]) > 0
    header = text.splitlines()[0]
    assert header.startswith(f"Agent Harbor {daemon.url} · v")
    assert " · up " in header
    assert "running" in text.splitlines()[1]


async def test_status_once_command_prints_the_frame_and_json(daemon: DaemonProcess, sleeper: str) -> None:
    argv = [sys.executable, "-m", "harbor.cli", "status", "--remote-server", daemon.url]
    frame = await trio.run_process([*argv, "--once"], capture_stdout=True, capture_stderr=True, cwd=REPO, env=ENV)
    row = row_of(frame.stdout.decode(), sleeper)
    assert "running" in row
    assert "iB" in row
    doc = json.loads((await trio.run_process([*argv, "--json"], capture_stdout=True, cwd=REPO, env=ENV)).stdout)
    session = next(s for s in doc["sessions"] if s["id"] == sleeper)
    assert session["stats"]["rssBytes"] > 0
    assert doc["daemon"]["version"]


async def test_live_view_follows_the_feed(daemon: DaemonProcess) -> None:
    console = Console(record=True, width=160, file=io.StringIO(), force_terminal=True)
    frames: list[str] = []
    async with HarborClient(daemon.url) as client:
        session_id: str | None = None
        seen = {"running": trio.Event(), "completed": trio.Event()}

        def on_frame(state: StatusState) -> None:
            if session_id and session_id in state.sessions:
                status = state.sessions[session_id].get("status")
                if status in seen:
                    frames.append(recorded(state))
                    seen[status].set()

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(lambda: watch(client, console, interval=0.5, on_frame=on_frame))
                created = await client.create_task("live", settings={"speed": 3})
                session_id = created["id"]
                await seen["running"].wait()
                await seen["completed"].wait()
                nursery.cancel_scope.cancel()
    assert "running" in row_of(frames[0], session_id)
    assert "completed" in row_of(frames[-1], session_id)
    assert session_id in console.export_text()


def test_render_is_a_function_of_the_state() -> None:
    state = StatusState(url="http://127.0.0.1:8080", version="1.2.3", uptime=65, uptime_at=1000.0, now=1010.0,
                        connected=True)
    state.replace_sessions([{"id": "01AAA", "status": "running", "agent": {"type": "scenario"},
                             "repo": {"url": "https://example.com/acme/widgets.git", "branch": "main"},
                             "createdAt": "1970-01-01T00:16:00.000Z", "eventCount": 12,
                             "stats": {"cpuPercent": 12.5, "rssBytes": 3 * 1024 * 1024, "processes": 2},
                             "recent_events": [{"type": "thought", "thought": "Reading auth.ts"}]}])
    assert apply_feed(state, {"type": "session", "sessionId": "01BBB", "status": "queued", "agent": "command",
                              "ts": "1970-01-01T00:16:40.000Z"})
    text = recorded(state)
    lines = text.splitlines()
    assert lines[0] == "Agent Harbor http://127.0.0.1:8080 · v1.2.3 · up 1m15s"
    assert lines[1].startswith("1 running · 1 queued")
    assert row_of(text, "01AAA").split() == ["01AAA", "running", "scenario", "widgets@main", "50s", "12.5",
                                             "3.0", "MiB", "12", "…", "Reading", "auth.ts"]
    assert row_of(text, "01BBB").split()[:5] == ["01BBB", "queued", "command", "—", "10s"]

    apply_feed(state, {"type": "status", "sessionId": "01AAA", "status": "failed", "error": "exit 3",
                       "ts": "1970-01-01T00:16:45.000Z"})
    row = row_of(recorded(state), "01AAA").split()
    assert row[1] == "failed"
    assert row[5:8] == ["—", "—", "—"]  # no processes, no stats
    assert row[-2:] == ["exit", "3"]
