"""A session's events over SSE and as history, as a client sees them.

The central property: whatever a reader's connection does (hang up in the middle of a frame,
reconnect with ``Last-Event-ID`` or ``?after=``, meet a daemon restart between two reads) it ends
up with exactly the stored history, in order, each event once. Around it: the stream's framing and
headers, its end, keep-alives, the JSON history's pages and filters, log tails, ``recent_events``
and the dashboard feed.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from harbor.api.streams import FINISHED_RETRY_MS
from tests.harness import DaemonProcess, command_task, scenario_task, wait_status
from tests.integration.sse import API, TERMINAL, SSEParser, history, read_stream, sse_name_of, through_terminal


def long_scenario(steps: int = 400, thoughts: int = 25) -> dict[str, Any]:
    """A busy agent: bursts of thoughts 50 ms apart (1 ms at speed 50), progress, and real edits
    (which make the daemon take snapshots, a second producer of events)."""
    timeline: list[dict[str, Any]] = []
    for step in range(steps):
        timeline.append({"progress": {"progress": step * 100 // steps, "stage": f"step {step}"}})
        timeline.append({"think": [[i * 50, f"step {step}, thought {i}"] for i in range(thoughts)]})
        if step % 25 == 0:
            timeline.append({"agentEdits": {"path": "notes.md", "linesAdded": 2, "linesRemoved": 0,
                                            "description": f"notes for step {step}"}})
    timeline.append({"complete": True})
    return {"name": "busy", "timeline": timeline}


def assert_matches_history(delivered: list[Any], stored: list[dict[str, Any]]) -> None:
    """What a reader got is the stored history through the terminal status (where the stream
    ends): same events, same order, nothing twice or missing."""
    expected = through_terminal(stored)
    assert [f.id for f in delivered] == [e["seq"] for e in expected] == list(range(1, len(expected) + 1))
    assert [f.data for f in delivered] == expected
    assert [f.event for f in delivered] == [sse_name_of(e) for e in expected]


# -- exactly once, in order ----------------------------------------------------------------------

async def test_exactly_once_in_order_across_random_disconnects_and_a_daemon_restart(tmp_path: Path) -> None:
    rng = random.Random(20261124)
    data_dir = tmp_path / "data"
    # Too big to travel inline (the agent gets its scenario on the command line): a scenario file.
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    (scenarios / "busy.json").write_text(json.dumps(long_scenario()))
    env = {"AH_SCENARIO_DIRS": json.dumps([str(scenarios)])}
    first = await trio.to_thread.run_sync(lambda: DaemonProcess(data_dir, env=env).start())
    delivered: list[Any] = []
    reads = 0

    async def read_once(client: httpx.AsyncClient, session_id: str, cut: int | None) -> bool:
        """One connection, resuming after what was delivered; returns True if the server ended it."""
        nonlocal reads
        last = delivered[-1].id if delivered else None
        reads += 1
        if reads % 5 == 2:  # some reconnects name the resume point in the URL instead
            read = await read_stream(client, session_id, after=last or 0, hang_up_after_bytes=cut)
        elif reads % 5 == 4:  # an EventSource reconnecting to a URL with ?after=0: the header wins
            read = await read_stream(client, session_id, after=0, last_event_id=last, hang_up_after_bytes=cut)
        else:
            read = await read_stream(client, session_id, last_event_id=last, hang_up_after_bytes=cut)
        assert read.status_code == 200
        if read.frames:  # every connection opens with the current status, which carries no id
            assert (read.frames[0].id, read.frames[0].event) == (None, "status")
        delivered.extend(read.numbered)
        return read.ended

    try:
        async with first.aclient() as client:
            created = await client.post(f"{API}/tasks", json=scenario_task("busy", speed=50))
            session_id = created.json()["id"]
            while len(delivered) < 800:  # hang up at random byte offsets, mid-frame included
                assert not await read_once(client, session_id, rng.randint(1, 30_000))
            # Let the agent run on, so that the reader has plenty to catch up with after the restart.
            await read_stream(client, session_id, last_event_id=len(delivered) + 2000,
                              hang_up_at_id=len(delivered) + 2000)
            running = await client.get(f"{API}/sessions/{session_id}")
            assert running.json()["status"] == "running", "the agent should still be producing"
    finally:
        code, _ = await trio.to_thread.run_sync(first.stop)
    assert code == 0, first.log()

    second = await trio.to_thread.run_sync(lambda: DaemonProcess(data_dir, env=env).start())
    try:
        async with second.aclient() as client:
            for _ in range(15):  # random hang-ups while it catches up from storage
                if await read_once(client, session_id, rng.randint(1, 20_000)):
                    break
            else:
                assert await read_once(client, session_id, None), "a finished session's stream must end"

            stored = await history(client, session_id)
    finally:
        await trio.to_thread.run_sync(second.stop)
    assert reads > 20
    assert_matches_history(delivered, stored)
    assert len(stored) > 2800


@pytest.fixture(scope="module")
def finished(daemon: DaemonProcess) -> Iterator[str]:
    """A completed demo session on the module's daemon."""
    with daemon.client() as client:
        session_id = client.post(f"{API}/tasks", json=scenario_task("demo", speed=100)).json()["id"]
        assert wait_status(client, session_id, TERMINAL)["status"] == "completed"
    return session_id


async def test_a_finished_session_streams_its_history_then_ends(daemon: DaemonProcess, finished: str) -> None:
    async with daemon.aclient() as client:
        stored = await history(client, finished)
        n = len(through_terminal(stored))
        with trio.fail_after(10):  # a finished session's stream must end by itself
            whole = await read_stream(client, finished)
            tail = await read_stream(client, finished, last_event_id=n - 5)
            after_end = await read_stream(client, finished, last_event_id=n)
    assert whole.ended
    assert tail.ended
    assert after_end.ended
    # The end tells a browser's EventSource not to come back for a day (it reconnects to any
    # stream that ends, after 3 s unless told otherwise): nothing more will come.
    assert whole.retry_ms == tail.retry_ms == after_end.retry_ms == FINISHED_RETRY_MS
    assert whole.headers["Content-Type"].startswith("text/event-stream")
    assert whole.headers["Cache-Control"] == "no-cache"
    opening = whole.frames[0]
    assert (opening.id, opening.event, opening.data["status"]) == (None, "status", "completed")
    assert_matches_history(whole.numbered, stored)
    assert [f.id for f in tail.numbered] == [e["seq"] for e in stored[n - 5:n]]
    # Resuming after the terminal status: only what was recorded after it (the final snapshot).
    assert after_end.frames[0].id is None
    assert [f.data for f in after_end.numbered] == stored[n:]
    assert {"status", "thinking", "tool_execution", "file_edit", "progress", "log"} <= {
        f.event for f in whole.frames}


async def test_a_live_stream_ends_after_the_terminal_status(daemon: DaemonProcess) -> None:
    async with daemon.aclient() as client:
        created = await client.post(f"{API}/tasks", json=scenario_task("demo", speed=50))
        session_id = created.json()["id"]
        with trio.fail_after(30):
            read = await read_stream(client, session_id)
        stored = await history(client, session_id)
    assert read.ended
    assert read.frames[0].id is None
    assert read.frames[0].data["status"] in {"queued", "provisioning", "running"}
    assert_matches_history(read.numbered, stored)
    assert read.numbered[-1].data["status"] == "completed"
    assert read.retry_ms == FINISHED_RETRY_MS


async def test_a_stream_ended_by_a_shutdown_leaves_the_reconnect_time_alone(tmp_path: Path) -> None:
    daemon = await trio.to_thread.run_sync(lambda: DaemonProcess(tmp_path / "data", "--allow-command-agent").start())
    parser = SSEParser()
    try:
        async with daemon.aclient() as client:
            created = await client.post(f"{API}/tasks", json=command_task(["sleep", "300"]))
            async with client.stream("GET", f"{API}/sessions/{created.json()['id']}/events",
                                     headers={"Accept": "text/event-stream"}) as response:
                chunks = response.aiter_raw()
                with trio.fail_after(10):
                    frames = parser.feed(await chunks.__anext__())  # the opening status: it is live
                    code, _ = await trio.to_thread.run_sync(daemon.stop)
                    async for chunk in chunks:
                        frames += parser.feed(chunk)
    finally:
        await trio.to_thread.run_sync(daemon.kill)
    assert code == 0
    assert frames[0].event == "status"
    assert parser.retry_ms is None  # a browser comes back after its usual 3 s, to the restarted daemon


async def test_unknown_session_and_bad_resume_point_are_problems_not_streams(daemon: DaemonProcess,
                                                                             finished: str) -> None:
    async with daemon.aclient() as client:
        for accept in ("text/event-stream", "application/json"):
            r = await client.get(f"{API}/sessions/01NOSUCHSESSION0000000000/events", headers={"Accept": accept})
            assert r.status_code == 404
            assert r.headers["Content-Type"].startswith("application/problem+json")
            assert r.json()["status"] == 404
        r = await client.get(f"{API}/sessions/{finished}/events",
                             headers={"Accept": "text/event-stream", "Last-Event-ID": "tuesday"})
        assert r.status_code == 400
        assert "Last-Event-ID" in r.json()["errors"]


async def test_an_idle_stream_gets_keep_alive_comments(tmp_path: Path) -> None:
    d = await trio.to_thread.run_sync(lambda: DaemonProcess(
        tmp_path / "data", "--allow-command-agent", env={"AH_SSE_KEEPALIVE_SECONDS": "0.2"}).start())
    try:
        async with d.aclient() as client:
            created = await client.post(f"{API}/tasks", json=command_task(["sleep", "60"]))
            session_id = created.json()["id"]
            for path in (f"{API}/sessions/{session_id}/events", f"{API}/events"):
                parser = SSEParser()
                with trio.fail_after(10):
                    async with client.stream("GET", path, headers={"Accept": "text/event-stream"}) as r:
                        async for chunk in r.aiter_raw():
                            parser.feed(chunk)
                            if parser.comments.count(": keep-alive") >= 2:
                                break
            assert (await client.delete(f"{API}/sessions/{session_id}")).status_code == 204
    finally:
        await trio.to_thread.run_sync(d.stop)


# -- history -------------------------------------------------------------------------------------

async def test_history_pages_sorts_and_filters(daemon: DaemonProcess, finished: str) -> None:
    url = f"{API}/sessions/{finished}/events"
    async with daemon.aclient() as client:
        stored = await history(client, finished)
        n = len(stored)

        async def get(**params: Any) -> dict[str, Any]:
            r = await client.get(url, params=params)
            assert r.status_code == 200, r.text
            return r.json()

        newest = await get(page=1)  # history because of `page`; newest first, 50 per page by default
        assert [e["seq"] for e in newest["items"]] == list(range(n, max(0, n - 50), -1))
        assert newest["pagination"] == {"page": 1, "perPage": 50, "total": n, "totalPages": 1 + (n - 1) // 50}
        small = [await get(page=p, perPage=7, sort="asc") for p in range(1, (n + 6) // 7 + 1)]
        assert [e for body in small for e in body["items"]] == stored
        assert small[0]["nextPage"] == 2
        assert small[-1]["nextPage"] is None
        assert small[-1]["total"] == n
        assert (await get(perPage=200))["pagination"]["perPage"] == 200

        thoughts = (await get(type="thought", sort="asc"))["items"]
        assert thoughts
        assert thoughts == [e for e in stored if e["type"] == "thought"]
        mixed = (await get(type="thought,progress", sort="asc"))["items"]
        assert mixed == [e for e in stored if e["type"] in ("thought", "progress")]
        debug = (await get(level="debug", sort="asc"))["items"]
        assert debug
        assert debug == [e for e in stored if e.get("level") == "debug"]

        middle = stored[n // 2]["ts"]
        since = (await get(since=middle, sort="asc", perPage=200))["items"]
        assert since
        assert all(e["ts"] >= middle for e in since)
        assert [e for e in stored if e["ts"] > middle] == [e for e in since if e["ts"] > middle]
        until = (await get(until=middle, sort="asc", perPage=200))["items"]
        assert until
        assert all(e["ts"] <= middle for e in until)
        assert [e for e in stored if e["ts"] < middle] == [e for e in until if e["ts"] < middle]
        from datetime import datetime
        unix = datetime.fromisoformat(middle.replace("Z", "+00:00")).timestamp()
        assert (await get(since=str(unix), sort="asc", perPage=200))["items"] == since

        for bad in ({"perPage": 201}, {"page": 0}, {"sort": "sideways"}, {"since": "yesterday"},
                    {"level": "loud"}):
            r = await client.get(url, params=bad)
            assert r.status_code == 400, bad
            assert r.headers["Content-Type"].startswith("application/problem+json")
            assert set(r.json()["errors"]) & {*bad, "per_page"}, r.json()


async def test_log_tail(daemon: DaemonProcess, finished: str) -> None:
    async with daemon.aclient() as client:
        stored = await history(client, finished)
        r = await client.get(f"{API}/sessions/{finished}/logs", params={"tail": 3})
    body = r.json()
    lines = [e for e in stored if e["type"] in ("log", "message")][-3:]
    assert [x["message"] for x in body["logs"]] == [e["message"] for e in lines]
    assert body["items"] == body["logs"]
    assert body["nextPage"] is None
    assert all({"level", "message", "ts"} <= set(x) for x in body["logs"])


# -- session objects and the dashboard feed ------------------------------------------------------

async def test_recent_events_while_running_and_none_once_finished(daemon: DaemonProcess) -> None:
    async with daemon.aclient() as client:
        created = await client.post(f"{API}/tasks", json=scenario_task("long_running", speed=1))
        session_id = created.json()["id"]
        parser = SSEParser()
        with trio.fail_after(20):  # the first thought arrives at once, the next one 20 s later
            async with client.stream("GET", f"{API}/sessions/{session_id}/events") as r:
                async for chunk in r.aiter_raw():
                    if any(f.event == "thinking" for f in parser.feed(chunk)):
                        break
        running = (await client.get(f"{API}/sessions/{session_id}")).json()
        latest = (await client.get(f"{API}/sessions/{session_id}/events", params={"perPage": 3})).json()
        assert running["status"] == "running"
        assert running["recent_events"] == list(reversed(latest["items"]))
        assert 1 <= len(running["recent_events"]) <= 3
        assert (await client.post(f"{API}/sessions/{session_id}/stop")).status_code == 202
        with trio.fail_after(20):
            await read_stream(client, session_id)  # ends after the terminal status
        ended = (await client.get(f"{API}/sessions/{session_id}")).json()
    assert ended["status"] == "stopped"
    assert ended["recent_events"] == []


async def test_dashboard_feed_shows_creations_and_status_changes(daemon: DaemonProcess) -> None:
    seen: list[Any] = []
    subscribed = trio.Event()
    created: list[str] = []

    async def follow(client: httpx.AsyncClient) -> None:
        parser = SSEParser()
        async with client.stream("GET", f"{API}/events") as r:
            assert r.headers["Content-Type"].startswith("text/event-stream")
            async for chunk in r.aiter_raw():
                seen.extend(parser.feed(chunk))
                if parser.comments:
                    subscribed.set()  # the feed greets its subscriber with a comment
                if created and any(f.data.get("sessionId") == created[0] and f.data.get("status") == "completed"
                                   for f in seen):
                    return

    async with daemon.aclient() as client, trio.open_nursery() as nursery:
        with trio.fail_after(30):
            nursery.start_soon(follow, client)
            await subscribed.wait()
            r = await client.post(f"{API}/tasks", json=scenario_task("demo", speed=100))
            created.append(r.json()["id"])
    mine = [(f.event, f.data["status"]) for f in seen
            if f.data.get("sessionId") == created[0] and f.event in ("session", "status")]
    assert mine == [("session", "queued"), ("status", "provisioning"), ("status", "running"),
                    ("status", "completed")]
